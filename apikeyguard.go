package main

// This file throttles wrong API keys per client address: a key is 16 bytes
// at least, but the minimum counts bytes, not randomness, and a guess must
// cost its sender. An address that sends maxAPIKeyFailures wrong keys in
// apiKeyWindow is answered 429, whatever key it sends, until the window
// ends: a right key then must not tell a guesser it found one. Other
// addresses, the backend's among them, are not slowed. Each address's
// failures are logged once a window, not once a request.

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Wrong API keys.
const (
	// maxAPIKeyFailures is how many wrong keys an address may send in one
	// apiKeyWindow: a backend with a stale key finds out long before, and
	// a guesser gets 43,200 guesses a day.
	maxAPIKeyFailures = 30
	apiKeyWindow      = time.Minute

	// maxAPIKeyAddrs bounds the addresses whose failures are kept. Past
	// it, a new address's failures share one count (the zero address),
	// so that a guesser with many addresses is throttled together, and
	// while that count is over, every address with no count of its own
	// is refused too: the price of the bound, paid only in such a flood.
	maxAPIKeyAddrs = 10_000
)

// keyGuard counts wrong keys per client address (clientAddr's key).
type keyGuard struct {
	mu       sync.Mutex
	failures map[netip.Addr]*keyFailures
	pruned   time.Time // the last sweep of ended windows: once a second at most, so a flood pays for it, not each request
}

// keyFailures are one address's wrong keys in the window that began at start.
type keyFailures struct {
	start time.Time
	n     int
}

// slot is the count addr's failures go to at now, or nil if it has none
// (and may not take one); it drops counts whose window ended. g.mu is held.
func (g *keyGuard) slot(addr netip.Addr, now time.Time, create bool) *keyFailures {
	if f := g.failures[addr]; f != nil {
		if now.Sub(f.start) < apiKeyWindow {
			return f
		}
		delete(g.failures, addr)
	}
	if len(g.failures) >= maxAPIKeyAddrs {
		if now.Sub(g.pruned) >= time.Second {
			g.pruned = now
			for a, f := range g.failures {
				if now.Sub(f.start) >= apiKeyWindow {
					delete(g.failures, a)
				}
			}
		}
		if len(g.failures) >= maxAPIKeyAddrs {
			addr = netip.Addr{} // full: the shared count
			if f := g.failures[addr]; f != nil && now.Sub(f.start) < apiKeyWindow || !create {
				return f
			}
		}
	}
	if !create {
		return nil
	}
	f := &keyFailures{start: now}
	g.failures[addr] = f
	return f
}

// wait is how long addr must wait before its next key is checked: 0 if it
// may send one now.
func (g *keyGuard) wait(addr netip.Addr, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.slot(addr, now, false); f != nil && f.n >= maxAPIKeyFailures {
		return apiKeyWindow - now.Sub(f.start)
	}
	return 0
}

// failed counts a wrong key from addr and reports how many it has sent in
// this window, for the log to speak at the first and at the throttle.
func (g *keyGuard) failed(addr netip.Addr, now time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.slot(addr, now, true)
	f.n++
	return f.n
}

// admitKey is the API's door: it answers 429 to an address that sent too
// many wrong keys lately, 401 to a wrong key, and reports whether the
// request may go on.
func (a *api) admitKey(w http.ResponseWriter, r *http.Request) bool {
	addr, err := clientAddr(r, a.proxies, a.ipv6Bits)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error()+": a proxy listed with -trust-proxy must name the client by its IP address")
		return false
	}
	now := time.Now()
	if wait := a.guard.wait(addr, now); wait > 0 {
		a.h.stats.apiKeyThrottled.Add(1)
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		apiError(w, http.StatusTooManyRequests, fmt.Sprintf("too many wrong API keys from your address: try again in %d s", secs))
		return false
	}
	if a.authorized(r) {
		return true
	}
	a.h.stats.apiKeyFailures.Add(1)
	switch n := a.guard.failed(addr, now); n {
	case 1:
		a.h.log.Warn("wrong API key", "remote", addr)
	case maxAPIKeyFailures:
		a.h.log.Warn("wrong API keys: refusing the address until its window ends", "remote", addr,
			"failures", n, "window", apiKeyWindow)
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="roomchat API"`)
	apiError(w, http.StatusUnauthorized, "missing or wrong API key: send Authorization: Bearer <key>")
	return false
}
