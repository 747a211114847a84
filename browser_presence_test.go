package main

// The chat page's presence (static/presence.js) in Chromium: who is here,
// joins and leaves, who is typing, a name that is markup shown as text,
// and axe-core clean in each of those states.

import "testing"

func TestBrowserPresence(t *testing.T) {
	t.Parallel()
	axe := axeSource(t)
	s := newTestServer(t, options{rate: defaultRate, history: defaultHistory})
	b := startBrowser(t)
	alice, bob := b.newTab(t, s.URL+"/chat/"), b.newTab(t, s.URL+"/chat/")
	text := func(id string) string { return `(document.getElementById("` + id + `") || {}).textContent` }

	alice.joinAs(t, "Alice", "lobby")
	alice.waitFor(t, text("presence-summary")+` === "1 here: Alice"`)
	bob.joinAs(t, "<b>Bob</b>", "lobby")
	alice.waitFor(t, text("presence-summary")+` === "2 here: <b>Bob</b>, Alice"`)
	alice.expect(t, text("presence-news")+` === "<b>Bob</b> joined"`)
	alice.expect(t, `document.querySelector("#presence-news b") === null`) // markup shown as text
	alice.expect(t, `document.getElementById("presence-news").getAttribute("aria-live") === "polite"`)
	alice.checkA11y(t, axe, "someone joined")

	bob.typeInto(t, "Message", "Hel")
	bob.typeInto(t, "Message", "Hello") // within 2 s: one typing frame
	alice.waitFor(t, text("presence-typing")+` === "<b>Bob</b> is typing…"`)
	bob.expect(t, `[...document.querySelectorAll("#log-entries li")].filter(li => li.textContent.includes('"typing"')).length === 1`)
	alice.checkA11y(t, axe, "someone typing")
	alice.waitFor(t, text("presence-typing")+` === ""`) // stopped typing

	bob.click(t, "Leave")
	alice.waitFor(t, text("presence-news")+` === "<b>Bob</b> left"`)
	alice.expect(t, text("presence-summary")+` === "1 here: Alice"`)
	alice.checkA11y(t, axe, "someone left")
}
