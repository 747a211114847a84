package main

// This file is the Redis channel layer, which lets one room span several
// roomchat processes, as channels_redis does for Django Channels. Each
// process subscribes to the Redis channel of every room it has members in,
// and publishes there every frame its members broadcast; Redis hands each
// published frame to every subscribed process, and each one delivers it to
// its own members (hub.fromLayer). The hub knows only the channelLayer
// interface; without -redis it has the in-memory one (layer.go).
//
// This file keeps the layer's books: which rooms are subscribed, what waits
// to be published, whether Redis is up, and reconnecting when it is not.
// One connected session with Redis, its two connections and their loops,
// is redissession.go.

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/url"
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

	// redisStableAfter is how long a session must live before an outage
	// counts as over: a Redis that accepts sessions and drops them at once
	// keeps the backoff growing, and the log to one line for the outage.
	redisStableAfter = 30 * time.Second

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

	// redisURLEnv is the environment variable that may hold the -redis URL:
	// unlike a flag, other users cannot read it in the process list.
	redisURLEnv = "ROOMCHAT_REDIS_URL"
)

// redisLayer is the channel layer over Redis pub/sub.
type redisLayer struct {
	addr, user, password string
	tls                  *tls.Config // nil for redis://
	id                   []byte      // marks what this process publishes, so it skips its own
	log                  *slog.Logger
	hub                  layerHub // where what other processes say goes
	keepCount            int      // messages a room's shared history keeps; 0: none (redishistory.go)

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
	rejected                     atomic.Int64 // frames from Redis that were not the protocol's
	reconnects                   atomic.Int64 // sessions begun again after one ended
	dropping                     atomic.Bool  // in a burst of drops, logged once
	rejecting                    atomic.Bool  // in a burst of rejections, logged once
}

// outgoing is one command for the publisher connection: a frame to
// PUBLISH, a chat message to keep (redishistory.go), or a room's stream to
// load, with ready closed once it is.
type outgoing struct {
	room  string
	msg   []byte // this process's id, a space, the frame's JSON
	kept  *keptOut
	load  bool
	ready chan struct{}
}

// subCommand is SUBSCRIBE or UNSUBSCRIBE for one room.
type subCommand struct {
	verb, room string
}

// dialRedisLayer connects to the Redis that rawURL names and returns the
// layer, running. It fails, saying why, when the URL is wrong or Redis
// cannot be reached or refuses the password: a cluster that is meant to
// share rooms must not start as separate chats.
func dialRedisLayer(rawURL string, log *slog.Logger, hub layerHub, keep int) (*redisLayer, error) {
	l := &redisLayer{
		log:       log,
		hub:       hub,
		keepCount: keep,
		outbox:    make(chan outgoing, publishQueueLen),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		rooms:     map[string]bool{},
		pending:   map[string][]chan struct{}{},
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
		// url.Parse's errors quote parts of the URL, which may be parts
		// of the password: none of it is repeated.
		return errors.New("redis URL: it is not a valid URL (not shown: it may hold a password); percent-encode # / ? @ : in the password")
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
	case l.outbox <- outgoing{room: room, msg: msg}:
	default:
		l.dropped.Add(1)
		if l.dropping.CompareAndSwap(false, true) {
			l.log.Warn("redis publish queue full: frames for other processes are being dropped", "queue", publishQueueLen)
		}
	}
}

// redisStatus is what /healthz says of the Redis layer.
type redisStatus struct {
	Connected  bool  `json:"connected"`
	Published  int64 `json:"published"`  // frames sent to other processes
	Received   int64 `json:"received"`   // frames from other processes
	Dropped    int64 `json:"dropped"`    // frames that could not be sent to them
	Rejected   int64 `json:"rejected"`   // frames from Redis that were not the protocol's, never delivered
	Reconnects int64 `json:"reconnects"` // sessions begun again after one ended
}

// status is the layer's part of /healthz.
func (l *redisLayer) status() layerStatus {
	return layerStatus{Kind: "redis", redisStatus: &redisStatus{
		Connected:  l.up.Load(),
		Published:  l.published.Load(),
		Received:   l.received.Load(),
		Dropped:    l.dropped.Load(),
		Rejected:   l.rejected.Load(),
		Reconnects: l.reconnects.Load(),
	}}
}

// close stops the layer: its connections are closed and its goroutines
// gone when it returns. A second call waits as the first.
func (l *redisLayer) close() {
	l.mu.Lock()
	if !l.stopped {
		close(l.stop)
	}
	l.stopped = true
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

// confirm ends the wait of the oldest SUBSCRIBE of room still pending
// (Redis answers the commands of one connection in the order they came),
// after loading the room's shared history, when there is one: from then on
// its messages come live, and the load holds those before.
func (l *redisLayer) confirm(room string) {
	l.mu.Lock()
	waits := l.pending[room]
	var ready chan struct{}
	switch len(waits) {
	case 0:
	case 1:
		ready = waits[0]
		delete(l.pending, room)
	default:
		ready = waits[0]
		l.pending[room] = waits[1:]
	}
	l.mu.Unlock()
	if l.keepCount <= 0 {
		closeReady(ready)
		return
	}
	select {
	case l.outbox <- outgoing{room: room, load: true, ready: ready}:
	default: // the publisher is swamped: members join with what the mirror has
		closeReady(ready)
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
	if l.keepCount > 0 {
		l.hub.historyBroken()
	}
	for {
		select {
		case m := <-l.outbox:
			l.undo(m)
		default:
			return
		}
	}
}

// undo deals with a command that will not reach Redis: a frame is dropped
// for the other processes, a chat message is delivered here only, as
// without history, and a wait for a load ends.
func (l *redisLayer) undo(m outgoing) {
	switch {
	case m.kept != nil:
		l.dropped.Add(1)
		l.hub.fromStream(m.room, streamEntry{msg: m.kept.msg}, true, m.kept.from)
	case m.load:
		closeReady(m.ready)
	default:
		l.dropped.Add(1)
	}
}

// run keeps the layer connected until close: it serves a session, and
// when that fails, dials again with capped, jittered backoff. An outage is
// one line in the log when Redis goes away and one when it is back, not
// one per try: a session that ends before redisStableAfter does not end the
// outage, nor reset the backoff.
func (l *redisLayer) run(s *redisSession) {
	defer l.done.Done()
	backoff, outage := redisBackoffMin, false
	for {
		started := time.Now()
		err := s.serve()
		l.end(s)
		select {
		case <-l.stop:
			return
		default:
		}
		if time.Since(started) >= redisStableAfter {
			backoff, outage = redisBackoffMin, false
		}
		down := time.Now()
		if !outage {
			l.log.Warn("redis layer down: rooms are local until it is back", "redis", l.addr, "err", err)
		} else {
			l.log.Debug("redis session ended early", "redis", l.addr, "lived", down.Sub(started).Round(time.Millisecond), "err", err)
		}
		if s, backoff = l.redial(backoff); s == nil || !l.start(s) {
			return // closed while down
		}
		l.reconnects.Add(1)
		if !outage {
			l.log.Info("redis layer back", "redis", l.addr, "down_for", time.Since(down).Round(time.Millisecond))
		}
		outage = true // until this session proves stable
	}
}

// redial dials until it succeeds, starting from the wait backoff, and
// returns the session and the wait to start from next time; nil when the
// layer is closed.
func (l *redisLayer) redial(backoff time.Duration) (*redisSession, time.Duration) {
	for {
		wait := backoff/2 + mathrand.N(backoff)
		backoff = min(2*backoff, redisBackoffMax)
		select {
		case <-l.stop:
			return nil, backoff
		case <-time.After(wait):
		}
		s, err := l.dial()
		if err == nil {
			return s, backoff
		}
		l.log.Debug("redis still away", "redis", l.addr, "err", err)
	}
}

// reject counts a frame from Redis that is not the protocol's, and logs
// the first of a burst: whoever can PUBLISH on the shared Redis must not be
// able to send members what no roomchat would.
func (l *redisLayer) reject(room string) {
	if l.rejected.Add(1); l.rejecting.CompareAndSwap(false, true) {
		l.log.Warn("frames on a room's Redis channel that roomchat did not write were dropped", "room", room, "rejected_total", l.rejected.Load())
		time.AfterFunc(time.Minute, func() { l.rejecting.Store(false) })
	}
}

// redisLayer must stay a channelLayer; the compiler checks it here.
var _ channelLayer = (*redisLayer)(nil)
