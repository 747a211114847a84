package main

// Slow clients: a member that cannot keep up is dropped (1008), never
// waited for, and the others lose nothing; one sender's messages arrive in order.

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

func TestOrderFromOneSender(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
