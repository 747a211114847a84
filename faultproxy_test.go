package main

// A fault proxy for the tests: a TCP proxy on a free loopback port in
// front of a real redis-server, whose behaviour a test switches at any
// moment, so that Redis can be made slow, silent or unreachable while
// roomchat keeps talking to it (redisfault_test.go). It is tested against
// a plain echo server in faultproxy_echo_test.go.
//
// It never sleeps: each connection has a reader and a writer goroutine per
// direction, the reader queues what arrives with its arrival time, and the
// writer forwards it when the mode allows, waiting on timers and on a
// channel that is closed whenever the mode changes.

import (
	"fmt"
	"net"
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

// waitHolding returns once the proxy holds n connections: dialEcho returns
// when the kernel has accepted a connection, which the proxy may take up
// only later, and in the mode of then.
func (p *faultProxy) waitHolding(t testing.TB, n int) {
	t.Helper()
	waitFor(t, func() string { return fmt.Sprintf("the proxy to hold %d connections", n) }, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.conns) == n
	})
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
