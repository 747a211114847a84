package main

// This file is each room's memory: its most recent chat messages, each
// with an id, its place in the room's stream ("epoch-seq"). A client that
// opts in (?history or ?since=ID on the WebSocket URL) gets, as it joins,
// what was said after the id it names (or the recent history), and then an
// id with every message, so that after a reconnect it can ask for exactly
// what it missed. The epoch is drawn when a room's stream starts: an id
// from another epoch (this process restarted, the history expired) cannot
// be resumed, and the client is told so.

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
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

	// historyTotalBytes bounds every room's history together: past it, the
	// histories of empty rooms go first, longest idle first, then the
	// oldest messages of the room that is speaking.
	historyTotalBytes = 64 << 20

	// historyKeep is how long a room's history outlives its last member,
	// so that someone who comes back later still sees the conversation.
	historyKeep = 15 * time.Minute
)

// history is one room's recent messages, oldest first. The hub keeps it,
// under hub.mu for its life (creation, idleness, expiry) and under the
// room's lock for what it holds.
type history struct {
	epoch     string
	next      uint64         // the seq the next message gets
	entries   []historyEntry // oldest first
	bytes     int
	idleSince time.Time // when its room emptied; zero while it has members
}

// historyEntry is one message as a replay sends it (static/asyncapi.json
// has its schema, KeptMessage).
type historyEntry struct {
	seq  uint64
	json []byte // {"id":...,"message":...,"name":...}
}

// newHistory starts a room's stream, with an epoch of its own.
func newHistory() *history {
	return &history{epoch: strings.ToLower(rand.Text()[:8]), next: 1}
}

// id is a message's id, as clients see it.
func (h *history) id(seq uint64) string {
	return h.epoch + "-" + strconv.FormatUint(seq, 10)
}

// add keeps the chat message f as the room's next, within max messages and
// historyRoomBytes, and returns its id and how many bytes the history grew
// by (negative when it shrank).
func (h *history) add(f frame, max int) (id string, grew int) {
	seq := h.next
	h.next++
	id = h.id(seq)
	before := h.bytes
	h.push(historyEntry{seq, keptJSON(id, f)}, max)
	return id, h.bytes - before
}

// push keeps e as the newest message, then drops the oldest while there are
// more than max, or more than historyRoomBytes (the newest always stays).
func (h *history) push(e historyEntry, max int) {
	h.next = e.seq + 1
	h.entries = append(h.entries, e)
	h.bytes += len(e.json)
	for len(h.entries) > max || (h.bytes > historyRoomBytes && len(h.entries) > 1) {
		h.dropOldest()
	}
}

// chatPrefix is how a chat message's frame payload begins (encodeJSON
// writes the fields in this order); its payload object follows, and one }.
const chatPrefix = `{"action":"new_chat_message","payload":`

// keptJSON is a history entry, {"id":...,"message":...,"name":...}, spliced
// from the chat message's frame rather than encoded again: a message is
// encoded once, however many places keep it.
func keptJSON(id string, f frame) []byte {
	object := f.payload()[len(chatPrefix) : len(f.payload())-1] // {"message":...,"name":...}
	entry := make([]byte, 0, len(id)+8+len(object))
	entry = append(append(append(entry, `{"id":"`...), id...), `",`...)
	return append(entry, object[1:]...)
}

// dropOldest forgets the oldest message.
func (h *history) dropOldest() {
	h.bytes -= len(h.entries[0].json)
	h.entries[0] = historyEntry{}
	h.entries = h.entries[1:]
}

// addEntry keeps an entry of the shared stream (redishistory.go), in
// order: one from another epoch starts the history over (Redis lost its
// data), one already kept is skipped (fresh is false). It returns how many
// bytes the history grew by.
func (h *history) addEntry(e streamEntry, max int) (grew int, fresh bool) {
	before := h.bytes
	if e.epoch != h.epoch {
		h.restart(e.epoch)
	}
	if e.seq < h.next {
		return 0, false
	}
	h.push(historyEntry{e.seq, e.json}, max)
	return h.bytes - before, true
}

// merge puts the shared stream so far, loaded from Redis, under what came
// live meanwhile, and returns how many bytes the history grew by.
func (h *history) merge(loaded []streamEntry, max int) int {
	if len(loaded) == 0 {
		return 0
	}
	before := h.bytes
	var live []historyEntry
	if epoch := loaded[len(loaded)-1].epoch; epoch == h.epoch {
		live = slices.Clone(h.entries)
	} // else from another stream, or the mirror's epoch was forgotten
	h.restart(loaded[len(loaded)-1].epoch)
	for _, e := range loaded {
		if e.epoch == h.epoch {
			h.addEntry(e, max)
		}
	}
	for _, e := range live {
		if e.seq >= h.next {
			h.push(e, max)
		}
	}
	return h.bytes - before
}

// restart empties the history for a stream of another epoch.
func (h *history) restart(epoch string) {
	clear(h.entries)
	h.entries, h.bytes, h.epoch, h.next = h.entries[:0], 0, epoch, 1
}

// Why a replay is not all that was asked for.
const (
	gapReset   = "reset"   // the id is from another stream: a restart, or an expired history
	gapTrimmed = "trimmed" // the messages after the id are no longer all kept
)

// replay is what a client that asks for the messages after since gets: the
// messages, and why they are not all it asked for ("" when they are).
// since "" asks for the recent history, which is whole by definition.
func (h *history) replay(since string) (entries []historyEntry, gap string) {
	if since == "" {
		return h.entries, ""
	}
	epoch, seqText, _ := strings.Cut(since, "-")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil || h.epoch == "" || epoch != h.epoch || seq >= h.next {
		return h.entries, gapReset
	}
	first := h.next // the seq of the oldest message kept
	if len(h.entries) > 0 {
		first = h.entries[0].seq
	}
	if seq+1 < first {
		return h.entries, gapTrimmed
	}
	i, _ := slices.BinarySearchFunc(h.entries, seq+1, func(e historyEntry, s uint64) int { return cmp.Compare(e.seq, s) })
	return h.entries[i:], ""
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

// historyGapFrame tells a client that the replay after it is not all it
// asked for, and why.
func historyGapFrame(reason string) frame {
	return encodeFrame("history_gap", map[string]string{"reason": reason})
}

// saidFrame tells a sender that asked for ids the id of its own message,
// which it is not sent back, so that it can resume after it.
func saidFrame(id string) frame {
	return encodeFrame("said", map[string]string{"id": id})
}

// historyRequest is what a client asked for on its WebSocket URL: nothing
// (nil), the recent history (?history), or what followed an id (?since=ID).
type historyRequest struct {
	since string
}

// parseHistoryRequest reads the opt-in from a handshake's query.
func parseHistoryRequest(query map[string][]string) *historyRequest {
	if since, ok := query["since"]; ok && len(since) > 0 {
		return &historyRequest{since: since[0]}
	}
	if _, ok := query["history"]; ok {
		return &historyRequest{}
	}
	return nil
}

// historyOf returns the history of roomName, which may have outlived an
// earlier room of that name, or starts one; nil when the hub keeps none.
// It runs with h.mu held.
func (h *hub) historyOf(roomName string) *history {
	if h.keep <= 0 {
		return nil
	}
	hist := h.histories[roomName]
	if hist == nil {
		hist = newHistory()
		if h.shared {
			hist.epoch = "" // a mirror: its epoch is the stream's, once loaded
		}
		h.histories[roomName] = hist
	}
	hist.idleSince = time.Time{}
	return hist
}

// expireHistories forgets the histories of rooms empty for historyKeep,
// and, while all of them together pass historyTotalBytes, those of empty
// rooms, longest idle first.
func (h *hub) expireHistories(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var idle []string
	for name, hist := range h.histories {
		switch {
		case hist.idleSince.IsZero():
		case now.Sub(hist.idleSince) >= historyKeep:
			h.dropHistoryLocked(name)
		default:
			idle = append(idle, name)
		}
	}
	slices.SortFunc(idle, func(a, b string) int { return h.histories[a].idleSince.Compare(h.histories[b].idleSince) })
	for _, name := range idle {
		if h.historyBytes.Load() <= historyTotalBytes {
			break
		}
		h.dropHistoryLocked(name)
	}
}

// dropHistoryLocked forgets the history of an empty room.
func (h *hub) dropHistoryLocked(name string) {
	h.historyBytes.Add(-int64(h.histories[name].bytes))
	delete(h.histories, name)
}

// replayTo sends c, which has just joined and asked for history, what it
// asked for: the messages after its id, or the recent ones, after a
// history_gap frame when they are not all it asked for. It runs with r.mu
// held, so that no message falls between the replay and the first live one.
func (r *room) replayTo(c *client) {
	if c.history == nil || r.history == nil {
		return
	}
	entries, gap := r.history.replay(c.history.since)
	if gap != "" {
		c.send(historyGapFrame(gap))
	}
	c.send(historyFrame(r.history.epoch, entries))
}
