package main

// This file is what the Redis broker (redis.go) answers the HTTP API with:
// how many members each room has in every process, and a room's history
// read from Redis itself. Every process keeps, in Redis, a hash of its
// rooms' member counts, and beats once a second in a sorted set of the
// processes alive; a count is the sum over the processes whose heartbeat
// is recent. The heartbeat is also what tells a session that Redis still
// answers (redissession.go).

import (
	"errors"
	"strconv"
	"time"
)

// Keys of presence in Redis.
const (
	processesKey   = "roomchat:processes" // a sorted set: each process, scored by when its heartbeat expires (ms)
	presencePrefix = "roomchat:presence:" // a hash per process: its rooms' member counts

	// processLife is how long a process counts after its last heartbeat:
	// a process that died stops being counted within it.
	processLife = 5 * time.Second
)

// heartbeatScript says this process is alive for ARGV[2] ms more, by
// Redis's clock, so that processes whose clocks differ agree. KEYS: the set
// of processes, this process's presence hash; ARGV[1]: its name.
const heartbeatScript = `
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1`

// presenceScript returns, for the processes alive (forgetting those that
// are not), their member counts: of the room ARGV[2], or of every room when
// it is "", as room, count, room, count ... KEYS: the set of processes;
// ARGV[1]: the prefix of their presence hashes.
const presenceScript = `
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t[1] * 1000 + math.floor(t[2] / 1000))
local out = {}
for _, p in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if ARGV[2] == '' then
    local h = redis.call('HGETALL', ARGV[1] .. p)
    for i = 1, #h do out[#out + 1] = h[i] end
  else
    out[#out + 1] = ARGV[2]
    out[#out + 1] = redis.call('HGET', ARGV[1] .. p, ARGV[2]) or '0'
  end
end
return out`

// maxPresenceReply bounds a presence answer: every room of every process.
var maxPresenceReply = replyBudget{8 << 20, 1 << 18}

// errRedisAway answers what only Redis can, while it cannot be reached.
var errRedisAway = errors.New("redis is unreachable")

// heartbeat is the command s sends every redisPingEvery.
func (b *redisBroker) heartbeat(s *redisSession) command {
	return s.evalsha(heartbeatScript, []string{processesKey, presencePrefix + b.id},
		b.id, strconv.FormatInt(processLife.Milliseconds(), 10))
}

// present keeps room's member count here in Redis: at once while a
// session runs, and when the next one starts (start sends them all).
func (b *redisBroker) present(room string, members int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if members > 0 {
		b.members[room] = members
	} else {
		delete(b.members, room)
	}
	if b.session != nil {
		b.session.send(b.presentCommand(room, members))
	}
}

// presentCommand sets one room's count in this process's presence hash.
func (b *redisBroker) presentCommand(room string, members int) command {
	if members == 0 {
		return command{args: args("HDEL", presencePrefix+b.id, room)}
	}
	return command{args: args("HSET", presencePrefix+b.id, room, strconv.Itoa(members))}
}

// presence sums the member counts of every process alive. While Redis is
// away it can count only this process's members, and says so.
func (b *redisBroker) presence(room string) (map[string]int, bool, error) {
	reply, err := b.ask(func(s *redisSession) command {
		c := s.evalsha(presenceScript, []string{processesKey}, presencePrefix, room)
		c.budget = maxPresenceReply
		return c
	})
	if errors.Is(err, errRedisAway) {
		b.mu.Lock()
		defer b.mu.Unlock()
		members := map[string]int{}
		for name, n := range b.members {
			if room == "" || room == name {
				members[name] = n
			}
		}
		return members, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	pairs, _ := reply.([]any)
	members := map[string]int{}
	for i := 0; i+1 < len(pairs); i += 2 {
		name, _ := pairs[i].([]byte)
		count, _ := pairs[i+1].([]byte)
		if n, err := strconv.Atoi(string(count)); err == nil && n > 0 && roomRE.Match(name) {
			members[string(name)] += n
		}
	}
	return members, true, nil
}

// history reads room's history from Redis: the stream, whose every process
// is a mirror, is the whole truth.
func (b *redisBroker) history(room string) (history, error) {
	h := mirrorHistory(b.keep, new(historyTotal))
	reply, err := b.ask(func(s *redisSession) command {
		load := b.loadCommand(s, room, &h, false)
		load.load = "" // for the asker, not a mirror
		return load
	})
	if err != nil {
		return h, err
	}
	epoch, items := loadedOf(reply)
	if epoch != "" {
		h.restart(epoch)
	}
	for _, e := range b.parseStream(room, items) {
		h.accept(e)
	}
	h.mirror = false // the stream itself: an id beyond it was never given
	return h, nil
}

// ask sends the command made sends and waits for its reply, within
// redisReplyTimeout and a little: errRedisAway when no session runs, or it
// ends before it answers.
func (b *redisBroker) ask(makes func(*redisSession) command) (any, error) {
	b.mu.Lock()
	s := b.session
	var c command
	if s != nil {
		c = makes(s)
		c.reply = make(chan any, 1)
		s.send(c)
	}
	b.mu.Unlock()
	if s == nil {
		return nil, errRedisAway
	}
	timeout := time.NewTimer(redisReplyTimeout + redisPingEvery)
	defer timeout.Stop()
	select {
	case reply := <-c.reply:
		return reply, nil
	case <-s.closing:
	case <-timeout.C:
	}
	return nil, errRedisAway
}
