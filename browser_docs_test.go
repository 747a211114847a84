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
	// Every table cell holds its words whole, on a phone and a desktop.
	for _, width := range []int{390, 1280} {
		docs.resize(t, width, 900)
		if broken := string(docs.eval(t, brokenWords)); broken != "[]" {
			t.Errorf("%d px wide, cells overflow or break words: %s", width, broken)
		}
	}
	// Markdown is rendered: no backtick shows outside code, and two links
	// never run together ("history_gaphistory").
	docs.expect(t, `document.querySelectorAll("#doc p code, #doc td code").length > 20`)
	if raw := string(docs.eval(t, rawMarkdown)); raw != "[]" {
		t.Errorf("raw Markdown shows: %s", raw)
	}
	docs.expect(t, `[...document.querySelectorAll("#doc a")].every(a => a.nextSibling === null || a.nextSibling.nodeType !== Node.ELEMENT_NODE)`)
	// Try it's frame box shows five lines, and its log a useful height.
	docs.expect(t, `label("Any frame").getBoundingClientRect().height >= 90`)
	docs.expect(t, `document.getElementById("try-log").getBoundingClientRect().height >= 200`)

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
	// The screenshot: a message's table beside Try it's frame box and log.
	if *updateScreenshot {
		docs.resize(t, 1280, 1000)
		docs.b.call(t, docs.session, "Page.bringToFront", nil, nil) // a tab behind paints no frame
		docs.evalAsync(t, `document.getElementById("message-new_chat_message").scrollIntoView();
			document.querySelector(".try").scrollTop = 1e6;
			new Promise(painted => requestAnimationFrame(() => requestAnimationFrame(painted)))`)
		writeScreenshot(t, "docs/api-docs.png", docs)
	}
}

// brokenWords lists the document's table cells whose content overflows
// them, and the words in its cells that a line break splits (a hyphen, as
// in lower-case, is a place to break).
const brokenWords = `(() => {
	const out = [];
	for (const cell of document.querySelectorAll("#doc th, #doc td")) {
		if (cell.scrollWidth > cell.clientWidth) out.push("overflow: " + cell.textContent.slice(0, 40));
		const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
		for (let n; (n = walk.nextNode());) {
			for (const m of n.data.matchAll(/[^\s-]+/g)) {
				const r = document.createRange();
				r.setStart(n, m.index);
				r.setEnd(n, m.index + m[0].length);
				const tops = [...r.getClientRects()].map(q => q.top);
				if (Math.max(...tops) - Math.min(...tops) > 4) out.push(m[0]); // on two lines
			}
		}
	}
	return out; })()`

// rawMarkdown lists the text outside code and examples that still shows
// Markdown's marks: a backtick, or ** of strong.
const rawMarkdown = `(() => {
	const out = [], walk = document.createTreeWalker(document.getElementById("doc"), NodeFilter.SHOW_TEXT);
	for (let n; (n = walk.nextNode());) {
		if (!n.parentElement.closest("code, pre") && /` + "`" + `|\*\*/.test(n.data)) out.push(n.data.slice(0, 60));
	}
	return out; })()`
