package main

// Both pages checked for WCAG 2.1 AA with axe-core, the accessibility
// engine most web test suites use, in every state a person reaches: before
// and after joining, with messages, an error, the frame log open, a
// dropped connection, a message of one's own sending, sent and not
// delivered, a link's token naming the user or refused, a token needed, a
// session whose token ran out, the docs page with Try it connected or
// asked for a token; at a phone's width and a desktop's. And whole chats
// driven by the keyboard alone.
//
// axe-core comes from npm: .ci/run installs it into a temporary folder and
// sets ROOMCHAT_AXE to its axe.min.js. Without it the tests skip, saying
// how to get it; with CI=true they fail instead.

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// axeRules are the rule sets checked: WCAG 2.0 and 2.1, levels A and AA,
// and axe's best practices.
var axeRules = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"}

// axeSource returns axe-core's script, or skips (fails in CI) without it.
func axeSource(t *testing.T) string {
	path := os.Getenv("ROOMCHAT_AXE")
	if path != "" {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("ROOMCHAT_AXE: %v", err)
		}
		return string(src)
	}
	const how = "axe-core not found: npm install axe-core@4.11.4 in a folder, then set ROOMCHAT_AXE=that/node_modules/axe-core/axe.min.js"
	if os.Getenv("CI") == "true" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}

// checkA11y runs axe-core on the tab as it is now, at a phone's and a
// desktop's width, and fails on any violation, of any impact.
func (tb *tab) checkA11y(t *testing.T, axe, state string) {
	t.Helper()
	if string(tb.eval(t, `typeof axe === "object"`)) != "true" {
		tb.eval(t, axe+"; true")
	}
	rules, _ := json.Marshal(axeRules)
	for _, width := range []int{360, 1280} {
		tb.resize(t, width, 800)
		raw := tb.evalAsync(t, `axe.run(document, {runOnly: {type: "tag", values: `+string(rules)+`}, resultTypes: ["violations"]})
			.then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
				nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary.replaceAll("\n", " "))})))`)
		var violations []struct {
			ID, Impact, Help string
			Nodes            []string
		}
		if err := json.Unmarshal(raw, &violations); err != nil {
			t.Fatalf("axe: %v: %s", err, raw)
		}
		for _, v := range violations {
			t.Errorf("%s, %d px wide: %s (%s): %s\n\t%s", state, width, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "\n\t"))
		}
	}
	tb.resize(t, 640, 720)
}

// evalAsync runs a JavaScript expression whose value is a promise, and
// returns what the promise resolves to.
func (tb *tab) evalAsync(t testing.TB, expr string) json.RawMessage {
	t.Helper()
	var r struct {
		Result           struct{ Value json.RawMessage }
		ExceptionDetails *struct{ Text string }
	}
	tb.b.call(t, tb.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if r.ExceptionDetails != nil {
		t.Fatalf("%.60s: %s", expr, r.ExceptionDetails.Text)
	}
	return r.Result.Value
}

// pressKey presses and releases one key, such as Tab or Enter, with
// shift held if shift is true.
func (tb *tab) pressKey(t testing.TB, key string, shift bool) {
	t.Helper()
	codes := map[string]int{"Tab": 9, "Enter": 13, " ": 32}
	mods := 0
	if shift {
		mods = 8
	}
	for _, typ := range []string{"keyDown", "keyUp"} {
		ev := map[string]any{"type": typ, "key": key, "code": map[string]string{" ": "Space"}[key],
			"windowsVirtualKeyCode": codes[key], "modifiers": mods}
		if ev["code"] == "" {
			ev["code"] = key
		}
		if typ == "keyDown" && key == "Enter" {
			ev["text"] = "\r"
		}
		if typ == "keyDown" && key == " " {
			ev["text"] = " "
		}
		tb.b.call(t, tb.session, "Input.dispatchKeyEvent", ev, nil)
	}
}

// tabTo presses Tab until the focused element matches the JavaScript
// condition cond (about document.activeElement as el), at most 30 times,
// and checks that focus can be seen there.
func (tb *tab) tabTo(t testing.TB, what, cond string) {
	t.Helper()
	test := `(el => ` + cond + `)(document.activeElement)`
	for range 30 {
		if string(tb.eval(t, test)) == "true" {
			tb.expect(t, focusVisible)
			return
		}
		tb.pressKey(t, "Tab", false)
	}
	t.Fatalf("Tab never reached %s", what)
}

// focusVisible holds when the focused element shows an outline: a keyboard
// user must see where they are.
const focusVisible = `(() => { const el = document.activeElement, s = getComputedStyle(el);
	return el !== document.body && el.matches(":focus-visible") && s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2; })()`

// named matches the focused element by its visible text or label.
func named(name string) string {
	return fmt.Sprintf(`(el.textContent.trim() === %[1]s || (el.labels && el.labels[0] && el.labels[0].textContent.trim() === %[1]s))`, jsString(name))
}

func TestAccessibilityChat(t *testing.T) {
	t.Parallel()
	axe := axeSource(t)
	s := newTestServer(t, options{rate: defaultRate, history: defaultHistory})
	b := startBrowser(t)
	alice, bob := b.newTab(t, s.URL+"/chat/"), b.newTab(t, s.URL+"/chat/")
	alice.checkA11y(t, axe, "the join form")

	// Bob chats by keyboard alone: every step is a key, none a click.
	bob.tabTo(t, "the name field", named("Name"))
	bob.b.call(t, bob.session, "Input.insertText", map[string]any{"text": "Bob"}, nil)
	bob.tabTo(t, "the room field", named("Room"))
	bob.tabTo(t, "Join", named("Join"))
	bob.pressKey(t, "Enter", false)
	bob.waitFor(t, `badge() === "Connected" && document.activeElement === label("Message")`)
	bob.expect(t, focusVisible)

	alice.joinAs(t, "Alice", "lobby")
	alice.expect(t, `notes().length === 0`) // Bob has said nothing yet: no earlier messages
	alice.typeInto(t, "Message", "Hello everyone!")
	alice.pressEnter(t)
	bob.waitFor(t, `messages().some(m => m.author === "Alice")`)
	bob.b.call(t, bob.session, "Input.insertText", map[string]any{"text": "Hi Alice"}, nil)
	bob.pressKey(t, "Enter", false)
	alice.waitFor(t, `messages().some(m => m.author === "Bob" && m.text === "Hi Alice")`)
	bob.checkA11y(t, axe, "a conversation")

	bob.tabTo(t, "Log", named("Log"))
	bob.pressKey(t, " ", false)
	bob.waitFor(t, `document.getElementById("log").checkVisibility()`)
	bob.tabTo(t, "the frame list", `el.id === "log-entries"`) // it scrolls, so it must take focus
	bob.checkA11y(t, axe, "the frame log open")
	bob.pressKey(t, "Tab", true)
	bob.tabTo(t, "Log", named("Log"))
	bob.pressKey(t, "Enter", false)
	bob.waitFor(t, `!document.getElementById("log").checkVisibility()`)

	alice.typeInto(t, "Message", strings.Repeat("x", maxMessageChars+1))
	alice.pressEnter(t)
	alice.waitFor(t, `document.getElementById("chat-error").textContent !== ""`)
	alice.checkA11y(t, axe, "an error shown")

	s.hub.forEach(func(c *client) { c.close(closeGoingAway, "dropped by the test") })
	alice.waitFor(t, `badge().startsWith("Disconnected")`)
	alice.checkA11y(t, axe, "a dropped connection")
	alice.waitFor(t, `badge() === "Connected"`)

	carol := b.newTab(t, s.URL+"/chat/")
	carol.joinAs(t, "Carol", "lobby")
	carol.waitFor(t, `notes()[0] === "Earlier messages"`)
	carol.checkA11y(t, axe, "earlier messages, set apart")

	bob.tabTo(t, "Leave", named("Leave"))
	bob.pressKey(t, "Enter", false)
	bob.waitFor(t, `label("Name").checkVisibility()`)
}

// TestAccessibilityDelivery joins with a link's token and talks by
// keyboard alone, through a fault proxy that can hold back the server's
// answers, on a server that allows one message a second.
func TestAccessibilityDelivery(t *testing.T) {
	t.Parallel()
	axe := axeSource(t)
	secret := []byte(strings.Repeat("s", minTokenSecretBytes))
	s := newTestServer(t, options{rate: 1, history: defaultHistory, secret: secret})
	token := func(name, room string) string { return hourToken(t, secret, name, room) }
	p, page := proxiedPage(t, s)
	b := startBrowser(t)
	alice := b.newTab(t, page+"?room=lobby#token="+token("Alice", "lobby"))
	alice.checkA11y(t, axe, "the join form, named by a link's token")

	alice.tabTo(t, "Join", named("Join"))
	alice.pressKey(t, "Enter", false)
	alice.waitFor(t, `badge() === "Connected" && document.activeElement === label("Message")`)
	p.set(delayMode(0, time.Minute)) // the said is held back
	alice.b.call(t, alice.session, "Input.insertText", map[string]any{"text": "Hello"}, nil)
	alice.pressKey(t, "Enter", false)
	alice.waitFor(t, `statusOf("Hello") === "Sending…"`)
	alice.checkA11y(t, axe, "a message sending")
	p.set(cutMode())
	p.set(passMode())
	alice.waitFor(t, `statusOf("Hello") === "Sent" && document.activeElement === label("Message")`)

	for i := range 4 { // over the rate: some are refused
		alice.b.call(t, alice.session, "Input.insertText", map[string]any{"text": fmt.Sprint("Quick ", i)}, nil)
		alice.pressKey(t, "Enter", false)
	}
	alice.waitFor(t, `messages().every(m => m.status !== "Sending…") && messages().some(m => m.status.startsWith("Not delivered"))`)
	alice.expect(t, focusVisible)
	alice.checkA11y(t, axe, "messages not delivered")
	// No test can fill a server's backlog: the look of a message delivered
	// on one server only is checked on one set so by hand.
	alice.eval(t, `(() => { const li = document.querySelector('#messages li[data-status="failed"]');
		li.dataset.status = "partial"; li.querySelector(".status").textContent = "Delivered only to people on this server."; })()`)
	alice.checkA11y(t, axe, "a message delivered on this server only")

	carol := b.newTab(t, s.URL+"/chat/?room=elsewhere#token="+token("Carol", "lobby"))
	carol.tabTo(t, "Join", named("Join"))
	carol.pressKey(t, "Enter", false)
	carol.waitFor(t, `badge() === "Refused"`)
	carol.checkA11y(t, axe, "a link's token refused")
}

func TestAccessibilityDocs(t *testing.T) {
	t.Parallel()
	axe := axeSource(t)
	s := newTestServer(t, options{rate: defaultRate})
	b := startBrowser(t)
	docs := b.newTab(t, s.URL+"/asyncapi/docs/")
	docs.waitFor(t, `document.getElementById("doc").getAttribute("aria-busy") === null`)
	docs.checkA11y(t, axe, "the docs page")

	// Try it, by keyboard alone.
	docs.tabTo(t, "Connect", named("Connect"))
	docs.pressKey(t, "Enter", false)
	docs.waitFor(t, `document.getElementById("try-badge").textContent === "Connected"`)
	docs.tabTo(t, "Send ping", named("Send ping: ping"))
	docs.pressKey(t, " ", false)
	docs.waitFor(t, `[...document.querySelectorAll("#try-log li")].some(li => li.textContent.includes('"pong"'))`)
	docs.checkA11y(t, axe, "the docs page with Try it connected")

	// A pre that scrolls sideways must take focus (axe's
	// scrollable-region-focusable); the examples wrap instead, at once at
	// any width, so no check can run before a fix-up does.
	for _, width := range []int{360, 1280} {
		docs.resize(t, width, 800)
		docs.expect(t, `[...document.querySelectorAll("pre")].every(p => p.scrollWidth <= p.clientWidth)`)
	}
}

// TestAccessibilityTokenStates checks the pages a server with tokens
// brings: a chat page without a token, told it needs one; a session whose
// token ran out; Try it told the server asks for a token.
func TestAccessibilityTokenStates(t *testing.T) {
	t.Parallel()
	axe := axeSource(t)
	s, mint := tokenServer(t)
	b := startBrowser(t)
	needs := b.newTab(t, s.URL+"/chat/")
	needs.typeInto(t, "Name", "Alice")
	needs.pressEnter(t)
	needs.waitFor(t, `badge() === "Token needed"`)
	needs.checkA11y(t, axe, "a token needed")

	ended := b.newTab(t, s.URL+"/chat/?room=lobby#token="+mint("Bob", "lobby"))
	ended.click(t, "Join")
	ended.waitFor(t, `badge() === "Connected"`)
	s.hub.forEach(func(c *client) { c.close(closeTokenExpired, "token expired") })
	ended.waitFor(t, `badge() === "Session ended"`)
	ended.checkA11y(t, axe, "a session ended")

	docs := b.newTab(t, s.URL+"/asyncapi/docs/")
	docs.waitFor(t, `document.getElementById("doc").getAttribute("aria-busy") === null`)
	docs.click(t, "Connect")
	docs.waitFor(t, `document.getElementById("try-log").textContent.includes("it asks for a token")`)
	docs.checkA11y(t, axe, "Try it asked for a token")
}
