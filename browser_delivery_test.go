package main

// The chat page's delivery, in Chromium: every message it sends carries a
// cid, is shown as sending until its said comes, is marked when the server
// refuses it, and is sent again after a dropped connection, once in the
// room whatever happened to it. And the page with a link's token.
//
// A fault proxy (faultproxy_test.go) between a tab and the server holds
// back what the tab sends, or what it is sent, and cuts its connections,
// as a network does; the other tabs reach the server directly.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// proxiedPage serves s's pages and WebSockets through a fault proxy, and
// returns the proxy and its chat page's address.
func proxiedPage(t *testing.T, s *testServer) (*faultProxy, string) {
	t.Helper()
	p := startFaultProxy(t, strings.TrimPrefix(s.URL, "http://"))
	return p, "http://" + p.addr() + "/chat/"
}

// say types message into the tab's composer and presses Enter.
func (tb *tab) say(t testing.TB, message string) {
	t.Helper()
	tb.typeInto(t, "Message", message)
	tb.pressEnter(t)
}

// countOf is a JavaScript expression: how many messages by author say text.
func countOf(author, text string) string {
	return `messages().filter(m => m.author === ` + jsString(author) + ` && m.text === ` + jsString(text) + `).length`
}

// sentFrames is a JavaScript expression: how many frames in the tab's log
// went out with text in them.
func sentFrames(text string) string {
	return `[...document.querySelectorAll("#log-entries li.log-out")].filter(li => li.textContent.includes(` + jsString(text) + `)).length`
}

func TestBrowserDelivery(t *testing.T) {
	t.Parallel()
	b := startBrowser(t)

	t.Run("sending until said, then sent; the others get it once", func(t *testing.T) {
		s := newTestServer(t, options{rate: defaultRate, history: defaultHistory})
		p, page := proxiedPage(t, s)
		alice, bob := b.newTab(t, page), b.newTab(t, s.URL+"/chat/")
		alice.joinAs(t, "Alice", "room1")
		bob.joinAs(t, "Bob", "room1")

		p.set(delayMode(0, time.Minute)) // what the server sends Alice is held back
		alice.say(t, "Hello everyone!")
		bob.waitFor(t, countOf("Alice", "Hello everyone!")+` === 1`)
		alice.expect(t, `statusOf("Hello everyone!") === "Sending…"`)
		alice.expect(t, `document.querySelector("#messages li.mine").dataset.status === "sending"`)
		alice.expect(t, `/^[0-9a-f]{32}$/.test(JSON.parse([...document.querySelectorAll("#log-entries li.log-out code")].at(-1).textContent).cid)`)

		p.set(cutMode()) // the said is lost with the connection
		p.set(passMode())
		alice.waitFor(t, `badge() === "Connected" && statusOf("Hello everyone!") === "Sent"`)
		alice.say(t, "And again")
		alice.waitFor(t, `statusOf("And again") === "Sent"`)
		bob.waitFor(t, countOf("Alice", "And again")+` === 1`)
		bob.expect(t, countOf("Alice", "Hello everyone!")+` === 1`)
		// The replay held Alice's message with her cid: it was taken for
		// her said, not drawn again, and not sent again.
		alice.expect(t, countOf("You", "Hello everyone!")+` === 1 && messages().length === 2`)
		alice.expect(t, sentFrames("Hello everyone!")+` === 1`)
	})

	t.Run("without history, a message unconfirmed at a drop is not sent twice", func(t *testing.T) {
		s := newTestServer(t, options{rate: defaultRate}) // no history: no ids, no copies spotted
		p, page := proxiedPage(t, s)
		alice, bob := b.newTab(t, page), b.newTab(t, s.URL+"/chat/")
		alice.joinAs(t, "Alice", "room1")
		bob.joinAs(t, "Bob", "room1")
		alice.say(t, "plain")
		alice.waitFor(t, `statusOf("plain") === "Sent"`) // {"action":"said","payload":{},"cid":...}

		p.set(delayMode(0, time.Minute))
		alice.say(t, "unconfirmed")
		bob.waitFor(t, countOf("Alice", "unconfirmed")+` === 1`)
		p.set(cutMode())
		p.set(passMode())
		alice.waitFor(t, `badge() === "Connected" && statusOf("unconfirmed").startsWith("Not confirmed:")`)
		alice.expect(t, `document.querySelector('#messages li[data-status="unsure"] .text').textContent === "unconfirmed"`)
		alice.expect(t, `document.getElementById("chat-error").textContent.includes("Not confirmed")`)
		alice.expect(t, sentFrames("unconfirmed")+` === 1`)
		alice.say(t, "after")
		bob.waitFor(t, countOf("Alice", "after")+` === 1`)
		bob.expect(t, countOf("Alice", "unconfirmed")+` === 1`)
	})

	t.Run("a refused message is marked not delivered, never removed", func(t *testing.T) {
		// Bursts of 4, the opening ping among them. The burst is sent in one
		// go, as fast as a script can, so that no token comes back while
		// it is sent, however slow the machine: the first go out, the rest
		// are refused, and nothing sent after them clears the alert.
		s := newTestServer(t, options{rate: 2, history: defaultHistory})
		alice, bob := b.newTab(t, s.URL+"/chat/"), b.newTab(t, s.URL+"/chat/")
		alice.joinAs(t, "Alice", "room1")
		bob.joinAs(t, "Bob", "room1")
		const burst = 6
		alice.eval(t, fmt.Sprintf(`{
			const input = document.getElementById("message"), form = document.getElementById("composer");
			for (let i = 0; i < %d; i++) { input.value = "burst " + i; form.requestSubmit(); }
		}`, burst))
		alice.waitFor(t, `messages().filter(m => m.status === "Sending…").length === 0`)
		alice.expect(t, fmt.Sprintf(`messages().length === %d`, burst))
		alice.expect(t, `messages().every(m => m.status === "Sent" || m.status === "Not delivered: Too many messages: at most 2 per second.")`)
		alice.expect(t, `messages().some(m => m.status === "Sent") && messages().some(m => m.status !== "Sent")`)
		alice.expect(t, `document.querySelectorAll('#messages li[data-status="failed"]').length === messages().filter(m => m.status !== "Sent").length`)
		alice.expect(t, `document.getElementById("chat-error").textContent.includes("Not delivered")`)
		// Bob has exactly those Alice's page says were sent, in order.
		sent := `JSON.stringify(messages().filter(m => m.status === "Sent").map(m => m.text))`
		var want string
		if err := json.Unmarshal(alice.eval(t, sent), &want); err != nil {
			t.Fatal(err)
		}
		bob.waitFor(t, `JSON.stringify(messages().filter(m => m.author === "Alice").map(m => m.text)) === `+jsString(want))
	})
}

// TestBrowserResend drops Alice's connection while a message of hers has
// no said: one the server never got is sent again after the replay, with
// its cid, and lands after what was said meanwhile; one the server got is
// known in the replay by its cid. Bob has each once.
func TestBrowserResend(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, options{rate: defaultRate, history: defaultHistory})
	p, page := proxiedPage(t, s)
	b := startBrowser(t)
	alice, bob := b.newTab(t, page), b.newTab(t, s.URL+"/chat/")
	alice.joinAs(t, "Alice", "room1")
	bob.joinAs(t, "Bob", "room1")
	alice.say(t, "before")
	alice.waitFor(t, `statusOf("before") === "Sent"`)

	p.set(delayMode(time.Minute, 0)) // what Alice sends is held back
	alice.say(t, "lost on the way")
	alice.say(t, "and this one")
	alice.expect(t, `statusOf("lost on the way") === "Sending…" && statusOf("and this one") === "Sending…"`)
	p.set(cutMode())
	alice.waitFor(t, `badge().startsWith("Disconnected") && label("Message").disabled`)
	alice.expect(t, `statusOf("lost on the way") === "Sending…"`) // not sent, and not said to be
	bob.say(t, "while you were away")
	bob.waitFor(t, `statusOf("while you were away") === "Sent"`)
	p.set(passMode())

	alice.waitFor(t, `statusOf("lost on the way") === "Sent" && statusOf("and this one") === "Sent"`)
	want := `["before","while you were away","lost on the way","and this one"]`
	alice.expect(t, `JSON.stringify(messages().map(m => m.text)) === `+jsString(want))
	bob.waitFor(t, `JSON.stringify(messages().map(m => m.text)) === `+jsString(want))
	alice.expect(t, sentFrames("lost on the way")+` === 2`) // once held back, once again
	bob.say(t, "all here?")
	alice.waitFor(t, countOf("Bob", "all here?")+` === 1`)
	bob.expect(t, `messages().length === 5`)
}

func TestBrowserToken(t *testing.T) {
	t.Parallel()
	secret := []byte(strings.Repeat("s", minTokenSecretBytes))
	s := newTestServer(t, options{rate: defaultRate, history: defaultHistory, secret: secret})
	mint := func(name string, rooms ...string) string { return hourToken(t, secret, name, rooms...) }
	b := startBrowser(t)
	aliceToken := mint("Zoë from the link", "room1")
	alice := b.newTab(t, s.URL+"/chat/?room=room1#token="+aliceToken)
	bob := b.newTab(t, s.URL+"/chat/#token="+mint("Bob", "*"))

	t.Run("the page takes its name from the token, and the token out of the address", func(t *testing.T) {
		alice.expect(t, `label("Name") === null && label("Name (from your link)").value === "Zoë from the link"`)
		alice.expect(t, `label("Name (from your link)").readOnly && document.getElementById("name-note").checkVisibility()`)
		alice.expect(t, `location.hash === "" && !location.href.includes(`+jsString(aliceToken[:20])+`)`)
		alice.expect(t, `label("Room").value === "room1"`)
		bob.expect(t, `location.href === `+jsString(s.URL+"/chat/"))
	})

	t.Run("messages go under the token's name", func(t *testing.T) {
		alice.click(t, "Join")
		alice.waitFor(t, `badge() === "Connected"`)
		bob.typeInto(t, "Room", "room1")
		bob.click(t, "Join")
		bob.waitFor(t, `badge() === "Connected"`)
		alice.say(t, "signed in")
		alice.waitFor(t, `statusOf("signed in") === "Sent"`)
		bob.waitFor(t, countOf("Zoë from the link", "signed in")+` === 1`)
	})

	t.Run("a reload keeps the token, for this tab", func(t *testing.T) {
		b.call(t, alice.session, "Page.reload", nil, nil)
		alice.waitFor(t, `document.readyState === "complete" && typeof label === "function" && badge() === "Connected"`)
		alice.expect(t, `location.hash === "" && sessionStorage.getItem("roomchat.token") === `+jsString(aliceToken))
		alice.say(t, "back")
		bob.waitFor(t, countOf("Zoë from the link", "back")+` === 1`)
	})

	t.Run("a token for another room is refused, once", func(t *testing.T) {
		carol := b.newTab(t, s.URL+"/chat/?room=room2#token="+mint("Carol", "room1"))
		carol.click(t, "Join")
		carol.waitFor(t, `badge() === "Refused"`)
		carol.expect(t, `document.getElementById("chat-error").textContent ===
			"The server refused this link's token (it is for the room room1, not room2). Ask for a new link."`)
		// No more tries: a second would come within 1.25 s of the first.
		time.Sleep(2 * time.Second)
		carol.expect(t, `badge() === "Refused"`)
		tries := 0
		for _, u := range b.requestedURLs() {
			if strings.Contains(u, "/ws/chat/room2/") {
				tries++
			}
		}
		if tries != 1 {
			t.Errorf("%d WebSockets opened to room2, want 1", tries)
		}
		carol.expect(t, `cspViolations.length === 0`) // its look at /healthz included
	})
}
