package main

// This file bounds the TCP connections the server holds, every one of them,
// plain HTTP keep-alives included: in all, below the process's descriptor
// limit, so that accept never fails for want of one; and per client
// address, so that one client cannot take every slot. At the cap, an idle
// keep-alive is closed to make room before a new connection is refused.

import (
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Connection limits.
const (
	// fdReserve is how many descriptors the connection cap leaves for
	// everything else the process opens: the listener, Redis, the
	// embedded files' readers, DNS.
	fdReserve = 64

	// defaultMaxPerClient is how many WebSockets one client address may
	// hold. A school behind one NAT, a few hundred people with a tab or two
	// each, stays under it; one client cannot fill a server.
	defaultMaxPerClient = 500

	// perClientSlack is how many TCP connections an address may hold
	// beyond its WebSockets: the page's own requests, and the handshake of
	// one WebSocket too many, which is then answered 429 rather than
	// refused at accept.
	perClientSlack = 64

	// refuseTimeout bounds what a refused connection is given: the write
	// of its 503, then the reading of what it sent, so that closing it does
	// not reset it before it has read the answer.
	refuseTimeout = time.Second

	// refuseDrainBytes is the most read from a refused connection: a
	// request's headers (maxHeaderBytes), and a little.
	refuseDrainBytes = maxHeaderBytes + 1024

	// maxRefusing bounds the refused connections being answered at once,
	// each for up to refuseTimeout; past it, a flood's connections are
	// closed without a word.
	maxRefusing = 256

	// A refusal's Retry-After is drawn from retryAfterMin to twice it
	// (seconds), so that a crowd refused at once does not return at once.
	retryAfterMin = 5

	// defaultIPv6Prefix is how many leading bits of an IPv6 address the
	// per-address limits count as one client (-ipv6-prefix): a subscriber
	// is handed a /64 at least, and picks any of its 2^64 addresses at
	// will, so counting each apart would let one client fill a server.
	defaultIPv6Prefix = 64
)

// refusing counts the refused connections being answered (maxRefusing).
var refusing = make(chan struct{}, maxRefusing)

// retryAfterSeconds is a Retry-After for a refusal.
func retryAfterSeconds() int { return retryAfterMin + mathrand.IntN(retryAfterMin+1) }

// connLimit counts the server's TCP connections, in all and per address,
// and knows which of them are idle keep-alives.
type connLimit struct {
	max, perClient int
	proxies        []netip.Prefix // peers that carry many clients: not capped per address
	ipv6Bits       int            // an IPv6 peer is counted by its first ipv6Bits (addrKey)

	mu      sync.Mutex
	total   int
	perAddr map[netip.Addr]int
	idle    map[*limitedConn]struct{}
	refused int64 // at accept, every reason (counts)

	refusedFor [numRefusals]int64 // by reason, for /metrics (metrics.go); guarded by mu
}

// newConnLimit returns opts' limits: maxConns connections in all and
// perClient per address (0 turns either off).
func newConnLimit(opts options) *connLimit {
	return &connLimit{max: opts.maxConns, perClient: opts.perClient, proxies: opts.proxies, ipv6Bits: opts.ipv6Prefix,
		perAddr: map[netip.Addr]int{}, idle: map[*limitedConn]struct{}{}}
}

// listen wraps ln so that every connection it accepts is counted.
func (l *connLimit) listen(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, limit: l}
}

// limitListener accepts only the connections its limit admits.
type limitListener struct {
	net.Listener
	limit *connLimit
}

// Accept returns the next admitted connection. One over the limit is
// answered 503 and closed, off this goroutine, so that it cannot hold up
// the next accept.
func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := conn.(*net.TCPConn)
		if !ok {
			return conn, nil // not TCP: nothing to count
		}
		if key, ok := ln.limit.admit(addrOf(conn.RemoteAddr())); ok {
			return &limitedConn{TCPConn: tc, addr: key, limit: ln.limit}, nil
		}
		go refuse(conn)
	}
}

// refuse tells a connection over the limit why (503, before reading its
// request), and closes it once its side is done, within refuseTimeout: a
// socket closed with unread bytes in it is reset, and a reset can destroy
// the answer on its way.
func refuse(conn net.Conn) {
	defer conn.Close() // the client may be gone or may not read: it is closed either way
	select {
	case refusing <- struct{}{}:
		defer func() { <-refusing }()
	default:
		return // a flood: no word for it
	}
	const body = "too many connections, try again later\n"
	answer := fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", retryAfterSeconds(), len(body), body)
	_ = conn.SetDeadline(time.Now().Add(refuseTimeout))
	if _, err := io.WriteString(conn, answer); err != nil {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_, _ = io.CopyN(io.Discard, conn, refuseDrainBytes) // until the client closes, or the deadline
	}
}

// admit counts a new connection from peer under its key (addrKey), or
// reports false when it is over either limit. At the total limit it first
// closes an idle keep-alive.
func (l *connLimit) admit(peer netip.Addr) (key netip.Addr, ok bool) {
	addr := addrKey(peer, l.ipv6Bits)
	l.mu.Lock()
	if l.perClient > 0 && l.perAddr[addr] >= l.perClient+perClientSlack && !l.isProxy(peer) {
		l.refused++
		l.refusedFor[refusedTCPPerAddress]++
		l.mu.Unlock()
		return addr, false
	}
	if l.max > 0 && l.total >= l.max {
		var victim *limitedConn
		for c := range l.idle {
			victim = c
			break
		}
		if victim == nil {
			l.refused++
			l.refusedFor[refusedServerFull]++
			l.mu.Unlock()
			return addr, false
		}
		delete(l.idle, victim)
		l.mu.Unlock()
		victim.Close() // net/http's read of its next request fails, and it lets go
		l.mu.Lock()
	}
	l.total++
	l.perAddr[addr]++
	l.mu.Unlock()
	return addr, true
}

// release uncounts a closed connection.
func (l *connLimit) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perAddr[c.addr]--; l.perAddr[c.addr] <= 0 {
		delete(l.perAddr, c.addr)
	}
	delete(l.idle, c)
}

// track is http.Server's ConnState hook: it keeps the set of idle
// keep-alives, the connections that may be shed.
func (l *connLimit) track(conn net.Conn, state http.ConnState) {
	c, ok := conn.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if state == http.StateIdle && !c.closed {
		l.idle[c] = struct{}{}
	} else {
		delete(l.idle, c)
	}
}

// counts reports the connections held and refused at accept.
func (l *connLimit) counts() (total int, refused int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.refused
}

// isProxy reports whether addr is a trusted proxy.
func (l *connLimit) isProxy(addr netip.Addr) bool {
	return inPrefixes(addr, l.proxies)
}

// limitedConn is a counted connection. It embeds *net.TCPConn, so that it
// keeps every method of one: net.Buffers still writes it with writev, and
// client.attach can still size its send buffer.
type limitedConn struct {
	*net.TCPConn
	addr   netip.Addr // its peer's key (addrKey)
	limit  *connLimit
	once   sync.Once
	closed bool // guarded by limit.mu
}

// Close closes the connection and uncounts it, once.
func (c *limitedConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(func() {
		c.limit.mu.Lock()
		c.closed = true
		c.limit.mu.Unlock()
		c.limit.release(c)
	})
	return err
}

// addrOf is the IP address of a connection's peer, IPv4 unmapped.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// inPrefixes reports whether addr lies in one of prefixes.
func inPrefixes(addr netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// errUnreadableHop is a trusted proxy's forwarded header naming the client
// by something other than an IP address: "unknown", an obfuscated name, an
// address with a port, garbage. Counting such a request as the proxy's own
// would let a few of them fill the proxy's bucket for everyone behind it.
var errUnreadableHop = errors.New("a trusted proxy forwarded a client address that is not an IP address")

// clientAddr is the address a request's client is counted and logged as
// (addrKey): its peer's, or, when the peer is a trusted proxy, the nearest
// address before it in Forwarded or X-Forwarded-For that is not a trusted
// proxy too. Headers from anyone else are ignored: a client can write
// whatever it likes in them. A hop it cannot read, before any it trusts
// not, is an error (errUnreadableHop).
func clientAddr(r *http.Request, proxies []netip.Prefix, ipv6Bits int) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, nil
	}
	addr := ap.Addr().Unmap().WithZone("")
	if inPrefixes(addr, proxies) {
		hops := forwardedFor(r.Header)
		for i := len(hops) - 1; i >= 0; i-- { // the nearest hop is the last
			hop, err := netip.ParseAddr(hops[i])
			if err != nil {
				return netip.Addr{}, fmt.Errorf("%w: %s", errUnreadableHop, strconv.QuoteToASCII(clip(hops[i], 40)))
			}
			if addr = hop.Unmap().WithZone(""); !inPrefixes(addr, proxies) {
				break
			}
		}
	}
	return addrKey(addr, ipv6Bits), nil
}

// addrKey is the address the per-address limits count addr as: an IPv4
// address as it is, an IPv4-mapped IPv6 address (::ffff:10.0.0.1) as its
// IPv4 address, and any other IPv6 address as its first ipv6Bits (0 for
// defaultIPv6Prefix): 2001:db8::1 and 2001:db8::2 are both 2001:db8::, and
// ::10.0.0.1 is :: with every other IPv4-compatible address. A zone
// (%eth0) is dropped: the same client written another way is not another
// client.
func addrKey(addr netip.Addr, ipv6Bits int) netip.Addr {
	addr = addr.Unmap().WithZone("")
	if !addr.Is6() {
		return addr
	}
	if ipv6Bits <= 0 || ipv6Bits > 128 {
		ipv6Bits = defaultIPv6Prefix
	}
	p, _ := addr.Prefix(ipv6Bits) // cannot fail: an IPv6 address without a zone, bits in range
	return p.Addr()
}

// forwardedFor lists the client addresses a proxy chain recorded, oldest
// first: from Forwarded's for= parameters (RFC 7239) when present, else
// from X-Forwarded-For.
func forwardedFor(h http.Header) []string {
	var hops []string
	for _, line := range h.Values("Forwarded") {
		for elem := range strings.SplitSeq(line, ",") {
			for pair := range strings.SplitSeq(elem, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				if strings.EqualFold(k, "for") {
					v = strings.Trim(v, `"`)
					if host, _, err := net.SplitHostPort(v); err == nil {
						v = host
					}
					hops = append(hops, strings.Trim(v, "[]"))
				}
			}
		}
	}
	if hops != nil {
		return hops
	}
	for _, line := range h.Values("X-Forwarded-For") {
		for hop := range strings.SplitSeq(line, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	return hops
}

// parsePrefixes reads CIDRs such as 10.0.0.0/8, or bare addresses.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, err
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// refuseRetry answers a request that may be tried again, with a
// Retry-After that spreads the retries of a crowd refused at once, and
// closes its connection once the answer is out: an address over its cap
// must not keep holding descriptors as idle keep-alives.
func refuseRetry(w http.ResponseWriter, reason string, code int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds()))
	w.Header().Set("Connection", "close")
	http.Error(w, reason, code)
}
