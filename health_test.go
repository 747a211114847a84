package main

// /healthz (health.go): the status alone for everyone, the counts for the
// ones /metrics is for, agreeing with /metrics; degraded while Redis is
// away, unhealthy while shutting down.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestHealthzPublicSaysOnlyTheStatus(t *testing.T) {
	t.Run("through a trusted proxy", func(t *testing.T) {
		s := newTestServer(t, options{proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
		s.dial(t, "room")
		if body := string(get(t, s.URL+"/healthz", forwardedFrom("203.0.113.9"))); body != `{"status":"healthy"}`+"\n" {
			t.Errorf("got %q", body)
		}
	})
	t.Run("-metrics-addr", func(t *testing.T) {
		s, metricsAddr := newMetricsListenerServer(t)
		s.dial(t, "room")
		if body := string(get(t, s.URL+"/healthz", nil)); body != `{"status":"healthy"}`+"\n" {
			t.Errorf("main listener, even from loopback: %q", body)
		}
		var inside health
		getJSON(t, "http://"+metricsAddr+"/healthz", &inside)
		if inside.Status != healthHealthy || inside.Connections != 1 || inside.Layer.Kind != "memory" {
			t.Errorf("metrics listener: %+v", inside)
		}
	})
}

// TestHealthzCountsAgreeWithMetrics refuses handshakes for several reasons,
// token refusals among them: refused_connections is the sum /metrics
// shows.
func TestHealthzCountsAgreeWithMetrics(t *testing.T) {
	s := newTestServer(t, options{secret: []byte(strings.Repeat("s", minTokenSecretBytes))})
	for _, path := range []string{"/ws/chat/room/", "/ws/chat/room/", "/ws/chat/bad!room/"} {
		hold(t, s, path, nil)
	}
	var sum float64
	for name, v := range s.scrape(t) {
		if strings.HasPrefix(name, "roomchat_connections_refused_total{") {
			sum += v
		}
	}
	if h := s.health(t); h.RefusedConnections != 3 || sum != 3 {
		t.Errorf("refused_connections %d, /metrics %v; want 3 and 3", h.RefusedConnections, sum)
	}
}

func TestHealthzDegradedWhileRedisIsAway(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	s := newTestServer(t, options{redis: r.url(), proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	public := func() (int, string) {
		resp := request(t, s.URL+"/healthz", nil)
		defer resp.Body.Close()
		var v map[string]string
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v["status"]
	}
	if code, status := public(); code != 200 || status != healthHealthy {
		t.Fatalf("with Redis: %d %s", code, status)
	}
	r.stop()
	waitFor(t, func() string { return "degraded" }, func() bool { code, status := public(); return code == 200 && status == healthDegraded })
	r.start()
	waitFor(t, func() string { return "healthy again" }, func() bool { _, status := public(); return status == healthHealthy })
}

func TestHealthzUnhealthyWhileShuttingDown(t *testing.T) {
	s := newTestServer(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.hub.shutdown(ctx)
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.RemoteAddr = "203.0.113.9:4711"
	rec := httptest.NewRecorder()
	healthz(s.hub, s.limit, options{})(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != `{"status":"unhealthy"}`+"\n" {
		t.Errorf("got %d %q", rec.Code, rec.Body.String())
	}
}
