package main

// This file is the client's own ids for the frames it sends (cid,
// docs/protocol.md): what a valid one is, its decoding, and how one is
// read from a frame refused for its rate, without decoding the frame. What
// a cid is for, being echoed and making a message sent again a copy, is in
// messages.go, broker.go and history.go.

import (
	"bytes"
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

// peekCid returns the cid of the JSON object data as decode would read it
// (the last "cid" at its top level, escapes in its key and all), when it is
// valid, else "". It scans the object once and decodes nothing but escaped
// keys and the cid: a frame refused for its rate costs little.
func peekCid(data []byte) string {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return ""
	}
	var last []byte // the value of the last "cid"
	for i = skipSpace(data, i+1); i < len(data) && data[i] == '"'; {
		key, end := scanString(data, i)
		isCid := string(key) == "cid"
		if bytes.IndexByte(key, '\\') >= 0 { // such as \u0063id
			var k string
			isCid = json.Unmarshal(data[i:end], &k) == nil && k == "cid"
		}
		if i = skipSpace(data, end); i >= len(data) || data[i] != ':' {
			return ""
		}
		i = skipSpace(data, i+1)
		end = skipValue(data, i)
		if isCid {
			last = data[i:end]
		}
		if i = skipSpace(data, end); i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	var cid string
	if len(last) > 2+6*maxCidBytes || json.Unmarshal(last, &cid) != nil || !validCid(cid) { // \u-escaped at worst
		return ""
	}
	return cid
}

// The spaces of cids: each kind of sender has one of its own, which no
// other can name, so that no sender can make another's message a copy
// (TestCidSpaces). A member without a token is known by the name it gives.
const (
	memberCids    = "member:"
	subjectCids   = "token:"      // a token's subject
	tokenNameCids = "token name:" // a token without a subject, by its name
	apiCids       = "api:"
)

// cidKey is a post's key: the sender's space, who in it, and the cid, which
// holds no line break (validCid).
func cidKey(space, who, cid string) string { return space + who + "\n" + cid }
