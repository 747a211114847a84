package main

// These tests keep static/asyncapi.json true: it must declare the actions
// the code routes and the limits the code enforces, its examples must match
// their schemas, and it must fit Chanx's client generator. The replies it
// promises are checked against a live server in asyncapi_server_test.go.
// (.ci/run checks it with the official parser too.)

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
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
