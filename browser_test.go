package main

// The chat page in a real browser: headless Chromium (chromium_test.go
// drives it) checks the page the way a person would, by its visible labels.
// The docs page's tests are in browser_docs_test.go, the pages on a server
// with tokens in browser_tokens_test.go.
//
// Regenerate the README's screenshot with: go test -run TestBrowserChat -screenshot

import (
	"flag"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
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
		// Typing it sends one typing frame (static/presence.js), and no more.
		if n := s.hub.stats.received.Load(); n > sentBefore+1 {
			t.Errorf("the server received %d frames from an over-long message", n-sentBefore)
		}
		alice.expect(t, `![...document.querySelectorAll("#log-entries li")].some(li => li.textContent.includes("new_chat_message") && li.textContent.includes("éééé"))`)
	})

	t.Run("fits a phone and a desktop", func(t *testing.T) {
		for _, width := range []int{360, 390, 1280} {
			bob.resize(t, width, 720)
			bob.expect(t, noSidewaysScroll)
			if lines := string(bob.eval(t, headerLines)); lines != "1" && lines != "2" {
				t.Errorf("%d px wide, the header takes %s lines", width, lines)
			}
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
		for _, want := range []string{s.URL + "/chat/", s.URL + "/static/chat.js", s.wsURL("room1") + "?history&presence&name=Alice"} {
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

// headerLines counts the lines the header's visible parts take: a part
// that starts below the bottom of the line before starts a new one.
const headerLines = `(() => {
	const rects = [...document.querySelectorAll("header h1, header button, header a, header .room-name, header .badge")]
		.filter(e => e.checkVisibility()).map(e => e.getBoundingClientRect()).sort((a, b) => a.top - b.top);
	let lines = 0, bottom = -Infinity;
	for (const r of rects) {
		if (r.top >= bottom - 2) lines++;
		bottom = Math.max(bottom, r.bottom);
	}
	return lines; })()`
