package main

// Presence across processes (rediswho.go): two servers on one real
// redis-server, their members' joins, leaves and typing, Redis going
// away, and what a stranger publishes on a presence channel. The frames'
// helpers are in presence_test.go.

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRedisPresence: two processes, one room: the presence frame lists
// both processes' names, joins, leaves and typing cross over, and a
// process that stops beating leaves the others' view within the TTL.
func TestRedisPresence(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a, b := newTestServer(t, options{redis: r.url()}), newTestServer(t, options{redis: r.url()})
	const ttl = 800 * time.Millisecond
	a.hub.broker.(*redisBroker).who.ttl = ttl
	b.hub.broker.(*redisBroker).who.ttl = ttl

	alice := dialURL(t, presenceURL(a, "room1", "Alice", ""), a.URL)
	expectText(t, alice, presenceJSON(1, "Alice"))
	bob := dialURL(t, presenceURL(b, "room1", "Bob", ""), b.URL)
	expectText(t, bob, presenceJSON(2, "Alice", "Bob"))
	expectText(t, alice, diffJSON([]string{"Bob"}, nil, 2))
	sendText(t, bob, `{"action":"typing"}`)
	expectText(t, alice, typingBob)
	closeClient(t, bob)
	expectText(t, alice, diffJSON(nil, []string{"Bob"}, 1))

	// Carol's process dies without a word: its beats stop.
	carol := dialURL(t, presenceURL(b, "room1", "Carol", ""), b.URL)
	expectText(t, carol, presenceJSON(2, "Alice", "Carol"))
	expectText(t, alice, diffJSON([]string{"Carol"}, nil, 2))
	killed := time.Now()
	b.hub.broker.(*redisBroker).close()
	expectText(t, alice, diffJSON(nil, []string{"Carol"}, 1))
	if since := time.Since(killed); since > ttl+ttl/4+presenceEvery {
		t.Errorf("Carol left %v after her process died, want within %v", since, ttl+ttl/4)
	}
	if names, _, _ := a.hub.broker.whoIsIn("room1"); !slices.Equal(names, []string{"Alice"}) {
		t.Errorf("whoIsIn: %q, want Alice alone", names)
	}
}

// TestRedisPresencePartial: while Redis is away, a process sees its own
// members alone, and says so; when it is back, the others come back.
func TestRedisPresencePartial(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a, b := newTestServer(t, options{redis: r.url()}), newTestServer(t, options{redis: r.url()})
	alice := dialURL(t, presenceURL(a, "room1", "Alice", ""), a.URL)
	expectText(t, alice, presenceJSON(1, "Alice"))
	dialURL(t, presenceURL(b, "room1", "Bob", ""), b.URL)
	expectText(t, alice, diffJSON([]string{"Bob"}, nil, 2))
	r.stop()
	expectText(t, alice, `{"action":"presence_diff","payload":{"joins":[],"leaves":["Bob"],"count":1,"partial":true}}`)
	dave := dialURL(t, presenceURL(a, "room1", "Dave", ""), a.URL)
	if got := recvText(t, dave); !strings.HasSuffix(got, `"partial":true}}`) {
		t.Fatalf("got %s, want a partial presence frame", got)
	}
	r.start()
	// Dave's join, Bob's return (Redis lost every key meanwhile) and the
	// end of partial come in one diff or more, in the order the two
	// processes' sessions come back: Bob's join may come while a's view is
	// still partial. Folded, the diffs end in the whole room, and no one
	// leaves on the way.
	view := map[string]bool{"Alice": true}
	for {
		got := recvText(t, alice)
		var d struct {
			Action  string
			Payload struct {
				Joins, Leaves []string
				Count         int
				Partial       bool
			}
		}
		if err := json.Unmarshal([]byte(got), &d); err != nil || d.Action != "presence_diff" || len(d.Payload.Leaves) > 0 {
			t.Fatalf("got %s, want diffs that bring Bob and Dave", got)
		}
		for _, name := range d.Payload.Joins {
			view[name] = true
		}
		if len(view) == 3 && view["Bob"] && view["Dave"] && d.Payload.Count == 3 && !d.Payload.Partial {
			return
		}
	}
}

// TestRedisPresenceSecondTab: a name's second connection on another
// process is no join, and closing the first no leave.
func TestRedisPresenceSecondTab(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a, b := newTestServer(t, options{redis: r.url()}), newTestServer(t, options{redis: r.url()})
	bob := dialURL(t, presenceURL(a, "room1", "Bob", ""), a.URL)
	expectText(t, bob, presenceJSON(1, "Bob"))
	first := dialURL(t, presenceURL(a, "room1", "Alice", ""), a.URL)
	expectText(t, bob, diffJSON([]string{"Alice"}, nil, 2))
	second := dialURL(t, presenceURL(b, "room1", "Alice", ""), b.URL)
	expectText(t, second, presenceJSON(3, "Alice", "Bob"))
	expectText(t, bob, diffJSON(nil, nil, 3))
	closeClient(t, first)
	expectText(t, bob, diffJSON(nil, nil, 2))
	closeClient(t, second)
	expectText(t, bob, diffJSON(nil, []string{"Alice"}, 1))
}

// TestRedisPresenceHostile: presence events on the channel that roomchat
// did not write are dropped and counted; the protocol's own are taken.
func TestRedisPresenceHostile(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a := newTestServer(t, options{redis: r.url()})
	alice := dialURL(t, presenceURL(a, "room1", "Alice", ""), a.URL)
	expectText(t, alice, presenceJSON(1, "Alice"))
	hostile := []string{
		"NOT-A-PROCESS 1 Eve",
		"abc 99999999999 Eve",
		"abc 1 " + strings.Repeat("x", maxNameChars+1),
		"abc 1 \xff",
		"abc = {not json}",
		`abc = {"Eve":-1}`,
		"abc t ",
		"abc",
	}
	for _, ev := range hostile {
		r.do(t, "PUBLISH", whoPrefix+"room1", ev)
	}
	a.waitHealth(t, func(h health) bool { return h.Layer.Rejected == int64(len(hostile)) })
	r.do(t, "PUBLISH", whoPrefix+"room1", "abc 1 Eve")
	expectText(t, alice, diffJSON([]string{"Eve"}, nil, 2)) // the first frame since: the rest did nothing
	r.do(t, "PUBLISH", whoPrefix+"room1", "abc t Eve")
	expectText(t, alice, `{"action":"typing","payload":{"name":"Eve"}}`)
}
