package main

// Redis faults, tried from outside as issue #26 did: two roomchat servers
// share one real redis-server through the fault proxy (faultproxy_test.go),
// with a member on each; a sender on the first says a numbered message
// every 50 ms; the proxy, or redis-server itself, goes through a script of
// phases (normal, slow, stalled, restarted, back); and every member counts
// every message it gets. Each test logs a table (go test -v), a row per
// phase and member: sent, got, lost, duplicated, out of order, latency.
//
// What the tests assert is what the Redis broker promises: the room spans
// both processes before the script begins; nothing comes twice, nothing
// out of order (but a message in flight when Redis lost its data, which
// Redis can no longer know as a copy: faultScenario.lostAt); chat goes on within the sender's process whatever Redis
// does; and, when the servers keep histories, every message reaches every
// member by the end, live or on a resume (?since=), or the member was told
// of a gap (history_gap), or its sender that it reached only its own
// process (not_relayed). Without histories, what a process misses while it
// is cut off from Redis is not caught up (docs/protocol.md): delivery
// across processes is then at most once, and only that is checked.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// The fault scenarios' knobs.
const (
	// faultScale stretches every phase and the wait for stragglers; 1 is
	// what CI runs (the scenarios run in parallel, as many at once as
	// -parallel allows, parallelTests unless given: see TestMain). The
	// stall phases stay longer than today's 3 s I/O timeout (the publisher
	// gives up after it) and shorter than the 15 s in which the subscriber
	// notices silence, so that the tables show who notices and who does not.
	faultScale = 1.0

	// faultSendEvery is the sender's pace, the issue's.
	faultSendEvery = 50 * time.Millisecond

	// faultStragglers is how long, at most, the members are given after
	// the last phase to receive what is still on its way.
	faultStragglers = 3 * time.Second

	// faultRoom is the room every scenario talks in.
	faultRoom = "fault"
)

// faultPhase is one step of a scenario's script: the proxy's mode for a
// while, and something done to redis-server as it begins (stop, start),
// before the proxy changes mode.
type faultPhase struct {
	name  string
	mode  proxyMode
	lasts time.Duration // before faultScale
	enter func()
}

// faultScenario is a script and how the servers run.
type faultScenario struct {
	phases  []faultPhase
	history bool // the servers keep histories (the default, -history 100), and members ask for ids
	// lateCommands: Redis may run commands of a session the sender's
	// process gave up on, after those of the session that followed: it
	// must refuse them, as copies of messages it has (publishScript).
	lateCommands bool
	// lostAt, when not 0, is the phase at whose start Redis loses its
	// data. A message in flight then (sent, its said not come) may have
	// reached the other process before the loss, and is placed again when
	// Redis is back, which no longer knows it: it may come twice, and out
	// of order, there (docs/protocol.md).
	lostAt int
}

// faultScaled is d stretched by faultScale.
func faultScaled(d time.Duration) time.Duration { return time.Duration(float64(d) * faultScale) }

// TestFaultsThroughTheProxy runs each fault through the proxy, with
// history on and off:
//
//   - slow, then stalled: the script, shorter. Redis normal, then
//     its replies 300 ms late (pipelined: the link is long, not narrow),
//     then nothing passing either way (a partition that heals, delivering
//     what it held), then normal again.
//   - a stall that breaks connections: what they carried is lost, and
//     every process must dial again.
//   - one connection stalls: the first the sender's process opened (its
//     only one, which its session may replace), while the other process's
//     works; then it heals, delivering what it held.
func TestFaultsThroughTheProxy(t *testing.T) {
	t.Parallel()
	normal := faultPhase{name: "normal", mode: passMode(), lasts: 1500 * time.Millisecond}
	back := faultPhase{name: "back", mode: passMode(), lasts: 2 * time.Second}
	for _, tc := range []struct {
		name         string
		lateCommands bool
		phases       []faultPhase
	}{
		{"slow then stalled", false, []faultPhase{normal,
			{name: "slow", mode: delayMode(0, 300*time.Millisecond), lasts: 1500 * time.Millisecond},
			{name: "stalled", mode: stallMode(), lasts: 4 * time.Second}, back}},
		{"stall breaks connections", false, []faultPhase{normal,
			{name: "stalled", mode: stallDropMode(), lasts: 4 * time.Second}, back}},
		{"one connection stalls", true, []faultPhase{normal,
			{name: "stalled", mode: stallMode().only(1), lasts: 4 * time.Second}, back}},
	} {
		for _, history := range []bool{true, false} {
			t.Run(tc.name+"/"+historyName(history), func(t *testing.T) {
				t.Parallel()
				r := startRedis(t, "")
				runFaults(t, r, faultScenario{history: history, lateCommands: tc.lateCommands, phases: tc.phases})
			})
		}
	}
}

// TestFaultRedisRestart kills redis-server mid-conversation and starts it
// again on the same port, with its data (append-only file, fsync'd at
// every write) or without. The servers keep histories, whose streams are
// the data that may survive.
func TestFaultRedisRestart(t *testing.T) {
	t.Parallel()
	for _, kept := range []bool{true, false} {
		name := "data lost"
		var persist []string
		if kept {
			name, persist = "data kept", []string{"--appendonly", "yes", "--appendfsync", "always"}
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := startRedis(t, "", persist...)
			restart := func() {
				r.start()
				// The room's stream and its epoch are all the data there is.
				if keys, _ := r.do(t, "DBSIZE").(int64); (keys > 0) != kept {
					t.Fatalf("redis-server restarted with %d keys", keys)
				}
			}
			// While it is down the proxy refuses connections too, as
			// redis-server's closed port does, so that nothing reaches the
			// new redis-server before restart has counted its keys.
			sc := faultScenario{history: true, phases: []faultPhase{
				{name: "normal", mode: passMode(), lasts: 1500 * time.Millisecond},
				{name: "down", mode: cutMode(), lasts: 2 * time.Second, enter: r.stop},
				{name: "back", mode: passMode(), lasts: 3 * time.Second, enter: restart},
			}}
			if !kept {
				sc.lostAt = 1
			}
			runFaults(t, r, sc)
		})
	}
}

// historyName names a subtest by whether the servers keep histories.
func historyName(history bool) string {
	if history {
		return "history"
	}
	return "no history"
}

// faultSent is one message of the sender's.
type faultSent struct {
	at    time.Time
	phase int
}

// faultArrival is a message's first arrival at a member.
type faultArrival struct {
	at time.Time
	id string // "" without history, or when it came without an id
}

// faultReader is one member, counting what it receives.
type faultReader struct {
	label string // who and where: "B" is on the other process, "A" on the sender's
	ids   bool   // asked for history: messages come with ids
	srv   *testServer
	c     *websocket.Conn
	done  chan struct{} // closed when its read loop ends

	mu        sync.Mutex
	first     map[int]faultArrival
	count     map[int]int // deliveries of each message
	disorder  map[int]int // per message: it came after one sent later
	overtaken string      // the first time one did: "47 after 93"
	maxSeq    int         // the highest message received so far
	lastID    string      // the last id received
	idGaps    int         // messages the ids show were missed
	epochs    int         // changes of epoch the ids show
	resumeAt  string      // the last id before the ids first showed a gap or a new epoch
	gapSeen   bool
	resumed   map[int]bool // messages got only from the final resume
	twice     map[int]bool // messages the final resume brought again, with an id they had come without
	resumeGap string       // the history_gap of the final resume, if any
	odd       []string     // frames that are not what a member should get
	gaps      []string     // the history_gap frames it was told live
}

// faultRun is one scenario running.
type faultRun struct {
	t        *testing.T
	sc       faultScenario
	a, b     *testServer
	aConns   int64 // a's connections through the proxy are the first aConns
	readers  []*faultReader
	progress chan struct{} // a reader got something
	phase    atomic.Int32

	mu       sync.Mutex
	sent     []faultSent
	sendErr  error
	said     []string        // ids the sender was told, in order
	starts   []time.Time     // when each phase began
	lost     time.Time       // when Redis had lost its data (lostAt)
	saidThen int             // how many of said had come by then
	layers   [2][]layerEvent // /healthz's view of each server's layer
}

// layerEvent is a change in whether a server's layer is connected.
type layerEvent struct {
	at        time.Time
	connected bool
}

// runFaults runs a scenario against r, logs its table, and asserts what
// the broker promises (check).
func runFaults(t *testing.T, r *redisServer, sc faultScenario) {
	proxy := startFaultProxy(t, fmt.Sprintf("127.0.0.1:%d", r.port))
	opts := options{redis: proxy.url()}
	if sc.history {
		opts.history = defaultHistory
	}
	run := &faultRun{t: t, sc: sc, progress: make(chan struct{}, 1)}
	run.a = newTestServer(t, opts)
	run.aConns = proxy.accepted.Load() // it dials Redis before it serves: connections 1 to aConns are its
	run.b = newTestServer(t, opts)

	// The members join before the sender: each is in the room, on both
	// processes, by the time its dial returns.
	run.addReader("B", run.b, false)
	run.addReader("A", run.a, false)
	if sc.history {
		run.addReader("B ids", run.b, true)
		run.addReader("A ids", run.a, true)
	}
	sender := run.dialSender()
	run.warmUp(sender)
	senderDone := make(chan struct{})
	if sc.history {
		go func() { defer close(senderDone); run.readSaid(sender) }()
	} else {
		close(senderDone) // nothing to read: a sender without ids is told nothing
	}
	for _, rd := range run.readers {
		go func() { defer close(rd.done); run.read(rd) }()
	}

	// The pollers and the sender stop however this returns (a failed
	// restart ends the test early), and the sender before the stragglers
	// are waited for.
	stopPolling, stopSending := make(chan struct{}), make(chan struct{})
	stopPolls, stopSends := sync.OnceFunc(func() { close(stopPolling) }), sync.OnceFunc(func() { close(stopSending) })
	defer stopPolls()
	defer stopSends()
	var polling sync.WaitGroup
	for i, s := range []*testServer{run.a, run.b} {
		polling.Add(1)
		go func() { defer polling.Done(); run.pollLayer(i, s, stopPolling) }()
	}
	sending := make(chan struct{})
	go func() { defer close(sending); run.send(sender, stopSending) }()
	for i, ph := range sc.phases {
		run.mu.Lock()
		run.starts = append(run.starts, time.Now())
		run.mu.Unlock()
		run.phase.Store(int32(i))
		if ph.enter != nil {
			ph.enter()
		}
		if sc.lostAt > 0 && i == sc.lostAt {
			run.mu.Lock()
			run.lost, run.saidThen = time.Now(), len(run.said)
			run.mu.Unlock()
		}
		proxy.set(ph.mode)
		<-time.After(faultScaled(ph.lasts) - time.Since(run.starts[i]))
	}
	stopSends()
	<-sending
	end := time.Now()
	run.awaitStragglers(faultScaled(faultStragglers))
	waited := time.Since(end)
	stopPolls()
	polling.Wait()

	for _, rd := range run.readers {
		if rd.ids {
			run.resume(rd)
		}
	}
	sender.Close()
	<-senderDone
	for _, rd := range run.readers {
		rd.c.Close()
		<-rd.done
	}
	t.Logf("%s; the sender's process opened connections 1 to %d; stragglers waited for %v\n%s",
		historyName(sc.history), run.aConns, waited.Round(time.Millisecond), run.table())
	run.check()
}
