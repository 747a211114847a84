package main

// The Redis channel layer against a Redis, or a publisher on it, that does
// not play fair: replies built to exhaust memory, frames no roomchat wrote,
// and a server that accepts sessions only to drop them.

import (
	"bufio"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReplyBudget reads replies that each stay within one limit but claim
// far more in all: nested arrays of 1,024 elements each, and many bulk
// strings. Each must be refused before the parser allocates what it claims.
func TestReplyBudget(t *testing.T) {
	nested := strings.Repeat("*1024\r\n", maxReplyDepth) // 1024^4 elements, claimed
	manyBulks := "*1000\r\n" + strings.Repeat("$65536\r\n"+strings.Repeat("x", 65536)+"\r\n", 17)
	for name, reply := range map[string]string{"nested arrays": nested, "bulk strings past 1 MiB": manyBulks} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := readReply(bufio.NewReader(strings.NewReader(reply)))
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("the reply was read whole")
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 2*maxReplyBytes {
				t.Errorf("allocated %d bytes for one refused reply", got)
			}
		})
	}
}

// TestRedisFramesFromStrangersAreDropped publishes, on a room's channel,
// what no roomchat writes: members must receive none of it, the broker must
// count it, and a message that is the protocol's still arrives, as the
// server itself would have encoded it, in either form a roomchat publishes.
func TestRedisFramesFromStrangersAreDropped(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	s := newTestServer(t, options{redis: r.url()})
	member := s.dial(t, "lobby")
	channel := channelPrefix + "lobby"
	garbage := []string{
		"stranger not json",
		"stranger 1 0 not json",
		`stranger x 0 {"message":"hi","name":"M"}`,
		`stranger 1 0 {"message":"hi"}`,
		`stranger 1 0 {"id":"../../etc","message":"hi","name":"M"}`,
		`stranger 1 0 {"id":"abc-0","message":"hi","name":"M"}`,
		`stranger {"action":"error","payload":[{"type":"fake","loc":[],"msg":"Your session expired"}]}`,
		"stranger {\"action\":\"new_chat_message\",\"payload\":{\"message\":\"\xff\xfe\",\"name\":\"M\"}}",
		`stranger {"action":"new_chat_message","payload":{"message":"` + strings.Repeat("x", 70000) + `","name":"M"}}`,
		`stranger 1 0 {"message":"` + strings.Repeat("x", 4001) + `","name":"M"}`,
		`stranger {"action":"ping"}`,
	}
	for _, g := range garbage {
		r.do(t, "PUBLISH", channel, g)
	}
	r.do(t, "PUBLISH", channel, `stranger 1 0 {"name":"M","message":"fair","extra":1}`)
	r.do(t, "PUBLISH", channel, `stranger {"payload":{"name":"M","message":"old"},"action":"new_chat_message","extra":1}`)
	expectText(t, member, chat("fair", "M"))
	expectText(t, member, chat("old", "M"))
	s.waitHealth(t, func(h health) bool { return h.Layer.Rejected == int64(len(garbage)) && h.Layer.Received == 2 })
}

// TestRedisThatDropsEverySession is a fake Redis that accepts a session,
// answers its hello, and hangs up. The broker must back off as from a Redis
// that is down, not dial ten times a second, and log the outage once.
func TestRedisThatDropsEverySession(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				// Answer a session's hello, however long it takes to come
				// on a busy machine, and hang up at its first command.
				conn.SetReadDeadline(time.Now().Add(redisDialTimeout))
				for {
					cmd, err := readReply(r)
					if err != nil {
						return
					}
					args, _ := cmd.([]any)
					verb, _ := args[0].([]byte)
					switch strings.ToUpper(string(verb)) {
					case "HELLO":
						conn.Write([]byte("%0\r\n"))
					case "SCRIPT":
						conn.Write([]byte("$40\r\n" + strings.Repeat("0", 40) + "\r\n"))
					default:
						return
					}
				}
			}()
		}
	}()
	var logs syncBuffer
	h, err := buildHub(options{redis: "redis://" + ln.Addr().String()}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.shutdown(t.Context())
	// A session starts at once; what follows is the redials.
	// Without the backoff kept across sessions this would be some 30
	// connections (a redial every 100 ms or so); with it, at most 2 × 6.
	time.Sleep(3 * time.Second) // a span of time is what is measured
	if n := accepted.Load(); n > 12 {
		t.Errorf("%d connections in 3 s", n)
	}
	if n := strings.Count(logs.String(), "redis broker down"); n != 1 {
		t.Errorf("the outage is %d lines in the log:\n%s", n, logs.String())
	}
}
