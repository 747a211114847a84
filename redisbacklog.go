package main

// This file is what the Redis broker (redis.go) does while Redis is away,
// and when it is back. A member's message said here meanwhile is
// delivered to the members here at once, without an id, and kept in the
// backlog; when Redis is back, each room is caught up with what the other
// processes said meanwhile (redismirror.go), and its backlog follows.
// Redis refuses a copy it already has, so nothing said is lost or doubled
// by the outage. Past the backlog's bounds a message is refused: a member's
// reaches the members here only, its sender told so (not_relayed); the
// API's reaches no one, and its caller hears 503 (TestAPIRefusedPost).

import (
	mathrand "math/rand/v2"
	"slices"
	"time"
)

// notRelayed is what the sender of a message the backlog refused is told:
// Redis was away, and the backlog full.
var notRelayed = fieldError{Type: errNotRelayed, Loc: []string{},
	Msg: "Delivered only to members on this server: the servers cannot reach each other, and its backlog is full"}

// holdLocked keeps out in the backlog, for Redis when it is back, and,
// when early says so, has the members here hear it now, without an id:
// Redis is away. The API's message is not delivered early: its caller
// waits to hear whether it was placed. Past the backlog's bounds, out is
// refused (notRelayed): a member's reaches the members here, the API's no
// one. It runs with b.mu held.
func (b *redisBroker) holdLocked(out *outgoing, early bool) {
	p := out.post
	size := len(p.frame.wire)
	api := p.from == 0 // no member here said it
	fits := len(b.backlog) < b.backlogMax && b.held+size <= backlogBytes
	if fits || !p.end(&notRelayed) { // an API post promised its caller (202) is kept past the bounds
		if early && !out.here && !api {
			b.deliverHereLocked(out, frame{})
		}
		b.backlog = append(b.backlog, out)
		b.held += size
		return
	}
	b.dropped.Add(1)
	if api {
		return
	}
	refusal := errorFrame(p.cid, notRelayed)
	if out.here {
		if m := b.lockedMirror(out.room); m != nil {
			m.room.deliver(p.toSender(refusal))
			m.mu.Unlock()
		}
		return
	}
	b.deliverHereLocked(out, refusal)
}

// deliverHereLocked delivers out to the members here, without an id, and
// toSender to its sender. It runs with b.mu held.
func (b *redisBroker) deliverHereLocked(out *outgoing, toSender frame) {
	if m := b.lockedMirror(out.room); m != nil {
		p := out.post
		m.room.deliver(delivery{from: p.from, toSender: toSender, withID: p.withIDFrame, plain: p.frame})
		m.mu.Unlock()
	}
	out.here = true
}

// lockedMirror is room's mirror with its lock held, or nil when the room
// has no members here. It runs with b.mu held.
func (b *redisBroker) lockedMirror(room string) *mirror {
	m := b.mirrors[room]
	if m != nil {
		m.mu.Lock()
	}
	return m
}

// heldCopy reports whether out is a copy of a message in the backlog (the
// same key), which then has out's sender tell when it is placed: a client
// that lost its connection sends again what had no said. It runs with b.mu
// held.
func (b *redisBroker) heldCopy(out *outgoing) bool {
	if out.post.key == "" {
		return false
	}
	i := slices.IndexFunc(b.backlog, func(o *outgoing) bool { return o.room == out.room && o.post.key == out.post.key })
	if i >= 0 {
		b.backlog[i].post.from, b.backlog[i].post.wantsID = out.post.from, out.post.wantsID
	}
	return i >= 0
}

// start makes s the running session: it subscribes every room that has
// members here, each to be caught up with what was said meanwhile
// (redismirror.go), and sends the backlog of every room that needs no
// catch-up; a room's own backlog follows its catch-up. It reports false,
// and closes s, if the broker was closed meanwhile.
func (b *redisBroker) start(s *redisSession) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		s.close()
		return false
	}
	b.session = s
	b.up.Store(true)
	s.send(b.heartbeat(s))
	s.send(command{args: args("DEL", presencePrefix+b.id)})
	for room, n := range b.members {
		s.send(b.presentCommand(room, n))
	}
	b.whoStart(s)
	for name, m := range b.mirrors {
		m.mu.Lock()
		m.loading, m.waiting = b.keep > 0, nil
		m.mu.Unlock()
		s.send(subscribeCommand(name))
	}
	b.sendBacklogLocked(func(room string) bool {
		m := b.mirrors[room]
		return m == nil || b.keep <= 0
	})
	return true
}

// sendBacklogLocked sends the messages of the backlog whose room ready
// says may go now, in order, and keeps the rest. It runs with b.mu held
// and a session running.
func (b *redisBroker) sendBacklogLocked(ready func(room string) bool) {
	kept := b.backlog[:0]
	for _, out := range b.backlog {
		if ready(out.room) {
			b.held -= len(out.post.frame.wire)
			b.session.send(b.publishCommand(out))
		} else {
			kept = append(kept, out)
		}
	}
	clear(b.backlog[len(kept):])
	b.backlog = kept
}

// end marks the broker down after s failed. The messages s had not placed
// (sent without a reply yet, or not sent at all) go back to the backlog,
// in order, and reach the members here now, without ids, if they have not
// yet: Redis may or may not have had them, and will say which when it is
// back. It holds b.mu for every room's deliveries, each under its
// stream's lock, and waits for no network.
func (b *redisBroker) end(s *redisSession) {
	s.close()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.session = nil // publish sends s nothing more
	b.up.Store(false)
	unplaced := s.unplaced()
	for _, m := range b.mirrors {
		closeOnce(m.ready) // joins wait no more: the room is local until Redis is back
	}
	b.whoEnd()
	backlog := b.backlog // what a failed start had not sent yet
	b.backlog, b.held = nil, 0
	for _, out := range append(unplaced, backlog...) {
		b.holdLocked(out, true)
	}
}

// run keeps the broker connected until close: it serves a session, and
// when that fails, dials again with capped, jittered backoff. An outage is
// a warning when Redis goes away and a line when it is back, not one per
// try: a session that ends before redisStableAfter does not reset the
// backoff, and one that ends before redisShortSession does not end the
// outage either.
func (b *redisBroker) run(s *redisSession) {
	defer b.done.Done()
	backoff, outage := redisBackoffMin, false
	for {
		started := time.Now()
		err := s.serve()
		b.end(s)
		select {
		case <-b.stop:
			return
		default:
		}
		if time.Since(started) >= redisStableAfter {
			backoff, outage = redisBackoffMin, false
		}
		down := time.Now()
		// A session that worked for a while before it ended is an outage
		// of its own, however soon after the last: a warning. One that
		// ended at once is the same outage going on.
		lived := down.Sub(started)
		loud := !outage || lived >= redisShortSession
		if loud {
			b.log.Warn("redis broker down: rooms are local until it is back", "redis", b.addr, "err", err)
		} else {
			b.log.Debug("redis session ended early", "redis", b.addr, "lived", lived.Round(time.Millisecond), "err", err)
		}
		if s, backoff = b.redial(backoff); s == nil || !b.start(s) {
			return // closed while down
		}
		b.reconnects.Add(1)
		if loud {
			b.log.Info("redis broker back", "redis", b.addr, "down_for", time.Since(down).Round(time.Millisecond))
		}
		outage = true // until this session proves stable
	}
}

// redialWait draws the wait before the next dial from half to one and a
// half times backoff, and returns it with the backoff to draw the one
// after from: twice this one, up to redisBackoffMax.
func redialWait(backoff time.Duration) (wait, next time.Duration) {
	return backoff/2 + mathrand.N(backoff), min(2*backoff, redisBackoffMax)
}

// redial dials until it succeeds, starting from the wait backoff, and
// returns the session and the wait to start from next time; nil when the
// broker is closed.
func (b *redisBroker) redial(backoff time.Duration) (*redisSession, time.Duration) {
	for {
		var wait time.Duration
		wait, backoff = redialWait(backoff)
		select {
		case <-b.stop:
			return nil, backoff
		case <-time.After(wait):
		}
		s, err := b.dial()
		if err == nil {
			return s, backoff
		}
		b.log.Debug("redis still away", "redis", b.addr, "err", err)
	}
}
