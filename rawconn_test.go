package main

// rawConn speaks WebSocket byte by byte, for the frames x/net/websocket
// will not send or will not show: fragments, bad headers, control frames.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"testing"
	"time"
)

// rawConn is a WebSocket client written by hand, for frames that
// x/net/websocket cannot send, such as fragments.
type rawConn struct {
	net.Conn
	r   *bufio.Reader
	hdr [10]byte // the header being read, kept here so reading allocates nothing
}

func dialRaw(t testing.TB, url string) *rawConn {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	setUpgradeHeaders(req.Header)
	var handshake bytes.Buffer
	if err := req.Write(&handshake); err != nil {
		t.Fatal(err)
	}
	return dialRawBytes(t, url, handshake.Bytes())
}

// dialRawBytes connects to the host of url, writes the handshake request
// (and whatever follows it) in one write, and reads the 101 response.
func dialRawBytes(t testing.TB, url string, handshake []byte) *rawConn {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(recvTimeout))
	if _, err := conn.Write(handshake); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return &rawConn{Conn: conn, r: r}
}

// clientFrame builds one masked frame, as a client must send it.
func clientFrame(fin bool, opcode byte, payload string) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	frame := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	case n < 1<<16:
		frame = append(frame, 0x80|126, byte(n>>8), byte(n))
	default:
		frame = binary.BigEndian.AppendUint64(append(frame, 0x80|127), uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	frame = append(frame, mask[:]...)
	for i := range len(payload) {
		frame = append(frame, payload[i]^mask[i%4])
	}
	return frame
}

// writeFrame writes one masked frame.
func (c *rawConn) writeFrame(t testing.TB, fin bool, opcode byte, payload string) {
	t.Helper()
	if _, err := c.Write(clientFrame(fin, opcode, payload)); err != nil {
		t.Fatal(err)
	}
}

// nextHeader reads the header of the next (unmasked) server frame and
// returns its opcode and payload length. It allocates nothing.
func (c *rawConn) nextHeader() (opcode byte, n uint64, err error) {
	hdr := c.hdr[:]
	if _, err := io.ReadFull(c.r, hdr[:2]); err != nil {
		return 0, 0, err
	}
	switch n = uint64(hdr[1] & 0x7f); n {
	case 126:
		_, err = io.ReadFull(c.r, hdr[2:4])
		n = uint64(binary.BigEndian.Uint16(hdr[2:4]))
	case 127:
		_, err = io.ReadFull(c.r, hdr[2:10])
		n = binary.BigEndian.Uint64(hdr[2:10])
	}
	return hdr[0] & 0x0f, n, err
}

// readFrame reads one server frame.
func (c *rawConn) readFrame(t testing.TB) (opcode byte, payload []byte) {
	t.Helper()
	opcode, n, err := c.nextHeader()
	if err != nil {
		t.Fatal(err)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		t.Fatal(err)
	}
	return opcode, payload
}
