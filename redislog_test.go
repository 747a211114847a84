package main

// The Redis broker's outages in the log (redis.go): each one a warning,
// a second soon after the first included.

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
