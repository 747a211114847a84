package main

// The protocols loadchat speaks (-proto): what differs between the servers
// it drives is how a client reaches its room, what a chat message looks like
// on the wire, and how the frames that come back are read. Everything else,
// the pacing, the checks on what is delivered and the readings of the
// server's CPU and memory, is shared, so that the numbers mean the same for
// every server.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// protocol is one wire protocol, as one client speaks it.
type protocol interface {
	// url is where client c dials.
	url(c *client) string
	// join finishes c's entry to its room once the WebSocket is open: nothing
	// where the URL names the room, a handshake where commands do.
	join(c *client) error
	// readyFrame is sent to every client once all are in; the answer proves
	// the server reads that connection (nil: join proved it already).
	readyFrame() []byte
	// chatFrame appends the frame that sends chat message seq of c.
	chatFrame(buf []byte, c *client, seq int) []byte
	// read reads c's frames until the connection ends, delivering chat
	// messages to r.
	read(c *client, r *run)
	// ownCopy says whether the server sends a sender its own message, which
	// then counts as a delivery like any other.
	ownCopy() bool
}

// protocolNamed is the protocol for -proto.
func protocolNamed(name string) (protocol, error) {
	switch name {
	case "roomchat":
		return roomchatProto{}, nil
	case "centrifugo":
		return centrifugoProto{}, nil
	}
	return nil, fmt.Errorf("unknown -proto %q (roomchat or centrifugo)", name)
}

// serverURL is -url, or -url2 for every other client of a room when two
// servers share the rooms.
func serverURL(c *client) string {
	if *url2 != "" && c.idx%2 == 1 {
		return *url2
	}
	return *baseURL
}

// appendBody appends the text of a chat message, "<unixnano>:<sender>:<seq>:"
// padded with x to -size bytes, from which every receiver checks loss, order
// and latency.
func appendBody(buf []byte, c *client, seq int) []byte {
	n := len(buf)
	buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
	buf = append(buf, ':')
	buf = strconv.AppendInt(buf, int64(c.id), 10)
	buf = append(buf, ':')
	buf = strconv.AppendInt(buf, int64(seq), 10)
	buf = append(buf, ':')
	for len(buf)-n < *size {
		buf = append(buf, 'x')
	}
	return buf
}

// roomchatProto is docs/protocol.md: the room is in the URL, a chat message
// is {"action":"new_chat_message",...}, and the sender gets no copy back.
// With -history the client asks for the room's history (?history), and
// then gets a history frame on joining, an id with every message and a said
// frame for each of its own.
type roomchatProto struct{}

func (roomchatProto) url(c *client) string {
	u := serverURL(c)
	if !strings.HasSuffix(u, "/") {
		u += "/"
	}
	u += "r" + strconv.Itoa(c.room) + "/"
	if *history {
		u += "?history"
	}
	return u
}

func (roomchatProto) join(*client) error { return nil } // joined by the URL
func (roomchatProto) readyFrame() []byte { return []byte(`{"action":"ping"}`) }
func (roomchatProto) ownCopy() bool      { return false }

func (roomchatProto) chatFrame(buf []byte, c *client, seq int) []byte {
	buf = append(buf, `{"action":"new_chat_message","payload":{"message":"`...)
	buf = appendBody(buf, c, seq)
	buf = append(buf, `","name":"c`...)
	buf = strconv.AppendInt(buf, int64(c.id), 10)
	return append(buf, `"}}`...)
}

func (roomchatProto) read(c *client, r *run) {
	var buf bytes.Buffer
	var f struct {
		Action  string          `json:"action"`
		Payload json.RawMessage `json:"payload"`
	}
	var p struct{ Message, Name string }
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
		if r.frozen.Load() {
			continue
		}
		if msg, name, ok := fastChat(buf.Bytes()); ok {
			c.deliver(r, msg, name, now)
			continue
		}
		f.Action, f.Payload = "", nil
		if json.Unmarshal(buf.Bytes(), &f) != nil {
			countErr("bad_frame")
			continue
		}
		switch f.Action {
		case "pong":
			c.signalReady()
			continue
		case "error":
			countErr("error_frame")
			r.firstError.CompareAndSwap(nil, buf.String())
			continue
		case "history", "said": // -history: what was said before, our own ids
			if !*history {
				countErr("bad_frame")
			}
			if f.Action == "said" && !r.frozen.Load() {
				c.noteSaid(now)
			}
			continue
		case "new_chat_message":
		default:
			countErr("bad_frame")
			continue
		}
		p.Message, p.Name = "", ""
		if json.Unmarshal(f.Payload, &p) != nil {
			countErr("bad_frame")
			continue
		}
		c.deliver(r, p.Message, p.Name, now)
	}
}

var (
	chatPrefix = []byte(`{"action":"new_chat_message","payload":{"message":"`)
	chatMiddle = []byte(`","name":"`)
	chatEnd    = []byte(`"}`)
	chatID     = []byte(`,"id":"`)
)

// fastChat parses the canonical compact encoding of a chat frame, with or
// without its id, without reflection; anything else (other key order,
// spacing, escapes) returns ok=false and goes through encoding/json.
func fastChat(b []byte) (msg, name string, ok bool) {
	rest, ok := bytes.CutPrefix(b, chatPrefix)
	if !ok {
		return "", "", false
	}
	m, rest, ok := bytes.Cut(rest, chatMiddle)
	if !ok || bytes.IndexByte(m, '\\') >= 0 {
		return "", "", false
	}
	n, tail, ok := bytes.Cut(rest, chatEnd)
	if !ok || bytes.IndexByte(n, '\\') >= 0 || bytes.IndexByte(n, '"') >= 0 {
		return "", "", false
	}
	// What follows the payload: "}" alone, or its id: ,"id":"EPOCH-SEQ"}
	if string(tail) != "}" && !(bytes.HasPrefix(tail, chatID) && bytes.HasSuffix(tail, chatEnd) &&
		bytes.IndexByte(tail[len(chatID):len(tail)-len(chatEnd)], '"') < 0) {
		return "", "", false
	}
	return string(m), string(n), true
}

// dialError names a failed dial for error_detail, so that a server that
// refuses connections (an HTTP status, a reset, a closed port) is told apart
// from a generator that ran out of descriptors or local ports.
func dialError(err error, resp *http.Response) string {
	var ne net.Error
	switch {
	case resp != nil:
		return fmt.Sprintf("dial_http_%d", resp.StatusCode)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "dial_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "dial_reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "dial_closed" // the server hung up during the handshake
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "dial_no_local_port" // the ephemeral port range is used up
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "dial_fd_limit" // loadchat's own descriptor limit
	case errors.As(err, &ne) && ne.Timeout():
		return "dial_timeout"
	}
	return "dial_other"
}

// portsPerDestination is how many connections one local address can open to
// one server address: the size of the kernel's ephemeral port range.
func portsPerDestination() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, e1 := strconv.Atoi(f[0])
	hi, e2 := strconv.Atoi(f[1])
	if e1 != nil || e2 != nil {
		return 0
	}
	return hi - lo + 1
}
