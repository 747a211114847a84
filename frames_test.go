package main

// Tests of framewrite.go and upgrade.go: frames built by hand, the
// vectored writes that carry them with the pongs among them, and the
// connection taken from net/http.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/websocket"
)

func TestTextFrameHeader(t *testing.T) {
	tests := []struct {
		payloadLen int
		header     []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.payloadLen), func(t *testing.T) {
			payload := bytes.Repeat([]byte("x"), tt.payloadLen)
			f := newFrame(opText, payload)
			if got := f.wire[:len(tt.header)]; !bytes.Equal(got, tt.header) {
				t.Errorf("header % x, want % x", got, tt.header)
			}
			if len(f.wire) != len(tt.header)+tt.payloadLen || !bytes.Equal(f.payload(), payload) {
				t.Errorf("frame of %d bytes does not end in the payload", len(f.wire))
			}
		})
	}
	if got, want := closeFrame(closePolicyViolation, "").wire, []byte{0x88, 2, 0x03, 0xf0}; !bytes.Equal(got, want) {
		t.Errorf("close frame % x, want % x", got, want)
	}
}

// TestPingsDuringBroadcast floods one member with WebSocket pings while
// another floods the room with chat messages, and parses every frame the
// pinging member gets. Pongs and chat frames share the writer: every chat
// message must arrive, in order; pongs may answer only the latest of the
// pings that waited together (RFC 6455, section 5.5.3), so they come in
// order, and the last one answers the last ping.
func TestPingsDuringBroadcast(t *testing.T) {
	const messages, pings = 2000, 2000
	s := newTestServer(t, options{})
	pinger := dialRaw(t, s.wsURL("storm"))
	sender := dialRaw(t, s.wsURL("storm"))
	s.waitHealth(t, func(h health) bool { return h.Connections == 2 })
	pinger.SetDeadline(time.Now().Add(30 * time.Second))
	sender.SetDeadline(time.Now().Add(30 * time.Second))

	body := strings.Repeat("é", 200)
	read := sendPaced(messages, func(i int) error {
		_, err := sender.Write(clientFrame(true, websocket.TextFrame, chat(body, fmt.Sprint(i))))
		return err
	})
	pingErr := make(chan error, 1)
	go func() {
		for i := range pings {
			// The longest ping allowed: 125 bytes, numbered.
			if _, err := pinger.Write(clientFrame(true, websocket.PingFrame, fmt.Sprintf("%0125d", i))); err != nil {
				pingErr <- err
				return
			}
		}
		pingErr <- nil
	}()

	chats, lastPong, pongs := 0, -1, 0
	for chats < messages || lastPong < pings-1 {
		op, data := pinger.readFrame(t)
		switch op {
		case websocket.TextFrame:
			if want := chat(body, fmt.Sprint(chats)); string(data) != want {
				t.Fatalf("chat frame %d is %.80q, want %.80q", chats, data, want)
			}
			chats++
			read()
		case websocket.PongFrame:
			n, err := strconv.Atoi(string(data))
			if err != nil || len(data) != 125 || n <= lastPong {
				t.Fatalf("pong %q after pong %d", data, lastPong)
			}
			lastPong = n
			pongs++
		default:
			t.Fatalf("after %d chats and %d pongs, a frame of type %d: % .40x", chats, pongs, op, data)
		}
	}
	if err := <-pingErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pings answered by %d pongs", pings, pongs)
}

// TestPongAfterWriteDeadline pings a client whose writer set its last write
// deadline long ago: the pong must still go out, not fail on that deadline
// and end the connection.
func TestPongAfterWriteDeadline(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, options{})
	s.hub.writeTimeout = 20 * time.Millisecond
	from := s.dial(t, "late")
	to := dialRaw(t, s.wsURL("late"))
	s.waitHealth(t, func(h health) bool { return h.Connections == 2 })
	sendText(t, from, chat("hi", "A"))
	if op, data := to.readFrame(t); op != websocket.TextFrame || string(data) != chat("hi", "A") {
		t.Fatalf("got %d %q", op, data)
	}
	time.Sleep(2 * s.hub.writeTimeout) // the writer's deadline is now in the past
	to.writeFrame(t, true, websocket.PingFrame, "still there?")
	if op, data := to.readFrame(t); op != websocket.PongFrame || string(data) != "still there?" {
		t.Fatalf("got frame %d %q, want the pong", op, data)
	}
	to.writeFrame(t, true, websocket.TextFrame, `{"action":"ping"}`)
	if op, data := to.readFrame(t); op != websocket.TextFrame || string(data) != pong {
		t.Fatalf("got frame %d %q, want a pong message", op, data)
	}
}

// TestBytesReadAheadAreKept sends the handshake and a ping frame in one
// write, as a client in a hurry might: net/http reads some of the frame
// with the request, and taking the connection must not lose those bytes.
func TestBytesReadAheadAreKept(t *testing.T) {
	s := newTestServer(t, options{})
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	request := "GET /ws/chat/ahead/ HTTP/1.1\r\nHost: " + strings.TrimPrefix(s.URL, "http://") +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n"
	raw := dialRawBytes(t, s.URL, append([]byte(request), clientFrame(true, websocket.TextFrame, `{"action":"ping"}`)...))
	if op, data := raw.readFrame(t); op != websocket.TextFrame || string(data) != pong {
		t.Fatalf("got frame %d %q, want a pong message", op, data)
	}
}

// TestCloseReasonsTellThePeerLittle checks what a close frame's reason may
// carry to the peer: no address from a socket error, and no character cut
// in half by the 123 bytes a reason may hold.
func TestCloseReasonsTellThePeerLittle(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 8000}
	err := &net.OpError{Op: "read", Net: "tcp", Source: addr, Addr: addr, Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	if got, want := ioReason(err), "read: connection reset by peer"; got != want {
		t.Errorf("ioReason = %q, want %q", got, want)
	}
	long := strings.Repeat("é", 100) // 200 bytes: 123 would cut an é in half
	reason := payloadOf(closeFrame(closeNormal, long).wire)[2:]
	if len(reason) != 122 || !utf8.Valid(reason) {
		t.Errorf("a long reason went out as %d bytes, valid UTF-8: %v", len(reason), utf8.Valid(reason))
	}
}
