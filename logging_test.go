package main

// The log in both formats, from the roomchat command itself: each JSON
// line parses, and carries the fields of the text line it stands for.
// (deploy_test.go reads the JSON log of the deployed server too.)

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
)

// TestLogJSON runs the same session against roomchat with -log text and
// with -log json: a connection, a foreign origin refused, a disconnection,
// SIGTERM. Message for message, the fields are the same; the JSON values
// are typed (a duration is nanoseconds, a close code a number).
func TestLogJSON(t *testing.T) {
	// session runs the session in a subtest, whose end stops the server:
	// its log is then complete.
	session := func(format string) string {
		var log *syncBuffer
		t.Run(format, func(t *testing.T) {
			port := strconv.Itoa(freePort(t))
			log = startMain(t, "-addr", "127.0.0.1:"+port, "-log", format)
			closeClient(t, dialURL(t, "ws://127.0.0.1:"+port+"/ws/chat/logs/", ""))
			if code := handshakeStatus(t, "http://127.0.0.1:"+port+"/ws/chat/logs/", "https://evil.example"); code != 403 {
				t.Fatalf("foreign origin: %d", code)
			}
			waitFor(t, func() string { return "the disconnection in the log" }, func() bool {
				return strings.Contains(log.String(), "disconnected")
			})
		})
		if log == nil {
			t.FailNow()
		}
		return log.String()
	}
	text, jsonLog := session(logText), session(logJSON)

	// The order of lines from different goroutines may differ between
	// the runs; each message comes once in this session.
	texts, entries := map[string]map[string]string{}, map[string]map[string]any{}
	for _, fields := range parseTextLog(t, text) {
		texts[fields["msg"]] = fields
	}
	for _, e := range parseJSONLog(t, jsonLog) {
		entries[fmt.Sprint(e["msg"])] = e
	}
	if msgs := slices.Sorted(maps.Keys(texts)); len(msgs) < 5 || !slices.Equal(msgs, slices.Sorted(maps.Keys(entries))) {
		t.Fatalf("text and JSON logs differ:\n%s\n%s", text, jsonLog)
	}
	for msg, want := range texts {
		got := entries[msg]
		if k1, k2 := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(k1, k2) {
			t.Errorf("%s: fields %v, in text %v", msg, k1, k2)
		}
		if got["level"] != want["level"] {
			t.Errorf("%s: level %v, in text %v", msg, got["level"], want["level"])
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(got["time"])); err != nil {
			t.Errorf("%s: time %v", msg, got["time"])
		}
	}
	d, err := time.ParseDuration(texts["disconnected"]["duration"])
	if n, ok := entries["disconnected"]["duration"].(float64); err != nil || !ok || n < 0 || d < 0 {
		t.Errorf("duration %q in text, %v in JSON", texts["disconnected"]["duration"], entries["disconnected"]["duration"])
	}
	want := map[string]any{"msg": "disconnected", "level": "INFO", "conn": 1.0, "room": "logs", "remote": "127.0.0.1", "code": float64(closeNormal), "reason": "client closed"}
	for k, v := range want {
		if got := entries["disconnected"][k]; got != v {
			t.Errorf("disconnected: %s is %#v, want %#v", k, got, v)
		}
	}
}

// textField is one key=value of a text line, the value quoted when it
// has spaces or quotes.
var textField = regexp.MustCompile(`([a-z_]+)=("(?:[^"\\]|\\.)*"|\S*)`)

// parseTextLog parses log/slog's text lines into their fields.
func parseTextLog(t *testing.T, log string) []map[string]string {
	t.Helper()
	var lines []map[string]string
	for line := range strings.Lines(log) {
		fields := map[string]string{}
		for _, m := range textField.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			fields[m[1]] = v
		}
		if fields["msg"] == "" {
			t.Fatalf("not a text log line: %q", line)
		}
		lines = append(lines, fields)
	}
	return lines
}

// TestLogEscapesFormatControls logs strings a client chose, holding
// characters that reorder or hide text, in both formats: neither writes
// one raw, and the JSON still reads back as what was logged.
func TestLogEscapesFormatControls(t *testing.T) {
	for _, s := range []string{
		"evil\u202e.example", // right-to-left override
		"\u2066name\u2069",   // isolates
		"a\u200bb",           // zero-width space
		"del\x7f c1\u0085",   // DEL, NEL
		"tag\U000E0041",      // a tag character, beyond the BMP
		"café ☕ 日本",          // printable: left as it is
	} {
		for _, format := range []string{logText, logJSON} {
			var b strings.Builder
			slog.New(logHandler(format, &b, nil)).Info("refused foreign origin", "origin", s)
			line := b.String()
			for _, r := range line {
				if r >= 0x7f && !unicode.IsPrint(r) {
					t.Errorf("%s: %U written raw: %q", format, r, line)
				}
			}
			if format == logJSON {
				var e map[string]any
				if err := json.Unmarshal([]byte(line), &e); err != nil || e["origin"] != s {
					t.Errorf("json: %q reads back as %q (%v)", s, e["origin"], err)
				}
			}
			if strings.HasPrefix(s, "café") && !strings.Contains(line, s) {
				t.Errorf("%s: printable text escaped: %q", format, line)
			}
		}
	}
}

// TestLogNamesTheClientBehindAProxy refuses a foreign origin and a token
// through a trusted proxy: both lines name the forwarded client, as the
// limits count it, not the proxy.
func TestLogNamesTheClientBehindAProxy(t *testing.T) {
	var logs syncBuffer
	opts := options{proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, secret: []byte(strings.Repeat("s", minTokenSecretBytes))}
	h, err := buildHub(opts, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s := serveHub(t, h, opts)
	if code, _ := hold(t, s, "/ws/chat/room/", http.Header{"Origin": {"https://evil.example"}, "X-Forwarded-For": {"203.0.113.9"}}); code != 403 {
		t.Fatalf("foreign origin: %d", code)
	}
	if code, _ := hold(t, s, "/ws/chat/room/", http.Header{"X-Forwarded-For": {"2001:db8::7"}}); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	for _, want := range []string{
		`msg="refused foreign origin" origin=https://evil.example host=` + strings.TrimPrefix(s.URL, "http://") + " scheme=http remote=203.0.113.9",
		`msg="refused a token" remote=2001:db8:: room=room`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log has no %q:\n%s", want, logs.String())
		}
	}
}
