package main

// The server tested from outside, as a client sees it: a real httptest.Server
// on loopback and x/net/websocket clients, with exact frames asserted. The
// helpers every test file shares are in testserver_test.go and
// rawconn_test.go; TestMain, at the end, lets the test binary stand in for
// the roomchat command.

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

func TestBroadcastReachesOthersInRoomOnly(t *testing.T) {
	s := newTestServer(t, options{})
	alice, bob, carol := s.dial(t, "room1"), s.dial(t, "room1"), s.dial(t, "room1")
	dave := s.dial(t, "room2")

	sendText(t, alice, `{"action":"new_chat_message","payload":{"message":"Hello everyone!","name":"Alice"}}`)
	want := `{"action":"new_chat_message","payload":{"message":"Hello everyone!","name":"Alice"}}`
	expectText(t, bob, want)
	expectText(t, carol, want)
	expectQuiet(t, alice) // no echo to the sender
	expectQuiet(t, dave)  // nothing crosses rooms
}

func TestBroadcastIsReencoded(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "extra keys dropped",
			in:   `{"action":"new_chat_message","payload":{"message":"hi","name":"A","admin":true},"x":1}`,
			want: `{"action":"new_chat_message","payload":{"message":"hi","name":"A"}}`,
		},
		{
			name: "unicode and markup round-trip as text",
			in:   `{"action":"new_chat_message","payload":{"message":"héllo 👋 <b>&amp;</b> \u00e9","name":"Zoë"}}`,
			want: `{"action":"new_chat_message","payload":{"message":"héllo 👋 <b>&amp;</b> é","name":"Zoë"}}`,
		},
		{
			name: "empty strings accepted",
			in:   `{"action":"new_chat_message","payload":{"message":"","name":""}}`,
			want: `{"action":"new_chat_message","payload":{"message":"","name":""}}`,
		},
		{
			name: "fields in any order, spaces ignored",
			in:   ` { "payload" : { "name" : "B", "message" : "x" }, "action" : "new_chat_message" } `,
			want: `{"action":"new_chat_message","payload":{"message":"x","name":"B"}}`,
		},
	}
	s := newTestServer(t, options{})
	from, to := s.dial(t, "lobby"), s.dial(t, "lobby")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sendText(t, from, tt.in)
			expectText(t, to, tt.want)
		})
	}
}

func TestPing(t *testing.T) {
	s := newTestServer(t, options{})
	a, b := s.dial(t, "lobby"), s.dial(t, "lobby")
	for _, in := range []string{`{"action":"ping"}`, `{"action":"ping","payload":null}`, `{"action":"ping","extra":1}`} {
		sendText(t, a, in)
		expectText(t, a, pong)
	}
	expectQuiet(t, b) // a pong goes to the sender only
}

// TestErrors sends every bad input of docs/protocol.md's error table and checks
// the exact error frame that comes back, and that the connection stays open.
func TestErrors(t *testing.T) {
	loc := `["new_chat_message","payload"]`
	field := func(name string) string { return `["new_chat_message","payload","` + name + `"]` }
	entry := func(typ, loc, msg string) string {
		return `{"type":"` + typ + `","loc":` + loc + `,"msg":"` + msg + `"}`
	}
	const (
		envelope   = "Input should be a valid dictionary or instance of Envelope"
		dict       = "Input should be a valid dictionary or instance of ChatMessagePayload"
		tags       = "' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping'"
		required   = "Field required"
		noTag      = "Unable to extract tag using discriminator 'action'"
		notString  = "Input should be a valid string"
		tooLongMsg = "String should have at most 4000 characters"
	)
	tests := []struct {
		name, in string
		want     []string // the entries of the error payload, in order
	}{
		{"not JSON", `hello`, []string{entry("json_invalid", `[]`, "Invalid JSON: invalid character 'h' looking for beginning of value at line 1 column 1")}},
		{"truncated JSON", "{\n\"action\":", []string{entry("json_invalid", `[]`, "Invalid JSON: unexpected end of JSON input at line 2 column 9")}},
		{"empty frame", ``, []string{entry("json_invalid", `[]`, "Invalid JSON: unexpected end of JSON input at line 1 column 1")}},
		{"JSON array", `[1,2]`, []string{entry("model_type", `[]`, envelope)}},
		{"JSON string", `"ping"`, []string{entry("model_type", `[]`, envelope)}},
		{"JSON null", `null`, []string{entry("model_type", `[]`, envelope)}},
		{"no action", `{"payload":{}}`, []string{entry("union_tag_not_found", `[]`, noTag)}},
		{"action a number", `{"action":5}`, []string{entry("union_tag_invalid", `[]`, "Input tag '5"+tags)}},
		{"action a float", `{"action":1e3}`, []string{entry("union_tag_invalid", `[]`, "Input tag '1000.0"+tags)}},
		{"action a small float", `{"action":-0.00001}`, []string{entry("union_tag_invalid", `[]`, "Input tag '-1e-05"+tags)}},
		{"action null", `{"action":null}`, []string{entry("union_tag_invalid", `[]`, "Input tag 'None"+tags)}},
		{"action false", `{"action":false}`, []string{entry("union_tag_invalid", `[]`, "Input tag 'False"+tags)}},
		{"action a list", `{"action":["ping"]}`, []string{entry("union_tag_not_found", `[]`, noTag)}},
		{"action key in another case", `{"Action":"ping"}`, []string{entry("union_tag_not_found", `[]`, noTag)}},
		{"unknown action", `{"action":"shout"}`, []string{entry("union_tag_invalid", `[]`,
			"Input tag 'shout' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping'")}},
		{"no payload", `{"action":"new_chat_message"}`, []string{entry("missing", loc, required)}},
		{"payload not an object", `{"action":"new_chat_message","payload":"hi"}`, []string{entry("model_type", loc, dict)}},
		{"payload null", `{"action":"new_chat_message","payload":null}`, []string{entry("model_type", loc, dict)}},
		{"name missing", `{"action":"new_chat_message","payload":{"message":"hi"}}`, []string{entry("missing", field("name"), required)}},
		{"message missing", `{"action":"new_chat_message","payload":{"name":"A"}}`, []string{entry("missing", field("message"), required)}},
		{"message key in another case", `{"action":"new_chat_message","payload":{"Message":"hi","name":"A"}}`, []string{entry("missing", field("message"), required)}},
		{"both missing, message first", `{"action":"new_chat_message","payload":{}}`,
			[]string{entry("missing", field("message"), required), entry("missing", field("name"), required)}},
		{"message not a string", `{"action":"new_chat_message","payload":{"message":5,"name":"a"}}`, []string{entry("string_type", field("message"), notString)}},
		{"name null", `{"action":"new_chat_message","payload":{"message":"m","name":null}}`, []string{entry("string_type", field("name"), notString)}},
		{"one wrong, one missing", `{"action":"new_chat_message","payload":{"message":["m"]}}`,
			[]string{entry("string_type", field("message"), notString), entry("missing", field("name"), required)}},
		{"message too long", chat(strings.Repeat("a", 4001), "a"), []string{entry("string_too_long", field("message"), tooLongMsg)}},
		{"name too long", chat("hi", strings.Repeat("n", 101)), []string{entry("string_too_long", field("name"), "String should have at most 100 characters")}},
		{"ping with an object", `{"action":"ping","payload":{}}`, []string{entry("none_required", `["ping","payload"]`, "Input should be None")}},
		{"ping with a number", `{"action":"ping","payload":0}`, []string{entry("none_required", `["ping","payload"]`, "Input should be None")}},
	}
	s := newTestServer(t, options{})
	c, other := s.dial(t, "errors"), s.dial(t, "errors")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sendText(t, c, tt.in)
			expectText(t, c, `{"action":"error","payload":[`+strings.Join(tt.want, ",")+`]}`)
		})
	}
	expectQuiet(t, c)     // still open after all of that
	expectQuiet(t, other) // and no error went to anyone else
}

// TestLengthLimitsCountCharacters checks the limits in characters: a
// 4,000-character message of 2-byte and 4-byte characters is accepted.
func TestLengthLimitsCountCharacters(t *testing.T) {
	tests := []struct {
		name          string
		message, user string
		ok            bool
	}{
		{"4000 two-byte chars", strings.Repeat("é", 4000), "a", true},
		{"4000 four-byte chars", strings.Repeat("👋", 4000), "a", true},
		{"4001 two-byte chars", strings.Repeat("é", 4001), "a", false},
		{"100 four-byte chars in name", "hi", strings.Repeat("👋", 100), true},
		{"101 two-byte chars in name", "hi", strings.Repeat("é", 101), false},
	}
	s := newTestServer(t, options{})
	from, to := s.dial(t, "limits"), s.dial(t, "limits")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sendText(t, from, chat(tt.message, tt.user))
			if tt.ok {
				expectText(t, to, chat(tt.message, tt.user))
				return
			}
			if got := recvText(t, from); !strings.Contains(got, `"type":"string_too_long"`) {
				t.Fatalf("got %.200s, want a string_too_long error", got)
			}
			expectQuiet(t, to)
		})
	}
}

func TestFrameOfExactlyTheLimitIsRead(t *testing.T) {
	s := newTestServer(t, options{})
	c := s.dial(t, "big")
	in := `{"action":"ping"}` + strings.Repeat(" ", maxMessageBytes-len(`{"action":"ping"}`))
	sendText(t, c, in)
	expectText(t, c, pong)
}

func TestRateLimit(t *testing.T) {
	s := newTestServer(t, options{rate: 5}) // bursts of 10
	c := s.dial(t, "rate")
	for range 12 {
		sendText(t, c, `{"action":"ping"}`)
	}
	limited := `{"action":"error","payload":[{"type":"rate_limited","loc":[],"msg":"Too many messages: at most 5 per second"}]}`
	for i := range 12 {
		want := pong
		if i >= 10 {
			want = limited
		}
		expectText(t, c, want)
	}
}

func TestCloseCodes(t *testing.T) {
	tests := []struct {
		name string
		send func(*websocket.Conn) error
		code int
	}{
		{"binary frame", func(c *websocket.Conn) error { return websocket.Message.Send(c, []byte(`{"action":"ping"}`)) }, closeUnsupportedData},
		{"invalid UTF-8", func(c *websocket.Conn) error {
			return websocket.Message.Send(c, "{\"action\":\"ping\",\"x\":\"\xff\xfe\"}")
		}, closeInvalidPayload},
		{"client closes", func(c *websocket.Conn) error { return c.WriteClose(closeNormal) }, closeNormal},
	}
	s := newTestServer(t, options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.dial(t, "close")
			if err := tt.send(c); err != nil {
				t.Fatal(err)
			}
			expectClose(t, c, tt.code)
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	s := newTestServer(t, options{})
	s.hub.idleTimeout = 200 * time.Millisecond
	c := s.dial(t, "idle")
	start := time.Now()
	expectClose(t, c, closeGoingAway)
	if d := time.Since(start); d < s.hub.idleTimeout {
		t.Errorf("closed after %v, before the idle timeout of %v", d, s.hub.idleTimeout)
	}
}

// TestMemberOnceConnected checks that a member hears a message sent the
// moment its handshake completes: the join happens before the 101.
func TestMemberOnceConnected(t *testing.T) {
	s := newTestServer(t, options{})
	from := s.dial(t, "join")
	for i := range 20 {
		to := s.dial(t, "join")
		sendText(t, from, chat(fmt.Sprint(i), "A"))
		expectText(t, to, chat(fmt.Sprint(i), "A"))
		closeClient(t, to)
	}
}

// TestFragmentedMessage sends one message in three frames, as
// gorilla/websocket clients do for anything over 4 KiB: the server joins
// them. A continuation with nothing to continue is a protocol error.
func TestFragmentedMessage(t *testing.T) {
	s := newTestServer(t, options{})
	to := s.dial(t, "frag")
	raw := dialRaw(t, s.URL+"/ws/chat/frag/")
	msg := chat(strings.Repeat("é", 3000), "F")
	third := len(msg) / 3
	raw.writeFrame(t, false, websocket.TextFrame, msg[:third])
	raw.writeFrame(t, true, websocket.PingFrame, "in between") // control frames may interleave
	raw.writeFrame(t, false, websocket.ContinuationFrame, msg[third:2*third])
	raw.writeFrame(t, true, websocket.ContinuationFrame, msg[2*third:])
	expectText(t, to, msg)

	if op, data := raw.readFrame(t); op != websocket.PongFrame || string(data) != "in between" {
		t.Fatalf("got frame %d %q, want the pong", op, data)
	}
	raw.writeFrame(t, true, websocket.ContinuationFrame, "stray")
	if op, data := raw.readFrame(t); op != websocket.CloseFrame || binary.BigEndian.Uint16(data) != closeProtocolError {
		t.Fatalf("got frame %d %q, want close 1002", op, data)
	}
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"action":"new_chat_message","payload":{"message":"Hello everyone!","name":"Alice"}}`,
		`{"action":"ping"}`, `{"action":"ping","payload":null}`, `{"action":"ping","payload":{}}`,
		`hello`, `[1]`, `null`, `{}`, `{"action":5}`, `{"action":"shout"}`,
		`{"action":"new_chat_message"}`, `{"action":"new_chat_message","payload":[]}`,
		`{"action":"new_chat_message","payload":{"message":1,"name":null}}`,
		`{"action":"new_chat_message","payload":{"message":"\ud83d","name":"\u00e9"}}`,
		"{\"action\":\"new_chat_message\",\"payload\":{\"message\":\"\xff\",\"name\":\"a\"}}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, errs := decode(data)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.Type == "" || e.Msg == "" {
					t.Fatalf("incomplete error %+v for %q", e, data)
				}
			}
			if msg != (message{}) {
				t.Fatalf("errors and a message for %q", data)
			}
			return
		}
		if _, ok := actions[msg.Action]; !ok {
			t.Fatalf("no errors but action %q has no handler, for %q", msg.Action, data)
		}
		if p, ok := msg.Payload.(chatPayload); ok {
			if n := len([]rune(p.Message)); n > maxMessageChars {
				t.Fatalf("accepted a message of %d characters", n)
			}
			if n := len([]rune(p.Name)); n > maxNameChars {
				t.Fatalf("accepted a name of %d characters", n)
			}
			// What is broadcast must decode back to the same message.
			back, errs := decode(outJSON(outFrame{Action: msg.Action, Payload: p}))
			if errs != nil || back != msg {
				t.Fatalf("re-encoded %q decodes to %+v, %v", data, back, errs)
			}
		}
	})
}

// ---- the test binary as the roomchat command ----

// mainArgsEnv makes this test binary run roomchat's own main, with the
// arguments it holds (one a line), instead of tests: runMain uses it to
// see what the command itself prints and how it exits.
const mainArgsEnv = "ROOMCHAT_MAIN_ARGS"

// parallelTests is how many tests that call t.Parallel run at once when
// -parallel is not given. They are the tests that wait: on browsers, child
// processes, Redis and timers, not on the CPU. The default, GOMAXPROCS,
// would run them two at a time on a two-core machine, the CPU idle.
const parallelTests = 16

// TestMain lets the test binary stand in for the roomchat command
// (mainArgsEnv) or for the benchmarks' child server (serverProcessEnv).
// Otherwise it runs the tests, parallelTests at once unless -parallel says.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(mainArgsEnv); ok {
		os.Args = append([]string{"roomchat"}, strings.Split(args, "\n")...)
		main()
		return
	}
	if os.Getenv(serverProcessEnv) != "" {
		runChildServer()
		return
	}
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		if err := flag.Set("test.parallel", strconv.Itoa(max(parallelTests, runtime.GOMAXPROCS(0)))); err != nil {
			panic(err) // the testing package renamed its flag
		}
	}
	code := m.Run()
	stopSharedChromium()
	os.Exit(code)
}

// runMain runs the roomchat command with args until it exits, within 10 s,
// and returns what it printed and its exit code.
func runMain(t testing.TB, args ...string) (output string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(args, "\n"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}
