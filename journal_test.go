package main

// The journal (-data) in this process, with real files: what is read back
// after a torn tail or a damaged byte, that said means on disk, group
// commit, compaction's bound on the disk, and expiry. datadir_test.go has
// the tests with real processes.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// openTestData is a memory broker keeping keep messages a room in dir,
// logging to logs, closed when the test ends. A DIR closed a moment ago may
// still be held for a moment: a child process another test forks meanwhile
// holds a copy of the lock's descriptor until it execs.
func openTestData(t testing.TB, dir string, keep int, idleKeep time.Duration, logs *syncBuffer) *memoryBroker {
	t.Helper()
	b := newMemoryBroker(keep)
	err := b.openData(dir, idleKeep, slog.New(slog.NewTextHandler(logs, nil)))
	for deadline := time.Now().Add(time.Second); errors.Is(err, errDirHeld) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		err = b.openData(dir, idleKeep, slog.New(slog.NewTextHandler(logs, nil)))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	return b
}

// sayAPI publishes message in room as the HTTP API does, and waits until it
// is on disk.
func sayAPI(t testing.TB, b *memoryBroker, room, message, cid string) *post {
	t.Helper()
	p := newPost(chatPayload{Message: message, Name: "api"}, 0)
	if cid != "" {
		p.cid, p.key = cid, cidKey(apiCids, "", cid)
	}
	p.ended = make(chan *fieldError, 1)
	b.publish(room, p)
	select {
	case refused := <-p.ended:
		if refused != nil {
			t.Fatalf("%q refused: %+v", message, refused)
		}
	case <-time.After(recvTimeout):
		t.Fatalf("%q not placed in %v", message, recvTimeout)
	}
	return p
}

// keptMessages are the messages of room's history, oldest first.
func keptMessages(b *memoryBroker, room string) []string {
	h, _ := b.history(room)
	var msgs []string
	for _, e := range h.entries {
		msgs = append(msgs, string(e.json))
	}
	return msgs
}

// TestJournalRecovers damages a file of ten records in the ways a crash or
// a bad disk does, and reads it back: a torn tail is cut off, a damaged
// record costs itself alone, each with its line in the log, and the file
// takes new records after.
func TestJournalRecovers(t *testing.T) {
	t.Parallel()
	var whole []byte
	var starts []int
	for i := range 10 {
		starts = append(starts, len(whole))
		json := fmt.Sprintf(`{"id":"e-%d","message":"%d","name":"A"}`, i+1, i)
		whole = appendRecord(whole, kindMessage, time.Now(), uint64(i+1), "r", "e", "", []byte(json))
	}
	flip := func(at int) func([]byte) []byte {
		return func(b []byte) []byte { b[at] ^= 0x10; return b }
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		lost   []int  // which messages are lost
		log    string // what the log says
	}{
		{"whole", func(b []byte) []byte { return b }, nil, ""},
		{"a torn tail", func(b []byte) []byte { return b[:len(b)-5] }, []int{9}, "cut off a torn tail"},
		{"a torn header", func(b []byte) []byte { return b[:starts[9]+6] }, []int{9}, "cut off a torn tail"},
		{"a byte flipped in a message", flip(starts[4] + 30), []int{4}, "skipped a damaged record"},
		{"a byte flipped in a length", flip(starts[4] + 6), []int{4}, "skipped a damaged record"},
		{"a byte flipped in a magic", flip(starts[4] + 1), []int{4}, "skipped a damaged record"},
		{"a byte flipped in the first", flip(starts[0] + 20), []int{0}, "skipped a damaged record"},
		{"a byte flipped in the last", flip(len(whole) - 3), []int{9}, "cut off a torn tail"},
		{"garbage between records", func(b []byte) []byte {
			return slices.Insert(b, starts[3], []byte("\xff\xferc garbage")...)
		}, nil, "skipped a damaged record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(journalPath(dir, 1), tc.damage(slices.Clone(whole)), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			b := openTestData(t, dir, 100, time.Hour, &logs)
			var want []string
			for i := range 10 {
				if !slices.Contains(tc.lost, i) {
					want = append(want, fmt.Sprintf(`{"id":"e-%d","message":"%d","name":"A"}`, i+1, i))
				}
			}
			if got := keptMessages(b, "r"); !slices.Equal(got, want) {
				t.Fatalf("kept\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if tc.log == "" && strings.Contains(logs.String(), "WARN") || !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("log:\n%s", logs.String())
			}
			p := sayAPI(t, b, "r", "after", "")
			b.close()
			b = openTestData(t, dir, 100, time.Hour, new(syncBuffer))
			if got := keptMessages(b, "r"); len(got) != len(want)+1 || !strings.Contains(got[len(got)-1], p.id) {
				t.Fatalf("after a new message, kept\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

// TestJournalSaidMeansOnDisk reads the file at each said a client gets, and
// at the HTTP API's 200: the message is in it already. The messages of
// several senders share syncs.
func TestJournalSaidMeansOnDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newTestServer(t, options{history: defaultHistory, data: dir, dataKeep: time.Hour, apiKey: []byte(testAPIKey)})
	onDisk := func(id string) bool {
		file, err := os.ReadFile(journalPath(dir, 1))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(file), `"id":"`+id+`"`)
	}
	const senders, each = 4, 50
	conns := make([]*websocket.Conn, senders)
	for k := range conns {
		conns[k] = s.dial(t, "disk")
	}
	for i := range each {
		for k, c := range conns {
			sendText(t, c, chatWithCid(fmt.Sprint(i), fmt.Sprint("S", k), fmt.Sprint(i)))
		}
	}
	for _, c := range conns {
		for range each {
			var f said
			for f.Action != "said" {
				c.SetReadDeadline(time.Now().Add(recvTimeout))
				if err := websocket.JSON.Receive(c, &f); err != nil {
					t.Fatal(err)
				}
			}
			if !onDisk(f.id()) {
				t.Fatalf("said %s before it was on disk", f.id())
			}
		}
	}
	var answer struct{ ID string }
	if code, body := apiCall(t, s, "POST", "/api/rooms/disk/messages", testAPIKey, `{"message":"api","name":"Shop"}`, &answer); code != 200 || !onDisk(answer.ID) {
		t.Fatalf("the API answered %d %s before the message was on disk", code, body)
	}
	j := s.hub.broker.(*memoryBroker).journal
	if syncs := j.syncs.Load(); syncs >= senders*each {
		t.Fatalf("%d syncs for %d messages: no group commit", syncs, senders*each)
	} else {
		t.Logf("%d syncs for %d messages", syncs, senders*each)
	}
}

// TestJournalCompactionBoundsTheDisk says many messages in rooms that keep
// ten: DIR holds one file, within twice the kept history and the slack,
// and a restart has the last ten of each room.
func TestJournalCompactionBoundsTheDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := openTestData(t, dir, 10, time.Hour, new(syncBuffer))
	long := strings.Repeat("x", 500)
	var last *post
	for i := range 600 { // 300 KB: compacted a few times
		last = sayAPI(t, b, fmt.Sprint("room", i%3), fmt.Sprint(i, long), "")
	}
	names, _ := filepath.Glob(filepath.Join(dir, "journal-*"))
	var size int64
	for _, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	live := b.liveBytes()
	if len(names) != 1 || size > 2*live+journalSlack {
		t.Fatalf("%d files, %d bytes, for %d bytes kept", len(names), size, live)
	}
	b.close()
	b = openTestData(t, dir, 10, time.Hour, new(syncBuffer))
	kept := keptMessages(b, "room2") // the last message's
	if len(kept) != 10 || !strings.Contains(kept[9], last.id) {
		t.Fatalf("after a restart, room2 keeps %d, its newest %.40s, want %s", len(kept), kept[len(kept)-1], last.id)
	}
}

// TestJournalExpiry: a history that expires stays gone after a restart,
// and one older than the data's keep is not loaded.
func TestJournalExpiry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := openTestData(t, dir, 10, time.Hour, new(syncBuffer))
	sayAPI(t, b, "gone", "a", "")
	sayAPI(t, b, "old", "b", "")
	b.expire(time.Now().Add(30 * time.Minute)) // nothing yet
	b.mu.Lock()
	b.idle[b.streams["gone"]] = time.Now().Add(-2 * time.Hour)
	b.mu.Unlock()
	b.expire(time.Now())
	sayAPI(t, b, "stays", "c", "") // a round after the drop: it is on disk
	b.close()

	b = openTestData(t, dir, 10, time.Hour, new(syncBuffer))
	if kept := keptMessages(b, "gone"); kept != nil {
		t.Fatalf("an expired room came back: %s", kept)
	}
	if len(keptMessages(b, "old")) != 1 || len(keptMessages(b, "stays")) != 1 {
		t.Fatal("a room kept on disk was lost")
	}
	b.close()
	b = openTestData(t, dir, 10, time.Nanosecond, new(syncBuffer))
	if kept := keptMessages(b, "old"); kept != nil {
		t.Fatalf("a room older than its keep was loaded: %s", kept)
	}
}

// BenchmarkJournalPublish publishes 1,000 messages a second into 50 rooms
// (the rate of bench/compare.sh's rooms scenario), with no members, with
// and without a journal, and reports the process's CPU per message and the
// journal's syncs a second: what -data adds to each message.
//
//	go test -run '^$' -bench JournalPublish -benchtime 3000x -count 3 .
func BenchmarkJournalPublish(b *testing.B) {
	for _, data := range []bool{false, true} {
		b.Run(fmt.Sprint("data=", data), func(b *testing.B) {
			m := newMemoryBroker(defaultHistory)
			if data {
				if err := m.openData(b.TempDir(), time.Hour, slog.New(slog.DiscardHandler)); err != nil {
					b.Fatal(err)
				}
			}
			defer m.close()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			before := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				<-tick.C
				p := newPost(chatPayload{Message: strings.Repeat("m", 100), Name: "bench"}, 0)
				p.cid, p.key = fmt.Sprint(i), cidKey(apiCids, "", fmt.Sprint(i))
				m.publish(fmt.Sprint("room", i%50), p)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/msg")
			if data {
				b.ReportMetric(float64(m.journal.syncs.Load())/b.Elapsed().Seconds(), "syncs/s")
			}
		})
	}
}

// BenchmarkDataLoad times the start of a server whose DIR holds 1,000
// rooms of 100 messages each (-data; issue 32 asks for 2 s at most):
//
//	go test -run '^$' -bench DataLoad -benchtime 5x .
func BenchmarkDataLoad(b *testing.B) {
	dir := b.TempDir()
	var file []byte
	for r := range 1000 {
		for i := range 100 {
			json := fmt.Sprintf(`{"id":"abcdefgh-%d","message":"message %d of a room, about the length of a line of chat","name":"Alice","cid":"c%d"}`, i+1, i, i)
			file = appendRecord(file, kindMessage, time.Now(), uint64(i+1), fmt.Sprint("room", r), "abcdefgh", fmt.Sprint("Alice\nc", i), []byte(json))
		}
	}
	if err := os.WriteFile(journalPath(dir, 1), file, 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m := newMemoryBroker(defaultHistory)
		if err := m.openData(dir, time.Hour, slog.New(slog.DiscardHandler)); err != nil {
			b.Fatal(err)
		}
		if n := m.total.messages.Load(); n != 100_000 {
			b.Fatalf("%d messages loaded", n)
		}
		m.close()
	}
	b.ReportMetric(float64(len(file))/(1<<20), "MiB")
}
