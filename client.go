package main

// This file is one connection's whole life: its read loop, where every
// frame from the socket starts; its send queue; its writer, the only
// goroutine that writes to the socket; and how it ends, with every
// deadline that makes sure it does. Frames are read and checked in
// frameread.go (with control, the answer to a ping or a close) and built
// in framewrite.go.
//
// Whoever ends a connection (the read loop, on the peer's close frame or a
// frame it refuses; dispatch, on text that is not UTF-8; send, on a full
// queue; the writer, when a write fails; shutdown, and a join that shutdown
// missed; the token's timer, when it runs out, tokenhandshake.go) only
// asks: close records
// the code and wakes the writer, which sends the close frame after the
// batch it is writing. The read loop reads on, ignoring what comes, until
// the peer's own close frame or the closing deadline; then serve lingers,
// leaves the room and closes the socket. When no close frame can be sent
// (a write failed or timed out, or shutdown's grace ran out), the
// connection is cut off instead: both deadlines move to now, so whatever
// waits on the socket fails at once.
//
// The socket's deadlines, who sets them and when (cut and sendClose set
// theirs under c.mu, so a cut is never undone):
//
//	deadline  set by         when                                          to
//	write     takeConn       as net/http hands the connection over         now + defaultWriteTimeout, for the 101
//	read      the read loop  before each frame, until closeAsked           now + idleTimeout
//	read      the read loop  if close was asked while it renewed           now + closeTimeout
//	write     the writer     before a batch, unless half of it is left     now + writeTimeout
//	both      sendClose      before the close frame, unless cut off        now + closeTimeout: for the write, and the peer's answer
//	both      cut            a failed write, or shutdown after its grace   now
//	both      attach         a connection cut before it had its socket     now
//	either    its renewal    a cut that raced the renewal                  now, again

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limits and timeouts of one connection: every socket operation has an end.
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

	// defaultWriteTimeout bounds every write, so that a client that does
	// not read, or a dead peer, cannot hold its writer: one that takes
	// longer is dropped as slow. A write gets at least half of it (see
	// renewWriteDeadline).
	defaultWriteTimeout = 10 * time.Second

	// defaultPingInterval is how often the server pings every client
	// (shutdown.go), as Daphne does; a client's WebSocket library answers.
	defaultPingInterval = 20 * time.Second

	// defaultIdleTimeout closes a connection (1001) that has sent no frame
	// of any kind, pongs included, for this long: a ping's interval and
	// then 30 s for its answer, as Daphne allows. A client that answers
	// pings stays connected however quiet it is.
	defaultIdleTimeout = defaultPingInterval + 30*time.Second

	// closeTimeout is how long the closing handshake may take: writing our
	// close frame, then waiting for the peer's.
	closeTimeout = time.Second

	// lingerBytes is the most read and thrown away after our close frame,
	// so that the socket is not closed with unread bytes in it: the kernel
	// would answer with a reset, which can destroy the close frame on its
	// way. A flooder sends more, and gets the reset.
	lingerBytes = 64 << 10
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
//	cut off     cut: no close frame will be tried             any           cutOff
//	close sent  the writer is done with the close frame       the writer    closeSent is closed
//	gone        serve leaves the room, closes the socket      its own       room == nil
//	            (chatHandler's leave, if the handshake fails) (net/http's)
//
// Frames queued while joined wait for serving; a close asked for before
// serving is sent as soon as it begins. A writer goroutine runs only while
// there is something to write, so an idle connection costs one goroutine.
type client struct {
	// Set before the client is shared, then only read.
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
	cutOff     atomic.Bool   // set by cut, under mu: the deadlines are now, and stay so
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
	onSpareStack(func() { logConnect(c) })
	code, why := c.readLoop()
	c.close(code, why)
	<-c.closeSent // bounded: the batch being written (writeTimeout), then the close frame
	c.linger(conn)
	logDisconnect(c, start) // before leave: it reads the room's name
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
			onSpareStack(func() { dispatch(c, data, meter) }) // as if here: the read loop waits for it
		}
		msg, inMessage = nil, false
	}
}

// renewReadDeadline gives the client another idleTimeout to send a frame,
// unless a close is under way, when sendClose's shorter deadline stands.
func (c *client) renewReadDeadline() error {
	if c.closeAsked.Load() {
		return nil
	}
	if err := c.conn.SetReadDeadline(time.Now().Add(c.hub.idleTimeout)); err != nil {
		return err
	}
	// A close or a cut may have set its deadline just before we pushed it
	// back; set it again so that it is not lost.
	switch {
	case c.cutOff.Load():
		return c.conn.SetReadDeadline(time.Now())
	case c.closeAsked.Load():
		return c.conn.SetReadDeadline(time.Now().Add(closeTimeout))
	}
	return nil
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
		noteQueued(c)
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
// again and again, and has two exits, each decided under c.mu:
//
//   - the queue is empty and no close is asked for: writing goes false, and
//     the next send starts a writer again;
//   - a close is asked for (a failed write asks for one itself): it sends
//     the close frame, closes closeSent and leaves writing true, so that
//     no writer ever starts again.
//
// Taking the queue in batches means one lock, one deadline and one system
// call per batch, not per frame, and the two arrays it swaps are kept for
// the next writer: no allocation per frame.
func (c *client) writeLoop() {
	c.mu.Lock()
	batch := c.spare
	c.spare = nil
	for c.closeCode == 0 && len(c.queue) > 0 {
		batch, c.queue = c.queue, batch[:0]
		c.pongAt = 0
		queuedAt := c.queuedAt
		c.mu.Unlock()
		c.writeBatch(batch, queuedAt)
		clear(batch) // the writer must not keep frames alive
		c.mu.Lock()
	}
	if c.closeCode == 0 {
		c.queue, c.spare = keepSmall(c.queue), keepSmall(batch)
		c.writing = false
		c.mu.Unlock()
		return
	}
	code, why := c.closeCode, c.closeWhy
	c.mu.Unlock()
	c.sendClose(code, why)
	close(c.closeSent)
}

// writeBatch writes a batch of frames in one system call (writeFrames),
// within the write deadline. A write that fails ends the connection, and
// cuts it off, since not even a close frame would get through: a timeout
// as slow (1008), any other error with 1001.
func (c *client) writeBatch(batch [][]byte, queuedAt int64) {
	err := c.renewWriteDeadline()
	if err == nil {
		logFramesOut(c, batch)
		err = writeFrames(c.conn, batch)
	}
	c.hub.stats.delivery.wrote(queuedAt, err)
	switch {
	case err == nil:
		c.hub.stats.delivered.Add(int64(len(batch)))
	case isTimeout(err):
		c.dropSlow("too slow to read")
		c.cut()
	default:
		c.close(closeGoingAway, ioReason(err))
		c.cut()
	}
}

// renewWriteDeadline makes sure the socket's write deadline lies between
// half of writeTimeout and all of it ahead, before a write. Setting a
// deadline updates a runtime timer, which costs more than the rest of a
// small batch, so one still more than half writeTimeout away is kept.
func (c *client) renewWriteDeadline() error {
	now := time.Now()
	if c.writeBy.Sub(now) >= c.hub.writeTimeout/2 {
		return nil
	}
	c.writeBy = now.Add(c.hub.writeTimeout)
	if err := c.conn.SetWriteDeadline(c.writeBy); err != nil {
		return err
	}
	if c.cutOff.Load() { // cut just before we pushed the deadline back
		return c.conn.SetWriteDeadline(now)
	}
	return nil
}

// close asks the writer to end the connection with code: queued frames are
// dropped (a said among them: a client that sends again with the same cid
// hears it again), the close frame goes out after the batch being written
// now, and the read loop then ends. Only the first call counts; it reports
// whether this call was that one.
func (c *client) close(code int, why string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeCode != 0 {
		return false
	}
	c.closeCode, c.closeWhy = code, why
	c.closeAsked.Store(true)
	c.queue, c.pongAt = nil, 0
	c.startWriterLocked()
	return true
}

// dropSlow closes a client that does not read what it is sent (1008), and
// counts it.
func (c *client) dropSlow(why string) {
	if c.close(closePolicyViolation, why) {
		c.hub.stats.dropped.Add(1)
	}
}

// sendClose is the writer's last act: it sends the close frame, then gives
// the peer closeTimeout to answer with its own before the read loop gives
// up on it. Its deadlines are set under c.mu, as cut's are: a cut either
// came first, and no close frame is tried, or comes after, and its
// deadlines stand (TestCutWinsOverClose).
func (c *client) sendClose(code int, why string) {
	c.mu.Lock()
	cut := c.cutOff.Load()
	if !cut {
		deadline := time.Now().Add(closeTimeout)
		_ = c.conn.SetDeadline(deadline) // if it fails, the write below fails too
	}
	c.mu.Unlock()
	if !cut {
		// A peer that is gone cannot be told; the read loop ends either way.
		_, _ = c.conn.Write(closeFrame(code, why).wire)
	}
}

// cut cuts the connection off without a goodbye: both deadlines pass now,
// so a write stuck on a dead peer and the read loop fail at once.
// x/net/websocket's own Close would wait behind that stuck write instead.
func (c *client) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutOff.Store(true)
	if c.conn != nil { // else attach sets the deadlines
		// The connection is being dropped; if this fails, it already is.
		_ = c.conn.SetDeadline(time.Now())
	}
}

// linger ends a connection as RFC 6455 (section 7.1.1) asks: it sends FIN
// after the close frame, and reads until the peer closes too, within the
// closing deadline and lingerBytes.
func (c *client) linger(conn net.Conn) {
	if c.cutOff.Load() {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // if it fails, Close follows anyway
	}
	_, _ = io.CopyN(io.Discard, c.in, lingerBytes)
}
