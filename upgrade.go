package main

// This file turns an HTTP request into a WebSocket connection that belongs
// to roomchat, not to net/http: upgrade takes the connection from net/http
// (a hijack), lets x/net/websocket answer the handshake on it, and hands
// back the bare socket, which attach gives to its client. The handler can
// then return, and net/http lets go of its goroutine, its 4 KiB buffers and
// the request for the whole life of the WebSocket; the connection gets a
// goroutine of its own (client.serve).

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/websocket"
)

// Buffer sizes of each connection, once net/http has let it go.
const (
	// readBufferSize is how much is read from the socket at once. A chat
	// frame is a few hundred bytes; a longer payload is read straight into
	// its destination, past the buffer, so a small buffer saves memory on
	// every idle connection and costs a busy one nothing.
	readBufferSize = 512

	// handshakeBufferSize holds the 101 response x/net writes; nothing
	// else is written through it, and it is dropped after the handshake.
	handshakeBufferSize = 256
)

// errRefused is a handshake that x/net or check refused; the client has
// been answered.
var errRefused = errors.New("handshake refused")

// upgrade answers r's WebSocket handshake and returns the socket and the
// reader its frames are to be read through. check runs before the 101 is
// written; an error from it is answered 403. On any error the client has
// had its answer and the connection is closed.
func upgrade(w http.ResponseWriter, r *http.Request, check func(*http.Request) error) (net.Conn, *bufio.Reader, error) {
	conn, in, err := takeConn(w)
	if err != nil {
		http.Error(w, "cannot upgrade this connection", http.StatusInternalServerError)
		return nil, nil, err
	}
	rw := bufio.NewReadWriter(in, bufio.NewWriterSize(conn, handshakeBufferSize))
	done := false
	websocket.Server{
		Handshake: func(cfg *websocket.Config, r *http.Request) error {
			// Only roomchat.token is ever chosen: x/net would echo any
			// single offer, a token offered alone included (tokenhandshake.go).
			cfg.Protocol = chosenSubprotocol(r)
			return check(r)
		},
		// x/net's Conn is not kept: roomchat reads and writes the socket
		// itself from here on (frameread.go, framewrite.go).
		Handler: func(*websocket.Conn) { done = true },
	}.ServeHTTP(&takenConn{conn: conn, rw: rw}, r)
	if !done {
		conn.Close()
		return nil, nil, errRefused
	}
	return conn, in, nil
}

// takeConn hijacks w's connection from net/http and wraps it in a reader
// sized for chat. Any bytes net/http had already read past the request
// (a client may send its first frame right behind the handshake) are kept.
func takeConn(w http.ResponseWriter) (net.Conn, *bufio.Reader, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// net/http clears its deadlines as it lets go: the handshake's answer
	// gets a write's, so a peer that does not read cannot hold it.
	if err := conn.SetWriteDeadline(time.Now().Add(defaultWriteTimeout)); err != nil {
		conn.Close()
		return nil, nil, err
	}
	var r io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		ahead, _ := brw.Reader.Peek(n) // cannot fail: the bytes are buffered
		r = io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), conn)
	}
	return conn, bufio.NewReaderSize(r, readBufferSize), nil
}

// takenConn is a connection already taken from net/http, in the one shape
// websocket.Server.ServeHTTP accepts: an http.ResponseWriter it can hijack.
type takenConn struct {
	conn net.Conn
	rw   *bufio.ReadWriter
}

// Hijack hands the connection to x/net, which closes it when its Handler
// returns; keptOpen makes that Close do nothing, since the connection is
// roomchat's and outlives the handshake.
func (t *takenConn) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return keptOpen{t.conn}, t.rw, nil
}

// Header, Write and WriteHeader complete http.ResponseWriter; x/net never
// calls them on a connection it hijacks first.
func (t *takenConn) Header() http.Header       { return http.Header{} }
func (t *takenConn) Write([]byte) (int, error) { return 0, http.ErrHijacked }
func (t *takenConn) WriteHeader(int)           {}

// keptOpen is the connection as x/net sees it: see takenConn.Hijack.
type keptOpen struct{ net.Conn }

// Close leaves the connection open.
func (keptOpen) Close() error { return nil }
