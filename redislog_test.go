package main

// The Redis broker's outages (redis.go): each one a warning in the log, a
// second soon after the first included, and each over within the
// backoff's cap once Redis is back.

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestRedisSecondOutageIsAWarning stops Redis, starts it, lets the session
// work past redisShortSession, and stops it again well within
// redisStableAfter: both outages are warnings, and both returns are logged.
func TestRedisSecondOutageIsAWarning(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	var logs syncBuffer
	h, err := buildHub(options{redis: r.url()}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s := serveHub(t, h, options{})
	count := func(what string) func() bool {
		return func() bool { return strings.Count(logs.String(), what) >= 2 }
	}
	for range 2 {
		r.stop()
		s.waitHealth(t, func(h health) bool { return !h.Layer.Connected })
		r.start()
		s.waitHealth(t, func(h health) bool { return h.Layer.Connected })
		time.Sleep(redisShortSession) // a span of time is what is measured: the session works
	}
	waitFor(t, func() string { return "two warnings and two returns:\n" + logs.String() }, func() bool {
		return count(`level=WARN msg="redis broker down`)() && count(`msg="redis broker back"`)()
	})
}

// apartAtMost is how long processes stay apart once Redis is back, as
// docs/protocol.md promises: the longest wait between two dials.
const apartAtMost = 3 * time.Second

// TestRedisBackoffIsCapped draws the redials' waits as a long outage
// does: none is shorter than the first's least, 50 ms, nor longer than
// apartAtMost, and they grow towards it.
func TestRedisBackoffIsCapped(t *testing.T) {
	backoff, longest := redisBackoffMin, time.Duration(0)
	for range 1000 {
		var wait time.Duration
		wait, backoff = redialWait(backoff)
		if wait < 50*time.Millisecond || wait > apartAtMost {
			t.Fatalf("a wait of %v, want from 50 ms to %v", wait, apartAtMost)
		}
		longest = max(longest, wait)
	}
	if longest < apartAtMost/2 { // the waits grew
		t.Errorf("the longest wait was %v", longest)
	}
}

// TestRedisBackWithinTheCap keeps Redis away while the redials' waits grow
// to their cap, then starts it: the process is back within the longest
// wait and its dial.
func TestRedisBackWithinTheCap(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	s := newTestServer(t, options{redis: r.url()})
	r.stop()
	s.waitHealth(t, func(h health) bool { return !h.Layer.Connected })
	// The waits of 0.1 to 1.6 s take 3.1 s on average, 4.7 s at most.
	time.Sleep(5 * time.Second) // a span of time is what is measured: the outage
	r.start()
	back := time.Now()
	s.waitHealth(t, func(h health) bool { return h.Layer.Connected })
	const dial = 500 * time.Millisecond // on a busy machine
	if took := time.Since(back); took > apartAtMost+dial {
		t.Errorf("back %v after Redis, want within %v and a dial", took, apartAtMost)
	}
}
