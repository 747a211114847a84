package main

// This file is how a WebSocket handshake carries a token (token.go checks
// it): in `Authorization: Bearer` from a program, and from a browser, which
// cannot set that header, as the second of two subprotocols it offers,
// ["roomchat.token", token]; and what the server answers when it is
// missing or wrong. That header is never logged, never sent to another
// site as a Referer, and never kept in the browser's history, as a URL
// would be.

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// tokenFromRequest finds the token a WebSocket handshake brings: in
// `Authorization: Bearer <token>`, or as the subprotocol that follows
// roomchat.token in Sec-WebSocket-Protocol. A token in both places, or an
// Authorization of another kind, is refused rather than one of them chosen.
// The error never holds the header's value, which may be a password.
func tokenFromRequest(r *http.Request) (string, error) {
	var bearer string
	switch auth := r.Header.Values("Authorization"); len(auth) {
	case 0:
	case 1:
		scheme, rest, _ := strings.Cut(auth[0], " ")
		if !strings.EqualFold(scheme, "Bearer") { // RFC 9110 §11.1: schemes ignore case
			return "", fmt.Errorf("%w: Authorization is not Bearer", errTokenMalformed)
		}
		if bearer = strings.TrimLeft(rest, " "); bearer == "" {
			return "", fmt.Errorf("%w: Authorization: Bearer without a token", errTokenMalformed)
		}
	default:
		return "", fmt.Errorf("%w: %d Authorization headers", errTokenMalformed, len(auth))
	}
	var offered string
	protocols := offeredSubprotocols(r)
	switch i := slices.Index(protocols, tokenSubprotocol); {
	case i < 0:
	case i+1 == len(protocols):
		return "", fmt.Errorf("%w: %s offered without a token after it", errTokenMalformed, tokenSubprotocol)
	case slices.Contains(protocols[i+1:], tokenSubprotocol):
		return "", fmt.Errorf("%w: %s offered twice", errTokenMalformed, tokenSubprotocol)
	default:
		offered = protocols[i+1]
	}
	switch {
	case bearer != "" && offered != "":
		return "", fmt.Errorf("%w: both in Authorization and in Sec-WebSocket-Protocol", errTokenMalformed)
	case bearer != "":
		return bearer, nil
	case offered != "":
		return offered, nil
	}
	return "", errNoToken
}

// checkToken is admit's check of a handshake's token, on a server with
// tokens: it returns the claims of a valid token for roomName, or answers
// 401 (no token, or a bad one) or 403 (one for other rooms) and returns
// nil. The log says why, and from where, never the token.
func checkToken(w http.ResponseWriter, r *http.Request, h *hub, secret []byte, roomName string, addr netip.Addr) *tokenClaims {
	tok, err := tokenFromRequest(r)
	var claims tokenClaims
	if err == nil {
		claims, err = verifyToken(secret, tok, time.Now())
	}
	switch {
	case err != nil:
		h.log.Info("refused a token", "remote", addr, "room", roomName, "why", err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="roomchat", error="invalid_token"`)
		http.Error(w, tokenRefusal(r, err), http.StatusUnauthorized)
	case !claims.mayJoin(roomName):
		h.log.Info("refused a token for other rooms", "remote", addr, "room", roomName, "name", claims.Name)
		w.Header().Set("WWW-Authenticate", `Bearer realm="roomchat", error="insufficient_scope"`)
		http.Error(w, "your token does not let you join this room", http.StatusForbidden)
	default:
		return &claims
	}
	h.stats.refuse(refusedToken)
	return nil
}

// closeTokenExpired closes a connection whose token ran out: a code of the
// application's range (4000 to 4999, RFC 6455 §7.4.2) that reads as HTTP's
// 401, which no other close shares, so that a client knows to come back
// with a new token (and ?since, to lose nothing) rather than retry.
const closeTokenExpired = 4401

// expireWithToken closes c with closeTokenExpired when its token runs out,
// tokenLeeway after its exp, when a handshake with it would be refused
// too; a connection without a token is never closed so. It returns the
// function that stops the timer, for a connection that ends first: a timer
// left running would hold its client for the token's whole life.
func expireWithToken(c *client) (stop func() bool) {
	if c.token == nil {
		return func() bool { return false }
	}
	t := time.AfterFunc(time.Until(c.token.Expires.Add(tokenLeeway)), func() {
		c.close(closeTokenExpired, "token expired")
	})
	return t.Stop
}

// tokenRefusal is the 401's body: why, and where a token goes, since a
// client that got it wrong needs to know both.
func tokenRefusal(r *http.Request, err error) string {
	why := "a valid token is needed to join: " + err.Error() + ". A program sends it in `Authorization: Bearer <token>`; " +
		`a browser offers the subprotocols ["` + tokenSubprotocol + `", <token>].`
	if r.URL.Query().Has("token") {
		why += " A ?token= in the URL is not read: URLs end up in logs and histories."
	}
	return why
}

// chosenSubprotocol is what the handshake must set as its config.Protocol,
// so that the 101 says `Sec-WebSocket-Protocol: roomchat.token` to a client
// that offered it, and nothing to any other. Left alone, x/net/websocket
// echoes a single offer whatever it is (a token offered alone would come
// back in the response), and refuses several with 400.
func chosenSubprotocol(r *http.Request) []string {
	if slices.Contains(offeredSubprotocols(r), tokenSubprotocol) {
		return []string{tokenSubprotocol}
	}
	return nil
}

// offeredSubprotocols lists what r offers in Sec-WebSocket-Protocol, on one
// line or several (RFC 6455 §11.3.4: the same thing).
func offeredSubprotocols(r *http.Request) []string {
	var out []string
	for _, line := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(line, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
