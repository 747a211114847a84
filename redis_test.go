package main

// The Redis broker, tested against a real redis-server (Debian's
// package) that each test starts on a free loopback port, with persistence
// off, in a folder of its own, and stops. Two roomchat servers share it, as
// two processes behind a load balancer would. Without redis-server these
// tests skip, saying how to install it; with CI=true they fail instead.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// TestRedisTwoInstances puts Alice and Dave on one server, Bob and Carol on
// the other, and checks who hears whom.
func TestRedisTwoInstances(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a, b := newTestServer(t, options{redis: r.url()}), newTestServer(t, options{redis: r.url()})
	alice, dave := a.dial(t, "room1"), a.dial(t, "room1")
	bob, carol := b.dial(t, "room1"), b.dial(t, "room2")

	sendText(t, alice, chat("Hello from A", "Alice"))
	expectText(t, bob, chat("Hello from A", "Alice"))
	expectText(t, dave, chat("Hello from A", "Alice"))
	sendText(t, bob, chat("Hello from B", "Bob"))
	expectText(t, alice, chat("Hello from B", "Bob"))
	expectText(t, dave, chat("Hello from B", "Bob"))
	for _, c := range []*websocket.Conn{alice, bob, carol, dave} {
		expectQuiet(t, c) // no echo to a sender, nothing across rooms, nothing twice
	}
	a.waitHealth(t, func(h health) bool { return h.Layer.Published == 1 && h.Layer.Received == 2 }) // its own, and Bob's
	if h := a.health(t); h.Layer.Kind != "redis" || !h.Layer.Connected || h.Layer.Dropped != 0 {
		t.Errorf("/healthz layer: %+v", h.Layer)
	}
}

// TestRedisOrder sends 1,000 messages from one sender and checks that the
// member on the other server gets each once, in order.
func TestRedisOrder(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a, b := newTestServer(t, options{redis: r.url()}), newTestServer(t, options{redis: r.url()})
	from, to := a.dial(t, "order"), b.dial(t, "order")
	const n = 1000
	read := sendPaced(n, func(i int) error { return websocket.Message.Send(from, chat(strconv.Itoa(i), "A")) })
	for i := range n {
		expectText(t, to, chat(strconv.Itoa(i), "A"))
		read()
	}
	expectQuiet(t, to)
}

// TestRedisMemberOnceConnected is the join-before-101 promise across
// servers: a message sent the moment Bob's client sees the socket open
// reaches him, though his room is new on his server each time, which must
// subscribe to it before it answers the handshake.
func TestRedisMemberOnceConnected(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a, b := newTestServer(t, options{redis: r.url()}), newTestServer(t, options{redis: r.url()})
	for i := range 20 {
		room := fmt.Sprintf("join%d", i)
		alice := a.dial(t, room)
		bob := b.dial(t, room)
		sendText(t, alice, chat("right away", "Alice"))
		expectText(t, bob, chat("right away", "Alice"))
		closeClient(t, alice)
		closeClient(t, bob)
	}
}

// TestRedisOverTLS runs the roomchat command with a rediss:// URL, trusting
// the test's own certificate authority through SSL_CERT_FILE, beside a
// server that reaches the same Redis over plain TCP: the two talk.
func TestRedisOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeTestCertificate(t, dir)
	tlsPort := freePort(t)
	r := startRedis(t, "", "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", dir+"/cert.pem",
		"--tls-key-file", dir+"/key.pem", "--tls-ca-cert-file", dir+"/cert.pem", "--tls-auth-clients", "no")

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+dir+"/cert.pem",
		mainArgsEnv+"="+strings.Join([]string{"-addr", addr, "-redis", fmt.Sprintf("rediss://localhost:%d", tlsPort)}, "\n"))
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	child := &testServer{Server: &httptest.Server{URL: "http://" + addr}}
	waitFor(t, func() string { return "the command to serve over TLS to Redis; its log:\n" + logs.String() }, func() bool {
		resp, err := http.Get(child.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	if h := child.health(t); h.Layer.Kind != "redis" || !h.Layer.Connected {
		t.Fatalf("layer %+v", h.Layer)
	}

	plain := newTestServer(t, options{redis: fmt.Sprintf("redis://127.0.0.1:%d", r.port)})
	talk(t, child.dial(t, "tls"), plain.dial(t, "tls"))
}

// TestRedisOutage kills Redis mid-conversation: chat on each server goes
// on, /healthz says the broker is down and counts what waits for it; Redis
// comes back on the same port, what was said meanwhile crosses late, and
// chat across servers goes on.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	opts := options{redis: r.url(), history: defaultHistory}
	a, b := newTestServer(t, opts), newTestServer(t, opts)
	alice, dave := a.dial(t, "room1"), a.dial(t, "room1")
	bob := b.dial(t, "room1")
	sendText(t, alice, chat("before", "Alice"))
	expectText(t, bob, chat("before", "Alice"))
	expectText(t, dave, chat("before", "Alice"))

	r.stop()
	for _, s := range []*testServer{a, b} {
		s.waitHealth(t, func(h health) bool { return !h.Layer.Connected })
	}
	sendText(t, alice, chat("during", "Alice"))
	expectText(t, dave, chat("during", "Alice")) // local chat goes on
	expectQuiet(t, bob)                          // nothing crosses while Redis is away
	a.waitHealth(t, func(h health) bool { return h.Layer.Backlog == 1 })

	r.start()
	for _, s := range []*testServer{a, b} {
		s.waitHealth(t, func(h health) bool { return h.Layer.Connected })
	}
	expectText(t, bob, chat("during", "Alice")) // late, not lost
	expectQuiet(t, dave)                        // and not twice here
	// Both servers have subscribed room1 again.
	waitFor(t, func() string { return "both servers to subscribe room1 again" }, func() bool {
		n, _ := r.do(t, "PUBSUB", "NUMSUB", channelPrefix+"room1").([]any)
		return len(n) == 2 && n[1] == int64(2)
	})
	talk(t, alice, bob)
	expectText(t, dave, chat("Alice here", "Alice"))
	expectText(t, dave, chat("Bob here", "Bob"))
}

// TestRedisChannelsGoAwayWithTheirRooms checks that Redis holds a channel
// only while a room has members somewhere.
func TestRedisChannelsGoAwayWithTheirRooms(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a, b := newTestServer(t, options{redis: r.url()}), newTestServer(t, options{redis: r.url()})
	var clients []*websocket.Conn
	for i := range 6 {
		s := a
		if i%2 == 1 {
			s = b
		}
		clients = append(clients, s.dial(t, fmt.Sprintf("room%d", i%3)))
	}
	channels := func() []string {
		var names []string
		list, _ := r.do(t, "PUBSUB", "CHANNELS", channelPrefix+"*").([]any)
		for _, name := range list {
			names = append(names, string(name.([]byte)))
		}
		slices.Sort(names)
		return names
	}
	want := []string{channelPrefix + "room0", channelPrefix + "room1", channelPrefix + "room2"}
	if got := channels(); !slices.Equal(got, want) {
		t.Fatalf("PUBSUB CHANNELS is %v, want %v", got, want)
	}
	for _, c := range clients {
		closeClient(t, c)
	}
	waitFor(t, func() string { return fmt.Sprintf("PUBSUB CHANNELS to be empty, not %v", channels()) },
		func() bool { return len(channels()) == 0 })
}

// TestRedisStartupErrors checks that a server told to use a Redis it cannot
// use does not start, and says why in words that name no password.
func TestRedisStartupErrors(t *testing.T) {
	t.Parallel()
	const password = "s3cret-Pa55"
	r := startRedis(t, password)
	closed := freePort(t)
	tests := []struct {
		name, url, want string
	}{
		{"not a Redis URL", "http://127.0.0.1:6379", `the scheme is "http"`},
		{"no host", "redis://", "no host"},
		{"nothing listening", fmt.Sprintf("redis://127.0.0.1:%d", closed), "connection refused"},
		{"no password", r.addrURL(""), "NOAUTH"},
		{"wrong password", r.addrURL("wrong-" + password), "WRONGPASS"},
		{"bad URL with a password", "redis://:" + password + "@127.0.0.1:bad", "not a valid URL"},
		{"password with an unescaped #", "redis://:s3cr#et-Pa55@127.0.0.1:6379", "not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := buildHub(options{redis: tt.url}, slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatal("the server would start")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if leaksPart(err.Error(), password) {
				t.Errorf("error %q shows part of the password", err)
			}
			if d := time.Since(start); d > 2*redisDialTimeout {
				t.Errorf("took %v to fail", d)
			}
		})
	}
	t.Run("the right password", func(t *testing.T) {
		h, err := buildHub(options{redis: r.addrURL(password)}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		h.shutdown(context.Background())
	})
}

// leaksPart reports whether text holds any 4 characters in a row of
// password ("s3cr" of "s3cret"): a part of a password is a leak too.
func leaksPart(text, password string) bool {
	for i := 0; i+4 <= len(password); i++ {
		if strings.Contains(text, password[i:i+4]) {
			return true
		}
	}
	return false
}

// TestRedisStartupErrorExits runs the real command with a Redis it cannot
// reach: it must exit non-zero at once, with one line that says why.
func TestRedisStartupErrorExits(t *testing.T) {
	t.Parallel()
	out, code := runMain(t, "-addr", "127.0.0.1:0", "-redis", fmt.Sprintf("redis://127.0.0.1:%d", freePort(t)))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "-redis: redis at 127.0.0.1:") ||
		!strings.Contains(lines[0], "connection refused") {
		t.Errorf("exit code %d, output:\n%s", code, out)
	}
}

// TestRedisPasswordStaysSecret runs a server with a password through an
// outage and back, and reads its log and /healthz for the password.
func TestRedisPasswordStaysSecret(t *testing.T) {
	t.Parallel()
	const password = "s3cret-Pa55"
	r := startRedis(t, password)
	var logs syncBuffer
	h, err := buildHub(options{redis: r.addrURL(password)}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	s := serveHub(t, h, options{})
	c := s.dial(t, "vault")
	r.stop()
	s.waitHealth(t, func(h health) bool { return !h.Layer.Connected })
	r.start()
	s.waitHealth(t, func(h health) bool { return h.Layer.Connected })
	sendText(t, c, chat("hi", "A"))
	resp, err := http.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"log": logs.String(), "/healthz": string(body)} {
		if leaksPart(text, password) {
			t.Errorf("the %s shows part of the password:\n%s", what, text)
		}
	}
	if !strings.Contains(logs.String(), "redis broker down") || !strings.Contains(logs.String(), "redis broker back") {
		t.Errorf("the log does not tell the outage:\n%s", logs.String())
	}
}

// TestRedisHangs hangs Redis (SIGSTOP) while a member talks: its server
// notices the stall, the members there get every message all the same, in
// order, and what Redis did not take waits in the backlog; when Redis
// wakes, every message reaches the other server, in order, once, whether
// Redis took it from the connection that hung or from the backlog.
func TestRedisHangs(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	opts := options{redis: r.url(), history: defaultHistory}
	a, b := newTestServer(t, opts), newTestServer(t, opts)
	from, here, there := a.dial(t, "hang"), a.dial(t, "hang"), b.dial(t, "hang")
	r.signal(syscall.SIGSTOP)
	t.Cleanup(func() { r.signal(syscall.SIGCONT) })

	const n = 2 * defaultHistory // more than a history: the catch-up brings up to three
	read := sendPaced(n, func(i int) error { return websocket.Message.Send(from, chat(strconv.Itoa(i), "A")) })
	for i := range n {
		expectText(t, here, chat(strconv.Itoa(i), "A"))
		read()
	}
	a.waitHealth(t, func(h health) bool { return !h.Layer.Connected && h.Layer.Backlog == n })
	r.signal(syscall.SIGCONT)
	for _, s := range []*testServer{a, b} {
		s.waitHealth(t, func(h health) bool { return h.Layer.Connected })
	}
	for i := range n {
		expectText(t, there, chat(strconv.Itoa(i), "A"))
	}
	a.waitHealth(t, func(h health) bool { return h.Layer.Connected && h.Layer.Backlog == 0 })
	for _, c := range []*websocket.Conn{from, here, there} {
		expectQuiet(t, c)
	}
}

// TestRedisShutdown stops a server (as SIGTERM would) with Redis up, gone,
// or hanging (stopped with SIGSTOP, so that it neither answers nor closes):
// every client gets 1001 and run returns within the 5 s the protocol gives.
func TestRedisShutdown(t *testing.T) {
	t.Parallel()
	for _, state := range []string{"up", "gone", "hanging"} {
		t.Run(state, func(t *testing.T) {
			t.Parallel()
			r := startRedis(t, "")
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- run(ctx, ln, options{redis: r.url()}, slog.New(slog.DiscardHandler)) }()
			url := "ws://" + ln.Addr().String() + "/ws/chat/"
			clients := []*websocket.Conn{dialURL(t, url+"one/", ""), dialURL(t, url+"one/", ""), dialURL(t, url+"two/", "")}
			for _, c := range clients {
				expectQuiet(t, c)
			}
			switch state {
			case "gone":
				r.stop()
			case "hanging":
				r.signal(syscall.SIGSTOP)
				t.Cleanup(func() { r.signal(syscall.SIGCONT) })
				sendText(t, clients[0], chat("into the void", "A")) // a PUBLISH that will not be answered
				expectText(t, clients[1], chat("into the void", "A"))
			}
			start := time.Now()
			stop()
			for _, c := range clients {
				expectClose(t, c, closeGoingAway)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run returned %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("run still going %v after shutdown began", time.Since(start))
			}
		})
	}
}

// TestRedisBrokerLeavesNothingBehind checks that closing the broker ends
// every goroutine it started, after an outage and a reconnect too.
func TestRedisBrokerLeavesNothingBehind(t *testing.T) {
	r := startRedis(t, "")
	before := runtime.NumGoroutine()
	h, err := buildHub(options{redis: r.url()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.broker.subscribe(&room{name: "room"})
	r.stop()
	waitFor(t, func() string { return "the broker to notice" }, func() bool { return !h.broker.status().Connected })
	r.start()
	waitFor(t, func() string { return "the broker to come back" }, func() bool { return h.broker.status().Connected })
	h.shutdown(context.Background())
	waitFor(t, func() string { return fmt.Sprintf("%d goroutines, %d before", runtime.NumGoroutine(), before) },
		func() bool { return runtime.NumGoroutine() <= before })
}

// ---- helpers (redisserver_test.go starts redis-server) ----

// talk checks that alice and bob hear each other: one message each way.
func talk(t *testing.T, alice, bob *websocket.Conn) {
	t.Helper()
	sendText(t, alice, chat("Alice here", "Alice"))
	expectText(t, bob, chat("Alice here", "Alice"))
	sendText(t, bob, chat("Bob here", "Bob"))
	expectText(t, alice, chat("Bob here", "Bob"))
}

// TestRedisBacklogFull talks on while Redis is away, past what the backlog
// holds: the members here get every message, and the sender of the one
// that does not fit is told, with its cid, that it reached only them.
func TestRedisBacklogFull(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	s := newTestServer(t, options{redis: r.url(), history: defaultHistory})
	from, here := s.dial(t, "full"), s.dial(t, "full")
	r.stop()
	s.waitHealth(t, func(h health) bool { return !h.Layer.Connected })
	read := sendPaced(backlogMessages, func(i int) error { return websocket.Message.Send(from, chat(strconv.Itoa(i), "A")) })
	for i := range backlogMessages {
		expectText(t, here, chat(strconv.Itoa(i), "A"))
		read()
	}
	sendText(t, from, chatWithCid("one too many", "A", "last"))
	expectText(t, here, chat("one too many", "A"))
	expectText(t, from, `{"action":"error","payload":[{"type":"not_relayed","loc":[],"msg":"`+notRelayed.Msg+`"}],"cid":"last"}`)
	if h := s.health(t); h.Layer.Backlog != backlogMessages || h.Layer.Dropped != 1 {
		t.Errorf("/healthz: %+v", h.Layer)
	}
}
