package main

// The deployment of docs/deploy.md, run for real: roomchat started with
// the flags of deploy/roomchat.service, behind nginx configured by
// deploy/nginx.conf, scraped by Prometheus configured by
// deploy/prometheus.yml. Each file is used as written, but for the values
// deployValues names (ports, paths, the server's name), so that what the
// document shows is what the tests ran.
//
// nginx, Prometheus (with promtool), systemd-analyze and Chromium come
// from Debian: sudo apt-get install nginx prometheus systemd chromium.
// Without one, its tests skip, saying so; with CI=true they fail instead.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// deployValues are the only text of the deploy/ files that the tests
// replace, each file's in order (docs/deploy.md lists them). The
// placeholders in braces are filled in when a test runs: free loopback
// ports, and its temporary folder.
var deployValues = map[string][][2]string{
	"roomchat.service": {
		{"127.0.0.1:8000", "127.0.0.1:{app}"},
		{"127.0.0.1:9464", "127.0.0.1:{metrics}"},
		{"chat.example.com", "localhost"},
	},
	"nginx.conf": {
		{"listen 443 ssl;", "listen 127.0.0.1:{https} ssl;"},
		{"listen 80;", "listen 127.0.0.1:{http};"},
		{"/etc/letsencrypt/live/chat.example.com/fullchain.pem", "{dir}/cert.pem"},
		{"/etc/letsencrypt/live/chat.example.com/privkey.pem", "{dir}/key.pem"},
		{"chat.example.com", "localhost"},
		{"127.0.0.1:8000", "127.0.0.1:{app}"},
	},
	"prometheus.yml": {
		{"scrape_interval: 15s", "scrape_interval: 1s"},
		{"127.0.0.1:9464", "127.0.0.1:{metrics}"},
	},
}

// deployFile returns deploy/name with deployValues' replacements made,
// placeholders filled from fill. Each replaced text must be in the file:
// a replacement that finds nothing would leave the file untested.
func deployFile(t testing.TB, name string, fill map[string]string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for _, v := range deployValues[name] {
		if !strings.Contains(string(raw), v[0]) {
			t.Fatalf("deploy/%s no longer has %q, which the tests replace", name, v[0])
		}
		with := v[1]
		for k, f := range fill {
			with = strings.ReplaceAll(with, "{"+k+"}", f)
		}
		pairs = append(pairs, v[0], with)
	}
	// At each place, the first pair that matches wins: a longer text
	// (a path naming the server) is listed before a part of it.
	return strings.NewReplacer(pairs...).Replace(string(raw))
}

// execStartArgs returns the arguments of a unit's ExecStart, after the
// program. The line is split on spaces, as systemd splits it when it has
// no quotes, escapes, $ or % in it; the test fails if it has.
func execStartArgs(t testing.TB, unit string) []string {
	t.Helper()
	for line := range strings.SplitSeq(unit, "\n") {
		cmdline, ok := strings.CutPrefix(line, "ExecStart=")
		if !ok {
			continue
		}
		if strings.ContainsAny(cmdline, `"'\$%`) {
			t.Fatalf("ExecStart has quotes, escapes or specifiers; the tests split it on spaces: %s", cmdline)
		}
		fields := strings.Fields(cmdline)
		if fields[0] != "/usr/local/bin/roomchat" {
			t.Fatalf("ExecStart runs %s, docs/deploy.md installs /usr/local/bin/roomchat", fields[0])
		}
		return fields[1:]
	}
	t.Fatal("deploy/roomchat.service has no ExecStart")
	return nil
}

// TestDeployFiles checks the deploy/ files without running them: the
// document quotes each as it is, the unit keeps secrets out of its command
// line and passes systemd's checks, nginx waits longer than roomchat's
// pings, and Prometheus reads its configuration.
func TestDeployFiles(t *testing.T) {
	t.Parallel()
	t.Run("docs/deploy.md quotes every file as it is", func(t *testing.T) {
		doc, err := os.ReadFile("docs/deploy.md")
		if err != nil {
			t.Fatal(err)
		}
		quoted := quotedFiles(string(doc))
		files, _ := filepath.Glob("deploy/*")
		if len(files) != len(deployValues) {
			t.Errorf("deploy/ has %d files, the tests know %d", len(files), len(deployValues))
		}
		for _, f := range files {
			raw, _ := os.ReadFile(f)
			switch q, ok := quoted[f]; {
			case !ok:
				t.Errorf("docs/deploy.md does not quote %s", f)
			case q != string(raw):
				t.Errorf("docs/deploy.md's copy of %s differs from the file; copy the file into the document again", f)
			}
		}
	})
	t.Run("docs/deploy.md lists what the tests change", func(t *testing.T) {
		doc, _ := os.ReadFile("docs/deploy.md")
		row := regexp.MustCompile("(?m)^\\| `deploy/([^`]+)` \\| `([^`]+)` \\| `([^`]+)` \\|$")
		listed := map[string][][2]string{}
		for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
			listed[m[1]] = append(listed[m[1]], [2]string{m[2], m[3]})
		}
		if !reflect.DeepEqual(listed, deployValues) {
			t.Errorf("the table in docs/deploy.md says\n%v\nthe tests change\n%v", listed, deployValues)
		}
	})
	t.Run("the unit keeps secrets out of the process list", func(t *testing.T) {
		raw, _ := os.ReadFile("deploy/roomchat.service")
		for _, arg := range execStartArgs(t, string(raw)) {
			if arg == "-redis" || strings.Contains(arg, "redis://") || strings.Contains(arg, "rediss://") {
				t.Errorf("ExecStart names Redis (%s): its URL may hold a password; it goes in the EnvironmentFile", arg)
			}
		}
		if !regexp.MustCompile(`(?m)^EnvironmentFile=`).Match(raw) {
			t.Error("no EnvironmentFile for ROOMCHAT_REDIS_URL")
		}
	})
	t.Run("nginx gives a WebSocket longer than roomchat does", func(t *testing.T) {
		raw, _ := os.ReadFile("deploy/nginx.conf")
		for _, directive := range []string{"proxy_read_timeout", "proxy_send_timeout"} {
			m := regexp.MustCompile(directive + ` (\d+)s;`).FindSubmatch(raw)
			if m == nil {
				t.Errorf("no %s in seconds", directive)
				continue
			}
			if n, _ := strconv.Atoi(string(m[1])); time.Duration(n)*time.Second <= defaultIdleTimeout {
				t.Errorf("%s %ss: nginx would cut off a connection roomchat keeps (%v)", directive, m[1], defaultIdleTimeout)
			}
		}
	})
	t.Run("systemd-analyze verify and security", func(t *testing.T) {
		analyze := findProgram(t, "systemd-analyze", "ROOMCHAT_SYSTEMD_ANALYZE", "systemd")
		// verify wants the program to exist: the test binary stands in.
		unit := filepath.Join(t.TempDir(), "roomchat.service")
		raw, _ := os.ReadFile("deploy/roomchat.service")
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(unit, []byte(strings.Replace(string(raw), "ExecStart=/usr/local/bin/roomchat", "ExecStart="+self, 1)), 0o644)
		if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		// An exposure of 2.0 or less is what systemd calls OK; the
		// threshold counts in tenths.
		out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", unit).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security: %v\n%s", err, out)
		}
	})
	t.Run("promtool check config", func(t *testing.T) {
		promtool := findProgram(t, "promtool", "ROOMCHAT_PROMTOOL", "prometheus")
		if out, err := exec.Command(promtool, "check", "config", "deploy/prometheus.yml").CombinedOutput(); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	})
}

// quotedFiles finds the files docs/deploy.md quotes: a fenced block whose
// line before names the file with a link, [`deploy/x`](../deploy/x).
func quotedFiles(doc string) map[string]string {
	out := map[string]string{}
	re := regexp.MustCompile("(?m)^\\[`(deploy/[^`]+)`\\]\\(\\.\\./deploy/[^)]+\\):?\\n\\n```[a-z]*\\n((?s:.*?))```\\n")
	for _, m := range re.FindAllStringSubmatch(doc, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// TestDeployNginx runs roomchat as the unit does, behind nginx: pages,
// WebSockets and TLS go through; /metrics does not; the per-address cap
// counts the client nginx saw, whatever the client wrote in its headers.
func TestDeployNginx(t *testing.T) {
	t.Parallel()
	const perClient = 3
	app := startDeployed(t, "-max-per-client", strconv.Itoa(perClient)) // the unit leaves the default, 500
	ng := startNginx(t, app.port)

	t.Run("plain HTTP goes to HTTPS", func(t *testing.T) {
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest("GET", ng.httpURL+"/chat/", nil)
		req.Host = "localhost"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || loc != "https://localhost/chat/" {
			t.Errorf("%d to %q", resp.StatusCode, loc)
		}
	})
	t.Run("pages, over TLS", func(t *testing.T) {
		resp, err := ng.client.Get(ng.url + "/chat/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%d %v", resp.StatusCode, resp.Header)
		}
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Error("no Strict-Transport-Security")
		}
	})
	t.Run("/metrics is not for the world", func(t *testing.T) {
		resp, err := ng.client.Get(ng.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%d through nginx, want 404", resp.StatusCode)
		}
	})
	t.Run("WebSockets, and the cap per client address", func(t *testing.T) {
		// Two clients: 127.0.0.2 and 127.0.0.3, both loopback on Linux.
		alice := ng.dial(t, "127.0.0.2", "room1", nil)
		bob := ng.dial(t, "127.0.0.3", "room1", nil)
		talk(t, alice, bob)
		ng.dial(t, "127.0.0.2", "room1", nil)
		ng.dial(t, "127.0.0.2", "room1", nil)
		// 127.0.0.2 holds its three. Naming another address in either
		// header does not move it: nginx says who it is.
		for _, forged := range []http.Header{
			nil,
			{"X-Forwarded-For": {"127.0.0.3"}},
			{"Forwarded": {"for=127.0.0.3"}},
			{"X-Forwarded-For": {"203.0.113.7, 127.0.0.3"}, "Forwarded": {`for="[2001:db8::1]"`}},
		} {
			if code := ng.handshake(t, "127.0.0.2", forged); code != http.StatusTooManyRequests {
				t.Errorf("from 127.0.0.2 with %v: %d, want 429", forged, code)
			}
		}
		// The cap is 127.0.0.2's, not nginx's: 127.0.0.3 still gets in.
		ng.dial(t, "127.0.0.3", "room1", nil)
		if code := ng.handshake(t, "127.0.0.3", nil); code != http.StatusSwitchingProtocols {
			t.Errorf("from 127.0.0.3: %d, want 101", code)
		}
		// And roomchat's log names the clients, not nginx. A connection
		// is logged once served, a moment after its 101.
		var remotes map[string]int
		waitFor(t, func() string { return fmt.Sprintf("the log to name 3 connections from each, so far %v", remotes) }, func() bool {
			remotes = map[string]int{}
			for _, e := range app.jsonLog(t) {
				if e["msg"] == "connected" {
					remotes[fmt.Sprint(e["remote"])]++
				}
			}
			return remotes["127.0.0.2"] == perClient && remotes["127.0.0.3"] == 3 && len(remotes) == 2
		})
	})
}

// TestDeployNginxBrowser chats in Chromium through nginx, over TLS with
// the test's own certificate.
func TestDeployNginxBrowser(t *testing.T) {
	t.Parallel()
	app := startDeployed(t)
	ng := startNginx(t, app.port)
	b := startBrowser(t, "--ignore-certificate-errors")
	alice, bob := b.newTab(t, ng.url+"/chat/"), b.newTab(t, ng.url+"/chat/")
	alice.joinAs(t, "Alice", "room1")
	bob.joinAs(t, "Bob", "room1")
	alice.say(t, "Hello through nginx")
	bob.waitFor(t, countOf("Alice", "Hello through nginx")+" > 0")
	bob.say(t, "Loud and clear")
	alice.waitFor(t, countOf("Bob", "Loud and clear")+" > 0")
	alice.expect(t, `location.protocol === "https:"`)
}

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
	var h health
	getJSON(t, base+"/healthz", &h)
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

// ---- helpers: the real programs ----

// roomchatProcess is the roomchat command, run by a test.
type roomchatProcess struct {
	port, metricsPort string
	stderr            *syncBuffer
}

// startDeployed runs roomchat with deploy/roomchat.service's flags, on
// free ports, then extra flags, which the flag package lets override them.
func startDeployed(t *testing.T, extra ...string) *roomchatProcess {
	t.Helper()
	p := &roomchatProcess{port: strconv.Itoa(freePort(t)), metricsPort: strconv.Itoa(freePort(t))}
	unit := deployFile(t, "roomchat.service", map[string]string{"app": p.port, "metrics": p.metricsPort})
	p.stderr = startMain(t, append(execStartArgs(t, unit), extra...)...)
	return p
}

// jsonLog parses the log, one JSON object a line.
func (p *roomchatProcess) jsonLog(t testing.TB) []map[string]any {
	t.Helper()
	return parseJSONLog(t, p.stderr.String())
}

// startMain runs the roomchat command (this test binary, as runMain runs
// it) with args until the test ends, when it gets SIGTERM, as systemd
// stops it; it must exit within shutdownTimeout and a second. startMain
// returns once the server says it is listening, with its log so far and to
// come.
func startMain(t testing.TB, args ...string) *syncBuffer {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(args, "\n"))
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	listening := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		lines := bufio.NewScanner(out)
		for seen := false; lines.Scan(); {
			fmt.Fprintln(&log, lines.Text())
			if !seen && strings.Contains(lines.Text(), "roomchat listening") {
				seen = true
				close(listening)
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { <-done; exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("roomchat exited with %v after SIGTERM:\n%s", err, log.String())
			}
		case <-time.After(shutdownTimeout + time.Second):
			cmd.Process.Kill()
			t.Errorf("roomchat still running %v after SIGTERM", shutdownTimeout+time.Second)
		}
	})
	select {
	case <-listening:
	case err := <-exited:
		exited <- err
		t.Fatalf("roomchat %s exited: %v\n%s", strings.Join(args, " "), err, log.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("roomchat not listening after 10 s:\n%s", log.String())
	}
	return &log
}

// parseJSONLog parses a log of one JSON object a line.
func parseJSONLog(t testing.TB, log string) []map[string]any {
	t.Helper()
	var entries []map[string]any
	for line := range strings.Lines(log) {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	return entries
}

// nginxServer is nginx running deploy/nginx.conf for one test.
type nginxServer struct {
	url, httpURL string       // https://localhost:PORT and http://127.0.0.1:PORT
	client       *http.Client // trusts the test's certificate
	tls          *tls.Config
	addr         string // where it listens for HTTPS
}

// startNginx runs nginx with deploy/nginx.conf in front of roomchat on
// 127.0.0.1:appPort, with a certificate for localhost made for the test,
// and stops it when the test ends. nginx runs in the foreground, its
// files (pid, logs, buffers) in a temporary folder, included from a main
// configuration that stands in for Debian's /etc/nginx/nginx.conf.
func startNginx(t *testing.T, appPort string) *nginxServer {
	t.Helper()
	bin := findProgram(t, "nginx", "ROOMCHAT_NGINX", "nginx")
	dir := t.TempDir()
	// nginx's workers run as nobody when it is started as root: they must
	// reach the folder. The key stays the master's alone (mode 600).
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestCertificate(t, dir)
	https, plain := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	site := deployFile(t, "nginx.conf", map[string]string{"https": https, "http": plain, "dir": dir, "app": appPort})
	mainConf := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
worker_processes 1;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/roomchat.conf;
}
`, dir)
	for name, text := range map[string]string{"nginx.conf": mainConf, "roomchat.conf": site} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	errorLog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "error.log")); return string(b) }
	startProgram(t, cmd, "127.0.0.1:"+https, errorLog)

	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	addr := "127.0.0.1:" + https
	dialer := &net.Dialer{}
	return &nginxServer{
		url: "https://localhost:" + https, httpURL: "http://127.0.0.1:" + plain, tls: cfg, addr: addr,
		// localhost is 127.0.0.1 here, whatever the resolver says.
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, addr)
			}}},
	}
}

// dial opens a WebSocket through nginx to room, from the loopback address
// from, with extra headers, as a page of the site would.
func (ng *nginxServer) dial(t testing.TB, from, room string, header http.Header) *websocket.Conn {
	t.Helper()
	cfg, err := websocket.NewConfig(ng.wsURL(room), ng.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = header // the connection is TLS already: dialFrom
	conn, err := ng.dialFrom(from)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		conn.Close()
		t.Fatalf("handshake from %s: %v", from, err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// handshake makes a WebSocket handshake through nginx from the loopback
// address from, with extra headers, and returns the status.
func (ng *nginxServer) handshake(t testing.TB, from string, header http.Header) int {
	t.Helper()
	conn, err := ng.dialFrom(from)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest("GET", ng.url+"/ws/chat/room1/", nil)
	setUpgradeHeaders(req.Header)
	req.Header.Set("Origin", ng.url)
	for k, v := range header {
		req.Header[k] = v
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// dialFrom opens a TLS connection to nginx from a given loopback address.
func (ng *nginxServer) dialFrom(from string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: recvTimeout}
	conn, err := tls.DialWithDialer(d, "tcp", ng.addr, ng.tls)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(recvTimeout))
	return conn, nil
}

// wsURL is the WebSocket address of room through nginx.
func (ng *nginxServer) wsURL(room string) string {
	return "wss" + strings.TrimPrefix(ng.url, "https") + "/ws/chat/" + room + "/"
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

// startProgram starts cmd, in a process group of its own, and waits until
// it accepts connections on addr; it stops the program (SIGTERM, then
// SIGKILL after 5 s) when the test ends. log says what the program said,
// should it exit early.
func startProgram(t *testing.T, cmd *exec.Cmd, addr string, log func() string) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var mu sync.Mutex
	var waitErr error
	go func() {
		err := cmd.Wait()
		mu.Lock()
		waitErr = err
		mu.Unlock()
		close(exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	name := filepath.Base(cmd.Path)
	waitFor(t, func() string { return name + " to listen on " + addr }, func() bool {
		select {
		case <-exited:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%s exited: %v\n%s", name, waitErr, log())
		default:
		}
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}
