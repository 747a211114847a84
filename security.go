package main

// This file is the server's defences on the browser's side: what every
// HTTP response carries, which Host names the server answers to, and which
// pages may open a WebSocket (Origin). The pages load nothing but their own
// files, so the Content-Security-Policy can be strict: no inline script or
// style, no other host, no framing.

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// securityHeaders go on every response. connect-src 'self' lets a page
// open a WebSocket to the host it came from (ws: and wss: included) and
// nowhere else.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"X-Frame-Options":        "DENY", // frame-ancestors, for browsers that predate it
	"Referrer-Policy":        "no-referrer",
}

// protect wraps the server's routes: it refuses a request whose Host the
// server should not answer (hostAllowed), counted in s, and sets
// securityHeaders.
func protect(next http.Handler, listenAddr string, extraHosts []string, s *stats) http.Handler {
	loopback := listensOnLoopback(listenAddr)
	allowed := map[string]bool{}
	for _, h := range extraHosts {
		allowed[strings.ToLower(h)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		if loopback && !hostAllowed(r.Host, allowed) {
			s.refuse(refusedHost)
			http.Error(w, "this server answers to localhost only; start it with -hosts to allow another name", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostAllowed is the defence against DNS rebinding for a server on
// loopback: a page on evil.example whose name is made to resolve to
// 127.0.0.1 reaches this server from the visitor's browser, with Host and
// Origin both evil.example, so the origin check alone lets it in. A server
// listening on loopback answers only loopback names, and those listed with
// -hosts.
func hostAllowed(hostport string, allowed map[string]bool) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || allowed[host] || allowed[strings.ToLower(hostport)] {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listensOnLoopback reports whether addr, as given to -addr, is a loopback
// address or name: only such a server needs the Host check, since one on a
// public address is reached by whatever names point at it.
func listensOnLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return hostAllowed(host, nil)
}

// noListing serves files but answers 404 for a directory, so that
// /static/ does not list what is in it.
func noListing(files http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// originAllowed is the defence against cross-site WebSocket hijacking: a
// page on another site must not open a socket with this site's cookies.
// An origin is this site's when it has the request's own scheme (scheme:
// requestScheme) and Host, so that a page on http://chat.example.com is not
// taken for one of the https site; or when -origins lists it. Browsers
// always send Origin; a request without one is not from a page and is
// allowed. x/net/websocket's default check accepts any parseable Origin,
// so it is no defence, which is why the server brings its own.
func originAllowed(r *http.Request, allowed map[string]bool, scheme string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if allowed[normalizeOrigin(origin)] {
		return true
	}
	u, err := url.Parse(origin)
	// "null" (sandboxed pages, files) has no host, "//host" no scheme.
	// A path is ignored: a browser sends none, and some WebSocket
	// libraries send the page's URL.
	if err != nil || u.Scheme != scheme || u.Host == "" {
		return false
	}
	return strings.EqualFold(withoutDefaultPort(u.Host, scheme), withoutDefaultPort(r.Host, scheme))
}

// withoutDefaultPort drops :80 from an http host, :443 from an https one:
// http://example.com and Host example.com:80 are the same origin.
func withoutDefaultPort(host, scheme string) string {
	if scheme == "http" {
		return strings.TrimSuffix(host, ":80")
	}
	return strings.TrimSuffix(host, ":443")
}

// requestScheme is the scheme the client used to reach the server: https
// over TLS, or when a trusted proxy (-trust-proxy) says so in Forwarded's
// proto= or X-Forwarded-Proto (the nearest proxy's word, its last value);
// else http. From anyone else those headers are ignored.
func requestScheme(r *http.Request, proxies []netip.Prefix) string {
	if r.TLS != nil {
		return "https"
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !inPrefixes(ap.Addr().Unmap(), proxies) {
		return "http"
	}
	var proto string
	for _, line := range r.Header.Values("Forwarded") {
		for elem := range strings.SplitSeq(line, ",") {
			for pair := range strings.SplitSeq(elem, ";") {
				if k, v, _ := strings.Cut(strings.TrimSpace(pair), "="); strings.EqualFold(k, "proto") {
					proto = strings.Trim(v, `"`)
				}
			}
		}
	}
	if proto == "" {
		for _, line := range r.Header.Values("X-Forwarded-Proto") {
			for p := range strings.SplitSeq(line, ",") {
				proto = strings.TrimSpace(p)
			}
		}
	}
	if strings.EqualFold(proto, "https") {
		return "https"
	}
	return "http"
}

// refuseForeignOrigin answers a handshake from a page on another site with
// 403, and a body that says what was seen and what would let it in.
func refuseForeignOrigin(w http.ResponseWriter, r *http.Request, scheme string) {
	http.Error(w, fmt.Sprintf("a page from origin %s may not open a WebSocket here: only pages of %s://%s (this request's own scheme and Host) may, "+
		"and the origins the server lists with its -origins flag", strconv.Quote(clip(r.Header.Get("Origin"), 200)), scheme, r.Host), http.StatusForbidden)
}

// normalizeOrigin makes "HTTPS://Chat.Example.com/" and
// "https://chat.example.com" the same entry.
func normalizeOrigin(o string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
}

// splitList turns "a, b,,c" into [a b c].
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// browsableHost turns a listening address into one a browser can open:
// ":8000" and "0.0.0.0:8000" listen everywhere, and localhost reaches them;
// "localhost:8000" listens on 127.0.0.1, and reads better as it was given.
func browsableHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && (ip.IsUnspecified() || ip.IsLoopback())) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
