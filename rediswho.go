package main

// This file is who is here across processes, for the Redis broker
// (redis.go): each room's names in every process, kept in Redis with
// heartbeats and a TTL, and the joins, leaves and typing of each process
// published to the others. presence.go does the rest, as in one process.
//
// In Redis, per room:
//
//	roomchat:who:ROOM       hash: "PROCESS NAME" -> that process's connections of that name ("PROCESS " the nameless)
//	roomchat:who-beat:ROOM  sorted set: PROCESS -> when its fields expire (ms, Redis's clock)
//	roomchat:who:ROOM       channel: "PROCESS +1 NAME", "PROCESS -1 NAME", "PROCESS t NAME" (typing),
//	                        "PROCESS = {NAME: n, ...}" (all of PROCESS's, after it was away)
//
// A process beats for each of its rooms every TTL/4; one whose beat is
// older than the TTL is dead, and whoever reads the room next (every TTL/8
// where someone watches, and at every load) removes its fields and
// publishes their leaves: a killed process's members leave every view
// within the TTL and an eighth of it. While Redis is away a process sees
// its own members alone, and says so (partial).

import (
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"
)

// Keys, channel and timing of presence in Redis.
const (
	whoPrefix     = "roomchat:who:"      // a room's hash of names, and its channel
	whoBeatPrefix = "roomchat:who-beat:" // a room's sorted set of processes' expiries

	// presenceTTL is how long a process's members count after its last
	// beat: 40 s, beating every 10 s and reaping every 5 s, makes a killed
	// process's members leave within 45 s (the issue asks for 60).
	presenceTTL = 40 * time.Second

	// maxWhoDelta bounds a count change from Redis: anyone who can write
	// to it can write on the channel.
	maxWhoDelta = 1 << 20
)

// whoAddScript counts ARGV[3] connections named ARGV[2] of process ARGV[1]
// in or out, beats for it (ARGV[4] ms) and tells the others. KEYS: hash,
// beats, channel.
const whoAddScript = `
local t = redis.call('TIME')
local f = ARGV[1] .. ' ' .. ARGV[2]
if redis.call('HINCRBY', KEYS[1], f, ARGV[3]) <= 0 then redis.call('HDEL', KEYS[1], f) end
redis.call('ZADD', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[1] .. ' ' .. ARGV[3] .. ' ' .. ARGV[2])
return 1`

// whoBeatScript beats for process ARGV[1] (ARGV[2] ms); it answers 1 when
// the process had been reaped, and must write its fields again. KEYS:
// beats, hash.
const whoBeatScript = `
local t = redis.call('TIME')
local new = redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return new`

// whoSetScript replaces every field of process ARGV[1] with the pairs
// NAME, COUNT from ARGV[4] on, beats (ARGV[2] ms), and publishes them all
// (ARGV[3], as JSON). KEYS: hash, beats, channel.
const whoSetScript = `
local t = redis.call('TIME')
local p = ARGV[1] .. ' '
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if string.sub(h[i], 1, #p) == p then redis.call('HDEL', KEYS[1], h[i]) end
end
for i = 4, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], p .. ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], p .. '= ' .. ARGV[3])
return 1`

// whoLoadScript reaps the room's dead processes, publishing their leaves,
// and returns the fields of the living: field, count, field, count ...
// KEYS: hash, beats, channel.
const whoLoadScript = `
local t = redis.call('TIME')
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', t[1] * 1000 + math.floor(t[2] / 1000))
local h = redis.call('HGETALL', KEYS[1])
if #dead == 0 then return h end
local gone = {}
for _, p in ipairs(dead) do gone[p] = true; redis.call('ZREM', KEYS[2], p) end
local out = {}
for i = 1, #h, 2 do
  local p = string.match(h[i], '^[^ ]*')
  if gone[p] then
    redis.call('HDEL', KEYS[1], h[i])
    redis.call('PUBLISH', KEYS[3], p .. ' -' .. h[i + 1] .. ' ' .. string.sub(h[i], #p + 2))
  else
    out[#out + 1] = h[i]; out[#out + 1] = h[i + 1]
  end
end
return out`

// redisWho is the Redis broker's presence: the book of presence.go, and
// the loop that beats and reaps.
type redisWho struct {
	book presenceBook
	ttl  time.Duration // presenceTTL; a field so that a test need not wait for it
	loop sync.Once
}

// whoKeys are room's hash, beats and channel.
func whoKeys(room string) []string {
	return []string{whoPrefix + room, whoBeatPrefix + room, whoPrefix + room}
}

// whoTTL is the TTL as ARGV.
func (b *redisBroker) whoTTL() string {
	if b.who.ttl == 0 {
		b.who.ttl = presenceTTL
	}
	return strconv.FormatInt(b.who.ttl.Milliseconds(), 10)
}

// member counts c in or out, here and in Redis. It runs with hub.mu held,
// and never waits for Redis.
func (b *redisBroker) member(c *client, in bool) {
	first, last := b.who.book.member(c, in)
	b.who.loop.Do(func() { b.startWhoLoop() })
	b.mu.Lock()
	defer b.mu.Unlock()
	room := c.room.name
	if first {
		w := b.who.book.room(room, false)
		w.mu.Lock()
		w.ready = make(chan struct{})
		if b.session == nil {
			w.partial = true
			close(w.ready)
		}
		w.mu.Unlock()
	}
	if b.session == nil {
		return
	}
	delta := "1"
	if !in {
		delta = "-1"
	}
	b.session.send(b.session.evalsha(whoAddScript, whoKeys(room), b.id, c.name, delta, b.whoTTL()))
	switch {
	case first:
		b.session.send(command{args: args("SUBSCRIBE", whoPrefix+room)})
	case last:
		b.session.send(command{args: args("UNSUBSCRIBE", whoPrefix+room)})
	}
}

// typing forwards c's typing here and to the other processes.
func (b *redisBroker) typing(c *client) {
	if !b.who.book.typing(c) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.session != nil {
		b.session.send(command{args: args("PUBLISH", whoPrefix+c.room.name, b.id+" t "+c.name)})
	}
}

// waitWho waits, at most subscribeWait, for room's names from Redis, so
// that a joining client's presence frame lists every process's.
func (b *redisBroker) waitWho(room string) {
	w := b.who.book.room(room, false)
	if w == nil {
		return
	}
	w.mu.Lock()
	ready := w.ready
	w.mu.Unlock()
	if ready == nil {
		return
	}
	select {
	case <-ready:
	case <-time.After(subscribeWait):
	}
}

// whoSubscribed is Redis confirming room's presence channel: its names are
// loaded, and from then on its events come.
func (b *redisBroker) whoSubscribed(room string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.session == nil || b.who.book.room(room, false) == nil {
		return
	}
	c := b.session.evalsha(whoLoadScript, whoKeys(room))
	c.budget = maxPresenceReply
	c.then = func(reply any) { b.whoLoaded(room, reply) }
	b.session.send(c)
}

// whoLoaded takes every other process's names in room from Redis. It runs
// on the session's reader, before any event published after the load.
func (b *redisBroker) whoLoaded(room string, reply any) {
	w := b.who.book.room(room, false)
	if w == nil {
		return
	}
	views := b.parseWho(room, reply)
	w.mu.Lock()
	defer w.mu.Unlock()
	for p := range w.remote {
		w.setRemote(p, nil)
	}
	for p, names := range views {
		w.setRemote(p, names)
	}
	w.partial = false
	w.due()
	if w.ready != nil {
		closeOnce(w.ready)
	}
}

// parseWho reads whoLoadScript's reply: each other process's connections by
// whoPushed takes an event on room's presence channel from another
// rejectedUnless counts a rejected event, unless it came for a room no
// setRemote replaces process p's connections in the room with names (none
// remoteTyping forwards another process's member's typing, at most one a
// name every typingEvery/2 (a second tab may type too). It runs with w.mu
// whoStart writes this process's names again in a new session, and
// subscribes its rooms' presence channels: their loads follow. It runs
// with b.mu held.
func (b *redisBroker) whoStart(s *redisSession) {
	for _, w := range b.who.book.all() {
		s.send(command{args: args("SUBSCRIBE", whoPrefix+w.name)})
		s.send(b.whoSetCommand(s, w))
	}
}

// whoSetCommand is whoSetScript for what this process has of w. Its
// remote views are empty here: a session starts after one ended.
func (b *redisBroker) whoSetCommand(s *redisSession, w *roomWho) command {
	w.mu.Lock()
	state := map[string]int{}
	for name, n := range w.names {
		state[name] = n
	}
	if nameless := w.count - sum(state); nameless > 0 {
		state[""] = nameless
	}
	for _, names := range w.remote {
		for name, n := range names {
			if state[name] -= n; state[name] <= 0 {
				delete(state, name)
			}
		}
	}
	w.mu.Unlock()
	js, _ := json.Marshal(state) // strings and ints: it cannot fail
	argv := []string{b.id, b.whoTTL(), string(js)}
	for name, n := range state {
		argv = append(argv, name, strconv.Itoa(n))
	}
	return s.evalsha(whoSetScript, whoKeys(w.name), argv...)
}

// whoEnd is Redis going away: each room's presence is this process's
// alone, and partial, until its next load. It runs with b.mu held.
func (b *redisBroker) whoEnd() {
	for _, w := range b.who.book.all() {
		w.mu.Lock()
		for p := range w.remote {
			w.setRemote(p, nil)
		}
		w.partial = true
		w.due()
		if w.ready != nil {
			closeOnce(w.ready)
		}
		w.mu.Unlock()
	}
}

// startWhoLoop starts the loop that beats for this process's rooms every
// TTL/4 and reaps the dead of the rooms watched here every TTL/8.
func (b *redisBroker) startWhoLoop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.whoTTL()
	every := b.who.ttl / 8
	b.done.Add(1)
	go func() {
		defer b.done.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-b.stop:
				return
			case <-tick.C:
			}
			b.whoTick(n%2 == 0)
		}
	}()
}

// whoTick beats (when beat) and reaps.
func (b *redisBroker) whoTick(beat bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.session
	if s == nil {
		return
	}
	for _, w := range b.who.book.all() {
		if beat {
			c := s.evalsha(whoBeatScript, []string{whoBeatPrefix + w.name, whoPrefix + w.name}, b.id, b.whoTTL())
			c.then = func(reply any) {
				if n, _ := reply.(int64); n == 1 { // reaped meanwhile: written again
					b.mu.Lock()
					if b.session == s {
						s.send(b.whoSetCommand(s, w))
					}
					b.mu.Unlock()
				}
			}
			s.send(c)
		}
		w.mu.Lock()
		watched := w.watchers != nil
		w.mu.Unlock()
		if watched {
			c := s.evalsha(whoLoadScript, whoKeys(w.name))
			c.budget = maxPresenceReply
			s.send(c)
		}
	}
}

// whoIsIn is room's names in every process, read from Redis, for the HTTP
// API; while Redis is away, this process's, and not complete.
func (b *redisBroker) whoIsIn(room string) ([]string, bool, error) {
	reply, err := b.ask(func(s *redisSession) command {
		c := s.evalsha(whoLoadScript, whoKeys(room))
		c.budget = maxPresenceReply
		return c
	})
	if errors.Is(err, errRedisAway) {
		return b.who.book.names(room), false, nil
	}
	if err != nil {
		return nil, false, err
	}
	seen := map[string]bool{}
	for _, names := range b.parseWho(room, reply) {
		for name := range names {
			seen[name] = name != ""
		}
	}
	for _, name := range b.who.book.names(room) {
		seen[name] = true
	}
	var names []string
	for name, listed := range seen {
		if listed {
			names = append(names, name)
		}
	}
	return sortedOrEmpty(names), true, nil
}

// validProcess is a process's name as dialRedisBroker draws it, or close:
