package main

// This file is the protocol of docs/protocol.md in Go: what a client may
// send, how it is validated, what goes wrong, and which handler each action
// reaches. Nothing here touches a socket; the read loop (client.go) hands
// every text message to decode, then calls the handler that the actions
// table names.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"unicode/utf8"
)

// Limits of a message.
const (
	// maxMessageBytes is the largest message a client may send, all its
	// fragments together; a frame that would pass it is refused at its
	// header with 1009 (frameread.go).
	maxMessageBytes = 64 << 10

	// The fields are counted in characters (runes), not bytes, as pydantic
	// counts them in Chanx.
	maxMessageChars = 4000
	maxNameChars    = 100

	// maxCidBytes bounds a client's id for a frame (cid): printable ASCII,
	// so bytes and characters are the same.
	maxCidBytes = 64
)

// chatPayload is the body of new_chat_message, the same in both directions:
// the server re-encodes it from these two fields, so unknown keys a client
// adds never reach the room.
type chatPayload struct {
	Message string `json:"message"`
	Name    string `json:"name"`
}

// The error types, named as pydantic names them (the last two are
// roomchat's own). static/asyncapi.json lists the same set.
const (
	errJSONInvalid      = "json_invalid"
	errModelType        = "model_type"
	errUnionTagNotFound = "union_tag_not_found"
	errUnionTagInvalid  = "union_tag_invalid"
	errMissing          = "missing"
	errStringType       = "string_type"
	errStringTooShort   = "string_too_short"
	errStringTooLong    = "string_too_long"
	errStringPattern    = "string_pattern_mismatch"
	errNoneRequired     = "none_required"
	errRateLimited      = "rate_limited"
	errNotRelayed       = "not_relayed"
)

// errorTypes is every error type above, in docs/protocol.md's order.
var errorTypes = []string{
	errJSONInvalid, errModelType, errUnionTagNotFound, errUnionTagInvalid, errMissing,
	errStringType, errStringTooShort, errStringTooLong, errStringPattern, errNoneRequired,
	errRateLimited, errNotRelayed,
}

// fieldError is one entry of an error frame. The names and wording follow
// pydantic's, because Chanx sends them that way and its clients branch on
// Type and Loc.
type fieldError struct {
	Type string   `json:"type"`
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
}

// message is a client frame that passed validation: its action is a key of
// the actions table and Payload is what that action's decode returned.
type message struct {
	Action  string
	Payload any
	Cid     string // the client's own id for the frame, echoed in what it causes; "" for none
}

// An action is one row of the routing table, the Go counterpart of a Chanx
// @ws_handler: decode validates the payload (nil when the key is absent) and
// handle acts on the result for the connection that sent it.
type action struct {
	decode func(payload json.RawMessage) (any, []fieldError)
	handle func(c *client, msg message)
}

// actions routes each "action" value to its handler. Adding a row here is
// how the server learns a new message; the AsyncAPI test fails until
// static/asyncapi.json documents it too.
var actions = map[string]action{
	"new_chat_message": {decode: decodeChat, handle: handleChat},
	"ping":             {decode: decodeNoPayload("ping"), handle: handlePing},
}

// dispatch is where the read loop (client.go) hands over one whole text
// message from c: text that is not UTF-8 ends the connection, a message
// over the rate is refused undecoded, and the rest goes to handle.
func dispatch(c *client, data []byte, meter *meter) {
	c.hub.stats.received.Add(1)
	if c.hub.log.Enabled(context.Background(), slog.LevelDebug) {
		c.hub.log.Debug("frame in", "conn", c.id, "data", string(data))
	}
	if !utf8.Valid(data) {
		c.close(closeInvalidPayload, "invalid UTF-8")
		return
	}
	if r := meter.message(len(data)); r != nil {
		c.hub.stats.rateLimited[r.limit].Add(1)
		c.send(r.answer(data))
		return
	}
	handle(c, data)
}

// handle decodes one text message from c and routes it to its action's
// handler, or tells the sender what was wrong with it.
func handle(c *client, data []byte) {
	msg, errs := decode(data)
	if errs != nil {
		c.send(errorFrame(msg.Cid, errs...))
		return
	}
	actions[msg.Action].handle(c, msg)
}

// handleChat sends the re-encoded message down the road every chat message
// takes: to the broker, which gives it its place in the room's stream and
// hands it to everyone in the room (hub.go:room.deliver).
func handleChat(c *client, msg message) {
	c.hub.broker.publish(c.room.name, postFrom(c, msg.Payload.(chatPayload), msg.Cid))
}

// handlePing answers the sender only. The chat page pings every 25 s, to
// see that the server still answers.
func handlePing(c *client, msg message) {
	if msg.Cid == "" {
		c.send(pongFrame)
		return
	}
	c.send(textFrame(encodeJSON(outFrame{Action: "pong", Cid: msg.Cid})))
}

// pongFrame never changes, so it is encoded once, at start-up.
var pongFrame = encodeFrame("pong", nil)

// decode validates one text frame. It returns either a message whose action
// has a handler, or a non-empty list of errors in the order docs/protocol.md
// gives: the frame, then the action, then the payload's fields as the schema
// declares them.
func decode(data []byte) (message, []fieldError) {
	// A map, not a struct: encoding/json matches struct fields without
	// regard to case, and "Action" must not count as "action".
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return message{}, oneError(errJSONInvalid, nil, "Invalid JSON: "+describeSyntaxError(data, syntax))
		}
		return message{}, oneError(errModelType, nil, notADict(envelopeModel))
	}
	if top == nil { // the frame was the literal null
		return message{}, oneError(errModelType, nil, notADict(envelopeModel))
	}
	var msg message
	var cidErrs []fieldError
	if raw, ok := top["cid"]; ok {
		cidErrs = decodeCid(raw, &msg.Cid)
	}

	raw, ok := top["action"]
	if !ok || isJSONObject(raw) || isJSONArray(raw) {
		return msg, oneError(errUnionTagNotFound, nil, "Unable to extract tag using discriminator 'action'")
	}
	name := pythonStr(raw)
	act, ok := actions[name]
	if !ok || !isJSONString(raw) {
		return msg, oneError(errUnionTagInvalid, nil, fmt.Sprintf(
			"Input tag '%s' found using 'action' does not match any of the expected tags: %s", name, expectedTags))
	}
	payload, errs := act.decode(top["payload"])
	if errs = append(errs, cidErrs...); errs != nil {
		return msg, errs
	}
	msg.Action, msg.Payload = name, payload
	return msg, nil
}

// decodeCid validates a frame's cid, a client's own id for it (1 to 64
// printable ASCII characters), into dst; it is left "" when invalid.
func decodeCid(raw json.RawMessage, dst *string) []fieldError {
	var cid string
	loc := []string{"cid"}
	switch {
	case !isJSONString(raw) || json.Unmarshal(raw, &cid) != nil:
		return oneError(errStringType, loc, "Input should be a valid string")
	case cid == "":
		return oneError(errStringTooShort, loc, "String should have at least 1 character")
	case len(cid) > maxCidBytes:
		return oneError(errStringTooLong, loc, fmt.Sprintf("String should have at most %d characters", maxCidBytes))
	case !validCid(cid):
		return oneError(errStringPattern, loc, "String should match pattern '^[ -~]+$'")
	}
	*dst = cid
	return nil
}

// validCid reports whether cid is 1 to maxCidBytes printable ASCII
// characters.
func validCid(cid string) bool {
	if cid == "" || len(cid) > maxCidBytes {
		return false
	}
	for i := range len(cid) {
		if cid[i] < ' ' || cid[i] > '~' {
			return false
		}
	}
	return true
}

// decodeChat validates a new_chat_message payload: an object with the
// strings message and name, each within its limit.
func decodeChat(payload json.RawMessage) (any, []fieldError) {
	loc := []string{"new_chat_message", "payload"}
	fields, errs := decodeObject(payload, loc, "ChatMessagePayload")
	if errs != nil {
		return nil, errs
	}
	var p chatPayload
	errs = decodeString(errs, fields, loc, "message", maxMessageChars, &p.Message)
	errs = decodeString(errs, fields, loc, "name", maxNameChars, &p.Name)
	if errs != nil {
		return nil, errs
	}
	return p, nil
}

// decodeObject validates a required payload that must be a JSON object, and
// returns its fields by key, for decodeString to check one by one. model is
// the payload's name in Chanx, which pydantic's message names.
func decodeObject(payload json.RawMessage, loc []string, model string) (map[string]json.RawMessage, []fieldError) {
	if payload == nil {
		return nil, oneError(errMissing, loc, "Field required")
	}
	var fields map[string]json.RawMessage
	if !isJSONObject(payload) || json.Unmarshal(payload, &fields) != nil {
		return nil, oneError(errModelType, loc, notADict(model))
	}
	return fields, nil
}

// decodeString validates one required string field of an object, appending
// at most one error for it.
func decodeString(errs []fieldError, fields map[string]json.RawMessage, parent []string, key string, maxChars int, dst *string) []fieldError {
	loc := append(slices.Clip(parent), key)
	raw, ok := fields[key]
	switch {
	case !ok:
		return append(errs, fieldError{errMissing, loc, "Field required"})
	case !isJSONString(raw) || json.Unmarshal(raw, dst) != nil:
		return append(errs, fieldError{errStringType, loc, "Input should be a valid string"})
	case utf8.RuneCountInString(*dst) > maxChars:
		return append(errs, fieldError{errStringTooLong, loc, fmt.Sprintf("String should have at most %d characters", maxChars)})
	}
	return errs
}

// decodeNoPayload validates an action that carries nothing: the payload may
// be absent or null, as pydantic's None allows.
func decodeNoPayload(name string) func(json.RawMessage) (any, []fieldError) {
	return func(payload json.RawMessage) (any, []fieldError) {
		if payload != nil && string(payload) != "null" {
			return nil, oneError(errNoneRequired, []string{name, "payload"}, "Input should be None")
		}
		return nil, nil
	}
}

// oneError is the common case of an error list with a single entry.
func oneError(typ string, loc []string, msg string) []fieldError {
	if loc == nil {
		loc = []string{} // [] in JSON, never null
	}
	return []fieldError{{Type: typ, Loc: loc, Msg: msg}}
}

// outFrame is the shape of every frame the server sends. Only a client that
// asked for history gets an id (history.go); cid is a client's own id for
// the frame it sent that this one answers, or, for a client that asked for
// history, for the message it carries.
type outFrame struct {
	Action  string `json:"action"`
	Payload any    `json:"payload"`
	ID      string `json:"id,omitempty"`
	Cid     string `json:"cid,omitempty"`
}

// encodeFrame encodes one outgoing message as a WebSocket frame, ready for
// any number of send queues.
func encodeFrame(action string, payload any) frame {
	return textFrame(encodeJSON(outFrame{Action: action, Payload: payload}))
}

// encodeJSON encodes one outgoing message. HTML escaping is off so that
// "<" travels as "<", as Chanx sends it; the chat page inserts text as text.
func encodeJSON(out outFrame) []byte {
	action := out.Action
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		// Only values this package built reach here; failing to encode
		// one is a bug, not a client's doing.
		panic(fmt.Sprintf("encode %s frame: %v", action, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// errorFrame encodes an error reply to a frame with the cid cid ("" for
// none).
func errorFrame(cid string, errs ...fieldError) frame {
	return textFrame(encodeJSON(outFrame{Action: "error", Payload: errs, Cid: cid}))
}
