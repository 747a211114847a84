package main

// Benchmarks and the load test: what one message costs to fan out, what an
// idle connection costs to keep, and whether a busy server still loses
// nothing. Run them with
//
//	go test -bench . -benchmem -run '^$'
//	ROOMCHAT_LOAD=1 go test -run TestLoad -v
//
// Clients here are as lean as they can be (hand-written frames, no
// goroutine per idle connection), so that what is measured is the server.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// benchHistory is the -history the broadcast benchmarks run with:
// ROOMCHAT_BENCH_HISTORY, or none.
var benchHistory, _ = strconv.Atoi(os.Getenv("ROOMCHAT_BENCH_HISTORY"))

// benchData, when ROOMCHAT_BENCH_DATA is set, has the broadcast benchmarks
// keep their history on disk too (-data, in a temporary DIR): what the
// journal costs beside the same -history.
var benchData = os.Getenv("ROOMCHAT_BENCH_DATA") != ""

// BenchmarkBroadcast sends chat messages from one member of a room to the
// rest, in bursts of 32 (well inside the send queue), and waits for every
// receiver to read every frame. It reports delivered frames a second and
// allocations per delivered frame; the clients allocate nothing per frame,
// so the allocations are the server's.
func BenchmarkBroadcast(b *testing.B) {
	for _, members := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			benchmarkBroadcast(b, members)
		})
	}
}

func benchmarkBroadcast(b *testing.B, members int) {
	opts := options{history: benchHistory}
	if benchData {
		opts.data, opts.dataKeep = b.TempDir(), defaultDataKeep
	}
	s := newTestServer(b, opts)
	const burst = 32
	var remaining atomic.Int64
	done := make(chan struct{}, 1)
	for range members - 1 {
		r := dialRaw(b, s.wsURL("bench"))
		r.SetDeadline(time.Time{})
		go r.countFrames(func() {
			if remaining.Add(-1) == 0 {
				done <- struct{}{}
			}
		})
	}
	sender := dialRaw(b, s.wsURL("bench"))
	sender.SetDeadline(time.Time{})
	msg := clientFrame(true, websocket.TextFrame, chat(strings.Repeat("m", 100), "bench"))
	s.waitHealth(b, func(h health) bool { return h.Connections == members })

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(burst, b.N-sent)
		remaining.Store(int64(n * (members - 1)))
		for range n {
			if _, err := sender.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		<-done
		sent += n
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)

	frames := float64(b.N) * float64(members-1)
	b.ReportMetric(frames/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/frames, "allocs/frame")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/frames, "ns/frame")
}

// BenchmarkDecode is one new_chat_message through decoding and validation.
func BenchmarkDecode(b *testing.B) {
	data := []byte(`{"action":"new_chat_message","payload":{"message":"Hello everyone!","name":"Alice"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := decode(data); errs != nil {
			b.Fatal(errs)
		}
	}
}

// BenchmarkOnSpareStack is the price of running a message's handling on a
// borrowed stack (smallstack.go says why).
func BenchmarkOnSpareStack(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		onSpareStack(func() {})
	}
}

// BenchmarkIdleConnections measures what the server holds for each idle
// connection: 5,000 of them, 100 per room, each joined and then silent. The
// server runs in a child process (this test binary again), so that its
// numbers are not mixed with the clients'. It reports heap plus stacks, the
// stacks alone, and RSS, in KiB per connection: first for connections that
// never sent a frame, then again after each has sent one ping, which grows
// its goroutine's stack (smallstack.go says why).
func BenchmarkIdleConnections(b *testing.B) {
	const conns = 5000
	for range b.N {
		child := startServerProcess(b)
		base := child.mem(b)
		clients := make([]*rawConn, conns)
		for i := range clients {
			clients[i] = dialRaw(b, fmt.Sprintf("ws://%s/ws/chat/idle%d/", child.addr, i/100))
		}
		waitFor(b, func() string { return "the child to count every connection" }, func() bool {
			return child.mem(b).Connections == conns
		})
		report := func(label string, m childMem) {
			perConn := func(after, before uint64) float64 { return float64(after-before) / conns / 1024 }
			b.ReportMetric(perConn(m.HeapInuse+m.StackInuse, base.HeapInuse+base.StackInuse), label+"heap+stack-KiB/conn")
			b.ReportMetric(perConn(m.StackInuse, base.StackInuse), label+"stack-KiB/conn")
			b.ReportMetric(perConn(m.RSS, base.RSS), label+"RSS-KiB/conn")
		}
		report("", child.mem(b))

		ping := clientFrame(true, websocket.TextFrame, `{"action":"ping"}`)
		for _, c := range clients {
			c.SetDeadline(time.Now().Add(recvTimeout))
			if _, err := c.Write(ping); err != nil {
				b.Fatal(err)
			}
			if op, data := c.readFrame(b); op != websocket.TextFrame || string(data) != pong {
				b.Fatalf("got %q, want a pong", data)
			}
		}
		report("pinged-", child.mem(b))
	}
}

// TestLoad is the bounded load test: 1,000 connections in 100 rooms, each
// sending 2 messages a second for 10 s. Every receiver checks each sender's
// messages arrive once each and in order; it reports p50 and p99 delivery
// latency. It runs with ROOMCHAT_LOAD=1, and always in CI, so that go test
// stays quick on a laptop.
func TestLoad(t *testing.T) {
	if os.Getenv("ROOMCHAT_LOAD") == "" && os.Getenv("CI") != "true" {
		t.Skip("set ROOMCHAT_LOAD=1 to run the load test (about 15 s)")
	}
	const (
		rooms    = 100
		perRoom  = 10
		rate     = 2 // messages a second per connection
		duration = 10 * time.Second
	)
	s := newTestServer(t, options{rate: defaultRate})
	// A member's fields belong to its reader goroutine until readers.Wait,
	// except got, which the test watches meanwhile.
	type member struct {
		id      int
		conn    *websocket.Conn
		last    map[int]int // sender id -> last sequence number seen
		lat     []time.Duration
		got     atomic.Int64
		err     error // the reader's
		sendErr error // the sender's
	}
	var members []*member
	for i := range rooms * perRoom {
		members = append(members, &member{id: i, conn: s.dial(t, fmt.Sprintf("load%d", i/perRoom)), last: map[int]int{}})
	}
	s.waitHealth(t, func(h health) bool { return h.Connections == rooms*perRoom })

	// Messages carry "sender:seq:unixnano" so a receiver can check them.
	var readers sync.WaitGroup
	for _, m := range members {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				var text string
				if err := websocket.Message.Receive(m.conn, &text); err != nil {
					return // closed at the end
				}
				var f struct{ Payload chatPayload }
				json.Unmarshal([]byte(text), &f)
				var from, seq int
				var sentAt int64
				if _, err := fmt.Sscanf(f.Payload.Message, "%d:%d:%d", &from, &seq, &sentAt); err != nil {
					m.err = fmt.Errorf("member %d got %q", m.id, text)
					continue
				}
				if from/perRoom != m.id/perRoom || from == m.id {
					m.err = fmt.Errorf("member %d got a message from %d", m.id, from)
				}
				if prev, seen := m.last[from]; (seen && seq != prev+1) || (!seen && seq != 0) {
					m.err = fmt.Errorf("member %d: from %d, message %d after %d", m.id, from, seq, prev)
				}
				m.last[from] = seq
				m.lat = append(m.lat, time.Since(time.Unix(0, sentAt)))
				m.got.Add(1)
			}
		}()
	}

	perSender := int(rate * duration.Seconds())
	var senders sync.WaitGroup
	for _, m := range members {
		senders.Add(1)
		go func() {
			defer senders.Done()
			// Start at a random point within the first interval, then
			// keep to the rate (open loop: no waiting for replies).
			tick := time.Second / rate
			time.Sleep(time.Duration(m.id*7919%1000) * tick / 1000)
			next := time.Now()
			for seq := range perSender {
				body := fmt.Sprintf("%d:%d:%d", m.id, seq, time.Now().UnixNano())
				m.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := websocket.Message.Send(m.conn, chat(body, strconv.Itoa(m.id))); err != nil {
					m.sendErr = err
					return
				}
				next = next.Add(tick)
				time.Sleep(time.Until(next))
			}
		}()
	}
	senders.Wait()
	// Every receiver must get perSender messages from each of the others.
	want := perSender * (perRoom - 1)
	waitFor(t, func() string { return "every message to arrive" }, func() bool {
		for _, m := range members {
			if m.got.Load() < int64(want) {
				return false
			}
		}
		return true
	})
	for _, m := range members {
		m.conn.Close()
	}
	readers.Wait()

	var all []time.Duration
	for _, m := range members {
		if m.err != nil || m.sendErr != nil {
			t.Error(m.err, m.sendErr)
		}
		if len(m.lat) != want {
			t.Errorf("member %d got %d messages, want %d", m.id, len(m.lat), want)
		}
		all = append(all, m.lat...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[int(math.Ceil(p*float64(len(all))))-1] }
	h := s.health(t)
	t.Logf("%d connections in %d rooms, %d msg/s each for %v: %d deliveries, p50 %v, p99 %v, max %v; dropped %d",
		rooms*perRoom, rooms, rate, duration, len(all), pct(0.50), pct(0.99), all[len(all)-1], h.SlowClientsDropped)
}

// ---- helpers ----

// countFrames reads server frames until the connection ends, calling got
// for each. It allocates nothing per frame.
func (c *rawConn) countFrames(got func()) {
	for {
		_, n, err := c.nextHeader()
		if err != nil {
			return
		}
		if _, err := c.r.Discard(int(n)); err != nil {
			return
		}
		got()
	}
}

// childServer is roomchat running in a child process.
type childServer struct {
	addr string
}

// childMem is what the child reports about itself.
type childMem struct {
	HeapInuse, StackInuse, RSS uint64
	Connections                int
	CPU                        time.Duration // user and system, all threads, since it started
}

// cpuTime is the CPU time this process has used, all its threads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverProcessEnv makes this test binary run roomchat instead of tests.
const serverProcessEnv = "ROOMCHAT_CHILD_SERVER"

// heapProfileEnv names a file for the child's heap profile, written each
// time it is asked for its memory: where every KiB of a connection goes.
//
//	ROOMCHAT_HEAP_PROFILE=/tmp/heap.prof go test -run '^$' -bench IdleConnections
//	go tool pprof -sample_index=inuse_space -top /tmp/heap.prof
const heapProfileEnv = "ROOMCHAT_HEAP_PROFILE"

// runChildServer serves roomchat on a loopback port, prints the port, and
// adds GET /mem for the benchmark. It exits when its stdin closes.
func runChildServer() {
	profile := os.Getenv(heapProfileEnv)
	if profile != "" {
		runtime.MemProfileRate = 1 // every allocation, so that small ones add up exactly
	}
	// It logs as the real server does (text, at info), though to nowhere:
	// formatting a log line takes stack too.
	h := newHub(newMemoryBroker(defaultHistory), newRateLimit(0), slog.New(slog.NewTextHandler(io.Discard, nil)))
	secret, err := tokenSecretFrom(os.LookupEnv) // as the real server reads them
	if err != nil {
		panic(err)
	}
	apiKey, err := apiKeyFrom(os.LookupEnv)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", newMux(h, options{secret: secret, apiKey: apiKey}, nil))
	mux.HandleFunc("GET /mem", func(w http.ResponseWriter, r *http.Request) {
		cpu := cpuTime() // before the collection below, which is this call's
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_, conns := h.counts()
		if profile != "" {
			if err := writeHeapProfile(profile); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		writeJSON(w, http.StatusOK, childMem{HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, RSS: readRSS(), Connections: conns, CPU: cpu})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr())
	go http.Serve(ln, mux)
	io.Copy(io.Discard, os.Stdin)
}

// writeHeapProfile writes the heap profile of this process to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startServerProcess starts the child, with env added to its environment,
// and stops it when the benchmark ends.
func startServerProcess(b *testing.B, env ...string) *childServer {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), serverProcessEnv+"=1"), env...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("child server: %v", err)
	}
	return &childServer{addr: strings.TrimSpace(line)}
}

// mem asks the child how much memory it holds, after a garbage collection.
func (c *childServer) mem(b *testing.B) childMem {
	var m childMem
	getJSON(b, "http://"+c.addr+"/mem", &m)
	return m
}

// readRSS returns this process's resident set size in bytes (Linux).
func readRSS() uint64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib * 1024
		}
	}
	return 0
}

// BenchmarkRoomHistory measures what a room's full history holds in
// memory: 1,000 histories of 100 messages, each 100 characters from a
// 5-character name, as a busy chat has them. It reports bytes per room.
func BenchmarkRoomHistory(b *testing.B) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		rooms := make([]history, 1000)
		msg := chatPayload{Message: strings.Repeat("x", 100), Name: "Alice"}
		for i := range rooms {
			rooms[i] = newHistory(defaultHistory, new(historyTotal))
			for range defaultHistory {
				rooms[i].place(newPost(msg, 1))
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(rooms)), "bytes/room")
		runtime.KeepAlive(rooms)
	}
}

// BenchmarkDeliveryHistogram is what the delivery histogram adds to one
// batch: the clock read as a member's queue begins (noteQueued),
// and after the write, the clock read again and the observation, into the
// one histogram every writer shares. One op is one batch.
func BenchmarkDeliveryHistogram(b *testing.B) {
	var h histogram
	b.RunParallel(func(pb *testing.PB) {
		c := &client{}
		for pb.Next() {
			noteQueued(c)
			h.wrote(c.queuedAt, nil)
		}
	})
}

// BenchmarkMetricsScrape is one scrape of a server with 1,000 rooms, each
// with one member and a history: the scrape counts the histories' messages
// under the hub's lock (hub.historyTotals).
func BenchmarkMetricsScrape(b *testing.B) {
	s := newTestServer(b, options{history: defaultHistory})
	for i := range 1000 {
		dialRaw(b, s.wsURL(strconv.Itoa(i))).SetDeadline(time.Time{})
	}
	b.ReportAllocs()
	for b.Loop() {
		writeMetrics(s.hub, s.limit)
	}
}

// BenchmarkPublishInto100 is what one message into a room of 100 costs the
// server, said by a member or published through the HTTP API: the server
// is a child process, and its own CPU time is reported per delivery. Both
// send 50 messages a second (under the API's rate), each 100 characters,
// and wait for all 99 receivers to have each.
//
//	go test -run '^$' -bench PublishInto100 -benchtime 500x -count 6
func BenchmarkPublishInto100(b *testing.B) {
	const key = "bench-api-key-0123456789"
	for _, via := range []string{"member", "api"} {
		b.Run("via="+via, func(b *testing.B) {
			child := startServerProcess(b, apiKeyEnv+"="+key)
			url := "ws://" + child.addr + "/ws/chat/bench/"
			got := make(chan struct{}, 99)
			for range 99 {
				r := dialRaw(b, url)
				r.SetDeadline(time.Time{})
				go r.countFrames(func() { got <- struct{}{} })
			}
			text := strings.Repeat("m", 100)
			send := func() {
				body := `{"message":"` + text + `","name":"bench"}`
				req, _ := http.NewRequest("POST", "http://"+child.addr+"/api/rooms/bench/messages", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("publish: %s", resp.Status)
				}
			}
			if via == "member" {
				sender := dialRaw(b, url)
				sender.SetDeadline(time.Time{})
				frame := clientFrame(true, websocket.TextFrame, chat(text, "bench"))
				send = func() {
					if _, err := sender.Write(frame); err != nil {
						b.Fatal(err)
					}
				}
			}
			waitFor(b, func() string { return "the child to count every member" }, func() bool { return child.mem(b).Connections >= 99 })
			tick := time.NewTicker(time.Second / 50)
			defer tick.Stop()
			before := child.mem(b).CPU
			b.ResetTimer()
			for range b.N {
				<-tick.C
				send()
				for range 99 {
					<-got
				}
			}
			b.StopTimer()
			used := child.mem(b).CPU - before
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N*99), "server-ns/delivery")
		})
	}
}

// BenchmarkHandshakes opens and closes WebSockets one after another, with
// and without a token to check, and reports the server's CPU time per
// handshake (the server is a child process).
//
//	go test -run '^$' -bench Handshakes -benchtime 10000x -count 6
func BenchmarkHandshakes(b *testing.B) {
	secret := []byte("bench-token-secret-0123456789abcdef")
	token, err := mintToken(secret, tokenClaims{Name: "Bench", Rooms: []string{anyRoom}, Expires: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for _, tokens := range []bool{false, true} {
		b.Run(fmt.Sprintf("tokens=%v", tokens), func(b *testing.B) {
			var env []string
			if tokens {
				env = append(env, tokenSecretEnv+"="+string(secret))
			}
			child := startServerProcess(b, env...)
			req, _ := http.NewRequest("GET", "http://"+child.addr+"/ws/chat/storm/", nil)
			setUpgradeHeaders(req.Header)
			if tokens {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			var handshake bytes.Buffer
			req.Write(&handshake)
			before := child.mem(b).CPU
			b.ResetTimer()
			for range b.N {
				conn, err := net.Dial("tcp", child.addr)
				if err != nil {
					b.Fatal(err)
				}
				conn.SetDeadline(time.Now().Add(recvTimeout))
				if _, err := conn.Write(handshake.Bytes()); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
					b.Fatalf("handshake: %v %v", resp, err)
				}
				conn.Close()
			}
			b.StopTimer()
			used := child.mem(b).CPU - before
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N)/1000, "server-µs/handshake")
		})
	}
}
