package main

// This file opens a journal (journal.go): it takes DIR, reads the newest
// file back record by record, and recovers from what a crash or a bad disk
// leaves: a record half written at the end is cut off, a damaged one in the
// middle is skipped, each with a line in the log, never a crash.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A record is one decoded entry of the file (journal.go has the format).
type record struct {
	kind             byte
	at               time.Time
	seq              uint64
	room, epoch, key string
	body             []byte // the entry's JSON, a slice of what was read
}

// journalPath is the name of DIR's file number n: the highest is the live
// one, and whole from its start.
func journalPath(dir string, n int) string {
	return filepath.Join(dir, fmt.Sprintf("journal-%08d.log", n))
}

// errDirHeld is why a DIR another process holds cannot be used.
var errDirHeld = errors.New("held by another running roomchat (its lock file is locked)")

// openJournal takes dir, creating it if missing, reads its newest file,
// handing each record to apply in order, and returns the journal ready to
// append to it, its syncer not yet started. Files an interrupted compaction
// left are removed.
func openJournal(dir string, log *slog.Logger, apply func(record)) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, err
	}
	j := &journal{dir: dir, log: log, lock: lock, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	j.room.L = &j.mu
	if err := j.load(apply); err != nil {
		lock.Close()
		return nil, err
	}
	return j, nil
}

// load finds the newest file, reads it, and opens it to append to.
func (j *journal) load(apply func(record)) error {
	names, err := filepath.Glob(filepath.Join(j.dir, "journal-*"))
	if err != nil {
		return err
	}
	var numbers []int
	for _, name := range names {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), "journal-"), ".log"))
		if err != nil || !strings.HasSuffix(name, ".log") {
			_ = os.Remove(name) // a compaction's temporary file: the old file is whole
			continue
		}
		numbers = append(numbers, n)
	}
	slices.Sort(numbers)
	j.number = 1
	if len(numbers) > 0 {
		j.number = numbers[len(numbers)-1]
		for _, n := range numbers[:len(numbers)-1] {
			_ = os.Remove(journalPath(j.dir, n)) // compacted into the newest: a crash came before its removal
		}
	}
	path := journalPath(j.dir, j.number)
	j.f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		j.f.Close()
		return err
	}
	j.size = j.readRecords(path, data, apply)
	if j.size < int64(len(data)) {
		if err := j.f.Truncate(j.size); err != nil {
			j.f.Close()
			return err
		}
	}
	if len(numbers) == 0 {
		return syncDir(j.dir)
	}
	return nil
}

// readRecords hands every whole record of data to apply, and returns how
// many bytes of it hold them: after a record that is damaged it goes on at
// the next one whole, and a tail with none is left out (the caller cuts it
// off).
func (j *journal) readRecords(path string, data []byte, apply func(record)) int64 {
	for off := 0; off < len(data); {
		if r, n, ok := parseRecord(data[off:]); ok {
			apply(r)
			off += n
			continue
		}
		next := resync(data, off+1)
		if next < 0 {
			j.log.Warn("cut off a torn tail: a record half written when the process stopped",
				"file", path, "offset", off, "bytes", len(data)-off)
			return int64(off)
		}
		j.log.Warn("skipped a damaged record", "file", path, "offset", off, "bytes", next-off)
		off = next
	}
	return int64(len(data))
}

// resync is where the next whole record of data after from begins, or -1.
func resync(data []byte, from int) int {
	for from < len(data) {
		i := bytes.Index(data[from:], recordMagic)
		if i < 0 {
			return -1
		}
		if _, _, ok := parseRecord(data[from+i:]); ok {
			return from + i
		}
		from += i + 1
	}
	return -1
}

// parseRecord decodes the record data begins with, and its length; false
// when data does not begin with a whole, intact record.
func parseRecord(data []byte) (record, int, bool) {
	if len(data) < recordHeaderBytes || !bytes.Equal(data[:4], recordMagic) {
		return record{}, 0, false
	}
	n := binary.LittleEndian.Uint32(data[4:])
	if n > maxRecordBytes || int(n) > len(data)-recordHeaderBytes {
		return record{}, 0, false
	}
	payload := data[recordHeaderBytes : recordHeaderBytes+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(data[8:]) {
		return record{}, 0, false
	}
	r, ok := decodePayload(payload)
	return r, recordHeaderBytes + int(n), ok
}

// decodePayload reads a record's fields.
func decodePayload(p []byte) (r record, ok bool) {
	if len(p) < 9 || p[0] != kindMessage && p[0] != kindDrop {
		return r, false
	}
	r.kind, r.at = p[0], time.Unix(int64(binary.LittleEndian.Uint64(p[1:])), 0)
	p = p[9:]
	seq, n := binary.Uvarint(p)
	if n <= 0 {
		return r, false
	}
	r.seq, p = seq, p[n:]
	for _, field := range []*string{&r.room, &r.epoch, &r.key} {
		size, n := binary.Uvarint(p)
		if n <= 0 || size > uint64(len(p)-n) {
			return r, false
		}
		*field, p = string(p[n:n+int(size)]), p[n+int(size):]
	}
	r.body = p
	return r, true
}
