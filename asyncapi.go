package main

// This file serves the API's own description: static/asyncapi.json, a
// hand-written AsyncAPI 3.0 document, at Chanx's path, with its server entry
// pointed at the host the reader actually reached.

import (
	"bytes"
	"cmp"
	"encoding/json"
	"io/fs"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// schemaPath is the AsyncAPI document inside the embedded files.
const schemaPath = "static/asyncapi.json"

// topLevelOrder is the order the AsyncAPI 3.0 specification lists a
// document's fields in, kept when the served copy is re-encoded.
var topLevelOrder = []string{"asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations", "components"}

// serveSchema answers GET /asyncapi/schema/ with the document, its servers
// rewritten to the host of this request (ws, or wss over TLS, or behind a
// trusted proxy that says https: requestScheme), as Chanx does, so a client
// generator pointed at a deployed server targets it.
func serveSchema(proxies []netip.Prefix) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		protocol := "ws"
		if requestScheme(r, proxies) == "https" {
			protocol = "wss"
		}
		doc, err := schemaFor(r.Host, protocol)
		if err != nil {
			http.Error(w, "AsyncAPI document unavailable: "+err.Error(), http.StatusInternalServerError)
			return
		}
		writeBody(w, "application/json", doc)
	}
}

// schemaFor returns the embedded document with every server's host and
// protocol set to the given ones, indented, its fields in their usual order.
func schemaFor(host, protocol string) ([]byte, error) {
	raw, err := fs.ReadFile(static, schemaPath)
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	var servers map[string]map[string]any
	if err := json.Unmarshal(doc["servers"], &servers); err != nil {
		return nil, err
	}
	for _, s := range servers {
		s["host"], s["protocol"] = host, protocol
	}
	if doc["servers"], err = json.Marshal(servers); err != nil {
		return nil, err
	}

	// Write the fields back in the specification's order, then any others.
	var out bytes.Buffer
	out.WriteByte('{')
	keys := slices.SortedFunc(maps.Keys(doc), func(a, b string) int {
		return cmp.Or(cmp.Compare(specRank(a), specRank(b)), strings.Compare(a, b))
	})
	for i, k := range keys {
		if i > 0 {
			out.WriteByte(',')
		}
		name, _ := json.Marshal(k)
		out.Write(name)
		out.WriteByte(':')
		out.Write(doc[k])
	}
	out.WriteByte('}')
	var indented bytes.Buffer
	if err := json.Indent(&indented, out.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	indented.WriteByte('\n')
	return indented.Bytes(), nil
}

// specRank is a field's place in topLevelOrder; unknown fields go last.
func specRank(key string) int {
	if i := slices.Index(topLevelOrder, key); i >= 0 {
		return i
	}
	return len(topLevelOrder)
}
