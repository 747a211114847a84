package main

// A fault proxy for the tests: a TCP proxy on a free loopback port in
// front of a real redis-server, whose behaviour a test switches at any
// moment, so that Redis can be made slow, silent or unreachable while
// roomchat keeps talking to it (redisfault_test.go). It is tested here
// against a plain echo server.
//
// It never sleeps: each connection has a reader and a writer goroutine per
// direction, the reader queues what arrives with its arrival time, and the
// writer forwards it when the mode allows, waiting on timers and on a
// channel that is closed whenever the mode changes.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxyFault is what the proxy does to what it carries.
type proxyFault int

const (
	// faultPass forwards every byte as it comes.
	faultPass proxyFault = iota
	// faultDelay forwards every chunk late (proxyMode.toServer, toClient).
	faultDelay
	// faultStall forwards nothing, either way, but keeps accepting
	// connections and bytes; what happens to what it held when the stall
	// ends is proxyMode.drop.
	faultStall
	// faultCut closes every connection now, and new ones at once
	// (proxyMode.hang: leaves them unanswered), until the mode changes.
	faultCut
)

// proxyMode is one behaviour of the proxy: set it with faultProxy.set. The
// constructors below name the useful ones.
type proxyMode struct {
	fault proxyFault
	// toServer and toClient are how long after it arrived each chunk is
	// forwarded, for faultDelay. The delay in force when a chunk arrives is
	// its delay, whatever the mode does later.
	toServer, toClient time.Duration
	// serial makes the delay a proxy's that sleeps before forwarding each
	// chunk: a chunk waits its delay after the previous one was forwarded,
	// so a stream is throttled to a chunk per delay. Without it (the
	// default, and what the scenarios use) chunks are pipelined: each is
	// forwarded its delay after it arrived, and throughput is kept, as on a
	// long link.
	serial bool
	// drop ends a stall as a broken connection does: every connection that
	// lived through it is closed (reset), and what it held is lost. Without
	// it the stall ends as a healed partition: what was held is forwarded,
	// late, in order.
	drop bool
	// hang, for faultCut, accepts new connections and answers nothing, as
	// a host that drops packets does; without it they are reset at once, as
	// by a host that is up with nothing listening.
	hang bool
	// conn, for faultDelay and faultStall, limits the fault to the conn-th
	// connection the proxy accepted, counting from 1 (the others pass), as
	// when one flow's path fails and the others' does not; 0 is every
	// connection.
	conn int64
}

// The modes, by name.
func passMode() proxyMode { return proxyMode{fault: faultPass} }
func delayMode(toServer, toClient time.Duration) proxyMode {
	return proxyMode{fault: faultDelay, toServer: toServer, toClient: toClient}
}
func serialDelayMode(toServer, toClient time.Duration) proxyMode {
	return proxyMode{fault: faultDelay, toServer: toServer, toClient: toClient, serial: true}
}
func stallMode() proxyMode     { return proxyMode{fault: faultStall} }
func stallDropMode() proxyMode { return proxyMode{fault: faultStall, drop: true} }
func cutMode() proxyMode       { return proxyMode{fault: faultCut} }
func cutHangMode() proxyMode   { return proxyMode{fault: faultCut, hang: true} }

// only limits m to the n-th connection accepted (proxyMode.conn).
func (m proxyMode) only(n int64) proxyMode { m.conn = n; return m }

// on is the mode as it applies to connection n: a fault limited to another
// connection passes.
func (m proxyMode) on(n int64) proxyMode {
	if m.conn != 0 && m.conn != n && m.fault != faultCut {
		return passMode()
	}
	return m
}

// String names a mode for the tables: "delay ↑0s ↓300ms", "stall, then
// drop", "stall, then release, conn 1".
func (m proxyMode) String() string {
	if m.conn != 0 && m.fault != faultCut {
		return m.only(0).String() + fmt.Sprintf(", conn %d", m.conn)
	}
	switch m.fault {
	case faultDelay:
		s := fmt.Sprintf("delay ↑%v ↓%v", m.toServer, m.toClient)
		if m.serial {
			s += " serial"
		}
		return s
	case faultStall:
		if m.drop {
			return "stall, then drop"
		}
		return "stall, then release"
	case faultCut:
		if m.hang {
			return "cut, hang new"
		}
		return "cut, reset new"
	}
	return "pass"
}

// Directions through the proxy, for faultProxy.chunks.
const (
	dirToServer = 0
	dirToClient = 1
)

// proxyDialTimeout bounds the proxy's dial of its target.
const proxyDialTimeout = 3 * time.Second

// faultProxy forwards TCP from a loopback port to target, as its mode says.
type faultProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // every goroutine of the proxy

	mu      sync.Mutex
	mode    proxyMode
	changed chan struct{} // closed when the mode changes, then replaced
	gen     int           // counts the changes
	conns   map[*proxyConn]struct{}
	hung    map[net.Conn]struct{} // accepted during a hanging cut
	closed  bool

	accepted atomic.Int64
	chunks   [2]atomic.Int64 // chunks forwarded, per direction
}

// startFaultProxy listens on a free loopback port, forwarding to target in
// faultPass mode, and stops when the test ends.
func startFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, changed: make(chan struct{}),
		conns: map[*proxyConn]struct{}{}, hung: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

// addr is where the proxy listens.
func (p *faultProxy) addr() string { return p.ln.Addr().String() }

// url is the proxy as a -redis URL.
func (p *faultProxy) url() string { return "redis://" + p.addr() }

// set switches the proxy to m, now. A cut closes every connection; the end
// of a dropping stall closes those that lived through it; the end of a
// hanging cut closes the connections it left unanswered.
func (p *faultProxy) set(m proxyMode) {
	p.mu.Lock()
	old := p.mode
	p.mode = m
	p.gen++
	var doomed []*proxyConn
	for c := range p.conns {
		if was := old.on(c.n); m.fault == faultCut || (was.fault == faultStall && was.drop && m.on(c.n) != was) {
			c.stop() // before the writers see the change: not one more byte
			delete(p.conns, c)
			doomed = append(doomed, c)
		}
	}
	var hung []net.Conn
	if m.fault != faultCut || !m.hang {
		for c := range p.hung {
			hung = append(hung, c)
		}
		clear(p.hung)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	for _, c := range doomed {
		c.close(true)
	}
	for _, c := range hung {
		resetConn(c)
	}
}

// current returns the mode and the channel closed when it next changes.
func (p *faultProxy) current() (proxyMode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.changed
}

// close stops the proxy: its listener and every connection are closed, and
// its goroutines gone, when it returns. A second call does nothing more.
func (p *faultProxy) close() {
	p.mu.Lock()
	p.closed = true
	var conns []*proxyConn
	for c := range p.conns {
		conns = append(conns, c)
	}
	var hung []net.Conn
	for c := range p.hung {
		hung = append(hung, c)
	}
	clear(p.hung)
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.close(false)
	}
	for _, c := range hung {
		c.Close()
	}
	p.wg.Wait()
}

// acceptLoop takes connections until the listener closes.
func (p *faultProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		n := p.accepted.Add(1)
		p.mu.Lock()
		switch {
		case p.closed:
			c.Close()
		case p.mode.fault == faultCut && p.mode.hang:
			p.hung[c] = struct{}{}
		case p.mode.fault == faultCut:
			resetConn(c)
		default:
			p.wg.Add(1)
			go p.open(c, n, p.mode, p.gen)
		}
		p.mu.Unlock()
	}
}

// open dials the target for client, the n-th connection accepted, in mode
// m (the gen-th), and starts forwarding both ways.
func (p *faultProxy) open(client net.Conn, n int64, m proxyMode, gen int) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, proxyDialTimeout)
	if err != nil {
		resetConn(client) // as if the target refused the client itself
		return
	}
	c := &proxyConn{p: p, n: n, client: client, server: server, done: make(chan struct{})}
	c.pipesLeft.Store(2)
	p.mu.Lock()
	m = m.on(n)
	droppedMeanwhile := m.fault == faultStall && m.drop && p.gen != gen
	if p.closed || p.mode.fault == faultCut || droppedMeanwhile {
		p.mu.Unlock()
		resetConn(client)
		server.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.wg.Add(4)
	p.mu.Unlock()
	for dir, ends := range [2][2]net.Conn{dirToServer: {client, server}, dirToClient: {server, client}} {
		pp := &proxyPipe{c: c, dir: dir, src: ends[0], dst: ends[1], more: make(chan struct{}, 1)}
		go pp.read()
		go pp.write()
	}
}

// resetConn closes c at once, with a TCP reset rather than an orderly FIN: a
// connection broken, not ended.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	p              *faultProxy
	n              int64 // its place in the order of acceptance, from 1
	client, server net.Conn
	done           chan struct{} // closed by stop
	stopOnce       sync.Once
	closeOnce      sync.Once
	pipesLeft      atomic.Int32 // pipes still forwarding; the last to end closes
}

// stop tells the pipes to forward nothing more. It takes no lock: set
// calls it with the proxy's held.
func (c *proxyConn) stop() {
	c.stopOnce.Do(func() { close(c.done) })
}

// close ends both connections, with a reset when broken is true; the
// pipes' goroutines return.
func (c *proxyConn) close(broken bool) {
	c.stop()
	c.closeOnce.Do(func() {
		if broken {
			resetConn(c.client)
		} else {
			c.client.Close()
		}
		c.server.Close()
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
}

// proxyPipe carries one direction of a connection: its reader queues
// chunks as they arrive, its writer forwards them as the mode allows.
type proxyPipe struct {
	c        *proxyConn
	dir      int
	src, dst net.Conn
	more     chan struct{} // a chunk was queued, or the reader ended

	mu    sync.Mutex
	queue []proxyChunk
	ended bool // the reader saw the end of src
}

// proxyChunk is what one read brought, and when it may be forwarded.
type proxyChunk struct {
	data    []byte
	arrived time.Time
	delay   time.Duration
	serial  bool
}

// read queues what src sends until it ends. It reads in every mode, so a
// stall holds bytes rather than pushing back on the sender.
func (pp *proxyPipe) read() {
	defer pp.c.p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := pp.src.Read(buf)
		if n > 0 {
			m, _ := pp.c.p.current()
			m = m.on(pp.c.n)
			ch := proxyChunk{data: append([]byte(nil), buf[:n]...), arrived: time.Now()}
			if m.fault == faultDelay {
				ch.delay, ch.serial = m.toServer, m.serial
				if pp.dir == dirToClient {
					ch.delay = m.toClient
				}
			}
			pp.mu.Lock()
			pp.queue = append(pp.queue, ch)
			pp.mu.Unlock()
			pp.signal()
		}
		if err != nil {
			pp.mu.Lock()
			pp.ended = true
			pp.mu.Unlock()
			pp.signal()
			return
		}
	}
}

// signal wakes the writer.
func (pp *proxyPipe) signal() {
	select {
	case pp.more <- struct{}{}:
	default: // already woken
	}
}

// write forwards chunks in order, each when it is due and the proxy is not
// stalled, until src has ended and all is forwarded, or dst fails. Then it
// passes the end on (a half close), and the second pipe to end closes the
// connection: what one side sent before it went is still forwarded, as TCP
// would, so that a stall that heals delivers what a client sent before it
// gave up.
func (pp *proxyPipe) write() {
	defer pp.c.p.wg.Done()
	var last time.Time // when the previous chunk was forwarded
	for {
		ch, ok := pp.next()
		if !ok {
			pp.end()
			return
		}
		if !pp.wait(ch, last) {
			return
		}
		if _, err := pp.dst.Write(ch.data); err != nil {
			pp.end()
			return
		}
		last = time.Now()
		pp.c.p.chunks[pp.dir].Add(1)
	}
}

// end passes the end of this direction on to dst, and closes the
// connection if the other direction has ended too.
func (pp *proxyPipe) end() {
	if tc, ok := pp.dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	if pp.c.pipesLeft.Add(-1) == 0 {
		pp.c.close(false)
	}
}

// next takes the oldest chunk, waiting for one; ok is false once src has
// ended with nothing left, or the connection is closed.
func (pp *proxyPipe) next() (proxyChunk, bool) {
	for {
		pp.mu.Lock()
		if len(pp.queue) > 0 {
			ch := pp.queue[0]
			pp.queue[0] = proxyChunk{}
			pp.queue = pp.queue[1:]
			pp.mu.Unlock()
			return ch, true
		}
		ended := pp.ended
		pp.mu.Unlock()
		if ended {
			return proxyChunk{}, false
		}
		select {
		case <-pp.more:
		case <-pp.c.done:
			return proxyChunk{}, false
		}
	}
}

// wait returns once ch may be forwarded: it is due (its delay after it
// arrived, or after the previous chunk went, when serial) and the proxy is
// not stalled. It reports false when the connection is closed first.
func (pp *proxyPipe) wait(ch proxyChunk, last time.Time) bool {
	for {
		m, changed := pp.c.p.current()
		m = m.on(pp.c.n)
		select {
		case <-pp.c.done: // closed, or stopped before the change was made
			return false
		default:
		}
		var due <-chan time.Time
		var timer *time.Timer
		if m.fault != faultStall {
			at := ch.arrived
			if ch.serial && last.After(at) {
				at = last
			}
			wait := time.Until(at.Add(ch.delay))
			if wait <= 0 {
				return true
			}
			timer = time.NewTimer(wait)
			due = timer.C
		}
		select {
		case <-due:
			return true
		case <-changed: // look again
		case <-pp.c.done: // the loop's first select returns
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// ---- tests of the proxy, against an echo server ----

// echoServer answers every byte with itself, and counts what it got.
type echoServer struct {
	ln       net.Listener
	received atomic.Int64
	wg       sync.WaitGroup
}

// startEcho starts an echo server on a free loopback port, stopped when
// the test ends.
func startEcho(t testing.TB) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					e.received.Add(int64(n))
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

// echoClient is a connection through the proxy, read line by line.
type echoClient struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

// dialEcho connects to the proxy; the connection is closed when the test
// ends.
func dialEcho(t *testing.T, p *faultProxy) *echoClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.addr(), recvTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &echoClient{t, c, bufio.NewReader(c)}
}

// send writes one line.
func (c *echoClient) send(line string) {
	c.t.Helper()
	c.SetWriteDeadline(time.Now().Add(recvTimeout))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// expect reads one line, within recvTimeout, and checks it.
func (c *echoClient) expect(want string) {
	c.t.Helper()
	if got, err := c.line(recvTimeout); err != nil || got != want {
		c.t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// line reads one line within d.
func (c *echoClient) line(d time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	s, err := c.r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

// expectNothing checks that nothing comes back for a while: the one thing a
// test cannot wait on is an absence.
func (c *echoClient) expectNothing(d time.Duration) {
	c.t.Helper()
	got, err := c.line(d)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("read %q, %v; want nothing for %v", got, err, d)
	}
}

// expectBroken checks that the connection is closed, or reset, with
// nothing more on it.
func (c *echoClient) expectBroken() {
	c.t.Helper()
	got, err := c.line(recvTimeout)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		c.t.Fatalf("read %q, %v; want the connection closed", got, err)
	}
}

// quietFor is how long a test watches for bytes that must not come.
const quietFor = 200 * time.Millisecond

func TestFaultProxyPasses(t *testing.T) {
	e := startEcho(t)
	p := startFaultProxy(t, e.ln.Addr().String())
	a, b := dialEcho(t, p), dialEcho(t, p)
	a.send("one")
	b.send("two")
	a.expect("one")
	b.expect("two")
	big := strings.Repeat("x", 200<<10) // more than one chunk
	a.send(big)
	a.expect(big)
}

// TestFaultProxyDelays checks the two delays: a pipelined one keeps the
// stream's pace, each line late by the delay; a serial one forwards a
// chunk per delay at most. Only what the proxy guarantees is asserted:
// nothing comes early, and a pipelined delay is not a serial one.
func TestFaultProxyDelays(t *testing.T) {
	const (
		delay = 150 * time.Millisecond
		lines = 10
		every = 20 * time.Millisecond
	)
	t.Run("pipelined", func(t *testing.T) {
		e := startEcho(t)
		p := startFaultProxy(t, e.ln.Addr().String())
		c := dialEcho(t, p)
		c.send("warm")
		c.expect("warm")
		p.set(delayMode(0, delay))
		sent := make(chan time.Time, lines)
		go func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := range lines {
				sent <- time.Now()
				if _, err := fmt.Fprintf(c, "%d\n", i); err != nil {
					return // the reader fails
				}
				<-tick.C
			}
		}()
		first := time.Time{}
		for i := range lines {
			c.expect(strconv.Itoa(i))
			at := <-sent
			if i == 0 {
				first = at
			}
			if late := time.Since(at); late < delay {
				t.Fatalf("line %d came back after %v, less than the delay %v", i, late, delay)
			}
		}
		// A serial proxy would take a delay per chunk: lines × delay.
		if took := time.Since(first); took >= lines*delay {
			t.Errorf("%d lines took %v: the delay is not pipelined", lines, took)
		}
		p.set(passMode())
		c.send("after")
		c.expect("after")
	})
	t.Run("serial", func(t *testing.T) {
		e := startEcho(t)
		p := startFaultProxy(t, e.ln.Addr().String())
		c := dialEcho(t, p)
		c.send("warm")
		c.expect("warm")
		before := p.chunks[dirToClient].Load()
		p.set(serialDelayMode(0, delay))
		start := time.Now()
		go func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := range lines {
				if _, err := fmt.Fprintf(c, "%d\n", i); err != nil {
					return // the reader fails
				}
				<-tick.C
			}
		}()
		for i := range lines {
			c.expect(strconv.Itoa(i))
		}
		// However the lines were split into chunks, each chunk waited a
		// whole delay after the one before.
		chunks := p.chunks[dirToClient].Load() - before
		if took := time.Since(start); took < time.Duration(chunks)*delay {
			t.Errorf("%d chunks came back in %v, less than a delay each", chunks, took)
		}
	})
}

// TestFaultProxyStalls holds a connection's bytes, and a new connection's,
// and then forwards them (a partition that heals) or drops them with the
// connections (a partition that broke them).
func TestFaultProxyStalls(t *testing.T) {
	for _, mode := range []proxyMode{stallMode(), stallDropMode()} {
		t.Run(mode.String(), func(t *testing.T) {
			e := startEcho(t)
			p := startFaultProxy(t, e.ln.Addr().String())
			old := dialEcho(t, p)
			old.send("before")
			old.expect("before")
			got := e.received.Load()

			p.set(mode)
			old.send("held")
			fresh := dialEcho(t, p) // accepted during the stall
			fresh.send("held too")
			old.expectNothing(quietFor)
			fresh.expectNothing(0)
			if n := e.received.Load(); n != got {
				t.Fatalf("the server got %d bytes during the stall", n-got)
			}

			p.set(passMode())
			if mode.drop {
				old.expectBroken()
				fresh.expectBroken()
				if n := e.received.Load(); n != got {
					t.Errorf("the server got %d bytes of a dropped stall", n-got)
				}
				again := dialEcho(t, p)
				again.send("after")
				again.expect("after")
				return
			}
			old.expect("held")
			fresh.expect("held too")
			old.send("after")
			old.expect("after")
		})
	}
}

// TestFaultProxyCuts closes every connection, then refuses or hangs new
// ones until the mode changes.
func TestFaultProxyCuts(t *testing.T) {
	for _, mode := range []proxyMode{cutMode(), cutHangMode()} {
		t.Run(mode.String(), func(t *testing.T) {
			e := startEcho(t)
			p := startFaultProxy(t, e.ln.Addr().String())
			old := dialEcho(t, p)
			old.send("before")
			old.expect("before")

			p.set(mode)
			old.expectBroken()
			if !mode.hang {
				// Refused: the dial fails, or the connection is reset at once.
				if c, err := net.DialTimeout("tcp", p.addr(), recvTimeout); err == nil {
					t.Cleanup(func() { c.Close() })
					during := &echoClient{t, c, bufio.NewReader(c)}
					io.WriteString(during, "anyone?\n") // may fail: reset already
					during.expectBroken()
				}
				p.set(passMode())
			} else {
				during := dialEcho(t, p)
				during.send("anyone?")
				during.expectNothing(quietFor)
				p.set(passMode())
				during.expectBroken() // a hung connection never gets through
			}
			after := dialEcho(t, p)
			after.send("after")
			after.expect("after")
		})
	}
}

// TestFaultProxyLimitsAFaultToOneConnection stalls the first connection
// only: the second goes on as if nothing happened.
func TestFaultProxyLimitsAFaultToOneConnection(t *testing.T) {
	e := startEcho(t)
	p := startFaultProxy(t, e.ln.Addr().String())
	first := dialEcho(t, p)
	first.send("hi")
	first.expect("hi") // accepted: it is the first
	second := dialEcho(t, p)
	p.set(stallMode().only(1))
	first.send("held")
	second.send("through")
	second.expect("through")
	first.expectNothing(quietFor)
	p.set(passMode())
	first.expect("held")
}

// TestFaultProxyLeavesNothingBehind closes a proxy with connections in
// every state: its goroutines are all gone when close returns.
func TestFaultProxyLeavesNothingBehind(t *testing.T) {
	e := startEcho(t)
	before := runtime.NumGoroutine()
	p := startFaultProxy(t, e.ln.Addr().String())
	live := dialEcho(t, p)
	live.send("hi")
	live.expect("hi")
	p.set(delayMode(time.Hour, time.Hour))
	live.send("late") // waits an hour in the proxy
	p.set(stallMode())
	dialEcho(t, p).send("stalled")
	p.set(cutHangMode())
	dialEcho(t, p)
	waitFor(t, func() string { return "the proxy to accept 3 connections" }, func() bool { return p.accepted.Load() == 3 })
	p.close()
	live.expectBroken()
	waitFor(t, func() string { return fmt.Sprintf("%d goroutines, %d before", runtime.NumGoroutine(), before) },
		func() bool { return runtime.NumGoroutine() <= before })
}
