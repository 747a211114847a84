package main

// This file is who is here (docs/protocol.md, "Who is here"): the names in
// each room, the joins and leaves, and typing, for the clients that ask
// with ?presence. Each broker keeps a presenceBook of its rooms here; the
// hub tells it of every connection that comes and goes (broker.member),
// the broker's join sends a joining client its presence frame (watch), and
// a room's changes reach its watchers as diffs, at most presenceEvery
// apart, whatever the storm. A room nobody here asked about costs a map
// update per connection and nothing more: no timer, no frame. The Redis
// broker adds the other processes' members (rediswho.go).

import (
	"errors"
	"maps"
	"net/url"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// Timing of presence.
const (
	// presenceEvery is the least time between two presence_diff frames of
	// a room: changes in between are coalesced into the next one, so a
	// storm of joins is a handful of frames.
	presenceEvery = 250 * time.Millisecond

	// typingEvery is the least time between two typing frames forwarded
	// from one connection; those in between are dropped without a word.
	typingEvery = 2 * time.Second
)

// presenceListBytes bounds the names in one presence or presence_diff
// frame, so that they stay under 70 KiB, as every frame but history does:
// a presence frame lists the first names that fit and counts the rest
// (more); a diff's names that do not fit go in the next. A variable so
// that a test need not fill a room with a thousand long names.
var presenceListBytes = 64 << 10

// errNameRequired is a typing frame from a connection without a name.
const errNameRequired = "name_required"

var nameRequired = fieldError{Type: errNameRequired, Loc: []string{"typing"},
	Msg: "Typing needs a name: connect with ?name=NAME"}

// errBadName is a ?name that breaks a chat message name's rule.
var errBadName = errors.New("invalid name: use at most 100 characters of UTF-8")

// presenceQuery reads ?presence and ?name: whether the client asks for
// presence, and its name, which a token's replaces. An empty name is no
// name: the connection is counted, not listed.
func presenceQuery(q url.Values, token *tokenClaims) (name string, asked bool, err error) {
	_, asked = q["presence"]
	name = q.Get("name")
	if token != nil {
		return token.Name, asked, nil
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxNameChars {
		return "", false, errBadName
	}
	return name, asked, nil
}

// presenceBook is a broker's rooms with members here, by name.
type presenceBook struct {
	mu    sync.Mutex
	rooms map[string]*roomWho
}

// roomWho is one room's presence as this process sees it: the names of its
// connections here and, with Redis, in the other processes; and what its
// watchers, the members here that asked for presence, were last told.
type roomWho struct {
	name string

	mu      sync.Mutex
	here    int                       // connections in this process; the room is forgotten at 0
	count   int                       // connections in every process, the nameless too
	names   map[string]int            // connections by name, in every process
	remote  map[string]map[string]int // other processes' connections by name ("": the nameless), with Redis
	partial bool                      // Redis is away: the other processes are not counted
	ready   chan struct{}             // with Redis: closed once the other processes' names are in (rediswho.go)

	watchers map[*client]time.Time // who asked, and when each last had a typing forwarded
	typedAt  map[string]time.Time  // when each remote name's typing was last forwarded
	// What the watchers were last told: the names changed since (was
	// each listed then), the count and partial then.
	changed     map[string]bool
	toldCount   int
	toldPartial bool
	snapshot    frame       // the presence frame of what they were told, built once per diff
	timer       *time.Timer // non-nil while a diff is due
	lastSent    time.Time
}

// room returns the book's entry for room, made if create is true and
// there is none; nil otherwise.
func (p *presenceBook) room(room string, create bool) *roomWho {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.rooms[room]
	if w == nil && create {
		if p.rooms == nil {
			p.rooms = map[string]*roomWho{}
		}
		w = &roomWho{name: room, names: map[string]int{}}
		p.rooms[room] = w
	}
	return w
}

// all is every room of the book.
func (p *presenceBook) all() []*roomWho {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Values(p.rooms))
}

// sortedOrEmpty sorts names, and makes none an empty list, [] in JSON.
func sortedOrEmpty(names []string) []string {
	if names == nil {
		return []string{}
	}
	slices.Sort(names)
	return names
}

// member counts c in its room (in) or out. It runs with hub.mu held. It
// reports whether the room is new here (first) or gone (last).
func (p *presenceBook) member(c *client, in bool) (first, last bool) {
	w := p.room(c.room.name, in)
	if w == nil {
		return false, false
	}
	delta := 1
	if !in {
		delta = -1
	}
	w.mu.Lock()
	w.here += delta
	w.add(c.name, delta)
	if !in {
		w.unwatch(c)
	}
	first, last = in && w.here == 1, w.here == 0
	w.mu.Unlock()
	if last {
		p.mu.Lock()
		delete(p.rooms, c.room.name)
		p.mu.Unlock()
	}
	return first, last
}

// watch sends c, which asked, its presence frame and makes it a watcher of
// its room. The broker calls it with the room's stream held, after the
// replay, so that the frame comes before any live message. The frame is
// what the other watchers were last told, so that the diffs after it hold
// for c as for them; when a diff may go at once, it goes first.
func (p *presenceBook) watch(c *client) {
	if !c.presence {
		return
	}
	w := p.room(c.room.name, false)
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case len(w.watchers) == 0:
		w.watchers = map[*client]time.Time{}
		w.told()
	case w.timer != nil && time.Since(w.lastSent) >= presenceEvery:
		w.flush()
	}
	w.watchers[c] = time.Time{}
	if w.snapshot.wire == nil {
		w.snapshot = w.presenceFrame()
	}
	c.send(w.snapshot)
}

// unwatch forgets c, and the diffs with the last watcher. It runs with
// w.mu held.
func (w *roomWho) unwatch(c *client) {
	if _, ok := w.watchers[c]; !ok {
		return
	}
	delete(w.watchers, c)
	if len(w.watchers) == 0 {
		w.watchers, w.changed, w.snapshot, w.typedAt = nil, nil, frame{}, nil
		if w.timer != nil {
			w.timer.Stop()
			w.timer = nil
		}
	}
}

// add counts delta connections named name ("" for none) in or out. It runs
// with w.mu held.
func (w *roomWho) add(name string, delta int) {
	if delta == 0 {
		return
	}
	w.count += delta
	if name != "" {
		before := w.names[name]
		if before+delta <= 0 {
			delete(w.names, name)
		} else {
			w.names[name] = before + delta
		}
		if w.watchers != nil {
			if _, ok := w.changed[name]; !ok {
				w.changed[name] = before > 0
			}
		}
	}
	w.due()
}

// due arms the room's timer for its next diff, unless it is armed or no
// one watches. It runs with w.mu held.
func (w *roomWho) due() {
	if w.watchers == nil || w.timer != nil {
		return
	}
	wait := max(presenceEvery-time.Since(w.lastSent), 0)
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		w.mu.Lock() // after due's caller lets go: t is set by then
		defer w.mu.Unlock()
		if w.timer == t { // not stopped, nor replaced, while it waited for the lock
			w.flush()
		}
	})
	w.timer = t
}

// flush sends the watchers what changed since they were last told, if
// anything did, and disarms the timer. It runs with w.mu held.
func (w *roomWho) flush() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	// The names that fit in the frame go now, in order; the rest stay
	// changed, for the next diff.
	joins, leaves, size := []string{}, []string{}, 0
	for _, name := range slices.Sorted(maps.Keys(w.changed)) {
		was, now := w.changed[name], w.names[name] > 0
		switch {
		case was == now: // came and went, or went and came back: nothing to tell
		case size+jsonSize(name) > presenceListBytes:
			continue
		case now:
			joins = append(joins, name)
		default:
			leaves = append(leaves, name)
		}
		if was != now {
			size += jsonSize(name)
		}
		delete(w.changed, name)
	}
	if len(joins) == 0 && len(leaves) == 0 && w.count == w.toldCount && w.partial == w.toldPartial {
		return
	}
	f := encodeFrame("presence_diff", presenceDiff{Joins: joins, Leaves: leaves, Count: w.count, Partial: w.partial})
	for c := range w.watchers {
		c.send(f)
	}
	w.toldCount, w.toldPartial, w.snapshot = w.count, w.partial, frame{}
	w.lastSent = time.Now()
	if len(w.changed) > 0 {
		w.due() // what did not fit
	}
}

// told records that the watchers know the room as it is now. It runs with
// w.mu held.
func (w *roomWho) told() {
	w.changed = map[string]bool{}
	w.toldCount, w.toldPartial, w.snapshot = w.count, w.partial, frame{}
}

// jsonSize bounds the bytes name takes in a frame's list: quoted, escaped
// (at most six bytes a byte), and a comma.
func jsonSize(name string) int {
	n := 3
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c < 0x20:
			n += 6
		case c == '"' || c == '\\':
			n += 2
		case c == 0xe2: // U+2028 and U+2029 are escaped: six bytes for three
			n += 2
		default:
			n++
		}
	}
	return n
}

// presence frames' payloads.
type (
	presenceMember struct {
		Name string `json:"name"`
	}
	presencePayload struct {
		Members []presenceMember `json:"members"`
		More    int              `json:"more,omitempty"` // names not listed: they did not fit (presenceListBytes)
		Count   int              `json:"count"`
		Partial bool             `json:"partial,omitempty"` // Redis is away: this process's members alone
	}
	presenceDiff struct {
		Joins   []string `json:"joins"`
		Leaves  []string `json:"leaves"`
		Count   int      `json:"count"`
		Partial bool     `json:"partial,omitempty"`
	}
	typingPayload struct {
		Name string `json:"name"`
	}
)

// presenceFrame is the presence frame of what the watchers were last told:
// the names now, with those changed since as they were. It runs with w.mu
// held.
func (w *roomWho) presenceFrame() frame {
	names := make([]string, 0, len(w.names))
	for name := range w.names {
		if _, ok := w.changed[name]; !ok {
			names = append(names, name)
		}
	}
	for name, was := range w.changed {
		if was {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	members, size := make([]presenceMember, 0, len(names)), 0
	for _, name := range names {
		if size += jsonSize(name) + len(`{"name":}`); size > presenceListBytes {
			break
		}
		members = append(members, presenceMember{name})
	}
	return encodeFrame("presence", presencePayload{Members: members, More: len(names) - len(members), Count: w.toldCount, Partial: w.toldPartial})
}

// typing forwards c's typing to the other watchers here, at most one every
// typingEvery, and reports whether it did (the Redis broker then tells the
// other processes).
func (p *presenceBook) typing(c *client) bool {
	w := p.room(c.room.name, false)
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.watchers[c]
	now := time.Now()
	if !ok || now.Sub(last) < typingEvery {
		return false
	}
	w.watchers[c] = now
	w.sendTyping(c.name, c)
	return true
}

// sendTyping tells every watcher but from that name is typing. It runs with
// w.mu held.
func (w *roomWho) sendTyping(name string, from *client) {
	f := encodeFrame("typing", typingPayload{name})
	for c := range w.watchers {
		if c != from {
			c.send(f)
		}
	}
}

// names is room's distinct names here (with Redis, as this process sees
// every process's), sorted, for the HTTP API.
func (p *presenceBook) names(room string) []string {
	w := p.room(room, false)
	if w == nil {
		return []string{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.names))
}

// handleTyping is the typing action, for connections that asked for
// presence: its name goes to the room's other watchers, in every process.
func handleTyping(c *client, msg message) {
	if c.name == "" {
		c.send(errorFrame(msg.Cid, nameRequired))
		return
	}
	c.hub.broker.typing(c)
}

// What the memory broker does of presence: it is all here.

func (b *memoryBroker) member(c *client, in bool) { b.who.member(c, in) }
func (b *memoryBroker) typing(c *client)          { b.who.typing(c) }

// whoIsIn is room's names, for the HTTP API: in one process, all of them.
func (b *memoryBroker) whoIsIn(room string) ([]string, bool, error) {
	return b.who.names(room), true, nil
}
