package main

// This file is the Redis broker, which lets one room span several roomchat
// processes, as channels_redis does for Django Channels. Every chat message
// goes to Redis, which gives it its id, keeps it in the room's stream and
// publishes it on the room's channel, in one step (redisstream.go). Each
// process subscribes to the channels of the rooms it has members in, and
// delivers what comes, its own messages included, in the order Redis gave
// the ids. The hub knows only the broker interface (broker.go).
//
// This file is the broker's books and what the hub calls: the rooms
// subscribed here, whether Redis is up, the connection's settings. The
// rest, by job: redisstream.go, the room's Stream in Redis and what is read
// from it; redismirror.go, what this process holds of each stream and how
// it delivers; redisbacklog.go, what happens while Redis is away;
// redissession.go, one connection and its two loops; redispresence.go,
// the answers to the HTTP API.

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
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
	// restarted Redis all at once. The cap bounds how long processes stay
	// apart once Redis is back (3 s at most), for a failed dial every 1 to
	// 3 s while it is away.
	redisBackoffMin = 100 * time.Millisecond
	redisBackoffMax = 2 * time.Second

	// redisStableAfter is how long a session must live before an outage
	// counts as over: a Redis that accepts sessions and drops them at once
	// keeps the backoff growing, and the log to one line for the outage.
	redisStableAfter = 30 * time.Second

	// redisShortSession is how long a session must have worked for its end
	// to be a new outage in the log (a warning), even within
	// redisStableAfter of the last: a Redis that drops every session at
	// once stays one outage, and one that stalls each is found no sooner
	// than redisPingEvery + redisReplyTimeout, a warning every few seconds.
	redisShortSession = redisPingEvery

	// backlogMessages and backlogBytes bound the backlog, what members here
	// say while Redis is away. Past either, a message reaches only the
	// members here, and its sender is told so (not_relayed).
	backlogMessages = 10_000
	backlogBytes    = 16 << 20

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
	backlogMax           int           // backlogMessages; a field, so that a test can fill the backlog
	total                *historyTotal // the bytes of every room's history here
	stop                 chan struct{} // closed by close
	done                 sync.WaitGroup

	// mu guards what follows. It is taken before a stream's lock and a
	// session's, never while one is held, and never waits for the network;
	// an outage's end holds it for every room's deliveries (redisbacklog.go).
	mu       sync.Mutex
	stopped  bool               // close was called
	session  *redisSession      // nil while Redis is away
	mirrors  map[string]*mirror // the rooms with members here
	members  map[string]int     // how many each has (redispresence.go)
	who      redisWho           // who is in each (rediswho.go)
	backlog  []*outgoing        // said here while Redis was away, oldest first (redisbacklog.go)
	held     int                // the bytes of the backlog's messages
	sequence uint64             // the number of the last message this process sent

	up                                   atomic.Bool // session != nil, for status without the lock
	published, received, dropped, reject atomic.Int64
	reconnects                           atomic.Int64
	rejecting                            atomic.Bool // in a burst of rejections, logged once
}

// outgoing is a chat message on its way to Redis.
type outgoing struct {
	room string
	post *post
	// seq is this process's number for it, in the order it was said.
	// Redis refuses a number it has had from this process (publishScript),
	// so that a message sent again after an outage is never kept twice.
	seq uint64
	// here: the members here have it already (delivered early, while Redis
	// was away, or as it came back): when it is placed, its sender alone
	// hears. Whoever holds the post holds this (post's doc).
	here bool
}

// dialRedisBroker connects to the Redis that rawURL names and returns the
// broker, running, its rooms keeping keep messages each. It fails, saying
// why, when the URL is wrong or Redis cannot be reached or refuses the
// password: a cluster that is meant to share rooms must not start as
// separate chats.
func dialRedisBroker(rawURL string, log *slog.Logger, keep int) (*redisBroker, error) {
	b := &redisBroker{
		log:        log,
		keep:       keep,
		backlogMax: backlogMessages,
		total:      new(historyTotal),
		stop:       make(chan struct{}),
		mirrors:    map[string]*mirror{},
		members:    map[string]int{},
		id:         strings.ToLower(rand.Text()[:12]),
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
	b.total.streams.Add(1)
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
	b.total.streams.Add(-1)
	if b.session != nil {
		b.session.send(command{args: args("UNSUBSCRIBE", channelPrefix+r.name)})
	}
}

// publish sends p to Redis, for it to place and hand to every process. It
// never waits: while Redis is away, p is kept in the backlog until Redis is
// back (redisbacklog.go), and a member's is delivered here at once,
// without an id; while its room's backlog waits for its catch-up, p waits
// behind it, so that its room's messages reach Redis in the order they
// were said.
func (b *redisBroker) publish(room string, p *post) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sequence++
	out := &outgoing{room: room, post: p, seq: b.sequence}
	switch {
	case b.session == nil && b.heldCopy(out):
		// sent again while the first waits: its sender hears of the first
	case b.session == nil:
		b.holdLocked(out, true)
	case slices.ContainsFunc(b.backlog, func(o *outgoing) bool { return o.room == room }):
		b.holdLocked(out, false) // behind the room's backlog, which waits for its catch-up
	default:
		b.session.send(b.publishCommand(out))
	}
}

// join adds c to its room with its replay, from what this process holds of
// the room's stream. A client that holds an id this process has not
// reached yet is not sent the messages up to it again (mirror.ahead).
func (b *redisBroker) join(c *client) {
	b.waitWho(c.room.name)
	if m := b.lock(c.room.name); m != nil {
		defer m.mu.Unlock()
		replay, ahead := m.history.replay(c.history)
		if ahead > 0 {
			if m.ahead == nil {
				m.ahead = map[*client]uint64{}
			}
			m.ahead[c] = ahead
		}
		c.room.add(c, replay)
		b.who.book.watch(c)
	}
}

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

// redisBroker must stay a broker; the compiler checks it here.
var _ broker = (*redisBroker)(nil)
