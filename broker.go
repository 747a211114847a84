package main

// This file is the road every chat message takes, and its in-memory end
// (whose expiry is in history.go, and answers to the HTTP API in api.go).
// A message said in a room goes to the broker (publish); the broker gives it
// its place in the room's stream (an id, when history is kept), keeps it,
// and hands it to room.deliver in every process with members in the room,
// this one included, in the stream's one order. The hub delivers what the
// broker hands back, and nothing else, so it never asks which broker it has:
// this file's memoryBroker, for one process, or redis.go's, for several.

import (
	"sync"
	"time"
)

// A broker carries chat messages between their senders and the rooms that
// hear them. The hub calls subscribe when a room gets its first client here
// and unsubscribe when it loses its last, and present at every change, all
// with hub.mu held, so none may wait for the network.
type broker interface {
	// subscribe attaches r to its room's stream here. The channel it
	// returns is closed once the stream's messages reach r (with Redis, once
	// Redis has confirmed and the stream is loaded).
	subscribe(r *room) <-chan struct{}
	unsubscribe(r *room)
	// publish sends p down the road. It never waits for the network; p comes
	// back through room.deliver, before publish returns or later.
	publish(room string, p *post)
	// join makes c a member of its room with the replay it asked for,
	// holding the room's stream still meanwhile, so that every message is
	// either in the replay or delivered after it.
	join(c *client)
	// present says how many clients (joining ones too) room has here now,
	// presence how many each room has in every process ("" for all), and
	// whether that is all. They serve the HTTP API (api.go).
	present(room string, members int)
	presence(room string) (members map[string]int, complete bool, err error)
	// history is a copy of room's history, for the HTTP API.
	history(room string) (history, error)
	status() brokerStatus
	close()
}

// A post is one chat message on its road: what was said, by whom, and, once
// the broker has placed it, where in its room's stream. It is encoded once,
// however many members get it.
type post struct {
	msg    chatPayload
	from   uint64  // the client here that said it; 0 when said in another process
	sender *client // the same client, told of it once it is on disk (-data, journal.go); nil for from 0
	cid    string  // its sender's own id for it; "" for none
	key    string  // who said it, and cid: a second message with the same key is a copy; "" without a cid
	id     string  // its place in the room's stream, "EPOCH-SEQ"; "" when no history is kept
	seq    uint64  // the SEQ of its id
	frame  frame   // msg as a new_chat_message frame
	withID frame   // the same with its id, for members that asked for ids; made once, by withIDFrame

	delivered bool          // the members here have it already (delivered early, or a copy): tell its sender alone
	early     bool          // being delivered here ahead of its place (Redis away) or of the disk (-data): tell its sender nothing yet
	refused   *fieldError   // why it did not reach every process: its sender is told this, not its id
	placed    chan struct{} // closed once it has its place, when its sender waits for that (the HTTP API)
}

// wasPlaced ends the wait of p's sender, if it waits.
func (p *post) wasPlaced() {
	if p.placed != nil {
		closeOnce(p.placed)
	}
}

// newPost encodes what client from said, ready for the road.
func newPost(msg chatPayload, from uint64) *post {
	return &post{msg: msg, from: from, frame: encodeFrame("new_chat_message", msg)}
}

// postFrom is what c said, with the cid it gave: under its token's name,
// when it has one (a payload's name is replaced), and known by who said it
// and cid, so that a copy sent again is not delivered twice.
func postFrom(c *client, msg chatPayload, cid string) *post {
	who := msg.Name
	if c.token != nil {
		msg.Name, who = c.token.Name, "token:"+c.token.Subject
		if c.token.Subject == "" {
			who = "token name:" + c.token.Name
		}
	}
	p := newPost(msg, c.id)
	p.sender = c
	if cid != "" {
		p.cid, p.key = cid, who+"\n"+cid
	}
	return p
}

// ack is what p's sender hears of it: why it did not reach everyone, or its
// id if c wants to hear it (c asked for ids, or gave a cid).
func (p *post) ack(c *client) (frame, bool) {
	switch {
	case p.early: // nothing yet: it hears once the message has its place
	case p.refused != nil:
		return errorFrame(p.cid, *p.refused), true
	case c.history != nil && p.id != "", p.cid != "": // either will do
		return saidFrame(p.id, p.cid), true
	}
	return frame{}, false
}

// withIDFrame is p's frame for members that asked for ids: with its id
// when it has one, and its sender's cid, so that a client given the
// message first without an id can tell it when it comes again with one. It
// runs with the room's stream held (deliver), which guards p's fields.
func (p *post) withIDFrame() frame {
	if p.id == "" && p.cid == "" {
		return p.frame
	}
	if p.withID.wire == nil {
		p.withID = framed(outFrame{Action: "new_chat_message", Payload: p.msg, ID: p.id, Cid: p.cid})
	}
	return p.withID
}

// memoryBroker is the broker of a single process: every room's stream is
// here, and a message is placed and delivered in the call that publishes it.
// A room's history outlives its last member by idleKeep, so that someone
// who comes back later still sees the conversation. With -data, it is kept
// on disk too, and a message's sender is told once it is there.
type memoryBroker struct {
	keep     int           // messages a room keeps; 0: none, and no ids
	total    *historyTotal // every room's history together
	stop     chan struct{} // closed by close: the expiry loop ends
	idleKeep time.Duration // how long a history outlives its room's last member
	journal  *journal      // -data: where each message is written before its sender hears (journal.go); nil: memory only

	// mu guards the map of streams and which are idle. It is taken before a
	// stream's lock, never while one is held.
	mu      sync.Mutex
	streams map[string]*stream
	idle    map[*stream]time.Time // streams whose room is empty here, and since when
}

// newMemoryBroker returns the broker of one process, its rooms keeping keep
// messages each.
func newMemoryBroker(keep int) *memoryBroker {
	b := &memoryBroker{keep: keep, total: new(historyTotal), stop: make(chan struct{}), idleKeep: historyKeep,
		streams: map[string]*stream{}, idle: map[*stream]time.Time{}}
	go b.expireLoop()
	return b
}

// readyNow is closed: in one process, a room is ready at once.
var readyNow = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (b *memoryBroker) subscribe(r *room) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.streamLocked(r.name)
	delete(b.idle, s)
	s.mu.Lock()
	s.room = r
	s.mu.Unlock()
	return readyNow
}

func (b *memoryBroker) unsubscribe(r *room) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.streams[r.name]
	s.mu.Lock()
	s.room = nil
	s.mu.Unlock()
	b.idle[s] = time.Now()
}

// publish places p in its room's stream and delivers it, in one hold of the
// stream's lock: every member sees the ids in order. With a journal, p's
// sender hears of it once it is on disk (journal.tell), not here.
func (b *memoryBroker) publish(room string, p *post) {
	if b.journal != nil {
		b.journal.reserve()
	}
	s := b.lock(room)
	defer s.mu.Unlock()
	s.history.place(p)
	p.early = b.journal != nil
	if s.room != nil {
		s.room.deliver(p)
	}
	if b.journal != nil {
		b.journal.add(room, &s.history, p)
		return
	}
	p.wasPlaced()
}

func (b *memoryBroker) join(c *client) {
	s := b.lock(c.room.name)
	defer s.mu.Unlock()
	c.room.add(c, &s.history)
}

func (b *memoryBroker) status() brokerStatus { return b.total.status("memory") }

// close stops the expiry loop, and the journal after what waits is written.
func (b *memoryBroker) close() {
	b.mu.Lock()
	closeOnce(b.stop)
	b.mu.Unlock()
	b.journal.close()
}

// lock returns room's stream, started if there is none, with its lock held.
func (b *memoryBroker) lock(room string) *stream {
	for {
		b.mu.Lock()
		s := b.streamLocked(room)
		b.mu.Unlock()
		s.mu.Lock()
		if !s.gone {
			return s
		}
		s.mu.Unlock() // expired meanwhile: a new one is started
	}
}

// streamLocked returns room's stream, starting one if there is none. It
// runs with b.mu held.
func (b *memoryBroker) streamLocked(room string) *stream {
	s := b.streams[room]
	if s == nil {
		s = &stream{name: room, history: newHistory(b.keep, b.total)}
		b.streams[room] = s
		b.idle[s] = time.Now() // until a room subscribes it
	}
	return s
}
