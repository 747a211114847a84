package main

// Tests of what a delivery promises its sender: cids kept apart by kind of
// sender, an API post the backlog refuses, empty rooms that keep nothing,
// and a cut that a close frame cannot undo.

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCidSpaces sends the same cid from every kind of sender, one after
// another: only the same sender's second message is a copy. A member that
// names itself after another kind of sender (api, token:ann) reaches no
// one's space but its own.
func TestCidSpaces(t *testing.T) {
	senders := map[string]func(cid string) *post{
		"member api": func(cid string) *post {
			return postFrom(&client{id: 1}, chatPayload{Message: "m", Name: "api"}, cid)
		},
		"member token:ann": func(cid string) *post {
			return postFrom(&client{id: 2}, chatPayload{Message: "m", Name: "token:ann"}, cid)
		},
		"member api:": func(cid string) *post {
			return postFrom(&client{id: 3}, chatPayload{Message: "m", Name: "api:"}, cid)
		},
		"token subject ann": func(cid string) *post {
			return postFrom(&client{id: 4, token: &tokenClaims{Subject: "ann", Name: "api"}}, chatPayload{Message: "m"}, cid)
		},
		"token named api, no subject": func(cid string) *post {
			return postFrom(&client{id: 5, token: &tokenClaims{Name: "api"}}, chatPayload{Message: "m"}, cid)
		},
		"the API": func(cid string) *post {
			p, errs := decodeAPIMessage([]byte(`{"message":"m","name":"api","cid":"` + cid + `"}`))
			if errs != nil {
				t.Fatal(errs)
			}
			return p
		},
	}
	for first, a := range senders {
		for second, b := range senders {
			t.Run(first+", then "+second, func(t *testing.T) {
				h := newHistory(10, new(historyTotal))
				h.place(a("order-7"))
				if copied := h.place(b("order-7")); copied != (first == second) {
					t.Errorf("the second is a copy: %v, want %v", copied, first == second)
				}
			})
		}
	}
	t.Run("a member named api, then the API, over sockets", func(t *testing.T) {
		s := newAPIServer(t, options{history: defaultHistory})
		member, watcher := s.dialHistory(t, "shop", "history"), s.dial(t, "shop")
		member.next()
		sendText(t, member.c, chatWithCid("fake order", "api", "order-7"))
		if action, _, raw := member.next(); action != "said" {
			t.Fatalf("the member got %s, want its said", raw)
		}
		expectText(t, watcher, chat("fake order", "api"))
		var answer struct{ ID string }
		code, body := apiCall(t, s, "POST", "/api/rooms/shop/messages", testAPIKey, `{"message":"order shipped","name":"Shop","cid":"order-7"}`, &answer)
		if code != http.StatusOK || answer.ID == "" || strings.HasSuffix(answer.ID, "-1") {
			t.Fatalf("the API's publish: %d %s, want a new id", code, body)
		}
		expectText(t, watcher, chat("order shipped", "Shop"))
	})
}

// TestEmptyRoomsKeepNothing opens and closes many rooms no one speaks in:
// none keeps a stream once empty, with history and without. A room with a
// message keeps one, counted; and streams count in the memory bound, which
// evicts the longest empty first.
func TestEmptyRoomsKeepNothing(t *testing.T) {
	t.Parallel()
	const rooms = 40
	for _, keep := range []int{defaultHistory, 0} {
		t.Run(fmt.Sprint("history ", keep), func(t *testing.T) {
			s := newAPIServer(t, options{history: keep})
			for i := range rooms {
				s.dial(t, fmt.Sprint("passing", i)).Close()
			}
			apiCall(t, s, "POST", "/api/rooms/said/messages", testAPIKey, `{"message":"kept","name":"Bot"}`, nil)
			want := int64(0)
			if keep > 0 {
				want = 1 // the room spoken in
			}
			waitFor(t, func() string { return fmt.Sprintf("%+v, want %d streams", s.hub.broker.status(), want) },
				func() bool {
					rooms, _ := s.hub.counts()
					return rooms == 0 && s.hub.broker.status().HistoryStreams == want
				})
		})
	}
	t.Run("streams are evicted under the memory bound", func(t *testing.T) {
		b := newMemoryBroker(defaultHistory)
		defer b.close()
		n := int(historyTotalBytes/streamBytes) + 1000 // one message each is not enough to pass the bound without them
		for i := range n {
			b.publish(fmt.Sprint("r", i), newPost(chatPayload{Message: "m", Name: "n"}, 0))
		}
		b.expire(time.Now())
		if held := b.total.held(); held > historyTotalBytes || b.total.streams.Load() >= int64(n) {
			t.Fatalf("held %d bytes in %d streams after expiry, want at most %d bytes", held, b.total.streams.Load(), historyTotalBytes)
		}
	})
}

// TestAPIRefusedPost has the API publish while Redis is stopped and the
// backlog is full, and the backlog's refusal comes before the API's wait
// ends: the answer is 503 with Retry-After, the message reached no one, and
// the retry with the same cid is placed once.
func TestAPIRefusedPost(t *testing.T) {
	t.Parallel()
	apiPostIntoFullBacklog(t, time.Minute, http.StatusServiceUnavailable)
}

// TestAPIPromisedPostIsKept is the other order: the API's wait ends first,
// and its 202 promises the post, so the full backlog keeps it past its
// bounds, and once Redis is back it is in the stream, once, without a
// retry.
func TestAPIPromisedPostIsKept(t *testing.T) {
	t.Parallel()
	apiPostIntoFullBacklog(t, 10*time.Millisecond, http.StatusAccepted)
}

// apiPostIntoFullBacklog posts with the API into a room whose process has
// lost Redis and holds a full backlog, its wait for a place being wait,
// and checks that the answer is want and that the stream holds the post
// once in the end (a 503's after its retry).
func apiPostIntoFullBacklog(t *testing.T, wait time.Duration, want int) {
	r := startRedis(t, "")
	s := newAPIServer(t, options{history: defaultHistory, redis: r.url(), apiPlaceWait: wait})
	b := s.hub.broker.(*redisBroker)
	b.mu.Lock()
	b.backlogMax = 2
	b.mu.Unlock()
	member, watcher := s.dial(t, "orders"), s.dialHistory(t, "orders", "history")
	watcher.next()
	r.signal(syscall.SIGSTOP)
	defer r.signal(syscall.SIGCONT)
	for i := range 2 { // sent to Redis, which does not answer: they fill the backlog when the session ends
		sendText(t, member, chat(fmt.Sprint("before ", i), "M"))
	}
	waitFor(t, func() string { return "the member's two messages sent to Redis, before the API's" }, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.sequence == 2
	})
	const order = `{"message":"order shipped","name":"Shop","cid":"order-8"}`
	req, _ := http.NewRequest("POST", s.URL+"/api/rooms/orders/messages", strings.NewReader(order))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want || want == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Fatalf("publish with a full backlog: %d, Retry-After %q; want %d", resp.StatusCode, resp.Header.Get("Retry-After"), want)
	}
	for i := range 2 { // the members here have them, without ids; not the API's
		if _, msgs, raw := watcher.next(); len(msgs) != 1 || msgs[0].Message != fmt.Sprint("before ", i) {
			t.Fatalf("the watcher got %s", raw)
		}
	}
	r.signal(syscall.SIGCONT)
	waitFor(t, func() string { return "redis back, the backlog sent" }, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.up.Load() && len(b.backlog) == 0
	})
	if want == http.StatusServiceUnavailable {
		var answer struct{ ID string }
		if code, body := apiCall(t, s, "POST", "/api/rooms/orders/messages", testAPIKey, order, &answer); code != http.StatusOK || answer.ID == "" {
			t.Fatalf("the retry: %d %s", code, body)
		}
	}
	var h struct{ Messages []historyMsg }
	apiCall(t, s, "GET", "/api/rooms/orders/messages", testAPIKey, "", &h)
	shipped := 0
	for _, m := range h.Messages {
		if m.Message == "order shipped" {
			shipped++
		}
	}
	if shipped != 1 {
		t.Fatalf("the stream holds the API's message %d times, want once: %+v", shipped, h.Messages)
	}
}

// TestCutWinsOverClose cuts a connection off while the writer's close
// frame is stuck on a peer that does not read: the cut ends the write at
// once, and the read loop's deadline stays passed, not a closing
// handshake's second later.
func TestCutWinsOverClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer.(*net.TCPConn).SetReadBuffer(4 << 10)
	conn.(*net.TCPConn).SetWriteBuffer(4 << 10)
	for { // fill both buffers: the close frame's write will wait
		conn.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := conn.Write(make([]byte, 4<<10)); err != nil {
			break
		}
	}
	c := &client{conn: conn, closeSent: make(chan struct{})}
	sent := make(chan struct{})
	go func() { c.sendClose(closeGoingAway, "server shutting down"); close(sent) }()
	// Nothing announces a write that waits: this is the time for it to start.
	time.Sleep(50 * time.Millisecond)
	c.cut()
	<-sent
	start := time.Now()
	_, err = conn.Read(make([]byte, 1))
	if took := time.Since(start); err == nil || took > closeTimeout/2 {
		t.Fatalf("after the cut, a read took %v (%v); want a passed deadline", took, err)
	}
}
