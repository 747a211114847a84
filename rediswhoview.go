package main

// This file is what the Redis broker hears of presence (rediswho.go): the
// names of every process in a room, loaded, and the events on the room's
// presence channel, each checked as a client's input would be: anyone who
// can write to the shared Redis can write here.

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// name. Fields that do not check out are left out and counted.
func (b *redisBroker) parseWho(room string, reply any) map[string]map[string]int {
	pairs, _ := reply.([]any)
	views := map[string]map[string]int{}
	for i := 0; i+1 < len(pairs); i += 2 {
		field, _ := pairs[i].([]byte)
		count, _ := pairs[i+1].([]byte)
		p, name, ok := strings.Cut(string(field), " ")
		n, err := strconv.Atoi(string(count))
		if !ok || err != nil || n <= 0 || n > maxWhoDelta || !validProcess(p) || !validName(name) {
			b.rejected(room)
			continue
		}
		if p == b.id {
			continue // this process knows its own
		}
		if views[p] == nil {
			views[p] = map[string]int{}
		}
		views[p][name] += n
	}
	return views
}

// process: "PROCESS OP NAME".
func (b *redisBroker) whoPushed(room, kind string, raw any) {
	data, _ := raw.([]byte)
	switch kind {
	case "subscribe":
		b.whoSubscribed(room)
		return
	case "message":
	default:
		return
	}
	p, rest, _ := strings.Cut(string(data), " ")
	op, name, _ := strings.Cut(rest, " ")
	if p == b.id {
		return // this process's own, known already
	}
	w := b.who.book.room(room, false)
	if !validProcess(p) || w == nil {
		b.rejectedUnless(w == nil, room)
		return
	}
	var state map[string]int
	delta, err := strconv.Atoi(op)
	switch {
	case op == "t" && validName(name) && name != "":
		w.mu.Lock()
		w.remoteTyping(name)
		w.mu.Unlock()
		return
	case op == "=" && json.Unmarshal([]byte(name), &state) == nil && validState(state):
	case err == nil && delta != 0 && delta >= -maxWhoDelta && delta <= maxWhoDelta && validName(name):
	default:
		b.rejected(room)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if op == "=" {
		w.setRemote(p, state)
		return
	}
	if w.remote == nil {
		w.remote = map[string]map[string]int{}
	}
	if w.remote[p] == nil {
		w.remote[p] = map[string]int{}
	}
	was := w.remote[p][name]
	now := max(was+delta, 0)
	if now == 0 {
		delete(w.remote[p], name)
	} else {
		w.remote[p][name] = now
	}
	w.add(name, now-was)
}

// longer here.
func (b *redisBroker) rejectedUnless(gone bool, room string) {
	if !gone {
		b.rejected(room)
	}
}

// when nil). It runs with w.mu held.
func (w *roomWho) setRemote(p string, names map[string]int) {
	for name, n := range w.remote[p] {
		w.add(name, -n)
	}
	delete(w.remote, p)
	if len(names) == 0 {
		return
	}
	if w.remote == nil {
		w.remote = map[string]map[string]int{}
	}
	w.remote[p] = names
	for name, n := range names {
		w.add(name, n)
	}
}

// held.
func (w *roomWho) remoteTyping(name string) {
	if w.watchers == nil {
		return
	}
	now := time.Now()
	if now.Sub(w.typedAt[name]) < typingEvery/2 {
		return
	}
	if w.typedAt == nil {
		w.typedAt = map[string]time.Time{}
	}
	w.typedAt[name] = now
	w.sendTyping(name, nil)
}

// 1 to 40 lower-case letters and digits.
func validProcess(p string) bool {
	return len(p) > 0 && len(p) <= 40 && strings.IndexFunc(p, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9')
	}) < 0
}

// validName is a name as ?name allows it ("" for the nameless).
func validName(name string) bool {
	return utf8.ValidString(name) && utf8.RuneCountInString(name) <= maxNameChars
}

// validState is a process's names as "=" publishes them.
func validState(state map[string]int) bool {
	for name, n := range state {
		if !validName(name) || n <= 0 || n > maxWhoDelta {
			return false
		}
	}
	return true
}

// sum adds up a map's counts.
func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
