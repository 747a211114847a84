package main

// This file is what roomchat does on the wire that x/net/websocket does not
// do for it. x/net makes the handshake, reads frames and answers pings;
// roomchat itself
//
//   - takes each connection from net/http before the handshake (takeConn),
//     so that net/http's goroutine and buffers are freed for the whole life
//     of the WebSocket, and gives x/net buffers sized for chat;
//   - builds each outgoing message into a complete WebSocket frame once
//     (textFrame), however many members will receive it, and writes a
//     client's whole batch of queued frames with one system call
//     (writeFrames);
//   - joins fragmented messages, which x/net would hand over one fragment
//     at a time (receive).

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/net/websocket"
)

// Buffer sizes of each connection, once net/http has let it go.
const (
	// readBufferSize is how much x/net reads from the socket at once. A
	// chat frame is a few hundred bytes; a longer message is read straight
	// into its destination, past the buffer, so a small buffer saves memory
	// on every idle connection and costs a busy one nothing.
	readBufferSize = 512

	// writeBufferSize holds what x/net itself writes: the handshake
	// response, and a pong to a client's ping. It must hold a whole
	// control frame (2 + 125 bytes), so that a pong reaches the socket in
	// one write and can never land inside a batch (see writeFrames).
	writeBufferSize = 256
)

// WebSocket frame header bits (RFC 6455, section 5.2).
const (
	finalBit    = 0x80
	opText      = 0x1
	opClose     = 0x8
	maxHeadLen  = 10  // 2 bytes, then up to 8 of extended length
	maxShortLen = 125 // a length that fits in the second byte
)

// frame is one complete server-to-client WebSocket message: header and
// payload, ready to be written as it is. A frame is built once and shared by
// every queue it goes into, so it is never changed after it is built. It is a
// struct, not a []byte, so that JSON cannot be queued by mistake in its place:
// the only ways to make one are textFrame and closeFrame.
type frame struct {
	wire []byte
}

// textFrame frames payload as one unfragmented, unmasked text message, as a
// server sends it.
func textFrame(payload []byte) frame {
	return newFrame(opText, payload)
}

// closeFrame is the close message with code and no reason.
func closeFrame(code int) frame {
	return newFrame(opClose, binary.BigEndian.AppendUint16(nil, uint16(code)))
}

// newFrame builds a final frame with the given opcode around payload: the
// payload length goes in 7 bits, or 16, or 64.
func newFrame(opcode byte, payload []byte) frame {
	n := len(payload)
	b := make([]byte, 0, maxHeadLen+n)
	b = append(b, finalBit|opcode)
	switch {
	case n <= maxShortLen:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
	return frame{wire: append(b, payload...)}
}

// payload is the frame without its header: the JSON, for a text frame.
func (f frame) payload() []byte { return payloadOf(f.wire) }

// payloadOf skips the header of a frame's wire bytes, as a queue holds them.
func payloadOf(wire []byte) []byte {
	switch wire[1] {
	case 126:
		return wire[4:]
	case 127:
		return wire[10:]
	}
	return wire[2:]
}

// writeFrames writes a batch of frames (their wire bytes, in order) with
// one vectored write, writev(2): one system call for the batch rather than
// one per frame, and no copy of any frame.
//
// It writes to the socket directly, beside x/net, which still writes a pong
// when the client pings (from the read loop) and the handshake response
// before any of this. A pong can never land inside a batch: x/net builds it
// in its write buffer, which holds a whole control frame (writeBufferSize),
// and flushes it with one Write; Go's socket layer holds a write lock for
// each Write and each Writev until every byte is out, so two writes never
// interleave on the wire. TestPingsDuringBroadcast checks it.
func writeFrames(conn net.Conn, frames [][]byte) error {
	bufs := net.Buffers(frames)
	_, err := bufs.WriteTo(conn)
	return err
}

// takenConn is a connection taken from net/http, in the one shape
// websocket.Server.ServeHTTP needs: an http.ResponseWriter it can hijack.
type takenConn struct {
	conn net.Conn
	rw   *bufio.ReadWriter
}

// keptOpen is the connection as x/net sees it. x/net closes a connection
// when its Handler returns, and roomchat's Handler returns as soon as the
// handshake is done, handing the connection to a goroutine of its own
// (main.go:chatHandler); so the Close x/net calls does nothing, and the
// connection's own goroutine closes it when it is over.
type keptOpen struct{ net.Conn }

// Close leaves the connection open; see keptOpen.
func (keptOpen) Close() error { return nil }

// takeConn hijacks the connection of w from net/http, so that the handler
// can return and net/http let go of its goroutine, its 4 KiB read and write
// buffers and its per-request state, and wraps it in buffers sized for chat.
// Any bytes net/http had already read past the request are kept.
func takeConn(w http.ResponseWriter) (*takenConn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	var r io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		ahead, _ := brw.Reader.Peek(n) // cannot fail: the bytes are buffered
		r = io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), conn)
	}
	return &takenConn{
		conn: conn,
		rw:   bufio.NewReadWriter(bufio.NewReaderSize(r, readBufferSize), bufio.NewWriterSize(conn, writeBufferSize)),
	}, nil
}

// handshakeHeaders are the request headers the WebSocket handshake reads:
// x/net's, and Origin for roomchat's own check (main.go:originAllowed).
var handshakeHeaders = []string{
	"Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Origin",
}

// handshakeRequest copies of r what the handshake needs, and no more.
// x/net's connection keeps its request for as long as it lives, and the one
// net/http parsed carries every header, two contexts and its buffers' worth
// of strings: about 1.4 KiB an idle connection would hold for nothing.
func handshakeRequest(r *http.Request) *http.Request {
	header := make(http.Header, len(handshakeHeaders))
	for _, key := range handshakeHeaders {
		if v := r.Header.Get(key); v != "" {
			header.Set(key, strings.Clone(v))
		}
	}
	return &http.Request{
		Method:     r.Method,
		URL:        &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Host:       r.Host,
		Header:     header,
		TLS:        r.TLS,
		RemoteAddr: r.RemoteAddr,
	}
}

// forgetRequest empties the request of a connection whose handshake is
// over. x/net keeps it only for ws.Request(), which roomchat does not call,
// and it is roomchat's own copy (handshakeRequest), so the headers and URL
// it holds need not stay for the connection's life.
func forgetRequest(ws *websocket.Conn) {
	*ws.Request() = http.Request{}
}

// Hijack hands the connection to x/net/websocket.
func (t *takenConn) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return keptOpen{t.conn}, t.rw, nil
}

// Header, Write and WriteHeader complete http.ResponseWriter; x/net never
// calls them on a connection it hijacks first.
func (t *takenConn) Header() http.Header       { return http.Header{} }
func (t *takenConn) Write([]byte) (int, error) { return 0, http.ErrHijacked }
func (t *takenConn) WriteHeader(int)           {}

// rawMessage is one whole message as the client sent it, not yet decoded.
type rawMessage struct {
	data   []byte
	binary bool
}

var (
	// errTooLarge is a message over the limit; its bytes were read
	// and thrown away, so the connection can go on.
	errTooLarge = errors.New("message too large")
	// errBadFragment is a continuation frame where none can follow, or a
	// new message before the last one ended: a protocol error (1002).
	errBadFragment = errors.New("bad fragmentation")
)

// receive reads one whole message of at most maxBytes from ws; a longer one
// is read, thrown away and reported as errTooLarge. x/net/websocket's own
// Receive hands every fragment of a fragmented message over as a message of
// its own, and gorilla/websocket clients, for one, split anything longer
// than 4 KiB; so receive reads frame by frame and joins the fragments.
//
// It uses methods that *websocket.Conn promotes from its embedded frame
// reader and handler: NewFrameReader reads a frame header, and HandleFrame
// answers pings and turns a close frame into io.EOF, as Receive does.
// beforePong runs before HandleFrame writes a pong.
func receive(ws *websocket.Conn, maxBytes int, beforePong func()) (rawMessage, error) {
	m := assembly{maxBytes: maxBytes, beforePong: beforePong}
	for {
		// An idle connection waits here, so this function keeps its
		// locals few (see serve).
		fr, err := ws.NewFrameReader()
		if err != nil {
			return rawMessage{}, err
		}
		if done, err := m.add(ws, fr); err != nil || done {
			return m.result(err)
		}
	}
}

// wireFrame is x/net/websocket's frame reader, whose type is unexported:
// one frame of the wire, with its raw header.
type wireFrame interface {
	io.Reader
	PayloadType() byte
	HeaderReader() io.Reader // the header's bytes, the only place the FIN bit is kept
	TrailerReader() io.Reader
	Len() int // header and payload
}

// assembly is a message being put together from its frames.
type assembly struct {
	msg        rawMessage
	maxBytes   int
	beforePong func()
	started    bool // a first frame has come; continuations may follow
	tooLarge   bool // over maxBytes: the rest is read and thrown away
}

// add reads one frame into the message and reports whether it was the last.
func (m *assembly) add(ws *websocket.Conn, fr wireFrame) (done bool, err error) {
	var header [14]byte // the longest frame header
	n, _ := fr.HeaderReader().Read(header[:])
	final, opcode := header[0]&finalBit != 0, header[0]&0x0f
	payloadLen := fr.Len() - n

	if opcode == websocket.PingFrame {
		m.beforePong()
	}
	body, err := ws.HandleFrame(fr)
	if err != nil || body == nil {
		return false, err // a ping (answered) or a pong: not part of any message
	}
	if m.started != (opcode == websocket.ContinuationFrame) {
		return false, errBadFragment
	}
	if !m.started {
		m.msg.binary = body.PayloadType() == websocket.BinaryFrame
		m.started = true
	}
	if m.tooLarge || payloadLen > m.maxBytes-len(m.msg.data) {
		m.tooLarge = true
		_, err = io.Copy(io.Discard, body)
		return final, err
	}
	start := len(m.msg.data)
	m.msg.data = slices.Grow(m.msg.data, payloadLen)[:start+payloadLen]
	_, err = io.ReadFull(body, m.msg.data[start:])
	return final, err
}

// result is the whole message, or why there is none.
func (m *assembly) result(err error) (rawMessage, error) {
	switch {
	case err != nil:
		return rawMessage{}, err
	case m.tooLarge:
		return rawMessage{}, errTooLarge
	}
	return m.msg, nil
}
