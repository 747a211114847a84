package main

// The API docs page in a real browser: the document read as a person
// would, at a phone's width and a desktop's, and Try it.
//
// Regenerate docs/api-docs.png with: go test -run TestBrowserDocs -screenshot

import (
	"net/url"
	"strings"
	"testing"
)

// TestBrowserDocs reads the API docs as a person would, then uses Try it.
func TestBrowserDocs(t *testing.T) {
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
