package main

// What a trusted proxy's X-Forwarded-Proto changes (security.go,
// requestScheme): the scheme a page's Origin must have, and the one the
// AsyncAPI document's server names. From anyone else it changes nothing.

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestOriginSchemeBehindTLSProxy(t *testing.T) {
	proxy := netip.MustParsePrefix("127.0.0.0/8")
	s := newTestServer(t, options{proxies: []netip.Prefix{proxy}})
	host := strings.TrimPrefix(s.URL, "http://")
	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"https page, proxy says https", http.Header{"Origin": {"https://" + host}, "X-Forwarded-Proto": {"https"}}, 101},
		{"http page, proxy says https", http.Header{"Origin": {"http://" + host}, "X-Forwarded-Proto": {"https"}}, 403},
		{"https page, Forwarded proto=https", http.Header{"Origin": {"https://" + host}, "Forwarded": {"for=203.0.113.5;proto=https"}}, 101},
		{"https page, proxy says nothing", http.Header{"Origin": {"https://" + host}}, 403},
		{"http page, proxy says nothing", http.Header{"Origin": {"http://" + host}}, 101},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _ := hold(t, s, "/ws/chat/room/", tc.header); code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
		})
	}
	// From a peer that is not a trusted proxy, X-Forwarded-Proto is not believed.
	direct := newTestServer(t, options{})
	header := http.Header{"Origin": {"https://" + strings.TrimPrefix(direct.URL, "http://")}, "X-Forwarded-Proto": {"https"}}
	if code, _ := hold(t, direct, "/ws/chat/room/", header); code != http.StatusForbidden {
		t.Fatalf("X-Forwarded-Proto from anyone: status %d, want 403", code)
	}
}

func TestSchemaBehindTLSProxy(t *testing.T) {
	proxied := newTestServer(t, options{proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	direct := newTestServer(t, options{})
	for _, tc := range []struct {
		name string
		s    *testServer
		want string
	}{
		{"a trusted proxy says https", proxied, "wss"},
		{"anyone else says https", direct, "ws"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tc.s.URL+"/asyncapi/schema/", nil)
			req.Host = "chat.example.com:8443"
			req.Header.Set("X-Forwarded-Proto", "https")
			var served apiDoc
			doJSON(t, http.DefaultClient, req, &served)
			server := served.at("servers", "roomchat").(map[string]any)
			if server["protocol"] != tc.want || server["host"] != "chat.example.com:8443" {
				t.Errorf("server is %v://%v, want %s://chat.example.com:8443", server["protocol"], server["host"], tc.want)
			}
		})
	}
}
