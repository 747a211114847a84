package main

// This file reads the frames a client sends and checks each one as
// RFC 6455 says, at its header, before a byte of its payload is read: a
// frame refused for what it is (a bad header, a binary message, a message
// too big) costs the server nothing but its header. It also answers the
// control frames (client.control). x/net/websocket makes the handshake;
// after it, roomchat reads the socket itself, because x/net's reader sizes
// its buffer by the length a frame declares, hands fragments over one by
// one, and answers pings and close frames out of the server's sight.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"unicode/utf8"
)

// Close codes (RFC 6455, section 7.4.1) that docs/protocol.md uses.
const (
	closeNormal          = 1000
	closeGoingAway       = 1001
	closeProtocolError   = 1002
	closeUnsupportedData = 1003
	closeInvalidPayload  = 1007
	closePolicyViolation = 1008
	closeTooBig          = 1009
)

// firstChunk is how much of a data frame's payload is allocated before any
// of it is read. Past that, the buffer grows only as bytes arrive (it
// doubles, so a message is copied about twice at most): a header that
// declares 64 KiB and sends nothing more holds 512 bytes, not 64 KiB.
const firstChunk = 512

// frameHeader is what a frame says about itself before its payload.
type frameHeader struct {
	final  bool
	opcode byte
	length int // payload bytes, already checked against what may follow
	mask   [4]byte
}

// control reports whether the frame is a close, ping or pong.
func (h frameHeader) control() bool { return h.opcode&0x8 != 0 }

// A protocolError is a frame that breaks RFC 6455 or a limit of the
// protocol: the connection is closed with code, and reason says why.
type protocolError struct {
	code   int
	reason string
}

func (e *protocolError) Error() string { return e.reason }

// The frames a client may not send, each with the close code it earns.
var (
	errReservedBits   = &protocolError{closeProtocolError, "reserved bits set"}
	errReservedOpcode = &protocolError{closeProtocolError, "reserved opcode"}
	errUnmasked       = &protocolError{closeProtocolError, "client frame not masked"}
	errControlSplit   = &protocolError{closeProtocolError, "fragmented control frame"}
	errControlLong    = &protocolError{closeProtocolError, "control frame over 125 bytes"}
	errBadLength      = &protocolError{closeProtocolError, "invalid payload length"}
	errNothingToJoin  = &protocolError{closeProtocolError, "continuation frame with nothing to continue"}
	errUnfinished     = &protocolError{closeProtocolError, "new message before the last one ended"}
	errTooBig         = &protocolError{closeTooBig, "message over 65536 bytes"}
	errBadCloseFrame  = &protocolError{closeProtocolError, "invalid close frame"}
	errBadCloseReason = &protocolError{closeInvalidPayload, "close reason not UTF-8"}
)

// readHeader reads and checks one frame header. allowed is how many more
// payload bytes the message being put together may take; it bounds a data
// frame, so that one too long for the limit is refused here, unread.
func readHeader(r *bufio.Reader, allowed int) (frameHeader, error) {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return frameHeader{}, err
	}
	h := frameHeader{final: b[0]&finalBit != 0, opcode: b[0] & opcodeBits}
	n := uint64(b[1] & lengthBits)
	switch {
	case b[0]&rsvBits != 0: // no extension was negotiated
		return h, errReservedBits
	case h.opcode > opBinary && (h.opcode < opClose || h.opcode > opPong):
		return h, errReservedOpcode
	case b[1]&maskBit == 0:
		return h, errUnmasked
	case h.control() && !h.final:
		return h, errControlSplit
	case h.control() && n > maxShortLen:
		return h, errControlLong
	}
	var ext [8]byte
	switch n {
	case len16:
		if _, err := io.ReadFull(r, ext[:2]); err != nil {
			return h, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:2]))
	case len64:
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return h, err
		}
		if n = binary.BigEndian.Uint64(ext[:]); n>>63 != 0 {
			return h, errBadLength
		}
	}
	if !h.control() && n > uint64(allowed) {
		return h, errTooBig
	}
	h.length = int(n)
	_, err := io.ReadFull(r, h.mask[:])
	return h, err
}

// readPayload appends the frame's payload, unmasked, to dst. Memory is
// taken as the bytes come (see firstChunk), not as the header promised.
func readPayload(r *bufio.Reader, h frameHeader, dst []byte) ([]byte, error) {
	start, need := len(dst), h.length
	for need > 0 {
		step := min(need, max(firstChunk, len(dst)-start))
		at := len(dst)
		dst = slices.Grow(dst, step)[:at+step]
		if _, err := io.ReadFull(r, dst[at:]); err != nil {
			return dst[:at], err
		}
		need -= step
	}
	unmask(dst[start:], h.mask)
	return dst, nil
}

// unmask undoes the client's masking (RFC 6455, section 5.3).
func unmask(b []byte, mask [4]byte) {
	for i := range b {
		b[i] ^= mask[i&3]
	}
}

// checkClose validates a client's close frame payload: empty, or a code
// that may be sent on the wire followed by a UTF-8 reason.
func checkClose(payload []byte) error {
	switch {
	case len(payload) == 0:
		return nil
	case len(payload) == 1:
		return errBadCloseFrame
	}
	if !validCloseCode(int(binary.BigEndian.Uint16(payload))) {
		return errBadCloseFrame
	}
	if !utf8.Valid(payload[2:]) {
		return errBadCloseReason
	}
	return nil
}

// validCloseCode reports whether a peer may send code in a close frame:
// the codes RFC 6455 and the IANA registry define for the wire (1004,
// 1005, 1006 and 1015 are reserved for local use), and 3000 to 4999 for
// libraries and applications.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// closeCodeOf turns a read error into the close code and reason for it.
func closeCodeOf(err error) (code int, why string) {
	var pe *protocolError
	switch {
	case errors.As(err, &pe):
		return pe.code, pe.reason
	case isTimeout(err):
		return closeGoingAway, "no frame in time"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return closeNormal, "connection dropped"
	}
	return closeNormal, ioReason(err)
}

// ioReason says why a socket operation failed, without the addresses a
// *net.OpError names: a close frame's reason reaches the peer, and the
// server's own address behind a proxy is not its business.
func ioReason(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error() // "read: connection reset by peer"
	}
	return err.Error()
}

// isTimeout reports whether err is a passed deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// control reads and answers a ping, a pong or a close frame. It reports
// stop, with the close code and reason, when the connection is over.
func (c *client) control(h frameHeader) (code int, why string, stop bool) {
	payload, err := readPayload(c.in, h, nil)
	if err != nil {
		code, why = closeCodeOf(err)
		return code, why, true
	}
	switch h.opcode {
	case opPing:
		c.sendPong(newFrame(opPong, payload))
	case opClose:
		if err := checkClose(payload); err != nil {
			code, why = closeCodeOf(err)
			return code, why, true
		}
		return closeNormal, "client closed", true
	}
	// A pong needs no answer: like every frame, it renewed the deadline.
	return 0, "", false
}
