package main

// Room history and resume, from outside: who gets what at join, ids on
// every message for a client that asks, a replay that joins the live
// stream with nothing missing and nothing twice, and the bounds.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// historyMsg is one message as a client that asked for history sees it.
type historyMsg struct {
	ID      string `json:"id"`
	Message string `json:"message"`
	Name    string `json:"name"`
}

// historyReader reads what a client that asked for history receives.
type historyReader struct {
	t *testing.T
	c *websocket.Conn
}

// next reads one frame and returns its action and, for a chat message or
// a replay, the messages it holds.
func (r historyReader) next() (action string, msgs []historyMsg, raw string) {
	r.t.Helper()
	raw = recvText(r.t, r.c)
	return r.parse(raw)
}

// nextUntilClosed is next, but reports ok false when the server closes the
// connection instead.
func (r historyReader) nextUntilClosed() (msgs []historyMsg, ok bool) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(recvTimeout))
	var raw string
	if err := websocket.Message.Receive(r.c, &raw); err != nil {
		return nil, false
	}
	_, msgs, _ = r.parse(raw)
	return msgs, true
}

// parse reads a frame's action and, for a chat message or a replay, the
// messages it holds.
func (r historyReader) parse(raw string) (action string, msgs []historyMsg, _ string) {
	var f struct {
		Action  string          `json:"action"`
		Payload json.RawMessage `json:"payload"`
		ID      string          `json:"id"`
	}
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		r.t.Fatalf("%q: %v", raw, err)
	}
	switch f.Action {
	case "history":
		var p struct {
			Epoch    string       `json:"epoch"`
			Messages []historyMsg `json:"messages"`
		}
		json.Unmarshal(f.Payload, &p)
		return f.Action, p.Messages, raw
	case "new_chat_message":
		var m historyMsg
		json.Unmarshal(f.Payload, &m)
		m.ID = f.ID
		return f.Action, []historyMsg{m}, raw
	}
	return f.Action, nil, raw
}

// waitKept waits until room's history has recorded n messages in all.
func (s *testServer) waitKept(t *testing.T, room string, n int) {
	t.Helper()
	kept := func() int {
		var st *stream
		switch b := s.hub.broker.(type) {
		case *memoryBroker:
			st = b.lock(room, false)
		case *redisBroker:
			if m := b.lock(room); m != nil {
				st = &m.stream
			}
		}
		if st == nil {
			return 0
		}
		defer st.mu.Unlock()
		return int(st.history.next - 1)
	}
	waitFor(t, func() string { return fmt.Sprintf("%d of %d messages kept", kept(), n) }, func() bool { return kept() >= n })
}

// talk has a new member of room, A, say 0 to n-1, and waits until the
// room's history has kept them; it returns that member.
func (s *testServer) talk(t *testing.T, room string, n int) *websocket.Conn {
	t.Helper()
	alice := s.dial(t, room)
	for i := range n {
		sendText(t, alice, chat(fmt.Sprint(i), "A"))
	}
	s.waitKept(t, room, n)
	return alice
}

// dialHistory joins room asking for history with the query (history, or
// since=ID).
func (s *testServer) dialHistory(t *testing.T, room, query string) historyReader {
	t.Helper()
	return historyReader{t, dialURL(t, s.wsURL(room)+"?"+query, s.URL)}
}

func TestHistoryNothingForClientsThatDoNotAsk(t *testing.T) {
	s := newTestServer(t, options{history: defaultHistory})
	alice := s.talk(t, "quiet", 3)
	bob := s.dial(t, "quiet")
	expectQuiet(t, bob) // nothing on connect
	sendText(t, alice, chat("live", "A"))
	expectText(t, bob, chat("live", "A")) // and no id
	expectQuiet(t, alice)                 // no said frame either
}

// TestHistoryOffIgnoresTheOptIn asks a server that keeps no history for
// it: the protocol is the one without history, cids on others' messages
// included.
func TestHistoryOffIgnoresTheOptIn(t *testing.T) {
	s := newTestServer(t, options{history: 0})
	alice := s.dial(t, "off")
	for _, query := range []string{"history", "since=abc-1"} {
		bob := s.dialHistory(t, "off", query)
		expectQuiet(t, bob.c) // no history frame
		sendText(t, alice, chatWithCid("live", "A", "c-1"))
		expectText(t, alice, `{"action":"said","payload":{},"cid":"c-1"}`)
		expectText(t, bob.c, chat("live", "A")) // no id, no cid
		bob.c.Close()
	}
}

func TestHistoryLateJoinerSeesTheConversation(t *testing.T) {
	s := newTestServer(t, options{history: defaultHistory})
	alice := s.talk(t, "talk", 3)
	carol := s.dialHistory(t, "talk", "history")
	action, msgs, raw := carol.next()
	if action != "history" || len(msgs) != 3 {
		t.Fatalf("got %s", raw)
	}
	epoch, _, _ := strings.Cut(msgs[0].ID, "-")
	want := fmt.Sprintf(`{"action":"history","payload":{"epoch":"%s","messages":[`+
		`{"id":"%[1]s-1","message":"0","name":"A"},{"id":"%[1]s-2","message":"1","name":"A"},{"id":"%[1]s-3","message":"2","name":"A"}]}}`, epoch)
	if raw != want {
		t.Fatalf("got  %s\nwant %s", raw, want)
	}
	sendText(t, alice, chat("live", "A"))
	expectText(t, carol.c, fmt.Sprintf(`{"action":"new_chat_message","payload":{"message":"live","name":"A"},"id":"%s-4"}`, epoch))
	sendText(t, carol.c, chat("hi", "C"))
	expectText(t, carol.c, fmt.Sprintf(`{"action":"said","payload":{"id":"%s-5"}}`, epoch))
	expectText(t, alice, chat("hi", "C"))
}

// TestHistoryResumeLosesNothing cuts a member off in the middle of 1,000
// broadcasts. It comes back asking for what followed the last id it saw,
// and must end with all 1,000, once each, in order.
func TestHistoryResumeLosesNothing(t *testing.T) {
	const total = 1000
	s := newTestServer(t, options{history: total})
	sender := s.dial(t, "resume")
	bob := s.dialHistory(t, "resume", "history")
	if action, _, raw := bob.next(); action != "history" {
		t.Fatalf("got %s", raw)
	}
	tl := tally{read: sendPaced(total, func(i int) error { return websocket.Message.Send(sender, chat(fmt.Sprint(i), "S")) })}
	tl.upTo(bob, total/4) // a quarter in, the connection drops
	bob.c.Close()
	bob = s.dialHistory(t, "resume", "since="+tl.got[len(tl.got)-1].ID)
	tl.upTo(bob, total)
	tl.inOrder(t, total)
	for i, m := range tl.got {
		if !strings.HasSuffix(m.ID, fmt.Sprintf("-%d", i+1)) {
			t.Fatalf("message %d has the id %s", i, m.ID)
		}
	}
	expectQuiet(t, bob.c)
}

func TestHistoryTellsWhatCannotBeResumed(t *testing.T) {
	const keep = 5
	s := newTestServer(t, options{history: keep})
	s.talk(t, "gap", 20)
	probe := s.dialHistory(t, "gap", "history")
	_, msgs, _ := probe.next()
	epoch, _, _ := strings.Cut(msgs[0].ID, "-")
	if len(msgs) != keep || msgs[0].Message != "15" {
		t.Fatalf("recent history %+v, want the last %d", msgs, keep)
	}
	tests := []struct {
		since, gap string
		first      string // the first message replayed
		n          int
	}{
		{epoch + "-17", "", "17", 3},
		{epoch + "-15", "", "15", 5}, // just reaches back
		{epoch + "-20", "", "", 0},   // nothing new
		{epoch + "-3", gapTrimmed, "15", keep},
		{"otherepoch-17", gapReset, "15", keep}, // a restart, or an expired history
		{epoch + "-99", gapReset, "15", keep},   // an id this stream never gave
		{"nonsense", gapReset, "15", keep},
	}
	for _, tt := range tests {
		t.Run(tt.since, func(t *testing.T) {
			c := s.dialHistory(t, "gap", "since="+tt.since)
			if tt.gap != "" {
				expectText(t, c.c, `{"action":"history_gap","payload":{"reason":"`+tt.gap+`"}}`)
			}
			action, msgs, raw := c.next()
			if action != "history" || len(msgs) != tt.n || (tt.n > 0 && msgs[0].Message != tt.first) {
				t.Fatalf("got %s", raw)
			}
		})
	}
}

func TestHistoryBounds(t *testing.T) {
	t.Parallel()
	t.Run("bytes per room", func(t *testing.T) {
		s := newTestServer(t, options{history: 1000})
		alice := s.dial(t, "big")
		long := strings.Repeat("é", maxMessageChars) // 8 KB each
		for i := range 100 {
			sendText(t, alice, chat(long, fmt.Sprint(i)))
		}
		s.waitKept(t, "big", 100)
		_, msgs, raw := s.dialHistory(t, "big", "history").next()
		if size := len(raw); size > historyRoomBytes+1024 || len(msgs) == 0 || msgs[len(msgs)-1].Name != "99" {
			t.Fatalf("%d messages in %d bytes, the last %q", len(msgs), size, msgs[len(msgs)-1].Name)
		}
		if h := s.hub.broker.(*memoryBroker).total.Load(); h > historyRoomBytes {
			t.Errorf("the hub counts %d bytes of history", h)
		}
	})
	t.Run("kept after the room empties, then expires", func(t *testing.T) {
		s := newTestServer(t, options{history: 10})
		alice := s.dial(t, "later")
		sendText(t, alice, chat("before you came", "A"))
		s.waitKept(t, "later", 1)
		closeClient(t, alice)
		s.waitHealth(t, func(h health) bool { return h.Rooms == 0 })
		_, msgs, _ := s.dialHistory(t, "later", "history").next()
		if len(msgs) != 1 || msgs[0].Message != "before you came" {
			t.Fatalf("history %+v", msgs)
		}
		s.hub.forEach(func(c *client) { c.close(closeGoingAway, "test") })
		s.waitHealth(t, func(h health) bool { return h.Rooms == 0 })
		b := s.hub.broker.(*memoryBroker)
		b.expire(time.Now().Add(historyKeep))
		if total := b.total.Load(); total != 0 {
			t.Fatalf("%d bytes of history after it expired", total)
		}
		_, msgs, _ = s.dialHistory(t, "later", "history").next()
		if len(msgs) != 0 {
			t.Fatalf("history %+v after it expired", msgs)
		}
	})
	t.Run("off", func(t *testing.T) {
		s := newTestServer(t, options{})
		alice := s.dial(t, "none")
		sendText(t, alice, chat("hi", "A"))
		expectQuiet(t, alice) // the pong comes once "hi" has been broadcast: a joiner cannot catch it live
		expectQuiet(t, s.dialHistory(t, "none", "history").c)
	})
}

// keptMessage is a history entry, decoded.
type keptMessage struct {
	ID  string `json:"id"`
	Cid string `json:"cid"`
	chatPayload
}

// TestKeptJSONIsTheMessage checks the history entry spliced from a chat
// message's frame: valid JSON, the same id, fields and cid, whatever the
// text.
func TestKeptJSONIsTheMessage(t *testing.T) {
	for _, cid := range []string{"", "c-1", `a "quoted" \ cid`, "<b>&amp;"} {
		for _, msg := range []chatPayload{
			{Message: "hi", Name: "A"},
			{Message: "héllo <b>&\"quoted\"\n\t\\", Name: "Zoë"},
			{Message: "", Name: ""},
			{Message: strings.Repeat("👋", maxMessageChars), Name: strings.Repeat("n", maxNameChars)},
		} {
			p := newPost(msg, 1)
			p.id, p.cid = "e-7", cid
			if !strings.HasPrefix(string(p.frame.payload()), chatPrefix) {
				t.Fatalf("a chat frame begins %.50q, not %q", p.frame.payload(), chatPrefix)
			}
			var got keptMessage
			if err := json.Unmarshal(keptJSON(p), &got); err != nil || got.ID != "e-7" || got.Cid != cid || got.chatPayload != msg {
				t.Errorf("%.60q with cid %q gave %+v, %v", msg.Message, cid, got, err)
			}
			// Kept as it goes out live: a replay and a live message agree byte for byte.
			kept, live := string(keptJSON(p)), string(p.withIDFrame().payload())
			if i := strings.LastIndex(kept, `,"cid":`); cid != "" && !strings.Contains(live, strings.TrimSuffix(kept[i:], "}")) {
				t.Errorf("cid %q kept as %s, sent live as %s", cid, kept, live)
			}
		}
	}
}

// tally is what a reader has received of n numbered messages sent with
// sendPaced: take counts them off, so that the sender never runs more than
// half a queue ahead; upTo reads on until a reader holds some number.
type tally struct {
	read func()
	got  []historyMsg
}

// take adds msgs to what was received.
func (tl *tally) take(msgs []historyMsg) {
	for range msgs {
		tl.read()
	}
	tl.got = append(tl.got, msgs...)
}

// upTo reads what r receives until the tally holds n messages; a frame
// that is neither a replay nor a chat message fails the test.
func (tl *tally) upTo(r historyReader, n int) {
	r.t.Helper()
	for len(tl.got) < n {
		action, msgs, raw := r.next()
		if action != "history" && action != "new_chat_message" {
			r.t.Fatalf("after %d messages: %s", len(tl.got), raw)
		}
		tl.take(msgs)
	}
}

// inOrder fails the test unless the tally holds messages 0 to n-1, once
// each, in order.
func (tl *tally) inOrder(t *testing.T, n int) {
	t.Helper()
	for i, m := range tl.got {
		if m.Message != fmt.Sprint(i) {
			t.Fatalf("message %d is %+v", i, m)
		}
	}
	if len(tl.got) != n {
		t.Fatalf("%d messages, want %d", len(tl.got), n)
	}
}
