package main

// How a fault scenario (redisfault_test.go) talks: the sender's pace, each
// member's reading and counting, the final resume, and /healthz watched
// for when each server's layer is connected.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/websocket"
)

// addReader has a member join the room on s, asking for ids or not.
func (run *faultRun) addReader(label string, s *testServer, ids bool) {
	t := run.t
	t.Helper()
	rd := &faultReader{label: label, ids: ids, srv: s, done: make(chan struct{}),
		first: map[int]faultArrival{}, count: map[int]int{}, disorder: map[int]int{}, maxSeq: -1,
		resumed: map[int]bool{}, twice: map[int]bool{}}
	if ids {
		h := s.dialHistory(t, faultRoom, "history")
		if action, _, raw := h.next(); action != "history" {
			t.Fatalf("%s joined with %s", label, raw)
		}
		rd.c = h.c
	} else {
		rd.c = s.dial(t, faultRoom)
	}
	run.readers = append(run.readers, rd)
}

// warmUp has the sender say one message before the script begins, and
// checks that every member gets it: the room spans both processes.
func (run *faultRun) warmUp(sender *websocket.Conn) {
	t := run.t
	t.Helper()
	sendText(t, sender, chat("warm-up", "S"))
	for _, rd := range run.readers {
		var f struct {
			Action  string      `json:"action"`
			Payload chatPayload `json:"payload"`
			ID      string      `json:"id"`
		}
		if raw := recvText(t, rd.c); json.Unmarshal([]byte(raw), &f) != nil || f.Action != "new_chat_message" || f.Payload.Message != "warm-up" {
			t.Fatalf("%s got %s, not the warm-up message", rd.label, raw)
		}
		rd.lastID, rd.resumeAt = f.ID, f.ID // where its ids begin
		rd.c.SetReadDeadline(time.Time{})   // the read loop waits as long as the scenario lasts
	}
	if run.sc.history {
		if raw := recvText(t, sender); !strings.HasPrefix(raw, `{"action":"said"`) {
			t.Fatalf("the sender got %s, not the id of the warm-up message", raw)
		}
		sender.SetReadDeadline(time.Time{})
	}
}

// dialSender has the sender join on a; with history it asks for ids, so
// that it is told the id of every message Redis kept (said, readSaid).
func (run *faultRun) dialSender() *websocket.Conn {
	t := run.t
	t.Helper()
	if !run.sc.history {
		return run.a.dial(t, faultRoom)
	}
	h := run.a.dialHistory(t, faultRoom, "history")
	if action, _, raw := h.next(); action != "history" {
		t.Fatalf("the sender joined with %s", raw)
	}
	return h.c
}

// readSaid collects, until c closes, the ids the sender is told (said);
// anything else a sender gets fails the test.
func (run *faultRun) readSaid(c *websocket.Conn) {
	for {
		var raw string
		if err := websocket.Message.Receive(c, &raw); err != nil {
			return // closed at the end
		}
		var f struct {
			Action  string `json:"action"`
			Payload struct {
				ID string `json:"id"`
			} `json:"payload"`
		}
		run.mu.Lock()
		if json.Unmarshal([]byte(raw), &f) == nil && f.Action == "said" {
			run.said = append(run.said, f.Payload.ID)
		} else if run.sendErr == nil {
			run.sendErr = fmt.Errorf("the sender got %.200s", raw)
		}
		run.mu.Unlock()
	}
}

// send says a numbered message every faultSendEvery until stop: "SEQ
// UNIXNANO", its number and when it was sent. The first goes half a period
// after the script begins, so that no message is sent at the very moment
// a phase changes: the phases last whole periods.
func (run *faultRun) send(c *websocket.Conn, stop chan struct{}) {
	select {
	case <-stop:
		return
	case <-time.After(faultSendEvery / 2):
	}
	tick := time.NewTicker(faultSendEvery)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		if seq > 0 {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
		now := time.Now()
		run.mu.Lock()
		run.sent = append(run.sent, faultSent{at: now, phase: int(run.phase.Load())})
		run.mu.Unlock()
		c.SetWriteDeadline(now.Add(recvTimeout))
		if err := websocket.Message.Send(c, chat(fmt.Sprintf("%d %d", seq, now.UnixNano()), "S")); err != nil {
			run.mu.Lock()
			run.sendErr = fmt.Errorf("message %d: %w", seq, err)
			run.mu.Unlock()
			return
		}
	}
}

// read counts what rd receives until its connection closes.
func (run *faultRun) read(rd *faultReader) {
	for {
		var raw string
		if err := websocket.Message.Receive(rd.c, &raw); err != nil {
			return // closed at the end
		}
		at := time.Now()
		var f struct {
			Action  string      `json:"action"`
			Payload chatPayload `json:"payload"`
			ID      string      `json:"id"`
		}
		seq, ok := -1, false
		if json.Unmarshal([]byte(raw), &f) == nil && f.Action == "new_chat_message" {
			seq, ok = faultSeq(f.Payload.Message)
		}
		rd.mu.Lock()
		switch {
		case f.Action == "history_gap":
			rd.gaps = append(rd.gaps, raw) // the server says it could not bring everything
		case !ok:
			rd.odd = append(rd.odd, raw)
		default:
			rd.take(seq, at, f.ID)
		}
		rd.mu.Unlock()
		select {
		case run.progress <- struct{}{}:
		default:
		}
	}
}

// take counts message seq, received live at at, with its id if any. It
// runs with rd.mu held.
func (rd *faultReader) take(seq int, at time.Time, id string) {
	rd.count[seq]++
	if rd.count[seq] == 1 {
		rd.first[seq] = faultArrival{at: at, id: id}
	}
	if seq < rd.maxSeq {
		rd.disorder[seq]++
		if rd.overtaken == "" {
			rd.overtaken = fmt.Sprintf("%d after %d", seq, rd.maxSeq)
		}
	}
	rd.maxSeq = max(rd.maxSeq, seq)
	if id == "" {
		return
	}
	if rd.lastID != "" {
		lastEpoch, lastSeq := splitID(rd.lastID)
		epoch, n := splitID(id)
		switch {
		case epoch != lastEpoch:
			rd.epochs++
			rd.gapSeen = true
		case n > lastSeq+1:
			rd.idGaps += int(n - lastSeq - 1)
			rd.gapSeen = true
		}
	}
	if !rd.gapSeen {
		rd.resumeAt = id
	}
	rd.lastID = id
}

// splitID splits an id, EPOCH-SEQ.
func splitID(id string) (epoch string, seq uint64) {
	epoch, n, _ := strings.Cut(id, "-")
	seq, _ = strconv.ParseUint(n, 10, 64)
	return epoch, seq
}

// faultSeq reads a message's number from its text, "SEQ UNIXNANO".
func faultSeq(text string) (int, bool) {
	n, _, ok := strings.Cut(text, " ")
	seq, err := strconv.Atoi(n)
	return seq, ok && err == nil && seq >= 0
}

// awaitStragglers waits, d at most, until every member has the last
// message sent: delivery across processes keeps one sender's order, so by
// then nothing sent earlier is still on its way.
func (run *faultRun) awaitStragglers(d time.Duration) {
	run.mu.Lock()
	last := len(run.sent) - 1
	run.mu.Unlock()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		all := true
		for _, rd := range run.readers {
			rd.mu.Lock()
			_, got := rd.first[last]
			rd.mu.Unlock()
			all = all && got
		}
		if all {
			return
		}
		select {
		case <-run.progress:
		case <-deadline.C:
			return
		}
	}
}

// resume is the most a member that asked for ids can do at the end: join
// again (?since=) from the last id before its ids first showed a hole, and
// count what the replay brings that it had not got, and what it brings
// again that had come without an id: a client cannot tell that those are
// messages it already showed.
func (run *faultRun) resume(rd *faultReader) {
	rd.mu.Lock()
	query := "history"
	if rd.resumeAt != "" {
		query = "since=" + rd.resumeAt
	}
	rd.mu.Unlock()
	h := rd.srv.dialHistory(run.t, faultRoom, query)
	action, msgs, raw := h.next()
	if action == "history_gap" {
		var f struct {
			Payload struct {
				Reason string `json:"reason"`
			} `json:"payload"`
		}
		json.Unmarshal([]byte(raw), &f)
		rd.resumeGap = f.Payload.Reason
		action, msgs, raw = h.next()
	}
	if action != "history" {
		run.t.Errorf("%s resumed with %s", rd.label, raw)
		return
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	for _, m := range msgs {
		seq, ok := faultSeq(m.Message)
		switch {
		case !ok || rd.resumed[seq]:
		case rd.count[seq] == 0:
			rd.resumed[seq] = true
			rd.first[seq] = faultArrival{id: m.ID}
		case rd.first[seq].id != "" && rd.first[seq].id != m.ID:
			rd.twice[seq] = true
			// One that came without an id, on its sender's process while
			// Redis was away, comes again with its id: a resume from
			// before it cannot be told otherwise (docs/protocol.md).
		}
	}
	h.c.Close()
}

// pollLayer records, until stop, each change in whether server i's layer is
// connected, as its /healthz says: who noticed a fault, and when.
func (run *faultRun) pollLayer(i int, s *testServer, stop chan struct{}) {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := true
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		resp, err := client.Get(s.URL + "/healthz")
		if err != nil {
			continue
		}
		var h health
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || h.Layer.Connected == last {
			continue
		}
		last = h.Layer.Connected
		run.mu.Lock()
		run.layers[i] = append(run.layers[i], layerEvent{time.Now(), last})
		run.mu.Unlock()
	}
}
