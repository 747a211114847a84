package main

// Benchmarks: what one message costs to fan out, and what an idle
// connection costs to keep. Run them with
//
//	go test -bench . -benchmem -run '^$'
//
// Whether a busy server still loses nothing is the load test's question
// (load_test.go).
// Clients here are as lean as they can be (hand-written frames, no
// goroutine per idle connection), so that what is measured is the server.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
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
	token := hourToken(b, secret, "Bench", anyRoom)
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
