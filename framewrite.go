package main

// This file builds the frames the server sends and writes them. A message
// for a room of a hundred is framed once (framed) and the same bytes go
// into every member's queue; a writer sends its member's whole queue with
// one system call (writeFrames).

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"unicode/utf8"
)

// WebSocket frame header bits and opcodes (RFC 6455, section 5.2).
const (
	finalBit     = 0x80
	rsvBits      = 0x70
	opcodeBits   = 0x0f
	maskBit      = 0x80
	lengthBits   = 0x7f
	opContinue   = 0x0
	opText       = 0x1
	opBinary     = 0x2
	opClose      = 0x8
	opPing       = 0x9
	opPong       = 0xa
	maxHeadLen   = 10  // a server's header: 2 bytes, then up to 8 of extended length
	maxShortLen  = 125 // a length that fits in the second byte; also the most a control frame holds
	len16, len64 = 126, 127
)

// frame is one complete server-to-client WebSocket message: header and
// payload, ready to be written as it is. A frame is built once and shared by
// every queue it goes into, so it is never changed after it is built. It is a
// struct, not a []byte, so that JSON cannot be queued by mistake in its place:
// the only ways to make one are framed and newFrame below.
type frame struct {
	wire []byte
}

// closeFrame is the close message with code and a short reason, cut to
// fit a control frame, and on a character's boundary.
func closeFrame(code int, reason string) frame {
	reason = reason[:min(len(reason), maxShortLen-2)]
	for !utf8.ValidString(reason) {
		reason = reason[:len(reason)-1]
	}
	payload := binary.BigEndian.AppendUint16(nil, uint16(code))
	return newFrame(opClose, append(payload, reason...))
}

// newFrame builds a final frame with the given opcode around payload.
func newFrame(opcode byte, payload []byte) frame {
	b := appendHeader(make([]byte, 0, maxHeadLen+len(payload)), opcode, len(payload))
	return frame{wire: append(b, payload...)}
}

// appendHeader appends the header of a final frame with the given opcode
// and an n-byte payload: the length goes in 7 bits, or 16, or 64.
func appendHeader(b []byte, opcode byte, n int) []byte {
	b = append(b, finalBit|opcode)
	switch {
	case n <= maxShortLen:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, len16), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(b, len64), uint64(n))
}

// payload is the frame without its header: the JSON, for a text frame.
func (f frame) payload() []byte { return payloadOf(f.wire) }

// payloadOf skips the header of a frame's wire bytes, as a queue holds them.
func payloadOf(wire []byte) []byte {
	switch wire[1] {
	case len16:
		return wire[4:]
	case len64:
		return wire[10:]
	}
	return wire[2:]
}

// writeFrames writes a batch of frames (their wire bytes, in order) with
// one vectored write, writev(2): one system call for the batch rather than
// one per frame, and no copy of any frame. The writer is the only goroutine
// that writes to a connection once its handshake is answered, so frames
// never interleave.
func writeFrames(conn net.Conn, frames [][]byte) error {
	if len(frames) == 1 { // write(2) costs the kernel a little less than writev(2)
		_, err := conn.Write(frames[0])
		return err
	}
	bufs := net.Buffers(frames)
	_, err := bufs.WriteTo(conn)
	return err
}

// outFrame is the shape of every frame the server sends. Only a client that
// asked for history gets an id (history.go); cid is a client's own id for
// the frame it sent that this one answers, or, for a client that asked for
// history, for the message it carries.
type outFrame struct {
	Action  string `json:"action"`
	Payload any    `json:"payload"`
	ID      string `json:"id,omitempty"`
	Cid     string `json:"cid,omitempty"`
}

// encodeFrame encodes one outgoing message as a WebSocket frame, ready for
// any number of send queues.
func encodeFrame(action string, payload any) frame {
	return framed(outFrame{Action: action, Payload: payload})
}

// framed encodes out as a text frame. The JSON is written once, into the
// frame's own bytes, behind room left for its header, which is filled in
// once the length is known: one buffer, sized for the message, and no copy.
func framed(out outFrame) frame {
	var buf bytes.Buffer
	buf.Grow(maxHeadLen + sizeHint(out))
	buf.Write(make([]byte, maxHeadLen))
	encodeInto(&buf, out)
	b := buf.Bytes()
	payload := len(b) - maxHeadLen - 1 // the encoder's newline is dropped
	head := appendHeader(make([]byte, 0, maxHeadLen), opText, payload)
	start := maxHeadLen - len(head)
	copy(b[start:], head)
	return frame{wire: b[start : len(b)-1]}
}

// sizeHint guesses how long out's JSON is: long for a chat message, whose
// text is most of it, a little otherwise.
func sizeHint(out outFrame) int {
	n := 64 + len(out.ID) + len(out.Cid)
	if p, ok := out.Payload.(chatPayload); ok {
		n += len(p.Message) + len(p.Name) + len(p.Message)/8 // and some escapes
	}
	return n
}

// encodeInto writes out's JSON to buf, with a newline. HTML escaping is off
// so that "<" travels as "<", as Chanx sends it; the chat page inserts text
// as text.
func encodeInto(buf *bytes.Buffer, out outFrame) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		// Only values this package built reach here; failing to encode
		// one is a bug, not a client's doing.
		panic(fmt.Sprintf("encode %s frame: %v", out.Action, err))
	}
}
