package main

// This file checks fields and words errors as pydantic does, because Chanx
// sends pydantic's errors and its clients show, or branch on, what they
// say: the checks of an object's string fields, the quoting of a tag that
// is not a string (Python's str()), the position of a JSON syntax error,
// the names of the models. messages.go decides what a frame must hold; this
// file checks it field by field, and spells what is wrong.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// envelopeModel is the name pydantic gives a frame's model in a model_type
// error for a frame that is not an object, as later Chanx versions answer
// (Chanx 2.0.1 closes with 1011 instead).
const envelopeModel = "Envelope"

// notADict is pydantic's message for a value that should be model's object.
func notADict(model string) string {
	return "Input should be a valid dictionary or instance of " + model
}

// pythonStr writes a JSON value the way Python's str() writes what
// Python's json module decodes it to, as pydantic quotes a tag: a string
// as it is, null as None, true as True, 5 as 5 and 1e3 as 1000.0.
func pythonStr(raw json.RawMessage) string {
	var s string
	if isJSONString(raw) && json.Unmarshal(raw, &s) == nil { // a tag is a string, but for a mistake
		return s
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return string(raw)
	}
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return "None"
	case bool:
		return map[bool]string{true: "True", false: "False"}[v]
	case json.Number:
		if i, err := strconv.ParseInt(v.String(), 10, 64); err == nil {
			return strconv.FormatInt(i, 10) // -0 is 0, as a Python int
		}
		if !strings.ContainsAny(v.String(), ".eE") {
			return strings.TrimPrefix(v.String(), "+") // an int too large for int64
		}
		return pythonFloat(v.String())
	}
	return string(raw)
}

// pythonFloat is Python's repr of a float: the shortest digits that read
// back the same, in fixed notation with at least one decimal between 1e-4
// and 1e16, in exponent notation outside.
func pythonFloat(num string) string {
	f, err := strconv.ParseFloat(num, 64)
	switch {
	case err != nil && math.IsInf(f, 0): // 1e400: Python reads inf
		return map[bool]string{true: "inf", false: "-inf"}[f > 0]
	case err != nil:
		return num
	}
	exp := 0
	if f != 0 {
		exp = int(math.Floor(math.Log10(math.Abs(f))))
	}
	if exp < -4 || exp >= 16 {
		return strconv.FormatFloat(f, 'e', -1, 64)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// expectedTags lists the known actions the way pydantic quotes them: those
// of every connection (false), and with the opt-in ones (true).
var expectedTags = map[bool]string{false: quoteTags(false), true: quoteTags(true)}

// quoteTags lists the actions, sorted and quoted, with the opt-in ones or
// without.
func quoteTags(optIn bool) string {
	var tags []string
	for _, name := range slices.Sorted(maps.Keys(actions)) {
		if optIn || !actions[name].optIn {
			tags = append(tags, name)
		}
	}
	return "'" + strings.Join(tags, "', '") + "'"
}

// isJSONString, isJSONObject and isJSONArray look at the first byte of a
// value that encoding/json has already checked; json.RawMessage holds no
// leading space.
func isJSONString(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '"' }
func isJSONObject(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '{' }
func isJSONArray(raw json.RawMessage) bool  { return len(raw) > 0 && raw[0] == '[' }

// describeSyntaxError words a JSON syntax error with a line and column, as
// pydantic's "Invalid JSON: expected value at line 1 column 1" does.
func describeSyntaxError(data []byte, err *json.SyntaxError) string {
	before := data[:min(int(err.Offset), len(data))]
	line := bytes.Count(before, []byte("\n")) + 1
	column := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
	if column == 0 {
		column = 1
	}
	return fmt.Sprintf("%s at line %d column %d", err.Error(), line, column)
}

// decodeObject validates a required payload that must be a JSON object, and
// returns its fields by key, for decodeString to check one by one. model is
// the payload's name in Chanx, which pydantic's message names.
func decodeObject(payload json.RawMessage, loc []string, model string) (map[string]json.RawMessage, []fieldError) {
	if payload == nil {
		return nil, oneError(errMissing, loc, "Field required")
	}
	fields, ok := objectFields(payload)
	if !ok {
		return nil, oneError(errModelType, loc, notADict(model))
	}
	return fields, nil
}

// decodeString validates one required string field of an object, appending
// at most one error for it.
func decodeString(errs []fieldError, fields map[string]json.RawMessage, parent []string, key string, maxChars int, dst *string) []fieldError {
	loc := append(slices.Clip(parent), key)
	raw, ok := fields[key]
	switch {
	case !ok:
		return append(errs, fieldError{errMissing, loc, "Field required"})
	case !isJSONString(raw) || json.Unmarshal(raw, dst) != nil:
		return append(errs, fieldError{errStringType, loc, "Input should be a valid string"})
	case utf8.RuneCountInString(*dst) > maxChars:
		return append(errs, fieldError{errStringTooLong, loc, fmt.Sprintf("String should have at most %d characters", maxChars)})
	}
	return errs
}

// decodeNoPayload validates an action that carries nothing: the payload may
// be absent or null, as pydantic's None allows.
func decodeNoPayload(name string) func(json.RawMessage, sender) (any, []fieldError) {
	return func(payload json.RawMessage, _ sender) (any, []fieldError) {
		if payload != nil && string(payload) != "null" {
			return nil, oneError(errNoneRequired, []string{name, "payload"}, "Input should be None")
		}
		return nil, nil
	}
}

// oneError is the common case of an error list with a single entry.
func oneError(typ string, loc []string, msg string) []fieldError {
	if loc == nil {
		loc = []string{} // [] in JSON, never null
	}
	return []fieldError{{Type: typ, Loc: loc, Msg: msg}}
}
