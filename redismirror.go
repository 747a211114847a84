package main

// This file is what the Redis broker (redis.go) holds of each room's
// stream, and how it delivers: each process mirrors the streams of its
// rooms, loading a room's stream when the room begins here, and catching
// up with it after every reconnect; it serves replays from the mirror, and
// resolves every message that comes for the members here (a delivery,
// broker.go) before the room hands it out.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// mirror is what this process holds of a room's stream in Redis: the
// messages that came, for replays, and what it takes to catch up after an
// outage. While a room is loading, the messages that come live are held
// back, so that every member gets the stream in order. Its stream's lock
// guards it.
type mirror struct {
	stream
	ready   chan struct{} // closed once the stream's first load is in
	known   bool          // a load is in: the history holds the stream up to its last seq (none, when its epoch is "")
	loading bool          // a load is on its way: live messages wait in waiting
	waiting []streamEntry // what came live during the load, oldest first
	// ahead holds the members that joined with an id this process had not
	// reached (another process was ahead of it), and that id's seq: the
	// messages up to it come live, and are not sent them again. A member
	// that leaves before stays until then, or until the mirror goes: an
	// entry here, never a send.
	ahead map[*client]uint64
}

// deliver hands e to the members here: every one of them, or, when they
// have it already (delivered early), its sender alone; the members ahead
// of it hear nothing. It runs with m's lock held.
func (m *mirror) deliver(e streamEntry) {
	p := e.post
	d := p.toAll()
	if e.out != nil {
		if e.out.here {
			d = p.toSender(p.said())
		}
		e.out.here = true
	}
	if len(m.ahead) > 0 && e.seq > 0 {
		d.skip = func(c *client) bool { upTo, ok := m.ahead[c]; return ok && e.seq <= upTo }
		defer maps.DeleteFunc(m.ahead, func(_ *client, upTo uint64) bool { return upTo <= e.seq })
	}
	m.room.deliver(d)
}

// restart empties m for a stream of another epoch. The ids members held
// ahead were of the old one: kept, they would hide the new stream's first
// messages from them.
func (m *mirror) restart(epoch string) {
	m.history.restart(epoch)
	m.ahead = nil
}

// accept keeps e, an entry of the shared stream, in order, and reports
// whether it is news: one from another epoch starts the mirror over (Redis
// lost its data, or the stream expired), one already kept is not.
func (m *mirror) accept(e streamEntry) bool {
	if e.epoch != m.history.epoch {
		m.restart(e.epoch)
	}
	return m.history.accept(e)
}

// receive delivers a message that came on room's channel: "process number
// client entry", as publishScript writes it. This process's own message
// comes while its command is the oldest unanswered (own reports it), and is
// taken as it was sent, with the id Redis gave; any other is checked as a
// stranger's, and rejected if it does not check out.
func (b *redisBroker) receive(room string, data []byte, own func(number uint64) (*outgoing, bool)) {
	process, rest, _ := strings.Cut(string(data), " ")
	if strings.HasPrefix(rest, "{") { // "process frame": see parseFrame
		b.receiveFrame(room, []byte(rest))
		return
	}
	number, rest, _ := strings.Cut(rest, " ")
	_, entry, _ := strings.Cut(rest, " ")
	e, ok := b.ownEntry(process, number, entry, own)
	if !ok {
		_, n, from, tagged := parseTag(string(data[:len(data)-len(entry)-1]))
		if e, ok = parseEntry([]byte(entry)); !ok || !tagged {
			b.rejected(room)
			return
		}
		e.process, e.number = process, n
		if process == b.id {
			e.post.from = from // said here, in a session that failed: its sender is not sent it back
		}
	}
	b.received.Add(1)
	if m := b.lock(room); m != nil {
		defer m.mu.Unlock()
		b.arrived(m, e)
	}
}

// receiveFrame takes a chat frame published as it is, as roomchat
// processes without history published them before the broker, so that a
// rolling deploy from them loses nothing: checked as a client's frame must
// be, it is delivered without an id, as they delivered it.
func (b *redisBroker) receiveFrame(room string, raw []byte) {
	var msg message
	var errs []fieldError
	if len(raw) <= maxMessageBytes && utf8.Valid(raw) {
		msg, errs = decode(raw)
	}
	p, chat := msg.Payload.(chatPayload)
	if errs != nil || !chat {
		b.rejected(room)
		return
	}
	b.received.Add(1)
	if m := b.lock(room); m != nil {
		defer m.mu.Unlock()
		b.arrived(m, streamEntry{post: newPost(p, 0)})
	}
}

// ownEntry is a message this process sent, as it came back from Redis:
// its post, with the id in the entry Redis wrote.
func (b *redisBroker) ownEntry(process, number, entry string, own func(uint64) (*outgoing, bool)) (streamEntry, bool) {
	n, err := strconv.ParseUint(number, 10, 64)
	if process != b.id || err != nil {
		return streamEntry{}, false
	}
	out, ok := own(n)
	if !ok {
		return streamEntry{}, false
	}
	e := streamEntry{process: process, number: n, post: out.post, out: out}
	if b.keep <= 0 {
		return e, true
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(entry, `{"id":"`), `"`)
	if e.epoch, e.seq, ok = parseID(id); !ok {
		return streamEntry{}, false
	}
	out.post.id = id
	return e, true
}

// arrived takes a message of m's stream: while m loads, it waits; then it
// is kept and delivered, unless this process has it already. It runs with
// m's lock held.
func (b *redisBroker) arrived(m *mirror, e streamEntry) {
	switch {
	case m.loading:
		m.waiting = append(m.waiting, e)
	case b.keep <= 0 || e.epoch == "": // no history: no ids
		e.post.id = ""
		m.deliver(e)
	case m.accept(e):
		m.deliver(e)
	}
}

// placed acts on the reply to a chat message's script, and ends its
// sender's wait, if it waits. Its delivery came before, as a push, when the
// room has members here; when it has none, the reply gives the id. A copy
// of a message a client sent before ("=ID") tells its sender the first
// one's id; a copy this process sent again ("=") was placed in a session
// that failed before it could say so, and its catch-up has dealt with it.
func (b *redisBroker) placed(out *outgoing, reply any) error {
	answer, ok := reply.([]byte)
	if !ok {
		return fmt.Errorf("%w: the publish script answered %v", errProtocol, reply)
	}
	p := out.post
	id, copied := strings.CutPrefix(string(answer), "=")
	if id == "" || p.id != "" { // no id to give, or the push gave it
		p.end(nil)
		return nil
	}
	if _, _, ok := parseID(id); !ok {
		return fmt.Errorf("%w: the publish script answered %q", errProtocol, answer)
	}
	p.id = id
	if copied {
		if m := b.lock(out.room); m != nil {
			m.room.deliver(p.toSender(p.said())) // its first id
			m.mu.Unlock()
		}
	}
	p.end(nil)
	return nil
}

// subscribed is Redis confirming room's subscription: from now on its
// messages come, and the stream so far is loaded, or what was said since
// this process last heard from it.
func (b *redisBroker) subscribed(room string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.mirrors[room]
	if m == nil || b.session == nil {
		return // unsubscribed meanwhile
	}
	if b.keep <= 0 {
		closeOnce(m.ready)
		return
	}
	m.mu.Lock()
	load := b.loadCommand(b.session, room, &m.history, m.known)
	m.mu.Unlock()
	b.session.send(load)
}

// loaded takes the reply to a room's load: its stream is caught up with,
// what came live meanwhile follows, the members that waited for it may
// join, and this process's backlog for the room goes to Redis.
func (b *redisBroker) loaded(room string, reply any) {
	epoch, items := loadedOf(reply)
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.mirrors[room]
	if m == nil {
		return
	}
	m.mu.Lock()
	b.catchUp(m, epoch, b.parseStream(room, items))
	waiting := m.waiting
	m.waiting, m.loading = nil, false
	for _, e := range waiting {
		b.arrived(m, e)
	}
	m.mu.Unlock()
	closeOnce(m.ready)
	if b.session != nil {
		b.sendBacklogLocked(func(r string) bool { return r == room })
	}
}

// loadedOf reads loadScript's reply: the epoch, and the entries.
func loadedOf(reply any) (epoch string, items []any) {
	parts, _ := reply.([]any)
	if len(parts) == 2 {
		e, _ := parts[0].([]byte)
		items, _ = parts[1].([]any)
		epoch = string(e)
	}
	return epoch, items
}

// catchUp brings m up to its stream in Redis: epoch ("" when there is no
// stream), and entries, the stream's newest after what m holds, oldest
// first. A first load is the room's history, not news. After an outage,
// what others said meanwhile is delivered in order, after a history_gap
// when it cannot all be had; and this process's own messages that Redis
// took before the session failed leave the backlog, and tell their senders
// their ids. It runs with b.mu and m's lock held.
func (b *redisBroker) catchUp(m *mirror, epoch string, entries []streamEntry) {
	h := &m.history
	first := !m.known
	m.known = true
	switch {
	case epoch == "": // no stream: nothing was said since it expired or was lost
		return
	case first: // members who joined while Redis was away had no history
		m.room.deliver(gapDelivery(gapReset))
	case h.epoch != "" && epoch != h.epoch:
		m.room.deliver(gapDelivery(gapReset))
	case len(entries) > 0 && entries[0].seq > h.next:
		m.room.deliver(gapDelivery(gapTrimmed))
	}
	if epoch != h.epoch {
		m.restart(epoch)
	}
	for _, e := range entries {
		if e.process == b.id {
			if i := slices.IndexFunc(b.backlog, func(o *outgoing) bool { return o.seq == e.number }); i >= 0 {
				out := b.backlog[i] // its sender learns its id
				out.post.id = e.post.id
				e.post, e.out = out.post, out
				b.held -= len(out.post.frame.wire)
				b.backlog = slices.Delete(b.backlog, i, i+1)
				out.post.end(nil)
			}
		}
		if m.accept(e) && !first {
			m.deliver(e)
		}
	}
}

// mirrorHistory is a history that mirrors a room's stream in Redis: it has
// no epoch until the stream is loaded.
func mirrorHistory(keep int, total *historyTotal) history {
	return history{keep: keep, total: total, mirror: true, next: 1}
}

// accept keeps e, an entry of the shared stream, in order: one from another
// epoch starts the history over (Redis lost its data, or the stream
// expired), one already kept is refused.
func (h *history) accept(e streamEntry) bool {
	if e.epoch != h.epoch {
		h.restart(e.epoch)
	}
	if e.seq < h.next {
		return false
	}
	h.push(historyEntry{e.seq, "", e.json()})
	return true
}

// restart empties the history for a stream of another epoch.
func (h *history) restart(epoch string) {
	h.clear()
	h.epoch, h.next = epoch, 1
}

// gapDelivery tells the members that asked for ids that what they hold of
// the room's stream is not whole, and why (history.go:gapFrame).
func gapDelivery(reason string) delivery {
	f := gapFrame(reason)
	return delivery{withID: func() frame { return f }}
}
