package main

// The hub's locks under load: everything that takes them, at once.

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// TestLockOrder runs, at once and for a while, everything that takes the
// locks hub.go lists: members joining and leaving rooms, talking, asking
// for history, the pinger, the expiry of histories, the counts /healthz
// reads, the HTTP API (presence, history, publish), and last a shutdown
// that must cut off a member that never reads and never answers its close
// frame; with Redis, also Redis going away and coming back, again and
// again (the fault proxy cuts and stalls it), so that the broker's outage
// roads run too: a session's end, the backlog, the catch-up. Two
// goroutines taking two of those locks in
// opposite orders deadlock sooner or later, and then this test does not
// end: after half a minute it panics, printing every goroutine (a test
// cannot fail and clean up a server whose goroutines are stuck). Under
// -race it also finds state that a lock should guard and does not.
func TestLockOrder(t *testing.T) {
	t.Parallel()
	var proxy *faultProxy
	brokers := map[string]func(t *testing.T) options{
		"memory": func(*testing.T) options { return options{history: 5} },
		"redis":  func(t *testing.T) options { return options{history: 5, redis: startRedis(t, "").url()} },
		"redis, going away and back": func(t *testing.T) options {
			proxy = startFaultProxy(t, startRedis(t, "").url()[len("redis://"):])
			return options{history: 5, redis: proxy.url()}
		},
	}
	for name, opts := range brokers {
		t.Run(name, func(t *testing.T) {
			proxy = nil
			s := newAPIServer(t, opts(t))
			s.hub.pingInterval = time.Millisecond
			done := make(chan struct{})
			go func() {
				defer close(done)
				stressHub(t, s, proxy)
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
				panic("TestLockOrder deadlocked: the goroutines are above")
			}
		})
	}
}

// stressHub is TestLockOrder's load on s: a few rooms, members coming and
// going in each, every one of them talking, for a second (two when proxy,
// in front of Redis, takes it away and back meanwhile); then shutdown.
func stressHub(t *testing.T, s *testServer, proxy *faultProxy) {
	const rooms, workers = 3, 8
	var wg sync.WaitGroup
	for r := range rooms {
		dialRaw(t, s.wsURL(fmt.Sprint("lock", r))) // never reads, never closes
	}
	stop := time.Now().Add(time.Second)
	if proxy != nil {
		stop = stop.Add(time.Second)
		wg.Go(func() { outages(s, proxy, stop) })
	}
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				url := s.wsURL(fmt.Sprint("lock", (w+i)%rooms))
				if i%2 == 0 {
					url += "?history"
				}
				c := dialURL(t, url, s.URL)
				for j := range 5 {
					if websocket.Message.Send(c, chat(fmt.Sprint(w, i, j), "W")) != nil {
						break
					}
				}
				c.Close()
			}
		})
	}
	wg.Go(func() {
		for time.Now().Before(stop) {
			if b, ok := s.hub.broker.(*memoryBroker); ok {
				b.expire(time.Now().Add(historyKeep)) // every empty room's history goes
			}
			s.hub.counts()
			s.hub.broker.status()
		}
	})
	wg.Go(func() {
		for i := 0; time.Now().Before(stop); i++ {
			room := fmt.Sprint("/api/rooms/lock", i%rooms)
			apiCall(t, s, "GET", "/api/rooms", testAPIKey, "", nil) // some are refused for their rate
			apiCall(t, s, "GET", room+"/messages", testAPIKey, "", nil)
			apiCall(t, s, "POST", room+"/messages", testAPIKey, `{"message":"api","name":"API"}`, nil)
		}
	})
	wg.Wait()
	if b, ok := s.hub.broker.(*redisBroker); ok && proxy != nil && b.reconnects.Load() == 0 {
		t.Error("Redis never went away and came back")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // no grace: whoever has not gone is cut off
	s.hub.shutdown(ctx)
}

// outages takes Redis away from s and brings it back until stop: cut (the
// session ends at once, and the broker redials), then stalled for a while
// (replies come late, in order), each time long enough for members to talk
// meanwhile, past a backlog held small. The pauses are the load's rhythm: nothing waits on them.
func outages(s *testServer, proxy *faultProxy, stop time.Time) {
	b := s.hub.broker.(*redisBroker)
	b.mu.Lock()
	b.backlogMax = 16 // the refusals' roads run too
	b.mu.Unlock()
	for time.Now().Before(stop) {
		proxy.set(cutMode())
		time.Sleep(150 * time.Millisecond)
		proxy.set(passMode())
		for deadline := time.Now().Add(time.Second); !b.up.Load() && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		proxy.set(stallMode())
		time.Sleep(100 * time.Millisecond)
		proxy.set(passMode())
		time.Sleep(100 * time.Millisecond)
	}
	proxy.set(passMode())
}
