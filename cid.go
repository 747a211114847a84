package main

// This file is the client's own ids for the frames it sends (cid,
// docs/protocol.md): what a valid one is, its decoding, and how one is
// read from a frame refused for its rate, without decoding the frame. What
// a cid is for, being echoed and making a message sent again a copy, is in
// messages.go, broker.go and history.go.

import (
	"encoding/json"
	"fmt"
)

// decodeCid validates a frame's cid, a client's own id for it (1 to 64
// printable ASCII characters), into dst; it is left "" when invalid.
func decodeCid(raw json.RawMessage, dst *string) []fieldError {
	var cid string
	loc := []string{"cid"}
	switch {
	case !isJSONString(raw) || json.Unmarshal(raw, &cid) != nil:
		return oneError(errStringType, loc, "Input should be a valid string")
	case cid == "":
		return oneError(errStringTooShort, loc, "String should have at least 1 character")
	case len(cid) > maxCidBytes:
		return oneError(errStringTooLong, loc, fmt.Sprintf("String should have at most %d characters", maxCidBytes))
	case !validCid(cid):
		return oneError(errStringPattern, loc, "String should match pattern '^[ -~]+$'")
	}
	*dst = cid
	return nil
}

// validCid reports whether cid is 1 to maxCidBytes printable ASCII
// characters.
func validCid(cid string) bool {
	if cid == "" || len(cid) > maxCidBytes {
		return false
	}
	for i := range len(cid) {
		if cid[i] < ' ' || cid[i] > '~' {
			return false
		}
	}
	return true
}

// peekCid returns the string value of the "cid" key at the top level of
// the JSON object data, when it is a valid cid, else "". It reads each byte
// at most once, and decodes nothing but the cid.
func peekCid(data []byte) string {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return ""
	}
	for i = skipSpace(data, i+1); i < len(data) && data[i] == '"'; {
		key, end := scanString(data, i)
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return ""
		}
		i = skipSpace(data, i+1)
		if string(key) == "cid" {
			var cid string
			if raw, end := scanString(data, i); raw != nil && len(raw) <= 6*maxCidBytes { // a cid, \u-escaped at worst
				_ = json.Unmarshal(data[i:end], &cid) // a short string: cheap
			}
			if validCid(cid) {
				return cid
			}
			return ""
		}
		if i = skipSpace(data, skipValue(data, i)); i >= len(data) || data[i] != ',' {
			return ""
		}
		i = skipSpace(data, i+1)
	}
	return ""
}
