package main

// The chat page and Try it on a server with tokens: a page without one is
// told it needs one and how to get it, and does not retry (docs/protocol.md,
// Writing a client: a 401 is not retried); a session whose token runs out
// (close 4401) ends, and is not retried with that token.

import (
	"strings"
	"testing"
)

// tokenServer starts a server with tokens, and returns it with a function
// that mints a token for name in room, valid for an hour.
func tokenServer(t *testing.T) (*testServer, func(name, room string) string) {
	secret := []byte(strings.Repeat("s", minTokenSecretBytes))
	s := newTestServer(t, options{rate: defaultRate, history: defaultHistory, secret: secret})
	return s, func(name, room string) string { return hourToken(t, secret, name, room) }
}

// notRetrying holds once the page has said, in its log, that it will not
// reconnect; a page that reconnects says so no more than it retries.
const notRetrying = `[...document.querySelectorAll("#log-entries li")].some(li => li.textContent.includes("not reconnecting"))`

func TestBrowserTokenNeeded(t *testing.T) {
	t.Parallel()
	s, _ := tokenServer(t)
	b := startBrowser(t)
	page := b.newTab(t, s.URL+"/chat/")
	page.typeInto(t, "Name", "Alice")
	page.click(t, "Join")
	page.waitFor(t, `badge() === "Token needed"`)
	page.expect(t, notRetrying)
	page.expect(t, `label("Message").disabled`)
	page.expect(t, `document.getElementById("chat-error").textContent.includes("#token=")`)
}

func TestBrowserSessionEnded(t *testing.T) {
	t.Parallel()
	s, mint := tokenServer(t)
	b := startBrowser(t)
	page := b.newTab(t, s.URL+"/chat/?room=lobby#token="+mint("Alice", "lobby"))
	page.click(t, "Join")
	page.waitFor(t, `badge() === "Connected"`)
	s.hub.forEach(func(c *client) { c.close(closeTokenExpired, "token expired") })
	page.waitFor(t, `badge() === "Session ended"`)
	page.expect(t, notRetrying)
	page.expect(t, `document.getElementById("chat-error").textContent.startsWith("Your session ended")`)
	page.expect(t, `sessionStorage.getItem("roomchat.token") === null`) // a reload does not try it again
}

// TestBrowserDocsToken uses Try it on a server with tokens: without one,
// the page says the server asks for one; with one, it connects.
func TestBrowserDocsToken(t *testing.T) {
	t.Parallel()
	s, mint := tokenServer(t)
	b := startBrowser(t)
	docs := b.newTab(t, s.URL+"/asyncapi/docs/")
	docs.waitFor(t, `document.getElementById("doc").getAttribute("aria-busy") === null`)
	docs.click(t, "Connect")
	docs.waitFor(t, `document.getElementById("try-log").textContent.includes("it asks for a token")`)
	docs.expect(t, `document.activeElement === label("Token")`)
	docs.typeInto(t, "Token", mint("Alice", "lobby"))
	docs.click(t, "Connect")
	docs.waitFor(t, `document.getElementById("try-badge").textContent === "Connected"`)
	docs.click(t, "Send new_chat_message: hello")
	docs.click(t, "Send new_chat_message: hello with a cid")
	docs.waitFor(t, `[...document.querySelectorAll("#try-log li")].some(li => li.textContent.includes('{"action":"said"'))`)
}
