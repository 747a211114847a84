package main

// This file is a room's memory: its most recent chat messages, each with an
// id, its place in the room's stream ("EPOCH-SEQ"). A client that opts in
// (?history or ?since=ID on the WebSocket URL) gets, as it joins, what was
// said after the id it names (or the recent history), and then an id with
// every message, so that after a reconnect it can ask for exactly what it
// missed. The epoch is drawn when a room's stream starts: an id from another
// epoch (this process restarted, the history expired) cannot be resumed,
// and the client is told so. The broker keeps each room's history in its
// stream (below), under the stream's lock.

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the history.
const (
	// defaultHistory is how many messages a room keeps (the -history flag;
	// 0 turns history off): a screenful and more, so that someone who
	// joins sees the conversation they walk into.
	defaultHistory = 100

	// historyRoomBytes bounds one room's history: the oldest messages go
	// first when the newest would pass it. 100 messages of 2 KiB fit.
	historyRoomBytes = 256 << 10

	// historyMemory bounds the memory every room's history together costs
	// this process: past it, a room that speaks drops its own oldest
	// messages at once, and the histories of empty rooms go at the next
	// expiry, longest empty first. A kept byte costs about two: Go's
	// garbage collector lets the heap grow to twice what is live before it
	// collects, and under a flood of messages it does. So the messages
	// themselves are held to historyTotalBytes, half of it
	// (TestHistoryMemoryBound measures the process's memory under a flood).
	historyMemory     = 64 << 20
	historyTotalBytes = historyMemory / 2

	// historyKeep is how long a room's history outlives its last member,
	// so that someone who comes back later still sees the conversation.
	historyKeep = 15 * time.Minute

	// expireEvery is how often the histories of empty rooms are looked
	// over for expiry.
	expireEvery = 20 * time.Second
)

// A stream is one room's messages in the order its broker gave them: the
// history this process holds of them, and the room here they are
// delivered to.
type stream struct {
	name string

	// mu is held from a message's placing to its last delivery, and while a
	// member joins with its replay: one order for both. It comes after
	// hub.mu and the broker's, before presence's and room.mu (the order is
	// on hub). With Redis, the room's mirror holds the stream, and this
	// lock with it (redismirror.go).
	mu      sync.Mutex
	room    *room // nil while the room has no members here
	history history
	gone    bool // dropped by its broker: whoever holds it must look again
}

// history is one room's recent messages, oldest first, with what it takes
// to give the next one its id. Its stream's lock guards it.
type history struct {
	keep    int           // messages it keeps; 0: none, and no ids
	total   *historyTotal // the bytes of every history in this process, this one's included
	mirror  bool          // it mirrors a stream kept elsewhere (Redis), which may be ahead of it
	epoch   string
	next    uint64            // the seq the next message gets
	entries []historyEntry    // oldest first
	bytes   int               // of the entries' JSON
	keys    map[string]uint64 // the seq of each entry with a key, to spot copies
}

// historyTotal counts the bytes of every history in this process and
// their messages, for /metrics, and the streams that hold them: what they
// all cost (held) is bounded by historyTotalBytes.
type historyTotal struct {
	atomic.Int64 // bytes of messages
	messages     atomic.Int64
	streams      atomic.Int64
}

// streamBytes is what a stream costs beside its messages: the stream, its
// epoch, its room's name (at most 99 bytes) and its entries in the
// broker's maps, rounded up.
const streamBytes = 384

// held is what every history costs together, streams included.
func (t *historyTotal) held() int64 { return t.Load() + t.streams.Load()*streamBytes }

// status is a brokerStatus of kind with the histories' totals.
func (t *historyTotal) status(kind string) brokerStatus {
	return brokerStatus{Kind: kind, HistoryBytes: t.Load(), HistoryMessages: t.messages.Load(), HistoryStreams: t.streams.Load()}
}

// historyEntry is one message as a replay sends it (static/asyncapi.json
// has its schema, KeptMessage).
type historyEntry struct {
	seq  uint64
	key  string // its post's key: who said it and its cid; "" for none
	json []byte // {"id":...,"message":...,"name":...,"cid":...}
}

// newHistory starts a room's stream, with an epoch of its own.
func newHistory(keep int, total *historyTotal) history {
	return history{keep: keep, total: total, epoch: strings.ToLower(rand.Text()[:8]), next: 1}
}

// id is a message's id, as clients see it.
func (h *history) id(seq uint64) string {
	return h.epoch + "-" + strconv.FormatUint(seq, 10)
}

// place gives p its id, the room's next, and keeps it; without history it
// does nothing, and p has no id. A copy of a message kept (the same key)
// gets the first one's id, and place reports it: the members have it.
func (h *history) place(p *post) (copied bool) {
	if h.keep <= 0 {
		return false
	}
	if seq, ok := h.keys[p.key]; ok && p.key != "" {
		p.id = h.id(seq)
		return true
	}
	p.id = h.id(h.next)
	h.push(historyEntry{h.next, p.key, keptJSON(p)})
	return false
}

// push keeps e as the newest message, then drops the oldest while there are
// more than it keeps, or more bytes than its room or all rooms may hold
// (the newest always stays).
func (h *history) push(e historyEntry) {
	h.next = e.seq + 1
	h.entries = append(h.entries, e)
	h.grow(len(e.json), 1)
	if e.key != "" {
		if h.keys == nil {
			h.keys = map[string]uint64{}
		}
		h.keys[e.key] = e.seq
	}
	for len(h.entries) > h.keep ||
		len(h.entries) > 1 && (h.bytes > historyRoomBytes || h.total.held() > historyTotalBytes) {
		h.grow(-len(h.entries[0].json), -1)
		delete(h.keys, h.entries[0].key)
		h.entries[0] = historyEntry{}
		h.entries = h.entries[1:]
	}
}

// grow counts n more bytes and messages more messages, here and in the
// total.
func (h *history) grow(n, messages int) {
	h.bytes += n
	h.total.Add(int64(n))
	h.total.messages.Add(int64(messages))
}

// clear forgets every message, as a history that expires or starts over.
func (h *history) clear() {
	h.grow(-h.bytes, -len(h.entries))
	clear(h.entries)
	h.entries = h.entries[:0]
	clear(h.keys)
}

// snapshot is a copy of h to read from without its lock, which counts in
// no total.
func (h *history) snapshot() history {
	return history{keep: h.keep, total: new(historyTotal), mirror: h.mirror, epoch: h.epoch, next: h.next,
		entries: slices.Clone(h.entries), bytes: h.bytes}
}

// chatPrefix is how a chat message's frame payload begins (framed writes
// outFrame's fields in their order); its payload object follows, and one }.
const chatPrefix = `{"action":"new_chat_message","payload":`

// keptJSON is p as a history entry, {"id":...,"message":...,"name":...}
// and "cid" when it has one, spliced from its frame rather than encoded
// again: a message is encoded once, however many places keep it.
func keptJSON(p *post) []byte {
	object := p.frame.payload()[len(chatPrefix) : len(p.frame.payload())-1] // {"message":...,"name":...}
	entry := make([]byte, 0, len(p.id)+len(p.cid)+16+len(object))
	entry = append(append(append(entry, `{"id":"`...), p.id...), `",`...)
	entry = append(entry, object[1:]...)
	if p.cid != "" { // printable ASCII (validCid), which strconv quotes as JSON does
		entry = append(strconv.AppendQuote(append(entry[:len(entry)-1], `,"cid":`...), p.cid), '}')
	}
	return entry
}

// Why a replay is not all that was asked for.
const (
	gapReset   = "reset"   // the id is from another stream: a restart, or an expired history
	gapTrimmed = "trimmed" // the messages after the id are no longer all kept
)

// replay is what a client that asked for req gets as it joins: a
// history_gap frame when the replay is not all it asked for, then the
// history frame. Without history, or a request, it is nothing. ahead is
// the seq of an id the client holds beyond a mirror's newest (after).
func (h *history) replay(req *historyRequest) (replay []frame, ahead uint64) {
	if req == nil || h.keep <= 0 {
		return nil, 0
	}
	entries, gap, ahead := h.after(req.since)
	replay = []frame{historyFrame(h.epoch, entries)}
	if gap != "" {
		replay = slices.Insert(replay, 0, gapFrame(gap))
	}
	return replay, ahead
}

// after returns the messages after the id since, and why they are not all
// that followed it ("" when they are). since "" asks for the recent
// history, which is whole by definition. An id of this stream beyond the
// newest message is one it never gave (reset), unless the history is a
// mirror: then another process is ahead of this one, and the id's seq is
// ahead, with nothing to replay.
func (h *history) after(since string) (entries []historyEntry, gap string, ahead uint64) {
	if since == "" {
		return h.entries, "", 0
	}
	epoch, seqText, _ := strings.Cut(since, "-")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	switch {
	case err != nil || h.epoch == "" || epoch != h.epoch || seq >= h.next && !h.mirror:
		return h.entries, gapReset, 0
	case seq >= h.next:
		return nil, "", seq
	}
	first := h.next // the seq of the oldest message kept
	if len(h.entries) > 0 {
		first = h.entries[0].seq
	}
	if seq+1 < first {
		return h.entries, gapTrimmed, 0
	}
	i, _ := slices.BinarySearchFunc(h.entries, seq+1, func(e historyEntry, s uint64) int { return cmp.Compare(e.seq, s) })
	return h.entries[i:], "", 0
}

// gapFrame says why what a client holds of the room's stream is not whole.
func gapFrame(reason string) frame {
	return encodeFrame("history_gap", map[string]string{"reason": reason})
}

// historyFrame is the replay a client gets at join: one frame, so that it
// is shown as one block of earlier messages.
func historyFrame(epoch string, entries []historyEntry) frame {
	msgs := make([]json.RawMessage, len(entries))
	for i, e := range entries {
		msgs[i] = e.json
	}
	return encodeFrame("history", struct {
		Epoch    string            `json:"epoch"`
		Messages []json.RawMessage `json:"messages"`
	}{epoch, msgs})
}

// saidFrame tells a sender the id of its own message, which it is not sent
// back, so that it can resume after it, and the message's cid, so that it
// knows which it was. Without history there is no id.
func saidFrame(id, cid string) frame {
	payload := map[string]string{}
	if id != "" {
		payload["id"] = id
	}
	return framed(outFrame{Action: "said", Payload: payload, Cid: cid})
}

// historyRequest is what a client asked for on its WebSocket URL: nothing
// (nil), the recent history (?history), or what followed an id (?since=ID).
type historyRequest struct {
	since string
}

// parseHistoryRequest reads the opt-in from a handshake's query. A server
// that keeps no history (keep 0) ignores it: its protocol is the one
// without history.
func parseHistoryRequest(query map[string][]string, keep int) *historyRequest {
	if keep <= 0 {
		return nil
	}
	if since, ok := query["since"]; ok && len(since) > 0 {
		return &historyRequest{since: since[0]}
	}
	if _, ok := query["history"]; ok {
		return &historyRequest{}
	}
	return nil
}

// expireLoop forgets, every expireEvery, the histories of rooms empty for
// idleKeep, and, while all histories together (streams included) pass
// historyTotalBytes, those of the rooms empty longest.
func (b *memoryBroker) expireLoop() {
	tick := time.NewTicker(expireEvery)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-tick.C:
			b.expire(now)
		}
	}
}

// expire is one pass of expireLoop.
func (b *memoryBroker) expire(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	idle := slices.SortedFunc(maps.Keys(b.idle), func(x, y *stream) int { return b.idle[x].Compare(b.idle[y]) })
	for _, s := range idle {
		if now.Sub(b.idle[s]) < b.idleKeep && b.total.held() <= historyTotalBytes {
			break
		}
		b.dropLocked(s)
	}
}
