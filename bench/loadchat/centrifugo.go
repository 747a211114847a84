package main

// Centrifugo's client protocol (-proto centrifugo), in its JSON form, as
// Centrifugo v6 speaks it at /connection/websocket: a connect command, a
// subscribe to the room's channel, publish commands, and pushes back. One
// frame may hold several commands, replies and pushes, one JSON object a
// line. A publisher is a subscriber like any other, so the server sends it
// its own publication too: loadchat counts that copy as a delivery, and says
// so in its output (own_copy_delivered).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// centrifugoNamespace is the channel namespace of
// bench/peers/centrifugo/config.json, where clients may subscribe and
// publish and the history is kept: room r5 is channel chat:r5.
const centrifugoNamespace = "chat"

// joinWait bounds the connect and subscribe round trip of one client.
const joinWait = 10 * time.Second

// channelOf is c's room as a Centrifugo channel.
func channelOf(c *client) string { return centrifugoNamespace + ":r" + strconv.Itoa(c.room) }

// centrifugoProto speaks Centrifugo's JSON protocol.
type centrifugoProto struct{}

// cfReply is one line from the server: a reply to a command (its id, and
// an error or the command's result), a push, or, empty, a ping.
type cfReply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Push *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data struct{ Message, Name string } `json:"data"`
		} `json:"pub"`
		Disconnect *struct {
			Code int `json:"code"`
		} `json:"disconnect"`
	} `json:"push"`
	Connect   json.RawMessage `json:"connect"`
	Subscribe *struct {
		Recoverable bool `json:"recoverable"`
	} `json:"subscribe"`
	Publish json.RawMessage `json:"publish"`
}

func (centrifugoProto) url(c *client) string { return serverURL(c) }
func (centrifugoProto) readyFrame() []byte   { return nil } // the subscribe reply was the proof
func (centrifugoProto) ownCopy() bool        { return true }

// join connects and subscribes in one frame, asking for recovery and
// positioning (the counterpart of roomchat's ?history; the config forces
// both anyway), and waits for both replies. Its errors are names for
// error_detail.
func (centrifugoProto) join(c *client) error {
	hello := `{"id":1,"connect":{}}` + "\n" +
		`{"id":2,"subscribe":{"channel":"` + channelOf(c) + `","recoverable":true,"positioned":true}}`
	c.nextID = 3
	if err := c.write([]byte(hello)); err != nil {
		return errors.New("join_write")
	}
	c.ws.SetReadDeadline(time.Now().Add(joinWait))
	defer c.ws.SetReadDeadline(time.Time{})
	connected := false
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return fmt.Errorf("join_close_%d", ce.Code)
			}
			return errors.New("join_no_reply")
		}
		for rest := b; len(rest) > 0; {
			var line []byte
			line, rest, _ = bytes.Cut(rest, newline)
			var rep cfReply
			if json.Unmarshal(line, &rep) != nil {
				return errors.New("join_bad_frame")
			}
			switch {
			case rep.Error != nil:
				return fmt.Errorf("join_error_%d", rep.Error.Code)
			case rep.ID == 1 && rep.Connect != nil:
				connected = true
			case rep.ID == 2 && rep.Subscribe != nil && connected:
				if !rep.Subscribe.Recoverable {
					countErr("join_without_recovery") // the config is not the kit's
				}
				return nil
			case rep.ID == 0 && rep.Push == nil: // a ping, early
				c.write(pingReply)
			default:
				return errors.New("join_bad_frame")
			}
		}
	}
}

func (centrifugoProto) chatFrame(buf []byte, c *client, seq int) []byte {
	buf = append(buf, `{"id":`...)
	buf = strconv.AppendUint(buf, uint64(c.nextID), 10)
	c.nextID++
	buf = append(buf, `,"publish":{"channel":"`...)
	buf = append(buf, channelOf(c)...)
	buf = append(buf, `","data":{"message":"`...)
	buf = appendBody(buf, c, seq)
	buf = append(buf, `","name":"c`...)
	buf = strconv.AppendInt(buf, int64(c.id), 10)
	return append(buf, `"}}}`...)
}

var (
	newline    = []byte("\n")
	pingReply  = []byte("{}")
	pushPrefix = []byte(`{"push":{"channel":"`)
	pushData   = []byte(`","pub":{"data":{"message":"`)
)

// fastPush parses the compact encoding of a publication push, as Centrifugo
// writes it, without reflection; anything else returns ok=false and goes
// through encoding/json.
func fastPush(b []byte) (channel, msg, name []byte, ok bool) {
	rest, ok := bytes.CutPrefix(b, pushPrefix)
	if !ok {
		return nil, nil, nil, false
	}
	channel, rest, ok = bytes.Cut(rest, pushData)
	if !ok || bytes.IndexByte(channel, '"') >= 0 {
		return nil, nil, nil, false
	}
	msg, rest, ok = bytes.Cut(rest, chatMiddle)
	if !ok || bytes.IndexByte(msg, '\\') >= 0 {
		return nil, nil, nil, false
	}
	name, _, ok = bytes.Cut(rest, chatEnd)
	if !ok || bytes.IndexByte(name, '\\') >= 0 || bytes.IndexByte(name, '"') >= 0 {
		return nil, nil, nil, false
	}
	return channel, msg, name, true
}

func (centrifugoProto) read(c *client, r *run) {
	var buf bytes.Buffer
	own := []byte(channelOf(c))
	for {
		_, rd, err := c.ws.NextReader()
		if err != nil {
			r.connEnded(err)
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(rd); err != nil {
			continue
		}
		now := time.Now().UnixNano()
		for rest := buf.Bytes(); len(rest) > 0; {
			var line []byte
			line, rest, _ = bytes.Cut(rest, newline)
			if bytes.Equal(line, pingReply) { // the server's ping: answered, or it hangs up
				c.write(pingReply)
				continue
			}
			if r.frozen.Load() {
				continue
			}
			if ch, msg, name, ok := fastPush(line); ok {
				if !bytes.Equal(ch, own) {
					countErr("foreign_room")
					continue
				}
				c.deliver(r, string(msg), string(name), now)
				continue
			}
			c.slowLine(r, line, own, now)
		}
	}
}

// slowLine reads one line that fastPush did not take.
func (c *client) slowLine(r *run, line, own []byte, now int64) {
	var rep cfReply
	if json.Unmarshal(line, &rep) != nil {
		countErr("bad_frame")
		return
	}
	switch {
	case rep.Error != nil:
		countErr("error_reply")
		r.firstError.CompareAndSwap(nil, string(line))
	case rep.ID != 0 && rep.Publish != nil: // a publish acknowledged
	case rep.Push != nil && rep.Push.Pub != nil:
		if rep.Push.Channel != string(own) {
			countErr("foreign_room")
			return
		}
		c.deliver(r, rep.Push.Pub.Data.Message, rep.Push.Pub.Data.Name, now)
	case rep.Push != nil && rep.Push.Disconnect != nil:
		countErr(fmt.Sprintf("disconnect_%d", rep.Push.Disconnect.Code))
	default:
		countErr("bad_frame")
	}
}
