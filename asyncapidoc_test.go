package main

// Reading static/asyncapi.json for the tests: following $refs, finding a
// message's examples and an operation's actions, and checking a value
// against the parts of JSON Schema the document uses.

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// apiDoc is the AsyncAPI document as generic JSON, with a resolver for its
// local $refs.
type apiDoc map[string]any

func loadAPIDoc(t *testing.T) apiDoc {
	t.Helper()
	raw, err := static.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc apiDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s is not JSON: %v", schemaPath, err)
	}
	return doc
}

// at walks a path of keys from the top of the document.
func (d apiDoc) at(keys ...string) any { return d.get(map[string]any(d), keys...) }

// get walks a path of keys from v, following $refs on the way.
func (d apiDoc) get(v any, keys ...string) any {
	v = d.resolve(v)
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = d.resolve(m[k])
	}
	return v
}

func (d apiDoc) resolve(v any) any {
	for {
		m, ok := v.(map[string]any)
		ref, isRef := m["$ref"].(string)
		if !ok || !isRef {
			return v
		}
		v = map[string]any(d)
		for _, k := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			v = v.(map[string]any)[k]
		}
	}
}

// apiMessage is a message of the document, as the tests need it.
type apiMessage struct {
	action   string           // the "action" const of its payload
	schema   any              // its payload's schema
	examples []map[string]any // its examples
	causedBy map[string]any   // x-caused-by: example name -> frame that causes it
}

// example returns the example called name, or nil.
func (m apiMessage) example(name string) map[string]any {
	for _, ex := range m.examples {
		if ex["name"] == name {
			return ex
		}
	}
	return nil
}

func (d apiDoc) message(v any) apiMessage {
	m := d.get(v).(map[string]any)
	msg := apiMessage{action: d.get(m, "payload", "properties", "action", "const").(string), schema: m["payload"]}
	for _, ex := range m["examples"].([]any) {
		msg.examples = append(msg.examples, ex.(map[string]any))
	}
	msg.causedBy, _ = m["x-caused-by"].(map[string]any)
	return msg
}

// operations returns the document's operations by id.
func (d apiDoc) operations() map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, op := range d["operations"].(map[string]any) {
		out[id] = op.(map[string]any)
	}
	return out
}

// actionsOf lists the actions of an operation's (or reply's) messages.
func (d apiDoc) actionsOf(op map[string]any) []string {
	var out []string
	for _, m := range op["messages"].([]any) {
		out = append(out, d.message(m).action)
	}
	return out
}

// compact encodes a JSON value taken from the document as a frame.
func compact(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// check validates v against the parts of JSON Schema the document uses:
// type, properties, required, const, enum, items, minItems, minLength,
// maxLength (in characters) and pattern.
func (d apiDoc) check(schema, v any, path string) error {
	sc, _ := d.resolve(schema).(map[string]any)
	if c, ok := sc["const"]; ok && !reflect.DeepEqual(c, v) {
		return fmt.Errorf("%s is %v, want %v", path, v, c)
	}
	if enum, ok := sc["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s is %v, not one of %v", path, v, enum)
	}
	switch sc["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not an object", path)
		}
		props, _ := sc["properties"].(map[string]any)
		required, _ := sc["required"].([]any)
		for _, k := range required {
			if _, ok := obj[k.(string)]; !ok {
				return fmt.Errorf("%s has no %s", path, k)
			}
		}
		for k, val := range obj {
			p, ok := props[k]
			if !ok {
				return fmt.Errorf("%s has %s, which the document does not know", path, k)
			}
			if err := d.check(p, val, path+"."+k); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s is not an array", path)
		}
		if least, ok := sc["minItems"].(float64); ok && len(arr) < int(least) {
			return fmt.Errorf("%s has %d items, fewer than %g", path, len(arr), least)
		}
		for i, item := range arr {
			if err := d.check(sc["items"], item, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s is not a string", path)
		}
		n := float64(utf8.RuneCountInString(str))
		if least, ok := sc["minLength"].(float64); ok && n < least {
			return fmt.Errorf("%s is %q, shorter than %g characters", path, str, least)
		}
		if most, ok := sc["maxLength"].(float64); ok && n > most {
			return fmt.Errorf("%s is %q, longer than %g characters", path, str, most)
		}
		if p, ok := sc["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s is %q, which does not match %s", path, str, p)
		}
	case "null":
		if v != nil {
			return fmt.Errorf("%s is %v, not null", path, v)
		}
	}
	return nil
}
