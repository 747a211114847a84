package main

// This file is the road every chat message takes, and its in-memory end
// (whose expiry is in history.go, and answers to the HTTP API in api.go).
// A message said in a room goes to the broker (publish); the broker gives it
// its place in the room's stream (an id, when history is kept), keeps it,
// resolves what each member hears of it (a delivery: its sender, members
// that asked for ids, the rest) and hands that to room.deliver in every
// process with members in the room, this one included, in the stream's one
// order. The hub delivers what the broker hands back, and nothing else, so
// it never asks which broker it has: this file's memoryBroker, for one
// process, or redis.go's, for several. To change what members hear, change
// the delivery here, room.deliver (hub.go), or the frames (history.go).

import (
	"sync"
	"sync/atomic"
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
	// member counts c in or out of its room's presence (the hub calls it
	// with hub.mu held, at enter and leave), typing forwards c's typing,
	// and whoIsIn is a room's names: presence.go.
	member(c *client, in bool)
	typing(c *client)
	whoIsIn(room string) (names []string, complete bool, err error)
	// history is a copy of room's history, for the HTTP API.
	history(room string) (history, error)
	// status is the broker's part of /healthz (health.go:brokerStatus).
	status() brokerStatus
	close()
}

// subscribeWait is how long a join waits for its broker to bring a room
// new here (subscribe's channel): with Redis, for Redis to confirm the
// subscription and load the stream, so that the member hears the other
// processes by the time it reads the 101; in memory a room is ready at
// once. A broker that does not answer in that time does not hold the
// handshake any longer.
const subscribeWait = 1500 * time.Millisecond

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

// A post is one chat message on its road: what was said, by whom, and, once
// the broker has placed it, where in its room's stream. It is encoded once,
// however many members get it. One goroutine holds it at a time: its
// sender's until publish, then the broker's, which hands it on under a lock
// (a stream's, or its own; with -data, its journal's) and never shares it;
// its sender reads its id only once ended says it may.
type post struct {
	msg     chatPayload
	from    uint64  // the member here that said it; 0 for none here: the API's, or said in another process
	sender  *client // from itself, told once its message is on disk (-data, journal.go); nil for none here
	wantsID bool    // from asked for ids: it hears its said even without a cid
	cid     string  // its sender's own id for it; "" for none
	key     string  // its sender's space of cids and cid (cidKey): a second message with the same key is a copy; "" without a cid
	id      string  // its place in the room's stream, "EPOCH-SEQ"; "" when no history is kept
	frame   frame   // msg as a new_chat_message frame
	withID  frame   // the same with its id, for members that asked for ids; made once, by withIDFrame

	// ended, when its sender waits to hear how it ended (the HTTP API),
	// gets nil once it has its place, or why it was refused (end). fate
	// says whether that word was given, or the sender stopped waiting and
	// was promised the post instead (promise).
	ended chan *fieldError
	fate  atomic.Int32
}

// A post's fate, for a sender that waits: the first word wins.
const (
	waiting  int32 = iota
	ended          // its sender was told how it ended: placed, or refused
	promised       // its sender stopped waiting first, told it will reach the stream (the API's 202)
)

// newPost encodes what client from said, ready for the road.
func newPost(msg chatPayload, from uint64) *post {
	return &post{msg: msg, from: from, frame: encodeFrame("new_chat_message", msg)}
}

// The spaces of cids: each kind of sender has one of its own, which no
// other can name, so that no sender can make another's message a copy
// (TestCidSpaces). A member without a token is known by the name it gives.
const (
	memberCids    = "member:"
	subjectCids   = "token:"      // a token's subject
	tokenNameCids = "token name:" // a token without a subject, by its name
	apiCids       = "api:"
)

// cidKey is a post's key: the sender's space, who in it, and the cid, which
// holds no line break (validCid).
func cidKey(space, who, cid string) string { return space + who + "\n" + cid }

// postFrom is what c said, with the cid it gave: under its token's name,
// when it has one (a payload's name is replaced), and known by who said it
// and cid, so that a copy sent again is not delivered twice.
func postFrom(c *client, msg chatPayload, cid string) *post {
	space, who := memberCids, msg.Name
	if c.token != nil {
		msg.Name, space, who = c.token.Name, subjectCids, c.token.Subject
		if c.token.Subject == "" {
			space, who = tokenNameCids, c.token.Name
		}
	}
	p := newPost(msg, c.id)
	p.wantsID, p.sender = c.history != nil, c
	if cid != "" {
		p.cid, p.key = cid, cidKey(space, who, cid)
	}
	return p
}

// end tells p's sender, if it waits (the HTTP API), how p ended: nil once
// it has its place, or why it was refused. Only the first word counts. It
// reports false when p may not be refused: its sender stopped waiting
// first and was promised p, so a broker keeps p, past its bounds if need
// be (TestAPIPromisedPostIsKept).
func (p *post) end(refused *fieldError) bool {
	if p.ended == nil {
		return true
	}
	if p.fate.CompareAndSwap(waiting, ended) {
		p.ended <- refused // the one send: ended holds one
		return true
	}
	return p.fate.Load() != promised
}

// promise is the API's 202: its caller stops waiting for p, and from now
// on p must reach the stream. It reports false when p ended first; how is
// then in ended.
func (p *post) promise() bool { return p.fate.CompareAndSwap(waiting, promised) }

// A delivery is a post resolved for the members of one room here: what
// each of them hears. The broker resolves it; room.deliver hands it out as
// it is. A frame without wire bytes is nothing.
type delivery struct {
	from     uint64             // the member here that said it: it hears toSender, never the message; 0 for none
	toSender frame              // its said, or why it did not reach everyone
	withID   func() frame       // for the members that asked for ids, made at the first that needs it; nil: nothing
	plain    frame              // for the others
	skip     func(*client) bool // members that hold it already (they resumed past it), and hear nothing; nil: none
}

// toAll is p's delivery once it has its place: its sender hears its said,
// every other member the message.
func (p *post) toAll() delivery {
	return delivery{from: p.from, toSender: p.said(), withID: p.withIDFrame, plain: p.frame}
}

// toSender is a delivery of f to p's sender alone: the others here have p
// already (a copy), or will not.
func (p *post) toSender(f frame) delivery { return delivery{from: p.from, toSender: f} }

// said is what p's sender here hears once p has its place: its id and cid,
// if it gave a cid or asked for ids; otherwise nothing.
func (p *post) said() frame {
	if p.from == 0 || p.cid == "" && (!p.wantsID || p.id == "") {
		return frame{}
	}
	return saidFrame(p.id, p.cid)
}

// withIDFrame is p's frame for members that asked for ids: with its id
// when it has one, and its sender's cid, so that a client given the
// message first without an id can tell it when it comes again with one.
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
// who comes back later still sees the conversation; a room that kept no
// message keeps nothing once empty (TestEmptyRoomsKeepNothing). With -data,
// the histories are kept on disk too. Its methods beyond the road live
// with what they serve: expiry in history.go, the HTTP API's answers in
// api.go, presence in presence.go, the disk in datadir.go.
type memoryBroker struct {
	keep     int           // messages a room keeps; 0: none, and no ids
	total    *historyTotal // every room's history together
	stop     chan struct{} // closed by close: the expiry loop ends
	who      presenceBook  // who is in each room (presence.go)
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
	s := b.streams[r.name]
	if s == nil {
		s = b.startLocked(r.name)
	}
	delete(b.idle, s)
	s.mu.Lock()
	s.room = r
	s.mu.Unlock()
	return readyNow
}

// unsubscribe keeps r's stream for historyKeep if it holds a message, and
// drops it at once if not.
func (b *memoryBroker) unsubscribe(r *room) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.streams[r.name]
	s.mu.Lock()
	s.room = nil
	empty := len(s.history.entries) == 0
	s.mu.Unlock()
	if empty {
		b.dropLocked(s)
		return
	}
	b.idle[s] = time.Now()
}

// publish places p in its room's stream and delivers it, in one hold of the
// stream's lock: every member sees the ids in order. A copy (the same key
// as a message kept) is told to its sender alone, with the first one's id.
// With -data, publishStored (datadir.go) does it instead.
func (b *memoryBroker) publish(room string, p *post) {
	if b.journal != nil {
		b.publishStored(room, p)
		return
	}
	defer p.end(nil)
	s := b.lock(room, b.keep > 0) // with no history, a room with no members here has nothing to do
	if s == nil {
		return
	}
	defer s.mu.Unlock()
	copied := s.history.place(p)
	switch {
	case s.room == nil:
	case copied:
		s.room.deliver(p.toSender(p.said()))
	default:
		s.room.deliver(p.toAll())
	}
}

func (b *memoryBroker) join(c *client) {
	s := b.lock(c.room.name, true)
	defer s.mu.Unlock()
	replay, _ := s.history.replay(c.history) // ahead of this stream is never: it is the whole stream
	c.room.add(c, replay)
	b.who.watch(c)
}

func (b *memoryBroker) status() brokerStatus { return b.total.status("memory") }

// close stops the expiry loop, and the journal after what waits is written.
func (b *memoryBroker) close() {
	b.mu.Lock()
	closeOnce(b.stop)
	b.mu.Unlock()
	b.journal.close()
}

// lock returns room's stream with its lock held, started if there is none
// and start says so; nil if not.
func (b *memoryBroker) lock(room string, start bool) *stream {
	for {
		b.mu.Lock()
		s := b.streams[room]
		if s == nil && start {
			s = b.startLocked(room)
		}
		b.mu.Unlock()
		if s == nil {
			return nil
		}
		s.mu.Lock()
		if !s.gone {
			return s
		}
		s.mu.Unlock() // dropped meanwhile: look again
	}
}

// startLocked starts room's stream, idle until a room subscribes it, and
// counts it in the histories' memory (historyTotal). It runs with b.mu
// held.
func (b *memoryBroker) startLocked(room string) *stream {
	s := &stream{name: room, history: newHistory(b.keep, b.total)}
	b.streams[room] = s
	b.idle[s] = time.Now()
	b.total.streams.Add(1)
	return s
}

// dropLocked forgets s and its history; whoever waits for its lock looks
// again. It runs with b.mu held.
func (b *memoryBroker) dropLocked(s *stream) {
	s.mu.Lock()
	b.journal.drop(s.name, &s.history)
	s.history.clear()
	s.gone = true
	s.mu.Unlock()
	delete(b.streams, s.name)
	delete(b.idle, s)
	b.total.streams.Add(-1)
}
