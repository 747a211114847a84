package main

// This file is the hub's passes over every connection: the pinger, which
// finds the peers that are gone, and shutdown, which ends them all. Each
// connection's own end (close, cut, the deadlines) is client.go.

import (
	"context"
	"time"
)

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
