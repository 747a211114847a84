package main

// Room history across processes (-redis): every process serves the same
// history with the same ids, and a member moved from one process to another
// (a resume, a deploy) loses nothing.

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/websocket"
)

// collect reads what a client that asked for history receives until it
// holds n messages, and returns them.
func (r historyReader) collect(n int) []historyMsg {
	r.t.Helper()
	var got []historyMsg
	for len(got) < n {
		action, msgs, raw := r.next()
		if action != "history" && action != "new_chat_message" {
			r.t.Fatalf("after %d messages: %s", len(got), raw)
		}
		got = append(got, msgs...)
	}
	return got
}

// TestHistorySharedThroughRedis: with -redis, every process serves the same
// history with the same ids, in one order, and a client resumes on any of
// them, even after its own process stopped.
func TestHistorySharedThroughRedis(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a := newTestServer(t, options{redis: r.url(), history: defaultHistory})
	b := newTestServer(t, options{redis: r.url(), history: defaultHistory})

	t.Run("one order everywhere", func(t *testing.T) {
		onA, onB := a.dialHistory(t, "order", "history"), b.dialHistory(t, "order", "history")
		onA.next()
		onB.next()
		alice, carol := a.dial(t, "order"), b.dial(t, "order")
		go func() {
			for i := range 50 {
				websocket.Message.Send(alice, chat(fmt.Sprint("a", i), "A"))
			}
		}()
		for i := range 50 {
			sendText(t, carol, chat(fmt.Sprint("c", i), "C"))
		}
		seenA, seenB := onA.collect(100), onB.collect(100)
		for i := range seenA {
			if seenA[i] != seenB[i] {
				t.Fatalf("message %d: %+v on a, %+v on b", i, seenA[i], seenB[i])
			}
		}
	})

	t.Run("resume on the other process", func(t *testing.T) {
		alice := a.dial(t, "move")
		bob := b.dialHistory(t, "move", "history")
		bob.next()
		for i := range 3 {
			sendText(t, alice, chat(fmt.Sprint(i), "A"))
		}
		last := bob.collect(3)[2].ID
		bob.c.Close()
		for i := 3; i < 6; i++ {
			sendText(t, alice, chat(fmt.Sprint(i), "A"))
		}
		a.waitKept(t, "move", 6)
		moved := a.dialHistory(t, "move", "since="+last)
		if _, msgs, raw := moved.next(); len(msgs) != 3 || msgs[0].Message != "3" {
			t.Fatalf("resumed on the other process with %s", raw)
		}
		// b has no one in the room now: it loads the stream when one comes.
		back := b.dialHistory(t, "move", "since="+last)
		if _, msgs, raw := back.next(); len(msgs) != 3 || msgs[0].Message != "3" {
			t.Fatalf("resumed on b, which had forgotten the room, with %s", raw)
		}
	})

	t.Run("a history of long messages loads whole", func(t *testing.T) {
		alice := a.dial(t, "long")
		long := strings.Repeat("👋", maxMessageChars) // 16 KB each, 1.6 MB in all
		for i := range defaultHistory {
			sendText(t, alice, chat(long, fmt.Sprint(i)))
		}
		a.waitKept(t, "long", defaultHistory)
		// b has no one in the room: it loads the stream from Redis.
		_, msgs, _ := b.dialHistory(t, "long", "history").next()
		if len(msgs) == 0 || msgs[len(msgs)-1].Name != fmt.Sprint(defaultHistory-1) {
			t.Fatalf("b loaded %d messages", len(msgs))
		}
	})

	t.Run("resumed ahead of this process, then Redis lost its data", func(t *testing.T) {
		alice := a.dial(t, "ahead")
		sendText(t, alice, chat("first", "A"))
		a.waitKept(t, "ahead", 1)
		_, msgs, _ := a.dialHistory(t, "ahead", "history").next()
		epoch, _, _ := strings.Cut(msgs[0].ID, "-")
		// An id ahead of what b has heard: as if another process had said
		// more. Bob is not sent again what comes up to it.
		bob := b.dialHistory(t, "ahead", "since="+epoch+"-50")
		if action, msgs, raw := bob.next(); action != "history" || len(msgs) != 0 {
			t.Fatalf("resumed ahead with %s", raw)
		}
		r.do(t, "FLUSHALL")
		// A new stream starts at 1: its messages are new to Bob.
		sendText(t, alice, chat("after the flush", "A"))
		if _, msgs, raw := bob.next(); len(msgs) != 1 || msgs[0].Message != "after the flush" || strings.HasPrefix(msgs[0].ID, epoch+"-") {
			t.Fatalf("after the flush, Bob got %s", raw)
		}
	})

	t.Run("Redis restarted without its data", func(t *testing.T) {
		alice := a.dial(t, "lost")
		bob := b.dialHistory(t, "lost", "history")
		bob.next()
		sendText(t, alice, chat("before", "A"))
		last := bob.collect(1)[0].ID
		a.waitKept(t, "lost", 1)
		local := a.dialHistory(t, "lost", "history")
		local.next()
		r.stop()
		a.waitHealth(t, func(h health) bool { return !h.Layer.Connected })
		b.waitHealth(t, func(h health) bool { return !h.Layer.Connected })
		// Chat goes on within a process, without ids: none is made up.
		sendText(t, alice, chat("while Redis is away", "A"))
		expectText(t, local.c, chat("while Redis is away", "A"))
		r.start()
		// What was said meanwhile reaches b late, in a new stream: Redis
		// lost the old one, which b may say (reset). It is not sent twice
		// here.
		action, msgs, raw := bob.next()
		if action == "history_gap" {
			_, msgs, raw = bob.next()
		}
		if len(msgs) != 1 || msgs[0].Message != "while Redis is away" || strings.HasPrefix(msgs[0].ID, strings.Split(last, "-")[0]+"-") {
			t.Fatalf("after Redis came back, b got %s", raw)
		}
		expectQuiet(t, local.c)
		resumed := b.dialHistory(t, "lost", "since="+last)
		expectText(t, resumed.c, `{"action":"history_gap","payload":{"reason":"reset"}}`)
	})
}

// TestHistoryDeployLosesNothing moves a member from a process that is shut
// down (SIGTERM does what shutdown does) to another, during 1,000
// broadcasts: it ends with all of them, once each, in order.
func TestHistoryDeployLosesNothing(t *testing.T) {
	t.Parallel()
	const total = 1000
	r := startRedis(t, "")
	a := newTestServer(t, options{redis: r.url(), history: total})
	b := newTestServer(t, options{redis: r.url(), history: total})
	sender := a.dial(t, "deploy")
	bob := b.dialHistory(t, "deploy", "history")
	bob.next()
	tl := tally{read: sendPaced(total, func(i int) error { return websocket.Message.Send(sender, chat(fmt.Sprint(i), "S")) })}
	tl.upTo(bob, total/3)
	go b.hub.shutdown(t.Context()) // the deploy: b goes away
	for {
		msgs, ok := bob.nextUntilClosed()
		if !ok {
			break
		}
		tl.take(msgs)
	}
	bob = a.dialHistory(t, "deploy", "since="+tl.got[len(tl.got)-1].ID)
	tl.upTo(bob, total)
	tl.inOrder(t, total)
}
