package main

// Hostile and broken frames, sent with raw sockets: each must be refused at
// its header with the close code RFC 6455 and docs/protocol.md give, and a
// flood of frames of any kind must be cut off.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// header builds a frame header by hand: first byte, mask bit and declared
// length, so that a test can send what no client library would.
func header(b0 byte, masked bool, length uint64) []byte {
	var m byte
	if masked {
		m = maskBit
	}
	h := []byte{b0}
	switch {
	case length < len16:
		h = append(h, m|byte(length))
	case length <= 0xffff:
		h = binary.BigEndian.AppendUint16(append(h, m|len16), uint16(length))
	default:
		h = binary.BigEndian.AppendUint64(append(h, m|len64), length)
	}
	if masked {
		h = append(h, 0, 0, 0, 0) // a zero mask leaves the payload as it is
	}
	return h
}

// closePayload is a close frame's payload: a code and a reason.
func closePayload(code uint16, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, code)) + reason
}

func TestFramesRefusedAtTheirHeader(t *testing.T) {
	tests := []struct {
		name  string
		bytes []byte // sent after the handshake
		code  int    // the close code the server must answer with
	}{
		{"reserved bit RSV1", append(header(finalBit|0x40|opText, true, 2), "{}"...), closeProtocolError},
		{"reserved opcode 0x3", append(header(finalBit|0x3, true, 2), "{}"...), closeProtocolError},
		{"reserved opcode 0xB", header(finalBit|0xb, true, 0), closeProtocolError},
		{"unmasked frame", append(header(finalBit|opText, false, 17), `{"action":"ping"}`...), closeProtocolError},
		{"ping over 125 bytes", header(finalBit|opPing, true, 126), closeProtocolError},
		{"fragmented ping", header(opPing, true, 0), closeProtocolError},
		{"64-bit length with its top bit set", header(finalBit|opText, true, 1<<63), closeProtocolError},
		{"text longer than the limit, nothing sent after", header(finalBit|opText, true, maxMessageBytes+1), closeTooBig},
		{"text of 2^63-1 bytes", header(finalBit|opText, true, 1<<63-1), closeTooBig},
		{"fragments that pass the limit together", append(append(header(opText, true, maxMessageBytes), bytes.Repeat([]byte(" "), maxMessageBytes)...),
			header(finalBit|opContinue, true, 1)...), closeTooBig},
		{"binary message, payload never sent", header(finalBit|opBinary, true, 1000), closeUnsupportedData},
		{"continuation with nothing to continue", append(header(finalBit|opContinue, true, 2), "{}"...), closeProtocolError},
		{"new message before the last ended", append(append(header(opText, true, 1), "{"...), header(finalBit|opText, true, 0)...), closeProtocolError},
		{"close with a 1-byte payload", append(header(finalBit|opClose, true, 1), 3), closeProtocolError},
		{"close with code 999", append(header(finalBit|opClose, true, 2), closePayload(999, "")...), closeProtocolError},
		{"close with code 1005", append(header(finalBit|opClose, true, 2), closePayload(1005, "")...), closeProtocolError},
		{"close with code 5000", append(header(finalBit|opClose, true, 2), closePayload(5000, "")...), closeProtocolError},
		{"close with a reason not UTF-8", append(header(finalBit|opClose, true, 4), closePayload(1000, "\xff\xfe")...), closeInvalidPayload},
		{"close with code 1000", append(header(finalBit|opClose, true, 2), closePayload(1000, "")...), closeNormal},
		{"close with code 4000 and a reason", append(header(finalBit|opClose, true, 6), closePayload(4000, "bye!")...), closeNormal},
		{"close with no code", header(finalBit|opClose, true, 0), closeNormal},
	}
	s := newTestServer(t, options{rate: defaultRate})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s.wsURL("hostile"))
			if _, err := c.Write(tt.bytes); err != nil {
				t.Fatal(err)
			}
			op, payload := c.readFrame(t)
			if op != opClose || len(payload) < 2 {
				t.Fatalf("got frame %d %q, want a close frame", op, payload)
			}
			if got := int(binary.BigEndian.Uint16(payload)); got != tt.code {
				t.Fatalf("closed with %d (%q), want %d", got, payload[2:], tt.code)
			}
			// One close frame, then the end: nothing else follows it.
			if _, _, err := c.nextHeader(); err != io.EOF {
				t.Fatalf("after the close frame: %v, want the connection closed", err)
			}
		})
	}
}

// TestFloodsAreCutOff sends frames of every kind as fast as it can. Each
// flood must end in a close with 1008, after at most the frame burst has
// been answered.
func TestFloodsAreCutOff(t *testing.T) {
	burst := 2 * framesPerMessage * defaultRate
	tests := []struct {
		name  string
		start []byte // sent once, first
		frame []byte // then sent again and again
	}{
		{"pings", nil, append(header(finalBit|opPing, true, 4), "ping"...)},
		{"pongs", nil, header(finalBit|opPong, true, 0)},
		{"empty continuations", header(opText, true, 0), header(opContinue, true, 0)},
		{"messages over the rate", nil, append(header(finalBit|opText, true, 17), `{"action":"ping"}`...)},
	}
	s := newTestServer(t, options{rate: defaultRate})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s.wsURL("flood"))
			flood := append(tt.start, bytes.Repeat(tt.frame, 2*burst)...)
			go c.Write(flood) // may fail once the server has closed: that is the point
			for answers := 0; ; answers++ {
				op, payload := c.readFrame(t)
				if op == opClose {
					if got := binary.BigEndian.Uint16(payload); got != closePolicyViolation {
						t.Fatalf("closed with %d, want %d", got, closePolicyViolation)
					}
					return
				}
				if answers > burst {
					t.Fatalf("%d answers and still open", answers)
				}
			}
		})
	}
}

// TestBytesAreMetered sends messages of 60 KiB: two pass within the burst
// of 128 KiB, the third is refused undecoded, with rate_limited.
func TestBytesAreMetered(t *testing.T) {
	s := newTestServer(t, options{rate: defaultRate})
	c := s.dial(t, "bytes")
	big := `{"action":"ping"}` + strings.Repeat(" ", 60<<10)
	for range 3 {
		sendText(t, c, big)
	}
	expectText(t, c, pong)
	expectText(t, c, pong)
	expectText(t, c, `{"action":"error","payload":[{"type":"rate_limited","loc":[],"msg":"Too much data: at most 65536 bytes per second"}]}`)
}

// TestPayloadMemoryFollowsTheBytes reads a frame that declares 64 KiB and
// delivers 10 bytes: what was allocated must follow the 10 bytes, not the
// 64 KiB promised.
func TestPayloadMemoryFollowsTheBytes(t *testing.T) {
	in := append(header(finalBit|opText, true, maxMessageBytes), "0123456789"...)
	r := bufio.NewReader(bytes.NewReader(in))
	h, err := readHeader(r, maxMessageBytes)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readPayload(r, h, nil)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
	}
	if cap(got) > firstChunk {
		t.Errorf("%d bytes allocated for 10 that arrived", cap(got))
	}
}

// TestQuietClientThatAnswersPingsStays: a client that never sends a
// message but answers the server's pings (x/net does, as it reads) is not
// closed, however far past the idle timeout it stays quiet.
func TestQuietClientThatAnswersPingsStays(t *testing.T) {
	s := newTestServer(t, options{})
	s.hub.pingInterval, s.hub.idleTimeout = 20*time.Millisecond, 100*time.Millisecond
	quiet := s.dial(t, "quiet")
	got := make(chan string, 1)
	go func() {
		var m string
		websocket.Message.Receive(quiet, &m) // answers pings until a message comes
		got <- m
	}()
	// Nothing can be waited on here: the point is that nothing happens.
	time.Sleep(5 * s.hub.idleTimeout)
	talker := s.dial(t, "quiet")
	sendText(t, talker, chat("still there?", "T"))
	select {
	case m := <-got:
		if m != chat("still there?", "T") {
			t.Fatalf("got %q", m)
		}
	case <-time.After(recvTimeout):
		t.Fatal("the quiet client was closed or heard nothing")
	}
}
