package main

// This file reads the top level of a JSON object without decoding it: where
// each field's value lies in the object's bytes. decode (messages.go) takes
// a frame's fields so, and its payload's, as sub-slices of the frame,
// copied only when a field is a string it keeps; peekCid (cid.go) finds a
// refused frame's cid so, without decoding the frame at all.

import (
	"bytes"
	"encoding/json"
)

// objectFields returns the fields of the JSON object data, which must be
// valid JSON (json.Valid), as sub-slices of data, by key; ok is false when
// data is not an object. A key given twice counts as its last value, as in
// encoding/json and in Python's json.
func objectFields(data []byte) (fields map[string]json.RawMessage, ok bool) {
	fields = map[string]json.RawMessage{}
	if !eachField(data, func(key string, value json.RawMessage) { fields[key] = value }) {
		return nil, false
	}
	return fields, true
}

// eachField calls f with each field of the JSON object data, which must be
// valid JSON (json.Valid), in order: its key, decoded, and its value as a
// sub-slice of data. It reports false when data is not an object.
func eachField(data []byte, f func(key string, value json.RawMessage)) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	for i = skipSpace(data, i+1); i < len(data) && data[i] == '"'; {
		raw, end := scanString(data, i)
		key := string(raw)
		if bytes.IndexByte(raw, '\\') >= 0 { // escapes, such as \u0061ction
			if json.Unmarshal(data[i:end], &key) != nil {
				return false
			}
		}
		i = skipSpace(data, skipSpace(data, end)+1) // past the colon
		end = skipValue(data, i)
		f(key, json.RawMessage(bytes.TrimRight(data[i:end], " \t\r\n"))) // a number runs to the comma
		if i = skipSpace(data, end); i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return true
}

// scanString returns the raw bytes of the JSON string that starts at
// data[i] (a quote), and the index after it.
func scanString(data []byte, i int) (raw []byte, end int) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return data[i+1 : j], j + 1
		}
	}
	return nil, len(data)
}

// skipValue returns the index after the JSON value that starts at data[i].
func skipValue(data []byte, i int) int {
	if i < len(data) && data[i] == '"' {
		_, end := scanString(data, i)
		return end
	}
	depth := 0
	for ; i < len(data); i++ {
		switch data[i] {
		case '"':
			_, end := scanString(data, i)
			i = end - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}
