package main

// The HTTP side of the server: the WebSocket handshake, the routes, the
// health check, and the address it prints.

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestHandshake covers the checks made before a connection is accepted.
func TestHandshake(t *testing.T) {
	s := newTestServer(t, options{origins: []string{"https://Chat.Example.com"}})
	host := strings.TrimPrefix(s.URL, "http://")
	tests := []struct {
		name, path, origin string
		want               int
	}{
		{"same origin", "/ws/chat/lobby/", "http://" + host, 101},
		{"same origin, other case", "/ws/chat/lobby/", "HTTP://" + strings.ToUpper(host), 101},
		{"no origin (not a browser)", "/ws/chat/lobby/", "", 101},
		{"path without the slash", "/ws/chat/lobby", "", 101},
		{"foreign origin", "/ws/chat/lobby/", "http://evil.example", 403},
		{"same host, other port", "/ws/chat/lobby/", "http://127.0.0.1:1", 403},
		{"null origin", "/ws/chat/lobby/", "null", 403},
		{"origin allowed by -origins", "/ws/chat/lobby/", "https://chat.example.com", 101},
		{"allowed host, other scheme", "/ws/chat/lobby/", "http://chat.example.com", 403},
		{"same host, https on an http server", "/ws/chat/lobby/", "https://" + host, 403},
		{"same host, ws scheme", "/ws/chat/lobby/", "ws://" + host, 403},
		{"same host, foo scheme", "/ws/chat/lobby/", "foo://" + host, 403},
		{"same host, no scheme", "/ws/chat/lobby/", "//" + host, 403},
		{"room of every allowed character", "/ws/chat/.-_aZ09/", "", 101},
		{"room of 99 characters", "/ws/chat/" + strings.Repeat("r", 99) + "/", "", 101},
		{"room of 100 characters", "/ws/chat/" + strings.Repeat("r", 100) + "/", "", 400},
		{"room with !", "/ws/chat/bad!room/", "", 400},
		{"room with an escaped space", "/ws/chat/bad%20room/", "", 400},
		{"room with an escaped slash", "/ws/chat/a%2Fb/", "", 400},
		{"room with unicode", "/ws/chat/caf%C3%A9/", "", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := handshakeStatus(t, s.URL+tt.path, tt.origin); got != tt.want {
				t.Errorf("got HTTP %d, want %d", got, tt.want)
			}
		})
	}
	s.waitHealth(t, func(h health) bool { return h.Connections == 0 && h.Rooms == 0 })
}

func TestBadRoomGetsPlainTextReason(t *testing.T) {
	s := newTestServer(t, options{})
	resp, err := http.Get(s.URL + "/ws/chat/bad%20room/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		!strings.Contains(string(body), "invalid room name") {
		t.Errorf("got %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestHealthz checks the counts and totals of /healthz. A client can read
// a frame a moment before the writer has counted it, so it waits for the
// totals to come right rather than reading them once.
func TestHealthz(t *testing.T) {
	s := newTestServer(t, options{})
	a, b := s.dial(t, "h1"), s.dial(t, "h1")
	s.dial(t, "h2")
	sendText(t, a, chat("hi", "A"))
	expectText(t, b, chat("hi", "A"))
	want := health{Status: healthHealthy, Rooms: 2, Connections: 3, MessagesReceived: 1, FramesDelivered: 1, Layer: layerHealth{Kind: "memory"}}
	s.waitHealth(t, func(h health) bool { return h == want })
}

func TestRoutes(t *testing.T) {
	s := newTestServer(t, options{})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		method, path string
		status       int
		header, want string // a response header and what it must contain
	}{
		{"GET", "/", 302, "Location", "/chat/"},
		{"GET", "/chat/", 200, "Content-Type", "text/html"},
		{"GET", "/healthz", 200, "Content-Type", "application/json"},
		{"GET", "/asyncapi/schema/", 200, "Content-Type", "application/json"},
		{"GET", "/asyncapi/docs/", 200, "Content-Type", "text/html"},
		{"GET", "/nothing-here", 404, "", ""},
		{"POST", "/ws/chat/lobby/", 405, "", ""},
		{"GET", "/ws/chat/lobby/extra", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, s.URL+tt.path, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(resp.Header.Get(tt.header), tt.want) {
				t.Errorf("got %d %s=%q, want %d with %q", resp.StatusCode, tt.header, resp.Header.Get(tt.header), tt.status, tt.want)
			}
		})
	}
}

func TestBrowsableHost(t *testing.T) {
	for addr, want := range map[string]string{
		"[::]:8000":        "localhost:8000",
		"0.0.0.0:8000":     "localhost:8000",
		"127.0.0.1:8000":   "localhost:8000",
		"[::1]:8000":       "localhost:8000",
		"192.0.2.7:8000":   "192.0.2.7:8000",
		"[2001:db8::1]:80": "[2001:db8::1]:80",
	} {
		if got := browsableHost(addr); got != want {
			t.Errorf("browsableHost(%q) = %q, want %q", addr, got, want)
		}
	}
}
