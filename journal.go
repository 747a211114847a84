package main

// This file is the journal: with -data DIR, every room's history is kept on
// disk as well as in memory, so that it survives the process, a SIGKILL
// included. The memory broker appends each message it places to one file as
// a record; a syncer goroutine writes and syncs everything that arrived
// meanwhile in one go (group commit), and only then is its sender told:
// `said`, or the HTTP API's 200, means "on disk". When the file holds more
// than twice what the rooms keep, the syncer compacts it: a new file holds
// what memory holds, and the old one goes. journalread.go reads the file
// back at start; datadir.go is the broker's side and the DIR itself.

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// A record is framed so that a damaged one costs itself alone: a reader
// that finds a bad checksum looks for the next magic and goes on there.
//
//	magic   4 bytes  0xFF 0xFE 'r' 'c': 0xFF and 0xFE never occur in UTF-8,
//	                 so no text a client wrote can pass for a record's start
//	length  uint32   little-endian, of the payload
//	crc     uint32   little-endian, CRC-32C of the payload
//	payload          kind (1 byte), unix seconds (int64, little-endian),
//	                 seq (uvarint), then room, epoch and key (each a uvarint
//	                 length and its bytes), then the entry's JSON (the rest)
//
// A message record (kindMessage) is one history entry; a drop record
// (kindDrop, seq 0, no key or JSON) says that a room's stream of that epoch
// expired.
const (
	recordHeaderBytes = 12
	kindMessage       = 'm'
	kindDrop          = 'd'

	// maxRecordBytes bounds a payload a reader believes: a message's JSON
	// is at most a frame (64 KiB) and its key, room and epoch a few
	// hundred bytes more.
	maxRecordBytes = 1 << 20
)

var (
	recordMagic = []byte{0xFF, 0xFE, 'r', 'c'}
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

// The journal's bounds.
const (
	// defaultDataKeep is how long, with -data, a room's history outlives
	// its last member (the -data-keep flag): a week, so that a room used
	// on weekdays finds its conversation on Monday.
	defaultDataKeep = 7 * 24 * time.Hour

	// journalWindow bounds the messages placed but not yet synced, all
	// rooms together: a publisher past it waits for the disk. Members get
	// a message before it is synced, so after a crash a room's ids go on
	// journalWindow past its last one on disk: none that a member saw is
	// ever given to another message.
	journalWindow = 1024

	// journalSlack is what the file may hold beyond twice the live
	// history before it is compacted, so that a small history is not
	// compacted at every round.
	journalSlack = 64 << 10

	// recordOverhead is about what a record adds to its entry's JSON: the
	// header, the time, the seq, the room, the epoch and the key.
	recordOverhead = 64

	// journalInterval is the least time from one round's start to the
	// next's. A sync costs this machine 150 to 400 µs of CPU however
	// little it writes, so under load a round gathers what arrives
	// meanwhile: at most 100 syncs a second whatever the rate of messages
	// (BenchmarkJournalPublish), for up to 10 ms more before a said. A
	// message alone does not wait: its round starts at once.
	journalInterval = 10 * time.Millisecond

	// journalRetry is how long a journal that failed to write (a full
	// disk) waits before it tries again; meanwhile senders are told at
	// once that their messages are not stored.
	journalRetry = 10 * time.Second
)

// notStored is what a sender is told of a message that reached its room but
// not the disk (docs/protocol.md, Errors).
var notStored = fieldError{Type: errNotStored, Loc: []string{},
	Msg: "Delivered, but not stored: the server cannot write to its disk, and the message will be lost if it restarts"}

// Why a message is not stored, besides the disk's own errors.
var (
	errDiskDown      = errors.New("the journal is waiting to retry after a failed write")
	errJournalClosed = errors.New("the journal is closed: the server is shutting down")
)

// A journal is the file of one DIR and the syncer that writes it.
type journal struct {
	dir  string
	log  *slog.Logger
	lock *os.File // DIR's lock file, held locked (lockFile) while the journal is open

	// snapshot stops every room's stream and returns its history as
	// records, with what waited to be written meanwhile (which the
	// snapshot holds already); live is about what a snapshot would hold.
	snapshot func() (records, pending []byte, acks []*post)
	live     func() int64

	// Owned by the syncer.
	f         *os.File
	number    int   // the file's number in its name (journalPath)
	size      int64 // bytes of f that hold whole records
	failing   bool  // the last write failed: senders are told, not waited for
	retryAt   time.Time
	compactAt time.Time    // not before: a compaction failed
	syncs     atomic.Int64 // rounds that synced, for tests and benchmarks: fewer than messages is group commit

	mu      sync.Mutex
	room    sync.Cond     // signalled when a round ends: there may be room in the window
	buf     []byte        // records appended since the last round
	acks    []*post       // their posts, and copies', told once buf is synced
	pending int           // posts reserved and not yet told, for journalWindow
	closed  bool          // close has begun: what comes later is told at once, unstored
	wake    chan struct{} // one token: something waits to be written
	stop    chan struct{} // closed by close
	done    chan struct{} // closed by the syncer as it ends
}

// reserve takes a place in the window for one post, waiting for the disk
// when the window is full; tell gives it back.
func (j *journal) reserve() {
	j.mu.Lock()
	for j.pending >= journalWindow {
		j.room.Wait()
	}
	j.pending++
	j.mu.Unlock()
}

// add appends p's record, unless p is a copy (which has none), and has p's
// sender told once it is synced. It runs with room's stream held, right
// after p is placed and delivered: records go in each stream's order.
func (j *journal) add(room string, h *history, p *post, copied bool) {
	j.mu.Lock()
	if j.closed { // shutting down: the syncer's last round has begun
		j.mu.Unlock()
		j.tell([]*post{p}, errJournalClosed)
		return
	}
	if !copied {
		e := h.entries[len(h.entries)-1]
		j.buf = appendRecord(j.buf, kindMessage, time.Now(), e.seq, room, h.epoch, e.key, e.json)
	}
	j.acks = append(j.acks, p)
	j.mu.Unlock()
	j.poke()
}

// drop appends the record that says room's stream, whose history is h,
// expired; a history with nothing in it has nothing on disk either. It
// runs with the stream held.
func (j *journal) drop(room string, h *history) {
	if j == nil || len(h.entries) == 0 {
		return
	}
	j.mu.Lock()
	j.buf = appendRecord(j.buf, kindDrop, time.Now(), 0, room, h.epoch, "", nil)
	j.mu.Unlock()
	j.poke()
}

// poke wakes the syncer, if it sleeps.
func (j *journal) poke() {
	select {
	case j.wake <- struct{}{}:
	default: // awake already: it takes what is there when its round begins
	}
}

// appendRecord appends one framed record to b.
func appendRecord(b []byte, kind byte, at time.Time, seq uint64, room, epoch, key string, body []byte) []byte {
	start := len(b)
	b = append(b, recordMagic...)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // length and crc, below
	b = append(b, kind)
	b = binary.LittleEndian.AppendUint64(b, uint64(at.Unix()))
	b = binary.AppendUvarint(b, seq)
	b = appendField(b, room)
	b = appendField(b, epoch)
	b = appendField(b, key)
	b = append(b, body...)
	payload := b[start+recordHeaderBytes:]
	binary.LittleEndian.PutUint32(b[start+4:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+8:], crc32.Checksum(payload, castagnoli))
	return b
}

// appendField appends s with its length.
func appendField(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// run is the syncer: each round writes what arrived since the last, syncs
// it, and tells the senders; whatever arrives meanwhile waits for the next
// round, journalInterval after this one began at the soonest, so a busy
// room pays one sync for many messages. It ends once
// close is called, after a last round.
func (j *journal) run() {
	defer close(j.done)
	var spare []byte
	var last time.Time // when the last round began
	for stopping := false; !stopping; {
		select {
		case <-j.wake:
		case <-j.stop:
			stopping = true
		}
		if wait := time.Until(last.Add(journalInterval)); wait > 0 && !stopping {
			select {
			case <-time.After(wait):
			case <-j.stop:
				stopping = true
			}
		}
		last = time.Now()
		j.mu.Lock()
		buf, acks := j.buf, j.acks
		j.buf, j.acks = spare[:0], nil
		j.mu.Unlock()
		err := j.write(buf)
		j.tell(acks, err)
		if cap(buf) <= 4*journalSlack { // a flood's buffer is let go
			spare = buf
		}
		if err == nil && !stopping && j.size > 2*j.live()+journalSlack && time.Now().After(j.compactAt) {
			j.compact()
		}
	}
}

// write appends buf to the file and syncs it. A failed write is cut off
// the file, and logged once until a write succeeds again; until then, for
// journalRetry, rounds fail without touching the disk.
func (j *journal) write(buf []byte) error {
	if j.failing && time.Now().Before(j.retryAt) {
		return errDiskDown
	}
	if len(buf) == 0 && !j.failing {
		return nil // copies only: what they copy was synced in an earlier round
	}
	_, err := j.f.WriteAt(buf, j.size)
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		_ = j.f.Truncate(j.size) // else the next write overwrites it, or a reader cuts it off
		if !j.failing {
			j.log.Error("cannot write to the data directory: rooms are served from memory, and new messages are not kept on disk",
				"dir", j.dir, "err", err, "retry", journalRetry)
		}
		j.failing, j.retryAt = true, time.Now().Add(journalRetry)
		return err
	}
	j.size += int64(len(buf))
	j.syncs.Add(1)
	if j.failing {
		j.failing = false
		j.log.Info("writing to the data directory again", "dir", j.dir)
	}
	return nil
}

// tell ends the wait of every post in acks: its sender hears its said (if
// it wants one), or not_stored when err is not nil, and the HTTP API its
// answer. The posts
// give back their places in the window.
func (j *journal) tell(acks []*post, err error) {
	for _, p := range acks {
		f, refused := p.said(), (*fieldError)(nil)
		if err != nil {
			f, refused = errorFrame(p.cid, notStored), &notStored
		}
		if p.sender != nil && f.wire != nil {
			p.sender.send(f)
		}
		p.end(refused)
	}
	if len(acks) > 0 {
		j.mu.Lock()
		j.pending -= len(acks)
		j.room.Broadcast()
		j.mu.Unlock()
	}
}

// compact writes what memory holds to a new file and makes it the file.
// It is written under a temporary name, synced, then renamed, so the file
// of the highest number is always whole from its start (openJournal
// reads that one alone). If it fails, what waited meanwhile goes to the
// old file, as if nothing had happened.
func (j *journal) compact() {
	records, pending, acks := j.snapshot()
	f, err := j.writeNew(records)
	if err != nil {
		j.log.Warn("compaction failed; the old file goes on", "dir", j.dir, "err", err, "retry", journalRetry)
		j.compactAt = time.Now().Add(journalRetry)
		j.tell(acks, j.write(pending))
		return
	}
	old := journalPath(j.dir, j.number)
	_ = j.f.Close() // synced: nothing is lost with it
	j.f, j.number, j.size = f, j.number+1, int64(len(records))
	if err := os.Remove(old); err != nil {
		j.log.Warn("cannot remove the compacted file", "file", old, "err", err)
	}
	j.tell(acks, nil)
}

// writeNew writes records to the file of the next number, through a
// temporary one, and returns it open.
func (j *journal) writeNew(records []byte) (*os.File, error) {
	name := journalPath(j.dir, j.number+1)
	f, err := os.OpenFile(name+".tmp", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(records)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(name+".tmp", name)
	}
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(name + ".tmp")
		return nil, err
	}
	return f, nil
}

// syncDir syncs a directory, so that a file created or renamed in it
// survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// close writes what waits, ends the syncer and lets DIR go. It is safe to
// call on a nil journal, and more than once.
func (j *journal) close() {
	if j == nil {
		return
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return
	}
	j.closed = true
	close(j.stop)
	j.mu.Unlock()
	<-j.done
	_ = j.f.Close()
	_ = j.lock.Close() // releases the lock
}
