package main

// This file is the memory broker's side of -data DIR: loading the rooms
// DIR holds at start, publishing with the journal, and the snapshot a
// compaction writes. The journal itself, its format and its syncer, is
// journal.go; reading it back, journalread.go. The broker's hooks
// (memorybroker.go) are few: publish hands over to publishStored when there is a
// journal, dropLocked writes the drop of a history that goes, close closes
// it; expire (history.go) keeps a history idleKeep, -data-keep with -data.

import (
	"errors"
	"log/slog"
	"slices"
	"time"
)

// dataDirEnv gives -data when the flag does not.
const dataDirEnv = "ROOMCHAT_DATA_DIR"

// Settings -data refuses: with -history 0 there is nothing to keep; with
// -redis, Redis keeps the history.
var (
	errNothingToStore = errors.New("-history 0 keeps no history to store")
	errDataWithRedis  = errors.New("not with -redis: Redis keeps the history there")
	errDataKeep       = errors.New("must be more than 0: a history that outlives no one is no history")
)

// openData makes b keep its rooms in dir as well as in memory: it loads
// what dir holds, forgetting rooms empty for longer than idleKeep, and
// starts the journal's syncer. A room's ids go on journalWindow past its
// last on disk (journal.go says why).
func (b *memoryBroker) openData(dir string, idleKeep time.Duration, log *slog.Logger) error {
	if b.keep <= 0 {
		return errNothingToStore
	}
	start := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	loaded := map[*stream]bool{}
	j, err := openJournal(dir, log, func(r record) { b.restore(r, loaded) })
	if err != nil {
		return err
	}
	for s := range loaded {
		if start.Sub(b.idle[s]) >= idleKeep {
			b.dropLocked(s)
			continue
		}
		s.history.next += journalWindow
	}
	b.journal, b.idleKeep = j, idleKeep
	j.snapshot, j.live = b.snapshot, b.liveBytes
	go j.run()
	log.Info("data directory loaded", "dir", dir, "rooms", len(b.streams), "messages", b.total.messages.Load(),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// restore applies one record read from DIR to the streams. It runs with
// b.mu held, before the broker serves anyone. A message of another epoch
// than its room's starts the room over in that epoch (the one before
// expired); a seq the room has is skipped.
func (b *memoryBroker) restore(r record, loaded map[*stream]bool) {
	if r.kind == kindDrop {
		if s := b.streams[r.room]; s != nil && s.history.epoch == r.epoch {
			b.dropLocked(s) // b.journal is not set yet: no drop is written
			delete(loaded, s)
		}
		return
	}
	s := b.streams[r.room]
	if s == nil {
		s = b.startLocked(r.room)
	}
	h := &s.history
	switch {
	case h.epoch != r.epoch:
		h.clear()
		h.epoch, h.next = r.epoch, r.seq
	case r.seq < h.next:
		return
	}
	h.push(historyEntry{seq: r.seq, key: r.key, json: slices.Clone(r.body)})
	b.idle[s] = r.at
	loaded[s] = true
}

// publishStored is publish (memorybroker.go) with a journal: p is placed and
// delivered to the other members at once, in one hold of the stream's
// lock, and its record added to the journal in the same hold, so that the
// file has each room's order; its sender hears of it once it is on disk
// (journal.tell). A sender whose messages outrun the disk by journalWindow
// waits here, before it holds any lock.
func (b *memoryBroker) publishStored(room string, p *post) {
	b.journal.reserve()
	s := b.lock(room, true)
	defer s.mu.Unlock()
	copied := s.history.place(p)
	if s.room != nil && !copied {
		d := p.toAll()
		d.toSender = frame{} // told once on disk
		s.room.deliver(d)
	}
	b.journal.add(room, &s.history, p, copied)
}

// snapshot is every room's history as records, for a compaction, with what
// waited in the journal meanwhile, which it holds already. It holds every
// stream while it copies them, so that nothing is placed meanwhile: the
// records waiting are all older than the snapshot. An empty room's records
// carry the time it became empty, so that a restart counts its idleKeep
// from then.
func (b *memoryBroker) snapshot() (records, pending []byte, acks []*post) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.streams {
		s.mu.Lock()
	}
	defer func() {
		for _, s := range b.streams {
			s.mu.Unlock()
		}
	}()
	j := b.journal
	j.mu.Lock()
	pending, acks = j.buf, j.acks
	j.buf, j.acks = nil, nil
	j.mu.Unlock()
	now := time.Now()
	for name, s := range b.streams {
		at, idle := b.idle[s]
		if !idle {
			at = now
		}
		for _, e := range s.history.entries {
			records = appendRecord(records, kindMessage, at, e.seq, name, s.history.epoch, e.key, e.json)
		}
	}
	return records, pending, acks
}

// liveBytes is about what a snapshot would write now.
func (b *memoryBroker) liveBytes() int64 {
	return b.total.Load() + recordOverhead*b.total.messages.Load()
}
