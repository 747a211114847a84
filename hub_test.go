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
// frame. Two goroutines taking two of those locks in
// opposite orders deadlock sooner or later, and then this test does not
// end: after half a minute it panics, printing every goroutine (a test
// cannot fail and clean up a server whose goroutines are stuck). Under
// -race it also finds state that a lock should guard and does not.
func TestLockOrder(t *testing.T) {
	t.Parallel()
	brokers := map[string]func(t *testing.T) options{
		"memory": func(*testing.T) options { return options{history: 5} },
		"redis":  func(t *testing.T) options { return options{history: 5, redis: startRedis(t, "").url()} },
	}
	for name, opts := range brokers {
		t.Run(name, func(t *testing.T) {
			s := newAPIServer(t, opts(t))
			s.hub.pingInterval = time.Millisecond
			done := make(chan struct{})
			go func() {
				defer close(done)
				stressHub(t, s)
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
// going in each, every one of them talking, for a second; then shutdown.
func stressHub(t *testing.T, s *testServer) {
	const rooms, workers = 3, 8
	var wg sync.WaitGroup
	for r := range rooms {
		dialRaw(t, s.wsURL(fmt.Sprint("lock", r))) // never reads, never closes
	}
	stop := time.Now().Add(time.Second)
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
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // no grace: whoever has not gone is cut off
	s.hub.shutdown(ctx)
}
