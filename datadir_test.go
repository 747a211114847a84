package main

// -data DIR from outside, with real processes and real files: a server
// killed with SIGKILL in the middle of a flood and started again, a full
// disk, two servers on one DIR, and DIRs that cannot be used.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// dataServer is the roomchat command in a process of its own.
type dataServer struct {
	*testServer
	cmd  *exec.Cmd
	logs *syncBuffer
}

// startChild runs the roomchat command with args, through wrap when it is
// not empty (a shell command that ends by running "$0" "$@"), and returns
// once /healthz answers. It is killed when the test ends.
func startChild(t *testing.T, wrap string, env []string, args ...string) *dataServer {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(os.Args[0])
	if wrap != "" {
		cmd = exec.Command("sh", "-c", wrap, os.Args[0])
	}
	cmd.Env = append(append(os.Environ(), env...), mainArgsEnv+"="+strings.Join(append([]string{"-addr", addr}, args...), "\n"))
	c := &dataServer{cmd: cmd, logs: new(syncBuffer),
		testServer: &testServer{Server: &httptest.Server{URL: "http://" + addr}}}
	cmd.Stderr = c.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, func() string { return "the child server; its log:\n" + c.logs.String() }, func() bool {
		resp, err := http.Get(c.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return c
}

// kill ends the child with SIGKILL: nothing of it runs after.
func (c *dataServer) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.cmd.Wait()
}

// said is one `said` frame, or the error that came instead.
type said struct {
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload"`
	Cid     string          `json:"cid"`
}

// id is the id a said frame gives; "" for any other frame.
func (s said) id() string {
	var p struct{ ID string }
	if s.Action != "said" || json.Unmarshal(s.Payload, &p) != nil {
		return ""
	}
	return p.ID
}

// keptMsg is a message of a history frame, with its cid.
type keptMsg struct {
	ID, Message, Name, Cid string
}

// readHistory joins room with query and returns the history frame's epoch
// and messages, and whether a history_gap came first.
func readHistory(t *testing.T, s *testServer, room, query string) (epoch string, msgs []keptMsg, gap bool) {
	t.Helper()
	c := dialURL(t, s.wsURL(room)+"?"+query, s.URL)
	defer c.Close()
	for {
		var f struct {
			Action  string
			Payload struct {
				Epoch    string
				Messages []keptMsg
			}
		}
		if err := json.Unmarshal([]byte(recvText(t, c)), &f); err != nil {
			t.Fatal(err)
		}
		switch f.Action {
		case "history_gap":
			gap = true
		case "history":
			return f.Payload.Epoch, f.Payload.Messages, gap
		}
	}
}

// seqOf is the SEQ of an id.
func seqOf(t *testing.T, id string) uint64 {
	_, s, _ := strings.Cut(id, "-")
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return n
}

// TestDataSurvivesSIGKILL floods a room from four senders, kills the
// server with SIGKILL mid-flood, and starts it again on the same DIR:
// every message whose said came is kept, once, in order, with its id; the
// epoch is the same; a member resumes from the last id it saw with no gap
// and gets what is said next; a resend of an old cid is still a copy.
func TestDataSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := []string{"-data", dir, "-rate", "0", "-history", "2000"}
	a := startChild(t, "", nil, args...)
	listener := dialURL(t, a.wsURL("flood")+"?history", a.URL)
	recvText(t, listener) // the empty history
	var mu sync.Mutex
	acked := map[string]string{} // cid to id
	lastSeen := ""
	go func() {
		for {
			listener.SetReadDeadline(time.Now().Add(recvTimeout))
			var raw string
			if websocket.Message.Receive(listener, &raw) != nil {
				return
			}
			var m struct{ ID string }
			json.Unmarshal([]byte(raw), &m)
			mu.Lock()
			lastSeen = m.ID
			mu.Unlock()
		}
	}()
	enough := make(chan struct{})
	var once sync.Once
	var senders sync.WaitGroup
	// Each sender keeps at most window messages unacknowledged, as a
	// client that reads what it is sent does: a flood that no member can
	// fall 256 frames behind (sendQueueLen), however busy the machine.
	const window = 32
	for k := range 4 {
		c := dialURL(t, a.wsURL("flood"), a.URL)
		credit, readerDone := make(chan struct{}, window), make(chan struct{})
		senders.Go(func() { // sends until the server dies
			for i := 0; i < 400; i++ {
				select {
				case credit <- struct{}{}:
				case <-readerDone:
					return
				}
				c.SetWriteDeadline(time.Now().Add(recvTimeout))
				if websocket.Message.Send(c, chatWithCid(fmt.Sprint(i), fmt.Sprint("S", k), fmt.Sprintf("s%d-%d", k, i))) != nil {
					return
				}
			}
		})
		senders.Go(func() {
			defer close(readerDone)
			for {
				var f said
				c.SetReadDeadline(time.Now().Add(recvTimeout))
				if websocket.JSON.Receive(c, &f) != nil {
					return
				}
				if f.Action != "said" {
					continue // another sender's message
				}
				<-credit
				mu.Lock()
				acked[f.Cid] = f.id()
				if len(acked) == 300 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-enough:
	case <-time.After(10 * time.Second):
		t.Fatalf("300 messages not acknowledged in 10 s; the log:\n%s", a.logs.String())
	}
	a.kill(t)
	senders.Wait()
	mu.Lock()
	defer mu.Unlock()

	b := startChild(t, "", nil, args...)
	epoch, kept, gap := readHistory(t, b.testServer, "flood", "history")
	if gap || len(kept) < len(acked) {
		t.Fatalf("%d messages kept of %d acknowledged (gap %v)", len(kept), len(acked), gap)
	}
	if want, _, _ := strings.Cut(lastSeen, "-"); epoch != want {
		t.Fatalf("epoch %q after the restart, was %q", epoch, want)
	}
	byCid, last := map[string]keptMsg{}, uint64(0)
	next := map[string]int{} // per sender, the next message in its order
	for _, m := range kept {
		if seq := seqOf(t, m.ID); seq <= last {
			t.Fatalf("id %s after seq %d: out of order", m.ID, last)
		} else {
			last = seq
		}
		if _, twice := byCid[m.Cid]; twice {
			t.Fatalf("cid %s kept twice", m.Cid)
		}
		byCid[m.Cid] = m
		if want := fmt.Sprint(next[m.Name]); m.Message != want {
			t.Fatalf("%s's message %q, want %q: out of order", m.Name, m.Message, want)
		}
		next[m.Name]++
	}
	for cid, id := range acked {
		if id == "" || byCid[cid].ID != id {
			t.Fatalf("acknowledged %s as %s; kept as %+v", cid, id, byCid[cid])
		}
	}
	t.Logf("%d acknowledged, %d kept, %d seen live (last %s)", len(acked), len(kept), seqOf(t, lastSeen), lastSeen)

	// The listener resumes from the last id it saw, perhaps one the disk
	// never had: no gap, and what is said next reaches it.
	resumed := dialURL(t, b.wsURL("flood")+"?since="+lastSeen, b.URL)
	if got := recvText(t, resumed); !strings.HasPrefix(got, `{"action":"history"`) {
		t.Fatalf("resume got %s", got)
	}
	talker := b.dial(t, "flood")
	sendText(t, talker, chatWithCid("after", "T", "t1"))
	var f said
	websocket.JSON.Receive(talker, &f)
	if seqOf(t, f.id()) <= seqOf(t, lastSeen) {
		t.Fatalf("a new message's id %s is not after the last seen, %s", f.id(), lastSeen)
	}
	var live struct{ ID string }
	resumed.SetReadDeadline(time.Now().Add(recvTimeout))
	if err := websocket.JSON.Receive(resumed, &live); err != nil || live.ID != f.id() {
		t.Fatalf("resumed member got %+v (%v), want %s", live, err, f.id())
	}

	// A resend of an acknowledged cid is a copy: its first id, and
	// nothing for the others.
	for cid, id := range acked {
		k, _, _ := strings.Cut(strings.TrimPrefix(cid, "s"), "-")
		sendText(t, talker, chatWithCid("again", "S"+k, cid))
		websocket.JSON.Receive(talker, &f)
		if f.id() != id {
			t.Fatalf("resent %s: said %s, first %s", cid, f.id(), id)
		}
		expectQuiet(t, resumed)
		break
	}
}

// TestDataRefusesUnusableDirs starts the command on DIRs it cannot use:
// it stops at once, naming DIR.
func TestDataRefusesUnusableDirs(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	held := filepath.Join(tmp, "held")
	startChild(t, "", nil, "-data", held)
	for _, tc := range []struct {
		name, dir, want string
		extra           []string
	}{
		{"a file", file, "not a directory", nil},
		{"inside a file", filepath.Join(file, "data"), "not a directory", nil},
		{"held by another server", held, "held by another running roomchat", nil},
		{"with -redis", filepath.Join(tmp, "r"), "not with -redis", []string{"-redis", "redis://127.0.0.1:1"}},
		{"with -history 0", filepath.Join(tmp, "h"), "-history 0", []string{"-history", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runMain(t, append([]string{"-addr", "127.0.0.1:0", "-data", tc.dir}, tc.extra...)...)
			if code == 0 || !strings.Contains(out, tc.want) || !strings.Contains(out, tc.dir) && tc.extra == nil {
				t.Fatalf("exit %d, output:\n%s", code, out)
			}
		})
	}
}

// TestDataFullDisk runs the server with a file size limit (RLIMIT_FSIZE,
// through the shell's ulimit): once the journal cannot grow, a sender is
// told not_stored (the HTTP API 507), the room still gets the message, and
// the log says so once.
func TestDataFullDisk(t *testing.T) {
	t.Parallel()
	a := startChild(t, "ulimit -f 16 && exec \"$0\"", []string{apiKeyEnv + "=" + testAPIKey}, "-data", t.TempDir(), "-rate", "0")
	sender, member := a.dial(t, "full"), a.dial(t, "full")
	long := strings.Repeat("x", 3000)
	stored := 0
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("100 messages of 3 KB all stored under a file size limit of 16 blocks")
		}
		sendText(t, sender, chatWithCid(long, "A", fmt.Sprint(i)))
		recvText(t, member)
		var f said
		websocket.JSON.Receive(sender, &f)
		if f.Action == "said" {
			stored++
			continue
		}
		if !strings.Contains(string(f.Payload), `"not_stored"`) || f.Cid != fmt.Sprint(i) {
			t.Fatalf("got %+v %s", f, f.Payload)
		}
		break
	}
	for i := range 3 { // served from memory: delivered, and not stored
		sendText(t, sender, chatWithCid("more", "A", fmt.Sprint("m", i)))
		expectText(t, member, chat("more", "A"))
		var f said
		websocket.JSON.Receive(sender, &f)
		if !strings.Contains(string(f.Payload), `"not_stored"`) {
			t.Fatalf("got %+v %s", f, f.Payload)
		}
	}
	code, body := apiCall(t, a.testServer, "POST", "/api/rooms/full/messages", testAPIKey, `{"message":"api","name":"Shop"}`, nil)
	expectText(t, member, chat("api", "Shop"))
	if want := `{"detail":"` + notStored.Msg + `"}`; code != http.StatusInsufficientStorage || strings.TrimSpace(body) != want {
		t.Fatalf("the API answered %d %s, want 507 %s", code, body, want)
	}
	if n := strings.Count(a.logs.String(), "cannot write to the data directory"); n != 1 {
		t.Fatalf("the full disk logged %d times after %d stored:\n%s", n, stored, a.logs.String())
	}
}
