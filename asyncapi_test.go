package main

// These tests keep static/asyncapi.json true: it must declare the actions
// the code routes, the limits the code enforces, and promise only replies
// the live server gives (asyncapi_server_test.go). (.ci/run checks it with
// the official parser too.)

import (
	"encoding/json"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

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
