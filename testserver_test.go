package main

// The test server and the WebSocket client helpers that every other _test.go
// file uses: a real httptest.Server on loopback, x/net/websocket clients,
// and waits that poll the real state with a deadline.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// recvText reads the next frame, which must be a text frame. It skips
// pings: the server sends them every pingInterval whatever a test does, and
// a test on a busy machine may last longer than that.
func recvText(t testing.TB, c *websocket.Conn) string {
	t.Helper()
	op, payload := readFrame(t, c)
	for op == websocket.PingFrame {
		op, payload = readFrame(t, c)
	}
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

// syncBuffer is a log destination that goroutines may share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a loopback port that nothing listens on, and that it
// has not returned before: tests run in parallel, and one that stops a
// server to start it again on its port must not find another test's there.
func freePort(t testing.TB) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		portsGiven.Lock()
		given := portsGiven.m[port]
		portsGiven.m[port] = true
		portsGiven.Unlock()
		if !given {
			return port
		}
	}
}

// portsGiven are the ports freePort has returned.
var portsGiven = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}
