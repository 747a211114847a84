package main

// This file is the hub and its rooms: which rooms exist, who is in each,
// and delivery, a chat message handed to every member of a room. The hub is
// a mutex-guarded map of rooms; each room a lock and a set of members. A
// member is a client (client.go), whose send never waits for its socket,
// so a delivery holds its room's lock for one pass over the members.

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Why a WebSocket is refused (hub.enter). The server holds as many as it
// holds TCP connections (-max-conns, connlimit.go): every WebSocket is one.
var (
	errShuttingDown    = errors.New("server is shutting down")
	errTooManyFromAddr = errors.New("too many connections from one address")
)

// hub is the set of rooms, and what every connection shares: the broker,
// the limits and the running totals.
//
// The locks, always taken in this order (never the other way round):
//
//	hub.mu      the map of rooms, the counts             held to enter or leave, and for a pass over everyone (shutdown.go)
//	broker's    its streams (memorybroker.go, redis.go)  held to find streams or pass over them; Redis's, also for an outage's deliveries
//	stream.mu   a room's stream and history (history.go) held for a delivery or a join's replay; with Redis, the room's mirror holds the stream (redismirror.go)
//	roomWho.mu  a room's names and watchers (presence.go) held for a change, or one frame to its watchers; the presence book's map has a lock held alone
//	room.mu     a room's members                         held for one pass over them
//	client.mu   a client's queue and close code          held for an append or a swap
//
// So whoever holds one may wait for those below it: leave, under hub.mu,
// waits out a delivery to its room in progress. The other locks (a
// journal's, a Redis session's, the API's rate, connlimit's) are leaves:
// nothing is taken while one is held. No lock is ever held across a
// socket write (send only appends) or for the network.
// TestLockOrder runs every road at once, Redis going away and back
// included, and panics if they deadlock.
type hub struct {
	log       *slog.Logger
	limit     *rateLimit
	broker    broker         // where every chat message goes, and comes back from (broker.go)
	perClient int            // WebSockets one client address may hold; 0 is no limit
	proxies   []netip.Prefix // trusted reverse proxies, for clientAddr

	// The timeouts of every connection (client.go), fields so that a test
	// need not wait for the real ones.
	idleTimeout, writeTimeout, pingInterval time.Duration

	mu      sync.Mutex
	rooms   map[string]*room
	conns   int
	perAddr map[netip.Addr]int // WebSockets per client address
	closing atomic.Bool        // set by shutdown under mu; join reads it without

	live   sync.WaitGroup // one count per entered client, for shutdown
	stop   chan struct{}  // closed by shutdown: the pinger ends
	pinger sync.Once      // starts the pinger with the first client
	nextID atomic.Uint64
	stats  stats
}

// room is one chat room: the clients here that hear each other. Its broker
// delivers its messages one at a time, in its stream's order (deliver);
// its lock guards the member set, which a join or a leave changes.
type room struct {
	name    string
	ready   <-chan struct{} // closed once the broker brings this room's messages here
	clients int             // members and clients joining; the room lives while it is above 0. Guarded by hub.mu.

	mu      sync.RWMutex
	members map[*client]struct{}
}

// newHub returns an empty hub whose messages go through b, and whose
// connections obey limit and log to log.
func newHub(b broker, limit *rateLimit, log *slog.Logger) *hub {
	return &hub{
		log: log, limit: limit, broker: b,
		idleTimeout: defaultIdleTimeout, writeTimeout: defaultWriteTimeout, pingInterval: defaultPingInterval,
		rooms: make(map[string]*room), perAddr: make(map[netip.Addr]int), stop: make(chan struct{}),
	}
}

// enter counts c in, and in its room, which it creates and subscribes if c
// is the first; it reports why not when the server is closing or c's
// address holds all the WebSockets it may. It runs before the handshake is
// answered, so that a refusal can still be an HTTP answer.
func (h *hub) enter(c *client, roomName string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closing.Load():
		return errShuttingDown
	case h.perClient > 0 && h.perAddr[c.addr] >= h.perClient:
		return errTooManyFromAddr
	}
	r := h.rooms[roomName]
	if r == nil {
		r = &room{name: roomName, members: make(map[*client]struct{})}
		r.ready = h.broker.subscribe(r)
		h.rooms[roomName] = r
	}
	r.clients++
	h.broker.present(r.name, r.clients)
	c.room = r
	h.broker.member(c, true)
	h.conns++
	h.perAddr[c.addr]++
	h.live.Add(1)
	h.pinger.Do(func() { go h.pingLoop() })
	return nil
}

// join makes c, entered, a member of its room. It runs during the
// handshake, before the 101 response is written, so c hears every message
// sent after its client sees the connection open. A room new here first
// waits (subscribeWait at most) for the broker to bring its messages; then
// the broker adds c, with the replay c asked for (room.add). A join that
// shutdown's pass over the members missed is closed here.
func (h *hub) join(c *client) {
	select {
	case <-c.room.ready:
	case <-time.After(subscribeWait):
		h.log.Warn("joined before the broker confirmed the room", "conn", c.id, "room", c.room.name)
	}
	h.broker.join(c)
	if h.closing.Load() {
		c.close(closeGoingAway, "server shutting down")
	}
}

// add makes c a member of r, and sends it replay, what it asked for of
// the room's history. The broker calls it with the room's stream held, so
// no message falls between the replay and the first live one.
func (r *room) add(c *client, replay []frame) {
	r.mu.Lock()
	r.members[c] = struct{}{}
	r.mu.Unlock()
	for _, f := range replay {
		c.send(f)
	}
}

// size is how many members r has.
func (r *room) size() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.members)
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
	r.mu.Unlock()
	r.clients--
	h.broker.present(r.name, r.clients)
	h.broker.member(c, false)
	if r.clients == 0 {
		delete(h.rooms, r.name)
		h.broker.unsubscribe(r)
	}
	c.room = nil
	h.conns--
	if h.perAddr[c.addr]--; h.perAddr[c.addr] <= 0 {
		delete(h.perAddr, c.addr)
	}
	h.live.Done()
}

// deliver hands d, a message its broker has resolved (broker.go:delivery),
// to the members here. Each hears one thing: its sender (d.from)
// d.toSender; a member d.skip names, nothing; a member that did not ask for
// ids d.plain; one that did d.withID(). An empty frame, or a nil withID, is
// nothing: a copy told to its sender alone has neither plain nor withID, a
// history_gap has withID alone. The broker calls it for every message of
// the room, once, in the stream's order, holding the room's stream. It
// never waits for a socket: send only appends to a queue.
func (r *room) deliver(d delivery) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for c := range r.members {
		var f frame
		switch {
		case c.id == d.from:
			f = d.toSender
		case d.skip != nil && d.skip(c):
		case c.history == nil:
			f = d.plain
		case d.withID != nil:
			f = d.withID()
		}
		if f.wire != nil {
			c.send(f)
		}
	}
}
