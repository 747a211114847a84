package main

// docs/protocol.md's table "roomchat and Chanx 2.0.1 side by side", run.
// Each row's first cell is an input, written so that a program can send
// it; its third cell is what roomchat does, written as this file's probe
// prints it. Run against roomchat (the default), the test fails when a row
// no longer says what roomchat does. Run against any other server,
//
//	go test -run TestSideBySide -v . -against ws://127.0.0.1:18801/ws/chat/
//
// it prints what that server does for each row, so that anyone with Chanx
// can check the Chanx column for themselves.

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	against     = flag.String("against", "", "run the side-by-side rows against the server at this chat URL prefix (ws://host:port/ws/chat/) and print what it does")
	againstLong = flag.Bool("against-long", false, "with -against, also run the rows that take a minute or more")
	againstPID  = flag.Int("against-pid", 0, "with -against, the server's process, for the SIGTERM row (which stops it)")
)

// sideBySide is the section of docs/protocol.md this file runs.
const sideBySide = "roomchat and Chanx 2.0.1 side by side"

func TestSideBySide(t *testing.T) {
	rows := docTable(t, protocolDoc, sideBySide)
	p := prober{base: *against, quiet: 600 * time.Millisecond, external: *against != "", scale: 1}
	if p.external {
		p.stop = func() {
			if *againstPID == 0 {
				t.Skip("the SIGTERM row needs -against-pid")
			}
			syscall.Kill(*againstPID, syscall.SIGTERM)
		}
	} else {
		s := newTestServer(t, options{rate: defaultRate})
		// The silent rows' minutes become a fraction of a second.
		s.hub.pingInterval, s.hub.idleTimeout = defaultPingInterval/250, defaultIdleTimeout/250
		p.base, p.scale = strings.TrimSuffix(s.wsURL("x"), "x/"), 1.0/250
		p.stop = func() { s.hub.shutdown(t.Context()) } // what SIGTERM does
		// One metered client cannot outrun a reader: the unread rows run
		// on a server without the rate limit, as the test of slow clients.
		u := newTestServer(t, options{})
		p.unmetered = strings.TrimSuffix(u.wsURL("x"), "x/")
	}
	for i, row := range rows {
		if len(row) != 4 {
			t.Fatalf("row %d has %d cells, want 4: input, Chanx, roomchat, why", i+1, len(row))
		}
		input := onlyCode(t, row[0])
		if p.external {
			if strings.HasPrefix(input, "silent") && !*againstLong {
				fmt.Printf("%-60s (skipped: -against-long)\n", input)
				continue
			}
			fmt.Printf("%s\n    %s\n", input, p.run(t, i, input))
			continue
		}
		if got := p.run(t, i, input); got != row[2] {
			t.Errorf("%s\n  roomchat does: %s\n  the table says: %s", input, got, row[2])
		}
	}
}

// prober runs one row's input against a server and describes what it did.
type prober struct {
	base      string        // ws://host:port/ws/chat/
	quiet     time.Duration // how long without a frame ends an observation
	external  bool          // not roomchat: no markers, wait for quiet instead
	scale     float64       // the factor on the waits of the silent rows
	stop      func()        // sends the server SIGTERM, or does what it does
	unmetered string        // roomchat without its rate limit, for the unread rows
}

// run sends input and describes what came back. The forms of input:
//
//	GET /path [Origin: value]   a handshake: "HTTP 101" or the status
//	binary TEXT                 a binary message
//	hex HH HH ...               a text message of these bytes
//	silent N s                  a member that answers pings and says nothing
//	unanswered N s              a member that answers nothing
//	SIGTERM                     the server is told to stop (the last row)
//	unread N × TEXT             others reads nothing until you has sent them
//	N × TEXT                    a burst of N text messages
//	TEXT padded to N bytes      one text message, spaces added at its end
//	TEXT                        one text message
//
// The messages go from "you" to a room where "others" is a second member;
// the answer says what each of them received: frames, in order, then
// "close N", "dropped" (TCP closed with no close frame), or nothing more.
func (p prober) run(t *testing.T, row int, input string) string {
	if rest, ok := strings.CutPrefix(input, "GET "); ok {
		path, origin, _ := strings.Cut(rest, " Origin: ")
		status, conn := p.dial(t, path, origin)
		if conn != nil {
			conn.Close()
		}
		return "HTTP " + strconv.Itoa(status)
	}
	unread := strings.HasPrefix(input, "unread ")
	if unread {
		input = strings.TrimPrefix(input, "unread ")
		if p.unmetered != "" {
			p.base = p.unmetered
		}
	}
	room := fmt.Sprintf("side%d-%d", row, time.Now().UnixNano()%1e6)
	_, you := p.dial(t, "/"+room+"/", "")
	_, others := p.dial(t, "/"+room+"/", "")
	if you == nil || others == nil {
		t.Fatalf("%s: cannot join a room", input)
	}
	defer you.Close()
	defer others.Close()

	var frames [][]byte
	switch {
	case strings.HasPrefix(input, "binary "):
		frames = append(frames, maskedFrame(opBinary, []byte(strings.TrimPrefix(input, "binary "))))
	case strings.HasPrefix(input, "hex "):
		b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimPrefix(input, "hex "), " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, maskedFrame(opText, b))
	case strings.HasPrefix(input, "silent "), strings.HasPrefix(input, "unanswered "):
		return p.silent(t, input, you)
	case input == "SIGTERM":
		p.stop()
	case strings.Contains(input, " padded to "):
		text, size, _ := strings.Cut(input, " padded to ")
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.ReplaceAll(size, ",", ""), " bytes"))
		frames = append(frames, maskedFrame(opText, []byte(text+strings.Repeat(" ", n-len(text)))))
	default:
		n, text := 1, input
		if m := burst.FindStringSubmatch(input); m != nil {
			n, _ = strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
			text = m[2]
		}
		text = expandRuns(text)
		for range n {
			frames = append(frames, maskedFrame(opText, []byte(text)))
		}
	}
	if unread {
		// others reads nothing until every frame is out; you reads on
		// meanwhile, so that its own answers cannot hold it up. Others'
		// socket holds 64 KiB: a receive buffer left to grow may reach
		// tcp_rmem's maximum (32 MiB on some machines), which could hold
		// the whole burst, and the server's queue (sendQueueLen) would
		// then never overflow. With it, the server's send buffer (at most
		// tcp_wmem's 4 MiB), this socket and the queue hold less than the
		// burst's 8 MB.
		if tc, ok := others.Conn.(*net.TCPConn); ok {
			if err := tc.SetReadBuffer(64 << 10); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan string, 1)
		go func() {
			for _, f := range frames {
				if you.Write(f) != nil {
					break
				}
			}
			done <- "sent"
		}()
		seen := p.observe(you)
		<-done
		// How many arrive depends on the kernel's buffers: say whether all
		// did, not how many.
		got := p.observe(others)
		if m := burst.FindStringSubmatch(got); m != nil {
			if m[1] == strconv.Itoa(len(frames)) {
				got = "all of them, " + m[2]
			} else {
				got = "some of them, " + m[2]
			}
		}
		return "you: " + seen + "; others: " + got
	}
	for _, f := range frames {
		if err := you.Write(f); err != nil {
			break // closed already: what it said is read below
		}
	}
	return "you: " + p.observe(you) + "; others: " + p.observe(others)
}

// silent keeps a member quiet for N s (scaled), answering pings or not,
// and reports whether the server kept it.
func (p prober) silent(t *testing.T, input string, c *probeConn) string {
	var secs int
	answer := strings.HasPrefix(input, "silent ")
	fmt.Sscanf(input[strings.Index(input, " ")+1:], "%d", &secs)
	until := time.Now().Add(time.Duration(float64(secs) * float64(time.Second) * p.scale))
	for time.Now().Before(until) {
		c.SetReadDeadline(until)
		op, payload, err := c.next()
		switch {
		case err != nil && isTimeout(err):
			// the time is up with the connection open
		case err != nil:
			return "you: dropped"
		case op == opClose:
			return "you: close " + closeCodeText(payload)
		case op == opPing && answer:
			c.Write(maskedFrame(opPong, payload))
		}
	}
	return "you: still open"
}

// observe describes what c received: every frame until the connection
// closes or is quiet for p.quiet. Against roomchat it need not wait: it
// sends a WebSocket ping of its own, whose pong comes after every answer to
// what was sent before it, and stops there.
func (p prober) observe(c *probeConn) string {
	const mark = "side by side"
	marker := !p.external && c.Write(maskedFrame(opPing, []byte(mark))) == nil
	var got []string
	for {
		c.SetReadDeadline(time.Now().Add(p.quiet))
		if marker {
			c.SetReadDeadline(time.Now().Add(recvTimeout))
		}
		op, payload, err := c.next()
		switch {
		case err != nil && isTimeout(err):
			return describe(got, "")
		case err != nil:
			return describe(got, "dropped")
		case op == opClose:
			return describe(got, "close "+closeCodeText(payload))
		case op == opPing:
			c.Write(maskedFrame(opPong, payload))
		case op == opPong && string(payload) == mark:
			return describe(got, "")
		default:
			got = append(got, "`"+abbreviate(string(payload))+"`")
		}
	}
}

// describe joins the frames received, a run of the same frame written
// once with its count, and how the connection ended.
func describe(frames []string, end string) string {
	var parts []string
	for i := 0; i < len(frames); {
		j := i
		for j < len(frames) && frames[j] == frames[i] {
			j++
		}
		if j-i > 1 {
			parts = append(parts, strconv.Itoa(j-i)+" × "+frames[i])
		} else {
			parts = append(parts, frames[i])
		}
		i = j
	}
	if end != "" {
		parts = append(parts, end)
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// burst is the form N × TEXT.
var burst = regexp.MustCompile(`^([0-9,]+) × (.*)$`)

// abbreviate shortens a long frame to its start and its length.
func abbreviate(frame string) string {
	if len(frame) <= 1000 {
		return frame
	}
	return fmt.Sprintf("%s… (%d bytes)", frame[:60], len(frame))
}

// expandRuns writes out each ⟨x × N⟩ in text as N times x.
func expandRuns(text string) string {
	for {
		i := strings.Index(text, "⟨")
		j := strings.Index(text, "⟩")
		if i < 0 || j < i {
			return text
		}
		unit, count, _ := strings.Cut(text[i+len("⟨"):j], " × ")
		n, _ := strconv.Atoi(strings.ReplaceAll(count, ",", ""))
		text = text[:i] + strings.Repeat(unit, n) + text[j+len("⟩"):]
	}
}

// closeCodeText is a close frame's code, or "without a code".
func closeCodeText(payload []byte) string {
	if len(payload) < 2 {
		return "without a code"
	}
	return strconv.Itoa(int(binary.BigEndian.Uint16(payload)))
}

// probeConn is a client connection that reads any frame the server sends.
type probeConn struct {
	net.Conn
	r *bufio.Reader
}

// dial opens a WebSocket to path under p.base, with origin if not empty,
// and returns the handshake's status and, on 101, the connection.
func (p prober) dial(t *testing.T, path, origin string) (int, *probeConn) {
	t.Helper()
	u, err := neturl.Parse(p.base)
	if err != nil {
		t.Fatal(err)
	}
	full := strings.TrimSuffix(u.Path, "/") + path
	if strings.HasPrefix(path, "/ws/") {
		full = path // a path of its own, from the root
	}
	conn, err := net.DialTimeout("tcp", u.Host, recvTimeout)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(recvTimeout))
	req, _ := http.NewRequest("GET", "http://"+u.Host+full, nil)
	setUpgradeHeaders(req.Header)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		conn.Close()
		return 0, nil
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return resp.StatusCode, nil
	}
	conn.SetDeadline(time.Time{})
	return resp.StatusCode, &probeConn{Conn: conn, r: r}
}

// Write sends one frame, within recvTimeout.
func (c *probeConn) Write(b []byte) error {
	c.SetWriteDeadline(time.Now().Add(recvTimeout))
	_, err := c.Conn.Write(b)
	return err
}

// next reads one whole frame from the server.
func (c *probeConn) next() (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & lengthBits)
	var ext [8]byte
	switch n {
	case len16:
		_, err = io.ReadFull(c.r, ext[:2])
		n = uint64(binary.BigEndian.Uint16(ext[:2]))
	case len64:
		_, err = io.ReadFull(c.r, ext[:])
		n = binary.BigEndian.Uint64(ext[:])
	}
	if err != nil {
		return 0, nil, err
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.r, payload)
	return h[0] & opcodeBits, payload, err
}

// maskedFrame is one final frame as a client sends it.
func maskedFrame(opcode byte, payload []byte) []byte {
	return clientFrame(true, opcode, string(payload))
}
