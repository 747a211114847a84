package main

// This file is one connection's life: its read loop, where every frame from
// the socket starts; its send queue; and its writer, the only goroutine
// that writes to the socket. How it ends is close.go.

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of one connection; its timeouts are in close.go.
const (
	// sendQueueLen is how many frames may wait for a client that does not
	// read. Frames are shared, so a full queue costs 24 bytes a slot, and
	// nothing while the client keeps up: the slice only grows when frames
	// pile up. A client that lets it fill is dropped as slow (1008).
	sendQueueLen = 256

	// sendBufferBytes bounds the kernel's send buffer for each socket
	// (the kernel doubles it for its own bookkeeping), so that a client
	// that does not read parks little memory there and its writes stall
	// soon: then the write deadline finds it slow.
	sendBufferBytes = 64 << 10
)

// client is one WebSocket connection and its membership of one room.
//
// A connection goes through these states, in this order; closing may come
// at any point after entering, even before serving:
//
//	state       entered when                                  by goroutine  recorded in
//	entered     hub.enter counts it in its room, before the   net/http's    room != nil
//	            handshake is answered
//	joined      hub.join: the broker makes it a member        net/http's    in room.members
//	serving     attach gives it its socket, after the 101     its own       conn != nil
//	closing     close is first called, with a code            any           closeAsked
//	close sent  the writer is done with the close frame       the writer    closeSent is closed
//	gone        serve leaves the room, closes the socket      its own       room == nil
//	            (chatHandler's leave, if the handshake fails) (net/http's)
//
// close.go has how a connection ends. Frames queued while joined wait for
// serving; a close asked for before serving is sent as soon as it begins. A
// writer goroutine runs only while there is something to write, so an idle
// connection costs one goroutine.
type client struct {
	// Set before the client is shared, then only read (history's upTo
	// aside: its room's stream lock guards that).
	id       uint64
	addr     netip.Addr // the client's address (clientAddr), for the limits and the log
	hub      *hub
	history  *historyRequest // what it asked of the room's history; nil: nothing, and no ids
	token    *tokenClaims    // who its token says it is; nil without tokens (token.go)
	name     string          // its name in the room's presence (?name, or its token's); "": counted, not listed
	presence bool            // it asked for presence (?presence): presence.go

	// room is set by hub.enter and cleared by hub.leave, both under hub.mu;
	// in between, whichever goroutine serves the client reads it freely.
	room *room

	// Owned by the read loop (the connection's own goroutine).
	in *bufio.Reader // the socket's reader: frames come only through it

	mu        sync.Mutex // guards the fields up to the atomics; the last lock in hub's order
	conn      net.Conn   // nil until attach, set once; after that read without mu
	queue     [][]byte   // the wire bytes of the frames waiting for the writer
	spare     [][]byte   // an empty array for the next batch, kept between writers
	writing   bool       // a writer is running (and, once the close is sent, has run)
	pongAt    int        // 1 + the queue index of the pong waiting there; 0: none
	queuedAt  int64      // when the queue last began, for the delivery histogram (metrics.go)
	closeCode int        // the close asked for; 0 until then
	closeWhy  string     // why, for the log

	closeAsked atomic.Bool   // closeCode != 0, for the read loop without the lock
	cutOff     atomic.Bool   // no close frame will be tried: the deadlines are now
	closeSent  chan struct{} // closed by the writer once it is done with the close frame

	// Owned by the writer.
	writeBy time.Time // the socket's write deadline now
}

// newClient prepares a connection for the hub, before its handshake is
// answered.
func newClient(h *hub, addr netip.Addr) *client {
	return &client{id: h.nextID.Add(1), addr: addr, hub: h, closeSent: make(chan struct{})}
}

// serve runs one connection once its handshake is done, on a goroutine of
// its own: it reads until the connection ends, waits for the writer's close
// frame, then leaves the room and closes the socket.
func (c *client) serve(conn net.Conn, in *bufio.Reader) {
	start := c.attach(conn, in)
	onSpareStack(c.logConnect)
	code, why := c.readLoop()
	c.close(code, why)
	<-c.closeSent // bounded: the batch being written (writeTimeout), then the close frame
	c.linger(conn)
	c.logDisconnect(start) // before leave: it reads the room's name
	c.hub.leave(c)
	_ = conn.Close() // an error means it is closed already
}

// attach gives the client its socket: frames queued since the join, or a
// close asked for meanwhile, can be written from now on.
func (c *client) attach(conn net.Conn, in *bufio.Reader) time.Time {
	if tc, ok := conn.(interface{ SetWriteBuffer(int) error }); ok {
		_ = tc.SetWriteBuffer(sendBufferBytes) // else the kernel's default: a slow reader is found later
	}
	c.in = in
	c.mu.Lock()
	c.conn = conn
	if c.cutOff.Load() {
		_ = conn.SetDeadline(time.Now())
	}
	if len(c.queue) > 0 || c.closeCode != 0 {
		c.startWriterLocked()
	}
	c.mu.Unlock()
	return time.Now()
}

// readLoop reads frames until the connection ends and returns the close
// code and reason it should end with. Every frame is checked at its header
// (frameread.go) and metered before its payload is read; control frames go
// to control (frameread.go); a message's fragments are joined here. Once a
// close is under way it reads on, ignoring what arrives, until the peer's
// close frame or the closing deadline, so that the peer sees ours first.
func (c *client) readLoop() (code int, why string) {
	meter := c.hub.limit.newMeter()
	var msg []byte     // the message being put together from its fragments
	inMessage := false // a first fragment has come; continuations may follow
	for {
		if err := c.renewReadDeadline(); err != nil {
			return closeGoingAway, ioReason(err)
		}
		if err := waitForFrame(c.in); err != nil {
			return closeCodeOf(err)
		}
		head, err := readHeader(c.in, maxMessageBytes-len(msg))
		if err != nil {
			return closeCodeOf(err)
		}
		if !meter.frame() {
			return closePolicyViolation, "too many frames"
		}
		if head.control() {
			if code, why, stop := c.control(head); stop {
				return code, why
			}
			continue
		}
		switch {
		case head.opcode == opContinue && !inMessage:
			return closeCodeOf(errNothingToJoin)
		case head.opcode != opContinue && inMessage:
			return closeCodeOf(errUnfinished)
		case head.opcode == opBinary:
			return closeUnsupportedData, "binary message" // refused unread
		}
		inMessage = true
		if msg, err = readPayload(c.in, head, msg); err != nil {
			return closeCodeOf(err)
		}
		if !head.final {
			continue
		}
		if !c.closeAsked.Load() {
			data := msg
			onSpareStack(func() { dispatch(c, data, meter) })
		}
		msg, inMessage = nil, false
	}
}

// send queues f for this client without waiting. A client whose queue is
// full is not keeping up; it is closed as slow and the caller goes on.
func (c *client) send(f frame) { c.enqueue(f, false) }

// sendPong queues the answer to a ping. If a pong still waits in the queue,
// the new one takes its place: RFC 6455 (section 5.5.3) lets a server
// answer only the latest of several pings, so a client that pings faster
// than it reads cannot fill its queue with pongs.
func (c *client) sendPong(f frame) { c.enqueue(f, true) }

// enqueue is send and sendPong.
func (c *client) enqueue(f frame, pong bool) {
	c.mu.Lock()
	switch {
	case c.closeCode != 0: // closing: nothing more goes out
	case pong && c.pongAt > 0:
		c.queue[c.pongAt-1] = f.wire
	case len(c.queue) >= sendQueueLen:
		c.mu.Unlock()
		c.dropSlow("send queue full")
		return
	default:
		c.noteQueued()
		c.queue = append(c.queue, f.wire)
		if pong {
			c.pongAt = len(c.queue)
		}
		c.startWriterLocked()
	}
	c.mu.Unlock()
}

// startWriterLocked starts the writer if the client has its socket and no
// writer runs yet. It runs with c.mu held, so at most one writer ever runs;
// the new writer waits for the lock before it looks at the queue.
func (c *client) startWriterLocked() {
	if c.writing || c.conn == nil {
		return
	}
	c.writing = true
	go c.writeLoop()
}

// writeLoop is the writer. It takes the whole queue at once and writes it,
// until the queue is empty, when it exits, or a close is asked for, when it
// sends the close frame and exits for good. Taking the queue in batches
// means one lock, one deadline and one system call per batch, not per
// frame, and the two arrays it swaps are kept for the next writer: no
// allocation per frame.
func (c *client) writeLoop() {
	c.mu.Lock()
	batch := c.spare
	c.spare = nil
	for {
		code, why := c.closeCode, c.closeWhy
		if code == 0 && len(c.queue) == 0 {
			c.queue, c.spare = keepSmall(c.queue), keepSmall(batch)
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch, c.queue = c.queue, batch[:0]
		c.pongAt = 0
		queuedAt := c.queuedAt
		c.mu.Unlock()

		if code != 0 {
			c.sendClose(code, why)
			close(c.closeSent)
			return // writing stays true: no writer starts again
		}
		err := c.renewWriteDeadline()
		if err == nil {
			err = c.writeBatch(batch)
		}
		c.hub.stats.delivery.wrote(queuedAt, err)
		switch {
		case isTimeout(err):
			c.dropSlow("too slow to read")
			c.cut() // the close frame could not be written either
		case err != nil:
			c.close(closeGoingAway, ioReason(err))
			c.cut()
		}
		clear(batch) // the writer must not keep frames alive
		c.mu.Lock()
	}
}

// writeBatch writes a batch of frames in one system call (writeFrames).
func (c *client) writeBatch(batch [][]byte) error {
	logFramesOut(c, batch)
	if err := writeFrames(c.conn, batch); err != nil {
		return err
	}
	c.hub.stats.delivered.Add(int64(len(batch)))
	return nil
}
