package main

// This file owns rooms and connections. The hub keeps a mutex-guarded map of
// rooms; each room keeps its members; each member (a client) has a bounded
// send queue, drained by a writer goroutine of its own whenever there is
// something in it. The read loop here is where a frame from a socket starts
// its way to the rest of the room.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/net/websocket"
)

// Limits and timeouts of one connection.
const (
	// maxFrameBytes is the largest message a client may send, all its
	// fragments together; a larger one is answered with frame_too_large
	// and skipped.
	maxFrameBytes = 64 << 10

	// sendQueueLen is how many frames may wait for a client that does not
	// read. Frames are shared, so a full queue costs 24 bytes a slot, and
	// nothing while the client keeps up: the slice only grows when frames
	// pile up. A client that lets it fill is dropped (1008).
	sendQueueLen = 256

	// keptQueueCap is the largest queue array an idle connection keeps for
	// reuse (24 bytes a slot).
	keptQueueCap = 16

	// writeTimeout bounds every frame write, so a dead peer cannot hold its
	// writer forever. A write gets at least half of it (see writeBatch).
	writeTimeout = 10 * time.Second

	// idleTimeout closes a connection (1001) that has sent no text frame
	// for this long. x/net/websocket cannot send pings, so the server
	// relies on the client's own traffic; the chat page pings every 25 s.
	idleTimeout = 60 * time.Second

	// closeTimeout is how long the closing handshake may take: writing our
	// close frame, then waiting for the peer's.
	closeTimeout = time.Second

	// maxConnections caps the whole server, well below the open-file limit,
	// so a flood of connections gets 503 instead of exhausting descriptors.
	maxConnections = 10_000
)

// WebSocket close codes (RFC 6455, section 7.4.1) that docs/protocol.md uses.
const (
	closeNormal          = 1000
	closeGoingAway       = 1001
	closeProtocolError   = 1002
	closeUnsupportedData = 1003
	closeInvalidPayload  = 1007
	closePolicyViolation = 1008
)

// errShuttingDown refuses a handshake that races with shutdown.
var errShuttingDown = errors.New("server is shutting down")

// hub is the set of rooms. Its mutex guards only the map and the counts:
// a broadcast locks the one room it speaks in, never the hub, so rooms do
// not slow each other down.
type hub struct {
	log     *slog.Logger
	limit   rateLimit
	layer   channelLayer  // the rooms of other processes (layer.go)
	idle    time.Duration // idleTimeout; a field so a test need not wait a minute
	write   time.Duration // writeTimeout; a field so a test need not wait 10 s
	mu      sync.Mutex
	rooms   map[string]*room
	conns   int
	closing bool
	live    sync.WaitGroup // one count per joined client, for shutdown
	nextID  atomic.Uint64
	stats   stats
}

// stats are running totals for /healthz; atomics, because every
// connection's goroutines add to them.
type stats struct {
	received  atomic.Int64 // messages read from clients
	delivered atomic.Int64 // frames written to clients
	dropped   atomic.Int64 // clients closed for not reading
}

// room is one chat room: the clients that hear each other. Its own lock lets
// many senders fan out at once (read lock) while a join or leave, which is
// rare, takes the write lock for a single map operation.
type room struct {
	name       string
	layer      channelLayer
	subscribed <-chan struct{} // closed once the layer brings this room's frames from other processes
	mu         sync.RWMutex
	members    map[*client]struct{}
}

// newHub returns an empty hub whose connections obey limit and log to log,
// with the in-memory layer: rooms in this process only.
func newHub(limit rateLimit, log *slog.Logger) *hub {
	return &hub{log: log, limit: limit, layer: memoryLayer{}, idle: idleTimeout, write: writeTimeout, rooms: make(map[string]*room)}
}

// join makes c a member of its room, creating the room on first use. It runs
// during the handshake, before the 101 response is written, so c hears every
// message sent after its client sees the connection open: a new room waits
// (subscribeWait at most) until the layer brings it other processes' frames.
func (h *hub) join(c *client, roomName string) error {
	r, err := h.add(c, roomName)
	if err != nil {
		return err
	}
	select {
	case <-r.subscribed:
	case <-time.After(subscribeWait):
		h.log.Warn("joined before the channel layer confirmed the room", "conn", c.id, "room", roomName)
	}
	return nil
}

// add puts c in its room's member map.
func (h *hub) add(c *client, roomName string) (*room, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return nil, errShuttingDown
	}
	r := h.rooms[roomName]
	if r == nil {
		r = &room{name: roomName, layer: h.layer, subscribed: h.layer.subscribe(roomName), members: make(map[*client]struct{})}
		h.rooms[roomName] = r
	}
	r.mu.Lock()
	r.members[c] = struct{}{}
	r.mu.Unlock()
	c.room = r
	h.conns++
	h.live.Add(1)
	return r, nil
}

// leave removes c from its room and forgets the room once it is empty. It is
// safe to call for a client that never joined, and more than once.
func (h *hub) leave(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := c.room
	if r == nil {
		return
	}
	r.mu.Lock()
	delete(r.members, c)
	empty := len(r.members) == 0
	r.mu.Unlock()
	if empty {
		delete(h.rooms, r.name)
		h.layer.unsubscribe(r.name)
	}
	c.room = nil
	h.conns--
	h.live.Done()
}

// counts reports the number of rooms and connections, for /healthz.
func (h *hub) counts() (rooms, conns int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rooms), h.conns
}

// full reports whether the server has as many connections as it will take.
func (h *hub) full() bool {
	_, conns := h.counts()
	return conns >= maxConnections
}

// shutdown closes every connection with 1001 and waits for them to go. When
// ctx ends first, it cuts the rest off: their writes and reads fail at once.
// Then it closes the channel layer.
func (h *hub) shutdown(ctx context.Context) {
	defer h.layer.close()
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	h.forEach(func(c *client) { c.close(closeGoingAway, "server shutting down") })

	done := make(chan struct{})
	go func() { h.live.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.forEach((*client).abort)
		<-done
	}
}

// forEach calls f for every member of every room. f must not block: it runs
// with the hub and room locks held.
func (h *hub) forEach(f func(*client)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms {
		r.mu.RLock()
		for c := range r.members {
			f(c)
		}
		r.mu.RUnlock()
	}
}

// deliver hands a frame that another process published to the members of
// its room here. The channel layer calls it.
func (h *hub) deliver(roomName string, f frame) {
	h.mu.Lock()
	r := h.rooms[roomName]
	h.mu.Unlock()
	if r != nil { // else the last member left while the frame was on its way
		r.deliver(nil, f)
	}
}

// broadcast sends f to everyone in the room but the sender: the members
// here, then, through the channel layer, those of other processes.
func (r *room) broadcast(from *client, f frame) {
	r.deliver(from, f)
	r.layer.publish(r.name, f)
}

// deliver queues f for every member here but from. It never waits for a
// socket: send only appends to a queue, so the read lock is held for one
// pass over the members and no longer.
func (r *room) deliver(from *client, f frame) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for c := range r.members {
		if c != from {
			c.send(f)
		}
	}
}

// client is one WebSocket connection and its membership of one room. Its
// read loop runs on the connection's own goroutine; a writer goroutine, the
// only one that writes frames to the socket, runs while there is something
// to write and exits when the queue is empty, so an idle connection costs
// one goroutine, not two.
type client struct {
	id     uint64
	remote string
	hub    *hub
	conn   net.Conn      // the socket, taken from net/http; the writer writes here
	in     *bufio.Reader // what x/net reads the socket through
	room   *room         // set by join, cleared by leave, both on the connection's goroutine

	mu        sync.Mutex
	ws        *websocket.Conn // x/net's reading side; nil until serve, and no writer starts before
	queue     [][]byte        // the wire bytes of the frames waiting for the writer (only send adds to it)
	spare     [][]byte        // an empty array for the next batch, kept between writers
	writing   bool            // a writer is running (and, once closed, has run)
	closeCode int             // non-zero once a close was asked for
	closeWhy  string          // why, for the log
	closing   atomic.Bool     // closeCode != 0, readable without the lock
	aborted   atomic.Bool     // cut off: no close frame is attempted
	writeBy   time.Time       // the socket's write deadline now
	closed    chan struct{}   // closed when the writer has sent the close frame
}

// newClient prepares a connection for the hub. Nothing is written to conn
// until x/net has answered the handshake (attach).
func newClient(h *hub, t *takenConn, remote string) *client {
	return &client{id: h.nextID.Add(1), conn: t.conn, in: t.rw.Reader, remote: remote, hub: h, closed: make(chan struct{})}
}

// send queues f for this client without waiting. A client whose queue is
// full is not keeping up; it is closed with 1008 and the caller goes on.
func (c *client) send(f frame) {
	c.mu.Lock()
	if c.closeCode != 0 {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= sendQueueLen {
		c.mu.Unlock()
		if c.close(closePolicyViolation, "send queue full") {
			c.hub.stats.dropped.Add(1)
		}
		return
	}
	c.queue = append(c.queue, f.wire)
	c.startWriterLocked()
	c.mu.Unlock()
}

// startWriterLocked starts the writer if the handshake response is out
// (serve has the socket) and no writer runs yet. It runs with c.mu held, so
// at most one writer ever runs; the new writer waits for the lock before it
// looks at the queue.
func (c *client) startWriterLocked() {
	if c.writing || c.ws == nil {
		return
	}
	c.writing = true
	go c.writeLoop()
}

// close asks the writer to end the connection with code: queued frames are
// dropped, the close frame goes out after the frame being written now, and
// the read loop then ends. Only the first call counts; it reports whether
// this call was that one.
func (c *client) close(code int, why string) bool {
	c.mu.Lock()
	if c.closeCode != 0 {
		c.mu.Unlock()
		return false
	}
	c.closeCode, c.closeWhy = code, why
	c.closing.Store(true)
	c.queue = nil
	c.startWriterLocked()
	c.mu.Unlock()
	return true
}

// abort cuts the connection off without a goodbye: both deadlines pass now,
// so a write stuck on a dead peer and the read loop fail at once.
// x/net/websocket's own Close would wait behind that stuck write instead.
func (c *client) abort() {
	c.aborted.Store(true)
	// The connection is being dropped; if this fails, it already is.
	_ = c.conn.SetDeadline(time.Now())
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
		code := c.closeCode
		if code == 0 && len(c.queue) == 0 {
			c.queue, c.spare = keepSmall(c.queue), keepSmall(batch)
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch, c.queue = c.queue, batch[:0]
		var err error
		if code == 0 {
			err = c.renewWriteDeadlineLocked()
		}
		c.mu.Unlock()

		if code != 0 {
			c.writeClose(code)
			close(c.closed)
			return // writing stays true: no writer starts again
		}
		if err == nil {
			err = c.writeBatch(batch)
		}
		if err != nil {
			c.close(closeGoingAway, "write failed: "+err.Error())
			c.abort() // the socket is broken; the close frame will fail fast
		}
		clear(batch) // the writer must not keep frames alive
		c.mu.Lock()
	}
}

// keepSmall empties a queue array for reuse, unless a burst made it big:
// an idle connection should not hold on to that.
func keepSmall(q [][]byte) [][]byte {
	if cap(q) > keptQueueCap {
		return nil
	}
	return q[:0]
}

// renewWriteDeadlineLocked makes sure the socket's write deadline lies
// between half of writeTimeout and all of it ahead, before a write. Setting
// a deadline costs a timer update, 4 % of the CPU in BenchmarkBroadcast's
// profile, so one still more than half writeTimeout away is kept. It runs
// with c.mu held, because two goroutines write: the writer, and the read
// loop when x/net answers a ping (allowPong). Once a close is asked for it
// is not called, so the close's shorter deadline stands.
func (c *client) renewWriteDeadlineLocked() error {
	now := time.Now()
	if c.writeBy.Sub(now) >= c.hub.write/2 {
		return nil
	}
	c.writeBy = now.Add(c.hub.write)
	return c.conn.SetWriteDeadline(c.writeBy)
}

// allowPong runs in the read loop before x/net writes a pong to a client's
// ping: without it, the pong would meet the deadline of the writer's last
// batch, long past on a quiet connection, fail, and end the connection.
func (c *client) allowPong() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeCode == 0 {
		// A failure shows again, and is dealt with, at the pong's write.
		_ = c.renewWriteDeadlineLocked()
	}
}

// writeBatch writes a batch of frames in one system call (writeFrames).
func (c *client) writeBatch(batch [][]byte) error {
	if c.hub.log.Enabled(context.Background(), slog.LevelDebug) {
		for _, wire := range batch {
			c.hub.log.Debug("frame out", "conn", c.id, "data", string(payloadOf(wire)))
		}
	}
	if err := writeFrames(c.conn, batch); err != nil {
		return err
	}
	c.hub.stats.delivered.Add(int64(len(batch)))
	return nil
}

// writeClose sends the close frame, then gives the peer closeTimeout to
// answer with its own before the read loop gives up on it.
func (c *client) writeClose(code int) {
	if c.aborted.Load() {
		return // cut off: the deadlines have passed and must stay so
	}
	deadline := time.Now().Add(closeTimeout)
	if err := c.conn.SetWriteDeadline(deadline); err == nil {
		// A peer that is gone cannot be told; the read loop ends either way.
		_, _ = c.conn.Write(closeFrame(code).wire)
	}
	_ = c.conn.SetReadDeadline(deadline)
}

// serve runs one connection once its handshake is done: it reads until the
// connection ends, waits for the writer's close frame, then leaves the room
// and closes the socket.
//
// A goroutine's stack grows to fit the deepest call it makes, and the
// garbage collector halves it only while the goroutine is using less than a
// quarter of it. This one lives as long as the connection, mostly waiting
// for the next frame. So it starts after the handshake, which runs on
// net/http's goroutine; it waits for frames in readLoop itself, near the
// top of its stack; and it does what goes deep (formatting a log line,
// decoding JSON) through onSpareStack. An idle connection's goroutine then
// fits in 2 KiB of stack instead of 8 (BenchmarkIdleConnections).
func (c *client) serve(ws *websocket.Conn) {
	forgetRequest(ws)
	start := c.attach(ws)
	onSpareStack(c.logConnect)
	code, why := c.readLoop()
	c.close(code, why)
	<-c.closed // bounded: the batch being written (writeTimeout), then the close frame
	c.logDisconnect(start)
	c.hub.leave(c)
	c.closeConn()
}

// closeConn closes the socket. An error means it is closed already.
func (c *client) closeConn() {
	_ = c.conn.Close()
}

// attach gives the client its socket. Frames queued since the join, or a
// close asked for by shutdown, can be written from now on.
func (c *client) attach(ws *websocket.Conn) time.Time {
	c.mu.Lock()
	c.ws = ws
	if len(c.queue) > 0 || c.closeCode != 0 {
		c.startWriterLocked()
	}
	c.mu.Unlock()
	return time.Now()
}

// logConnect says who connected to which room.
func (c *client) logConnect() {
	c.hub.log.Info("connected", "conn", c.id, "room", c.room.name, "remote", c.remote)
}

// onSpareStack runs f on a short-lived goroutine and waits for it, so that
// the stack f needs is borrowed and given back, not kept by the caller for
// the rest of its life (see serve). It costs about 0.4 µs
// (BenchmarkOnSpareStack).
func onSpareStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// logDisconnect says how the connection ended, and flags a slow client.
func (c *client) logDisconnect(start time.Time) {
	c.mu.Lock()
	code, why := c.closeCode, c.closeWhy
	c.mu.Unlock()
	if code == closePolicyViolation {
		c.hub.log.Warn("dropped slow client", "conn", c.id, "room", c.room.name, "remote", c.remote)
	}
	c.hub.log.Info("disconnected", "conn", c.id, "room", c.room.name, "code", code, "reason", why,
		"duration", time.Since(start).Round(time.Millisecond))
}

// readLoop reads frames until the connection ends and returns the close code
// and reason the connection should end with. Once a close is under way it
// keeps reading, ignoring what arrives, until the peer's close frame or the
// closing deadline: that lets the peer see our close frame before the socket
// shuts.
func (c *client) readLoop() (code int, why string) {
	bucket := c.hub.limit.newBucket()
	beforePong := c.allowPong
	for {
		if err := c.renewReadDeadline(); err != nil {
			return closeGoingAway, err.Error()
		}
		// Wait for the next frame here, near the top of the stack, rather
		// than deep in x/net's frame reader: see serve.
		_, err := c.in.Peek(1)
		var m rawMessage
		if err == nil {
			m, err = receive(c.ws, maxFrameBytes, beforePong)
		}
		if code, why, stop := c.take(m, err, bucket); stop {
			return code, why
		}
	}
}

// take deals with what receive returned. It reports stop, with the close
// code and reason, when the connection is over.
func (c *client) take(m rawMessage, err error, bucket *tokenBucket) (code int, why string, stop bool) {
	switch {
	case c.closing.Load():
		// A code was set already; this one goes unused.
		return closeNormal, "closed", err != nil
	case errors.Is(err, errTooLarge):
		c.reply(bucket, frameTooLargeFrame)
	case err != nil:
		code, why = closeReason(err)
		return code, why, true
	default:
		onSpareStack(func() { c.dispatch(m, bucket) })
	}
	return 0, "", false
}

// renewReadDeadline gives the client another idleTimeout to send a frame,
// unless a close is under way, when the writer's shorter deadline stands.
func (c *client) renewReadDeadline() error {
	if c.closing.Load() {
		return nil
	}
	if err := c.ws.SetReadDeadline(time.Now().Add(c.hub.idle)); err != nil {
		return err
	}
	// The writer may have set the closing deadline just before we pushed
	// it back; set it again so that it is not lost.
	if c.closing.Load() {
		return c.ws.SetReadDeadline(time.Now().Add(closeTimeout))
	}
	return nil
}

// closeReason turns a read error into the close code and reason for it.
func closeReason(err error) (code int, why string) {
	switch {
	case isTimeout(err):
		return closeGoingAway, "idle timeout"
	case errors.Is(err, io.EOF):
		return closeNormal, "client closed"
	case errors.Is(err, errBadFragment):
		return closeProtocolError, err.Error()
	default:
		return closeNormal, "read failed: " + err.Error()
	}
}

// dispatch handles one whole message from the client: binary and broken
// text end the connection, a frame over the rate is refused, and the rest
// goes to handle.
func (c *client) dispatch(m rawMessage, bucket *tokenBucket) {
	c.hub.stats.received.Add(1)
	if c.hub.log.Enabled(context.Background(), slog.LevelDebug) {
		c.hub.log.Debug("frame in", "conn", c.id, "binary", m.binary, "data", string(m.data))
	}
	switch {
	case m.binary:
		c.close(closeUnsupportedData, "binary frame")
	case !utf8.Valid(m.data):
		c.close(closeInvalidPayload, "invalid UTF-8")
	case !bucket.allow():
		c.send(c.hub.limit.frame)
	default:
		c.handle(m.data)
	}
}

// reply sends f to the client, or the rate_limited error instead when it
// is over its rate: errors count against the rate like anything else.
func (c *client) reply(bucket *tokenBucket, f frame) {
	if !bucket.allow() {
		f = c.hub.limit.frame
	}
	c.send(f)
}

// handle decodes one text frame and routes it to its action's handler, or
// tells the sender what was wrong with it.
func (c *client) handle(data []byte) {
	msg, errs := decode(data)
	if errs != nil {
		c.send(errorFrame(errs...))
		return
	}
	actions[msg.Action].handle(c, msg.Payload)
}

// isTimeout reports whether err is a passed deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rateLimit is the per-connection message rate: perSecond text frames a
// second on average, with bursts up to burst. perSecond 0 turns it off.
type rateLimit struct {
	perSecond float64
	burst     float64
	frame     frame // the rate_limited error, built once
}

// newRateLimit returns the limit for perSecond frames a second, with bursts
// of twice that, as docs/protocol.md sets it (20 a second, bursts of 40).
func newRateLimit(perSecond float64) rateLimit {
	return rateLimit{perSecond: perSecond, burst: 2 * perSecond, frame: rateLimitedFrame(perSecond)}
}

// newBucket returns a full token bucket for one connection, or nil when
// there is no limit.
func (l rateLimit) newBucket() *tokenBucket {
	if l.perSecond <= 0 {
		return nil
	}
	return &tokenBucket{rate: l.perSecond, burst: l.burst, tokens: l.burst, last: time.Now()}
}

// tokenBucket allows a frame for each token; tokens come back at rate a
// second, up to burst. Only the read loop touches it, so it needs no lock.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

// allow takes a token if there is one. A nil bucket allows everything.
func (b *tokenBucket) allow() bool {
	if b == nil {
		return true
	}
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
