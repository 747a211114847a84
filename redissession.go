package main

// This file is one session of the Redis broker (redis.go): one connection
// to Redis, speaking RESP3, and the two loops that use it. The writer sends
// commands as they come, never waiting for a reply first (a pipeline), so a
// slow Redis costs each message its round trip and no more; the reader
// takes what comes back in the order Redis wrote it: the replies, in the
// order of their commands, and, between them, the messages of the
// subscribed rooms (pushes). One connection for both means one order for
// both: a process sees its own message come back exactly where Redis
// placed it among everyone else's. When the connection fails, or a reply
// is late, the session ends and the broker dials a new one.

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// redisSession is one connection to Redis and its two loops.
type redisSession struct {
	b       *redisBroker
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	sha     map[string]string // each of redisScripts' SHA, for EVALSHA
	wake    chan struct{}     // tells the writer there are commands
	closing chan struct{}     // closed by close
	once    sync.Once

	mu      sync.Mutex
	queue   []command // to be written, in order
	waiting []command // written, their replies not yet read, oldest first
}

// command is one command for Redis, and what to do with its reply.
type command struct {
	args [][]byte
	// What it is, for the reader: a chat message to place (out.post != nil),
	// a room's stream to load into its mirror (load != ""), a question
	// someone waits for the answer to (reply != nil), or none of these
	// (SUBSCRIBE and UNSUBSCRIBE, whose answers are pushes, and the
	// heartbeat).
	out    *outgoing
	load   string
	reply  chan any
	budget replyBudget // for a reply larger than most; zero: the usual
	sent   time.Time   // when it was written, for redisReplyTimeout
}

// evalsha is the command that runs script, one of redisScripts, with keys
// and then args.
func (s *redisSession) evalsha(script string, keys []string, args ...string) command {
	c := command{args: make([][]byte, 0, 3+len(keys)+len(args))}
	c.args = append(c.args, []byte("EVALSHA"), []byte(s.sha[script]), []byte(strconv.Itoa(len(keys))))
	for _, a := range append(keys, args...) {
		c.args = append(c.args, []byte(a))
	}
	return c
}

// replied reports whether Redis answers the command with a reply of its
// own, in order, rather than with a push.
func (c command) replied() bool {
	verb := string(c.args[0])
	return verb != "SUBSCRIBE" && verb != "UNSUBSCRIBE"
}

// args turns strings into a command's arguments.
func args(words ...string) [][]byte {
	out := make([][]byte, len(words))
	for i, w := range words {
		out[i] = []byte(w)
	}
	return out
}

// subscribeCommand subscribes a room's channel.
func subscribeCommand(room string) command {
	return command{args: args("SUBSCRIBE", channelPrefix+room)}
}

// dial opens a connection, switches it to RESP3 (authenticating when
// there is a password) and loads the scripts, within redisDialTimeout. Its
// errors name the address, never the password.
func (b *redisBroker) dial() (*redisSession, error) {
	d := &net.Dialer{Timeout: redisDialTimeout}
	var conn net.Conn
	var err error
	if b.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: b.tls}).Dial("tcp", b.addr)
	} else {
		conn, err = d.Dial("tcp", b.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("redis at %s: %w", b.addr, err)
	}
	s := &redisSession{b: b, conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn),
		wake: make(chan struct{}, 1), closing: make(chan struct{})}
	if err := s.hello(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("redis at %s: %w", b.addr, err)
	}
	return s, nil
}

// hello sends HELLO 3 (with AUTH when there is a password) and loads the
// scripts, and checks the answers.
func (s *redisSession) hello() error {
	if err := s.conn.SetDeadline(time.Now().Add(redisDialTimeout)); err != nil {
		return err
	}
	// The loops set their own deadlines before they use the connection.
	defer func() { _ = s.conn.SetDeadline(time.Time{}) }()
	hello := args("HELLO", "3")
	if s.b.password != "" {
		hello = append(hello, args("AUTH", s.b.user, s.b.password)...)
		if s.b.user == "" {
			hello[3] = []byte("default") // the user a bare password is for
		}
	}
	writeCommand(s.w, hello...)
	for _, script := range redisScripts {
		writeCommand(s.w, args("SCRIPT", "LOAD", script)...)
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	if reply, err := readReply(s.r); err != nil {
		return err
	} else if _, ok := reply.([]any); !ok {
		return fmt.Errorf("%w: HELLO 3 answered %v (Redis 6 or later is needed)", errProtocol, reply)
	}
	s.sha = map[string]string{}
	for _, script := range redisScripts {
		reply, err := readReply(s.r)
		if err != nil {
			return err
		}
		b, ok := reply.([]byte)
		if !ok {
			return fmt.Errorf("%w: SCRIPT LOAD answered %v", errProtocol, reply)
		}
		s.sha[script] = string(b)
	}
	return nil
}

// redisScripts are the scripts every session loads.
var redisScripts = []string{publishScript, loadScript, heartbeatScript, presenceScript}

// send queues a command for the writer. It never waits.
func (s *redisSession) send(c command) {
	s.mu.Lock()
	s.queue = append(s.queue, c)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // already woken
	}
}

// serve runs the session's two loops until one of them fails or the broker
// is closed, and returns the first error.
func (s *redisSession) serve() error {
	errs := make(chan error, 2)
	go func() { errs <- s.writeLoop() }()
	go func() { errs <- s.readLoop() }()
	err := <-errs
	s.close() // the other ends on the closed connection
	<-errs
	return err
}

// close ends the session; its loops return.
func (s *redisSession) close() {
	s.once.Do(func() {
		close(s.closing)
		s.conn.Close()
	})
}

// errSessionClosed ends a loop of a session that was closed.
var errSessionClosed = errors.New("closed")

// writeLoop writes the queued commands, as many as are waiting in one
// write, without waiting for replies; and a heartbeat every
// redisPingEvery (redispresence.go), which is also a reply for the reader to
// wait for, so that a Redis that stops answering is found.
func (s *redisSession) writeLoop() error {
	ping := time.NewTicker(redisPingEvery)
	defer ping.Stop()
	for {
		select {
		case <-s.wake:
		case <-ping.C:
			s.send(s.b.heartbeat(s))
			continue
		case <-s.closing:
			return errSessionClosed
		}
		now := time.Now()
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		for i := range batch {
			batch[i].sent = now
			if batch[i].replied() {
				s.waiting = append(s.waiting, batch[i])
			}
		}
		s.mu.Unlock()
		// Before the first write: writeCommand flushes whenever its buffer
		// fills.
		if err := s.conn.SetWriteDeadline(now.Add(redisReplyTimeout)); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		messages := 0
		for _, c := range batch {
			writeCommand(s.w, c.args...)
			if c.out != nil {
				messages++
			}
		}
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		s.b.published.Add(int64(messages))
	}
}

// readLoop reads what Redis sends until the connection fails or a reply is
// later than redisReplyTimeout: pushes go to the broker as they come
// (receive), and each reply to the command it answers.
func (s *redisSession) readLoop() error {
	for {
		if err := s.conn.SetReadDeadline(s.due()); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		var reply any
		first, err := s.r.Peek(1)
		if err == nil {
			budget := replyBudget{maxReplyBytes, maxReplyElements}
			if first[0] != '>' { // a reply, whose command has been written
				budget = s.budget()
			}
			reply, err = readValue(s.r, 0, &budget)
		}
		var refused redisError
		switch {
		case errors.As(err, &refused):
			return fmt.Errorf("redis refused a command: %w", err)
		case err != nil:
			return fmt.Errorf("read: %w", err)
		}
		if p, ok := reply.(push); ok {
			s.pushed(p)
			continue
		}
		s.mu.Lock()
		if len(s.waiting) == 0 {
			s.mu.Unlock()
			return fmt.Errorf("%w: a reply to no command", errProtocol)
		}
		c := s.waiting[0]
		s.waiting[0] = command{}
		s.waiting = s.waiting[1:]
		s.mu.Unlock()
		if err := s.answered(c, reply); err != nil {
			return err
		}
	}
}

// due is the read deadline: the oldest unanswered command's reply is due
// redisReplyTimeout after it was written, and while none waits, the next
// ping's is.
func (s *redisSession) due() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiting) > 0 {
		return s.waiting[0].sent.Add(redisReplyTimeout)
	}
	return time.Now().Add(redisPingEvery + redisReplyTimeout)
}

// budget is what the next reply may take: the usual, unless its command
// says otherwise (a room's stream, every room's presence).
func (s *redisSession) budget() replyBudget {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiting) > 0 && s.waiting[0].budget != (replyBudget{}) {
		return s.waiting[0].budget
	}
	return replyBudget{maxReplyBytes, maxReplyElements}
}

// pushed handles a push: a room's message, or the confirmation of a
// SUBSCRIBE, after which the room's stream is loaded (or caught up).
func (s *redisSession) pushed(p push) {
	if len(p) < 3 {
		return
	}
	kind, _ := p[0].([]byte)
	channel, _ := p[1].([]byte)
	room, ok := cutPrefix(channel, channelPrefix)
	if !ok {
		return
	}
	switch string(kind) {
	case "message":
		data, _ := p[2].([]byte)
		s.b.receive(room, data, s.ownHead)
	case "subscribe":
		s.b.subscribed(room)
	}
}

// ownHead reports whether the oldest unanswered command is this process's
// message number seq, and returns it: Redis publishes a message to its own
// sender just before it replies to the script that placed it, so a push
// of this process's own message comes while its command is the oldest
// unanswered. That message needs no checking: this process checked it when
// its member sent it.
func (s *redisSession) ownHead(seq uint64) (*outgoing, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiting) == 0 || s.waiting[0].out == nil || s.waiting[0].out.seq != seq {
		return nil, false
	}
	return s.waiting[0].out, true
}

// answered acts on the reply to c.
func (s *redisSession) answered(c command, reply any) error {
	switch {
	case c.out != nil:
		return s.b.placed(c.out, reply)
	case c.load != "":
		s.b.loaded(c.load, reply)
	case c.reply != nil:
		c.reply <- reply // buffered: the asker may have given up
	}
	return nil
}

// unplaced is what the session had not placed when it ended: the chat
// messages written without a reply yet, then those not written, in order.
// It is called once the loops have ended.
func (s *redisSession) unplaced() []*outgoing {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*outgoing
	for _, c := range append(s.waiting, s.queue...) {
		if c.out != nil {
			out = append(out, c.out)
		}
	}
	s.waiting, s.queue = nil, nil
	return out
}

// cutPrefix is strings.CutPrefix for a channel name Redis sent.
func cutPrefix(b []byte, prefix string) (string, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return "", false
	}
	return string(b[len(prefix):]), true
}

// formatUint is strconv.FormatUint in base 10.
func formatUint(n uint64) string { return strconv.FormatUint(n, 10) }
