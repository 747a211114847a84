package main

// The fault proxy (faultproxy_test.go) tested against a plain echo server:
// each mode passes, delays, stalls or cuts what it carries, on the
// connections it should, and leaves no goroutine behind.

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

// echoBehindProxy starts an echo server behind a proxy that passes, and a
// client whose first line has gone there and back.
func echoBehindProxy(t *testing.T) (*echoServer, *faultProxy, *echoClient) {
	t.Helper()
	e := startEcho(t)
	p := startFaultProxy(t, e.ln.Addr().String())
	c := dialEcho(t, p)
	c.send("warm")
	c.expect("warm")
	return e, p, c
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
	t.Parallel()
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
	t.Parallel()
	const (
		delay = 150 * time.Millisecond
		lines = 10
		every = 20 * time.Millisecond
	)
	t.Run("pipelined", func(t *testing.T) {
		_, p, c := echoBehindProxy(t)
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
		_, p, c := echoBehindProxy(t)
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
	t.Parallel()
	for _, mode := range []proxyMode{stallMode(), stallDropMode()} {
		t.Run(mode.String(), func(t *testing.T) {
			e, p, old := echoBehindProxy(t)
			got := e.received.Load()

			p.set(mode)
			old.send("held")
			fresh := dialEcho(t, p) // accepted during the stall
			p.waitHolding(t, 2)
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
	t.Parallel()
	for _, mode := range []proxyMode{cutMode(), cutHangMode()} {
		t.Run(mode.String(), func(t *testing.T) {
			_, p, old := echoBehindProxy(t)

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
	t.Parallel()
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
