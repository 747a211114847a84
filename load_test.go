package main

// The bounded load test, on 127.0.0.1 only:
//
//	ROOMCHAT_LOAD=1 go test -run TestLoad -v

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// TestLoad is the bounded load test: 1,000 connections in 100 rooms, each
// sending 2 messages a second for 10 s. Every receiver checks each sender's
// messages arrive once each and in order; it reports p50 and p99 delivery
// latency. It runs with ROOMCHAT_LOAD=1, as .ci/run does, so that a plain
// go test stays quick.
func TestLoad(t *testing.T) {
	if os.Getenv("ROOMCHAT_LOAD") == "" {
		t.Skip("set ROOMCHAT_LOAD=1 to run the load test (about 15 s)")
	}
	const (
		rooms    = 100
		perRoom  = 10
		rate     = 2 // messages a second per connection
		duration = 10 * time.Second
	)
	s := newTestServer(t, options{rate: defaultRate})
	// A member's fields belong to its reader goroutine until readers.Wait,
	// except got, which the test watches meanwhile.
	type member struct {
		id      int
		conn    *websocket.Conn
		last    map[int]int // sender id -> last sequence number seen
		lat     []time.Duration
		got     atomic.Int64
		err     error // the reader's
		sendErr error // the sender's
	}
	var members []*member
	for i := range rooms * perRoom {
		members = append(members, &member{id: i, conn: s.dial(t, fmt.Sprintf("load%d", i/perRoom)), last: map[int]int{}})
	}
	s.waitHealth(t, func(h health) bool { return h.Connections == rooms*perRoom })

	// Messages carry "sender:seq:unixnano" so a receiver can check them.
	var readers sync.WaitGroup
	for _, m := range members {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				var text string
				if err := websocket.Message.Receive(m.conn, &text); err != nil {
					return // closed at the end
				}
				var f struct{ Payload chatPayload }
				json.Unmarshal([]byte(text), &f)
				var from, seq int
				var sentAt int64
				if _, err := fmt.Sscanf(f.Payload.Message, "%d:%d:%d", &from, &seq, &sentAt); err != nil {
					m.err = fmt.Errorf("member %d got %q", m.id, text)
					continue
				}
				if from/perRoom != m.id/perRoom || from == m.id {
					m.err = fmt.Errorf("member %d got a message from %d", m.id, from)
				}
				if prev, seen := m.last[from]; (seen && seq != prev+1) || (!seen && seq != 0) {
					m.err = fmt.Errorf("member %d: from %d, message %d after %d", m.id, from, seq, prev)
				}
				m.last[from] = seq
				m.lat = append(m.lat, time.Since(time.Unix(0, sentAt)))
				m.got.Add(1)
			}
		}()
	}

	perSender := int(rate * duration.Seconds())
	var senders sync.WaitGroup
	for _, m := range members {
		senders.Add(1)
		go func() {
			defer senders.Done()
			// Start at a random point within the first interval, then
			// keep to the rate (open loop: no waiting for replies).
			tick := time.Second / rate
			time.Sleep(time.Duration(m.id*7919%1000) * tick / 1000)
			next := time.Now()
			for seq := range perSender {
				body := fmt.Sprintf("%d:%d:%d", m.id, seq, time.Now().UnixNano())
				m.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := websocket.Message.Send(m.conn, chat(body, strconv.Itoa(m.id))); err != nil {
					m.sendErr = err
					return
				}
				next = next.Add(tick)
				time.Sleep(time.Until(next))
			}
		}()
	}
	senders.Wait()
	// Every receiver must get perSender messages from each of the others.
	want := perSender * (perRoom - 1)
	waitFor(t, func() string { return "every message to arrive" }, func() bool {
		for _, m := range members {
			if m.got.Load() < int64(want) {
				return false
			}
		}
		return true
	})
	for _, m := range members {
		m.conn.Close()
	}
	readers.Wait()

	var all []time.Duration
	for _, m := range members {
		if m.err != nil || m.sendErr != nil {
			t.Error(m.err, m.sendErr)
		}
		if len(m.lat) != want {
			t.Errorf("member %d got %d messages, want %d", m.id, len(m.lat), want)
		}
		all = append(all, m.lat...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[int(math.Ceil(p*float64(len(all))))-1] }
	h := s.health(t)
	t.Logf("%d connections in %d rooms, %d msg/s each for %v: %d deliveries, p50 %v, p99 %v, max %v; dropped %d",
		rooms*perRoom, rooms, rate, duration, len(all), pct(0.50), pct(0.99), all[len(all)-1], h.SlowClientsDropped)
}
