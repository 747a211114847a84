package main

// Wrong API keys (apikeyguard.go): throttled per client address, logged
// once a window, counted in /metrics; other addresses are not slowed.

import (
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// apiFrom makes one GET /api/rooms with key, as the client at addr behind
// the trusted proxy, and returns the status and Retry-After.
func apiFrom(t *testing.T, s *testServer, addr, key string) (int, string) {
	t.Helper()
	resp := request(t, s.URL+"/api/rooms", http.Header{"Authorization": {"Bearer " + key}, "X-Forwarded-For": {addr}})
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func TestWrongAPIKeysAreThrottledPerAddress(t *testing.T) {
	var logs syncBuffer
	opts := options{apiKey: []byte(testAPIKey), proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	h, err := buildHub(opts, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s := serveHub(t, h, opts)
	const guesser, backend = "203.0.113.66", "198.51.100.7"
	for i := range maxAPIKeyFailures {
		if code, _ := apiFrom(t, s, guesser, "guess-"+strconv.Itoa(i)+"-0123456789"); code != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d, want 401", i+1, code)
		}
	}
	// Past the limit, any key from that address waits, the right one too.
	for _, key := range []string{"one-guess-too-many-0123", testAPIKey} {
		code, retry := apiFrom(t, s, guesser, key)
		if secs, err := strconv.Atoi(retry); code != http.StatusTooManyRequests || err != nil || secs < 1 || secs > 60 {
			t.Fatalf("after %d wrong keys: %d, Retry-After %q; want 429 with 1 to 60 s", maxAPIKeyFailures, code, retry)
		}
	}
	// The backend, elsewhere, is not slowed.
	if code, _ := apiFrom(t, s, backend, testAPIKey); code != http.StatusOK {
		t.Fatalf("the right key from another address: %d, want 200", code)
	}
	// /metrics is not for a proxy's clients: its exposition is read here.
	m := parseExposition(t, writeMetrics(s.hub, s.limit))
	if m["roomchat_api_key_failures_total"] != maxAPIKeyFailures || m["roomchat_api_key_throttled_total"] != 2 {
		t.Errorf("metrics: %v failures, %v throttled; want %d and 2", m["roomchat_api_key_failures_total"], m["roomchat_api_key_throttled_total"], maxAPIKeyFailures)
	}
	// Two lines for the address in the window, not one a request.
	if n := strings.Count(logs.String(), "remote="+guesser); n != 2 {
		t.Errorf("%d log lines name the guesser, want 2 (the first wrong key, the throttle):\n%s", n, logs.String())
	}
	checkQuiet(t, logs.String(), testAPIKey)
}

// TestKeyGuardBound fills the guard to maxAPIKeyAddrs: new addresses'
// failures then share one count, which throttles new addresses together;
// an address with a count of its own keeps it; a window later, all is
// forgotten.
func TestKeyGuardBound(t *testing.T) {
	g := keyGuard{failures: map[netip.Addr]*keyFailures{}}
	now := time.Unix(1_800_000_000, 0)
	known := netip.MustParseAddr("192.0.2.1")
	g.failed(known, now)
	for i := 1; len(g.failures) < maxAPIKeyAddrs; i++ {
		g.failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	for i := range maxAPIKeyFailures {
		g.failed(netip.AddrFrom4([4]byte{172, 16, 0, byte(i)}), now)
	}
	if len(g.failures) != maxAPIKeyAddrs+1 {
		t.Fatalf("%d counts, want %d and the shared one", len(g.failures), maxAPIKeyAddrs)
	}
	if g.wait(netip.MustParseAddr("172.16.1.1"), now) <= 0 {
		t.Error("a new address is not throttled while the shared count is over")
	}
	if g.wait(known, now) != 0 {
		t.Error("an address with a count of its own, under the limit, is throttled")
	}
	later := now.Add(apiKeyWindow)
	if g.wait(netip.MustParseAddr("172.16.1.1"), later) != 0 {
		t.Error("still throttled a window later")
	}
	g.failed(netip.MustParseAddr("172.16.1.1"), later)
	if len(g.failures) != 1 {
		t.Errorf("%d counts a window later, want 1", len(g.failures))
	}
}
