package main

// Connection limits, page headers and the Host check, from outside: raw TCP
// connections held open, as a client that wants to exhaust the server
// would hold them.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hold opens a TCP connection to s, sends one GET of path with the extra
// headers (an upgrade if path is a room's), and returns the status and the
// connection, left open: a WebSocket or a keep-alive the server still holds.
// A connection the server refused at accept reads its 503 the same way.
func hold(t *testing.T, s *testServer, path string, header http.Header) (int, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(recvTimeout))
	req, _ := http.NewRequest("GET", s.URL+path, nil)
	if strings.HasPrefix(path, "/ws/") {
		setUpgradeHeaders(req.Header)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if host := header.Get("Host"); host != "" {
		req.Host = host
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, conn
}

// forwardedFrom is the header a proxy adds for a client at addr.
func forwardedFrom(addr string) http.Header {
	return http.Header{"X-Forwarded-For": {addr}}
}

func TestPerClientCap(t *testing.T) {
	const perClient = 3
	t.Run("direct", func(t *testing.T) {
		s := newTestServer(t, options{perClient: perClient})
		for range perClient {
			if code, _ := hold(t, s, "/ws/chat/cap/", nil); code != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", code)
			}
		}
		// One WebSocket over the cap is told so, whatever it says of itself
		// in X-Forwarded-For, and its connection is closed once the answer
		// is out: it does not stay as a keep-alive.
		code, conn := hold(t, s, "/ws/chat/cap/", forwardedFrom("203.0.113.9"))
		if code != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429", code)
		}
		if n, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after the 429: read %d bytes, %v; want the server's close (EOF)", n, err)
		}
		// The address may hold perClientSlack TCP connections beyond its
		// WebSockets: past them, it is refused at accept.
		for range perClientSlack {
			if code, _ := hold(t, s, "/healthz", nil); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
		}
		if code, _ := hold(t, s, "/healthz", nil); code != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", code)
		}
	})
	t.Run("behind a trusted proxy", func(t *testing.T) {
		proxy := netip.MustParsePrefix("127.0.0.0/8")
		s := newTestServer(t, options{perClient: perClient, proxies: []netip.Prefix{proxy}})
		for range perClient {
			if code, _ := hold(t, s, "/ws/chat/cap/", forwardedFrom("203.0.113.5")); code != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", code)
			}
		}
		if code, _ := hold(t, s, "/ws/chat/cap/", forwardedFrom("203.0.113.5")); code != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429", code)
		}
		// Another client behind the same proxy still gets in, named in
		// either header, and a hop the client wrote itself is not believed.
		if code, _ := hold(t, s, "/ws/chat/cap/", http.Header{"Forwarded": {`for="[2001:db8::1]:4711"`}}); code != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", code)
		}
		if code, _ := hold(t, s, "/ws/chat/cap/", forwardedFrom("198.51.100.7, 203.0.113.5")); code != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429: the nearest hop is 203.0.113.5", code)
		}
	})
}

func TestTotalCapShedsIdleKeepAlivesFirst(t *testing.T) {
	const maxConns = 4
	s := newTestServer(t, options{maxConns: maxConns})
	for range maxConns {
		if code, _ := hold(t, s, "/healthz", nil); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	// net/http marks a keep-alive idle just after its answer is out.
	idle := func() int { s.limit.mu.Lock(); defer s.limit.mu.Unlock(); return len(s.limit.idle) }
	waitFor(t, func() string { return fmt.Sprintf("%d idle keep-alives", idle()) }, func() bool { return idle() == maxConns })
	// Every slot holds an idle keep-alive: each handshake sheds one.
	for range maxConns {
		if code, _ := hold(t, s, "/ws/chat/full/", nil); code != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", code)
		}
	}
	// Every slot holds a WebSocket: nothing can be shed.
	if code, _ := hold(t, s, "/ws/chat/full/", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	if total, refused := s.limit.counts(); total != maxConns || refused != 1 {
		t.Errorf("%d connections held and %d refused, want %d and 1", total, refused, maxConns)
	}
}

func TestPagesCarrySecurityHeaders(t *testing.T) {
	s := newTestServer(t, options{})
	for _, path := range []string{"/chat/", "/asyncapi/docs/", "/static/chat.js", "/asyncapi/schema/", "/healthz", "/nowhere"} {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k, v := range securityHeaders {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s is %q, want %q", path, k, got, v)
			}
		}
	}
	if !strings.Contains(securityHeaders["Content-Security-Policy"], "frame-ancestors 'none'") {
		t.Error("the pages may be framed")
	}
	resp, err := http.Get(s.URL + "/static/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/static/ answered %d, want 404 (no listing)", resp.StatusCode)
	}
}

// TestDNSRebinding sends what a page on rebind.evil.example sends once its
// name resolves to 127.0.0.1: Host and Origin both name it.
func TestDNSRebinding(t *testing.T) {
	s := newTestServer(t, options{addr: "127.0.0.1:8000", hosts: []string{"chat.example"}})
	port := s.Listener.Addr().(*net.TCPAddr).Port
	tests := []struct {
		host string
		want int
	}{
		{"rebind.evil.example", http.StatusMisdirectedRequest},
		{"localhost", http.StatusSwitchingProtocols},
		{"127.0.0.1", http.StatusSwitchingProtocols},
		{"[::1]", http.StatusSwitchingProtocols},
		{"chat.example", http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		hostport := net.JoinHostPort(strings.Trim(tt.host, "[]"), strconv.Itoa(port))
		code, _ := hold(t, s, "/ws/chat/lobby/", http.Header{"Host": {hostport}, "Origin": {"http://" + hostport}})
		if code != tt.want {
			t.Errorf("Host %s: status %d, want %d", hostport, code, tt.want)
		}
	}
}

// TestRefusalsArriveWhole refuses connections at accept, each sending its
// request at once, as a client in a hurry does: every one reads a whole 503
// with a Retry-After, never a reset that the unread request would cause.
func TestRefusalsArriveWhole(t *testing.T) {
	s := newTestServer(t, options{maxConns: 1})
	hold(t, s, "/ws/chat/full/", nil)
	for i := range 30 {
		code, header := refusedAtOnce(t, s)
		retry, err := strconv.Atoi(header.Get("Retry-After"))
		if code != http.StatusServiceUnavailable || err != nil || retry < retryAfterMin || retry > 2*retryAfterMin {
			t.Fatalf("refusal %d: status %d, Retry-After %q", i, code, header.Get("Retry-After"))
		}
	}
}

// refusedAtOnce writes a handshake in the same write as the connection
// opens its way, and reads the answer, leaving the connection open until
// the test ends.
func refusedAtOnce(t *testing.T, s *testServer) (int, http.Header) {
	return refusedOrNot(t, s)
}

// refusedOrNot is refusedAtOnce, safe to call from any goroutine.
func refusedOrNot(t *testing.T, s *testServer) (int, http.Header) {
	t.Helper()
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(recvTimeout))
	req, _ := http.NewRequest("GET", s.URL+"/ws/chat/full/", nil)
	setUpgradeHeaders(req.Header)
	req.Header.Set("X-Padding", strings.Repeat("x", 8<<10)) // more than one segment in flight
	if err := req.Write(conn); err != nil {
		t.Error(err)
		return 0, nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Errorf("no answer: %v", err)
		return 0, nil
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestEmptyRoomNames: a room name cannot be empty, however the path says so.
func TestEmptyRoomNames(t *testing.T) {
	s := newTestServer(t, options{})
	for _, path := range []string{"/ws/chat//", "/ws/chat/"} {
		if code, _ := hold(t, s, path, nil); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", path, code)
		}
	}
}

// TestDialsRacingAtTheCap dials many WebSockets at once at a server that
// has room for some of them: each is answered 101 or 503, and nothing else
// (a refusal for capacity is never a 403 from inside the handshake).
func TestDialsRacingAtTheCap(t *testing.T) {
	const maxConns, dials = 20, 100
	s := newTestServer(t, options{maxConns: maxConns, perClient: 0})
	codes := make(chan int, dials)
	var wg sync.WaitGroup
	for range dials {
		wg.Go(func() {
			code, _ := refusedOrNot(t, s)
			codes <- code
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for code := range codes {
		count[code]++
	}
	if count[http.StatusSwitchingProtocols] != maxConns || count[http.StatusSwitchingProtocols]+count[http.StatusServiceUnavailable] != dials {
		t.Errorf("answers: %v; want %d × 101 and the rest 503", count, maxConns)
	}
}

func TestClientAddrKeys(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name, remote, xff string
		bits              int
		want              string // "" for errUnreadableHop
	}{
		{"IPv4 peer", "192.0.2.7:5000", "", 0, "192.0.2.7"},
		{"IPv4-mapped peer is its IPv4 address", "[::ffff:192.0.2.7]:5000", "", 0, "192.0.2.7"},
		{"IPv6 peer counts by its /64", "[2001:db8:1:2:3:4:5:6]:5000", "", 0, "2001:db8:1:2::"},
		{"IPv6 peer with a zone", "[fe80::1%eth0]:5000", "", 0, "fe80::"},
		{"a header from an untrusted peer is ignored", "192.0.2.7:5000", "2001:db8::1", 0, "192.0.2.7"},
		{"forwarded IPv4", "10.0.0.1:5000", "203.0.113.5", 0, "203.0.113.5"},
		{"forwarded IPv6 by its /64", "10.0.0.1:5000", "2001:db8::4", 0, "2001:db8::"},
		{"forwarded IPv6, another /64", "10.0.0.1:5000", "2001:db8:0:1::4", 0, "2001:db8:0:1::"},
		{"forwarded zones are dropped", "10.0.0.1:5000", "2001:db8::1%a", 0, "2001:db8::"},
		{"forwarded IPv4-compatible shares ::/64", "10.0.0.1:5000", "::10.0.0.1", 0, "::"},
		{"forwarded IPv4-mapped", "10.0.0.1:5000", "::ffff:203.0.113.5", 0, "203.0.113.5"},
		{"-ipv6-prefix 128", "10.0.0.1:5000", "2001:db8::4", 128, "2001:db8::4"},
		{"-ipv6-prefix 48", "10.0.0.1:5000", "2001:db8:1:2::4", 48, "2001:db8:1::"},
		{"trusted hops are skipped", "10.0.0.1:5000", "203.0.113.5, fd00::9, 10.0.0.2", 0, "203.0.113.5"},
		{"an untrusted hop ends the walk", "10.0.0.1:5000", "unknown, 203.0.113.5", 0, "203.0.113.5"},
		{"no header: the proxy itself", "10.0.0.1:5000", "", 0, "10.0.0.1"},
		{"unknown", "10.0.0.1:5000", "unknown", 0, ""},
		{"ip:port", "10.0.0.1:5000", "203.0.113.5:4711", 0, ""},
		{"garbage", "10.0.0.1:5000", "<script>", 0, ""},
		{"empty", "10.0.0.1:5000", " ", 0, ""},
		{"unreadable behind a trusted hop", "10.0.0.1:5000", "unknown, 10.0.0.2", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			got, err := clientAddr(r, proxies, tc.bits)
			switch {
			case tc.want == "" && !errors.Is(err, errUnreadableHop):
				t.Fatalf("got %v, %v; want errUnreadableHop", got, err)
			case tc.want != "" && (err != nil || got != netip.MustParseAddr(tc.want)):
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestPerClientCapCountsIPv6ByPrefix(t *testing.T) {
	const perClient = 3
	proxy := netip.MustParsePrefix("127.0.0.0/8")
	s := newTestServer(t, options{perClient: perClient, proxies: []netip.Prefix{proxy}})
	// Three addresses of one /64, and a zone: one client, at its cap.
	for _, a := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::3%a"} {
		if code, _ := hold(t, s, "/ws/chat/cap/", forwardedFrom(a)); code != http.StatusSwitchingProtocols {
			t.Fatalf("%s: status %d", a, code)
		}
	}
	if code, _ := hold(t, s, "/ws/chat/cap/", forwardedFrom("2001:db8::4")); code != http.StatusTooManyRequests {
		t.Fatalf("the fourth address of the /64: status %d, want 429", code)
	}
	if code, _ := hold(t, s, "/ws/chat/cap/", forwardedFrom("2001:db8:0:1::1")); code != http.StatusSwitchingProtocols {
		t.Fatalf("another /64: status %d, want 101", code)
	}
}

func TestUnreadableForwardedHopIsRefused(t *testing.T) {
	proxy := netip.MustParsePrefix("127.0.0.0/8")
	s := newTestServer(t, options{perClient: 3, proxies: []netip.Prefix{proxy}})
	for _, hop := range []string{"unknown", "203.0.113.5:4711", "garbage"} {
		req, _ := http.NewRequest("GET", s.URL+"/ws/chat/room/", nil)
		setUpgradeHeaders(req.Header)
		req.Header.Set("X-Forwarded-For", hop)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "-trust-proxy must name the client by its IP address") {
			t.Fatalf("%s: %d %q, want 400 naming -trust-proxy", hop, resp.StatusCode, body)
		}
	}
	// None of them counted as the proxy: the proxy itself still gets in.
	if code, _ := hold(t, s, "/ws/chat/room/", nil); code != http.StatusSwitchingProtocols {
		t.Fatalf("the proxy itself: status %d, want 101", code)
	}
	if n := s.hub.stats.refused[refusedForwarded].Load(); n != 3 {
		t.Errorf("%d refusals counted as forwarded, want 3", n)
	}
}

func TestForeignOriginBodySaysWhatToDo(t *testing.T) {
	s := newTestServer(t, options{})
	req, _ := http.NewRequest("GET", s.URL+"/ws/chat/room/", nil)
	setUpgradeHeaders(req.Header)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	host := strings.TrimPrefix(s.URL, "http://")
	want := `a page from origin "https://evil.example" may not open a WebSocket here: only pages of http://` + host +
		" (this request's own scheme and Host) may, and the origins the server lists with its -origins flag\n"
	if resp.StatusCode != http.StatusForbidden || string(body) != want {
		t.Fatalf("got %d %q, want 403 %q", resp.StatusCode, body, want)
	}
}
