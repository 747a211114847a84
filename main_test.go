package main

// The server tested from outside, as a client sees it: a real httptest.Server
// on loopback and x/net/websocket clients, with exact frames asserted. The
// helpers at the end are shared by the other _test.go files.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// chat is the new_chat_message frame a client sends, and the one the others
// receive: the server's encoding of the same two fields.
func chat(message, name string) string {
	return string(outJSON(outFrame{Action: "new_chat_message", Payload: chatPayload{Message: message, Name: name}}))
}

// outJSON is out's JSON as the server encodes it: a frame's payload.
func outJSON(out outFrame) []byte {
	return payloadOf(framed(out).wire)
}

const pong = `{"action":"pong","payload":null}`

func TestBroadcastReachesOthersInRoomOnly(t *testing.T) {
	s := newTestServer(t, options{})
	alice, bob, carol := s.dial(t, "room1"), s.dial(t, "room1"), s.dial(t, "room1")
	dave := s.dial(t, "room2")

	sendText(t, alice, `{"action":"new_chat_message","payload":{"message":"Hello everyone!","name":"Alice"}}`)
	want := `{"action":"new_chat_message","payload":{"message":"Hello everyone!","name":"Alice"}}`
	expectText(t, bob, want)
	expectText(t, carol, want)
	expectQuiet(t, alice) // no echo to the sender
	expectQuiet(t, dave)  // nothing crosses rooms
}

func TestBroadcastIsReencoded(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "extra keys dropped",
			in:   `{"action":"new_chat_message","payload":{"message":"hi","name":"A","admin":true},"x":1}`,
			want: `{"action":"new_chat_message","payload":{"message":"hi","name":"A"}}`,
		},
		{
			name: "unicode and markup round-trip as text",
			in:   `{"action":"new_chat_message","payload":{"message":"héllo 👋 <b>&amp;</b> \u00e9","name":"Zoë"}}`,
			want: `{"action":"new_chat_message","payload":{"message":"héllo 👋 <b>&amp;</b> é","name":"Zoë"}}`,
		},
		{
			name: "empty strings accepted",
			in:   `{"action":"new_chat_message","payload":{"message":"","name":""}}`,
			want: `{"action":"new_chat_message","payload":{"message":"","name":""}}`,
		},
		{
			name: "fields in any order, spaces ignored",
			in:   ` { "payload" : { "name" : "B", "message" : "x" }, "action" : "new_chat_message" } `,
			want: `{"action":"new_chat_message","payload":{"message":"x","name":"B"}}`,
		},
	}
	s := newTestServer(t, options{})
	from, to := s.dial(t, "lobby"), s.dial(t, "lobby")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sendText(t, from, tt.in)
			expectText(t, to, tt.want)
		})
	}
}

func TestPing(t *testing.T) {
	s := newTestServer(t, options{})
	a, b := s.dial(t, "lobby"), s.dial(t, "lobby")
	for _, in := range []string{`{"action":"ping"}`, `{"action":"ping","payload":null}`, `{"action":"ping","extra":1}`} {
		sendText(t, a, in)
		expectText(t, a, pong)
	}
	expectQuiet(t, b) // a pong goes to the sender only
}

// TestErrors sends every bad input of docs/protocol.md's error table and checks
// the exact error frame that comes back, and that the connection stays open.
func TestErrors(t *testing.T) {
	loc := `["new_chat_message","payload"]`
	field := func(name string) string { return `["new_chat_message","payload","` + name + `"]` }
	entry := func(typ, loc, msg string) string {
		return `{"type":"` + typ + `","loc":` + loc + `,"msg":"` + msg + `"}`
	}
	const (
		envelope   = "Input should be a valid dictionary or instance of Envelope"
		dict       = "Input should be a valid dictionary or instance of ChatMessagePayload"
		tags       = "' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping'"
		required   = "Field required"
		noTag      = "Unable to extract tag using discriminator 'action'"
		notString  = "Input should be a valid string"
		tooLongMsg = "String should have at most 4000 characters"
	)
	tests := []struct {
		name, in string
		want     []string // the entries of the error payload, in order
	}{
		{"not JSON", `hello`, []string{entry("json_invalid", `[]`, "Invalid JSON: invalid character 'h' looking for beginning of value at line 1 column 1")}},
		{"truncated JSON", "{\n\"action\":", []string{entry("json_invalid", `[]`, "Invalid JSON: unexpected end of JSON input at line 2 column 9")}},
		{"empty frame", ``, []string{entry("json_invalid", `[]`, "Invalid JSON: unexpected end of JSON input at line 1 column 1")}},
		{"JSON array", `[1,2]`, []string{entry("model_type", `[]`, envelope)}},
		{"JSON string", `"ping"`, []string{entry("model_type", `[]`, envelope)}},
		{"JSON null", `null`, []string{entry("model_type", `[]`, envelope)}},
		{"no action", `{"payload":{}}`, []string{entry("union_tag_not_found", `[]`, noTag)}},
		{"action a number", `{"action":5}`, []string{entry("union_tag_invalid", `[]`, "Input tag '5"+tags)}},
		{"action a float", `{"action":1e3}`, []string{entry("union_tag_invalid", `[]`, "Input tag '1000.0"+tags)}},
		{"action a small float", `{"action":-0.00001}`, []string{entry("union_tag_invalid", `[]`, "Input tag '-1e-05"+tags)}},
		{"action null", `{"action":null}`, []string{entry("union_tag_invalid", `[]`, "Input tag 'None"+tags)}},
		{"action false", `{"action":false}`, []string{entry("union_tag_invalid", `[]`, "Input tag 'False"+tags)}},
		{"action a list", `{"action":["ping"]}`, []string{entry("union_tag_not_found", `[]`, noTag)}},
		{"action key in another case", `{"Action":"ping"}`, []string{entry("union_tag_not_found", `[]`, noTag)}},
		{"unknown action", `{"action":"shout"}`, []string{entry("union_tag_invalid", `[]`,
			"Input tag 'shout' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping'")}},
		{"no payload", `{"action":"new_chat_message"}`, []string{entry("missing", loc, required)}},
		{"payload not an object", `{"action":"new_chat_message","payload":"hi"}`, []string{entry("model_type", loc, dict)}},
		{"payload null", `{"action":"new_chat_message","payload":null}`, []string{entry("model_type", loc, dict)}},
		{"name missing", `{"action":"new_chat_message","payload":{"message":"hi"}}`, []string{entry("missing", field("name"), required)}},
		{"message missing", `{"action":"new_chat_message","payload":{"name":"A"}}`, []string{entry("missing", field("message"), required)}},
		{"message key in another case", `{"action":"new_chat_message","payload":{"Message":"hi","name":"A"}}`, []string{entry("missing", field("message"), required)}},
		{"both missing, message first", `{"action":"new_chat_message","payload":{}}`,
			[]string{entry("missing", field("message"), required), entry("missing", field("name"), required)}},
		{"message not a string", `{"action":"new_chat_message","payload":{"message":5,"name":"a"}}`, []string{entry("string_type", field("message"), notString)}},
		{"name null", `{"action":"new_chat_message","payload":{"message":"m","name":null}}`, []string{entry("string_type", field("name"), notString)}},
		{"one wrong, one missing", `{"action":"new_chat_message","payload":{"message":["m"]}}`,
			[]string{entry("string_type", field("message"), notString), entry("missing", field("name"), required)}},
		{"message too long", chat(strings.Repeat("a", 4001), "a"), []string{entry("string_too_long", field("message"), tooLongMsg)}},
		{"name too long", chat("hi", strings.Repeat("n", 101)), []string{entry("string_too_long", field("name"), "String should have at most 100 characters")}},
		{"ping with an object", `{"action":"ping","payload":{}}`, []string{entry("none_required", `["ping","payload"]`, "Input should be None")}},
		{"ping with a number", `{"action":"ping","payload":0}`, []string{entry("none_required", `["ping","payload"]`, "Input should be None")}},
	}
	s := newTestServer(t, options{})
	c, other := s.dial(t, "errors"), s.dial(t, "errors")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sendText(t, c, tt.in)
			expectText(t, c, `{"action":"error","payload":[`+strings.Join(tt.want, ",")+`]}`)
		})
	}
	expectQuiet(t, c)     // still open after all of that
	expectQuiet(t, other) // and no error went to anyone else
}

// TestLengthLimitsCountCharacters checks the limits in characters: a
// 4,000-character message of 2-byte and 4-byte characters is accepted.
func TestLengthLimitsCountCharacters(t *testing.T) {
	tests := []struct {
		name          string
		message, user string
		ok            bool
	}{
		{"4000 two-byte chars", strings.Repeat("é", 4000), "a", true},
		{"4000 four-byte chars", strings.Repeat("👋", 4000), "a", true},
		{"4001 two-byte chars", strings.Repeat("é", 4001), "a", false},
		{"100 four-byte chars in name", "hi", strings.Repeat("👋", 100), true},
		{"101 two-byte chars in name", "hi", strings.Repeat("é", 101), false},
	}
	s := newTestServer(t, options{})
	from, to := s.dial(t, "limits"), s.dial(t, "limits")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sendText(t, from, chat(tt.message, tt.user))
			if tt.ok {
				expectText(t, to, chat(tt.message, tt.user))
				return
			}
			if got := recvText(t, from); !strings.Contains(got, `"type":"string_too_long"`) {
				t.Fatalf("got %.200s, want a string_too_long error", got)
			}
			expectQuiet(t, to)
		})
	}
}

func TestFrameOfExactlyTheLimitIsRead(t *testing.T) {
	s := newTestServer(t, options{})
	c := s.dial(t, "big")
	in := `{"action":"ping"}` + strings.Repeat(" ", maxMessageBytes-len(`{"action":"ping"}`))
	sendText(t, c, in)
	expectText(t, c, pong)
}

func TestRateLimit(t *testing.T) {
	s := newTestServer(t, options{rate: 5}) // bursts of 10
	c := s.dial(t, "rate")
	for range 12 {
		sendText(t, c, `{"action":"ping"}`)
	}
	limited := `{"action":"error","payload":[{"type":"rate_limited","loc":[],"msg":"Too many messages: at most 5 per second"}]}`
	for i := range 12 {
		want := pong
		if i >= 10 {
			want = limited
		}
		expectText(t, c, want)
	}
}

func TestCloseCodes(t *testing.T) {
	tests := []struct {
		name string
		send func(*websocket.Conn) error
		code int
	}{
		{"binary frame", func(c *websocket.Conn) error { return websocket.Message.Send(c, []byte(`{"action":"ping"}`)) }, closeUnsupportedData},
		{"invalid UTF-8", func(c *websocket.Conn) error {
			return websocket.Message.Send(c, "{\"action\":\"ping\",\"x\":\"\xff\xfe\"}")
		}, closeInvalidPayload},
		{"client closes", func(c *websocket.Conn) error { return c.WriteClose(closeNormal) }, closeNormal},
	}
	s := newTestServer(t, options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.dial(t, "close")
			if err := tt.send(c); err != nil {
				t.Fatal(err)
			}
			expectClose(t, c, tt.code)
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	s := newTestServer(t, options{})
	s.hub.idleTimeout = 200 * time.Millisecond
	c := s.dial(t, "idle")
	start := time.Now()
	expectClose(t, c, closeGoingAway)
	if d := time.Since(start); d < s.hub.idleTimeout {
		t.Errorf("closed after %v, before the idle timeout of %v", d, s.hub.idleTimeout)
	}
}

func TestOrderFromOneSender(t *testing.T) {
	s := newTestServer(t, options{})
	from, to := s.dial(t, "order"), s.dial(t, "order")
	const n = 200
	go func() {
		for i := range n {
			if err := websocket.Message.Send(from, chat(fmt.Sprint(i), "A")); err != nil {
				return // the reader below fails the test
			}
		}
	}()
	for i := range n {
		expectText(t, to, chat(fmt.Sprint(i), "A"))
	}
	expectQuiet(t, to) // once each: nothing more after the 200th
}

// sendPaced calls send for 0 to n-1 on a goroutine of its own, never more
// than half a send queue ahead of the reader, which calls the function it
// returns after each frame it reads: a test that reads slower than it sends
// is then never dropped for it. A failed send stops the sending; the reader
// then fails on its own, waiting for what never came.
func sendPaced(n int, send func(i int) error) (read func()) {
	inFlight := make(chan struct{}, sendQueueLen/2)
	go func() {
		for i := range n {
			inFlight <- struct{}{}
			if send(i) != nil {
				return
			}
		}
	}()
	return func() { <-inFlight }
}

// TestSlowClientIsDroppedNotWaitedFor floods a room in which one member
// never reads. Its queue fills, it is closed with 1008, and the member that
// does read gets every message without a gap.
func TestSlowClientIsDroppedNotWaitedFor(t *testing.T) {
	s := newTestServer(t, options{})
	slow, fast, from := s.dial(t, "flood"), s.dial(t, "flood"), s.dial(t, "flood")
	flood(t, s, from, fast)
	expectQuiet(t, fast)
	expectClose(t, slow, closePolicyViolation)
	s.waitHealth(t, func(h health) bool { return h.Connections == 2 && h.SlowClientsDropped == 1 })
}

// TestClientThatDoesNotReadIsDroppedAsSlow sends a member that never reads
// more than the kernel's buffers hold, in fewer frames than its queue
// holds (the queue is not what stops it): its writer stalls, the write deadline passes, and it is dropped as
// slow (counted), not left holding memory.
func TestClientThatDoesNotReadIsDroppedAsSlow(t *testing.T) {
	s := newTestServer(t, options{})
	s.hub.writeTimeout = 200 * time.Millisecond
	stalled := dialRaw(t, s.wsURL("stall"))
	stalled.Conn.(*net.TCPConn).SetReadBuffer(4 << 10) // as a phone on a bad network
	from := s.dial(t, "stall")
	body := strings.Repeat("👋", maxMessageChars) // 16 KB
	for i := range sendQueueLen * 3 / 4 {        // 3 MB
		sendText(t, from, chat(body, fmt.Sprint(i)))
	}
	s.waitHealth(t, func(h health) bool { return h.Connections == 1 && h.SlowClientsDropped == 1 })
}

// flood sends big chat messages from one client until the server drops a
// member of the room for not reading. If reader is not nil, it must receive
// every message sent, in order, meanwhile.
func flood(t *testing.T, s *testServer, from, reader *websocket.Conn) {
	t.Helper()
	const maxMessages = 5_000 // 80 MB, far more than socket buffers hold
	body := strings.Repeat("👋", maxMessages-1000)
	sent := make(chan int, 1)
	go func() {
		n := 0
		for ; n < maxMessages && s.hub.stats.dropped.Load() == 0; n++ {
			if websocket.Message.Send(from, chat(body, fmt.Sprint(n))) != nil {
				break
			}
		}
		sent <- n
	}()
	received, n := 0, -1
	for n < 0 {
		select {
		case n = <-sent:
		default:
			if reader == nil {
				n = <-sent
				break
			}
			expectText(t, reader, chat(body, fmt.Sprint(received)))
			received++
		}
	}
	for ; reader != nil && received < n; received++ {
		expectText(t, reader, chat(body, fmt.Sprint(received)))
	}
	if s.hub.stats.dropped.Load() != 1 {
		t.Fatalf("sent %d messages and no client was dropped", n)
	}
}

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

// TestMemberOnceConnected checks that a member hears a message sent the
// moment its handshake completes: the join happens before the 101.
func TestMemberOnceConnected(t *testing.T) {
	s := newTestServer(t, options{})
	from := s.dial(t, "join")
	for i := range 20 {
		to := s.dial(t, "join")
		sendText(t, from, chat(fmt.Sprint(i), "A"))
		expectText(t, to, chat(fmt.Sprint(i), "A"))
		closeClient(t, to)
	}
}

// TestNothingLeftBehind connects, chats and leaves, then checks that rooms,
// connections and goroutines all return to where they started.
func TestNothingLeftBehind(t *testing.T) {
	s := newTestServer(t, options{})
	// The pinger, which the first join starts, lives as long as the server.
	closeClient(t, s.dial(t, "first"))
	s.waitHealth(t, func(h health) bool { return h.Connections == 0 })
	http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine() // with no client, not even /healthz's

	var clients []*websocket.Conn
	for i := range 30 {
		clients = append(clients, s.dial(t, fmt.Sprintf("room%d", i%3)))
	}
	s.waitHealth(t, func(h health) bool { return h.Rooms == 3 && h.Connections == 30 })
	for i, c := range clients {
		sendText(t, c, chat("bye", fmt.Sprint(i)))
	}
	for _, c := range clients {
		closeClient(t, c)
	}
	s.waitHealth(t, func(h health) bool { return h.Rooms == 0 && h.Connections == 0 })
	http.DefaultClient.CloseIdleConnections() // the keep-alive of /healthz
	waitFor(t, func() string { return fmt.Sprintf("%d goroutines, %d before", runtime.NumGoroutine(), before) },
		func() bool { return runtime.NumGoroutine() <= before })
}

// TestShutdown runs the real server loop and stops it as SIGTERM would:
// every client gets 1001 and run returns well within shutdownTimeout.
func TestShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, options{}, slog.New(slog.DiscardHandler)) }()

	url := "ws://" + ln.Addr().String() + "/ws/chat/"
	a, b, c := dialURL(t, url+"one/", ""), dialURL(t, url+"one/", ""), dialURL(t, url+"two/", "")
	for _, conn := range []*websocket.Conn{a, b, c} {
		expectQuiet(t, conn) // joined and served
	}
	start := time.Now()
	stop()
	for _, conn := range []*websocket.Conn{a, b, c} {
		expectClose(t, conn, closeGoingAway)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(shutdownTimeout + time.Second):
		t.Fatalf("run still going %v after shutdown began", time.Since(start))
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts connections")
	}
}

// TestShutdownCutsOffStuckWriters floods a client that never reads until
// it is dropped; its writer is then stuck in a write that would wait for
// writeTimeout. Shutdown must cut it off at its own deadline instead.
func TestShutdownCutsOffStuckWriters(t *testing.T) {
	s := newTestServer(t, options{})
	s.dial(t, "stuck") // never reads
	from := s.dial(t, "stuck")
	flood(t, s, from, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	s.hub.shutdown(ctx)
	if d := time.Since(start); d > defaultWriteTimeout/2 {
		t.Errorf("shutdown took %v with a 200ms deadline", d)
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

// TestFragmentedMessage sends one message in three frames, as
// gorilla/websocket clients do for anything over 4 KiB: the server joins
// them. A continuation with nothing to continue is a protocol error.
func TestFragmentedMessage(t *testing.T) {
	s := newTestServer(t, options{})
	to := s.dial(t, "frag")
	raw := dialRaw(t, s.URL+"/ws/chat/frag/")
	msg := chat(strings.Repeat("é", 3000), "F")
	third := len(msg) / 3
	raw.writeFrame(t, false, websocket.TextFrame, msg[:third])
	raw.writeFrame(t, true, websocket.PingFrame, "in between") // control frames may interleave
	raw.writeFrame(t, false, websocket.ContinuationFrame, msg[third:2*third])
	raw.writeFrame(t, true, websocket.ContinuationFrame, msg[2*third:])
	expectText(t, to, msg)

	if op, data := raw.readFrame(t); op != websocket.PongFrame || string(data) != "in between" {
		t.Fatalf("got frame %d %q, want the pong", op, data)
	}
	raw.writeFrame(t, true, websocket.ContinuationFrame, "stray")
	if op, data := raw.readFrame(t); op != websocket.CloseFrame || binary.BigEndian.Uint16(data) != closeProtocolError {
		t.Fatalf("got frame %d %q, want close 1002", op, data)
	}
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"action":"new_chat_message","payload":{"message":"Hello everyone!","name":"Alice"}}`,
		`{"action":"ping"}`, `{"action":"ping","payload":null}`, `{"action":"ping","payload":{}}`,
		`hello`, `[1]`, `null`, `{}`, `{"action":5}`, `{"action":"shout"}`,
		`{"action":"new_chat_message"}`, `{"action":"new_chat_message","payload":[]}`,
		`{"action":"new_chat_message","payload":{"message":1,"name":null}}`,
		`{"action":"new_chat_message","payload":{"message":"\ud83d","name":"\u00e9"}}`,
		"{\"action\":\"new_chat_message\",\"payload\":{\"message\":\"\xff\",\"name\":\"a\"}}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, errs := decode(data)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.Type == "" || e.Msg == "" {
					t.Fatalf("incomplete error %+v for %q", e, data)
				}
			}
			if msg != (message{}) {
				t.Fatalf("errors and a message for %q", data)
			}
			return
		}
		if _, ok := actions[msg.Action]; !ok {
			t.Fatalf("no errors but action %q has no handler, for %q", msg.Action, data)
		}
		if p, ok := msg.Payload.(chatPayload); ok {
			if n := len([]rune(p.Message)); n > maxMessageChars {
				t.Fatalf("accepted a message of %d characters", n)
			}
			if n := len([]rune(p.Name)); n > maxNameChars {
				t.Fatalf("accepted a name of %d characters", n)
			}
			// What is broadcast must decode back to the same message.
			back, errs := decode(outJSON(outFrame{Action: msg.Action, Payload: p}))
			if errs != nil || back != msg {
				t.Fatalf("re-encoded %q decodes to %+v, %v", data, back, errs)
			}
		}
	})
}

// ---- helpers, shared by the other test files ----

// mainArgsEnv makes this test binary run roomchat's own main, with the
// arguments it holds (one a line), instead of tests: runMain uses it to
// see what the command itself prints and how it exits.
const mainArgsEnv = "ROOMCHAT_MAIN_ARGS"

// TestMain lets the test binary stand in for the roomchat command
// (mainArgsEnv) or for the benchmarks' child server (serverProcessEnv).
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(mainArgsEnv); ok {
		os.Args = append([]string{"roomchat"}, strings.Split(args, "\n")...)
		main()
		return
	}
	if os.Getenv(serverProcessEnv) != "" {
		runChildServer()
		return
	}
	os.Exit(m.Run())
}

// runMain runs the roomchat command with args until it exits, within 10 s,
// and returns what it printed and its exit code.
func runMain(t testing.TB, args ...string) (output string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(args, "\n"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// testServer is roomchat on a loopback port, with its hub at hand.
type testServer struct {
	*httptest.Server
	hub   *hub
	limit *connLimit
}

// newTestServer starts a server for one test and stops it when the test ends.
// Its log is discarded; run the server with -v to watch frames.
func newTestServer(t testing.TB, opts options) *testServer {
	t.Helper()
	h, err := buildHub(opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return serveHub(t, h, opts)
}

// serveHub serves h for one test, as run does (its connections counted
// against opts' limits), and shuts it down when the test ends.
func serveHub(t testing.TB, h *hub, opts options) *testServer {
	limit := newConnLimit(opts)
	srv := httptest.NewUnstartedServer(newMux(h, opts, limit))
	srv.Listener = limit.listen(srv.Listener)
	srv.Config.ConnState = limit.track // httptest chains its own hook after it
	srv.Start()
	s := &testServer{Server: srv, hub: h, limit: limit}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		h.shutdown(ctx)
		s.Close()
	})
	return s
}

// wsURL is the WebSocket address of room on this server.
func (s *testServer) wsURL(room string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/ws/chat/" + room + "/"
}

// dial connects to room as a page from this server would.
func (s *testServer) dial(t testing.TB, room string) *websocket.Conn {
	t.Helper()
	return dialURL(t, s.wsURL(room), s.URL)
}

// dialURL opens a WebSocket, closed when the test ends. x/net/websocket
// always sends an Origin; an empty origin here means the target's own.
func dialURL(t testing.TB, url, origin string) *websocket.Conn {
	t.Helper()
	if origin == "" {
		origin = "http" + strings.TrimPrefix(url, "ws")
	}
	cfg, err := websocket.NewConfig(url, origin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := cfg.DialContext(ctx)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closeClient closes a client connection as a browser tab would.
func closeClient(t testing.TB, c *websocket.Conn) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// recvTimeout bounds every read in the tests.
const recvTimeout = 5 * time.Second

// sendText sends one text frame.
func sendText(t testing.TB, c *websocket.Conn, text string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(recvTimeout))
	if err := websocket.Message.Send(c, text); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// readFrame reads the next frame of any kind. It reads frames itself,
// because x/net/websocket's Receive swallows close frames and their codes.
func readFrame(t testing.TB, c *websocket.Conn) (opcode byte, payload []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(recvTimeout))
	fr, err := c.NewFrameReader()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if payload, err = io.ReadAll(fr); err != nil {
		t.Fatalf("read: %v", err)
	}
	return fr.PayloadType(), payload
}

// recvText reads the next frame, which must be a text frame.
func recvText(t testing.TB, c *websocket.Conn) string {
	t.Helper()
	op, payload := readFrame(t, c)
	if op != websocket.TextFrame {
		t.Fatalf("got frame type %d %q, want a text frame", op, payload)
	}
	return string(payload)
}

// expectText reads the next frame and checks it byte for byte.
func expectText(t testing.TB, c *websocket.Conn, want string) {
	t.Helper()
	if got := recvText(t, c); got != want {
		t.Fatalf("got  %.300s\nwant %.300s", got, want)
	}
}

// expectQuiet proves nothing is waiting for c: the frame after a ping is its
// pong, because the server queues the pong behind anything sent before.
func expectQuiet(t testing.TB, c *websocket.Conn) {
	t.Helper()
	sendText(t, c, `{"action":"ping"}`)
	expectText(t, c, pong)
}

// expectClose reads until a close frame and checks its code.
func expectClose(t testing.TB, c *websocket.Conn, code int) {
	t.Helper()
	for {
		op, payload := readFrame(t, c)
		if op != websocket.CloseFrame {
			continue // frames queued before the close may come first
		}
		if len(payload) < 2 {
			t.Fatalf("close frame without a code: %q", payload)
		}
		if got := int(binary.BigEndian.Uint16(payload)); got != code {
			t.Fatalf("closed with %d, want %d", got, code)
		}
		return
	}
}

// health is the /healthz answer.
type health struct {
	Status             string      `json:"status"`
	Rooms              int         `json:"rooms"`
	Connections        int         `json:"connections"`
	MessagesReceived   int64       `json:"messages_received"`
	FramesDelivered    int64       `json:"frames_delivered"`
	SlowClientsDropped int64       `json:"slow_clients_dropped"`
	RefusedConnections int64       `json:"refused_connections"`
	Layer              layerHealth `json:"layer"`
}

// layerHealth is the channel layer's part of /healthz.
type layerHealth struct {
	Kind      string `json:"kind"`
	Connected bool   `json:"connected"`
	Published int64  `json:"published"`
	Received  int64  `json:"received"`
	Dropped   int64  `json:"dropped"`
	Rejected  int64  `json:"rejected"`
	Backlog   int    `json:"backlog"`

	HistoryBytes    int64 `json:"history_bytes"`
	HistoryMessages int64 `json:"history_messages"`
}

func (s *testServer) health(t testing.TB) health {
	t.Helper()
	var h health
	getJSON(t, s.URL+"/healthz", &h)
	return h
}

// getJSON fetches url and decodes its JSON answer into v.
func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	doJSON(t, http.DefaultClient, req, v)
}

// doJSON sends req with client and decodes the JSON answer into v.
func doJSON(t testing.TB, client *http.Client, req *http.Request, v any) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
}

// waitHealth waits until /healthz satisfies ok.
func (s *testServer) waitHealth(t testing.TB, ok func(health) bool) {
	t.Helper()
	var last health
	waitFor(t, func() string { return fmt.Sprintf("/healthz, last %+v", last) },
		func() bool { last = s.health(t); return ok(last) })
}

// waitFor polls cond until it holds, failing the test after 10 s. It is for
// things no event announces, such as a goroutine having exited.
func waitFor(t testing.TB, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// handshakeStatus makes a WebSocket handshake by hand, so that it can leave
// Origin out (x/net/websocket always sends one), and returns the status.
func handshakeStatus(t testing.TB, url, origin string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	setUpgradeHeaders(req.Header)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func setUpgradeHeaders(h http.Header) {
	key := make([]byte, 16)
	rand.Read(key)
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Version", "13")
	h.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
}

// rawConn is a WebSocket client written by hand, for frames that
// x/net/websocket cannot send, such as fragments.
type rawConn struct {
	net.Conn
	r   *bufio.Reader
	hdr [10]byte // the header being read, kept here so reading allocates nothing
}

func dialRaw(t testing.TB, url string) *rawConn {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	setUpgradeHeaders(req.Header)
	var handshake bytes.Buffer
	if err := req.Write(&handshake); err != nil {
		t.Fatal(err)
	}
	return dialRawBytes(t, url, handshake.Bytes())
}

// dialRawBytes connects to the host of url, writes the handshake request
// (and whatever follows it) in one write, and reads the 101 response.
func dialRawBytes(t testing.TB, url string, handshake []byte) *rawConn {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(recvTimeout))
	if _, err := conn.Write(handshake); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return &rawConn{Conn: conn, r: r}
}

// clientFrame builds one masked frame, as a client must send it.
func clientFrame(fin bool, opcode byte, payload string) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	frame := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	case n < 1<<16:
		frame = append(frame, 0x80|126, byte(n>>8), byte(n))
	default:
		frame = binary.BigEndian.AppendUint64(append(frame, 0x80|127), uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	frame = append(frame, mask[:]...)
	for i := range len(payload) {
		frame = append(frame, payload[i]^mask[i%4])
	}
	return frame
}

// writeFrame writes one masked frame.
func (c *rawConn) writeFrame(t testing.TB, fin bool, opcode byte, payload string) {
	t.Helper()
	if _, err := c.Write(clientFrame(fin, opcode, payload)); err != nil {
		t.Fatal(err)
	}
}

// nextHeader reads the header of the next (unmasked) server frame and
// returns its opcode and payload length. It allocates nothing.
func (c *rawConn) nextHeader() (opcode byte, n uint64, err error) {
	hdr := c.hdr[:]
	if _, err := io.ReadFull(c.r, hdr[:2]); err != nil {
		return 0, 0, err
	}
	switch n = uint64(hdr[1] & 0x7f); n {
	case 126:
		_, err = io.ReadFull(c.r, hdr[2:4])
		n = uint64(binary.BigEndian.Uint16(hdr[2:4]))
	case 127:
		_, err = io.ReadFull(c.r, hdr[2:10])
		n = binary.BigEndian.Uint64(hdr[2:10])
	}
	return hdr[0] & 0x0f, n, err
}

// readFrame reads one server frame.
func (c *rawConn) readFrame(t testing.TB) (opcode byte, payload []byte) {
	t.Helper()
	opcode, n, err := c.nextHeader()
	if err != nil {
		t.Fatal(err)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		t.Fatal(err)
	}
	return opcode, payload
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
