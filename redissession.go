package main

// This file is one session of the Redis channel layer (redis.go): two
// connections to Redis and the three loops that use them. One connection
// publishes; the other is in subscribe mode, where Redis allows nothing but
// (UN)SUBSCRIBE and PING. When either fails, the session ends, both are
// closed, and the layer dials a new session.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// redisSession is the pair of connections one run of the layer uses.
type redisSession struct {
	l         *redisLayer
	pub, sub  *redisConn
	scriptSHA string        // keepScript, loaded on pub; "" without shared history
	closing   chan struct{} // closed by close
	once      sync.Once
}

// dial opens both connections, each authenticated and answering PING.
func (l *redisLayer) dial() (*redisSession, error) {
	pub, err := l.dialConn()
	if err != nil {
		return nil, err
	}
	sub, err := l.dialConn()
	if err != nil {
		pub.Close()
		return nil, err
	}
	s := &redisSession{l: l, pub: pub, sub: sub, closing: make(chan struct{})}
	if l.keepCount > 0 {
		if s.scriptSHA, err = pub.loadScript(keepScript); err != nil {
			s.close()
			return nil, fmt.Errorf("redis at %s: %w", l.addr, err)
		}
	}
	return s, nil
}

// loadScript has Redis keep a script, and returns its SHA for EVALSHA.
func (c *redisConn) loadScript(script string) (string, error) {
	c.SetDeadline(time.Now().Add(redisDialTimeout))
	defer c.SetDeadline(time.Time{})
	writeCommand(c.w, []byte("SCRIPT"), []byte("LOAD"), []byte(script))
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	reply, err := readReply(c.r)
	sha, ok := reply.([]byte)
	if err == nil && !ok {
		err = fmt.Errorf("%w: SCRIPT LOAD answered %v", errProtocol, reply)
	}
	return string(sha), err
}

// redisConn is one connection to Redis with its buffers.
type redisConn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// dialConn connects, authenticates and pings within redisDialTimeout. Its
// errors name the address, never the password.
func (l *redisLayer) dialConn() (*redisConn, error) {
	d := &net.Dialer{Timeout: redisDialTimeout}
	var conn net.Conn
	var err error
	if l.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: l.tls}).Dial("tcp", l.addr)
	} else {
		conn, err = d.Dial("tcp", l.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("redis at %s: %w", l.addr, err)
	}
	c := &redisConn{Conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}
	if err := c.hello(l.user, l.password); err != nil {
		conn.Close()
		return nil, fmt.Errorf("redis at %s: %w", l.addr, err)
	}
	return c, nil
}

// hello sends AUTH (when there is a password) and PING, and checks the
// answers.
func (c *redisConn) hello(user, password string) error {
	c.SetDeadline(time.Now().Add(redisDialTimeout))
	defer c.SetDeadline(time.Time{})
	if password != "" {
		if user != "" {
			writeCommand(c.w, []byte("AUTH"), []byte(user), []byte(password))
		} else {
			writeCommand(c.w, []byte("AUTH"), []byte(password))
		}
	}
	writeCommand(c.w, []byte("PING"))
	if err := c.w.Flush(); err != nil {
		return err
	}
	if password != "" {
		if _, err := readReply(c.r); err != nil {
			return err
		}
	}
	reply, err := readReply(c.r)
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("%w: PING answered with %v", errProtocol, reply)
	}
	return nil
}

// serve runs the session's three loops until one of them fails or the
// layer is closed, and returns the first error.
func (s *redisSession) serve() error {
	errs := make(chan error, 3)
	for _, loop := range []func() error{s.publishLoop, s.subscribeLoop, s.receiveLoop} {
		go func() { errs <- loop() }()
	}
	err := <-errs
	s.close() // the other two end on their closed connections
	<-errs
	<-errs
	return err
}

// close ends the session; its loops return.
func (s *redisSession) close() {
	s.once.Do(func() {
		close(s.closing)
		s.pub.Close()
		s.sub.Close()
	})
}

// errSessionClosed ends a loop of a session that was closed.
var errSessionClosed = errors.New("closed")

// publishLoop sends queued frames with PUBLISH, as many as are waiting in
// one write (a pipeline), then reads as many replies.
func (s *redisSession) publishLoop() error {
	l, c := s.l, s.pub
	batch := make([]outgoing, 0, publishBatch)
	for {
		batch = batch[:0]
		select {
		case m := <-l.outbox:
			batch = append(batch, m)
		case <-s.closing:
			return errSessionClosed
		}
	more:
		for len(batch) < publishBatch {
			select {
			case m := <-l.outbox:
				batch = append(batch, m)
			default:
				break more
			}
		}
		c.SetDeadline(time.Now().Add(redisIOTimeout))
		for _, m := range batch {
			switch {
			case m.kept != nil:
				writeCommand(c.w, l.keepCommand(s.scriptSHA, m.room, m.kept.from, m.kept.msg)...)
			case m.load:
				writeCommand(c.w, []byte("XREVRANGE"), []byte(streamPrefix+m.room), []byte("+"), []byte("-"),
					[]byte("COUNT"), []byte(strconv.Itoa(l.keepCount)))
			default:
				writeCommand(c.w, []byte("PUBLISH"), []byte(channelPrefix+m.room), m.msg)
			}
		}
		err := c.w.Flush()
		done := 0
		for ; err == nil && done < len(batch); done++ {
			var reply any
			if !batch[done].load {
				_, err = readReply(c.r)
			} else if reply, err = l.readStream(c.r); err == nil {
				l.hub.loadStream(batch[done].room, l.parseStream(batch[done].room, reply))
				closeReady(batch[done].ready)
			}
		}
		if err != nil {
			for _, m := range batch[max(done-1, 0):] {
				l.undo(m)
			}
			return fmt.Errorf("publish: %w", err)
		}
		l.published.Add(int64(len(batch)))
		if len(l.outbox) == 0 && l.dropping.CompareAndSwap(true, false) {
			l.log.Info("redis publish queue drained", "dropped_total", l.dropped.Load())
		}
	}
}

// subscribeLoop writes the SUBSCRIBE and UNSUBSCRIBE commands the hub
// asked for, in order, and a PING when nothing has happened for a while.
func (s *redisSession) subscribeLoop() error {
	l, c := s.l, s.sub
	ping := time.NewTicker(redisPingEvery)
	defer ping.Stop()
	for {
		select {
		case <-l.wake:
		case <-ping.C:
			writeCommand(c.w, []byte("PING"))
		case <-s.closing:
			return errSessionClosed
		}
		l.mu.Lock()
		cmds := l.cmds
		l.cmds = nil
		l.mu.Unlock()
		for _, cmd := range cmds {
			writeCommand(c.w, []byte(cmd.verb), []byte(channelPrefix+cmd.room))
		}
		c.SetWriteDeadline(time.Now().Add(redisIOTimeout))
		if err := c.w.Flush(); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
}

// receiveLoop reads what the subscriber connection gets: confirmations of
// SUBSCRIBE, answers to PING, and the frames other processes published,
// which it hands to the hub. Its own frames, which Redis sends back too,
// it skips.
func (s *redisSession) receiveLoop() error {
	l, c := s.l, s.sub
	for {
		c.SetReadDeadline(time.Now().Add(3 * redisPingEvery))
		reply, err := readReply(c.r)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		kind, channel, data, err := pushOf(reply)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		room, ok := strings.CutPrefix(channel, channelPrefix)
		switch {
		case kind == "subscribe" && ok:
			l.confirm(room)
		case kind == "message" && ok && isKept(data):
			process, client, entry, _ := keptFrom(data)
			e, valid := parseEntry(entry)
			from, err := strconv.ParseUint(client, 10, 64)
			switch {
			case !valid || err != nil:
				l.reject(room)
			case l.keepCount > 0:
				l.received.Add(1)
				l.hub.fromStream(room, e, process == string(l.id), from)
			case process != string(l.id): // a process with shared history; this one keeps its own
				l.received.Add(1)
				l.hub.fromLayer(room, message{Action: "new_chat_message", Payload: e.msg})
			}
		case kind == "message" && ok:
			from, payload, _ := bytes.Cut(data, []byte(" "))
			if bytes.Equal(from, l.id) {
				continue
			}
			msg, ok := relayable(payload)
			if !ok {
				l.reject(room)
				continue
			}
			l.received.Add(1)
			l.hub.fromLayer(room, msg)
		}
	}
}

// pushOf reads a reply of subscribe mode: an array of a kind ("message",
// "subscribe", "unsubscribe", "pong"), a channel (for pong, its text) and,
// for the rest, a payload or a count.
func pushOf(reply any) (kind, channel string, data []byte, err error) {
	parts, _ := reply.([]any)
	if len(parts) < 2 {
		return "", "", nil, fmt.Errorf("%w: %v in subscribe mode", errProtocol, reply)
	}
	k, _ := parts[0].([]byte)
	ch, _ := parts[1].([]byte)
	if len(parts) > 2 {
		data, _ = parts[2].([]byte)
	}
	return string(k), string(ch), data, nil
}
