package main

// This file is the protocol of docs/protocol.md in Go: what a client may
// send, how it is validated, what goes wrong, and which handler each action
// reaches. Nothing here touches a socket; the read loop (client.go) hands
// every text message to dispatch, which decodes it and calls the handler
// that the actions table names.

import (
	"encoding/json"
	"errors"
	"fmt"
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

// The error types, named as pydantic names them (from errRateLimited on,
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
	errNotStored        = "not_stored"
	// errNameRequired, presence.go's, is the last.
)

// errorTypes is every error type above, in docs/protocol.md's order.
var errorTypes = []string{
	errJSONInvalid, errModelType, errUnionTagNotFound, errUnionTagInvalid, errMissing,
	errStringType, errStringTooShort, errStringTooLong, errStringPattern, errNoneRequired,
	errRateLimited, errNotRelayed, errNotStored, errNameRequired,
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
// handle acts on the result for the connection that sent it. An optIn
// action is one only on a connection that asked for presence: on any other
// it is an unknown action, as in Chanx.
type action struct {
	decode func(payload json.RawMessage, from sender) (any, []fieldError)
	handle func(c *client, msg message)
	optIn  bool
}

// actions routes each "action" value to its handler. Adding a row here is
// how the server learns a new message; the AsyncAPI test fails until
// static/asyncapi.json documents it too.
var actions = map[string]action{
	"new_chat_message": {decode: decodeChat, handle: handleChat},
	"ping":             {decode: decodeNoPayload("ping"), handle: handlePing},
	"typing":           {decode: decodeNoPayload("typing"), handle: handleTyping, optIn: true},
}

// dispatch is where the read loop (client.go) hands over one whole text
// message from c: text that is not UTF-8 ends the connection, a message
// over the rate is refused undecoded, and the rest goes to handle.
func dispatch(c *client, data []byte, meter *meter) {
	c.hub.stats.received.Add(1)
	logFrameIn(c, data)
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
	msg, errs := decodeFrom(data, sender{tokenNamed: c.token != nil, presence: c.presence})
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
		c.send(pongMessage)
		return
	}
	c.send(framed(outFrame{Action: "pong", Cid: msg.Cid}))
}

// pongMessage, the JSON pong, never changes, so it is encoded once, at start-up.
var pongMessage = encodeFrame("pong", nil)

// A sender is what decoding needs to know of the connection a frame came
// from: whether its token names it (a chat message then needs no name of
// its own: docs/protocol.md, Tokens) and whether it asked for presence (the
// optIn actions are actions only then).
type sender struct{ tokenNamed, presence bool }

// decode validates one text frame from a sender without a token or
// presence, as a Chanx client is.
func decode(data []byte) (message, []fieldError) { return decodeFrom(data, sender{}) }

// decodeFrom validates one text frame from a sender. It returns either a
// message whose action has a handler, or a non-empty list of errors in the
// order docs/protocol.md gives: the frame, then the action, then the
// payload's fields as the schema declares them, then the cid.
func decodeFrom(data []byte, from sender) (message, []fieldError) {
	if !json.Valid(data) { // Unmarshal then says where, with a *json.SyntaxError
		var syntax *json.SyntaxError
		if err := json.Unmarshal(data, new(any)); errors.As(err, &syntax) {
			return message{}, oneError(errJSONInvalid, nil, "Invalid JSON: "+describeSyntaxError(data, syntax))
		}
	}
	// A map, not a struct: encoding/json matches struct fields without
	// regard to case, and "Action" must not count as "action".
	top, ok := objectFields(data)
	if !ok {
		return message{}, oneError(errModelType, nil, notADict(envelopeModel))
	}
	var msg message
	var cidErrs []fieldError
	if raw, ok := top["cid"]; ok {
		cidErrs = decodeCid(raw, &msg.Cid)
	}

	raw, ok := top["action"]
	if !ok || isJSONObject(raw) || isJSONArray(raw) {
		return msg, append(oneError(errUnionTagNotFound, nil, "Unable to extract tag using discriminator 'action'"), cidErrs...)
	}
	name := pythonStr(raw)
	act, ok := actions[name]
	if !ok || act.optIn && !from.presence {
		return msg, append(oneError(errUnionTagInvalid, nil, fmt.Sprintf(
			"Input tag '%s' found using 'action' does not match any of the expected tags: %s", name, expectedTags[from.presence])), cidErrs...)
	}
	payload, errs := act.decode(top["payload"], from)
	if errs = append(errs, cidErrs...); errs != nil {
		return msg, errs
	}
	msg.Action, msg.Payload = name, payload
	return msg, nil
}

// decodeChat validates a new_chat_message payload: an object with the
// strings message and name, each within its limit. A sender named by its
// token may leave name out: postFrom puts the token's name in its place.
func decodeChat(payload json.RawMessage, from sender) (any, []fieldError) {
	loc := []string{"new_chat_message", "payload"}
	fields, errs := decodeObject(payload, loc, "ChatMessagePayload")
	if errs != nil {
		return nil, errs
	}
	var p chatPayload
	errs = decodeString(errs, fields, loc, "message", maxMessageChars, &p.Message)
	if _, given := fields["name"]; given || !from.tokenNamed {
		errs = decodeString(errs, fields, loc, "name", maxNameChars, &p.Name)
	}
	if errs != nil {
		return nil, errs
	}
	return p, nil
}

// errorFrame encodes an error reply to a frame with the cid cid ("" for
// none).
func errorFrame(cid string, errs ...fieldError) frame {
	return framed(outFrame{Action: "error", Payload: errs, Cid: cid})
}
