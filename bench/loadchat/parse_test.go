package main

import (
	"encoding/json"
	"testing"
)

// The fast parsers must take the frames the servers write, as they write
// them (these were captured from roomchat and from Centrifugo v6.9.1), and
// read them as encoding/json does; anything else they must leave to it.
func TestFastChat(t *testing.T) {
	for _, tc := range []struct {
		frame, msg, name string
		ok               bool
	}{
		{`{"action":"new_chat_message","payload":{"message":"1:2:3:xx","name":"c2"}}`, "1:2:3:xx", "c2", true},
		{`{"action":"new_chat_message","payload":{"message":"1:2:3:xx","name":"c2"},"id":"k3d9x2ab-42"}`, "1:2:3:xx", "c2", true},
		{`{"action":"new_chat_message","payload":{"message":"a\"b","name":"c2"}}`, "", "", false},
		{`{"action":"new_chat_message","payload":{"message":"m","name":"c2"},"id":"x"}}`, "", "", false},
		{`{"action":"new_chat_message","payload":{"message":"m","name":"c2"},"other":1}`, "", "", false},
		{`{"action":"new_chat_message","payload":{"name":"c2","message":"m"}}`, "", "", false},
		{`{"action":"said","payload":{"id":"k3d9x2ab-43"}}`, "", "", false},
	} {
		msg, name, ok := fastChat([]byte(tc.frame))
		if ok != tc.ok || msg != tc.msg || name != tc.name {
			t.Errorf("fastChat(%s) = %q, %q, %v; want %q, %q, %v", tc.frame, msg, name, ok, tc.msg, tc.name, tc.ok)
		}
		if !ok {
			continue
		}
		var f struct {
			Payload struct{ Message, Name string }
		}
		if err := json.Unmarshal([]byte(tc.frame), &f); err != nil || f.Payload.Message != msg || f.Payload.Name != name {
			t.Errorf("encoding/json reads %s as %+v (%v)", tc.frame, f.Payload, err)
		}
	}
}

func TestFastPush(t *testing.T) {
	const info = `"info":{"user":"","client":"cf507b82-f1a1-4987-bcfb-f49f19c016b7"}`
	for _, tc := range []struct {
		line, channel, msg, name string
		ok                       bool
	}{
		{`{"push":{"channel":"chat:r0","pub":{"data":{"message":"1:0:5:xx","name":"c0"},` + info + `,"offset":1,"epoch":"tnhqgTaB"}}}`, "chat:r0", "1:0:5:xx", "c0", true},
		{`{"push":{"channel":"chat:r7","pub":{"data":{"message":"m","name":"c70"},` + info + `,"offset":2}}}`, "chat:r7", "m", "c70", true},
		{`{"push":{"channel":"chat:r0","pub":{"data":{"message":"a\\b","name":"c0"},"offset":3}}}`, "", "", "", false},
		{`{"push":{"channel":"chat:r0","pub":{"data":{"name":"c0","message":"m"},"offset":3}}}`, "", "", "", false},
		{`{"id":3,"publish":{}}`, "", "", "", false},
		{`{}`, "", "", "", false},
	} {
		ch, msg, name, ok := fastPush([]byte(tc.line))
		if ok != tc.ok || string(ch) != tc.channel || string(msg) != tc.msg || string(name) != tc.name {
			t.Errorf("fastPush(%s) = %q, %q, %q, %v; want %q, %q, %q, %v", tc.line, ch, msg, name, ok, tc.channel, tc.msg, tc.name, tc.ok)
		}
		if !ok {
			continue
		}
		var rep cfReply
		if err := json.Unmarshal([]byte(tc.line), &rep); err != nil || rep.Push == nil || rep.Push.Pub == nil ||
			rep.Push.Channel != string(ch) || rep.Push.Pub.Data.Message != string(msg) || rep.Push.Pub.Data.Name != string(name) {
			t.Errorf("encoding/json reads %s otherwise (%v)", tc.line, err)
		}
	}
}
