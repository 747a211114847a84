package main

// A tab in the shared Chromium (chromium_test.go), and what a check does
// in it as a person would: load a page, run JavaScript, type, press keys,
// click. Pictures of tabs are in screenshot_test.go.

import (
	"encoding/json"
	"testing"
	"time"
)

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

// tab is one page in the browser, like a browser tab a person looks at.
type tab struct {
	b       *browser
	session string
}

// newTab opens pageURL in a new 640x720 tab and waits for it to load.
func (b *browser) newTab(t testing.TB, pageURL string) *tab {
	t.Helper()
	var target struct{ TargetID string }
	b.call(t, "", "Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": b.context}, &target)
	var attached struct{ SessionID string }
	b.call(t, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	tb := &tab{b: b, session: attached.SessionID}
	b.mu.Lock()
	b.tabs = append(b.tabs, tb.session)
	b.mu.Unlock()
	for _, domain := range []string{"Page", "Runtime", "Network"} {
		b.call(t, tb.session, domain+".enable", nil, nil)
	}
	if b.insecure {
		b.call(t, tb.session, "Security.setIgnoreCertificateErrors", map[string]any{"ignore": true}, nil)
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

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
