package main

// The chat page in a real browser: headless Chromium, driven through the
// Chrome DevTools Protocol (CDP) over golang.org/x/net/websocket, checks
// the page the way a person would, by its visible labels.
//
// Without Chromium the test skips, saying how to install it; with CI=true it
// fails instead. Set ROOMCHAT_CHROMIUM to use another binary. Regenerate
// the README's screenshot with: go test -run TestBrowserChat -screenshot

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

var updateScreenshot = flag.Bool("screenshot", false, "write docs/screenshot.png from the browser test")

func TestBrowserChat(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, options{rate: defaultRate, history: defaultHistory})
	b := startBrowser(t)
	alice, bob, carol := b.newTab(t, s.URL+"/chat/"), b.newTab(t, s.URL+"/chat/"), b.newTab(t, s.URL+"/chat/?room=room2")

	alice.joinAs(t, "Alice", "room1")
	bob.joinAs(t, "Bob", "room1")
	// Carol uses the keyboard alone; her room, room2, came in the link.
	carol.expect(t, `label("Room").value === "room2"`)
	carol.typeInto(t, "Name", "Carol")
	carol.pressEnter(t)
	carol.waitFor(t, `badge() === "Connected" && document.activeElement === label("Message")`)

	t.Run("a message reaches the room and only the room", func(t *testing.T) {
		alice.say(t, "Hello everyone!")
		bob.waitFor(t, countOf("Alice", "Hello everyone!")+" > 0")
		alice.waitFor(t, `messages().filter(m => m.text === "Hello everyone!").length === 1`)
		alice.expect(t, `messages().find(m => m.text === "Hello everyone!").author === "You"`)
		carol.expect(t, `messages().length === 0`)
	})

	t.Run("markup stays text", func(t *testing.T) {
		const evil = `<img src=x onerror=alert(1)>`
		bob.typeInto(t, "Message", evil)
		bob.click(t, "Send")
		alice.waitFor(t, `messages().some(m => m.author === "Bob" && m.text === `+jsString(evil)+`)`)
		for _, tab := range []*tab{alice, bob} {
			tab.expect(t, `document.querySelector("#messages img") === null`)
		}
		if d := b.eventsNamed("Page.javascriptDialogOpening"); len(d) > 0 {
			t.Errorf("a script ran from the message: %s", d[0])
		}
	})

	if *updateScreenshot {
		writeScreenshot(t, "docs/screenshot.png", alice, bob)
	}

	t.Run("a dropped connection comes back by itself", func(t *testing.T) {
		s.hub.forEach(func(c *client) { c.close(closeGoingAway, "dropped by the test") })
		for _, tab := range []*tab{alice, bob} {
			tab.waitFor(t, `label("Message").disabled && badge().startsWith("Disconnected")`)
		}
		for _, tab := range []*tab{alice, bob} {
			tab.waitFor(t, `badge() === "Connected" && !label("Message").disabled`)
		}
		alice.say(t, "Back again")
		bob.waitFor(t, countOf("Alice", "Back again")+" > 0")
	})

	t.Run("what was said during a drop is shown once, in order", func(t *testing.T) {
		s.hub.forEach(func(c *client) { c.close(closeGoingAway, "dropped by the test") })
		for _, tab := range []*tab{alice, bob} {
			tab.waitFor(t, `badge().startsWith("Disconnected")`)
		}
		dave := s.dial(t, "room1") // talks while the pages are away
		for i := 1; i <= 5; i++ {
			sendText(t, dave, chat(fmt.Sprint("missed ", i), "Dave"))
		}
		want := `["missed 1","missed 2","missed 3","missed 4","missed 5"]`
		for _, tab := range []*tab{alice, bob} {
			tab.waitFor(t, `badge() === "Connected" && JSON.stringify(messages().filter(m => m.author === "Dave").map(m => m.text)) === `+jsString(want))
		}
		sendText(t, dave, chat("missed 6", "Dave")) // live again, and still once
		bob.waitFor(t, `messages().filter(m => m.author === "Dave").length === 6`)
		bob.expect(t, `messages().filter(m => m.text === "Hello everyone!").length === 1`)
		closeClient(t, dave)
	})

	t.Run("a late joiner sees the earlier messages, set apart", func(t *testing.T) {
		erin := b.newTab(t, s.URL+"/chat/")
		erin.joinAs(t, "Erin", "room1")
		erin.waitFor(t, `messages().some(m => m.author === "Alice" && m.text === "Hello everyone!")`)
		erin.expect(t, `notes()[0] === "Earlier messages" && notes().at(-1) === "Now"`)
	})

	t.Run("the log shows raw frames", func(t *testing.T) {
		bob.expect(t, `!document.getElementById("log").checkVisibility()`)
		bob.click(t, "Log")
		bob.expect(t, `document.getElementById("log").checkVisibility()`)
		bob.waitFor(t, `[...document.querySelectorAll("#log-entries li")].some(li =>
			li.textContent.includes("received") && li.textContent.includes('"name":"Alice"'))`)
	})

	t.Run("over-long input is stopped before sending", func(t *testing.T) {
		sentBefore := s.hub.stats.received.Load()
		alice.typeInto(t, "Message", strings.Repeat("é", maxMessageChars+1))
		alice.pressEnter(t)
		alice.waitFor(t, `document.getElementById("chat-error").textContent.includes("limit is 4000")`)
		if n := s.hub.stats.received.Load(); n != sentBefore {
			t.Errorf("the server received %d frames from an over-long message", n-sentBefore)
		}
	})

	t.Run("fits a phone and a desktop", func(t *testing.T) {
		for _, width := range []int{360, 1280} {
			bob.resize(t, width, 720)
			bob.expect(t, noSidewaysScroll)
		}
		bob.resize(t, 640, 720)
	})

	t.Run("Leave returns to the join form", func(t *testing.T) {
		carol.click(t, "Leave")
		carol.waitFor(t, `label("Name").checkVisibility() && location.search === ""`)
		carol.expect(t, `button("Leave") === undefined && button("Join") !== undefined`)
	})

	t.Run("the Content-Security-Policy holds, and the page needs nothing it forbids", func(t *testing.T) {
		alice.expect(t, `(() => { const s = document.createElement("script");
			s.textContent = "window.inlineRan = true"; document.head.append(s);
			return window.inlineRan === undefined; })()`)
		alice.waitFor(t, `cspViolations.length === 1 && cspViolations[0].startsWith("script-src")`) // the event comes later
		for _, tab := range []*tab{bob, carol} {
			tab.expect(t, `cspViolations.length === 0`)
		}
	})

	t.Run("no request leaves the test server", func(t *testing.T) {
		host := strings.TrimPrefix(s.URL, "http://")
		urls := b.requestedURLs()
		for _, want := range []string{s.URL + "/chat/", s.URL + "/static/chat.js", s.wsURL("room1") + "?history"} {
			if !slices.Contains(urls, want) {
				t.Errorf("no request for %s seen among %d; the check below would prove nothing", want, len(urls))
			}
		}
		for _, u := range urls {
			p, err := url.Parse(u)
			if err != nil || p.Host != host {
				t.Errorf("request to %s", u)
			}
		}
	})
}

// TestBrowserAcrossServers opens Alice's tab on one server and Bob's on
// another, the two sharing a Redis (-redis): they talk as if on one. While
// Redis is stopped, Alice's page says her message reached her server only.
func TestBrowserAcrossServers(t *testing.T) {
	t.Parallel()
	r := startRedis(t, "")
	a := newTestServer(t, options{rate: defaultRate, history: defaultHistory, redis: r.url()})
	b := newTestServer(t, options{rate: defaultRate, history: defaultHistory, redis: r.url()})
	br := startBrowser(t)
	alice, bob := br.newTab(t, a.URL+"/chat/"), br.newTab(t, b.URL+"/chat/")
	alice.joinAs(t, "Alice", "room1")
	bob.joinAs(t, "Bob", "room1")

	alice.say(t, "Hello from server A")
	bob.waitFor(t, countOf("Alice", "Hello from server A")+" > 0")
	bob.say(t, "Hello from server B")
	alice.waitFor(t, countOf("Bob", "Hello from server B")+" > 0")
	for _, tab := range []*tab{alice, bob} {
		tab.expect(t, `messages().length === 2`) // each message once, on each side
	}

	// Redis stops answering: Alice's message reaches Carol, on her server,
	// and not Bob. Her page shows it as sending until Redis is back and Bob
	// has it.
	carol := br.newTab(t, a.URL+"/chat/")
	carol.joinAs(t, "Carol", "room1")
	r.signal(syscall.SIGSTOP)
	t.Cleanup(func() { r.signal(syscall.SIGCONT) }) // before r.stop, if the test ends early
	alice.say(t, "While Redis sleeps")
	carol.waitFor(t, countOf("Alice", "While Redis sleeps")+` === 1`) // once server A gave up on Redis
	alice.expect(t, `statusOf("While Redis sleeps") === "Sending…"`)
	alice.expect(t, `document.querySelector("#messages li.mine:last-child").dataset.status === "sending"`)
	bob.expect(t, countOf("Alice", "While Redis sleeps")+` === 0`)
	r.signal(syscall.SIGCONT)
	alice.waitFor(t, `statusOf("While Redis sleeps") === "Sent"`)
	bob.waitFor(t, countOf("Alice", "While Redis sleeps")+` === 1`)
	bob.say(t, "Back")
	carol.waitFor(t, countOf("Bob", "Back")+` === 1`)
	carol.expect(t, countOf("Alice", "While Redis sleeps")+` === 1`)
}

// TestBrowserDocs reads the API docs as a person would, then uses Try it.
func TestBrowserDocs(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, options{rate: defaultRate})
	b := startBrowser(t)
	docs := b.newTab(t, s.URL+"/asyncapi/docs/")
	docs.resize(t, 1280, 900)
	chat := b.newTab(t, s.URL+"/chat/")
	chat.joinAs(t, "Bob", "lobby")

	docs.waitFor(t, `document.getElementById("doc").getAttribute("aria-busy") === null`)
	host := strings.TrimPrefix(s.URL, "http://")
	docs.expect(t, `document.body.innerText.includes("ws://`+host+`")`)
	docs.expect(t, `document.body.innerText.includes("/ws/chat/{room}/")`)
	for _, name := range []string{"new_chat_message", "ping", "pong", "error"} {
		docs.expect(t, `[...document.querySelectorAll("h3")].some(h => h.textContent.startsWith("`+name+` "))`)
	}
	docs.expect(t, `document.body.innerText.includes("You send") && document.body.innerText.includes("The server sends")`)

	for _, width := range []int{360, 1280} {
		docs.resize(t, width, 900)
		docs.expect(t, noSidewaysScroll)
	}

	docs.click(t, "Connect")
	docs.waitFor(t, `document.getElementById("try-badge").textContent === "Connected"`)
	docs.click(t, "Send ping: ping")
	docs.waitFor(t, `[...document.querySelectorAll("#try-log li")].some(li =>
		li.textContent.includes("received") && li.textContent.includes('{"action":"pong","payload":null}'))`)
	docs.click(t, "Send new_chat_message: hello")
	chat.waitFor(t, `messages().some(m => m.author === "Alice" && m.text === "Hello everyone!")`)

	for _, u := range b.requestedURLs() {
		if p, err := url.Parse(u); err != nil || p.Host != host {
			t.Errorf("request to %s", u)
		}
	}
	docs.expect(t, `cspViolations.length === 0`) // the page needs nothing the policy forbids
	if *updateScreenshot {
		writeScreenshot(t, "docs/api-docs.png", docs)
	}
}

func TestChatPageLimitsMatchServer(t *testing.T) {
	js, err := static.ReadFile("static/chat.js")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"ROOM_RULE":         "/" + roomPattern + "/",
		"MAX_MESSAGE_CHARS": fmt.Sprint(maxMessageChars),
		"MAX_NAME_CHARS":    fmt.Sprint(maxNameChars),
	} {
		m := regexp.MustCompile(`const ` + name + ` = (.+);`).FindSubmatch(js)
		if m == nil || string(m[1]) != want {
			t.Errorf("chat.js: %s is %q, the server's is %q", name, m, want)
		}
	}
}

// noSidewaysScroll holds when the page fits the width of its window.
const noSidewaysScroll = `document.documentElement.scrollWidth <= window.innerWidth`

// ---- driving Chromium ----

// pageHelpers are defined in every tab, so that checks read like sentences.
const pageHelpers = `
window.label = (text) => {
	const l = [...document.querySelectorAll("label")].find(l => l.textContent.trim() === text);
	return l ? l.control : null;
};
window.button = (name) => [...document.querySelectorAll("button")]
	.find(b => b.textContent.trim() === name && b.getClientRects().length > 0);
window.badge = () => document.getElementById("badge").textContent;
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => cspViolations.push(e.violatedDirective + " " + e.blockedURI));
window.notes = () => [...document.querySelectorAll("#messages li.note")].map(li => li.textContent);
window.messages = () => [...document.querySelectorAll("#messages li.message")].map(li => ({
	author: li.querySelector(".author").textContent,
	text: li.querySelector(".text").textContent,
	status: li.querySelector(".status")?.textContent ?? "",
}));
window.statusOf = (text) => messages().filter(m => m.author === "You" && m.text === text).map(m => m.status).join(" | ");
`

// browser is one headless Chromium with a CDP connection to it.
type browser struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	nextID  int
	waiting map[int]chan cdpMessage
	events  []cdpMessage
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

// browserSlots holds a place for each Chromium running at once, two a
// core: a browser test keeps about half a core busy, and more browsers
// than that make every browser test slower (on a loaded machine, past its
// waits' deadlines), none sooner. Tests that only wait (Redis, timers)
// still run beside them.
var browserSlots = make(chan struct{}, 2*runtime.GOMAXPROCS(0))

// startBrowser starts Chromium with an empty profile and connects to it;
// flags go to Chromium after the usual ones.
func startBrowser(t *testing.T, flags ...string) *browser {
	bin := findChromium(t)
	browserSlots <- struct{}{}
	t.Cleanup(func() { <-browserSlots }) // after Chromium has quit
	profile := t.TempDir()
	// Chromium 111 and later refuse a DevTools WebSocket whose Origin they
	// were not told of, and x/net/websocket always sends one: the port is
	// chosen here so that its origin can be named.
	port := freePort(t)
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--user-data-dir=" + profile,
		"--remote-debugging-address=127.0.0.1", fmt.Sprintf("--remote-debugging-port=%d", port),
		fmt.Sprintf("--remote-allow-origins=http://127.0.0.1:%d", port)}
	cmd := exec.Command(bin, append(append(args, flags...), "about:blank")...)
	// Its own process group, so that stopping it stops its helpers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var b *browser
	// Runs before t.TempDir's removal of the profile (cleanups run last
	// first): ask Chromium to quit, and kill what is left after 5 s.
	t.Cleanup(func() {
		if b != nil {
			defer b.ws.Close()
			if err := b.send("Browser.close", nil); err != nil {
				t.Logf("Browser.close: %v", err)
			}
		}
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})

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
		t.Fatal("Chromium did not print its DevTools address within 20 s")
	}
	// DevTools accepts a WebSocket whose Origin is its own address. The
	// cleanup above closes it, after telling the browser to quit.
	u, _ := url.Parse(debugURL)
	cfg, err := websocket.NewConfig(debugURL, "http://"+u.Host)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("DevTools: %v", err)
	}
	ws.MaxPayloadBytes = 64 << 20 // screenshots
	b = &browser{ws: ws, waiting: map[int]chan cdpMessage{}}
	go b.readLoop()
	return b
}

// readLoop hands replies to their callers and keeps events for the checks.
func (b *browser) readLoop() {
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
		} else {
			b.events = append(b.events, m)
		}
		b.mu.Unlock()
	}
}

// call sends one CDP command and decodes its result into result, if not nil.
func (b *browser) call(t testing.TB, session, method string, params, result any) {
	t.Helper()
	if params == nil {
		params = struct{}{}
	}
	p, _ := json.Marshal(params)
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
func (b *browser) send(method string, params json.RawMessage) error {
	_, err := b.sendTo("", method, params)
	return err
}

// sendTo sends a command to a session ("" for the browser itself) and
// returns the channel its reply will come on.
func (b *browser) sendTo(session, method string, params json.RawMessage) (chan cdpMessage, error) {
	ch := make(chan cdpMessage, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.waiting[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(cdpMessage{ID: id, Method: method, Params: params, SessionID: session})
	return ch, websocket.Message.Send(b.ws, string(msg))
}

// eventsNamed returns the params of every event called method so far.
func (b *browser) eventsNamed(method string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, e := range b.events {
		if e.Method == method {
			out = append(out, string(e.Params))
		}
	}
	return out
}

// requestedURLs lists every URL any tab asked the network for.
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

// tab is one page in the browser, like a browser tab a person looks at.
type tab struct {
	b       *browser
	session string
}

// newTab opens pageURL in a new 640x720 tab and waits for it to load.
func (b *browser) newTab(t testing.TB, pageURL string) *tab {
	t.Helper()
	var target struct{ TargetID string }
	b.call(t, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct{ SessionID string }
	b.call(t, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	tb := &tab{b: b, session: attached.SessionID}
	for _, domain := range []string{"Page", "Runtime", "Network"} {
		b.call(t, tb.session, domain+".enable", nil, nil)
	}
	tb.resize(t, 640, 720)
	b.call(t, tb.session, "Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": pageHelpers}, nil)
	b.call(t, tb.session, "Page.navigate", map[string]any{"url": pageURL}, nil)
	tb.waitFor(t, `document.readyState === "complete" && typeof label === "function"`)
	return tb
}

// resize makes the tab's viewport width x height.
func (tb *tab) resize(t testing.TB, width, height int) {
	t.Helper()
	tb.b.call(t, tb.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
}

// eval runs a JavaScript expression in the page and returns its value.
func (tb *tab) eval(t testing.TB, expr string) json.RawMessage {
	t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage
		}
		ExceptionDetails *struct {
			Text      string
			Exception struct{ Description string }
		}
	}
	tb.b.call(t, tb.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r)
	if r.ExceptionDetails != nil {
		t.Fatalf("%s: %s %s", expr, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	return r.Result.Value
}

// expect checks that a JavaScript condition holds now.
func (tb *tab) expect(t testing.TB, cond string) {
	t.Helper()
	if string(tb.eval(t, cond)) != "true" {
		t.Fatalf("not so: %s", cond)
	}
}

// waitFor waits up to 10 s for a JavaScript condition to hold. The page
// announces nothing to CDP, so it asks every 20 ms.
func (tb *tab) waitFor(t testing.TB, cond string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for string(tb.eval(t, "!!("+cond+")")) != "true" {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", cond)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// typeInto focuses the control labelled label and types text into it, as
// a keyboard would (after clearing what was there).
func (tb *tab) typeInto(t testing.TB, label, text string) {
	t.Helper()
	tb.expect(t, `(() => { const c = label(`+jsString(label)+`); if (!c || c.disabled) return false;
		c.focus(); c.select(); return document.activeElement === c; })()`)
	tb.b.call(t, tb.session, "Input.insertText", map[string]any{"text": text}, nil)
}

// pressEnter presses and releases Enter in the focused control.
func (tb *tab) pressEnter(t testing.TB) {
	t.Helper()
	for _, typ := range []string{"keyDown", "keyUp"} {
		ev := map[string]any{"type": typ, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
		if typ == "keyDown" {
			ev["text"] = "\r"
		}
		tb.b.call(t, tb.session, "Input.dispatchKeyEvent", ev, nil)
	}
}

// click clicks the middle of the visible button named name with the mouse.
func (tb *tab) click(t testing.TB, name string) {
	t.Helper()
	var box struct{ X, Y float64 }
	raw := tb.eval(t, `(() => { const b = button(`+jsString(name)+`); if (!b) return null;
		b.scrollIntoView({block: "center"}); const r = b.getBoundingClientRect();
		return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()`)
	if string(raw) == "null" || json.Unmarshal(raw, &box) != nil {
		t.Fatalf("no visible button %q", name)
	}
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		tb.b.call(t, tb.session, "Input.dispatchMouseEvent",
			map[string]any{"type": typ, "x": box.X, "y": box.Y, "button": "left", "clickCount": 1}, nil)
	}
}

// joinAs fills the join form and clicks Join.
func (tb *tab) joinAs(t testing.TB, name, room string) {
	t.Helper()
	tb.typeInto(t, "Name", name)
	tb.typeInto(t, "Room", room)
	tb.click(t, "Join")
	tb.waitFor(t, `badge() === "Connected"`)
}

// screenshot returns the tab as a PNG.
func (tb *tab) screenshot(t testing.TB) image.Image {
	t.Helper()
	var shot struct{ Data string }
	// A tab in the background paints nothing, and its capture never ends.
	tb.b.call(t, tb.session, "Page.bringToFront", nil, nil)
	tb.b.call(t, tb.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	raw, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeScreenshot puts tabs side by side in one PNG.
func writeScreenshot(t testing.TB, path string, tabs ...*tab) {
	t.Helper()
	const gap = 16
	var shots []image.Image
	w, h := -gap, 0
	for _, tb := range tabs {
		shot := tb.screenshot(t)
		shots = append(shots, shot)
		w += gap + shot.Bounds().Dx()
		h = max(h, shot.Bounds().Dy())
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.RGBA{0x9a, 0xa3, 0xb0, 0xff}), image.Point{}, draw.Src)
	x := 0
	for _, shot := range shots {
		draw.Draw(out, shot.Bounds().Add(image.Pt(x, 0)), shot, image.Point{}, draw.Src)
		x += shot.Bounds().Dx() + gap
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, out); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
