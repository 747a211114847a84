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
