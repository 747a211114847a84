package main

// This file is the Redis channel layer, which lets one room span several
// roomchat processes, as channels_redis does for Django Channels. Each
// process subscribes to the Redis channel of every room it has members in,
// and publishes there every frame its members broadcast; Redis hands each
// published frame to every subscribed process, and each one delivers it to
// its own members (hub.go:deliver). The hub knows only the channelLayer
// interface; without -redis it has the in-memory one (layer.go:memoryLayer).
//
// Two connections to Redis: one publishes, the other is in subscribe mode,
// where Redis allows nothing but (UN)SUBSCRIBE and PING. Both are one
// session: when either fails, both are closed and dialed again.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Timing and sizes of the Redis layer.
const (
	// redisDialTimeout bounds a dial with its AUTH and PING, at start-up
	// and at every reconnect.
	redisDialTimeout = 3 * time.Second

	// redisIOTimeout bounds one pipeline of PUBLISHes and their replies,
	// and one write of SUBSCRIBE commands: a Redis that hangs is given up
	// on, not waited for.
	redisIOTimeout = 3 * time.Second

	// redisPingEvery is how often the subscriber connection pings Redis
	// while nothing else happens; three missed answers and it is dropped.
	// A subscriber only reads, so without this a dead Redis would go
	// unnoticed.
	redisPingEvery = 5 * time.Second

	// The wait between reconnect attempts starts at redisBackoffMin and
	// doubles up to redisBackoffMax, each wait drawn from half to one and a
	// half times that, so that a fleet of processes does not knock on a
	// restarted Redis all at once.
	redisBackoffMin = 100 * time.Millisecond
	redisBackoffMax = 5 * time.Second

	// publishQueueLen is how many frames may wait for the publisher. A
	// broadcast never waits for Redis: a frame that finds the queue full
	// is dropped for the other processes (this process's own members
	// still get it), counted, and logged once per burst.
	publishQueueLen = 4096

	// publishBatch is the most PUBLISH commands sent in one write.
	publishBatch = 256

	// subscribeWait is how long a join waits for Redis to confirm the
	// subscription of a new room, so that its member hears the other
	// processes by the time it reads the 101. A Redis that does not
	// answer in that time does not hold the handshake any longer.
	subscribeWait = 1500 * time.Millisecond

	// channelPrefix names a room's Redis channel: roomchat:room:lobby.
	channelPrefix = "roomchat:room:"
)

// redisLayer is the channel layer over Redis pub/sub.
type redisLayer struct {
	addr, user, password string
	tls                  *tls.Config // nil for redis://
	id                   []byte      // marks what this process publishes, so it skips its own
	log                  *slog.Logger
	deliver              func(room string, f frame) // hands a frame from another process to the hub

	outbox chan outgoing // for the publisher
	wake   chan struct{} // tells the subscriber writer there are commands
	stop   chan struct{} // closed by close
	done   sync.WaitGroup

	mu      sync.Mutex
	stopped bool                       // close was called
	up      atomic.Bool                // a session is running; set under mu
	rooms   map[string]bool            // rooms with members here: subscribed while up
	cmds    []subCommand               // for the subscriber writer, in order
	pending map[string][]chan struct{} // per room, a SUBSCRIBE sent and not yet confirmed; nil: nobody waits
	session *redisSession

	published, received, dropped atomic.Int64
	dropping                     atomic.Bool // in a burst of drops, logged once
}

// outgoing is one frame for the publisher.
type outgoing struct {
	room string
	msg  []byte // this process's id, a space, the frame's JSON
}

// subCommand is SUBSCRIBE or UNSUBSCRIBE for one room.
type subCommand struct {
	verb, room string
}

// dialRedisLayer connects to the Redis that rawURL names and returns the
// layer, running. It fails, saying why, when the URL is wrong or Redis
// cannot be reached or refuses the password: a cluster that is meant to
// share rooms must not start as separate chats.
func dialRedisLayer(rawURL string, log *slog.Logger, deliver func(string, frame)) (*redisLayer, error) {
	l := &redisLayer{
		log:     log,
		deliver: deliver,
		outbox:  make(chan outgoing, publishQueueLen),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		rooms:   map[string]bool{},
		pending: map[string][]chan struct{}{},
	}
	if err := l.parseURL(rawURL); err != nil {
		return nil, err
	}
	l.id = []byte(rand.Text())

	s, err := l.dial()
	if err != nil {
		return nil, err
	}
	l.start(s) // nothing has closed the layer yet
	l.log.Info("redis layer connected", "redis", l.addr)
	l.done.Add(1)
	go l.run(s)
	return l, nil
}

// parseURL reads redis://[[user]:password@]host[:port] or rediss://...
// (TLS). A path (a database number) is ignored: pub/sub channels are the
// same in every database.
func (l *redisLayer) parseURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("redis URL: %v", redactURLError(err))
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		l.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	default:
		return fmt.Errorf("redis URL: the scheme is %q; want redis:// or rediss://", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("redis URL: no host; want redis://host:port")
	}
	l.addr = u.Host
	if u.Port() == "" {
		l.addr = net.JoinHostPort(u.Hostname(), "6379")
	}
	if u.User != nil {
		l.user = u.User.Username()
		l.password, _ = u.User.Password()
	}
	return nil
}

// redactURLError drops the URL from a url.Parse error: it may hold the
// password.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// channelLayer methods: what the hub calls.

// subscribe asks for the messages of room from the other processes. The
// channel it returns is closed once Redis has confirmed, or at once while
// Redis is away: the room is subscribed again when it is back.
func (l *redisLayer) subscribe(room string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rooms[room] = true
	ready := make(chan struct{})
	if !l.up.Load() {
		close(ready)
		return ready
	}
	l.queueLocked(subCommand{"SUBSCRIBE", room}, ready)
	return ready
}

// unsubscribe stops the messages of room, which has no members here now.
func (l *redisLayer) unsubscribe(room string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.rooms, room)
	if l.up.Load() {
		l.queueLocked(subCommand{"UNSUBSCRIBE", room}, nil)
	}
}

// publish hands f to the publisher for the other processes in room. It
// never waits: while Redis is away, or the queue is full, the frame is
// dropped for them and counted.
func (l *redisLayer) publish(room string, f frame) {
	if !l.up.Load() {
		l.dropped.Add(1)
		return
	}
	payload := f.payload()
	msg := make([]byte, 0, len(l.id)+1+len(payload))
	msg = append(append(append(msg, l.id...), ' '), payload...)
	select {
	case l.outbox <- outgoing{room, msg}:
	default:
		l.dropped.Add(1)
		if l.dropping.CompareAndSwap(false, true) {
			l.log.Warn("redis publish queue full: frames for other processes are being dropped", "queue", publishQueueLen)
		}
	}
}

// redisStatus is what /healthz says of the Redis layer.
type redisStatus struct {
	Connected bool  `json:"connected"`
	Published int64 `json:"published"` // frames sent to other processes
	Received  int64 `json:"received"`  // frames from other processes
	Dropped   int64 `json:"dropped"`   // frames that could not be sent to them
}

// status is the layer's part of /healthz.
func (l *redisLayer) status() layerStatus {
	return layerStatus{Kind: "redis", redisStatus: &redisStatus{
		Connected: l.up.Load(),
		Published: l.published.Load(),
		Received:  l.received.Load(),
		Dropped:   l.dropped.Load(),
	}}
}

// close stops the layer: its connections are closed and its goroutines
// gone when it returns.
func (l *redisLayer) close() {
	l.mu.Lock()
	l.stopped = true
	close(l.stop)
	s := l.session
	l.mu.Unlock()
	if s != nil {
		s.close()
	}
	l.done.Wait()
}

// queueLocked adds a command for the subscriber writer; ready, for a
// SUBSCRIBE, is closed when Redis confirms it. It runs with l.mu held.
func (l *redisLayer) queueLocked(cmd subCommand, ready chan struct{}) {
	l.cmds = append(l.cmds, cmd)
	if cmd.verb == "SUBSCRIBE" {
		l.pending[cmd.room] = append(l.pending[cmd.room], ready)
	}
	select {
	case l.wake <- struct{}{}:
	default: // already woken
	}
}

// confirm closes the wait of the oldest SUBSCRIBE of room still pending:
// Redis answers the commands of one connection in the order they came.
func (l *redisLayer) confirm(room string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	waits := l.pending[room]
	if len(waits) == 0 {
		return
	}
	if waits[0] != nil {
		close(waits[0])
	}
	if len(waits) == 1 {
		delete(l.pending, room)
	} else {
		l.pending[room] = waits[1:]
	}
}

// start makes s the running session and subscribes every room that has
// members here: after a reconnect, they are all subscribed again. It
// reports false, and closes s, if the layer was closed meanwhile.
func (l *redisLayer) start(s *redisSession) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		s.close()
		return false
	}
	l.session = s
	l.up.Store(true)
	for room := range l.rooms {
		l.queueLocked(subCommand{"SUBSCRIBE", room}, nil)
	}
	return true
}

// end marks the layer down after s failed: no one waits for a
// subscription, and queued commands and frames are dropped.
func (l *redisLayer) end(s *redisSession) {
	l.mu.Lock()
	l.up.Store(false)
	l.session = nil
	for _, waits := range l.pending {
		for _, ready := range waits {
			if ready != nil {
				close(ready)
			}
		}
	}
	clear(l.pending)
	l.cmds = nil
	l.mu.Unlock()
	s.close()
	for {
		select {
		case <-l.outbox:
			l.dropped.Add(1)
		default:
			return
		}
	}
}

// run keeps the layer connected until close: it serves a session, and
// when that fails, dials again with capped, jittered backoff. It logs one
// line when Redis goes away and one when it is back, not one per try.
func (l *redisLayer) run(s *redisSession) {
	defer l.done.Done()
	for {
		err := s.serve()
		l.end(s)
		select {
		case <-l.stop:
			return
		default:
		}
		l.log.Warn("redis layer down: rooms are local until it is back", "redis", l.addr, "err", err)
		down := time.Now()
		if s = l.redial(); s == nil || !l.start(s) {
			return // closed while down
		}
		l.log.Info("redis layer back", "redis", l.addr, "down_for", time.Since(down).Round(time.Millisecond))
	}
}

// redial dials until it succeeds, or returns nil when the layer is closed.
func (l *redisLayer) redial() *redisSession {
	backoff := redisBackoffMin
	for {
		wait := backoff/2 + mathrand.N(backoff)
		select {
		case <-l.stop:
			return nil
		case <-time.After(wait):
		}
		s, err := l.dial()
		if err == nil {
			return s
		}
		l.log.Debug("redis still away", "redis", l.addr, "err", err)
		backoff = min(2*backoff, redisBackoffMax)
	}
}

// redisSession is the pair of connections one run of the layer uses.
type redisSession struct {
	l        *redisLayer
	pub, sub *redisConn
	closing  chan struct{} // closed by close
	once     sync.Once
}

// dial opens both connections, each authenticated and answering PING.
func (l *redisLayer) dial() (*redisSession, error) {
	pub, err := l.dialConn()
	if err != nil {
		return nil, err
	}
	sub, err := l.dialConn()
	if err != nil {
		pub.Close()
		return nil, err
	}
	return &redisSession{l: l, pub: pub, sub: sub, closing: make(chan struct{})}, nil
}

// redisConn is one connection to Redis with its buffers.
type redisConn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// dialConn connects, authenticates and pings within redisDialTimeout. Its
// errors name the address, never the password.
func (l *redisLayer) dialConn() (*redisConn, error) {
	d := &net.Dialer{Timeout: redisDialTimeout}
	var conn net.Conn
	var err error
	if l.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: l.tls}).Dial("tcp", l.addr)
	} else {
		conn, err = d.Dial("tcp", l.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("redis at %s: %w", l.addr, err)
	}
	c := &redisConn{Conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}
	if err := c.hello(l.user, l.password); err != nil {
		conn.Close()
		return nil, fmt.Errorf("redis at %s: %w", l.addr, err)
	}
	return c, nil
}

// hello sends AUTH (when there is a password) and PING, and checks the
// answers.
func (c *redisConn) hello(user, password string) error {
	c.SetDeadline(time.Now().Add(redisDialTimeout))
	defer c.SetDeadline(time.Time{})
	if password != "" {
		if user != "" {
			writeCommand(c.w, []byte("AUTH"), []byte(user), []byte(password))
		} else {
			writeCommand(c.w, []byte("AUTH"), []byte(password))
		}
	}
	writeCommand(c.w, []byte("PING"))
	if err := c.w.Flush(); err != nil {
		return err
	}
	if password != "" {
		if _, err := readReply(c.r); err != nil {
			return err
		}
	}
	reply, err := readReply(c.r)
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("%w: PING answered with %v", errProtocol, reply)
	}
	return nil
}

// serve runs the session's three loops until one of them fails or the
// layer is closed, and returns the first error.
func (s *redisSession) serve() error {
	errs := make(chan error, 3)
	for _, loop := range []func() error{s.publishLoop, s.subscribeLoop, s.receiveLoop} {
		go func() { errs <- loop() }()
	}
	err := <-errs
	s.close() // the other two end on their closed connections
	<-errs
	<-errs
	return err
}

// close ends the session; its loops return.
func (s *redisSession) close() {
	s.once.Do(func() {
		close(s.closing)
		s.pub.Close()
		s.sub.Close()
	})
}

// errSessionClosed ends a loop of a session that was closed.
var errSessionClosed = errors.New("closed")

// publishLoop sends queued frames with PUBLISH, as many as are waiting in
// one write (a pipeline), then reads as many replies.
func (s *redisSession) publishLoop() error {
	l, c := s.l, s.pub
	batch := make([]outgoing, 0, publishBatch)
	for {
		batch = batch[:0]
		select {
		case m := <-l.outbox:
			batch = append(batch, m)
		case <-s.closing:
			return errSessionClosed
		}
	more:
		for len(batch) < publishBatch {
			select {
			case m := <-l.outbox:
				batch = append(batch, m)
			default:
				break more
			}
		}
		c.SetDeadline(time.Now().Add(redisIOTimeout))
		for _, m := range batch {
			writeCommand(c.w, []byte("PUBLISH"), []byte(channelPrefix+m.room), m.msg)
		}
		err := c.w.Flush()
		for i := 0; err == nil && i < len(batch); i++ {
			_, err = readReply(c.r)
		}
		if err != nil {
			l.dropped.Add(int64(len(batch)))
			return fmt.Errorf("publish: %w", err)
		}
		l.published.Add(int64(len(batch)))
		if len(l.outbox) == 0 && l.dropping.CompareAndSwap(true, false) {
			l.log.Info("redis publish queue drained", "dropped_total", l.dropped.Load())
		}
	}
}

// subscribeLoop writes the SUBSCRIBE and UNSUBSCRIBE commands the hub
// asked for, in order, and a PING when nothing has happened for a while.
func (s *redisSession) subscribeLoop() error {
	l, c := s.l, s.sub
	ping := time.NewTicker(redisPingEvery)
	defer ping.Stop()
	for {
		select {
		case <-l.wake:
		case <-ping.C:
			writeCommand(c.w, []byte("PING"))
		case <-s.closing:
			return errSessionClosed
		}
		l.mu.Lock()
		cmds := l.cmds
		l.cmds = nil
		l.mu.Unlock()
		for _, cmd := range cmds {
			writeCommand(c.w, []byte(cmd.verb), []byte(channelPrefix+cmd.room))
		}
		c.SetWriteDeadline(time.Now().Add(redisIOTimeout))
		if err := c.w.Flush(); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
}

// receiveLoop reads what the subscriber connection gets: confirmations of
// SUBSCRIBE, answers to PING, and the frames other processes published,
// which it hands to the hub. Its own frames, which Redis sends back too,
// it skips.
func (s *redisSession) receiveLoop() error {
	l, c := s.l, s.sub
	for {
		c.SetReadDeadline(time.Now().Add(3 * redisPingEvery))
		reply, err := readReply(c.r)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		kind, channel, data, err := pushOf(reply)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		room, ok := strings.CutPrefix(channel, channelPrefix)
		switch {
		case kind == "subscribe" && ok:
			l.confirm(room)
		case kind == "message" && ok:
			from, payload, _ := bytes.Cut(data, []byte(" "))
			if bytes.Equal(from, l.id) {
				continue
			}
			l.received.Add(1)
			l.deliver(room, textFrame(payload))
		}
	}
}

// pushOf reads a reply of subscribe mode: an array of a kind ("message",
// "subscribe", "unsubscribe", "pong"), a channel (for pong, its text) and,
// for the rest, a payload or a count.
func pushOf(reply any) (kind, channel string, data []byte, err error) {
	parts, _ := reply.([]any)
	if len(parts) < 2 {
		return "", "", nil, fmt.Errorf("%w: %v in subscribe mode", errProtocol, reply)
	}
	k, _ := parts[0].([]byte)
	ch, _ := parts[1].([]byte)
	if len(parts) > 2 {
		data, _ = parts[2].([]byte)
	}
	return string(k), string(ch), data, nil
}

// redisLayer must stay a channelLayer; the compiler checks it here.
var _ channelLayer = (*redisLayer)(nil)
