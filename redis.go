package main

// This file is the Redis broker, which lets one room span several roomchat
// processes, as channels_redis does for Django Channels. Every chat message
// goes to Redis, which gives it its id, keeps it in the room's stream and
// publishes it on the room's channel, in one step (redishistory.go). Each
// process subscribes to the channels of the rooms it has members in, and
// delivers what comes, its own messages included, in the order Redis gave
// the ids. The hub knows only the broker interface (broker.go).
//
// This file keeps the broker's books: the rooms subscribed here and what
// this process holds of their streams, whether Redis is up, reconnecting
// when it is not, and the backlog, what was said here while it was away.
// Such a message is delivered here at once, without an id, and published
// when Redis is back, behind a catch-up of what the other processes said
// meanwhile; Redis refuses a copy it already has, so nothing said is lost
// or doubled by the outage. One connected session with Redis, its
// connection and its two loops, is redissession.go.

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Timing and sizes of the Redis broker.
const (
	// redisDialTimeout bounds a dial with its HELLO and SCRIPT LOAD, at
	// start-up and at every reconnect.
	redisDialTimeout = 3 * time.Second

	// redisPingEvery is how often a session pings Redis when it has sent
	// nothing else, and redisReplyTimeout how long any command may wait for
	// its reply: a Redis that stalls, or a network that stops passing
	// bytes, is found within the sum, by every process, publishing or not.
	redisPingEvery    = time.Second
	redisReplyTimeout = 2 * time.Second

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

	// backlogMessages and backlogBytes bound the backlog, what members here
	// say while Redis is away. Past either, a message reaches only the
	// members here, and its sender is told so (not_relayed).
	backlogMessages = 10_000
	backlogBytes    = 16 << 20

	// subscribeWait is how long a join waits for Redis to confirm the
	// subscription of a new room and load its stream, so that its member
	// hears the other processes by the time it reads the 101. A Redis that
	// does not answer in that time does not hold the handshake any longer.
	subscribeWait = 1500 * time.Millisecond

	// channelPrefix names a room's Redis channel: roomchat:room:lobby.
	channelPrefix = "roomchat:room:"

	// redisURLEnv is the environment variable that may hold the -redis URL:
	// unlike a flag, other users cannot read it in the process list.
	redisURLEnv = "ROOMCHAT_REDIS_URL"
)

// redisBroker is the broker over Redis: a Stream and a pub/sub channel per
// room.
type redisBroker struct {
	addr, user, password string
	tls                  *tls.Config // nil for redis://
	id                   string      // this process's name in what it publishes
	log                  *slog.Logger
	keep                 int           // messages a room's stream keeps; 0: none, and no ids
	total                *historyTotal // the bytes of every room's history here
	stop                 chan struct{} // closed by close
	done                 sync.WaitGroup

	// mu guards what follows. It is taken before a stream's lock and a
	// session's, never while one is held.
	mu       sync.Mutex
	stopped  bool               // close was called
	session  *redisSession      // nil while Redis is away
	mirrors  map[string]*mirror // the rooms with members here
	members  map[string]int     // how many each has (redispresence.go)
	who      redisWho           // who is in each (rediswho.go)
	backlog  []outgoing         // said here while Redis was away, oldest first
	held     int                // the bytes of the backlog's messages
	sequence uint64             // the number of the last message this process sent

	up                                   atomic.Bool // session != nil, for status without the lock
	published, received, dropped, reject atomic.Int64
	reconnects                           atomic.Int64
	rejecting                            atomic.Bool // in a burst of rejections, logged once
}

// mirror is what this process holds of a room's stream in Redis: the
// messages that came, for replays, and what it takes to catch up after an
// outage. While a room is loading, the messages that come live are held
// back, so that every member gets the stream in order.
type mirror struct {
	stream
	ready   chan struct{} // closed once the stream's first load is in
	known   bool          // a load is in: the history holds the stream up to its last seq (none, when its epoch is "")
	loading bool          // a load is on its way: live messages wait in early
	early   []streamEntry // what came live during the load, oldest first
}

// outgoing is a chat message on its way to Redis.
type outgoing struct {
	room string
	post *post
	// seq is this process's number for it, in the order it was said.
	// Redis refuses a number it has had from this process (publishScript),
	// so that a message sent again after an outage is never kept twice.
	seq uint64
}

// dialRedisBroker connects to the Redis that rawURL names and returns the
// broker, running, its rooms keeping keep messages each. It fails, saying
// why, when the URL is wrong or Redis cannot be reached or refuses the
// password: a cluster that is meant to share rooms must not start as
// separate chats.
func dialRedisBroker(rawURL string, log *slog.Logger, keep int) (*redisBroker, error) {
	b := &redisBroker{
		log:     log,
		keep:    keep,
		total:   new(historyTotal),
		stop:    make(chan struct{}),
		mirrors: map[string]*mirror{},
		members: map[string]int{},
		id:      strings.ToLower(rand.Text()[:12]),
	}
	if err := b.parseURL(rawURL); err != nil {
		return nil, err
	}
	s, err := b.dial()
	if err != nil {
		return nil, err
	}
	b.start(s) // nothing has closed the broker yet
	b.log.Info("redis broker connected", "redis", b.addr)
	b.done.Add(1)
	go b.run(s)
	return b, nil
}

// parseURL reads redis://[[user]:password@]host[:port] or rediss://...
// (TLS). A path (a database number) is ignored: pub/sub channels are the
// same in every database.
func (b *redisBroker) parseURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's errors quote parts of the URL, which may be parts
		// of the password: none of it is repeated.
		return errors.New("redis URL: it is not a valid URL (not shown: it may hold a password); percent-encode # / ? @ : in the password")
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		b.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	default:
		return fmt.Errorf("redis URL: the scheme is %q; want redis:// or rediss://", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("redis URL: no host; want redis://host:port")
	}
	b.addr = u.Host
	if u.Port() == "" {
		b.addr = net.JoinHostPort(u.Hostname(), "6379")
	}
	if u.User != nil {
		b.user = u.User.Username()
		b.password, _ = u.User.Password()
	}
	return nil
}

// broker methods: what the hub calls.

// subscribe asks for the messages of r's room from every process. The
// channel it returns is closed once Redis has confirmed and the room's
// stream is loaded, or at once while Redis is away: the room is subscribed
// when it is back.
func (b *redisBroker) subscribe(r *room) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := &mirror{stream: stream{name: r.name, room: r, history: mirrorHistory(b.keep, b.total)}, ready: make(chan struct{})}
	b.mirrors[r.name] = m
	if b.session == nil {
		close(m.ready)
	} else {
		m.loading = b.keep > 0
		b.session.send(subscribeCommand(r.name))
	}
	return m.ready
}

// unsubscribe stops the messages of r's room, which has no members here
// now, and forgets what this process held of its stream: unsubscribed, it
// would miss what other processes say meanwhile.
func (b *redisBroker) unsubscribe(r *room) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.mirrors[r.name]
	m.mu.Lock()
	m.history.clear()
	m.gone = true
	m.mu.Unlock()
	delete(b.mirrors, r.name)
	if b.session != nil {
		b.session.send(command{args: args("UNSUBSCRIBE", channelPrefix+r.name)})
	}
}

// publish sends p to Redis, for it to place and hand to every process. It
// never waits: while Redis is away, p is delivered here at once, without an
// id, and kept in the backlog until Redis is back; and while its room's
// backlog waits for its catch-up, p waits behind it, so that its room's
// messages reach Redis in the order they were said.
func (b *redisBroker) publish(room string, p *post) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sequence++
	out := outgoing{room: room, post: p, seq: b.sequence}
	switch {
	case b.session == nil && b.heldCopy(out):
		// sent again while the first waits: its sender hears of the first
	case b.session == nil:
		b.deliverHereLocked(out)
		b.holdLocked(out)
	case slices.ContainsFunc(b.backlog, func(o outgoing) bool { return o.room == room }):
		b.holdLocked(out) // behind the room's backlog, which waits for its catch-up
	default:
		b.session.send(b.publishCommand(out))
	}
}

// join adds c to its room with its replay, from what this process holds of
// the room's stream.
func (b *redisBroker) join(c *client) {
	b.waitWho(c.room.name)
	if m := b.lock(c.room.name); m != nil {
		defer m.mu.Unlock()
		c.room.add(c, &m.history)
		b.who.book.watch(c)
	}
}

// notRelayed is what the sender of a message that reached only this
// process is told: Redis was away, and the backlog full.
var notRelayed = fieldError{Type: errNotRelayed, Loc: []string{},
	Msg: "Delivered only to members on this server: the servers cannot reach each other, and its backlog is full"}

// redisStatus is what /healthz says of the Redis broker.
type redisStatus struct {
	Connected  bool  `json:"connected"`
	Published  int64 `json:"published"`  // messages sent to Redis
	Received   int64 `json:"received"`   // messages from Redis, this process's own included
	Dropped    int64 `json:"dropped"`    // messages that reached only this process: the backlog was full
	Rejected   int64 `json:"rejected"`   // messages from Redis that were not the protocol's, never delivered
	Backlog    int   `json:"backlog"`    // messages said here while Redis was away, waiting for it
	Reconnects int64 `json:"reconnects"` // sessions after the first
}

// status is the broker's part of /healthz.
func (b *redisBroker) status() brokerStatus {
	b.mu.Lock()
	backlog := len(b.backlog)
	b.mu.Unlock()
	st := b.total.status("redis")
	st.redisStatus = &redisStatus{
		Connected:  b.up.Load(),
		Published:  b.published.Load(),
		Received:   b.received.Load(),
		Dropped:    b.dropped.Load(),
		Rejected:   b.reject.Load(),
		Backlog:    backlog,
		Reconnects: b.reconnects.Load(),
	}
	return st
}

// close stops the broker: its connection is closed and its goroutines gone
// when it returns. A second call waits as the first. What is still in the
// backlog is lost, and logged.
func (b *redisBroker) close() {
	b.mu.Lock()
	if !b.stopped {
		close(b.stop)
		if len(b.backlog) > 0 {
			b.log.Warn("redis broker closed with messages that never reached Redis", "backlog", len(b.backlog))
		}
	}
	b.stopped = true
	s := b.session
	b.mu.Unlock()
	if s != nil {
		s.close()
	}
	b.done.Wait()
}

// lock returns room's mirror with its lock held, or nil when the room has
// no members here.
func (b *redisBroker) lock(room string) *mirror {
	b.mu.Lock()
	m := b.mirrors[room]
	b.mu.Unlock()
	if m == nil {
		return nil
	}
	m.mu.Lock()
	if m.gone {
		m.mu.Unlock()
		return nil
	}
	return m
}

// deliverHereLocked delivers out to its room's members here at once,
// without an id: Redis is away. It runs with b.mu held.
func (b *redisBroker) deliverHereLocked(out outgoing) {
	if m := b.mirrors[out.room]; m != nil {
		m.mu.Lock()
		out.post.early = true
		m.room.deliver(out.post)
		out.post.early = false
		m.mu.Unlock()
	}
	out.post.delivered = true
}

// holdLocked keeps out in the backlog, for Redis when it is back; past the
// backlog's bounds, its sender is told it reached only this process. It
// runs with b.mu held.
func (b *redisBroker) holdLocked(out outgoing) {
	size := len(out.post.frame.wire)
	if len(b.backlog) >= backlogMessages || b.held+size > backlogBytes {
		b.dropped.Add(1)
		out.post.refused = &notRelayed
		if m := b.mirrors[out.room]; m != nil {
			m.mu.Lock()
			m.room.deliver(out.post) // to its sender alone: the others here have it
			m.mu.Unlock()
		}
		return
	}
	b.backlog = append(b.backlog, out)
	b.held += size
}

// heldCopy reports whether out is a copy of a message in the backlog (the
// same key), which then has out's sender tell when it is placed: a client
// that lost its connection sends again what had no said. It runs with b.mu
// held.
func (b *redisBroker) heldCopy(out outgoing) bool {
	if out.post.key == "" {
		return false
	}
	i := slices.IndexFunc(b.backlog, func(o outgoing) bool { return o.room == out.room && o.post.key == out.post.key })
	if i >= 0 {
		b.backlog[i].post.from = out.post.from
	}
	return i >= 0
}

// start makes s the running session: it subscribes every room that has
// members here, each to be caught up with what was said meanwhile
// (redishistory.go), and sends the backlog of every room that needs no
// catch-up; a room's own backlog follows its catch-up. It reports false,
// and closes s, if the broker was closed meanwhile.
func (b *redisBroker) start(s *redisSession) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		s.close()
		return false
	}
	b.session = s
	b.up.Store(true)
	s.send(b.heartbeat(s))
	s.send(command{args: args("DEL", presencePrefix+b.id)})
	for room, n := range b.members {
		s.send(b.presentCommand(room, n))
	}
	b.whoStart(s)
	for name, m := range b.mirrors {
		m.mu.Lock()
		m.loading, m.early = b.keep > 0, nil
		m.mu.Unlock()
		s.send(subscribeCommand(name))
	}
	b.sendBacklogLocked(func(room string) bool {
		m := b.mirrors[room]
		return m == nil || b.keep <= 0
	})
	return true
}

// sendBacklogLocked sends the messages of the backlog whose room ready
// says may go now, in order, and keeps the rest. It runs with b.mu held
// and a session running.
func (b *redisBroker) sendBacklogLocked(ready func(room string) bool) {
	kept := b.backlog[:0]
	for _, out := range b.backlog {
		if ready(out.room) {
			b.held -= len(out.post.frame.wire)
			b.session.send(b.publishCommand(out))
		} else {
			kept = append(kept, out)
		}
	}
	clear(b.backlog[len(kept):])
	b.backlog = kept
}

// end marks the broker down after s failed. The messages s had not placed
// (sent without a reply yet, or not sent at all) go back to the backlog,
// in order, and reach the members here now, without ids: Redis may or may
// not have had them, and will say which when it is back.
func (b *redisBroker) end(s *redisSession) {
	s.close()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.session = nil // publish sends s nothing more
	b.up.Store(false)
	unplaced := s.unplaced()
	for _, m := range b.mirrors {
		closeOnce(m.ready) // joins wait no more: the room is local until Redis is back
	}
	b.whoEnd()
	backlog := b.backlog
	b.backlog, b.held = nil, 0
	for _, out := range unplaced {
		if !out.post.delivered {
			b.deliverHereLocked(out)
		}
		b.holdLocked(out)
	}
	for _, out := range backlog { // what a failed start had not sent yet
		if !out.post.delivered {
			b.deliverHereLocked(out)
		}
		b.holdLocked(out)
	}
}

// run keeps the broker connected until close: it serves a session, and
// when that fails, dials again with capped, jittered backoff. An outage is
// one line in the log when Redis goes away and one when it is back, not
// one per try: a session that ends before redisStableAfter does not end the
// outage, nor reset the backoff.
func (b *redisBroker) run(s *redisSession) {
	defer b.done.Done()
	backoff, outage := redisBackoffMin, false
	for {
		started := time.Now()
		err := s.serve()
		b.end(s)
		select {
		case <-b.stop:
			return
		default:
		}
		if time.Since(started) >= redisStableAfter {
			backoff, outage = redisBackoffMin, false
		}
		down := time.Now()
		if !outage {
			b.log.Warn("redis broker down: rooms are local until it is back", "redis", b.addr, "err", err)
		} else {
			b.log.Debug("redis session ended early", "redis", b.addr, "lived", down.Sub(started).Round(time.Millisecond), "err", err)
		}
		if s, backoff = b.redial(backoff); s == nil || !b.start(s) {
			return // closed while down
		}
		b.reconnects.Add(1)
		if !outage {
			b.log.Info("redis broker back", "redis", b.addr, "down_for", time.Since(down).Round(time.Millisecond))
		}
		outage = true // until this session proves stable
	}
}

// redial dials until it succeeds, starting from the wait backoff, and
// returns the session and the wait to start from next time; nil when the
// broker is closed.
func (b *redisBroker) redial(backoff time.Duration) (*redisSession, time.Duration) {
	for {
		wait := backoff/2 + mathrand.N(backoff)
		backoff = min(2*backoff, redisBackoffMax)
		select {
		case <-b.stop:
			return nil, backoff
		case <-time.After(wait):
		}
		s, err := b.dial()
		if err == nil {
			return s, backoff
		}
		b.log.Debug("redis still away", "redis", b.addr, "err", err)
	}
}

// rejected counts a message from Redis that is not the protocol's, and
// logs the first of a burst: whoever can write to the shared Redis must not
// be able to send members what no roomchat would.
func (b *redisBroker) rejected(room string) {
	if b.reject.Add(1); b.rejecting.CompareAndSwap(false, true) {
		b.log.Warn("messages from Redis that roomchat did not write were dropped", "room", room, "rejected_total", b.reject.Load())
		time.AfterFunc(time.Minute, func() { b.rejecting.Store(false) })
	}
}

// closeOnce closes ch unless it is closed already. It is not atomic: each
// caller holds the lock that guards ch, or is the one goroutine that reads
// a Redis session's replies.
func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// redisBroker must stay a broker; the compiler checks it here.
var _ broker = (*redisBroker)(nil)
