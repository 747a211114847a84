package main

// This file is a room's stream in Redis, for the Redis broker (redis.go):
// a Stream per room holds the messages, and a script gives each one its id,
// adds it and publishes it, in one step, so that ids count up in the order
// Redis ran the scripts and every process delivers in that order. Here are
// the scripts, the commands that run them, and the reading of what comes
// back: every byte from Redis is checked as a client's would be, since
// whoever can write to the shared Redis can write there. What a process
// holds of each stream, and how it delivers, is redismirror.go.

import (
	"encoding/json"
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
func (b *redisBroker) publishCommand(out *outgoing) command {
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
	out     *outgoing // this process's own message, as it was sent; nil for another's
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
	e.post.id = *in.ID
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

// rejected counts a message from Redis that is not the protocol's, and
// logs the first of a burst: whoever can write to the shared Redis must not
// be able to send members what no roomchat would.
func (b *redisBroker) rejected(room string) {
	if b.reject.Add(1); b.rejecting.CompareAndSwap(false, true) {
		b.log.Warn("messages from Redis that roomchat did not write were dropped", "room", room, "rejected_total", b.reject.Load())
		time.AfterFunc(time.Minute, func() { b.rejecting.Store(false) })
	}
}
