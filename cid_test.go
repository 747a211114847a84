package main

// A client's own ids for the frames it sends (cid): echoed in what a frame
// causes, and a chat message sent again with the same one delivered once.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// chatWithCid is a chat message as a client sends it with a cid.
func chatWithCid(message, name, cid string) string {
	return `{"action":"new_chat_message","payload":{"message":"` + message + `","name":"` + name + `"},"cid":"` + cid + `"}`
}

// TestCidIsEchoed sends frames with a cid and checks that every answer the
// frame causes carries it, and that an invalid cid is an error of its own.
func TestCidIsEchoed(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"pong", `{"action":"ping","cid":"p1"}`, `{"action":"pong","payload":null,"cid":"p1"}`},
		{"said, without history", chatWithCid("hi", "A", "c1"), `{"action":"said","payload":{},"cid":"c1"}`},
		{"error", `{"action":"new_chat_message","payload":{"message":5,"name":"A"},"cid":"c2"}`,
			`{"action":"error","payload":[{"type":"string_type","loc":["new_chat_message","payload","message"],"msg":"Input should be a valid string"}],"cid":"c2"}`},
		{"unknown action", `{"cid":"c3","action":"shout"}`,
			`{"action":"error","payload":[{"type":"union_tag_invalid","loc":[],"msg":"Input tag 'shout' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping'"}],"cid":"c3"}`},
		{"cid not a string", `{"action":"ping","cid":7}`,
			`{"action":"error","payload":[{"type":"string_type","loc":["cid"],"msg":"Input should be a valid string"}]}`},
		{"cid empty", `{"action":"ping","cid":""}`,
			`{"action":"error","payload":[{"type":"string_too_short","loc":["cid"],"msg":"String should have at least 1 character"}]}`},
		{"cid too long", `{"action":"ping","cid":"` + strings.Repeat("x", 65) + `"}`,
			`{"action":"error","payload":[{"type":"string_too_long","loc":["cid"],"msg":"String should have at most 64 characters"}]}`},
		{"cid not printable ASCII", `{"action":"ping","cid":"é"}`,
			`{"action":"error","payload":[{"type":"string_pattern_mismatch","loc":["cid"],"msg":"String should match pattern '^[ -~]+$'"}]}`},
		{"payload and cid both wrong", `{"action":"ping","payload":1,"cid":""}`,
			`{"action":"error","payload":[{"type":"none_required","loc":["ping","payload"],"msg":"Input should be None"},{"type":"string_too_short","loc":["cid"],"msg":"String should have at least 1 character"}]}`},
		{"action and cid both wrong", `{"action":"shout","cid":5}`,
			`{"action":"error","payload":[{"type":"union_tag_invalid","loc":[],"msg":"Input tag 'shout' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping'"},{"type":"string_type","loc":["cid"],"msg":"Input should be a valid string"}]}`},
		{"no action, and a bad cid", `{"cid":""}`,
			`{"action":"error","payload":[{"type":"union_tag_not_found","loc":[],"msg":"Unable to extract tag using discriminator 'action'"},{"type":"string_too_short","loc":["cid"],"msg":"String should have at least 1 character"}]}`},
	}
	s := newTestServer(t, options{})
	c, other := s.dial(t, "cid"), s.dial(t, "cid")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sendText(t, c, tt.in)
			expectText(t, c, tt.want)
		})
	}
	expectText(t, other, chat("hi", "A")) // a plain member sees no cid
	expectQuiet(t, other)
}

// TestCidOnRateLimited floods past the rate: the refusals, made without
// decoding the frames, still carry each frame's cid, however it is placed.
func TestCidOnRateLimited(t *testing.T) {
	s := newTestServer(t, options{rate: 1})
	c := s.dial(t, "rate")
	frames := []struct{ in, cid string }{
		{`{"action":"ping","cid":"a"}`, "a"},
		{` { "payload" : {"x":[1,{"cid":"inner"}]} , "cid" : "b" , "action":"ping"}`, "b"},
		{`{"action":"ping","note":"a \"cid\": here","cid":"c"}`, "c"},
		{`{"action":"ping"}`, ""},
		{`{"action":"ping","cid":"with \" quote"}`, `with \" quote`},
	}
	for range 2 { // the burst
		sendText(t, c, `{"action":"ping"}`)
		expectText(t, c, pong)
	}
	for _, f := range frames {
		sendText(t, c, f.in)
		want := `{"action":"error","payload":[{"type":"rate_limited","loc":[],"msg":"Too many messages: at most 1 per second"}]`
		if f.cid != "" {
			want += `,"cid":"` + f.cid + `"`
		}
		expectText(t, c, want+"}")
	}
}

// TestPeekCid reads the cid of frames the way a refusal does, and agrees
// with a decode wherever it answers.
func TestPeekCid(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"cid":"x"}`, "x"},
		{`{"a":{"cid":"no"},"cid":"yes"}`, "yes"},
		{`{"a":["}",{"cid":"no"}],"b":"{\"cid\":\"no\"}","cid":"yes"}`, "yes"},
		{`{"a":1e5,"b":true,"c":null,"cid":"z"}`, "z"},
		{`[{"cid":"no"}]`, ""},
		{`{"cid":5}`, ""},
		{`{"cid":""}`, ""},
		{`{"cid":"x"`, "x"}, // a frame cut short is refused anyway
		{`{"cid":"\u0041\"b"}`, `A"b`},
		{`{"a":"unterminated`, ""},
		{``, ""},
		{`{"cid":"first","cid":"second"}`, "second"}, // the last, as in Python's json
		{`{"cid":"ok","cid":5}`, ""},
		{`{"\u0063id":"escaped"}`, "escaped"},
		{`{"action":"ping","cid":"` + strings.Repeat("a", maxCidBytes+1) + `"}`, ""},
	} {
		got := peekCid([]byte(tt.in))
		if got != tt.want {
			t.Errorf("peekCid(%s) = %q, want %q", tt.in, got, tt.want)
		}
		if json.Valid([]byte(tt.in)) {
			if msg, _ := decode([]byte(tt.in)); msg.Cid != got {
				t.Errorf("%s: peekCid says %q, decode %q", tt.in, got, msg.Cid)
			}
		}
	}
}

// TestCidSentAgainIsDeliveredOnce sends a chat message twice with one cid,
// as a client does after a drop that took the said frame with it: the
// room gets it once, and the second said repeats the first id. Another
// sender with the same cid, under another name, is another message.
func TestCidSentAgainIsDeliveredOnce(t *testing.T) {
	run := func(t *testing.T, a, b *testServer) {
		alice := a.dialHistory(t, "once", "history")
		alice.next()
		bob := b.dialHistory(t, "once", "history")
		bob.next()
		sendText(t, alice.c, chatWithCid("hello", "Alice", "m-1"))
		_, _, said := alice.next()
		_, msgs, raw := bob.next()
		if len(msgs) != 1 || !strings.Contains(raw, `"cid":"m-1"`) {
			t.Fatalf("bob got %s", raw)
		}
		id := msgs[0].ID
		if want := `{"action":"said","payload":{"id":"` + id + `"},"cid":"m-1"}`; said != want {
			t.Fatalf("said %s, want %s", said, want)
		}
		again := a.dialHistory(t, "once", "since="+id) // Alice, back after a drop
		again.next()
		sendText(t, again.c, chatWithCid("hello", "Alice", "m-1"))
		expectText(t, again.c, said)
		sendText(t, again.c, chatWithCid("hello", "Mallory", "m-1"))
		_, msgs, raw = bob.next()
		if len(msgs) != 1 || msgs[0].Name != "Mallory" {
			t.Fatalf("after the copy, bob got %s", raw)
		}
		expectQuiet(t, bob.c)
		_, kept, _ := b.dialHistory(t, "once", "history").next()
		if len(kept) != 2 {
			t.Fatalf("the history holds %+v", kept)
		}
	}
	t.Run("memory", func(t *testing.T) {
		s := newTestServer(t, options{history: defaultHistory})
		run(t, s, s)
	})
	t.Run("redis, across processes", func(t *testing.T) {
		r := startRedis(t, "")
		opts := options{history: defaultHistory, redis: r.url()}
		run(t, newTestServer(t, opts), newTestServer(t, opts))
	})
}

// TestCidWindow: a copy is known as long as the history keeps the first.
func TestCidWindow(t *testing.T) {
	const keep = 3
	s := newTestServer(t, options{history: keep})
	alice := s.dialHistory(t, "window", "history")
	alice.next()
	bob := s.dial(t, "window")
	for i := range keep + 1 {
		sendText(t, alice.c, chatWithCid(fmt.Sprint(i), "A", fmt.Sprint("c", i)))
		alice.next()
		expectText(t, bob, chat(fmt.Sprint(i), "A"))
	}
	sendText(t, alice.c, chatWithCid("1", "A", "c1")) // still kept: a copy
	alice.next()
	expectQuiet(t, bob)
	sendText(t, alice.c, chatWithCid("0", "A", "c0")) // trimmed: a new message
	alice.next()
	expectText(t, bob, chat("0", "A"))
}
