// Command loadchat drives a roomchat-protocol server (docs/protocol.md in the roomchat repository),
// or Centrifugo (-proto centrifugo, centrifugo.go), and prints one JSON line of results.
//
//	loadchat -url ws://127.0.0.1:8001/ws/chat/ -rooms 10 -clients 50 -rate 2 -duration 10s -size 100 [-pid PID]
//	loadchat -url ... -rooms 1 -clients 5000 -senders 20 -rate 1 -pid PID   # a big room, 20 of its members talking
//	loadchat -url ... -idle 5000 -rooms 50 -pid PID     # KiB of server RSS per idle connection
//	loadchat -proto centrifugo -url ws://127.0.0.1:8003/connection/websocket ...
//	loadchat -url ... -check [-pid PID]                  # protocol conformance checks (check.go)
//	loadchat -freeport                                   # print a free 127.0.0.1 TCP port
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

type tags []string

func (t *tags) String() string     { return strings.Join(*t, ",") }
func (t *tags) Set(s string) error { *t = append(*t, s); return nil }

var (
	protoName = flag.String("proto", "roomchat", "wire protocol: roomchat (docs/protocol.md) or centrifugo (Centrifugo's JSON protocol)")
	baseURL   = flag.String("url", "ws://127.0.0.1:8001/ws/chat/", "roomchat: room URL prefix, the room name and '/' are appended; centrifugo: the WebSocket endpoint (…/connection/websocket)")
	nRooms    = flag.Int("rooms", 10, "rooms (named r0..rN-1; Centrifugo channels chat:r0..)")
	nClients  = flag.Int("clients", 50, "clients per room")
	nSenders  = flag.Int("senders", 0, "clients of each room that send (its first N); 0: all of them")
	rate      = flag.Float64("rate", 2, "messages/s sent by each sending client (open loop)")
	history   = flag.Bool("history", false, "roomchat: ask for the room's history (?history), so that messages come with ids, as Centrifugo's recovery gives offsets")
	duration  = flag.Duration("duration", 10*time.Second, "send window")
	size      = flag.Int("size", 100, "bytes of payload.message")
	pid       = flag.Int("pid", 0, "server PID for CPU and RSS readings (optional)")
	url2      = flag.String("url2", "", "a second server sharing the same rooms (-redis): every other client of each room dials it")
	pid2      = flag.Int("pid2", 0, "the second server's PID: its CPU counts as server CPU too")
	redisPID  = flag.Int("redispid", 0, "a Redis PID whose CPU is reported apart (redis_cpu_*)")
	origin    = flag.String("origin", "", "Origin header to send (default none)")
	idle      = flag.Int("idle", 0, "idle mode: open N idle connections spread over -rooms, report KiB/conn (needs -pid)")
	idleWait  = flag.Duration("idlewait", 3*time.Second, "idle mode: wait before reading RSS")
	drain     = flag.Duration("drain", 2*time.Second, "longest wait for stragglers after the send window")
	dialConc  = flag.Int("dialconc", 50, "concurrent dials")
	check     = flag.Bool("check", false, "run protocol conformance checks instead of load")
	freePort  = flag.Bool("freeport", false, "print a free TCP port on 127.0.0.1 and exit")
	progress  = flag.Duration("progress", 0, "print sent/delivered/server CPU to stderr at this interval (0 = off)")
	cpuProf   = flag.String("cpuprofile", "", "write a CPU profile of loadchat itself to this file")
	extra     tags
)

var totalSent atomic.Int64

// dialFailed counts the connections that did not open or did not join.
var dialFailed atomic.Int64

var errDetail sync.Map // name -> *atomic.Int64

func countErr(name string) {
	v, _ := errDetail.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func errSummary() (int64, map[string]int64) {
	m, total := map[string]int64{}, int64(0)
	errDetail.Range(func(k, v any) bool {
		n := v.(*atomic.Int64).Load()
		m[k.(string)] = n
		total += n
		return true
	})
	return total, m
}

// proto is the wire protocol of -proto.
var proto protocol

type client struct {
	id, room, idx int // idx: position in its room
	ws            *websocket.Conn
	wmu           sync.Mutex // one writer at a time: the sender, or a reader answering a ping
	nextID        uint32     // Centrifugo: the next command's id
	sent          int64
	ready         chan struct{} // the answer to proto.readyFrame came
	seen          [][]uint64    // per sender idx: bitset of seqs received
	maxSeq        []int64       // per sender idx: highest seq received

	// -history: when each message still waiting for its said was sent,
	// oldest first (a sender's said frames come in the order it sent).
	smu    sync.Mutex
	sentAt []int64
}

// saidHist is the time from sending a chat message to its said (-history).
var saidHist hist

// noteSent records when a message was sent, for its said.
func (c *client) noteSent(ns int64) {
	c.smu.Lock()
	c.sentAt = append(c.sentAt, ns)
	c.smu.Unlock()
}

// noteSaid measures the oldest message waiting for its said.
func (c *client) noteSaid(now int64) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if len(c.sentAt) > 0 {
		saidHist.add(now - c.sentAt[0])
		c.sentAt = c.sentAt[1:]
	}
}

// write sends one text frame.
func (c *client) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// signalReady notes the answer to the readiness frame.
func (c *client) signalReady() {
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

type run struct {
	hist                  hist
	delivered, dup, reord atomic.Int64
	frozen, stopping      atomic.Bool
	firstError            atomic.Value
}

// connEnded counts a connection that ended during the run.
func (r *run) connEnded(err error) {
	if r.stopping.Load() {
		return
	}
	name := "conn_closed"
	if ce, ok := err.(*websocket.CloseError); ok {
		name = fmt.Sprintf("close_%d", ce.Code)
	}
	countErr(name)
}

func dialer() *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096,
		WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{}}
}

func header() http.Header {
	h := http.Header{}
	if *origin != "" {
		h.Set("Origin", *origin)
	}
	return h
}

// dialAll opens the connections with bounded concurrency, each joining its
// room (proto.join); failed ones stay nil, counted by why.
func dialAll(cs []*client) {
	d, h := dialer(), header()
	next := make(chan *client)
	var wg sync.WaitGroup
	for range *dialConc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				ws, resp, err := d.Dial(proto.url(c), h)
				if err != nil {
					countErr(dialError(err, resp))
					dialFailed.Add(1)
					continue
				}
				c.ws = ws
				if err := proto.join(c); err != nil {
					countErr(err.Error())
					dialFailed.Add(1)
					ws.Close()
					c.ws = nil
				}
			}
		}()
	}
	for _, c := range cs {
		next <- c
	}
	close(next)
	wg.Wait()
}

// deliver accounts one received chat message "<unixnano>:<sender>:<seq>:...".
func (c *client) deliver(r *run, msg, name string, now int64) {
	ts, rest, _ := strings.Cut(msg, ":")
	sid, rest, _ := strings.Cut(rest, ":")
	sq, _, _ := strings.Cut(rest, ":")
	t, e1 := strconv.ParseInt(ts, 10, 64)
	sender, e2 := strconv.Atoi(sid)
	seq, e3 := strconv.ParseInt(sq, 10, 64)
	if e1 != nil || e2 != nil || e3 != nil || seq < 0 || sender < 0 || name != "c"+sid {
		countErr("bad_frame")
		return
	}
	if sender/(*nClients) != c.room {
		countErr("foreign_room") // room isolation broken
		return
	}
	si := sender % *nClients
	if si >= len(c.seen) {
		countErr("bad_frame") // from a member that does not send
		return
	}
	if si == c.idx && !proto.ownCopy() {
		countErr("echo_to_sender") // exclude-sender broken
		return
	}
	word, bit := int(seq/64), uint64(1)<<(seq%64)
	for len(c.seen[si]) <= word {
		c.seen[si] = append(c.seen[si], 0)
	}
	if c.seen[si][word]&bit != 0 {
		r.dup.Add(1)
		return
	}
	c.seen[si][word] |= bit
	if seq < c.maxSeq[si] {
		r.reord.Add(1)
	} else {
		c.maxSeq[si] = seq
	}
	r.delivered.Add(1)
	r.hist.add(now - t)
}

func (c *client) sendLoop(start, end time.Time) {
	interval := time.Duration(float64(time.Second) / *rate)
	next := start.Add(time.Duration(rand.Int64N(int64(interval) + 1)))
	buf := make([]byte, 0, *size+128)
	for seq := 0; next.Before(end); seq++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		buf = proto.chatFrame(buf[:0], c, seq)
		if *history {
			c.noteSent(time.Now().UnixNano())
		}
		if err := c.write(buf); err != nil {
			countErr("write")
			return
		}
		c.sent++
		totalSent.Add(1)
		next = next.Add(interval)
	}
}

// serversCPU is the CPU time so far of the server, or of both servers.
func serversCPU() (float64, error) {
	cpu, err := procCPU(*pid)
	if *pid2 != 0 && err == nil {
		var cpu2 float64
		cpu2, err = procCPU(*pid2)
		cpu += cpu2
	}
	return cpu, err
}

func serverStats(o *obj, cpu0, redis0 float64, window, delivered float64) {
	if *redisPID != 0 {
		if cpu1, err := procCPU(*redisPID); err == nil {
			o.set("redis_cpu_s", round3(cpu1-redis0))
			if delivered > 0 {
				o.set("redis_cpu_us_per_delivery", round3((cpu1-redis0)*1e6/delivered))
			}
		}
	}
	if *pid == 0 {
		return
	}
	if cpu1, err := serversCPU(); err == nil {
		cpu := cpu1 - cpu0
		o.set("server_cpu_s", round3(cpu))
		o.set("server_cpu_util", round3(cpu/window))
		if delivered > 0 {
			o.set("server_cpu_us_per_delivery", round3(cpu*1e6/delivered))
		}
	}
	if rss, err := procRSSMB(*pid); err == nil {
		o.set("server_rss_mb", round3(rss))
	}
}

// sendersPerRoom is how many members of each room send: -senders, or all.
func sendersPerRoom() int {
	if *nSenders <= 0 || *nSenders > *nClients {
		return *nClients
	}
	return *nSenders
}

func loadMode(o *obj) {
	n := *nRooms * *nClients
	senders := sendersPerRoom()
	cs := make([]*client, n)
	for i := range cs {
		// Only senders are tracked: a room of 5,000 with 20 talking keeps 20
		// bitsets a member, not 5,000.
		cs[i] = &client{id: i, room: i / *nClients, idx: i % *nClients, ready: make(chan struct{}, 1),
			seen: make([][]uint64, senders), maxSeq: make([]int64, senders)}
	}
	t0 := time.Now()
	dialAll(cs)
	r := &run{}
	alive := make([]int, *nRooms)
	var live []*client
	for _, c := range cs {
		if c.ws != nil {
			alive[c.room]++
			live = append(live, c)
			go proto.read(c, r)
		}
	}
	// Readiness barrier: an answer proves the server is reading this connection.
	if f := proto.readyFrame(); f != nil {
		for _, c := range live {
			c.write(f)
		}
		deadline := time.After(10 * time.Second)
		for _, c := range live {
			select {
			case <-c.ready:
			case <-deadline:
				countErr("no_pong")
			}
		}
	}
	connectS := time.Since(t0).Seconds()
	time.Sleep(100 * time.Millisecond)

	cpu0, _ := serversCPU()
	redis0, _ := procCPU(*redisPID)
	self0, busy0 := selfCPU(), machineBusy()
	start := time.Now().Add(20 * time.Millisecond)
	end := start.Add(*duration)
	var wg sync.WaitGroup
	if *progress > 0 {
		go func() {
			var lastS, lastD int64
			lastC, lastSelf := cpu0, self0
			for t := range time.Tick(*progress) {
				s, d := totalSent.Load(), r.delivered.Load()
				cpu, self := lastC, selfCPU()
				if *pid != 0 {
					cpu, _ = serversCPU()
				}
				iv := progress.Seconds()
				fmt.Fprintf(os.Stderr, "t=%.1fs sent/s=%.0f delivered/s=%.0f server_cpu=%.2f client_cpu=%.2f errors=%d\n",
					t.Sub(start).Seconds(), float64(s-lastS)/iv, float64(d-lastD)/iv, (cpu-lastC)/iv, (self-lastSelf)/iv, func() int64 { n, _ := errSummary(); return n }())
				lastS, lastD, lastC, lastSelf = s, d, cpu, self
			}
		}()
	}
	for _, c := range live {
		if c.idx < senders {
			wg.Add(1)
			go func() { defer wg.Done(); c.sendLoop(start, end) }()
		}
	}
	wg.Wait()
	// Each message reaches every member of its room but the sender, and the
	// sender too where the server sends it its own copy.
	skipped := int64(1)
	if proto.ownCopy() {
		skipped = 0
	}
	var sent, expected int64
	for _, c := range live {
		sent += c.sent
		expected += c.sent * (int64(alive[c.room]) - skipped)
	}
	stop := time.Now().Add(*drain)
	for r.delivered.Load() < expected && time.Now().Before(stop) {
		time.Sleep(5 * time.Millisecond)
	}
	window := time.Since(start).Seconds()
	r.frozen.Store(true)
	delivered := r.delivered.Load()
	selfCPUs := selfCPU() - self0
	busy := machineBusy() - busy0
	serverCPU, _ := serversCPU()
	serverCPU -= cpu0
	if redis1, err := procCPU(*redisPID); err == nil && *redisPID != 0 {
		serverCPU += redis1 - redis0 // for other_cpu_util: Redis is no noise here
	}

	o.set("mode", "load")
	o.set("proto", *protoName)
	o.set("connections", len(live))
	o.set("connections_wanted", n)
	o.set("rooms", *nRooms)
	o.set("clients_per_room", *nClients)
	o.set("senders_per_room", senders)
	o.set("rate", *rate)
	o.set("messages_per_s", round3(float64(*nRooms*senders)**rate))
	if *history {
		o.set("history", true)
	}
	// Centrifugo sends a publisher its own message back: delivered counts it,
	// one delivery in clients_per_room.
	o.set("own_copy_delivered", proto.ownCopy())
	o.set("size", *size)
	o.set("duration_s", duration.Seconds())
	o.set("connect_s", round3(connectS))
	o.set("sent", sent)
	o.set("expected_deliveries", expected)
	o.set("delivered", delivered)
	o.set("lost", expected-delivered)
	o.set("duplicated", r.dup.Load())
	o.set("reordered", r.reord.Load())
	o.set("deliveries_per_s", round3(float64(delivered)/duration.Seconds()))
	o.set("latency_ms", obj{{"p50", r.hist.quantileMs(.50)}, {"p90", r.hist.quantileMs(.90)},
		{"p99", r.hist.quantileMs(.99)}, {"max", round3(float64(r.hist.maxNs.Load()) / 1e6)}})
	if saidHist.n.Load() > 0 {
		o.set("said_ms", obj{{"p50", saidHist.quantileMs(.50)}, {"p90", saidHist.quantileMs(.90)},
			{"p99", saidHist.quantileMs(.99)}, {"max", round3(float64(saidHist.maxNs.Load()) / 1e6)}})
	}
	o.set("window_s", round3(window))
	serverStats(o, cpu0, redis0, window, float64(delivered))
	o.set("client_cpu_s", round3(selfCPUs))
	o.set("client_cpu_util", round3(selfCPUs/window))
	// Everything else the machine ran meanwhile (other processes): a noise gauge.
	o.set("other_cpu_util", round3(max(0, busy-selfCPUs-serverCPU)/window))
	r.stopping.Store(true)
	total, detail := errSummary()
	o.set("errors", total)
	o.set("error_detail", detail)
	if fe := r.firstError.Load(); fe != nil {
		o.set("first_error_frame", fe)
	}
}

func idleMode(o *obj) {
	if *pid == 0 {
		fmt.Fprintln(os.Stderr, "loadchat: -idle needs -pid")
		os.Exit(2)
	}
	before, err := procRSSMB(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadchat:", err)
		os.Exit(1)
	}
	rooms := max(*nRooms, 1)
	t0 := time.Now()
	cs, ok := dialIdle(*idle, rooms)
	connectS := time.Since(t0).Seconds()
	// Every connection is read while it idles: Centrifugo's pings are
	// answered, and a server that drops idle connections is counted.
	r := &run{}
	for _, c := range cs {
		if c.ws != nil {
			go proto.read(c, r)
		}
	}
	time.Sleep(*idleWait)
	after, _ := procRSSMB(*pid)
	r.stopping.Store(true)
	runtime.KeepAlive(cs) // unreachable connections would be closed by the collector
	o.set("mode", "idle")
	o.set("proto", *protoName)
	o.set("connections", ok)
	o.set("connections_wanted", *idle)
	o.set("rooms", rooms)
	o.set("connect_s", round3(connectS))
	if ok > 0 && connectS > 0 {
		// Connections that joined a second, one dial after another over
		// -dialconc at a time: the WebSocket handshake, and Centrifugo's
		// connect and subscribe.
		o.set("handshakes_per_s", round3(float64(ok)/connectS))
	}
	o.set("server_rss_before_mb", round3(before))
	o.set("server_rss_after_mb", round3(after))
	if ok > 0 {
		o.set("kib_per_conn", round3((after-before)*1024/float64(ok)))
	}
	if cpu, err := procCPU(*pid); err == nil {
		o.set("server_cpu_s_total", round3(cpu)) // since it started: the handshakes, mostly
	}
	o.set("dial_failed", dialFailed.Load())
	total, detail := errSummary()
	o.set("errors", total)
	o.set("error_detail", detail)
}

func main() {
	flag.Var(&extra, "tag", "key=value copied into the JSON output (repeatable)")
	flag.Parse()
	if *freePort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		return
	}
	nofile := raiseNoFile()
	p, err := protocolNamed(*protoName)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadchat:", err)
		os.Exit(2)
	}
	proto = p
	if *protoName != "roomchat" && (*check || *attack != "") {
		fmt.Fprintln(os.Stderr, "loadchat: -check and -attack speak roomchat's protocol only")
		os.Exit(2)
	}
	if *check {
		os.Exit(runChecks())
	}
	need := uint64(*idle)
	if *idle == 0 {
		need = uint64(*nRooms * *nClients)
	}
	if need+64 > nofile {
		fmt.Fprintf(os.Stderr, "loadchat: %d connections need more than RLIMIT_NOFILE=%d\n", need, nofile)
	}
	perServer := need
	if *url2 != "" {
		perServer = (need + 1) / 2
	}
	if ports := portsPerDestination(); ports > 0 && perServer > uint64(ports) {
		fmt.Fprintf(os.Stderr, "loadchat: %d connections to one server address need more local ports than net.ipv4.ip_local_port_range gives (%d)\n", perServer, ports)
	}
	if *rate <= 0 && *idle == 0 && *attack == "" {
		fmt.Fprintln(os.Stderr, "loadchat: -rate must be > 0")
		os.Exit(2)
	}
	var o obj
	for _, t := range extra {
		k, v, _ := strings.Cut(t, "=")
		o.set(k, v)
	}
	if *cpuProf != "" {
		if f, err := os.Create(*cpuProf); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	switch {
	case *attack != "":
		attackMode(&o)
	case *idle > 0:
		idleMode(&o)
	default:
		loadMode(&o)
	}
	if n := dialFailed.Load(); n > 0 {
		_, detail := errSummary()
		var why []string
		for k, v := range detail {
			if strings.HasPrefix(k, "dial_") || strings.HasPrefix(k, "join_") {
				why = append(why, fmt.Sprintf("%s=%d", k, v))
			}
		}
		slices.Sort(why)
		fmt.Fprintf(os.Stderr, "loadchat: %d dials refused or failed: %s\n", n, strings.Join(why, " "))
	}
	out, _ := json.Marshal(o)
	fmt.Println(string(out))
}

// dialIdle opens n connections spread over rooms, and returns them (the
// failed ones nil) and how many are up.
func dialIdle(n, rooms int) (cs []*client, up int) {
	cs = make([]*client, n)
	for i := range cs {
		cs[i] = &client{id: i, room: i % rooms, idx: i / rooms}
	}
	dialAll(cs)
	for _, c := range cs {
		if c.ws != nil {
			up++
		}
	}
	return cs, up
}
