package main

// static/asyncapi.json against a live server: every example a client may
// send gets the answer the document promises, the history frames match
// their schemas, and the served document names the host it was asked on.

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/websocket"
)

// TestAsyncAPIExamplesAgainstServer sends every example a client may send to
// a live server, without history, and checks what the document promises:
// to the other member, the frame passed on if the server also sends that
// action; to the sender, its answer (answerTo), or nothing. Then it sends
// the frame each x-caused-by entry names and checks that its example comes
// back.
func TestAsyncAPIExamplesAgainstServer(t *testing.T) {
	doc := loadAPIDoc(t)
	s := newTestServer(t, options{})
	from, other := s.dial(t, "docs"), s.dial(t, "docs")

	sentByServer := map[string]bool{}
	for _, op := range doc.operations() {
		if op["action"] == "send" {
			for _, a := range doc.actionsOf(op) {
				sentByServer[a] = true
			}
		}
	}
	checked := 0
	for id, op := range doc.operations() {
		if op["action"] != "receive" {
			continue
		}
		for _, ref := range op["messages"].([]any) {
			msg := doc.message(ref)
			for _, ex := range msg.examples {
				t.Run(fmt.Sprintf("%s/%s", id, ex["name"]), func(t *testing.T) {
					frame := ex["payload"].(map[string]any)
					sendText(t, from, compact(t, frame))
					if sentByServer[msg.action] {
						expectJSON(t, other, passedOn(frame))
					} else {
						expectQuiet(t, other)
					}
					if answer := doc.answerTo(op, frame); answer != nil {
						expectJSON(t, from, answer)
					} else {
						expectQuiet(t, from)
					}
					checked++
				})
			}
		}
	}

	// A member alone in its room, so that a chat message that causes a
	// said reaches no one else.
	alone := s.dial(t, "docs-alone")
	for id, m := range doc.at("components", "messages").(map[string]any) {
		msg := doc.message(m)
		for name, cause := range msg.causedBy {
			t.Run(id+"/"+name, func(t *testing.T) {
				ex := msg.example(name)
				if ex == nil {
					t.Fatalf("x-caused-by names %q, which is no example of %s", name, id)
				}
				sendText(t, alone, compact(t, cause))
				expectJSON(t, alone, ex["payload"])
				checked++
			})
		}
		for _, ex := range msg.examples {
			name := ex["name"].(string)
			if _, ok := msg.causedBy[name]; msg.causedBy != nil && !ok && uncaused[id+"/"+name] == "" {
				t.Errorf("%s example %q has no x-caused-by entry", id, name)
			}
		}
	}
	if doc.message(doc.at("components", "messages", "error")).causedBy == nil {
		t.Error("the error message has no x-caused-by")
	}
	if checked < 10 {
		t.Errorf("only %d examples checked", checked)
	}
}

// uncaused are the examples, of messages with x-caused-by, that no frame
// causes on a server without history, and why.
var uncaused = map[string]string{
	"error/not relayed":    "a Redis fault causes it (redisfault_test.go); TestAsyncAPINotRelayedIsTheCodes compares it",
	"said/said with an id": "only a server with history gives ids, each once; TestAsyncAPIHistoryFramesMatchTheServer checks said frames against the schema",
}

// passedOn is the frame a member that did not ask for history receives
// when another sends frame: re-encoded from its action and payload alone,
// without the sender's cid.
func passedOn(frame map[string]any) map[string]any {
	return map[string]any{"action": frame["action"], "payload": frame["payload"]}
}

// answerTo is what the document promises the sender of frame, on a server
// without history: the example of the operation's reply whose x-caused-by
// frame has the same cid as frame, or like it none, matched as a client
// matches answers. nil: nothing comes back.
func (d apiDoc) answerTo(op, frame map[string]any) any {
	reply, ok := op["reply"].(map[string]any)
	if !ok {
		return nil
	}
	for _, ref := range reply["messages"].([]any) {
		msg := d.message(ref)
		for _, ex := range msg.examples {
			cause, ok := msg.causedBy[ex["name"].(string)].(map[string]any)
			if ok && cause["cid"] == frame["cid"] {
				return ex["payload"]
			}
		}
	}
	return nil
}

func TestSchemaCarriesTheRequestHost(t *testing.T) {
	plain := newTestServer(t, options{})
	secure := httptest.NewTLSServer(newMux(newHub(newMemoryBroker(0), newRateLimit(0), slog.New(slog.DiscardHandler)), options{}, nil))
	defer secure.Close()

	tests := []struct {
		name, url, host, wantHost, wantProtocol string
	}{
		{"the test server's own host", plain.URL, "", strings.TrimPrefix(plain.URL, "http://"), "ws"},
		{"a host named by the client", plain.URL, "chat.example.com:9000", "chat.example.com:9000", "ws"},
		{"over TLS", secure.URL, "", strings.TrimPrefix(secure.URL, "https://"), "wss"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tt.url+"/asyncapi/schema/", nil)
			if tt.host != "" {
				req.Host = tt.host
			}
			var served apiDoc
			doJSON(t, secure.Client(), req, &served)
			server := served.at("servers", "roomchat").(map[string]any)
			if server["host"] != tt.wantHost || server["protocol"] != tt.wantProtocol {
				t.Errorf("server is %v://%v, want %s://%s", server["protocol"], server["host"], tt.wantProtocol, tt.wantHost)
			}
			// Apart from the servers' host and protocol, it is the
			// embedded document: every other field of a server (its
			// description, security if it lists any) survives the
			// re-encoding, and so do the security schemes.
			embedded := loadAPIDoc(t)
			for name, s := range embedded["servers"].(map[string]any) {
				s.(map[string]any)["host"], s.(map[string]any)["protocol"] = tt.wantHost, tt.wantProtocol
				if !reflect.DeepEqual(served.at("servers", name), s) {
					t.Errorf("server %s is served as %v, want %v", name, served.at("servers", name), s)
				}
			}
			if !reflect.DeepEqual(served, embedded) {
				t.Error("the served document differs from static/asyncapi.json beyond its servers' host and protocol")
			}
			if served.at("components", "securitySchemes", "bearerToken") == nil {
				t.Error("the served document has no security scheme bearerToken")
			}
		})
	}
}

// expectJSON reads the next frame and compares it, as JSON, with want.
func expectJSON(t *testing.T, c *websocket.Conn, want any) {
	t.Helper()
	got := recvText(t, c)
	var v any
	if err := json.Unmarshal([]byte(got), &v); err != nil || !reflect.DeepEqual(v, want) {
		t.Fatalf("got  %s\nwant %s", got, compact(t, want))
	}
}

// TestAsyncAPIHistoryFramesMatchTheServer checks the frames a live server
// with history sends, with and without cids, against the document's
// schemas: every key the schema requires is there, nothing else is, and
// constants, enums, patterns and lengths hold.
func TestAsyncAPIHistoryFramesMatchTheServer(t *testing.T) {
	doc := loadAPIDoc(t)
	s := newTestServer(t, options{history: 3})
	alice := s.dialHistory(t, "docs", "history")
	alice.next()
	for i := range 5 {
		sendText(t, alice.c, withCid(chat(fmt.Sprint(i), "A"), fmt.Sprint("a", i)))
	}
	sendText(t, alice.c, chat("no cid", "A"))
	type frame struct{ schema, raw string }
	var frames []frame
	for range 6 {
		_, _, raw := alice.next()
		frames = append(frames, frame{"SaidMessage", raw})
	}
	bob := s.dialHistory(t, "docs", "since=nope-1")
	_, _, gap := bob.next()
	_, _, history := bob.next() // a3, a4 and "no cid"
	frames = append(frames, frame{"HistoryGapMessage", gap}, frame{"HistoryMessage", history})
	sendText(t, bob.c, withCid(chat("hi", "B"), "b1"))
	sendText(t, bob.c, chat("hi again", "B"))
	for range 2 {
		_, _, raw := alice.next()
		frames = append(frames, frame{"NewChatMessage", raw})
		_, _, raw = bob.next()
		frames = append(frames, frame{"SaidMessage", raw})
	}
	sendText(t, bob.c, `{"action":"ping","cid":"p1"}`)
	sendText(t, bob.c, `{"action":"shout","cid":"e1"}`)
	_, _, pong := bob.next()
	_, _, errFrame := bob.next()
	frames = append(frames, frame{"PongMessage", pong}, frame{"ErrorMessage", errFrame})

	for _, f := range frames {
		var v any
		if err := json.Unmarshal([]byte(f.raw), &v); err != nil {
			t.Fatal(err)
		}
		if err := doc.check(doc.at("components", "schemas", f.schema), v, f.schema); err != nil {
			t.Errorf("%s: %v", f.raw, err)
		}
	}
	for _, want := range []string{`"cid":"a4"`, `"cid":"b1"`, `"cid":"p1"`, `"cid":"e1"`} {
		if !slices.ContainsFunc(frames, func(f frame) bool { return strings.Contains(f.raw, want) }) {
			t.Errorf("no frame carried %s", want)
		}
	}
}

// withCid adds a top-level cid to a frame encoded by chat.
func withCid(frame, cid string) string {
	return strings.TrimSuffix(frame, "}") + `,"cid":` + compactString(cid) + "}"
}

func compactString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
