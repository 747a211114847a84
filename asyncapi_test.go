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
	examples []map[string]any // its examples
	causedBy map[string]any   // x-caused-by: example name -> frame that causes it
}

func (d apiDoc) message(v any) apiMessage {
	m := d.get(v).(map[string]any)
	msg := apiMessage{action: d.get(m, "payload", "properties", "action", "const").(string)}
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
	serverOwn := []string{"error", "history", "history_gap", "pong", "said"}
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
		{"error types", doc.at("components", "schemas", "errorEntry", "properties", "type", "enum"), toAny(errorTypes)},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: the document says %v, the code %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestAsyncAPIExamplesAgainstServer sends every example a client may send to
// a live server and checks the promised answer: the operation's reply to the
// sender, or, for a message the server also sends, the same frame to the
// other member; and for each error example, the error its cause gets.
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
					sendText(t, from, compact(t, ex["payload"]))
					switch reply, hasReply := op["reply"].(map[string]any); {
					case hasReply:
						want := doc.message(reply["messages"].([]any)[0]).examples[0]["payload"]
						expectJSON(t, from, want)
						expectQuiet(t, other)
					case sentByServer[msg.action]:
						expectJSON(t, other, ex["payload"])
						expectQuiet(t, from)
					default:
						t.Fatalf("the document promises nothing for %s", msg.action)
					}
					checked++
				})
			}
		}
	}
	errMsg := doc.message(doc.at("components", "messages", "error"))
	for _, ex := range errMsg.examples {
		name := ex["name"].(string)
		t.Run("error/"+name, func(t *testing.T) {
			cause, ok := errMsg.causedBy[name]
			if !ok {
				t.Fatalf("error example %q has no x-caused-by entry", name)
			}
			sendText(t, from, compact(t, cause))
			expectJSON(t, from, ex["payload"])
			checked++
		})
	}
	if checked < 5 {
		t.Errorf("only %d examples checked", checked)
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
			// Apart from the server entry, it is the embedded document.
			embedded := loadAPIDoc(t)
			delete(served, "servers")
			delete(embedded, "servers")
			if !reflect.DeepEqual(served, embedded) {
				t.Error("the served document differs from static/asyncapi.json beyond its servers")
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
// union is what the server sends, OutgoingMessage what it receives.
func TestAsyncAPIFitsChanxClientGenerator(t *testing.T) {
	doc := loadAPIDoc(t)
	identifier := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	for name, ch := range doc["channels"].(map[string]any) {
		if title, _ := ch.(map[string]any)["title"].(string); !identifier.MatchString(title) {
			t.Errorf("channel %s: title %q is not a Python identifier", name, title)
		}
	}
	models := map[string]string{} // action -> model
	for name, m := range doc.at("components", "messages").(map[string]any) {
		ref, _ := m.(map[string]any)["payload"].(map[string]any)["$ref"].(string)
		title, _ := doc.get(m, "payload", "title").(string)
		if !strings.HasPrefix(ref, "#/components/schemas/") || !identifier.MatchString(title) {
			t.Errorf("message %s: payload is not a $ref to a titled schema (%q, %q)", name, ref, title)
		}
		models[doc.message(m).action] = title
	}
	incoming, outgoing := map[string]bool{}, map[string]bool{}
	for _, op := range doc.operations() {
		side := outgoing // what the server receives, the client sends
		if op["action"] == "send" {
			side = incoming
		}
		for _, a := range doc.actionsOf(op) {
			side[models[a]] = true
		}
		if reply, ok := op["reply"].(map[string]any); ok {
			for _, a := range doc.actionsOf(reply) {
				incoming[models[a]] = true
			}
		}
	}
	wantIn := []string{"ErrorMessage", "HistoryGapMessage", "HistoryMessage", "NewChatMessage", "PongMessage", "SaidMessage"}
	wantOut := []string{"NewChatMessage", "PingMessage"}
	if got := slices.Sorted(maps.Keys(incoming)); !slices.Equal(got, wantIn) {
		t.Errorf("IncomingMessage would be %v, want %v", got, wantIn)
	}
	if got := slices.Sorted(maps.Keys(outgoing)); !slices.Equal(got, wantOut) {
		t.Errorf("OutgoingMessage would be %v, want %v", got, wantOut)
	}
}

// TestAsyncAPIHistoryFramesMatchTheServer checks the history frames a live
// server sends against the document's schemas: every key the schema
// requires is there, nothing else is, and constants and enums hold.
func TestAsyncAPIHistoryFramesMatchTheServer(t *testing.T) {
	doc := loadAPIDoc(t)
	s := newTestServer(t, options{history: 3})
	alice := s.dialHistory(t, "docs", "history")
	alice.next()
	for i := range 5 {
		sendText(t, alice.c, chat(fmt.Sprint(i), "A"))
	}
	frames := map[string]string{}
	for range 5 {
		_, _, frames["said"] = alice.next()
	}
	bob := s.dialHistory(t, "docs", "since=nope-1")
	_, _, frames["history_gap"] = bob.next()
	_, _, frames["history"] = bob.next()
	sendText(t, bob.c, chat("hi", "B"))
	_, _, frames["new_chat_message"] = alice.next()
	for name, schema := range map[string]string{
		"said": "SaidMessage", "history_gap": "HistoryGapMessage", "history": "HistoryMessage", "new_chat_message": "NewChatMessage",
	} {
		var v any
		if err := json.Unmarshal([]byte(frames[name]), &v); err != nil {
			t.Fatal(err)
		}
		if err := doc.check(doc.at("components", "schemas", schema), v, name); err != nil {
			t.Errorf("%s %s: %v", name, frames[name], err)
		}
	}
}

// check validates v against the parts of JSON Schema the document uses:
// type, properties, required, const, enum and items.
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
		for _, k := range sc["required"].([]any) {
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
		for i, item := range arr {
			if err := d.check(sc["items"], item, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s is not a string", path)
		}
	}
	return nil
}
