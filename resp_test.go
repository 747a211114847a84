package main

// RESP, the Redis protocol, read by resp.go: every kind of reply, and
// whatever bytes a hostile Redis may send.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// TestReadReply reads each kind of RESP reply.
func TestReadReply(t *testing.T) {
	tests := []struct {
		name, in string
		want     any
		err      string
	}{
		{"simple string", "+PONG\r\n", "PONG", ""},
		{"integer", ":42\r\n", int64(42), ""},
		{"bulk string", "$5\r\nhe\r\no\r\n", []byte("he\r\no"), ""},
		{"empty bulk string", "$0\r\n\r\n", []byte{}, ""},
		{"null bulk string", "$-1\r\n", nil, ""},
		{"array", "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n:1\r\n", []any{[]byte("message"), []byte("ch"), int64(1)}, ""},
		{"null array", "*-1\r\n", nil, ""},
		{"error", "-WRONGPASS invalid username-password pair\r\n", nil, "redis: WRONGPASS invalid username-password pair"},
		{"unknown type", "?x\r\n", nil, "unknown type"},
		{"no CR", "+OK\n", nil, "not ended by CRLF"},
		{"bulk too long", "$2000000\r\n", nil, "length"},
		{"bulk shorter than it says", "$5\r\nab\r\n", nil, "EOF"},
		{"bulk without its CRLF", "$2\r\nabcd", nil, "not ended by CRLF"},
		{"negative length", "$-2\r\n", nil, "length"},
		{"bad integer", ":4x\r\n", nil, "integer"},
		{"nested too deep", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", nil, "nested too deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, %v; want an error saying %q", got, err, tt.err)
				}
				return
			}
			if err != nil || fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tt.want) {
				t.Fatalf("got %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
}

// FuzzReadReply feeds the RESP parser anything: it must return a value or
// an error of a known kind, never panic or hang, and a value it returns,
// encoded again, must read back as the same value.
func FuzzReadReply(f *testing.F) {
	for _, seed := range []string{
		"+OK\r\n", "-ERR x\r\n", ":-1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*-1\r\n",
		"*3\r\n$7\r\nmessage\r\n$14\r\nroomchat:room:a\r\n$5\r\nid {}\r\n",
		"*2\r\n$4\r\npong\r\n$0\r\n\r\n", "*1\r\n*1\r\n*1\r\n:1\r\n", "$99999999999\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		v, err := readReply(r)
		if err != nil {
			var re redisError
			if !errors.As(err, &re) && !errors.Is(err, errProtocol) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected kind of error %v for %q", err, data)
			}
			return
		}
		again, err := readReply(bufio.NewReader(bytes.NewReader(encodeReply(v))))
		if err != nil || fmt.Sprintf("%#v", again) != fmt.Sprintf("%#v", v) {
			t.Fatalf("read %q as %#v, which reads back as %#v, %v", data, v, again, err)
		}
	})
}

// encodeReply writes a value back as RESP, for the fuzzer's round trip.
func encodeReply(v any) []byte {
	switch v := v.(type) {
	case string:
		return []byte("+" + v + "\r\n")
	case int64:
		return []byte(":" + strconv.FormatInt(v, 10) + "\r\n")
	case []byte:
		return append(append([]byte("$"+strconv.Itoa(len(v))+"\r\n"), v...), "\r\n"...)
	case []any:
		out := []byte("*" + strconv.Itoa(len(v)) + "\r\n")
		for _, e := range v {
			out = append(out, encodeReply(e)...)
		}
		return out
	}
	return []byte("$-1\r\n") // null
}
