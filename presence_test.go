package main

// Presence (presence.go, rediswho.go) from outside: real sockets, exact
// frames, in one process and across two sharing a real redis-server.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// The frames of presence, as the server writes them.
func presenceJSON(count int, names ...string) string {
	members := make([]string, len(names))
	for i, n := range names {
		members[i] = fmt.Sprintf(`{"name":%q}`, n)
	}
	return fmt.Sprintf(`{"action":"presence","payload":{"members":[%s],"count":%d}}`, strings.Join(members, ","), count)
}

func diffJSON(joins, leaves []string, count int) string {
	return fmt.Sprintf(`{"action":"presence_diff","payload":{"joins":%s,"leaves":%s,"count":%d}}`, quoted(joins), quoted(leaves), count)
}

func quoted(names []string) string {
	b, _ := json.Marshal(append([]string{}, names...))
	return string(b)
}

const typingBob = `{"action":"typing","payload":{"name":"Bob"}}`

// presenceURL is room's URL asking for presence with name and more.
func presenceURL(s *testServer, room, name, more string) string {
	return s.wsURL(room) + "?presence&name=" + url.QueryEscape(name) + more
}

// TestPresenceFrames: the presence frame, joins, leaves and typing, frame
// for frame; a Chanx client hears none of it, and cannot send typing.
func TestPresenceFrames(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, options{rate: defaultRate})
	dave := s.dial(t, "room1") // no ?presence, no name: counted, not listed
	alice := dialURL(t, presenceURL(s, "room1", "Alice", ""), s.URL)
	expectText(t, alice, presenceJSON(2, "Alice"))
	bob := dialURL(t, presenceURL(s, "room1", "Bob", ""), s.URL)
	expectText(t, bob, presenceJSON(3, "Alice", "Bob"))
	expectText(t, alice, diffJSON([]string{"Bob"}, nil, 3))

	sendText(t, bob, `{"action":"typing","cid":"t1"}`)
	expectText(t, alice, typingBob)
	sendText(t, bob, `{"action":"typing"}`) // within 2 s: dropped, without a word
	expectQuiet(t, bob)
	expectQuiet(t, alice)

	sendText(t, dave, `{"action":"typing"}`)
	expectText(t, dave, `{"action":"error","payload":[{"type":"union_tag_invalid","loc":[],"msg":"Input tag 'typing' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping'"}]}`)
	sendText(t, alice, `{"action":"shout"}`)
	expectText(t, alice, `{"action":"error","payload":[{"type":"union_tag_invalid","loc":[],"msg":"Input tag 'shout' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping', 'typing'"}]}`)
	sendText(t, alice, `{"action":"typing","payload":{}}`)
	expectText(t, alice, `{"action":"error","payload":[{"type":"none_required","loc":["typing","payload"],"msg":"Input should be None"}]}`)

	nobody := dialURL(t, s.wsURL("room1")+"?presence", s.URL)
	// Within 250 ms of Bob's diff: what the others were told, then the diff.
	if got := recvText(t, nobody); got != presenceJSON(4, "Alice", "Bob") {
		if got != presenceJSON(3, "Alice", "Bob") {
			t.Fatalf("got %s, want the presence frame", got)
		}
		expectText(t, nobody, diffJSON(nil, nil, 4))
	}
	sendText(t, nobody, `{"action":"typing","cid":"n1"}`)
	expectText(t, nobody, `{"action":"error","payload":[{"type":"name_required","loc":["typing"],"msg":"Typing needs a name: connect with ?name=NAME"}],"cid":"n1"}`)

	closeClient(t, bob)
	for _, c := range []*websocket.Conn{alice, nobody} {
		got := recvText(t, c)
		for got == diffJSON(nil, nil, 4) { // the nameless joined in the same diff, or its own
			got = recvText(t, c)
		}
		if got != diffJSON(nil, []string{"Bob"}, 3) {
			t.Fatalf("got %s, want Bob's leave", got)
		}
	}
	expectQuiet(t, dave) // none of it reached the Chanx client
}

// TestPresenceSecondTab: a name's second connection is no join, and
// closing it no leave; only the count moves.
func TestPresenceSecondTab(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, options{})
	bob := dialURL(t, presenceURL(s, "room1", "Bob", ""), s.URL)
	expectText(t, bob, presenceJSON(1, "Bob"))
	alice := dialURL(t, presenceURL(s, "room1", "Alice", ""), s.URL)
	expectText(t, bob, diffJSON([]string{"Alice"}, nil, 2))
	tab := dialURL(t, s.wsURL("room1")+"?name=Alice", s.URL)
	expectText(t, bob, diffJSON(nil, nil, 3))
	closeClient(t, tab)
	expectText(t, bob, diffJSON(nil, nil, 2))
	closeClient(t, alice)
	expectText(t, bob, diffJSON(nil, []string{"Alice"}, 1))
}

// TestPresenceAfterHistory: the presence frame follows the history frame,
// before any live message.
func TestPresenceAfterHistory(t *testing.T) {
	s := newTestServer(t, options{history: 10})
	a := s.dial(t, "room1")
	sendText(t, a, chat("hi", "A"))
	expectQuiet(t, a)
	c := dialURL(t, presenceURL(s, "room1", "Carol", "&history"), s.URL)
	if got := recvText(t, c); !strings.HasPrefix(got, `{"action":"history","payload":`) {
		t.Fatalf("got %s, want the history frame", got)
	}
	expectText(t, c, presenceJSON(2, "Carol"))
}

// TestPresenceName: ?name follows a chat message's name rule, and a bad
// one is refused at the handshake; a token's name wins over ?name.
func TestPresenceName(t *testing.T) {
	s := newTestServer(t, options{})
	for _, tt := range []struct {
		query string
		want  int
	}{
		{"name=" + strings.Repeat("é", maxNameChars), http.StatusSwitchingProtocols},
		{"name=" + strings.Repeat("é", maxNameChars+1), http.StatusBadRequest},
		{"name=%FF", http.StatusBadRequest},
		{"presence&name=<b>x</b>", http.StatusSwitchingProtocols},
	} {
		if got := handshakeStatus(t, s.URL+"/ws/chat/room1/?"+tt.query, s.URL); got != tt.want {
			t.Errorf("?%.40s: %d, want %d", tt.query, got, tt.want)
		}
	}
	markup := dialURL(t, presenceURL(s, "room2", "<b>x</b>", ""), s.URL)
	expectText(t, markup, presenceJSON(1, "<b>x</b>")) // as it is: the page shows it as text
}

// TestPresenceCapHolds: ?presence opens no way around the per-address cap.
func TestPresenceCapHolds(t *testing.T) {
	s := newTestServer(t, options{perClient: 3})
	for i := range 3 {
		c := dialURL(t, presenceURL(s, "room1", fmt.Sprint("u", i), ""), s.URL)
		recvText(t, c)
	}
	if got := handshakeStatus(t, s.URL+"/ws/chat/room1/?presence&name=u9", s.URL); got != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", got)
	}
}

// TestPresenceStorm: 300 members joining at once, all asking for presence,
// are a handful of diffs to a member already there, which ends up knowing
// every name.
func TestPresenceStorm(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, options{})
	presenceStorm(t, s, s)
}

// TestRedisPresenceStorm: the same, the joins on two processes, the
// watcher on one.
func TestRedisPresenceStorm(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	presenceStorm(t, newTestServer(t, options{redis: r.url()}), newTestServer(t, options{redis: r.url()}))
}

// presenceStorm joins 300 members, alternately to a and b, and counts the
// diffs a watcher on a receives until it knows them all.
func presenceStorm(t *testing.T, a, b *testServer) {
	const n = 300
	w := dialURL(t, presenceURL(a, "storm", "Watcher", ""), a.URL)
	expectText(t, w, presenceJSON(1, "Watcher"))
	start := time.Now()
	for i := range n {
		s := []*testServer{a, b}[i%2]
		dialURL(t, presenceURL(s, "storm", fmt.Sprintf("m%03d", i), ""), s.URL)
	}
	elapsed := time.Since(start)
	names, diffs := map[string]bool{"Watcher": true}, 0
	for len(names) < n+1 {
		var f struct {
			Action  string
			Payload struct{ Joins, Leaves []string }
		}
		if err := json.Unmarshal([]byte(recvText(t, w)), &f); err != nil || f.Action != "presence_diff" {
			t.Fatalf("got %+v (%v), want presence_diff", f, err)
		}
		diffs++
		for _, j := range f.Payload.Joins {
			names[j] = true
		}
	}
	done := time.Since(start)
	if most := int(done/presenceEvery) + 2; diffs > most {
		t.Errorf("%d diffs in %v, want at most %d (one per %v)", diffs, done, most, presenceEvery)
	}
	t.Logf("%d joins in %v: %d diffs", n, elapsed, diffs)
}

// TestAsyncAPIPresenceFramesMatchTheServer checks the frames of presence,
// as a live server sends them, against the AsyncAPI document's schemas.
func TestAsyncAPIPresenceFramesMatchTheServer(t *testing.T) {
	doc := loadAPIDoc(t)
	s := newTestServer(t, options{})
	alice := dialURL(t, presenceURL(s, "docs", "Alice", ""), s.URL)
	frames := map[string]string{"PresenceMessage": recvText(t, alice)}
	bob := dialURL(t, presenceURL(s, "docs", "Bob", ""), s.URL)
	recvText(t, bob)
	frames["PresenceDiffMessage"] = recvText(t, alice)
	sendText(t, bob, `{"action":"typing","cid":"t1"}`)
	frames["TypingNoticeMessage"] = recvText(t, alice)
	for schema, raw := range frames {
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			t.Fatal(err)
		}
		if err := doc.check(doc.at("components", "schemas", schema), v, schema); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
	if err := doc.check(doc.at("components", "schemas", "TypingMessage"), map[string]any{"action": "typing", "cid": "t1"}, "TypingMessage"); err != nil {
		t.Error(err)
	}
}

// TestPresenceTypingFlood: a burst of typing frames is one forwarded, and
// the sender hears nothing of the rest.
func TestPresenceTypingFlood(t *testing.T) {
	s := newTestServer(t, options{rate: defaultRate})
	alice := dialURL(t, presenceURL(s, "room1", "Alice", ""), s.URL)
	recvText(t, alice)
	bob := dialURL(t, presenceURL(s, "room1", "Bob", ""), s.URL)
	recvText(t, bob)
	expectText(t, alice, diffJSON([]string{"Bob"}, nil, 2))
	for range 2*defaultRate - 1 { // the burst the rate allows, the ping after it included
		sendText(t, bob, `{"action":"typing"}`)
	}
	expectQuiet(t, bob)
	expectText(t, alice, typingBob)
	expectQuiet(t, alice)
}

// TestPresenceTokenName: with tokens, the token's name is the name, whatever
// ?name says.
func TestPresenceTokenName(t *testing.T) {
	secret := []byte(testSecret)
	s := newTestServer(t, options{secret: secret})
	tok := hourToken(t, secret, "Bob", "room1")
	cfg, err := websocket.NewConfig(presenceURL(s, "room1", "Mallory", ""), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header.Set("Authorization", "Bearer "+tok)
	c, err := cfg.DialContext(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectText(t, c, presenceJSON(1, "Bob"))
	sendText(t, c, `{"action":"typing"}`) // named, by its token
	expectQuiet(t, c)
}

// TestAPIRoomNames: GET /api/rooms/{room} lists the distinct names, in one
// process and across two.
func TestAPIRoomNames(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a, b := newAPIServer(t, options{redis: r.url()}), newAPIServer(t, options{redis: r.url()})
	alice := dialURL(t, presenceURL(a, "room1", "Alice", ""), a.URL)
	recvText(t, alice)
	dialURL(t, b.wsURL("room1")+"?name=Bob", b.URL)
	dialURL(t, b.wsURL("room1")+"?name=Alice", b.URL)
	a.dial(t, "room1")                                    // nameless: counted, not named
	for got := ""; !strings.Contains(got, `"count":4`); { // the diffs, one or more, of the three
		got = recvText(t, alice)
	}
	want := `{"complete":true,"members":4,"names":["Alice","Bob"],"room":"room1"}`
	if _, body := apiCall(t, a, "GET", "/api/rooms/room1", testAPIKey, "", nil); body != want+"\n" && body != want {
		t.Errorf("got %s, want %s", body, want)
	}
}

// TestPresenceListBound: the names of one frame stay within
// presenceListBytes: a presence frame lists those that fit and counts the
// rest, and a diff's names that do not fit come in the next.
func TestPresenceListBound(t *testing.T) {
	defer func(was int) { presenceListBytes = was }(presenceListBytes)
	presenceListBytes = 300
	s := newTestServer(t, options{})
	w := dialURL(t, presenceURL(s, "room1", "a", ""), s.URL)
	expectText(t, w, presenceJSON(1, "a"))
	long := func(i int) string { return fmt.Sprintf("n%02d", i) + strings.Repeat("x", 37) } // 43 bytes listed
	for i := range 12 {
		dialURL(t, s.wsURL("room1")+"?name="+long(i), s.URL)
	}
	type payload struct {
		Members []struct{ Name string }
		Joins   []string
		More    int
		Count   int
	}
	seen := map[string]bool{}
	for len(seen) < 12 {
		var f struct{ Payload payload }
		if err := json.Unmarshal([]byte(recvText(t, w)), &f); err != nil {
			t.Fatal(err)
		}
		if len(f.Payload.Joins) > 6 {
			t.Fatalf("a diff of %d joins: %q, want at most 6", len(f.Payload.Joins), f.Payload.Joins)
		}
		for _, j := range f.Payload.Joins {
			seen[j] = true
		}
	}
	n := dialURL(t, s.wsURL("room1")+"?presence", s.URL) // nameless: listed by no one
	var f struct{ Payload payload }
	if err := json.Unmarshal([]byte(recvText(t, n)), &f); err != nil {
		t.Fatal(err)
	}
	if got := len(f.Payload.Members); got != 6 || f.Payload.More != 7 || f.Payload.Members[0].Name != "a" {
		t.Errorf("presence frame lists %d (%+v), more %d; want a and 5 more listed, 7 counted", got, f.Payload.Members, f.Payload.More)
	}
}
