package main

// One direction of a fault proxy's connection, the part that holds, delays
// and forwards bytes (faultproxy_test.go says how the proxy works).

import (
	"net"
	"sync"
	"time"
)

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
