package main

// The HTTP API, from outside: real requests, exact statuses and bodies.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testAPIKey is the API key of the tests' servers.
const testAPIKey = "test-api-key-0123456789"

// apiCall makes one API request with key ("" for none) and returns the
// status and the body, and the body decoded into v when v is not nil.
func apiCall(t *testing.T, s *testServer, method, path, key, body string, v any) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s %s: %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(bytes.TrimSpace(raw))
}

// newAPIServer is a test server with the API on.
func newAPIServer(t *testing.T, opts options) *testServer {
	opts.apiKey = []byte(testAPIKey)
	return newTestServer(t, opts)
}

func TestAPIOffWithoutKey(t *testing.T) {
	s := newTestServer(t, options{})
	if code, _ := apiCall(t, s, "GET", "/api/rooms", testAPIKey, "", nil); code != http.StatusNotFound {
		t.Errorf("status %d, want 404", code)
	}
}

// TestAPIStatuses sends every kind of bad request and checks its answer.
func TestAPIStatuses(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, options{history: defaultHistory})
	chatErr := func(typ, field, msg string) string {
		return `{"detail":[{"type":"` + typ + `","loc":["body","` + field + `"],"msg":"` + msg + `"}]}`
	}
	tests := []struct {
		name, method, path, key, body string
		code                          int
		want                          string // the body, when it says something
	}{
		{"no key", "GET", "/api/rooms", "", "", 401, `{"detail":"missing or wrong API key: send Authorization: Bearer <key>"}`},
		{"wrong key", "GET", "/api/rooms", "wrong-key-0123456789", "", 401, ""},
		{"unknown route", "GET", "/api/nowhere", testAPIKey, "", 404, `{"detail":"no such route: see docs/protocol.md, The HTTP API"}`},
		{"unknown route, no key", "GET", "/api/nowhere", "", "", 401, ""},
		{"wrong method", "DELETE", "/api/rooms/lobby/messages", testAPIKey, "", 405, `{"detail":"this route takes GET, HEAD, POST"}`},
		{"wrong method on rooms", "POST", "/api/rooms", testAPIKey, "", 405, ""},
		{"bad room", "GET", "/api/rooms/bad%20room", testAPIKey, "", 400, `{"detail":"invalid room name: use 1 to 99 characters of A-Z a-z 0-9 . _ -"}`},
		{"body too big", "POST", "/api/rooms/lobby/messages", testAPIKey, `{"message":"` + strings.Repeat("x", maxMessageBytes) + `"}`, 413, ""},
		{"not JSON", "POST", "/api/rooms/lobby/messages", testAPIKey, `hello`, 422,
			`{"detail":[{"type":"json_invalid","loc":["body"],"msg":"Invalid JSON: invalid character 'h' looking for beginning of value at line 1 column 1"}]}`},
		{"not an object", "POST", "/api/rooms/lobby/messages", testAPIKey, `[1]`, 422,
			`{"detail":[{"type":"model_type","loc":["body"],"msg":"Input should be a valid dictionary or instance of ChatMessagePayload"}]}`},
		{"no name", "POST", "/api/rooms/lobby/messages", testAPIKey, `{"message":"hi"}`, 422, chatErr("missing", "name", "Field required")},
		{"message too long", "POST", "/api/rooms/lobby/messages", testAPIKey, `{"message":"` + strings.Repeat("x", maxMessageChars+1) + `","name":"Bot"}`, 422,
			chatErr("string_too_long", "message", "String should have at most 4000 characters")},
		{"bad cid", "POST", "/api/rooms/lobby/messages", testAPIKey, `{"message":"hi","name":"Bot","cid":""}`, 422,
			`{"detail":[{"type":"string_too_short","loc":["body","cid"],"msg":"String should have at least 1 character"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := apiCall(t, s, tt.method, tt.path, tt.key, tt.body, nil)
			if code != tt.code || (tt.want != "" && body != tt.want) {
				t.Errorf("got %d %s, want %d %s", code, body, tt.code, tt.want)
			}
		})
	}
}

// TestAPIPublish publishes into a room: its members get the message, as a
// member's, the history keeps it with the id the API answered, and a
// retry with the same cid is not delivered twice.
func TestAPIPublish(t *testing.T) {
	run := func(t *testing.T, a, b *testServer) {
		plain, ids := a.dial(t, "news"), b.dialHistory(t, "news", "history")
		ids.next()
		var answer struct{ ID string }
		code, body := apiCall(t, a, "POST", "/api/rooms/news/messages", testAPIKey, `{"message":"order shipped","name":"Shop","cid":"order-7"}`, &answer)
		if code != http.StatusOK || answer.ID == "" {
			t.Fatalf("publish: %d %s", code, body)
		}
		expectText(t, plain, chat("order shipped", "Shop"))
		if _, msgs, raw := ids.next(); len(msgs) != 1 || msgs[0].ID != answer.ID {
			t.Fatalf("the other process got %s, want the id %s", raw, answer.ID)
		}
		if code, body := apiCall(t, a, "POST", "/api/rooms/news/messages", testAPIKey, `{"message":"order shipped","name":"Shop","cid":"order-7"}`, nil); code != 200 || body != `{"id":"`+answer.ID+`"}` {
			t.Fatalf("the retry: %d %s", code, body)
		}
		expectQuiet(t, plain)
		var h struct {
			Epoch    string
			Messages []historyMsg
			Gap      string
		}
		if code, body := apiCall(t, b, "GET", "/api/rooms/news/messages", testAPIKey, "", &h); code != 200 || len(h.Messages) != 1 || h.Messages[0].ID != answer.ID {
			t.Fatalf("the history: %d %s", code, body)
		}
		if code, body := apiCall(t, b, "GET", "/api/rooms/news/messages?since="+answer.ID, testAPIKey, "", &h); code != 200 || len(h.Messages) != 0 || h.Gap != "" {
			t.Fatalf("the history after the message: %d %s", code, body)
		}
		if code, body := apiCall(t, b, "GET", "/api/rooms/news/messages?since=other-1", testAPIKey, "", &h); code != 200 || h.Gap != gapReset || len(h.Messages) != 1 {
			t.Fatalf("the history after an id of another stream: %d %s", code, body)
		}
	}
	t.Run("memory", func(t *testing.T) {
		s := newAPIServer(t, options{history: defaultHistory})
		run(t, s, s)
	})
	t.Run("redis", func(t *testing.T) {
		r := startRedis(t, "")
		opts := options{history: defaultHistory, redis: r.url()}
		run(t, newAPIServer(t, opts), newAPIServer(t, opts))
	})
	t.Run("into a room no one is in", func(t *testing.T) {
		s := newAPIServer(t, options{history: defaultHistory})
		if code, body := apiCall(t, s, "POST", "/api/rooms/empty/messages", testAPIKey, `{"message":"later","name":"Bot"}`, nil); code != 200 {
			t.Fatalf("publish: %d %s", code, body)
		}
		if _, msgs, raw := s.dialHistory(t, "empty", "history").next(); len(msgs) != 1 || msgs[0].Message != "later" {
			t.Fatalf("a later member's history: %s", raw)
		}
	})
	t.Run("without history", func(t *testing.T) {
		s := newAPIServer(t, options{})
		member := s.dial(t, "plain")
		if code, body := apiCall(t, s, "POST", "/api/rooms/plain/messages", testAPIKey, `{"message":"hi","name":"Bot"}`, nil); code != 200 || body != `{}` {
			t.Fatalf("publish: %d %s", code, body)
		}
		expectText(t, member, chat("hi", "Bot"))
	})
}

// TestAPIHistoryOfNoRoom asks for the history of rooms no one has used:
// the answer is empty, and the server keeps nothing for having been asked.
func TestAPIHistoryOfNoRoom(t *testing.T) {
	s := newAPIServer(t, options{})
	for i := range 3 {
		if code, body := apiCall(t, s, "GET", fmt.Sprintf("/api/rooms/nobody%d/messages", i), testAPIKey, "", nil); code != 200 || body != `{"epoch":"","messages":[]}` {
			t.Errorf("got %d %s", code, body)
		}
	}
	b := s.hub.broker.(*memoryBroker)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.streams) != 0 {
		t.Errorf("%d streams kept for rooms only asked about", len(b.streams))
	}
}

// TestAPIRooms counts members in every process.
func TestAPIRooms(t *testing.T) {
	r := startRedis(t, "")
	opts := options{redis: r.url()}
	a, b := newAPIServer(t, opts), newAPIServer(t, opts)
	a.dial(t, "one")
	a.dial(t, "two")
	b.dial(t, "two")
	b.dial(t, "two")
	want := `{"complete":true,"rooms":[{"room":"one","members":1},{"room":"two","members":3}]}`
	for _, s := range []*testServer{a, b} {
		var body string
		waitFor(t, func() string { return "the counts, now " + body }, func() bool {
			_, body = apiCall(t, s, "GET", "/api/rooms", testAPIKey, "", nil)
			return body == want
		})
		if _, body := apiCall(t, s, "GET", "/api/rooms/two", testAPIKey, "", nil); body != `{"complete":true,"members":3,"names":[],"room":"two"}` {
			t.Errorf("one room: %s", body)
		}
	}
	r.stop()
	a.waitHealth(t, func(h health) bool { return !h.Layer.Connected })
	if _, body := apiCall(t, a, "GET", "/api/rooms", testAPIKey, "", nil); body != `{"complete":false,"rooms":[{"room":"one","members":1},{"room":"two","members":1}]}` {
		t.Errorf("while Redis is away: %s", body)
	}
	if code, body := apiCall(t, a, "POST", "/api/rooms/one/messages", testAPIKey, `{"message":"hi","name":"Bot"}`, nil); code != http.StatusServiceUnavailable {
		t.Errorf("publish while Redis is away: %d %s", code, body)
	}
}

// TestAPIRateLimit sends requests until one is refused: not within the
// burst (twice apiRequestsPerSecond), and no later than the burst and
// what the bucket earned back while they were sent, however slow the
// machine.
func TestAPIRateLimit(t *testing.T) {
	s := newAPIServer(t, options{})
	start, burst := time.Now(), 2*apiRequestsPerSecond
	for sent := 1; ; sent++ {
		code, body := apiCall(t, s, "GET", "/api/rooms", testAPIKey, "", nil)
		if code == http.StatusTooManyRequests {
			if sent <= burst {
				t.Fatalf("request %d refused, within the burst of %d: %s", sent, burst, body)
			}
			return
		}
		if earned := int(time.Since(start).Seconds()*apiRequestsPerSecond) + 1; sent > burst+earned {
			t.Fatalf("%d requests in %v, none refused", sent, time.Since(start))
		}
	}
}

// TestAPIDocExamples runs the curl examples of docs/protocol.md's HTTP API
// section against a live server, and compares each answer with the one the
// document gives after it (the server's epoch read as the document's).
func TestAPIDocExamples(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl not found; install it (Debian: sudo apt-get install curl)")
		}
		t.Skip("curl not found")
	}
	doc, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)[strings.Index(string(doc), "## The HTTP API"):]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)\n```\n\n```json\n(.*?)\n```").FindAllStringSubmatch(section, -1)
	if len(blocks) < 4 {
		t.Fatalf("%d examples in the HTTP API section", len(blocks))
	}
	s := newAPIServer(t, options{history: defaultHistory})
	epoch := ""
	for _, b := range blocks {
		command, want := strings.ReplaceAll(b[1], "http://localhost:8000", s.URL), b[2]
		cmd := exec.Command("bash", "-c", command)
		cmd.Env = append(os.Environ(), apiKeyEnv+"="+testAPIKey, "PATH="+filepath.Dir(curl)+":"+os.Getenv("PATH"))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", command, err)
		}
		got := strings.TrimSpace(string(out))
		if epoch == "" {
			if m := regexp.MustCompile(`"id":"([a-z0-9]+)-`).FindStringSubmatch(got); m != nil {
				epoch = m[1]
			}
		}
		if epoch != "" {
			got = strings.ReplaceAll(got, epoch, "k3d9x2ab")
		}
		if got != want {
			t.Errorf("%s\ngot  %s\nwant %s", command, got, want)
		}
	}
}
