package main

// These tests keep docs/protocol.md true. They read its tables, send every
// example frame in them to a live server and expect exactly the answer the
// page gives, and compare its limits and close codes with the constants the
// code enforces (asyncapi_test.go compares the same constants with the
// AsyncAPI document, so the two documents cannot drift apart).

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const protocolDoc = "docs/protocol.md"

// TestProtocolClientMessages sends each row of "What a client sends" and
// checks that the frame the row promises reaches whom it says: the sender
// alone, or every other member and not the sender.
func TestProtocolClientMessages(t *testing.T) {
	rows := docTable(t, protocolDoc, "What a client sends")
	s := newTestServer(t, options{})
	from, other := s.dial(t, "doc"), s.dial(t, "doc")
	for _, row := range rows {
		sent, result := onlyCode(t, row[0]), row[1]
		t.Run(sent, func(t *testing.T) {
			want := codeSpans(result)
			if len(want) != 1 {
				t.Fatalf("%q should name exactly one frame", result)
			}
			sendText(t, from, sent)
			switch {
			case strings.Contains(result, "you receive"):
				expectText(t, from, want[0])
				msg, _ := decode([]byte(sent))
				p := msg.Payload.(chatPayload)
				expectText(t, other, chat(p.Message, p.Name))
			case strings.Contains(result, "you alone"):
				expectText(t, from, want[0])
				expectQuiet(t, other)
			case strings.Contains(result, "every *other*"):
				expectText(t, other, want[0])
				expectQuiet(t, from)
			default:
				t.Fatalf("%q says neither 'you alone' nor 'every *other*'", result)
			}
		})
	}
	if len(rows) < 3 {
		t.Errorf("only %d rows in %s's table of client messages", len(rows), protocolDoc)
	}
}

// TestProtocolErrors checks the error table: its types are the code's, in
// order, and each example frame gets exactly the error frame the row gives.
// The cause that is not one frame (a burst over the rate) is made here.
func TestProtocolErrors(t *testing.T) {
	rows := docTable(t, protocolDoc, "Errors")
	var types []string
	for _, row := range rows {
		types = append(types, onlyCode(t, row[0]))
	}
	if !slices.Equal(types, errorTypes) {
		t.Errorf("%s lists the error types %v; messages.go has %v", protocolDoc, types, errorTypes)
	}

	s := newTestServer(t, options{rate: defaultRate})
	for _, row := range rows {
		typ, loc, msg := onlyCode(t, row[0]), onlyCode(t, row[1]), onlyCode(t, row[4])
		t.Run(typ, func(t *testing.T) {
			c := s.dial(t, "errors")
			want := `{"action":"error","payload":[{"type":"` + typ + `","loc":` + loc + `,"msg":"` + msg + `"}]}`
			switch typ {
			case errNotRelayed: // takes a Redis out of reach for long: redisfault_test.go
				if msg != notRelayed.Msg {
					t.Fatalf("the table says %q, the code %q", msg, notRelayed.Msg)
				}
				return
			case errNotStored: // takes a full disk: TestDataFullDisk
				if msg != notStored.Msg {
					t.Fatalf("the table says %q, the code %q", msg, notStored.Msg)
				}
				return
			case errRateLimited:
				burst := 2 * defaultRate
				for range burst + 1 {
					sendText(t, c, `{"action":"ping"}`)
				}
				for range burst {
					expectText(t, c, pong)
				}
			case errNameRequired: // on a connection that asked for presence, without a name
				c = dialURL(t, s.wsURL("errors")+"?presence", s.URL)
				recvText(t, c) // its presence frame
				sendText(t, c, onlyCode(t, row[3]))
			default:
				sendText(t, c, onlyCode(t, row[3]))
			}
			expectText(t, c, want)
		})
	}
}

// TestProtocolLimits compares the Limits table with the constants.
func TestProtocolLimits(t *testing.T) {
	rows := docTable(t, protocolDoc, "Limits")
	limits := map[string]string{}
	for _, row := range rows {
		limits[row[0]] = row[1]
	}
	minRoom, maxRoom := roomLengths(t)
	seconds := func(d time.Duration) string { return fmt.Sprintf("%g s", d.Seconds()) }
	tests := []struct{ limit, want string }{
		{"message size, all fragments together", thousands(maxMessageBytes) + " bytes"},
		{"`message`", thousands(maxMessageChars) + " characters"},
		{"`name`", thousands(maxNameChars) + " characters"},
		{"room name", fmt.Sprintf("%d to %d characters of `A-Z a-z 0-9 . _ -`", minRoom, maxRoom)},
		{"rate per connection", fmt.Sprintf("%d messages a second, bursts of %d", defaultRate, 2*defaultRate)},
		{"bytes per connection", fmt.Sprintf("%s a second, bursts of %s", thousands(bytesPerSecond), thousands(2*bytesPerSecond))},
		{"frames per connection, of every kind", fmt.Sprintf("%d a second, bursts of %d; past that, closed with %d", framesPerMessage*defaultRate, 2*framesPerMessage*defaultRate, closePolicyViolation)},
		{"frames waiting for one client", fmt.Sprintf("%d; a client that lets its queue fill is closed with %d", sendQueueLen, closePolicyViolation)},
		{"WebSockets per server", "as many as TCP connections: every WebSocket is one"},
		{"connections per client address", fmt.Sprintf("%d WebSockets, and %d TCP connections", defaultMaxPerClient, defaultMaxPerClient+perClientSlack)},
		{"TCP connections per server, plain HTTP included", fmt.Sprintf("the descriptor limit, less %d", fdReserve)},
		{"time between the server's pings", seconds(defaultPingInterval)},
		{"time without any frame before the server closes with 1001", seconds(defaultIdleTimeout)},
		{"time to write a frame to a client before it is cut off as slow (1008, unsent)", fmt.Sprintf("%g to %s", (defaultWriteTimeout / 2).Seconds(), seconds(defaultWriteTimeout))},
		{"time the closing handshake may take", seconds(closeTimeout)},
		{"time shutdown gives connections to close with 1001", seconds(shutdownTimeout)},
		{"messages a room keeps", fmt.Sprint(defaultHistory)},
		{"bytes a room's history keeps", thousands(historyRoomBytes)},
		{"memory all rooms' histories take", fmt.Sprintf("%d MiB (%d MiB of messages)", historyMemory>>20, historyTotalBytes>>20)},
		{"time a room's history outlives its last member", fmt.Sprintf("%g min", historyKeep.Minutes())},
		{"`cid`", fmt.Sprintf("1 to %d printable ASCII characters", maxCidBytes)},
		{"`presence_diff` frames per room", fmt.Sprintf("one every %d ms (TestPresenceStorm)", presenceEvery.Milliseconds())},
		{"names in one `presence` or `presence_diff` frame", thousands(presenceListBytes) + " bytes of them (TestPresenceListBound)"},
		{"`typing` frames forwarded per connection", fmt.Sprintf("one every %s; the rest dropped (TestPresenceFrames)", seconds(typingEvery))},
		{"time a process's presence outlives its last beat, with `-redis`", fmt.Sprintf("%s; beats every %s (TestRedisPresence)", seconds(presenceTTL), seconds(presenceTTL/4))},
	}
	for _, tt := range tests {
		if got, ok := limits[tt.limit]; !ok {
			t.Errorf("%s has no limit %q", protocolDoc, tt.limit)
		} else if got != tt.want {
			t.Errorf("%s says %s is %q; the code says %q", protocolDoc, tt.limit, got, tt.want)
		}
		delete(limits, tt.limit)
	}
	for limit := range limits {
		t.Errorf("%s states the limit %q, which no test checks", protocolDoc, limit)
	}
}

// TestProtocolCloseCodes checks that the Closing table lists exactly the
// close codes the server sends (TestCloseCodes and the tests of shutdown,
// idle and slow clients check when it sends them).
func TestProtocolCloseCodes(t *testing.T) {
	var got []int
	for _, row := range docTable(t, protocolDoc, "Closing") {
		code, err := strconv.Atoi(strings.Fields(row[0])[0])
		if err != nil {
			t.Fatalf("close code %q: %v", row[0], err)
		}
		got = append(got, code)
	}
	want := []int{closeNormal, closeGoingAway, closeProtocolError, closeUnsupportedData, closeInvalidPayload, closePolicyViolation, closeTooBig, closeTokenExpired}
	if !slices.Equal(got, want) {
		t.Errorf("%s lists the close codes %v; the server sends %v", protocolDoc, got, want)
	}
}

// roomLengths reads the shortest and longest room name from roomPattern.
func roomLengths(t *testing.T) (minLen, maxLen int) {
	m := regexp.MustCompile(`\{(\d+),(\d+)\}`).FindStringSubmatch(roomPattern)
	if m == nil {
		t.Fatalf("no {min,max} in roomPattern %s", roomPattern)
	}
	minLen, _ = strconv.Atoi(m[1])
	maxLen, _ = strconv.Atoi(m[2])
	return minLen, maxLen
}

// thousands writes n with commas, as the documents do: 65,536.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// docTable returns the body rows of the first table under the heading
// "## section" of a Markdown file, each row split into its cells.
func docTable(t *testing.T, file, section string) [][]string {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(text), "\n## "+section+"\n")
	if !ok {
		t.Fatalf("%s has no section %q", file, section)
	}
	after, _, _ = strings.Cut(after, "\n## ")
	var rows [][]string
	for _, line := range strings.Split(after, "\n") {
		if !strings.HasPrefix(line, "|") {
			if len(rows) > 0 {
				break // the end of the first table
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	if len(rows) < 3 {
		t.Fatalf("%s: no table under %q", file, section)
	}
	return rows[2:] // past the header and its underline
}

// codeSpans returns the `code` spans of a Markdown cell.
func codeSpans(cell string) []string {
	var out []string
	for _, m := range regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// onlyCode returns the first code span of a cell, which must have one.
func onlyCode(t *testing.T, cell string) string {
	t.Helper()
	spans := codeSpans(cell)
	if len(spans) == 0 {
		t.Fatalf("no `code` in %q", cell)
	}
	return spans[0]
}
