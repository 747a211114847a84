package main

// This file speaks RESP3, the Redis wire protocol, as far as the Redis
// broker (redis.go) needs it: commands out as arrays of bulk strings, and
// replies in. It is small enough that a client library would be most of the
// code it brings.
//
// A command is "*<n>\r\n" then, for each argument, "$<len>\r\n<bytes>\r\n".
// A reply starts with a type byte: + simple string, - error, : integer,
// $ bulk string ($-1 is null), * array (*-1 is null), and, once HELLO 3 has
// chosen RESP3, > push (a pub/sub message, outside the replies' order), %
// map, ~ set, _ null, # boolean, , double, ( big number, = verbatim
// string, ! bulk error and | attribute; each line ends in \r\n.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits on one reply, all of it, so that a broken or hostile server (or
// anyone in the middle of a plain redis:// link) cannot make the parser
// allocate without end. Each length a reply claims is taken from its
// budget before anything is allocated for it.
const (
	maxReplyBytes    = 1 << 20 // bulk strings, all together: a published frame is at most maxMessageBytes, plus a little
	maxReplyElements = 1024    // array elements, all together: pub/sub replies have three
	maxReplyDepth    = 4       // arrays inside arrays
)

// replyBudget is what is left of one reply's limits.
type replyBudget struct {
	bytes, elements int
}

// redisError is an error reply: what Redis said, word for word, such as
// "WRONGPASS invalid username-password pair or user is disabled."
type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

// errProtocol is a reply that is not RESP.
var errProtocol = errors.New("redis: malformed reply")

// writeCommand appends one command to w; nothing is sent until w is
// flushed, so that many commands can go out in one write (pipelining). A
// failed write shows at the Flush: bufio.Writer keeps its first error.
func writeCommand(w *bufio.Writer, args ...[]byte) {
	w.WriteByte('*')
	w.WriteString(strconv.Itoa(len(args)))
	w.WriteString("\r\n")
	for _, a := range args {
		w.WriteByte('$')
		w.WriteString(strconv.Itoa(len(a)))
		w.WriteString("\r\n")
		w.Write(a)
		w.WriteString("\r\n")
	}
}

// push is a RESP3 push: what Redis sends a subscriber unasked, such as
// ["message", channel, payload], as opposed to the reply to a command.
type push []any

// readReply reads one reply. Its value is a string (simple string, double,
// big number), an int64 (integer), a bool, a []byte (bulk or verbatim
// string), a []any (array, set, or map as key, value, key, value ...), a
// push, or nil (null). An error reply comes back as a redisError, with no
// value; a reply that is not RESP as an error wrapping errProtocol.
func readReply(r *bufio.Reader) (any, error) {
	return readReplyWithin(r, maxReplyBytes, maxReplyElements)
}

// readReplyWithin is readReply for a reply that may be larger than most,
// within a budget of its own: a room's stream (redisstream.go).
func readReplyWithin(r *bufio.Reader, bytes, elements int) (any, error) {
	return readValue(r, 0, &replyBudget{bytes, elements})
}

// readValue reads one value of a reply, nested depth arrays deep, within
// what is left of its budget.
func readValue(r *bufio.Reader, depth int, budget *replyBudget) (any, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, fmt.Errorf("%w: empty line", errProtocol)
	}
	kind, rest := line[0], string(line[1:])
	switch kind {
	case '+', ',', '(':
		return rest, nil
	case '-':
		return nil, redisError(rest)
	case '_':
		return nil, nil
	case '#':
		return rest == "t", nil
	case ':':
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: integer %q", errProtocol, rest)
		}
		return n, nil
	case '$', '=', '!':
		b, err := readBulk(r, rest, budget)
		switch {
		case err != nil || b == nil:
			return nil, err
		case kind == '!':
			return nil, redisError(b)
		case kind == '=' && len(b) >= 4: // "txt:" or "mkd:", then the text
			return b[4:], nil
		}
		return b, nil
	case '*', '~', '>', '%', '|':
		n, err := length(rest, budget.elements)
		if kind == '%' || kind == '|' { // pairs
			n, err = length(rest, budget.elements/2)
			n *= 2
		}
		if err != nil || n < 0 {
			return nil, err
		}
		if depth >= maxReplyDepth {
			return nil, fmt.Errorf("%w: arrays nested too deep", errProtocol)
		}
		budget.elements -= n
		elems := make([]any, n)
		for i := range elems {
			if elems[i], err = readValue(r, depth+1, budget); err != nil {
				return nil, err
			}
		}
		switch kind {
		case '>':
			return push(elems), nil
		case '|': // an attribute describes the value after it, which is the reply
			return readValue(r, depth, budget)
		}
		return elems, nil
	}
	return nil, fmt.Errorf("%w: unknown type %q", errProtocol, kind)
}

// readBulk reads the bytes of a bulk string whose length line said n, or
// nil for the null bulk string ($-1).
func readBulk(r *bufio.Reader, n string, budget *replyBudget) ([]byte, error) {
	size, err := length(n, budget.bytes)
	if err != nil || size < 0 {
		return nil, err
	}
	budget.bytes -= size
	b := make([]byte, size+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	if b[size] != '\r' || b[size+1] != '\n' {
		return nil, fmt.Errorf("%w: bulk string not ended by CRLF", errProtocol)
	}
	return b[:size], nil
}

// readLine reads one line without its CRLF.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: line too long", errProtocol)
	}
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line not ended by CRLF", errProtocol)
	}
	return line[:len(line)-2], nil
}

// length parses the length of a bulk string or an array: -1 (null) up to
// max, what is left of the reply's budget.
func length(s string, max int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < -1 || n > max {
		return 0, fmt.Errorf("%w: length %q", errProtocol, s)
	}
	return n, nil
}
