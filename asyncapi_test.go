package main

// These tests keep static/asyncapi.json true: it must declare the actions
// the code routes, the limits the code enforces, and promise only replies
// the live server gives. (.ci/run checks it with the official parser too.)

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/websocket"
)

// apiDoc is the AsyncAPI document as generic JSON, with a resolver for its
// local $refs.
type apiDoc map[string]any

func loadAPIDoc(t *testing.T) apiDoc {
	t.Helper()
	raw, err := static.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc apiDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s is not JSON: %v", schemaPath, err)
	}
	return doc
}

// at walks a path of keys from the top of the document.
func (d apiDoc) at(keys ...string) any { return d.get(map[string]any(d), keys...) }

// get walks a path of keys from v, following $refs on the way.
func (d apiDoc) get(v any, keys ...string) any {
	v = d.resolve(v)
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = d.resolve(m[k])
	}
	return v
}

func (d apiDoc) resolve(v any) any {
	for {
		m, ok := v.(map[string]any)
		ref, isRef := m["$ref"].(string)
		if !ok || !isRef {
			return v
		}
		v = map[string]any(d)
		for _, k := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			v = v.(map[string]any)[k]
		}
	}
}

// apiMessage is a message of the document, as the tests need it.
type apiMessage struct {
	action   string           // the "action" const of its payload
	schema   any              // its payload's schema
	examples []map[string]any // its examples
	causedBy map[string]any   // x-caused-by: example name -> frame that causes it
}

// example returns the example called name, or nil.
func (m apiMessage) example(name string) map[string]any {
	for _, ex := range m.examples {
		if ex["name"] == name {
			return ex
		}
	}
	return nil
}

func (d apiDoc) message(v any) apiMessage {
	m := d.get(v).(map[string]any)
	msg := apiMessage{action: d.get(m, "payload", "properties", "action", "const").(string), schema: m["payload"]}
	for _, ex := range m["examples"].([]any) {
		msg.examples = append(msg.examples, ex.(map[string]any))
	}
	msg.causedBy, _ = m["x-caused-by"].(map[string]any)
	return msg
}

// operations returns the document's operations by id.
func (d apiDoc) operations() map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, op := range d["operations"].(map[string]any) {
		out[id] = op.(map[string]any)
	}
	return out
}

// actionsOf lists the actions of an operation's (or reply's) messages.
func (d apiDoc) actionsOf(op map[string]any) []string {
	var out []string
	for _, m := range op["messages"].([]any) {
		out = append(out, d.message(m).action)
	}
	return out
}

func TestAsyncAPIDeclaresTheRoutedActions(t *testing.T) {
	doc := loadAPIDoc(t)
	received, sent := map[string]bool{}, map[string]bool{}
	for id, op := range doc.operations() {
		for _, a := range doc.actionsOf(op) {
			switch op["action"] {
			case "receive":
				received[a] = true
			case "send":
				sent[a] = true
			default:
				t.Errorf("operation %s: action %v is neither send nor receive", id, op["action"])
			}
		}
		if reply, ok := op["reply"].(map[string]any); ok {
			for _, a := range doc.actionsOf(reply) {
				sent[a] = true
			}
		}
	}
	routed := slices.Sorted(maps.Keys(actions))
	if got := slices.Sorted(maps.Keys(received)); !slices.Equal(got, routed) {
		t.Errorf("the document says the server receives %v; messages.go routes %v", got, routed)
	}
	// Besides what clients send, the server sends these itself: answers,
	// and history (history.go).
	serverOwn := []string{"error", "history", "history_gap", "pong", "presence", "presence_diff", "said"}
	for _, a := range serverOwn {
		if !sent[a] {
			t.Errorf("the document does not say the server sends %s", a)
		}
	}
	declared := slices.Sorted(maps.Keys(sent))
	declared = slices.Compact(slices.Sorted(slices.Values(append(declared, routed...))))
	if want := slices.Compact(slices.Sorted(slices.Values(append(routed, serverOwn...)))); !slices.Equal(declared, want) {
		t.Errorf("the document declares the actions %v; the code knows %v", declared, want)
	}
}

func TestAsyncAPIOperationMessagesPointIntoTheirChannel(t *testing.T) {
	doc := loadAPIDoc(t)
	for id, op := range doc.operations() {
		channel := op["channel"].(map[string]any)["$ref"].(string)
		all := op["messages"].([]any)
		if reply, ok := op["reply"].(map[string]any); ok {
			all = append(all, reply["messages"].([]any)...)
		}
		for _, m := range all {
			ref, _ := m.(map[string]any)["$ref"].(string)
			if !strings.HasPrefix(ref, channel+"/messages/") {
				t.Errorf("operation %s: message %q is not one of its channel's (%s)", id, ref, channel)
			}
		}
	}
}

func TestAsyncAPILimitsEqualTheConstants(t *testing.T) {
	doc := loadAPIDoc(t)
	chat := doc.at("components", "messages", "newChatMessage", "payload", "properties", "payload", "properties")
	room := doc.at("channels", "chatRoom", "parameters", "room")
	tests := []struct {
		name      string
		got, want any
	}{
		{"message maxLength", doc.get(chat, "message", "maxLength"), float64(maxMessageChars)},
		{"name maxLength", doc.get(chat, "name", "maxLength"), float64(maxNameChars)},
		{"room x-pattern", doc.get(room, "x-pattern"), roomPattern},
		{"x-max-frame-bytes", doc.at("channels", "chatRoom", "x-max-frame-bytes"), float64(maxMessageBytes)},
		// The bound TestHistoryBounds holds a history frame to.
		{"x-max-server-frame-bytes", doc.at("channels", "chatRoom", "x-max-server-frame-bytes"), float64(historyRoomBytes + 1024)},
		{"error types", doc.at("components", "schemas", "errorEntry", "properties", "type", "enum"), toAny(errorTypes)},
		{"the token's subprotocol header", doc.at("components", "securitySchemes", "subprotocolToken", "name"), "Sec-WebSocket-Protocol"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: the document says %v, the code %v", tt.name, tt.got, tt.want)
		}
	}
	if desc, _ := doc.at("components", "securitySchemes", "subprotocolToken", "description").(string); !strings.Contains(desc, `"`+tokenSubprotocol+`"`) {
		t.Errorf("subprotocolToken does not name the subprotocol %q", tokenSubprotocol)
	}
}

// TestAsyncAPICidIsTheCodes checks that every frame that may carry a cid
// declares it, alike, with the limits decodeCid enforces and the pattern
// its error quotes, and that the schema admits exactly what validCid does.
func TestAsyncAPICidIsTheCodes(t *testing.T) {
	doc := loadAPIDoc(t)
	var cid string
	errs := decodeCid(json.RawMessage(`"\u00e9"`), &cid)
	quoted := regexp.MustCompile(`'(.*)'`).FindStringSubmatch(errs[0].Msg)
	if quoted == nil {
		t.Fatalf("no pattern in %q", errs[0].Msg)
	}
	want := map[string]any{"type": "string", "minLength": float64(1), "maxLength": float64(maxCidBytes), "pattern": quoted[1]}

	// The frames a client sends, what they cause, and what carries a
	// sender's cid to a client that asked for history.
	for _, name := range []string{"NewChatMessage", "PingMessage", "PongMessage", "ErrorMessage", "SaidMessage", "KeptMessage"} {
		got, _ := doc.at("components", "schemas", name, "properties", "cid").(map[string]any)
		got = maps.Clone(got)
		delete(got, "description")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: cid is %v, want %v", name, got, want)
		}
	}

	pattern := regexp.MustCompile(quoted[1])
	for _, c := range []string{"", " ", "~", "a1", strings.Repeat("x", maxCidBytes), strings.Repeat("x", maxCidBytes+1), "é", "\x7f", "\t", "a\nb"} {
		schema := pattern.MatchString(c) && len(c) >= 1 && len(c) <= maxCidBytes // ASCII: bytes are characters
		if schema != validCid(c) {
			t.Errorf("cid %q: the schema admits it: %v; validCid: %v", c, schema, validCid(c))
		}
	}
}

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
			if actions[msg.action].optIn {
				continue // on a connection that asked for presence: TestAsyncAPIPresenceFramesMatchTheServer
			}
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

func TestAsyncAPINotRelayedIsTheCodes(t *testing.T) {
	doc := loadAPIDoc(t)
	ex := doc.message(doc.at("components", "messages", "error")).example("not relayed")
	if ex == nil {
		t.Fatal("no error example \"not relayed\"")
	}
	cid, _ := ex["payload"].(map[string]any)["cid"].(string)
	var want any
	if err := json.Unmarshal(errorFrame(cid, notRelayed).payload(), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ex["payload"], want) {
		t.Errorf("the document says %s\nthe code sends   %s", compact(t, ex["payload"]), compact(t, want))
	}
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

// TestAsyncAPIExamplesMatchTheirSchemas checks every example, and every
// frame x-caused-by names, against its message's payload schema: a reader
// who copies one gets a valid frame.
func TestAsyncAPIExamplesMatchTheirSchemas(t *testing.T) {
	doc := loadAPIDoc(t)
	for id, m := range doc.at("components", "messages").(map[string]any) {
		msg := doc.message(m)
		for _, ex := range msg.examples {
			if err := doc.check(msg.schema, ex["payload"], id); err != nil {
				t.Errorf("example %q: %v", ex["name"], err)
			}
		}
	}
	chat := doc.message(doc.at("components", "messages", "newChatMessage"))
	ping := doc.message(doc.at("components", "messages", "ping"))
	for id, m := range doc.at("components", "messages").(map[string]any) {
		for name, cause := range doc.message(m).causedBy {
			// The causes of errors are wrong on purpose; the others are
			// frames a client may send.
			if id == "error" {
				continue
			}
			schema := ping.schema
			if cause.(map[string]any)["action"] == chat.action {
				schema = chat.schema
			}
			if err := doc.check(schema, cause, "cause"); err != nil {
				t.Errorf("x-caused-by %s/%q: %v", id, name, err)
			}
		}
	}
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

// compact encodes a JSON value taken from the document as a frame.
func compact(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
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

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestAsyncAPIFitsChanxClientGenerator checks the shape Chanx's
// generate-client needs to turn the document into a typed Python client:
// a channel title that is a Python identifier (it names the package and the
// client class), and every message's payload a $ref to a schema with a
// title (it names the pydantic model). The generator's IncomingMessage
// union is what the server sends, replies included, OutgoingMessage what it
// receives.
//
// It also reads a server's or an operation's `security` in AsyncAPI 2's
// form, a map of scheme names to scopes, and refuses the whole document
// when it holds 3.0's scheme objects or references to them (Chanx 2.10,
// asyncapi/type_defs.py). So the token schemes are only described, in
// components.securitySchemes, which it reads as plain objects, and no
// server or operation lists them.
func TestAsyncAPIFitsChanxClientGenerator(t *testing.T) {
	doc := loadAPIDoc(t)
	for name, s := range doc["servers"].(map[string]any) {
		if sec, ok := s.(map[string]any)["security"]; ok {
			t.Errorf("server %s lists security %v, which Chanx's generator refuses", name, sec)
		}
	}
	for id, op := range doc.operations() {
		if sec, ok := op["security"]; ok {
			t.Errorf("operation %s lists security %v, which Chanx's generator refuses", id, sec)
		}
	}
	identifier := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	for name, ch := range doc["channels"].(map[string]any) {
		if title, _ := ch.(map[string]any)["title"].(string); !identifier.MatchString(title) {
			t.Errorf("channel %s: title %q is not a Python identifier", name, title)
		}
	}
	for name, m := range doc.at("components", "messages").(map[string]any) {
		ref, _ := m.(map[string]any)["payload"].(map[string]any)["$ref"].(string)
		title, _ := doc.get(m, "payload", "title").(string)
		if !strings.HasPrefix(ref, "#/components/schemas/") || !identifier.MatchString(title) {
			t.Errorf("message %s: payload is not a $ref to a titled schema (%q, %q)", name, ref, title)
		}
	}
	// A model per message, not per action: typing is one action with a
	// model each way.
	model := func(m any) string { title, _ := doc.get(m, "payload", "title").(string); return title }
	incoming, outgoing := map[string]bool{}, map[string]bool{}
	for _, op := range doc.operations() {
		side := outgoing // what the server receives, the client sends
		if op["action"] == "send" {
			side = incoming
		}
		for _, m := range op["messages"].([]any) {
			side[model(m)] = true
		}
		if reply, ok := op["reply"].(map[string]any); ok {
			for _, m := range reply["messages"].([]any) {
				incoming[model(m)] = true
			}
		}
	}
	wantIn := []string{"ErrorMessage", "HistoryGapMessage", "HistoryMessage", "NewChatMessage", "PongMessage",
		"PresenceDiffMessage", "PresenceMessage", "SaidMessage", "TypingNoticeMessage"}
	wantOut := []string{"NewChatMessage", "PingMessage", "TypingMessage"}
	if got := slices.Sorted(maps.Keys(incoming)); !slices.Equal(got, wantIn) {
		t.Errorf("IncomingMessage would be %v, want %v", got, wantIn)
	}
	if got := slices.Sorted(maps.Keys(outgoing)); !slices.Equal(got, wantOut) {
		t.Errorf("OutgoingMessage would be %v, want %v", got, wantOut)
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

// check validates v against the parts of JSON Schema the document uses:
// type, properties, required, const, enum, items, minItems, minLength,
// maxLength (in characters) and pattern.
func (d apiDoc) check(schema, v any, path string) error {
	sc, _ := d.resolve(schema).(map[string]any)
	if c, ok := sc["const"]; ok && !reflect.DeepEqual(c, v) {
		return fmt.Errorf("%s is %v, want %v", path, v, c)
	}
	if enum, ok := sc["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s is %v, not one of %v", path, v, enum)
	}
	switch sc["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not an object", path)
		}
		props, _ := sc["properties"].(map[string]any)
		required, _ := sc["required"].([]any)
		for _, k := range required {
			if _, ok := obj[k.(string)]; !ok {
				return fmt.Errorf("%s has no %s", path, k)
			}
		}
		for k, val := range obj {
			p, ok := props[k]
			if !ok {
				return fmt.Errorf("%s has %s, which the document does not know", path, k)
			}
			if err := d.check(p, val, path+"."+k); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s is not an array", path)
		}
		if least, ok := sc["minItems"].(float64); ok && len(arr) < int(least) {
			return fmt.Errorf("%s has %d items, fewer than %g", path, len(arr), least)
		}
		for i, item := range arr {
			if err := d.check(sc["items"], item, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s is not a string", path)
		}
		n := float64(utf8.RuneCountInString(str))
		if least, ok := sc["minLength"].(float64); ok && n < least {
			return fmt.Errorf("%s is %q, shorter than %g characters", path, str, least)
		}
		if most, ok := sc["maxLength"].(float64); ok && n > most {
			return fmt.Errorf("%s is %q, longer than %g characters", path, str, most)
		}
		if p, ok := sc["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s is %q, which does not match %s", path, str, p)
		}
	case "null":
		if v != nil {
			return fmt.Errorf("%s is %v, not null", path, v)
		}
	}
	return nil
}
