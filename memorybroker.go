package main

// This file is the broker of one process, which fills the seam of
// broker.go: the default, and the model for any other.

import (
	"sync"
	"time"
)

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

// unsubscribe keeps r's stream for idleKeep if it holds a message, and
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
	// An API caller waiting on p hears that it is placed (post.end, in
	// api.go with the API's wait); the send never blocks.
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
