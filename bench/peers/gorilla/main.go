// Command peergorilla is the reference peer for the roomchat wire protocol
// (docs/protocol.md in the roomchat repository), written the way gorilla/websocket's
// examples/chat is: one read pump and one write pump goroutine per connection,
// a 256-slot send queue, and a non-blocking hand-off so a slow client never
// slows its room. Each broadcast is encoded once; the same []byte is queued to
// every receiver and written as one frame per message.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

const (
	writeWait = 10 * time.Second // longest a single frame write may block
	readWait  = 60 * time.Second // close 1001 after this long without a frame
	maxFrame  = 64 << 10         // bytes per client message
	queueLen  = 256              // per-client send queue
	maxMsg    = 4000             // characters in payload.message
	maxName   = 100              // characters in payload.name
)

var roomRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,99}$`)

type client struct {
	room string
	conn *websocket.Conn
	send chan []byte
	kick chan struct{} // closed once: the write pump sends code/text and hangs up
	once sync.Once
	code int
	text string
}

// hangup asks the write pump to send a close frame and drop the connection.
func (c *client) hangup(code int, text string) {
	c.once.Do(func() { c.code, c.text = code, text; close(c.kick) })
}

// enqueue never blocks: a full queue means the client cannot keep up (1008).
func (c *client) enqueue(b []byte) {
	select {
	case c.send <- b:
	default:
		c.hangup(websocket.ClosePolicyViolation, "send queue full")
	}
}

type hub struct {
	mu      sync.RWMutex
	rooms   map[string]map[*client]struct{}
	conns   int
	closing bool
	pumps   sync.WaitGroup
}

func (h *hub) join(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		c.hangup(websocket.CloseGoingAway, "server shutting down")
	}
	if h.rooms[c.room] == nil {
		h.rooms[c.room] = map[*client]struct{}{}
	}
	h.rooms[c.room][c] = struct{}{}
	h.conns++
}

func (h *hub) leave(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.rooms[c.room]; m != nil {
		delete(m, c)
		h.conns--
		if len(m) == 0 {
			delete(h.rooms, c.room) // an empty room is forgotten
		}
	}
}

// broadcast queues one encoded frame to every other connection in the room.
func (h *hub) broadcast(from *client, frame []byte) {
	h.mu.RLock()
	for c := range h.rooms[from.room] {
		if c != from {
			c.enqueue(frame)
		}
	}
	h.mu.RUnlock()
}

func (h *hub) shutdown(grace time.Duration) {
	h.mu.Lock()
	h.closing = true
	for _, m := range h.rooms {
		for c := range m {
			c.hangup(websocket.CloseGoingAway, "server shutting down")
		}
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.pumps.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
	}
}

// writePump is the only writer of data frames: one queued message per frame.
func (h *hub) writePump(c *client) {
	defer h.pumps.Done()
	defer c.conn.Close()
	for {
		var b []byte
		select {
		case <-c.kick:
		case b = <-c.send:
		}
		select {
		case <-c.kick: // a pending hang-up wins over queued frames
			c.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(c.code, c.text), time.Now().Add(time.Second))
			return
		default:
		}
		c.conn.SetWriteDeadline(time.Now().Add(writeWait))
		if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
			return
		}
	}
}

func (h *hub) readPump(c *client, rate float64) {
	defer h.leave(c)
	var lim *bucket
	if rate > 0 {
		lim = &bucket{rate: rate, tokens: max(rate, 1), last: time.Now()}
	}
	alive := func(string) error { return c.conn.SetReadDeadline(time.Now().Add(readWait)) }
	c.conn.SetPongHandler(alive)
	pong := c.conn.PingHandler() // the default one answers with a pong
	c.conn.SetPingHandler(func(s string) error { alive(s); return pong(s) })
	for {
		alive("")
		typ, r, err := c.conn.NextReader()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.hangup(websocket.CloseGoingAway, "idle timeout")
			} else {
				c.hangup(websocket.CloseNormalClosure, "")
			}
			return
		}
		if typ == websocket.BinaryMessage {
			c.hangup(websocket.CloseUnsupportedData, "binary frames are not supported")
			return
		}
		data, err := io.ReadAll(io.LimitReader(r, maxFrame+1))
		if err == nil && len(data) > maxFrame {
			_, err = io.Copy(io.Discard, r) // drop the rest; the connection stays open
			data = nil
		}
		if err != nil {
			c.hangup(websocket.CloseNormalClosure, "")
			return
		}
		switch {
		case data == nil:
			c.enqueue(errorFrame(verr{"frame_too_large", nil, fmt.Sprintf("Frame exceeds %d bytes", maxFrame)}))
		case !utf8.Valid(data):
			c.hangup(websocket.CloseInvalidFramePayloadData, "invalid UTF-8")
			return
		case lim != nil && !lim.allow():
			c.enqueue(errorFrame(verr{"rate_limited", nil, fmt.Sprintf("More than %g messages per second", rate)}))
		default:
			out, errs := handle(data)
			switch {
			case errs != nil:
				c.enqueue(errorFrame(errs...))
			case out == nil:
				c.enqueue(pongFrame)
			default:
				h.broadcast(c, out)
			}
		}
	}
}

// bucket is a token bucket holding at most one second of messages.
type bucket struct {
	rate, tokens float64
	last         time.Time
}

func (b *bucket) allow() bool {
	now := time.Now()
	b.tokens = min(max(b.rate, 1), b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

type verr struct {
	Type string   `json:"type"`
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
}

type chatMsg struct {
	Action  string `json:"action"`
	Payload struct {
		Message string `json:"message"`
		Name    string `json:"name"`
	} `json:"payload"`
}

var pongFrame = []byte(`{"action":"pong","payload":null}`)

func encode(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func errorFrame(errs ...verr) []byte {
	for i := range errs {
		if errs[i].Loc == nil {
			errs[i].Loc = []string{}
		}
	}
	return encode(map[string]any{"action": "error", "payload": errs})
}

func isType(raw json.RawMessage, first byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == first
}

// handle validates one client message. It returns the broadcast frame for a
// chat message, nil/nil for a ping, or the validation errors.
func handle(data []byte) ([]byte, []verr) {
	var top map[string]json.RawMessage
	if !json.Valid(data) {
		return nil, []verr{{"json_invalid", nil, "Invalid JSON"}}
	}
	if !isType(data, '{') || json.Unmarshal(data, &top) != nil {
		return nil, []verr{{"model_type", nil, "Input should be an object"}}
	}
	var action string
	if raw, ok := top["action"]; !ok || !isType(raw, '"') || json.Unmarshal(raw, &action) != nil {
		return nil, []verr{{"union_tag_not_found", nil, "Unable to extract tag using discriminator 'action'"}}
	}
	payload, hasPayload := top["payload"]
	switch action {
	case "ping":
		if hasPayload && string(bytes.TrimSpace(payload)) != "null" {
			return nil, []verr{{"none_required", []string{"ping", "payload"}, "Input should be None"}}
		}
		return nil, nil
	case "new_chat_message":
		loc := []string{"new_chat_message", "payload"}
		if !hasPayload {
			return nil, []verr{{"missing", loc, "Field required"}}
		}
		var fields map[string]json.RawMessage
		if !isType(payload, '{') || json.Unmarshal(payload, &fields) != nil {
			return nil, []verr{{"model_type", loc, "Input should be a valid dictionary"}}
		}
		var m chatMsg
		var errs []verr
		m.Action = action
		for _, f := range []struct {
			key   string
			limit int
			dst   *string
		}{{"message", maxMsg, &m.Payload.Message}, {"name", maxName, &m.Payload.Name}} {
			floc := append(loc[:2:2], f.key)
			raw, ok := fields[f.key]
			switch {
			case !ok:
				errs = append(errs, verr{"missing", floc, "Field required"})
			case !isType(raw, '"') || json.Unmarshal(raw, f.dst) != nil:
				errs = append(errs, verr{"string_type", floc, "Input should be a valid string"})
			case utf8.RuneCountInString(*f.dst) > f.limit:
				errs = append(errs, verr{"string_too_long", floc,
					fmt.Sprintf("String should have at most %d characters", f.limit)})
			}
		}
		if errs != nil {
			return nil, errs
		}
		return encode(&m), nil // re-encoded from the validated fields only
	}
	return nil, []verr{{"union_tag_invalid", nil, fmt.Sprintf(
		"Input tag '%s' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping'", action)}}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8001", "listen address")
	rate := flag.Float64("rate", 0, "messages/s per connection (0 = unlimited)")
	origins := flag.String("origins", "", "comma-separated extra allowed Origin values")
	flag.Parse()

	allowed := map[string]bool{}
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			allowed[strings.ToLower(o)] = true
		}
	}
	h := &hub{rooms: map[string]map[*client]struct{}{}}
	up := websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		CheckOrigin: func(r *http.Request) bool {
			o := r.Header.Get("Origin")
			if o == "" || allowed[strings.ToLower(o)] {
				return true
			}
			u, err := url.Parse(o)
			return err == nil && strings.EqualFold(u.Host, r.Host)
		},
	}
	handler := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			h.mu.RLock()
			rooms, conns := len(h.rooms), h.conns
			h.mu.RUnlock()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"status":"ok","rooms":%d,"connections":%d}`+"\n", rooms, conns)
			return
		}
		room, ok := strings.CutPrefix(r.URL.Path, "/ws/chat/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		room = strings.TrimSuffix(room, "/")
		if !roomRE.MatchString(room) {
			http.Error(w, "invalid room name: use 1-99 characters of A-Z a-z 0-9 . _ -", http.StatusBadRequest)
			return
		}
		conn, err := up.Upgrade(w, r, nil) // answers 403 on a foreign Origin
		if err != nil {
			return
		}
		c := &client{room: room, conn: conn, send: make(chan []byte, queueLen), kick: make(chan struct{})}
		h.pumps.Add(1)
		h.join(c)
		go h.writePump(c)
		go h.readPump(c, *rate)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(handler), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Printf("peergorilla listening on %s", ln.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Close() // stop accepting; hijacked WebSockets are closed below with 1001
	h.shutdown(2 * time.Second)
}
