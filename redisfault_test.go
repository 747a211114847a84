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
// out of order; chat goes on within the sender's process whatever Redis
// does; and, when the servers keep histories, every message reaches every
// member by the end, live or on a resume (?since=), or the member was told
// of a gap (history_gap), or its sender that it reached only its own
// process (not_relayed). Without histories, what a process misses while it
// is cut off from Redis is not caught up (docs/protocol.md): delivery
// across processes is then at most once, and only that is checked.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/net/websocket"
)

// The fault scenarios' knobs.
const (
	// faultScale stretches every phase and the wait for stragglers; 1 is
	// what CI runs (the scenarios run in parallel, as many at once as
	// -parallel allows: about 35 s in all on two cores). The
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
			runFaults(t, r, faultScenario{history: true, phases: []faultPhase{
				{name: "normal", mode: passMode(), lasts: 1500 * time.Millisecond},
				{name: "down", mode: cutMode(), lasts: 2 * time.Second, enter: r.stop},
				{name: "back", mode: passMode(), lasts: 3 * time.Second, enter: restart},
			}})
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

	mu      sync.Mutex
	sent    []faultSent
	sendErr error
	said    []string        // ids the sender was told, in order
	starts  []time.Time     // when each phase began
	layers  [2][]layerEvent // /healthz's view of each server's layer
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

// addReader has a member join the room on s, asking for ids or not.
func (run *faultRun) addReader(label string, s *testServer, ids bool) {
	t := run.t
	t.Helper()
	rd := &faultReader{label: label, ids: ids, srv: s, done: make(chan struct{}),
		first: map[int]faultArrival{}, count: map[int]int{}, disorder: map[int]int{}, maxSeq: -1,
		resumed: map[int]bool{}, twice: map[int]bool{}}
	if ids {
		h := s.dialHistory(t, faultRoom, "history")
		if action, _, raw := h.next(); action != "history" {
			t.Fatalf("%s joined with %s", label, raw)
		}
		rd.c = h.c
	} else {
		rd.c = s.dial(t, faultRoom)
	}
	run.readers = append(run.readers, rd)
}

// warmUp has the sender say one message before the script begins, and
// checks that every member gets it: the room spans both processes.
func (run *faultRun) warmUp(sender *websocket.Conn) {
	t := run.t
	t.Helper()
	sendText(t, sender, chat("warm-up", "S"))
	for _, rd := range run.readers {
		var f struct {
			Action  string      `json:"action"`
			Payload chatPayload `json:"payload"`
			ID      string      `json:"id"`
		}
		if raw := recvText(t, rd.c); json.Unmarshal([]byte(raw), &f) != nil || f.Action != "new_chat_message" || f.Payload.Message != "warm-up" {
			t.Fatalf("%s got %s, not the warm-up message", rd.label, raw)
		}
		rd.lastID, rd.resumeAt = f.ID, f.ID // where its ids begin
		rd.c.SetReadDeadline(time.Time{})   // the read loop waits as long as the scenario lasts
	}
	if run.sc.history {
		if raw := recvText(t, sender); !strings.HasPrefix(raw, `{"action":"said"`) {
			t.Fatalf("the sender got %s, not the id of the warm-up message", raw)
		}
		sender.SetReadDeadline(time.Time{})
	}
}

// dialSender has the sender join on a; with history it asks for ids, so
// that it is told the id of every message Redis kept (said, readSaid).
func (run *faultRun) dialSender() *websocket.Conn {
	t := run.t
	t.Helper()
	if !run.sc.history {
		return run.a.dial(t, faultRoom)
	}
	h := run.a.dialHistory(t, faultRoom, "history")
	if action, _, raw := h.next(); action != "history" {
		t.Fatalf("the sender joined with %s", raw)
	}
	return h.c
}

// readSaid collects, until c closes, the ids the sender is told (said);
// anything else a sender gets fails the test.
func (run *faultRun) readSaid(c *websocket.Conn) {
	for {
		var raw string
		if err := websocket.Message.Receive(c, &raw); err != nil {
			return // closed at the end
		}
		var f struct {
			Action  string `json:"action"`
			Payload struct {
				ID string `json:"id"`
			} `json:"payload"`
		}
		run.mu.Lock()
		if json.Unmarshal([]byte(raw), &f) == nil && f.Action == "said" {
			run.said = append(run.said, f.Payload.ID)
		} else if run.sendErr == nil {
			run.sendErr = fmt.Errorf("the sender got %.200s", raw)
		}
		run.mu.Unlock()
	}
}

// send says a numbered message every faultSendEvery until stop: "SEQ
// UNIXNANO", its number and when it was sent. The first goes half a period
// after the script begins, so that no message is sent at the very moment
// a phase changes: the phases last whole periods.
func (run *faultRun) send(c *websocket.Conn, stop chan struct{}) {
	select {
	case <-stop:
		return
	case <-time.After(faultSendEvery / 2):
	}
	tick := time.NewTicker(faultSendEvery)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		if seq > 0 {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
		now := time.Now()
		run.mu.Lock()
		run.sent = append(run.sent, faultSent{at: now, phase: int(run.phase.Load())})
		run.mu.Unlock()
		c.SetWriteDeadline(now.Add(recvTimeout))
		if err := websocket.Message.Send(c, chat(fmt.Sprintf("%d %d", seq, now.UnixNano()), "S")); err != nil {
			run.mu.Lock()
			run.sendErr = fmt.Errorf("message %d: %w", seq, err)
			run.mu.Unlock()
			return
		}
	}
}

// read counts what rd receives until its connection closes.
func (run *faultRun) read(rd *faultReader) {
	for {
		var raw string
		if err := websocket.Message.Receive(rd.c, &raw); err != nil {
			return // closed at the end
		}
		at := time.Now()
		var f struct {
			Action  string      `json:"action"`
			Payload chatPayload `json:"payload"`
			ID      string      `json:"id"`
		}
		seq, ok := -1, false
		if json.Unmarshal([]byte(raw), &f) == nil && f.Action == "new_chat_message" {
			seq, ok = faultSeq(f.Payload.Message)
		}
		rd.mu.Lock()
		switch {
		case f.Action == "history_gap":
			rd.gaps = append(rd.gaps, raw) // the server says it could not bring everything
		case !ok:
			rd.odd = append(rd.odd, raw)
		default:
			rd.take(seq, at, f.ID)
		}
		rd.mu.Unlock()
		select {
		case run.progress <- struct{}{}:
		default:
		}
	}
}

// take counts message seq, received live at at, with its id if any. It
// runs with rd.mu held.
func (rd *faultReader) take(seq int, at time.Time, id string) {
	rd.count[seq]++
	if rd.count[seq] == 1 {
		rd.first[seq] = faultArrival{at: at, id: id}
	}
	if seq < rd.maxSeq {
		rd.disorder[seq]++
		if rd.overtaken == "" {
			rd.overtaken = fmt.Sprintf("%d after %d", seq, rd.maxSeq)
		}
	}
	rd.maxSeq = max(rd.maxSeq, seq)
	if id == "" {
		return
	}
	if rd.lastID != "" {
		lastEpoch, lastSeq := splitID(rd.lastID)
		epoch, n := splitID(id)
		switch {
		case epoch != lastEpoch:
			rd.epochs++
			rd.gapSeen = true
		case n > lastSeq+1:
			rd.idGaps += int(n - lastSeq - 1)
			rd.gapSeen = true
		}
	}
	if !rd.gapSeen {
		rd.resumeAt = id
	}
	rd.lastID = id
}

// splitID splits an id, EPOCH-SEQ.
func splitID(id string) (epoch string, seq uint64) {
	epoch, n, _ := strings.Cut(id, "-")
	seq, _ = strconv.ParseUint(n, 10, 64)
	return epoch, seq
}

// faultSeq reads a message's number from its text, "SEQ UNIXNANO".
func faultSeq(text string) (int, bool) {
	n, _, ok := strings.Cut(text, " ")
	seq, err := strconv.Atoi(n)
	return seq, ok && err == nil && seq >= 0
}

// awaitStragglers waits, d at most, until every member has the last
// message sent: delivery across processes keeps one sender's order, so by
// then nothing sent earlier is still on its way.
func (run *faultRun) awaitStragglers(d time.Duration) {
	run.mu.Lock()
	last := len(run.sent) - 1
	run.mu.Unlock()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		all := true
		for _, rd := range run.readers {
			rd.mu.Lock()
			_, got := rd.first[last]
			rd.mu.Unlock()
			all = all && got
		}
		if all {
			return
		}
		select {
		case <-run.progress:
		case <-deadline.C:
			return
		}
	}
}

// resume is the most a member that asked for ids can do at the end: join
// again (?since=) from the last id before its ids first showed a hole, and
// count what the replay brings that it had not got, and what it brings
// again that had come without an id: a client cannot tell that those are
// messages it already showed.
func (run *faultRun) resume(rd *faultReader) {
	rd.mu.Lock()
	query := "history"
	if rd.resumeAt != "" {
		query = "since=" + rd.resumeAt
	}
	rd.mu.Unlock()
	h := rd.srv.dialHistory(run.t, faultRoom, query)
	action, msgs, raw := h.next()
	if action == "history_gap" {
		var f struct {
			Payload struct {
				Reason string `json:"reason"`
			} `json:"payload"`
		}
		json.Unmarshal([]byte(raw), &f)
		rd.resumeGap = f.Payload.Reason
		action, msgs, raw = h.next()
	}
	if action != "history" {
		run.t.Errorf("%s resumed with %s", rd.label, raw)
		return
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	for _, m := range msgs {
		seq, ok := faultSeq(m.Message)
		switch {
		case !ok || rd.resumed[seq]:
		case rd.count[seq] == 0:
			rd.resumed[seq] = true
			rd.first[seq] = faultArrival{id: m.ID}
		case rd.first[seq].id != "" && rd.first[seq].id != m.ID:
			rd.twice[seq] = true
			// One that came without an id, on its sender's process while
			// Redis was away, comes again with its id: a resume from
			// before it cannot be told otherwise (docs/protocol.md).
		}
	}
	h.c.Close()
}

// pollLayer records, until stop, each change in whether server i's layer is
// connected, as its /healthz says: who noticed a fault, and when.
func (run *faultRun) pollLayer(i int, s *testServer, stop chan struct{}) {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := true
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		resp, err := client.Get(s.URL + "/healthz")
		if err != nil {
			continue
		}
		var h health
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || h.Layer.Connected == last {
			continue
		}
		last = h.Layer.Connected
		run.mu.Lock()
		run.layers[i] = append(run.layers[i], layerEvent{time.Now(), last})
		run.mu.Unlock()
	}
}

// faultRow is what one member got of one phase's messages.
type faultRow struct {
	sent, said, got, withID, resumed, twice, dup, disorder int
	latencies                                              []time.Duration
}

// lost is what the member never got, live or on the resume.
func (r faultRow) lost() int { return r.sent - r.got - r.resumed }

// rows counts, for each phase, what rd got of the messages sent in it.
func (run *faultRun) rows(rd *faultReader, saidSeqs map[int]bool) []faultRow {
	rows := make([]faultRow, len(run.sc.phases))
	rd.mu.Lock()
	defer rd.mu.Unlock()
	for seq, s := range run.sent {
		row := &rows[s.phase]
		row.sent++
		if saidSeqs[seq] {
			row.said++
		}
		a, got := rd.first[seq]
		switch {
		case rd.resumed[seq]:
			row.resumed++
		case got:
			row.got++
			row.latencies = append(row.latencies, a.at.Sub(s.at))
			if a.id != "" {
				row.withID++
			}
		}
		if rd.twice[seq] {
			row.twice++
		}
		row.dup += max(rd.count[seq]-1, 0)
		row.disorder += rd.disorder[seq]
	}
	return rows
}

// saidSeqs maps the ids the sender was told to the messages they are.
func (run *faultRun) saidSeqs() map[int]bool {
	bySeq := map[string]int{}
	for _, rd := range run.readers {
		rd.mu.Lock()
		for seq, a := range rd.first {
			if a.id != "" {
				bySeq[a.id] = seq
			}
		}
		rd.mu.Unlock()
	}
	out := map[int]bool{}
	for _, id := range run.said {
		if seq, ok := bySeq[id]; ok {
			out[seq] = true
		}
	}
	return out
}

// table is the scenario's report: a row per phase and member, then what
// each server's /healthz said, and when.
func (run *faultRun) table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "phase\tmode\tlasted\tmember\tsent\tsaid\tgot\twith id\tresumed\ttwice\tlost\tdup\tdisorder\tp50\tp99\t")
	said := run.saidSeqs()
	perReader := make([][]faultRow, len(run.readers))
	for i, rd := range run.readers {
		perReader[i] = run.rows(rd, said)
	}
	for p, ph := range run.sc.phases {
		for i, rd := range run.readers {
			row := perReader[i][p]
			name, mode, lasted, saidCol := "", "", "", "-"
			if i == 0 {
				name, mode, lasted = ph.name, ph.mode.String(), faultScaled(ph.lasts).String()
			}
			if run.sc.history {
				saidCol = strconv.Itoa(row.said)
			}
			idCols := "-\t-\t-"
			if rd.ids {
				idCols = fmt.Sprintf("%d\t%d\t%d", row.withID, row.resumed, row.twice)
			}
			p50, p99 := percentiles(row.latencies)
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t\n",
				name, mode, lasted, rd.label, row.sent, saidCol, row.got, idCols, row.lost(), row.dup, row.disorder, p50, p99)
		}
	}
	w.Flush()
	fmt.Fprintf(&b, "B is a member on the other process, A one on the sender's; ids: it asked for history. said: ids the sender was told.\n"+
		"resumed: got only by joining again at the end, ?since= the last id before its ids showed a hole; twice: that replay brought it again,\n"+
		"with an id, though it had come without one; lost: never got; dup: came twice live; disorder: came after a later one.\n")
	for _, rd := range run.readers {
		if rd.ids {
			gap := "no gap"
			if rd.resumeGap != "" {
				gap = rd.resumeGap
			}
			fmt.Fprintf(&b, "%s: its ids showed %d missed and %d new epochs; it resumed from %q (%s)\n", rd.label, rd.idGaps, rd.epochs, rd.resumeAt, gap)
		}
		if lost := run.lostSeqs(rd); lost != "" {
			fmt.Fprintf(&b, "%s never got: %s\n", rd.label, lost)
		}
		if rd.overtaken != "" {
			fmt.Fprintf(&b, "%s got messages out of order, first %s\n", rd.label, rd.overtaken)
		}
	}
	for i, name := range []string{"A (the sender's)", "B"} {
		fmt.Fprintf(&b, "layer of %s: %s\n", name, run.layerStory(run.layers[i]))
	}
	return b.String()
}

// lostSeqs lists the messages rd never got, as ranges with the time each
// range began to be sent, relative to its phase: "57-60 (slow+1.32s)".
func (run *faultRun) lostSeqs(rd *faultReader) string {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	missing := func(seq int) bool { _, got := rd.first[seq]; return !got } // resumed ones are there too
	var parts []string
	for seq := 0; seq < len(run.sent); seq++ {
		if !missing(seq) {
			continue
		}
		end := seq
		for end+1 < len(run.sent) && missing(end+1) {
			end++
		}
		s := run.sent[seq]
		at := fmt.Sprintf("%s+%v", run.sc.phases[s.phase].name, s.at.Sub(run.starts[s.phase]).Round(10*time.Millisecond))
		if end == seq {
			parts = append(parts, fmt.Sprintf("%d (%s)", seq, at))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d (%s)", seq, end, at))
		}
		seq = end
	}
	return strings.Join(parts, ", ")
}

// layerStory tells when a server's layer went down and came back, each
// time relative to the phase it happened in.
func (run *faultRun) layerStory(events []layerEvent) string {
	if len(events) == 0 {
		return "connected throughout"
	}
	var parts []string
	for _, e := range events {
		p := 0
		for i, start := range run.starts {
			if !e.at.Before(start) {
				p = i
			}
		}
		word := "down"
		if e.connected {
			word = "up"
		}
		parts = append(parts, fmt.Sprintf("%s at %s+%v", word, run.sc.phases[p].name, e.at.Sub(run.starts[p]).Round(10*time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// percentiles returns the median and the 99th percentile of ds, formatted.
func percentiles(ds []time.Duration) (p50, p99 string) {
	if len(ds) == 0 {
		return "-", "-"
	}
	slices.Sort(ds)
	at := func(q int) string { return roundLatency(ds[(len(ds)-1)*q/100]) }
	return at(50), at(99)
}

// roundLatency shows a latency with two or three significant digits.
func roundLatency(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// toldOfLoss reports whether the sender was told that message seq reached
// only its own process (not_relayed). The broker says so only when its
// backlog is full, which no scenario here comes near.
func (run *faultRun) toldOfLoss(int) bool { return false }

// check asserts what the broker promises (see the top of this file).
func (run *faultRun) check() {
	t := run.t
	if run.sendErr != nil {
		t.Errorf("sender: %v", run.sendErr)
	}
	said := run.saidSeqs()
	for _, rd := range run.readers {
		if len(rd.odd) > 0 {
			t.Errorf("%s got %d frames that are not chat messages, the first %.200s", rd.label, len(rd.odd), rd.odd[0])
		}
		for p, row := range run.rows(rd, said) {
			phase := run.sc.phases[p].name
			if row.dup > 0 {
				t.Errorf("%s, %s: %d messages came twice", rd.label, phase, row.dup)
			}
			if row.disorder > 0 {
				t.Errorf("%s, %s: %d messages came out of order, the first %s", rd.label, phase, row.disorder, rd.overtaken)
			}
			if rd.srv == run.a && row.got < row.sent {
				// Chat within the sender's process goes on, whatever Redis does.
				t.Errorf("%s, on the sender's process, got %d of the %d messages of %s", rd.label, row.got, row.sent, phase)
			}
			if row.twice > 0 {
				t.Errorf("%s, %s: a resume brought %d messages again, under another id", rd.label, phase, row.twice)
			}
		}
		if !run.sc.history {
			continue
		}
		rd.mu.Lock()
		var untold []int
		for seq := range run.sent {
			if _, got := rd.first[seq]; !got && !run.toldOfLoss(seq) && len(rd.gaps) == 0 {
				untold = append(untold, seq)
			}
		}
		rd.mu.Unlock()
		if len(untold) > 0 {
			t.Errorf("%s never got %d messages, and their sender was not told: %v", rd.label, len(untold), untold)
		}
	}
}
