package main

// This file shares each room's history between processes through Redis
// (with -redis and -history): a Stream per room holds the messages, and a
// script gives each one its id and publishes it, in one step, so that ids
// count up in the order Redis ran the scripts and every process delivers in
// that order. Each process mirrors the streams of its rooms in its own
// history (history.go), loading a room's stream when the room begins here
// and after every reconnect, and serves replays from the mirror. While
// Redis is away, chat stays local, as without history: no ids are made up.

import (
	"bufio"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Keys of a room's history in Redis, beside its channel (channelPrefix).
const (
	streamPrefix = "roomchat:history:" // the Stream of entries
	metaPrefix   = "roomchat:stream:"  // a hash: the stream's epoch, and the last seq given
)

// keepScript adds one message to a room's stream and publishes it, in one
// step. KEYS: stream, meta, channel. ARGV: the message's JSON
// ({"message":...,"name":...}), an epoch to use if the room has none (a new
// stream, or Redis lost its data), the count to keep (about: MAXLEN ~ trims
// whole nodes, which costs Redis far less than trimming exactly), how long
// the keys live idle (ms), and the publisher's tag ("process client"). It
// returns the id it gave.
const keepScript = `
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local id = epoch .. '-' .. redis.call('HINCRBY', KEYS[2], 'seq', 1)
local entry = '{"id":"' .. id .. '",' .. string.sub(ARGV[1], 2)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'm', entry)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[5] .. ' ' .. entry)
return id`

// streamEntry is one message of a room's stream, checked.
type streamEntry struct {
	epoch string
	seq   uint64
	msg   chatPayload
	frame frame  // msg as members get it, built from the checked fields
	json  []byte // the entry, spliced from frame: never Redis's bytes
}

// entryID is the form of an id from Redis: an epoch of lower-case letters
// and digits, a dash, a seq.
var entryID = regexp.MustCompile(`^([a-z0-9]{1,40})-([0-9]{1,19})$`)

// parseEntry checks an entry that came from Redis, within the limits a
// client's message is held to: anyone who can write to the shared Redis can
// write here. What it keeps is re-encoded from the checked fields.
func parseEntry(raw []byte) (streamEntry, bool) {
	var in struct {
		ID            *string `json:"id"`
		Message, Name *string
	}
	if len(raw) > maxMessageBytes || !utf8.Valid(raw) || json.Unmarshal(raw, &in) != nil ||
		in.ID == nil || in.Message == nil || in.Name == nil ||
		utf8.RuneCountInString(*in.Message) > maxMessageChars || utf8.RuneCountInString(*in.Name) > maxNameChars {
		return streamEntry{}, false
	}
	m := entryID.FindStringSubmatch(*in.ID)
	if m == nil {
		return streamEntry{}, false
	}
	seq, err := strconv.ParseUint(m[2], 10, 64)
	if err != nil {
		return streamEntry{}, false
	}
	p := chatPayload{Message: *in.Message, Name: *in.Name}
	f := encodeFrame("new_chat_message", p)
	return streamEntry{epoch: m[1], seq: seq, msg: p, frame: f, json: keptJSON(*in.ID, f)}, true
}

// keepCommand is the EVALSHA that keeps p, said by client from, in room.
func (l *redisLayer) keepCommand(sha, room string, from uint64, p chatPayload) [][]byte {
	payload, _ := json.Marshal(p) // two strings: it cannot fail
	epoch := strings.ToLower(string(l.id[:6])) + strconv.FormatInt(time.Now().UnixNano(), 36)
	tag := string(l.id) + " " + strconv.FormatUint(from, 10)
	return [][]byte{
		[]byte("EVALSHA"), []byte(sha), []byte("3"),
		[]byte(streamPrefix + room), []byte(metaPrefix + room), []byte(channelPrefix + room),
		payload, []byte(epoch), []byte(strconv.Itoa(l.keepCount)), []byte(strconv.FormatInt(historyKeep.Milliseconds(), 10)), []byte(tag),
	}
}

// keep hands a chat message to Redis for the room's shared history. It
// reports false when it cannot (no shared history, or Redis is away): the
// caller then delivers it here, as without history. Otherwise the message
// reaches every process, this one included, from Redis (receiveLoop).
func (l *redisLayer) keep(room string, from uint64, p chatPayload) bool {
	if l.keepCount <= 0 || !l.up.Load() {
		return false
	}
	select {
	case l.outbox <- outgoing{room: room, kept: &keptOut{from: from, msg: p}}:
		return true
	default:
		l.dropped.Add(1)
		return false
	}
}

// keptOut is a chat message on its way to the shared history.
type keptOut struct {
	from uint64
	msg  chatPayload
}

// readStream reads the reply to a room's XREVRANGE, within a budget of the
// server's own limits rather than Redis's word: at most keepCount entries,
// each of five elements ([id, [field, value]]) and at most a message and a
// little of bytes. The usual budget of one reply would not hold a hundred
// long messages.
func (l *redisLayer) readStream(r *bufio.Reader) (any, error) {
	return readReplyWithin(r, l.keepCount*(maxMessageBytes+256), 5*l.keepCount+1)
}

// parseStream reads an XREVRANGE reply: the newest entries, newest first,
// each [id, [field, value, ...]] with the message in the field m, and
// returns them oldest first. Entries that do not check out are left out and
// counted.
func (l *redisLayer) parseStream(room string, reply any) []streamEntry {
	items, _ := reply.([]any)
	var out []streamEntry
	for _, item := range slices.Backward(items) {
		parts, _ := item.([]any)
		if len(parts) != 2 {
			l.reject(room)
			continue
		}
		fields, _ := parts[1].([]any)
		if len(fields) != 2 {
			l.reject(room)
			continue
		}
		raw, _ := fields[1].([]byte)
		if e, ok := parseEntry(raw); ok {
			out = append(out, e)
		} else {
			l.reject(room)
		}
	}
	return out
}

// isKept reports whether a message on a room's channel is one that
// keepScript published, rather than a plain frame.
func isKept(data []byte) bool {
	_, _, _, ok := keptFrom(data)
	return ok
}

// keptFrom splits a message on a room's channel that keepScript published:
// "process client entry". ok is false for a plain frame ("process frame").
func keptFrom(data []byte) (process, client string, entry []byte, ok bool) {
	process, rest, _ := strings.Cut(string(data), " ")
	if strings.HasPrefix(rest, "{") {
		return "", "", nil, false
	}
	client, entryText, found := strings.Cut(rest, " ")
	if !found {
		return "", "", nil, false
	}
	return process, client, []byte(entryText), true
}

// fromStream delivers a message of roomName's shared history to its
// members here, and keeps it in the mirror, in the order Redis gave the
// ids. own is true for a message said in this process, by the client from.
// An entry without an epoch is a message Redis did not take: it goes to the
// members here without an id.
func (h *hub) fromStream(roomName string, e streamEntry, own bool, from uint64) {
	h.mu.Lock()
	r := h.rooms[roomName]
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var sender *client
	if own {
		for c := range r.members {
			if c.id == from {
				sender = c
			}
		}
	}
	f := e.frame
	if f.wire == nil { // a message Redis did not take: it never had a frame
		f = encodeFrame("new_chat_message", e.msg)
	}
	if e.epoch == "" || r.history == nil {
		r.deliverLocked(sender, f)
		return
	}
	grew, fresh := r.history.addEntry(e, h.keep)
	if fresh {
		r.deliverKept(sender, f, e.msg, r.history.id(e.seq), grew)
	}
}

// loadStream fills roomName's mirror with its shared history so far.
func (h *hub) loadStream(roomName string, entries []streamEntry) {
	h.mu.Lock()
	r := h.rooms[roomName]
	h.mu.Unlock()
	if r == nil || r.history == nil {
		return
	}
	r.mu.Lock()
	grew := r.history.merge(entries, h.keep)
	r.mu.Unlock()
	h.historyBytes.Add(int64(grew))
}

// historyBroken is the layer saying that the shared history is away: ids
// given until now can no longer be resumed from here (a replay says reset),
// and until it is back, messages come without ids.
func (h *hub) historyBroken() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms {
		if r.history != nil {
			r.mu.Lock()
			r.history.epoch = ""
			r.mu.Unlock()
		}
	}
}

// closeReady ends a wait, if anyone waits.
func closeReady(ready chan struct{}) {
	if ready != nil {
		close(ready)
	}
}
