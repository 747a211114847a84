package main

// Leaving and shutting down: what a server holds returns to where it
// started, and a shutdown closes every connection (1001) within its time.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

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
	t.Parallel()
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
	t.Parallel()
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
