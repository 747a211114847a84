package main

// This file is how a connection ends, and the deadlines that make sure it
// does. Whoever ends a connection (the read loop, on the peer's close frame
// or a frame it refuses; dispatch, on text that is not UTF-8; send, on a
// full queue; the writer, when a write fails; shutdown) only asks: close
// records the code and wakes the writer, which sends the close frame after
// the batch it is writing. The read loop reads on, ignoring what comes,
// until the peer's own close frame or the closing deadline; then serve
// lingers, leaves the room and closes the socket. When no close frame can
// be sent (a write failed or timed out, or shutdown's grace ran out), the
// connection is cut off instead: both deadlines move to now, so whatever
// waits on the socket fails at once. Last in this file: the pinger, which
// finds the peers that are gone, and shutdown, which ends them all.
//
// Three fields record how far a close has got:
//
//	closeAsked  close was called; closeCode and closeWhy say why  set by any goroutine
//	closeSent   the writer is done with the close frame           closed by the writer
//	cutOff      no close frame will be tried; deadlines are now   set by cut
//
// and these are the socket's deadlines, who sets them and when:
//
//	deadline  set by         when                                          to
//	write     takeConn       as net/http hands the connection over         now + defaultWriteTimeout, for the 101
//	read      the read loop  before each frame, until closeAsked           now + idleTimeout
//	read      the read loop  if close was asked while it renewed           now + closeTimeout
//	write     the writer     before a batch, unless half of it is left     now + writeTimeout
//	both      the writer     before the close frame                        now + closeTimeout: for the write, and the peer's answer
//	both      cut            a failed write, or shutdown after its grace   now
//	both      attach         a connection cut before it had its socket     now
//	either    its renewal    a cut that raced the renewal                  now, again

import (
	"context"
	"io"
	"net"
	"time"
)

// Timeouts of one connection: every socket operation has an end.
const (
	// defaultWriteTimeout bounds every write, so that a client that does
	// not read, or a dead peer, cannot hold its writer: one that takes
	// longer is dropped as slow. A write gets at least half of it (see
	// renewWriteDeadline).
	defaultWriteTimeout = 10 * time.Second

	// defaultPingInterval is how often the server pings every client, as
	// Daphne does; a client's WebSocket library answers with a pong.
	defaultPingInterval = 20 * time.Second

	// defaultIdleTimeout closes a connection (1001) that has sent no frame
	// of any kind, pongs included, for this long: a ping's interval and
	// then 30 s for its answer, as Daphne allows. A client that answers
	// pings stays connected however quiet it is.
	defaultIdleTimeout = defaultPingInterval + 30*time.Second

	// closeTimeout is how long the closing handshake may take: writing our
	// close frame, then waiting for the peer's.
	closeTimeout = time.Second

	// lingerBytes is the most read and thrown away after our close frame,
	// so that the socket is not closed with unread bytes in it: the kernel
	// would answer with a reset, which can destroy the close frame on its
	// way. A flooder sends more, and gets the reset.
	lingerBytes = 64 << 10
)

// close asks the writer to end the connection with code: queued frames are
// dropped (a said among them: a client that sends again with the same cid
// hears it again), the close frame goes out after the batch being written
// now, and the read loop then ends. Only the first call counts; it reports whether
// this call was that one.
func (c *client) close(code int, why string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeCode != 0 {
		return false
	}
	c.closeCode, c.closeWhy = code, why
	c.closeAsked.Store(true)
	c.queue, c.pongAt = nil, 0
	c.startWriterLocked()
	return true
}

// dropSlow closes a client that does not read what it is sent (1008), and
// counts it.
func (c *client) dropSlow(why string) {
	if c.close(closePolicyViolation, why) {
		c.hub.stats.dropped.Add(1)
	}
}

// sendClose is the writer's last act: it sends the close frame, then gives
// the peer closeTimeout to answer with its own before the read loop gives
// up on it.
func (c *client) sendClose(code int, why string) {
	if c.cutOff.Load() {
		return // the deadlines have passed and must stay so
	}
	deadline := time.Now().Add(closeTimeout)
	if err := c.conn.SetWriteDeadline(deadline); err == nil {
		// A peer that is gone cannot be told; the read loop ends either way.
		_, _ = c.conn.Write(closeFrame(code, why).wire)
	}
	_ = c.conn.SetReadDeadline(deadline)
}

// cut cuts the connection off without a goodbye: both deadlines pass now,
// so a write stuck on a dead peer and the read loop fail at once.
// x/net/websocket's own Close would wait behind that stuck write instead.
func (c *client) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutOff.Store(true)
	if c.conn != nil { // else attach sets the deadlines
		// The connection is being dropped; if this fails, it already is.
		_ = c.conn.SetDeadline(time.Now())
	}
}

// linger ends a connection as RFC 6455 (section 7.1.1) asks: it sends FIN
// after the close frame, and reads until the peer closes too, within the
// closing deadline and lingerBytes.
func (c *client) linger(conn net.Conn) {
	if c.cutOff.Load() {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // if it fails, Close follows anyway
	}
	_, _ = io.CopyN(io.Discard, c.in, lingerBytes)
}

// renewReadDeadline gives the client another idleTimeout to send a frame,
// unless a close is under way, when the writer's shorter deadline stands.
func (c *client) renewReadDeadline() error {
	if c.closeAsked.Load() {
		return nil
	}
	if err := c.conn.SetReadDeadline(time.Now().Add(c.hub.idleTimeout)); err != nil {
		return err
	}
	// A close or a cut may have set its deadline just before we pushed it
	// back; set it again so that it is not lost.
	switch {
	case c.cutOff.Load():
		return c.conn.SetReadDeadline(time.Now())
	case c.closeAsked.Load():
		return c.conn.SetReadDeadline(time.Now().Add(closeTimeout))
	}
	return nil
}

// renewWriteDeadline makes sure the socket's write deadline lies between
// half of writeTimeout and all of it ahead, before a write. Setting a
// deadline updates a runtime timer, which costs more than the rest of a
// small batch, so one still more than half writeTimeout away is kept. The
// close frame's deadline is set after it (sendClose), so it stands.
func (c *client) renewWriteDeadline() error {
	now := time.Now()
	if c.writeBy.Sub(now) >= c.hub.writeTimeout/2 {
		return nil
	}
	c.writeBy = now.Add(c.hub.writeTimeout)
	if err := c.conn.SetWriteDeadline(c.writeBy); err != nil {
		return err
	}
	if c.cutOff.Load() { // cut just before we pushed the deadline back
		return c.conn.SetWriteDeadline(now)
	}
	return nil
}

// shutdown stops the pinger, closes every connection with 1001 and waits for
// them to go. When ctx ends first, it cuts the rest off: their writes and
// reads fail at once; it waits closeTimeout more at most. Last, it closes
// the broker.
func (h *hub) shutdown(ctx context.Context) {
	defer h.broker.close()
	h.mu.Lock() // no client enters after this, so live's count only falls
	if !h.closing.Swap(true) {
		close(h.stop)
	}
	h.mu.Unlock()
	h.forEach(func(c *client) { c.close(closeGoingAway, "server shutting down") })

	done := make(chan struct{})
	go func() { h.live.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.forEach((*client).cut) // their goroutines end at once
		select {
		case <-done:
		case <-time.After(closeTimeout): // a client still in its handshake, not yet a member
			_, left := h.counts()
			h.log.Warn("shutdown left connections in their handshake", "connections", left)
		}
	}
}

// pingLoop pings every client each pingInterval, as Daphne does: a client
// that answers (any frame will do) renews its idle deadline, so a quiet
// listener stays connected and a dead peer is found within idleTimeout.
// One loop for the server, started by the first client (hub.enter), not a
// timer per connection: idle connections stay small.
func (h *hub) pingLoop() {
	tick := time.NewTicker(h.pingInterval)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
			h.forEach(func(c *client) { c.send(pingFrame) })
		}
	}
}

// pingFrame is the server's ping, built once; its payload is empty.
var pingFrame = newFrame(opPing, nil)

// forEach calls f for every member of every room. f must not block: it runs
// with the hub and room locks held, so clients wait to enter or leave for
// one pass over every connection. A client entered but not yet joined is
// not a member: join closes it itself when shutdown has begun.
func (h *hub) forEach(f func(*client)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms {
		r.mu.RLock()
		for c := range r.members {
			f(c)
		}
		r.mu.RUnlock()
	}
}
