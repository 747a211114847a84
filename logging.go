package main

// This file is the log's format: text lines by default, key=value as
// log/slog writes them, or JSON lines (-log json) for a log pipeline that
// parses them. Both carry the same fields; only their spelling differs.
// Neither writes a client's invisible or reordering characters raw (a
// U+202E in an Origin header or a token's name would make a line read as
// something else on a terminal): text quotes them, JSON escapes them.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The log formats -log accepts.
const (
	logText = "text"
	logJSON = "json"
)

// logFormatFlag defines -log and returns where its value goes. A value
// other than text or json is refused when the flags are parsed, with the
// usage, as any bad flag is.
func logFormatFlag() *string {
	format := logText
	flag.Func("log", "log `format`: text (key=value lines) or json (one JSON object a line)", func(s string) error {
		if s != logText && s != logJSON {
			return fmt.Errorf("want %s or %s", logText, logJSON)
		}
		format = s
		return nil
	})
	return &format
}

// logHandler returns the log/slog handler for format, writing to w.
// slog's JSON handler writes a duration as nanoseconds, where the text
// handler writes 1.5s: the fields are the same, and a JSON reader gets a
// number.
func logHandler(format string, w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	if format == logJSON {
		return slog.NewJSONHandler(escapingWriter{w}, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// escapingWriter writes slog's JSON lines with every character that is
// not printable (unicode.IsPrint: format controls such as U+202E and
// U+2066, DEL and C1 controls, separators other than space) as a \u
// escape, as the text handler's quoting does; slog's JSON writes them raw.
// Outside ASCII, JSON has such characters in strings only, and an escape
// is the same string to a JSON reader. slog writes a record in one Write.
type escapingWriter struct{ w io.Writer }

// Write writes p with its unprintable characters escaped.
func (e escapingWriter) Write(p []byte) (int, error) {
	if !slices.ContainsFunc(p, func(b byte) bool { return b >= utf8.RuneSelf-1 }) {
		return e.w.Write(p) // ASCII without DEL: the usual line, as it is
	}
	out := make([]byte, 0, len(p)+32)
	for rest := p; len(rest) > 0; {
		r, size := utf8.DecodeRune(rest)
		if r >= utf8.RuneSelf-1 && !unicode.IsPrint(r) && size > 0 && !(r == utf8.RuneError && size == 1) {
			for _, u := range utf16.AppendRune(nil, r) {
				out = fmt.Appendf(out, `\u%04x`, u)
			}
		} else {
			out = append(out, rest[:size]...)
		}
		rest = rest[size:]
	}
	if _, err := e.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// logConnect says who connected to which room.
func logConnect(c *client) {
	c.hub.log.Info("connected", "conn", c.id, "room", c.room.name, "remote", c.addr)
}

// logDisconnect says how the connection ended, and flags a slow client.
func logDisconnect(c *client, start time.Time) {
	c.mu.Lock()
	code, why := c.closeCode, c.closeWhy
	c.mu.Unlock()
	c.hub.stats.closed(code)
	c.hub.log.Info("disconnected", "conn", c.id, "room", c.room.name, "remote", c.addr,
		"code", code, "reason", why, "duration", time.Since(start).Round(time.Millisecond))
}

// logFrameIn logs a message from c, at debug level (-v).
func logFrameIn(c *client, data []byte) {
	if c.hub.log.Enabled(context.Background(), slog.LevelDebug) {
		c.hub.log.Debug("frame in", "conn", c.id, "data", string(data))
	}
}

// logFramesOut logs a batch of frames to c, at debug level (-v).
func logFramesOut(c *client, batch [][]byte) {
	if c.hub.log.Enabled(context.Background(), slog.LevelDebug) {
		for _, wire := range batch {
			c.hub.log.Debug("frame out", "conn", c.id, "opcode", wire[0]&opcodeBits, "data", string(payloadOf(wire)))
		}
	}
}
