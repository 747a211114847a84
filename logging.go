package main

// This file is the log's format: text lines by default, key=value as
// log/slog writes them, or JSON lines (-log json) for a log pipeline that
// parses them. Both carry the same fields; only their spelling differs.

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
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
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}
