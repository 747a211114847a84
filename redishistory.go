package main

// This file is how the Redis broker (redis.go) places chat messages and
// shares each room's stream between processes. A Stream per room holds the
// messages, and a script gives each one its id, adds it and publishes it,
// in one step, so that ids count up in the order Redis ran the scripts and
// every process delivers in that order. Each process mirrors the streams of
// its rooms (mirror, in redis.go), loading a room's stream when the room
// begins here, and catching up with it after every reconnect; it serves
// replays from the mirror.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Keys of a room in Redis, beside its channel (channelPrefix).
const (
	streamPrefix = "roomchat:history:" // the Stream of entries, each with the id 0-SEQ
	metaPrefix   = "roomchat:stream:"  // a hash: the epoch, the last seq, and each process's last number
	cidsPrefix   = "roomchat:cids:"    // hashes from who said a message and its cid to its id, two at a time
)

// publishScript places one message in its room's stream and publishes it,
// in one step. KEYS: stream, meta, channel, and the prefix of the hashes
// that remember the cids of the room's recent messages. ARGV: the message's
// JSON ({"message":...,"name":...} and "cid" when it has one); an epoch to
// use if the room has none (a new stream, or Redis lost its data); the
// count to keep (catchUpFactor histories, about: MAXLEN ~ trims whole
// nodes, which costs Redis far less than trimming exactly; 0 keeps nothing
// and gives no id); how long the keys live idle (ms); the sender: the
// process's name, its number for the message, the client; and the
// message's key, who said it and its cid ("" for none).
//
// A number no greater than the last one the process sent here is a copy
// sent again after an outage, and is refused ("="); a key the room has
// seen within about two streams' worth of messages is a copy a client sent
// again, and is refused with the first one's id ("=ID"). Otherwise the
// script returns the id it gave ("" without history), and publishes
// "process number client entry", the entry with its id.
const publishScript = `
local m = redis.call('HMGET', KEYS[2], 'epoch', 'seq', 'p:' .. ARGV[5])
if tonumber(ARGV[6]) <= tonumber(m[3] or '0') then return '=' end
local tag = ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7]
if ARGV[3] == '0' then
  redis.call('HSET', KEYS[2], 'p:' .. ARGV[5], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PUBLISH', KEYS[3], tag .. ' ' .. ARGV[1])
  return ''
end
local epoch, seq = m[1], tonumber(m[2] or '0')
if not epoch then
  epoch, seq = ARGV[2], 0
  redis.call('DEL', KEYS[1])
end
local gen = math.floor(seq / tonumber(ARGV[3]))
if ARGV[8] ~= '' then
  local first = redis.call('HGET', KEYS[4] .. gen, ARGV[8]) or redis.call('HGET', KEYS[4] .. (gen - 1), ARGV[8])
  if first then return '=' .. first end
end
seq = seq + 1
local id = epoch .. '-' .. seq
local entry = '{"id":"' .. id .. '",' .. string.sub(ARGV[1], 2)
redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', seq, 'p:' .. ARGV[5], ARGV[6])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'm', entry, 't', tag)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[4] .. gen, ARGV[8], id)
  redis.call('PEXPIRE', KEYS[4] .. gen, ARGV[4])
  redis.call('DEL', KEYS[4] .. (gen - 2))
end
redis.call('PUBLISH', KEYS[3], tag .. ' ' .. entry)
return id`

// loadScript reads a room's stream: its epoch ("" when there is none), and
// its newest entries, newest first, at most ARGV[2] of them, and only those
// after the seq ARGV[1] when the stream's epoch is ARGV[3] (a seq of
// another epoch bounds nothing). KEYS: stream, meta.
const loadScript = `
local epoch = redis.call('HGET', KEYS[2], 'epoch') or ''
local from = '-'
if ARGV[1] ~= '' and epoch == ARGV[3] then from = '(0-' .. ARGV[1] end
return {epoch, redis.call('XREVRANGE', KEYS[1], '+', from, 'COUNT', ARGV[2])}`

// publishCommand is the EVALSHA of publishScript that sends out.
func (b *redisBroker) publishCommand(out outgoing) command {
	p := out.post
	payload, _ := json.Marshal(struct { // strings only: it cannot fail
		chatPayload
		Cid string `json:"cid,omitempty"`
	}{p.msg, p.cid})
	epoch := b.id[:6] + strconv.FormatInt(time.Now().UnixNano(), 36)
	c := b.session.evalsha(publishScript,
		[]string{streamPrefix + out.room, metaPrefix + out.room, channelPrefix + out.room, cidsPrefix + out.room + ":"},
		string(payload), epoch, strconv.Itoa(catchUpFactor*b.keep), strconv.FormatInt(historyKeep.Milliseconds(), 10),
		b.id, formatUint(out.seq), formatUint(p.from), p.key)
	c.out = out
	return c
}

// loadCommand is the EVALSHA of loadScript that loads room's stream for
// h, what this process holds of it: its newest entries, as many as a
// history keeps, the first time (known false); later, to catch up, all it
// still holds after h's last, up to catchUpFactor histories. Its reply is
// read within a budget of the server's own limits rather than Redis's
// word: each entry is seven elements ([id, [m, entry, t, tag]]) and a
// message's bytes and a little; the usual budget of one reply would not
// hold a hundred long messages.
func (b *redisBroker) loadCommand(s *redisSession, room string, h *history, known bool) command {
	from, count := "", b.keep
	if known {
		from, count = formatUint(h.next-1), catchUpFactor*b.keep
	}
	c := s.evalsha(loadScript, []string{streamPrefix + room, metaPrefix + room}, from, strconv.Itoa(count), h.epoch)
	c.load, c.budget = room, replyBudget{count*(maxMessageBytes+512) + 1024, 7*count + 4}
	return c
}

// catchUpFactor is how many histories' worth a room's stream keeps in
// Redis, and a catch-up loads: a process cut off from Redis for a while,
// during which others talked on, still gets all they said when it is back,
// up to three times what a history keeps.
const catchUpFactor = 3

// streamEntry is one message from Redis, checked: its place in the stream
// (none when rooms keep no history), who sent it, and the post members get.
type streamEntry struct {
	epoch   string
	seq     uint64
	process string // the sending process's name
	number  uint64 // that process's number for it
	post    *post
}

// json is the entry as a replay holds it, spliced from the post's frame:
// never Redis's bytes.
func (e streamEntry) json() []byte { return keptJSON(e.post) }

// parseID reads an id from Redis: an epoch of 1 to 40 lower-case letters
// and digits, a dash, and a seq from 1.
func parseID(id string) (epoch string, seq uint64, ok bool) {
	epoch, seqText, _ := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil || seq == 0 || seqText[0] == '+' || len(epoch) == 0 || len(epoch) > 40 ||
		strings.IndexFunc(epoch, func(r rune) bool { return (r < 'a' || r > 'z') && (r < '0' || r > '9') }) >= 0 {
		return "", 0, false
	}
	return epoch, seq, true
}

// parseEntry checks an entry that came from Redis, within the limits a
// client's message is held to: anyone who can write to the shared Redis can
// write here. What members get is re-encoded from the checked fields.
func parseEntry(raw []byte) (streamEntry, bool) {
	var in struct {
		ID            *string `json:"id"`
		Message, Name *string
		Cid           string `json:"cid"`
	}
	if len(raw) > maxMessageBytes || !utf8.Valid(raw) || json.Unmarshal(raw, &in) != nil ||
		in.Message == nil || in.Name == nil || (in.Cid != "" && !validCid(in.Cid)) ||
		utf8.RuneCountInString(*in.Message) > maxMessageChars || utf8.RuneCountInString(*in.Name) > maxNameChars {
		return streamEntry{}, false
	}
	e := streamEntry{post: newPost(chatPayload{Message: *in.Message, Name: *in.Name}, 0)}
	e.post.cid = in.Cid
	if in.ID == nil {
		return e, true
	}
	var ok bool
	if e.epoch, e.seq, ok = parseID(*in.ID); !ok {
		return streamEntry{}, false
	}
	e.post.id, e.post.seq = *in.ID, e.seq
	return e, true
}

// parseTag reads the sender of a message: "process number client".
func parseTag(tag string) (process string, number, client uint64, ok bool) {
	process, rest, _ := strings.Cut(tag, " ")
	numberText, clientText, _ := strings.Cut(rest, " ")
	number, err1 := strconv.ParseUint(numberText, 10, 64)
	client, err2 := strconv.ParseUint(clientText, 10, 64)
	return process, number, client, err1 == nil && err2 == nil && process != ""
}

// receive delivers a message that came on room's channel: "process number
// client entry", as publishScript writes it. This process's own message
// comes while its command is the oldest unanswered (own reports it), and is
// taken as it was sent, with the id Redis gave; any other is checked as a
// stranger's, and rejected if it does not check out.
func (b *redisBroker) receive(room string, data []byte, own func(number uint64) (outgoing, bool)) {
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
func (b *redisBroker) ownEntry(process, number, entry string, own func(uint64) (outgoing, bool)) (streamEntry, bool) {
	n, err := strconv.ParseUint(number, 10, 64)
	if process != b.id || err != nil {
		return streamEntry{}, false
	}
	out, ok := own(n)
	if !ok {
		return streamEntry{}, false
	}
	e := streamEntry{process: process, number: n, post: out.post}
	if b.keep <= 0 {
		return e, true
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(entry, `{"id":"`), `"`)
	if e.epoch, e.seq, ok = parseID(id); !ok {
		return streamEntry{}, false
	}
	out.post.id, out.post.seq = id, e.seq
	return e, true
}

// arrived takes a message of m's stream: while m loads, it waits; then it
// is kept and delivered, unless this process has it already. It runs with
// m's lock held.
func (b *redisBroker) arrived(m *mirror, e streamEntry) {
	switch {
	case m.loading:
		m.early = append(m.early, e)
	case b.keep <= 0 || e.epoch == "": // no history: no ids
		e.post.id = ""
		m.room.deliver(e.post)
	case m.history.accept(e, m.room):
		m.room.deliver(e.post)
	}
}

// placed acts on the reply to a chat message's script, and ends its
// sender's wait, if it waits. Its delivery came before, as a push, when the
// room has members here; when it has none, the reply gives the id. A copy
// of a message a client sent before ("=ID") tells its sender the first
// one's id; a copy this process sent again ("=") was placed in a session
// that failed before it could say so, and its catch-up has dealt with it.
func (b *redisBroker) placed(out outgoing, reply any) error {
	answer, ok := reply.([]byte)
	if !ok {
		return fmt.Errorf("%w: the publish script answered %v", errProtocol, reply)
	}
	p := out.post
	defer p.wasPlaced()
	id, copied := strings.CutPrefix(string(answer), "=")
	if id == "" || p.id != "" { // no id to give, or the push gave it
		return nil
	}
	_, seq, ok := parseID(id)
	if !ok {
		return fmt.Errorf("%w: the publish script answered %q", errProtocol, answer)
	}
	p.id, p.seq = id, seq
	if copied {
		p.delivered = true
		if m := b.lock(out.room); m != nil {
			defer m.mu.Unlock()
			m.room.deliver(p) // to its sender alone: its first id
		}
	}
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
	early := m.early
	m.early, m.loading = nil, false
	for _, e := range early {
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
		m.room.tellGap(gapReset)
	case h.epoch != "" && epoch != h.epoch:
		m.room.tellGap(gapReset)
	case len(entries) > 0 && entries[0].seq > h.next:
		m.room.tellGap(gapTrimmed)
	}
	if epoch != h.epoch {
		h.restart(epoch, m.room)
	}
	for _, e := range entries {
		if e.process == b.id {
			if i := slices.IndexFunc(b.backlog, func(o outgoing) bool { return o.seq == e.number }); i >= 0 {
				id, seq := e.post.id, e.post.seq
				e.post = b.backlog[i].post // here already: its sender learns its id
				e.post.id, e.post.seq = id, seq
				b.held -= len(e.post.frame.wire)
				b.backlog = slices.Delete(b.backlog, i, i+1)
			}
		}
		if h.accept(e, m.room) && !first {
			m.room.deliver(e.post)
		}
	}
}

// parseStream reads the entries of an XREVRANGE reply, newest first, each
// [id, [field, value, ...]] with the message in the field m and its sender
// in t, and returns them oldest first. Entries that do not check out are
// left out and counted.
func (b *redisBroker) parseStream(room string, items []any) []streamEntry {
	var out []streamEntry
	for _, item := range slices.Backward(items) {
		parts, _ := item.([]any)
		var fields []any
		if len(parts) == 2 {
			fields, _ = parts[1].([]any)
		}
		var entry, tag []byte
		for i := 0; i+1 < len(fields); i += 2 {
			switch name, _ := fields[i].([]byte); string(name) {
			case "m":
				entry, _ = fields[i+1].([]byte)
			case "t":
				tag, _ = fields[i+1].([]byte)
			}
		}
		e, ok := parseEntry(entry)
		process, number, from, tagged := parseTag(string(tag))
		if !ok || !tagged || e.epoch == "" {
			b.rejected(room)
			continue
		}
		e.process, e.number = process, number
		if process == b.id {
			e.post.from = from // its sender is not sent it back
		}
		out = append(out, e)
	}
	return out
}

// mirrorHistory is a history that mirrors a room's stream in Redis: it has
// no epoch until the stream is loaded.
func mirrorHistory(keep int, total *historyTotal) history {
	return history{keep: keep, total: total, mirror: true, next: 1}
}

// accept keeps e, an entry of the shared stream, in order: one from another
// epoch starts the history over (Redis lost its data, or the stream
// expired), one already kept is refused. r is the room here, if any.
func (h *history) accept(e streamEntry, r *room) bool {
	if e.epoch != h.epoch {
		h.restart(e.epoch, r)
	}
	if e.seq < h.next {
		return false
	}
	h.push(historyEntry{e.seq, "", e.json()})
	return true
}

// restart empties the history for a stream of another epoch. The seqs the
// members of r resumed up to (historyRequest.upTo) were of the old one: kept,
// they would hide the new stream's first messages from them.
func (h *history) restart(epoch string, r *room) {
	h.clear()
	h.epoch, h.next = epoch, 1
	if r == nil {
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for c := range r.members {
		if c.history != nil {
			c.history.upTo = 0
		}
	}
}
