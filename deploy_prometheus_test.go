package main

// roomchat scraped by the real Prometheus, running deploy/prometheus.yml
// as docs/deploy.md quotes it.

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestDeployPrometheus has a real Prometheus scrape roomchat's metrics
// listener, and asks it, through its HTTP API, for the connection count
// that /healthz shows.
func TestDeployPrometheus(t *testing.T) {
	t.Parallel()
	app := startDeployed(t)
	prom := startPrometheus(t, app.metricsPort)
	base := "http://127.0.0.1:" + app.port
	for range 2 {
		dialURL(t, "ws://127.0.0.1:"+app.port+"/ws/chat/room1/", "")
	}
	var h health // the counts are on the metrics listener's /healthz
	getJSON(t, "http://127.0.0.1:"+app.metricsPort+"/healthz", &h)
	if h.Connections != 2 {
		t.Fatalf("/healthz: %d connections, want 2", h.Connections)
	}
	// Prometheus hands new targets to its scrapers every 5 s: the first
	// scrape comes some 5 s after it starts, so this waits longer than
	// waitFor would.
	want := strconv.Itoa(h.Connections)
	deadline := time.Now().Add(30 * time.Second)
	for got := prom.query(t, "roomchat_connections"); got != want; got = prom.query(t, "roomchat_connections") {
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus says roomchat_connections is %q after 30 s, /healthz %s", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if up := prom.query(t, `up{job="roomchat"}`); up != "1" {
		t.Errorf("up %s", up)
	}
	// The unit's roomchat serves /metrics on its own listener only.
	if code := getStatus(t, base+"/metrics", nil); code != http.StatusNotFound {
		t.Errorf("/metrics on the main listener: %d, want 404", code)
	}
}

// prometheusServer is Prometheus running deploy/prometheus.yml.
type prometheusServer struct {
	url string
}

// startPrometheus runs Prometheus with deploy/prometheus.yml, scraping
// 127.0.0.1:metricsPort every second, its data in a temporary folder, and
// stops it when the test ends.
func startPrometheus(t *testing.T, metricsPort string) *prometheusServer {
	t.Helper()
	bin := findProgram(t, "prometheus", "ROOMCHAT_PROMETHEUS", "prometheus")
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(deployFile(t, "prometheus.yml", map[string]string{"metrics": metricsPort})), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	var log syncBuffer
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	startProgram(t, cmd, addr, log.String)
	p := &prometheusServer{url: "http://" + addr}
	waitFor(t, func() string { return "Prometheus to be ready:\n" + log.String() }, func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// query asks Prometheus for an instant vector of one series and returns
// its value, or "" while there is none.
func (p *prometheusServer) query(t testing.TB, q string) string {
	t.Helper()
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	getJSON(t, p.url+"/api/v1/query?query="+url.QueryEscape(q), &r)
	if r.Status != "success" || len(r.Data.Result) != 1 {
		return ""
	}
	if job := r.Data.Result[0].Metric["job"]; job != "roomchat" {
		t.Errorf("%s: job %q", q, job)
	}
	v, _ := r.Data.Result[0].Value[1].(string)
	return v
}
