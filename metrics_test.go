package main

// /metrics from outside: the exposition checked line by line (and by
// promtool, Prometheus's own linter, when it is installed), every count
// against what the test did, and who may read it.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/websocket"
)

// TestMetricsCount does one of each thing the metrics count and reads
// each count back.
func TestMetricsCount(t *testing.T) {
	s := newTestServer(t, options{rate: 1, history: defaultHistory, addr: "127.0.0.1:8000"})
	a, b := s.dial(t, "m1"), s.dial(t, "m1")
	sendText(t, a, chat("hi", "A"))
	expectText(t, b, chat("hi", "A"))
	// A rate of 1 allows a burst of 2: the third message is refused.
	sendText(t, a, chat("again", "A"))
	expectText(t, b, chat("again", "A"))
	sendText(t, a, chat("and again", "A"))
	expectText(t, a, `{"action":"error","payload":[{"type":"rate_limited","loc":[],"msg":"Too many messages: at most 1 per second"}]}`)

	if code := handshakeStatus(t, s.URL+"/ws/chat/bad%20room/", ""); code != http.StatusBadRequest {
		t.Fatalf("bad room: %d", code)
	}
	if code := handshakeStatus(t, s.URL+"/ws/chat/m1/", "https://evil.example"); code != http.StatusForbidden {
		t.Fatalf("foreign origin: %d", code)
	}
	if code, _ := hold(t, s, "/healthz", http.Header{"Host": {"evil.example"}}); code != http.StatusMisdirectedRequest {
		t.Fatalf("foreign host: %d", code)
	}
	bad := s.dial(t, "m2")
	bad.PayloadType = websocket.TextFrame
	if _, err := bad.Write([]byte{0xff}); err != nil { // not UTF-8
		t.Fatal(err)
	}
	expectClose(t, bad, closeInvalidPayload)
	bad.Close() // answers the close frame: the server need not wait for it
	closeClient(t, b)

	want := map[string]float64{
		"roomchat_connections":                                   1,
		"roomchat_rooms":                                         1,
		"roomchat_messages_received_total":                       4,
		"roomchat_frames_delivered_total":                        -1, // at least 3; racy to pin
		`roomchat_rate_limited_total{limit="messages"}`:          1,
		`roomchat_rate_limited_total{limit="bytes"}`:             0,
		`roomchat_connections_refused_total{reason="room_name"}`: 1,
		`roomchat_connections_refused_total{reason="origin"}`:    1,
		`roomchat_connections_refused_total{reason="host"}`:      1,
		`roomchat_connections_closed_total{code="1000"}`:         1,
		`roomchat_connections_closed_total{code="1007"}`:         1,
		"roomchat_history_messages":                              2,
		"roomchat_handshake_duration_seconds_count":              3,
	}
	var got map[string]float64
	waitFor(t, func() string { return fmt.Sprintf("the counts; last %v", got) }, func() bool {
		got = s.scrape(t)
		for k, v := range want {
			if _, ok := got[k]; !ok || (v >= 0 && got[k] != v) {
				return false
			}
		}
		return true
	})
	if kept, held := got["roomchat_history_bytes"], s.hub.broker.status().HistoryBytes; kept != float64(held) || kept == 0 {
		t.Errorf("history bytes %v, the broker holds %d", kept, held)
	}
	if got["roomchat_delivery_duration_seconds_count"] < 3 || got["roomchat_delivery_duration_seconds_sum"] <= 0 {
		t.Errorf("deliveries: %v batches, %v s", got["roomchat_delivery_duration_seconds_count"], got["roomchat_delivery_duration_seconds_sum"])
	}
	if _, ok := got["roomchat_redis_up"]; ok {
		t.Error("Redis metrics without -redis")
	}
	if h := s.health(t); float64(h.Connections) != got["roomchat_connections"] || float64(h.MessagesReceived) != got["roomchat_messages_received_total"] {
		t.Errorf("/healthz says %+v", h)
	}
}

// TestMetricsRefusedAtAccept counts the connections that the TCP limits
// refuse before a request is read (connlimit.go).
func TestMetricsRefusedAtAccept(t *testing.T) {
	s := newTestServer(t, options{perClient: 1})
	hold(t, s, "/ws/chat/one/", nil)
	for range perClientSlack {
		hold(t, s, "/healthz", nil)
	}
	if code, _ := hold(t, s, "/ws/chat/one/", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	// The one slot is taken, so /metrics is read as the server reads it.
	got := parseExposition(t, writeMetrics(s.hub, s.limit))
	if n := got[`roomchat_connections_refused_total{reason="tcp_per_address"}`]; n != 1 {
		t.Errorf("tcp_per_address %v, want 1", n)
	}
	if n := got["roomchat_tcp_connections"]; n != 1+perClientSlack {
		t.Errorf("tcp connections %v, want %d", n, 1+perClientSlack)
	}
}

// TestMetricsRedis reads the Redis broker's metrics across an outage.
func TestMetricsRedis(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a, b := newTestServer(t, options{redis: r.url()}), newTestServer(t, options{redis: r.url()})
	talk(t, a.dial(t, "room1"), b.dial(t, "room1"))
	r.stop()
	a.waitHealth(t, func(h health) bool { return !h.Layer.Connected })
	if got := a.scrape(t); got["roomchat_redis_up"] != 0 || got["roomchat_redis_published_total"] != 1 || got["roomchat_redis_received_total"] != 2 { // its own, and the other's
		t.Errorf("while Redis is away: %v", got)
	}
	r.start()
	a.waitHealth(t, func(h health) bool { return h.Layer.Connected })
	if got := a.scrape(t); got["roomchat_redis_up"] != 1 || got["roomchat_redis_reconnects_total"] != 1 {
		t.Errorf("Redis back: up %v, reconnects %v", got["roomchat_redis_up"], got["roomchat_redis_reconnects_total"])
	}
}

// TestMetricsAccess checks who may read /metrics: loopback clients on
// the main listener, unless they come through a trusted proxy, or
// everyone who reaches -metrics-addr, which is then the only place.
func TestMetricsAccess(t *testing.T) {
	t.Run("main listener", func(t *testing.T) {
		s := newTestServer(t, options{})
		if code := getStatus(t, s.URL+"/metrics", nil); code != http.StatusOK {
			t.Errorf("from loopback: %d", code)
		}
		// No other address reaches a test server, so the handler is
		// asked directly, as a request from one.
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = "203.0.113.9:4711"
		rec := httptest.NewRecorder()
		metricsOnMain(s.hub, s.limit, options{})(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("from 203.0.113.9: %d", rec.Code)
		}
	})
	t.Run("through a trusted proxy", func(t *testing.T) {
		s := newTestServer(t, options{proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
		if code := getStatus(t, s.URL+"/metrics", forwardedFrom("127.0.0.1")); code != http.StatusForbidden {
			t.Errorf("%d, want 403: a proxy on this machine carries anyone", code)
		}
	})
	t.Run("-metrics-addr", func(t *testing.T) {
		s, metricsAddr := newMetricsListenerServer(t)
		s.dial(t, "lobby")
		if code := getStatus(t, s.URL+"/metrics", nil); code != http.StatusNotFound {
			t.Errorf("main listener: %d, want 404", code)
		}
		metricsURL := "http://" + metricsAddr + "/metrics"
		body := get(t, metricsURL, nil)
		if got := parseExposition(t, body); got["roomchat_connections"] != 1 {
			t.Errorf("roomchat_connections %v, want 1", got["roomchat_connections"])
		}
		for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/chat/": 404} {
			if code := getStatus(t, "http://"+metricsAddr+path, nil); code != want {
				t.Errorf("%s on the metrics listener: %d, want %d", path, code, want)
			}
		}
		if code := getStatus(t, metricsURL, http.Header{"Host": {"rebind.evil.example"}}); code != http.StatusMisdirectedRequest {
			t.Errorf("a rebound name: %d, want 421", code)
		}
	})
}

// TestMetricsPromtool has promtool, Prometheus's own checker, lint a live
// server's /metrics, with the Redis broker's families too when redis-server
// is installed.
func TestMetricsPromtool(t *testing.T) {
	t.Parallel()
	promtool := findProgram(t, "promtool", "ROOMCHAT_PROMTOOL", "prometheus")
	s := newTestServer(t, options{history: defaultHistory})
	talk(t, s.dial(t, "room1"), s.dial(t, "room1"))
	checkMetrics(t, promtool, get(t, s.URL+"/metrics", nil))
	t.Run("with -redis", func(t *testing.T) {
		r := startRedis(t, "")
		s := newTestServer(t, options{redis: r.url(), history: defaultHistory})
		talk(t, s.dial(t, "room1"), s.dial(t, "room1"))
		body := get(t, s.URL+"/metrics", nil)
		if !bytes.Contains(body, []byte("roomchat_redis_up 1")) {
			t.Fatalf("no Redis metrics:\n%s", body)
		}
		checkMetrics(t, promtool, body)
	})
}

// TestMetricsDocumented checks that docs/deploy.md's table of metrics
// names every family the server writes, the Redis broker's included, with
// its type, and nothing else.
func TestMetricsDocumented(t *testing.T) {
	h := newHub(redisStatusBroker{newMemoryBroker(0)}, newRateLimit(0), slog.New(slog.DiscardHandler))
	written := map[string]string{}
	for line := range strings.Lines(string(writeMetrics(h, newConnLimit(options{maxConns: 100})))) {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(strings.TrimSpace(rest), " ")
			written[name] = typ
		}
	}
	doc, err := os.ReadFile("docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	row := regexp.MustCompile("(?m)^\\| `(roomchat_[a-z_]+)(?:\\{[a-z]+\\})?` \\| ([a-z]+) \\|")
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = m[2]
	}
	if !maps.Equal(written, documented) {
		t.Errorf("the server writes\n%v\ndocs/deploy.md documents\n%v", written, documented)
	}
}

// redisStatusBroker is the memory broker with the Redis broker's status,
// so that the Redis metrics are written without a Redis.
type redisStatusBroker struct{ *memoryBroker }

func (redisStatusBroker) status() brokerStatus {
	return brokerStatus{Kind: "redis", redisStatus: &redisStatus{}}
}

// checkMetrics runs promtool check metrics on an exposition.
func checkMetrics(t *testing.T, promtool string, body []byte) {
	t.Helper()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s\n-- the exposition:\n%s", err, out, body)
	}
}

// ---- helpers ----

// scrape reads s's /metrics and returns its samples.
func (s *testServer) scrape(t testing.TB) map[string]float64 {
	t.Helper()
	return parseExposition(t, get(t, s.URL+"/metrics", nil))
}

// sampleLine is one sample of the text format, as roomchat writes it:
// name, labels in braces or none, value.
var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-z_]+="[^"\\\n]*"(?:,[a-z_]+="[^"\\\n]*")*\})? (\S+)$`)

// parseExposition checks an exposition as Prometheus's text format and
// roomchat's naming want it, and returns its samples by name and labels.
// Families: the roomchat_ prefix, # HELP then # TYPE before the first
// sample, each family once and together; counters end in _total;
// histograms have cumulative buckets up to +Inf, whose count _count equals.
func parseExposition(t testing.TB, body []byte) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	types := map[string]string{}
	var family, help string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			family, help, _ = strings.Cut(rest, " ")
			if _, seen := types[family]; seen || help == "" {
				t.Errorf("family %s: repeated, or no help", family)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			if name != family {
				t.Errorf("# TYPE %s without its # HELP first", name)
			}
			types[name] = typ
			switch {
			case !strings.HasPrefix(name, "roomchat_"):
				t.Errorf("%s: no roomchat_ prefix", name)
			case typ == "counter" && !strings.HasSuffix(name, "_total"):
				t.Errorf("counter %s does not end in _total", name)
			case typ != "counter" && strings.HasSuffix(name, "_total"):
				t.Errorf("%s %s ends in _total", typ, name)
			case typ != "counter" && typ != "gauge" && typ != "histogram":
				t.Errorf("%s: type %s", name, typ)
			}
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("not a sample line: %q", line)
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil || math.IsNaN(v) || v < 0 {
			t.Errorf("%s: value %q", line, m[3])
		}
		base := m[1]
		if types[family] == "histogram" {
			base = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(base, "_bucket"), "_sum"), "_count")
		}
		if base != family || types[family] == "" {
			t.Errorf("%s: not in its family's block (%s)", line, family)
		}
		samples[m[1]+m[2]] = v
	}
	for name, typ := range types {
		if typ != "histogram" {
			continue
		}
		last := -1.0
		for _, b := range bucketBounds {
			n := samples[name+`_bucket{le="`+strconv.FormatFloat(b.Seconds(), 'g', -1, 64)+`"}`]
			if n < last {
				t.Errorf("%s: buckets not cumulative", name)
			}
			last = n
		}
		if inf := samples[name+`_bucket{le="+Inf"}`]; inf < last || inf != samples[name+"_count"] {
			t.Errorf("%s: +Inf bucket %v, last %v, count %v", name, inf, last, samples[name+"_count"])
		}
	}
	return samples
}

// get fetches url with extra headers (Host included) and returns the body
// of a 200 answer.
func get(t testing.TB, url string, header http.Header) []byte {
	t.Helper()
	resp := request(t, url, header)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, body)
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasSuffix(url, "/metrics") && ct != metricsContentType {
		t.Errorf("Content-Type %q", ct)
	}
	return body
}

// getStatus fetches url with extra headers and returns the status.
func getStatus(t testing.TB, url string, header http.Header) int {
	t.Helper()
	resp := request(t, url, header)
	resp.Body.Close()
	return resp.StatusCode
}

// request sends a GET of url with extra headers, Host included.
func request(t testing.TB, url string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if host := header.Get("Host"); host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// findProgram returns the path of a program the test needs: $env if set,
// else name on the PATH or in /usr/sbin, where Debian puts nginx and a
// user's PATH may not look. Without it the test skips, saying which
// Debian package brings it; with CI=true it fails instead.
func findProgram(t testing.TB, name, env, pkg string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	for _, candidate := range []string{name, "/usr/sbin/" + name} {
		if p, err := exec.LookPath(candidate); err == nil {
			return p
		}
	}
	how := fmt.Sprintf("%s not found: sudo apt-get install %s, or set %s", name, pkg, env)
	if os.Getenv("CI") == "true" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}

// newMetricsListenerServer is a test server started as with -metrics-addr:
// /metrics (and the counting /healthz) on a listener of their own, whose
// address it returns.
func newMetricsListenerServer(t *testing.T) (*testServer, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := options{metrics: ln}
	h, err := buildHub(opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s := serveHub(t, h, opts)
	t.Cleanup(serveMetrics(h, s.limit, opts, slog.New(slog.DiscardHandler)))
	return s, ln.Addr().String()
}
