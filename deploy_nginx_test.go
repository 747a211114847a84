package main

// roomchat behind the real nginx, running deploy/nginx.conf as
// docs/deploy.md quotes it: TLS, the redirect from plain HTTP, WebSockets,
// and the client's own address.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// TestDeployNginx runs roomchat as the unit does, behind nginx: pages,
// WebSockets and TLS go through; /metrics does not; the per-address cap
// counts the client nginx saw, whatever the client wrote in its headers.
func TestDeployNginx(t *testing.T) {
	t.Parallel()
	const perClient = 3
	app := startDeployed(t, "-max-per-client", strconv.Itoa(perClient)) // the unit leaves the default, 500
	ng := startNginx(t, app.port)

	t.Run("plain HTTP goes to HTTPS, on its port", func(t *testing.T) {
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest("GET", ng.httpURL+"/chat/?room=room1", nil)
		req.Host = "localhost:" + strings.TrimPrefix(ng.httpURL, "http://127.0.0.1:") // as a browser names it
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// HTTPS is not on 443 here: the redirect must name its port.
		want := ng.url + "/chat/?room=room1"
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusMovedPermanently || loc != want {
			t.Fatalf("%d to %q, want 301 to %q", resp.StatusCode, loc, want)
		}
		if resp, err = ng.client.Get(loc); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", loc, resp.StatusCode)
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
	b := startBrowser(t)
	b.insecure = true
	alice, bob := b.newTab(t, ng.url+"/chat/"), b.newTab(t, ng.url+"/chat/")
	alice.joinAs(t, "Alice", "room1")
	bob.joinAs(t, "Bob", "room1")
	alice.say(t, "Hello through nginx")
	bob.waitFor(t, countOf("Alice", "Hello through nginx")+" > 0")
	bob.say(t, "Loud and clear")
	alice.waitFor(t, countOf("Bob", "Loud and clear")+" > 0")
	alice.expect(t, `location.protocol === "https:"`)
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
