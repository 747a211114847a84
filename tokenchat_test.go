package main

import (
	"strings"
	"testing"
)

// TestTokenClientNeedsNoName: a connection with a token speaks under its
// token's name, so its chat messages need no name of their own; a name it
// gives is checked as any other and then replaced (docs/protocol.md,
// Tokens). Without a token the name stays required (protocol_test.go).
func TestTokenClientNeedsNoName(t *testing.T) {
	secret := []byte(strings.Repeat("s", minTokenSecretBytes))
	s := newTestServer(t, options{rate: defaultRate, secret: secret}) // no history: a said is {}
	mint := func(name string) string { return hourToken(t, secret, name, "room1") }
	listener := dialWithToken(t, s, "room1", mint("Bob"))
	alice := dialWithToken(t, s, "room1", mint("Alice"))
	tests := []struct {
		name, send, reply string
		heard             string // what the listener receives; "" for nothing
	}{
		{"no name", `{"action":"new_chat_message","payload":{"message":"hi"},"cid":"c1"}`,
			`{"action":"said","payload":{},"cid":"c1"}`, chat("hi", "Alice")},
		{"a name, replaced", `{"action":"new_chat_message","payload":{"message":"hey","name":"Mallory"},"cid":"c2"}`,
			`{"action":"said","payload":{},"cid":"c2"}`, chat("hey", "Alice")},
		{"a name that is not a string", `{"action":"new_chat_message","payload":{"message":"hi","name":5}}`,
			`{"action":"error","payload":[{"type":"string_type","loc":["new_chat_message","payload","name"],"msg":"Input should be a valid string"}]}`, ""},
		{"a name over the limit", `{"action":"new_chat_message","payload":{"message":"hi","name":"` + strings.Repeat("x", maxNameChars+1) + `"}}`,
			`{"action":"error","payload":[{"type":"string_too_long","loc":["new_chat_message","payload","name"],"msg":"String should have at most 100 characters"}]}`, ""},
		{"no message", `{"action":"new_chat_message","payload":{}}`,
			`{"action":"error","payload":[{"type":"missing","loc":["new_chat_message","payload","message"],"msg":"Field required"}]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sendText(t, alice, tt.send)
			expectText(t, alice, tt.reply)
			if tt.heard != "" {
				expectText(t, listener, tt.heard)
			}
			expectQuiet(t, listener)
		})
	}
}
