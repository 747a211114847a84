package main

// Driving headless Chromium through the Chrome DevTools Protocol (CDP) over
// golang.org/x/net/websocket, for the browser and accessibility tests: one
// Chromium for the package, and a browser context for each test, in which
// it opens tabs (chromiumtab_test.go).
//
// Without Chromium the tests skip, saying how to install it; with CI=true
// they fail instead. Set ROOMCHAT_CHROMIUM to use another binary.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// chromium is the one headless Chromium that every browser test shares,
// over one CDP connection. Starting a Chromium costs more CPU than most
// browser tests' checks, so the package starts it once (sharedChromium),
// and each test works in a browser context of its own (startBrowser).
type chromium struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	nextID  int
	waiting map[int]chan cdpMessage
	events  map[string][]cdpMessage // by tab (CDP session), for its test's checks

	cmd     *exec.Cmd
	exited  chan struct{}
	profile string
}

// browser is one test's part of the shared Chromium: a browser context,
// which, like a private window, has its own tabs, cookies and storage, and
// goes away with the test.
type browser struct {
	*chromium
	context  string
	insecure bool // its tabs accept any certificate (the test's nginx)

	mu   sync.Mutex
	tabs []string // their sessions, whose events are this test's
}

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// findChromium returns the browser binary, or skips (fails in CI) without one.
func findChromium(t *testing.T) string {
	candidates := []string{os.Getenv("ROOMCHAT_CHROMIUM"), "/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if path, err := exec.LookPath(c); err == nil {
			return path
		}
	}
	const how = "Chromium not found; install it (Debian: sudo apt-get install chromium) or set ROOMCHAT_CHROMIUM"
	if os.Getenv("CI") == "true" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}

// browserSlots holds a place for each browser test running at once, two a
// core: a browser test keeps about half a core busy, and more of them than
// that make every browser test slower (on a loaded machine, past its
// waits' deadlines), none sooner. Tests that only wait (Redis, timers)
// still run beside them.
var browserSlots = make(chan struct{}, 2*runtime.GOMAXPROCS(0))

// sharedChromium is started by the first browser test and stopped by
// TestMain once every test has run. A start that failed fails every
// browser test, with its reason.
var sharedChromium struct {
	sync.Mutex
	c   *chromium
	err error
}

// startBrowser gives t a browser context of its own in the shared Chromium,
// started now if it is not yet running; the context and its tabs are
// closed when t ends.
func startBrowser(t *testing.T) *browser {
	bin := findChromium(t)
	browserSlots <- struct{}{}
	t.Cleanup(func() { <-browserSlots }) // after its context is gone
	sharedChromium.Lock()
	if sharedChromium.c == nil && sharedChromium.err == nil {
		sharedChromium.c, sharedChromium.err = launchChromium(bin, freePort(t))
	}
	c, err := sharedChromium.c, sharedChromium.err
	sharedChromium.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ BrowserContextID string }
	c.call(t, "", "Target.createBrowserContext", nil, &created)
	b := &browser{chromium: c, context: created.BrowserContextID}
	t.Cleanup(func() { // after the context is gone, its tabs' events
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, s := range b.tabs {
			delete(c.events, s)
		}
	})
	t.Cleanup(func() {
		c.call(t, "", "Target.disposeBrowserContext", map[string]any{"browserContextId": b.context}, nil)
	})
	return b
}

// launchChromium starts Chromium with an empty profile and connects to it,
// its debugger listening on port. Chromium 111 and later refuse a DevTools
// WebSocket whose Origin they were not told of, and x/net/websocket always
// sends one: the port is chosen beforehand so that its origin can be named.
func launchChromium(bin string, port int) (*chromium, error) {
	profile, err := os.MkdirTemp("", "roomchat-chromium-")
	if err != nil {
		return nil, err
	}
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--user-data-dir=" + profile,
		// Each window would start a renderer for the address bar's popup,
		// which a headless window never shows: a second of CPU a test.
		"--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIOmniboxFullPopup",
		"--remote-debugging-address=127.0.0.1", fmt.Sprintf("--remote-debugging-port=%d", port),
		fmt.Sprintf("--remote-allow-origins=http://127.0.0.1:%d", port), "about:blank"}
	cmd := exec.Command(bin, args...)
	// Its own process group, so that stopping it stops its helpers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &chromium{cmd: cmd, exited: make(chan struct{}), profile: profile,
		waiting: map[int]chan cdpMessage{}, events: map[string][]cdpMessage{}}
	go func() { cmd.Wait(); close(c.exited) }()

	// Chromium prints its debugger's address on stderr.
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "DevTools listening on "); ok {
				found <- rest
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	var debugURL string
	select {
	case debugURL = <-found:
	case <-time.After(20 * time.Second):
		c.stop()
		return nil, fmt.Errorf("Chromium did not print its DevTools address within 20 s")
	}
	// DevTools accepts a WebSocket whose Origin is its own address.
	u, _ := url.Parse(debugURL)
	cfg, err := websocket.NewConfig(debugURL, "http://"+u.Host)
	if err == nil {
		c.ws, err = websocket.DialConfig(cfg)
	}
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("DevTools: %v", err)
	}
	c.ws.MaxPayloadBytes = 64 << 20 // screenshots
	go c.readLoop()
	return c, nil
}

// stopSharedChromium stops the shared Chromium, if a test started it.
func stopSharedChromium() {
	sharedChromium.Lock()
	defer sharedChromium.Unlock()
	if c := sharedChromium.c; c != nil {
		c.stop()
		sharedChromium.c, sharedChromium.err = nil, fmt.Errorf("Chromium stopped")
	}
}

// stop asks Chromium to quit, kills what is left of it after 5 s, and
// removes its profile.
func (c *chromium) stop() {
	if c.ws != nil {
		c.send("Browser.close", nil)
		defer c.ws.Close()
	}
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.exited
	os.RemoveAll(c.profile)
}

// readLoop hands replies to their callers and keeps the tabs' events for
// the checks.
func (b *chromium) readLoop() {
	for {
		// Chromium sends each DevTools message in one frame, so x/net's
		// Receive, which hands frames over one at a time, is enough.
		var data []byte
		err := websocket.Message.Receive(b.ws, &data)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.waiting {
				close(ch)
				delete(b.waiting, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.waiting[m.ID]; ch != nil {
				ch <- m
				delete(b.waiting, m.ID)
			}
		} else if m.SessionID != "" {
			b.events[m.SessionID] = append(b.events[m.SessionID], m)
		}
		b.mu.Unlock()
	}
}

// call sends one CDP command and decodes its result into result, if not nil.
func (b *chromium) call(t testing.TB, session, method string, params, result any) {
	t.Helper()
	if params == nil {
		params = struct{}{}
	}
	p, err := json.Marshal(params)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	ch, err := b.sendTo(session, method, p)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	select {
	case reply, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the browser went away", method)
		}
		if reply.Error != nil {
			t.Fatalf("%s: %s", method, reply.Error.Message)
		}
		if result != nil {
			if err := json.Unmarshal(reply.Result, result); err != nil {
				t.Fatalf("%s: %v", method, err)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no reply within 20 s", method)
	}
}

// send sends a browser-level command without waiting for its reply.
func (b *chromium) send(method string, params json.RawMessage) error {
	_, err := b.sendTo("", method, params)
	return err
}

// sendTo sends a command to a session ("" for the browser itself) and
// returns the channel its reply will come on.
func (b *chromium) sendTo(session, method string, params json.RawMessage) (chan cdpMessage, error) {
	ch := make(chan cdpMessage, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.waiting[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(cdpMessage{ID: id, Method: method, Params: params, SessionID: session})
	return ch, websocket.Message.Send(b.ws, string(msg))
}

// eventsNamed returns the params of every event called method that the
// test's tabs have had so far.
func (b *browser) eventsNamed(method string) []string {
	b.mu.Lock()
	tabs := slices.Clone(b.tabs)
	b.mu.Unlock()
	b.chromium.mu.Lock()
	defer b.chromium.mu.Unlock()
	var out []string
	for _, s := range tabs {
		for _, e := range b.events[s] {
			if e.Method == method {
				out = append(out, string(e.Params))
			}
		}
	}
	return out
}

// requestedURLs lists every URL the test's tabs asked the network for.
func (b *browser) requestedURLs() []string {
	var urls []string
	for _, p := range b.eventsNamed("Network.requestWillBeSent") {
		var e struct{ Request struct{ URL string } }
		json.Unmarshal([]byte(p), &e)
		urls = append(urls, e.Request.URL)
	}
	for _, p := range b.eventsNamed("Network.webSocketCreated") {
		var e struct{ URL string }
		json.Unmarshal([]byte(p), &e)
		urls = append(urls, e.URL)
	}
	return urls
}
