package main

// This file is the hub and its rooms: which rooms exist, who is in each,
// and fan-out, a frame handed to every member of a room. The hub is a
// mutex-guarded map of rooms; each room a lock and a set of members. A
// member is a client (client.go), whose send never waits for its socket,
// so a broadcast holds its room's lock for one pass over the members.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// maxConnections caps the WebSocket connections of the whole server; one
// more is answered 503.
const maxConnections = 10_000

// Why a join is refused.
var (
	errShuttingDown    = errors.New("server is shutting down")
	errServerFull      = errors.New("server full")
	errTooManyFromAddr = errors.New("too many connections from one address")
)

// hub is the set of rooms. Its mutex guards only the map and the counts:
// a broadcast locks the one room it speaks in, never the hub, so rooms do
// not slow each other down.
type hub struct {
	log       *slog.Logger
	limit     rateLimit
	layer     channelLayer   // the rooms of other processes (layer.go)
	perClient int            // WebSockets one client address may hold; 0 is no limit
	proxies   []netip.Prefix // trusted reverse proxies, for clientAddr
	keep      int            // messages each room's history keeps; 0: no history (history.go)
	shared    bool           // the histories are mirrors of the layer's (redishistory.go)

	// The timeouts of every connection (client.go), fields so that a test
	// need not wait for the real ones.
	idleTimeout, writeTimeout, pingInterval time.Duration

	mu      sync.Mutex
	rooms   map[string]*room
	conns   int
	perAddr map[netip.Addr]int // WebSockets per client address
	closing bool

	// The rooms' histories, kept here so that they outlive their rooms
	// (historyKeep), and their total size.
	histories    map[string]*history
	historyBytes atomic.Int64

	live   sync.WaitGroup // one count per joined client, for shutdown
	stop   chan struct{}  // closed by shutdown: the pinger ends
	pinger sync.Once      // starts the pinger with the first join
	nextID atomic.Uint64
	stats  stats
}

// room is one chat room: the clients that hear each other. Its own lock lets
// many senders fan out at once (read lock) while a join or leave, which is
// rare, takes the write lock for a single map operation. A chat message the
// history keeps takes the write lock too (room.record): its id and its
// delivery must be one step, in one order for every member.
type room struct {
	name       string
	hub        *hub
	history    *history // nil when the hub keeps none
	layer      channelLayer
	subscribed <-chan struct{} // closed once the layer brings this room's frames from other processes
	mu         sync.RWMutex
	members    map[*client]struct{}
}

// newHub returns an empty hub whose connections obey limit and log to log,
// with the in-memory layer: rooms in this process only.
func newHub(limit rateLimit, log *slog.Logger) *hub {
	return &hub{
		log: log, limit: limit, layer: memoryLayer{},
		idleTimeout: defaultIdleTimeout, writeTimeout: defaultWriteTimeout, pingInterval: defaultPingInterval,
		rooms: make(map[string]*room), perAddr: make(map[netip.Addr]int), stop: make(chan struct{}),
		histories: make(map[string]*history),
	}
}

// join makes c a member of its room, creating the room on first use. It runs
// during the handshake, before the 101 response is written, so c hears every
// message sent after its client sees the connection open: a new room waits
// (subscribeWait at most) until the layer brings it other processes' frames,
// and, with a shared history, the room's stream so far, which c's replay
// then comes from.
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
	if c.awaitingReplay {
		r.mu.Lock()
		c.awaitingReplay = false
		r.replayTo(c)
		r.mu.Unlock()
	}
	return nil
}

// add puts c in its room's member map.
func (h *hub) add(c *client, roomName string) (*room, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.hasRoomForLocked(c.addr); err != nil {
		return nil, err
	}
	r := h.rooms[roomName]
	if r == nil {
		r = &room{name: roomName, hub: h, history: h.historyOf(roomName), layer: h.layer,
			subscribed: h.layer.subscribe(roomName), members: make(map[*client]struct{})}
		h.rooms[roomName] = r
	}
	r.mu.Lock()
	r.members[c] = struct{}{}
	if h.shared && c.history != nil {
		c.awaitingReplay = true // join replays, once the mirror is loaded
	} else {
		r.replayTo(c) // in the same hold of the lock: no message between the two
	}
	r.mu.Unlock()
	c.room = r
	h.conns++
	h.perAddr[c.addr]++
	h.live.Add(1)
	h.pinger.Do(func() { go h.pingLoop() })
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
		if _, alone := h.layer.(memoryLayer); r.history != nil && alone {
			r.history.idleSince = time.Now()
		} else if r.history != nil {
			// Unsubscribed, this process would miss what other processes
			// say meanwhile: a history kept on would have a hole in it.
			h.dropHistoryLocked(r.name)
		}
	}
	c.room = nil
	h.conns--
	if h.perAddr[c.addr]--; h.perAddr[c.addr] <= 0 {
		delete(h.perAddr, c.addr)
	}
	h.live.Done()
}

// counts reports the number of rooms and connections, for /healthz.
func (h *hub) counts() (rooms, conns int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rooms), h.conns
}

// hasRoomFor reports why a new WebSocket from addr would be refused, or nil.
func (h *hub) hasRoomFor(addr netip.Addr) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hasRoomForLocked(addr)
}

// hasRoomForLocked is hasRoomFor, with h.mu held.
func (h *hub) hasRoomForLocked(addr netip.Addr) error {
	switch {
	case h.closing:
		return errShuttingDown
	case h.conns >= maxConnections:
		return errServerFull
	case h.perClient > 0 && h.perAddr[addr] >= h.perClient:
		return errTooManyFromAddr
	}
	return nil
}

// shutdown closes every connection with 1001 and waits for them to go. When
// ctx ends first, it cuts the rest off: their writes and reads fail at once.
// Then it stops the pinger and closes the channel layer.
func (h *hub) shutdown(ctx context.Context) {
	defer h.layer.close()
	h.mu.Lock()
	if !h.closing {
		close(h.stop)
	}
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

// pingLoop pings every client each pingInterval, as Daphne does: a client
// that answers (any frame will do) renews its idle deadline, so a quiet
// listener stays connected and a dead peer is found within idleTimeout.
// One loop for the server, started by the first join, not a timer per
// connection: idle connections stay small.
func (h *hub) pingLoop() {
	tick := time.NewTicker(h.pingInterval)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-tick.C:
			h.forEach(func(c *client) { c.send(pingFrame) })
			h.expireHistories(now)
		}
	}
}

// pingFrame is the server's ping, built once; its payload is empty.
var pingFrame = newFrame(opPing, nil)

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

// fromLayer hands a message that another process published to the
// members of its room here. Without a shared history, each process keeps
// the whole conversation, so it keeps this one too, as if said here. The
// channel layer calls it.
func (h *hub) fromLayer(roomName string, msg message) {
	h.mu.Lock()
	r := h.rooms[roomName]
	h.mu.Unlock()
	if r == nil { // the last member left while the message was on its way
		return
	}
	if p, ok := msg.Payload.(chatPayload); ok && !h.shared {
		r.record(nil, p)
		return
	}
	// With a shared history, a plain frame comes from a process that keeps
	// none (started with -history 0): it is delivered, not kept.
	r.deliver(nil, encodeFrame(msg.Action, msg.Payload))
}

// broadcastKept is broadcast for a chat message, which the room's history
// keeps. With a shared history, the message goes to Redis first, and comes
// back, with its id, to every process (hub.fromStream); while Redis is away
// it is delivered here only, without an id, as without history.
func (r *room) broadcastKept(from *client, p chatPayload) {
	switch {
	case r.history == nil:
		r.broadcast(from, encodeFrame("new_chat_message", p))
	case !r.hub.shared:
		r.layer.publish(r.name, r.record(from, p))
	case !r.layer.keep(r.name, from.id, p):
		r.deliver(from, encodeFrame("new_chat_message", p))
	}
}

// record delivers a chat message to the members here but from, keeps it in
// the room's history, and returns its frame. Members that asked for ids get
// the message with its id, the sender its id alone (saidFrame). The room's
// write lock is held from the message getting its id to its last delivery,
// so that every member sees the ids in order and a join (replayTo) falls
// wholly before or after it.
func (r *room) record(from *client, p chatPayload) frame {
	f := encodeFrame("new_chat_message", p)
	if r.history == nil {
		r.deliver(from, f)
		return f
	}
	r.mu.Lock()
	id, grew := r.history.add(f, r.hub.keep)
	r.deliverKept(from, f, p, id, grew)
	r.mu.Unlock()
	return f
}

// deliverKept delivers a message that the history has just kept, as id:
// with its id to members that asked for ids, its id alone to its sender
// (saidFrame), and f to the rest. It runs with r.mu held. grew is how much
// the history grew, for the total; past historyTotalBytes, this room's
// oldest messages go.
func (r *room) deliverKept(from *client, f frame, p chatPayload, id string, grew int) {
	if r.hub.historyBytes.Add(int64(grew)) > historyTotalBytes {
		for len(r.history.entries) > 1 && r.hub.historyBytes.Load() > historyTotalBytes {
			size := len(r.history.entries[0].json)
			r.history.dropOldest()
			r.hub.historyBytes.Add(-int64(size))
		}
	}
	var withID frame
	for c := range r.members {
		switch {
		case c.awaitingReplay:
			// the replay, coming, holds this message
		case c.history == nil && c != from:
			c.send(f)
		case c == from:
			if c.history != nil {
				c.send(saidFrame(id))
			}
		default:
			if withID.wire == nil {
				withID = textFrame(encodeJSON(outFrame{Action: "new_chat_message", Payload: p, ID: id}))
			}
			c.send(withID)
		}
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
	r.deliverLocked(from, f)
}

// deliverLocked is deliver, with r.mu held (either way).
func (r *room) deliverLocked(from *client, f frame) {
	for c := range r.members {
		if c != from {
			c.send(f)
		}
	}
}
