package main

// This file is the connection token of a server started with
// ROOMCHAT_TOKEN_SECRET set: an HS256 JSON Web Token (RFC 7519) that names
// the user and the rooms they may join, minted and checked with the
// standard library alone. This file is the verifier; tokencmd.go mints
// tokens (`roomchat token`), and tokenhandshake.go finds one in a
// handshake and closes the connection when it expires.
//
// A token is hostile until its signature is checked: the verifier reads
// nothing but its header before then, and only one shape of token passes.
// Only HS256 with this server's secret, no other algorithm (a token's alg
// is checked, never believed). The header holds alg, and may hold typ and
// kid; any other header parameter is refused, since a server with one key
// has no use for them and jku, jwk, x5u or x5c name the attacker's key, crit
// demands extensions roomchat does not know, and b64 changes what is signed.
// Base64url has no padding and no other spelling of the same bytes, so a
// valid token cannot be changed into another that also passes. JSON keys are
// matched exactly and must not repeat, so no two parsers can read one token
// two ways. An error says why a token was refused, never what it held: it
// may be logged, and a token is a password.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Tokens and their secret.
const (
	// tokenSecretEnv holds the secret; a server with it set admits only
	// WebSockets that bring a token. There is no flag: a flag's value is
	// in the process list for every user of the machine to read.
	tokenSecretEnv = "ROOMCHAT_TOKEN_SECRET"

	// minTokenSecretBytes is the shortest secret accepted: RFC 7518 §3.2
	// asks for an HS256 key at least as long as its hash, 256 bits.
	minTokenSecretBytes = 32

	// maxTokenBytes bounds a token before any of it is decoded. A token
	// for a hundred rooms of twenty characters takes 3.2 KiB; one for
	// more rooms than fit can say * instead.
	maxTokenBytes = 4 << 10

	// tokenLeeway forgives the clocks of the server and of whatever mints
	// its tokens for disagreeing by this much, as NTP-synchronised clocks
	// may: exp, nbf and iat are each checked with it. It makes a stolen
	// token last 30 s longer, which is why it is no more.
	tokenLeeway = 30 * time.Second

	// defaultTokenTTL is how long `roomchat token` makes a token last.
	defaultTokenTTL = time.Hour

	// tokenSubprotocol is the first of the two subprotocols a browser
	// offers, ["roomchat.token", token], and the one the server selects.
	tokenSubprotocol = "roomchat.token"

	// anyRoom in a token's rooms lets it join every room; no room can
	// have that name (roomPattern).
	anyRoom = "*"

	// tokenAudience is the audience a token's aud must name when it has
	// one: RFC 7519 §4.1.3 has a token for another audience refused.
	tokenAudience = "roomchat"

	// maxNumericDate is the end of the year 9999, in seconds since 1970:
	// a later exp is not a date but an attempt at overflow.
	maxNumericDate = 253402300799
)

// tokenHeader is the header of every token roomchat mints.
const tokenHeader = `{"alg":"HS256","typ":"JWT"}`

// The reasons a token is refused. The server answers 401 to each; the
// errors wrap them with details for its log.
var (
	errNoToken          = errors.New("no token")
	errTokenMalformed   = errors.New("malformed token")
	errTokenAlgorithm   = errors.New("token algorithm is not HS256")
	errTokenHeader      = errors.New("unsupported token header")
	errTokenSignature   = errors.New("bad token signature")
	errTokenExpired     = errors.New("token expired")
	errTokenNotYetValid = errors.New("token not valid yet")
	errTokenClaims      = errors.New("invalid token claims")
)

// tokenClaims is what a verified token says about its holder.
type tokenClaims struct {
	Name      string    // the display name: the name claim, or sub without one
	Subject   string    // sub, "" when the token has none
	Rooms     []string  // the rooms it may join, or anyRoom for all
	Expires   time.Time // exp
	NotBefore time.Time // nbf; zero when absent
	IssuedAt  time.Time // iat; zero when absent
}

// mayJoin reports whether the token lets its holder into room, a name that
// already passed roomPattern.
func (c tokenClaims) mayJoin(room string) bool {
	return slices.Contains(c.Rooms, room) || slices.Contains(c.Rooms, anyRoom)
}

// tokenSecretFrom reads the secret from the environment through lookup
// (os.LookupEnv): nil when the variable is unset, which turns tokens off.
// Set, it must be long enough, even empty: a variable set from another
// that was never defined must not leave the server open.
func tokenSecretFrom(lookup func(string) (string, bool)) ([]byte, error) {
	s, ok := lookup(tokenSecretEnv)
	if !ok {
		return nil, nil
	}
	if len(s) < minTokenSecretBytes {
		return nil, fmt.Errorf("$%s is %d bytes; it must be at least %d, such as the output of `openssl rand -base64 32`",
			tokenSecretEnv, len(s), minTokenSecretBytes)
	}
	return []byte(s), nil
}

// verifyToken checks token, signed with secret, at the time now and returns
// its claims, or an error that wraps one of the errToken reasons.
func verifyToken(secret []byte, token string, now time.Time) (tokenClaims, error) {
	payload, err := checkSignature(secret, token)
	if err != nil {
		return tokenClaims{}, err
	}
	fields, err := decodeJSONObject(payload)
	if err != nil {
		return tokenClaims{}, fmt.Errorf("%w: payload: %v", errTokenMalformed, err)
	}
	claims, err := readClaims(fields, now)
	if err != nil {
		return tokenClaims{}, err // nothing of a refused token is kept
	}
	return claims, nil
}

// checkSignature splits token into its three segments, checks its header
// and signature, and returns the payload decoded. Nothing of the payload is
// read before its signature passed.
func checkSignature(secret []byte, token string) (payload []byte, err error) {
	if len(token) > maxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes, over %d", errTokenMalformed, len(token), maxTokenBytes)
	}
	// Only base64url and dots: no whitespace, padding or other characters,
	// which Go's decoder would otherwise skip (newlines) or accept (=).
	for i := 0; i < len(token); i++ {
		if !isTokenByte(token[i]) {
			return nil, fmt.Errorf("%w: a character that is not base64url or a dot", errTokenMalformed)
		}
	}
	segments := strings.Split(token, ".")
	if len(segments) != 3 {
		return nil, fmt.Errorf("%w: %d segments, not 3", errTokenMalformed, len(segments))
	}
	header, err := decodeSegment(segments[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", errTokenMalformed, err)
	}
	if err := checkHeader(header); err != nil {
		return nil, err
	}
	signature, err := decodeSegment(segments[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", errTokenMalformed, err)
	}
	signed := token[:len(segments[0])+1+len(segments[1])]
	if !hmac.Equal(signature, hs256(secret, signed)) {
		return nil, errTokenSignature
	}
	payload, err = decodeSegment(segments[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", errTokenMalformed, err)
	}
	return payload, nil
}

// isTokenByte reports whether b may appear in a compact JWS: the base64url
// alphabet and the dot. All of them are allowed in an HTTP token (RFC 9110
// tchar), so a token can be a WebSocket subprotocol.
func isTokenByte(b byte) bool {
	return 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.'
}

// decodeSegment decodes base64url without padding (RFC 7515 §2), strictly:
// unused bits of the last character must be zero, so every byte string has
// one spelling only.
func decodeSegment(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	return b, nil
}

// hs256 is the signature of signed under secret.
func hs256(secret []byte, signed string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signed)) // a hash.Hash never fails to write
	return mac.Sum(nil)
}

// checkHeader accepts the header of an HS256 token and nothing else: alg
// is HS256, typ (if present) JWT, kid (if present) a string, which is
// ignored since there is one secret; any other parameter is refused.
func checkHeader(header []byte) error {
	fields, err := decodeJSONObject(header)
	if err != nil {
		return fmt.Errorf("%w: header: %v", errTokenMalformed, err)
	}
	alg, ok := jsonString(fields["alg"])
	if !ok || alg != "HS256" {
		return errTokenAlgorithm
	}
	for _, key := range slices.Sorted(maps.Keys(fields)) { // one answer for a header with two faults
		value := fields[key]
		switch key {
		case "alg":
		case "typ":
			// RFC 7515 §4.1.9: a media type, compared without regard to case.
			if typ, ok := jsonString(value); !ok || !strings.EqualFold(typ, "JWT") {
				return fmt.Errorf("%w: typ is not JWT", errTokenHeader)
			}
		case "kid":
			if _, ok := jsonString(value); !ok {
				return fmt.Errorf("%w: kid is not a string", errTokenHeader)
			}
		default:
			return fmt.Errorf("%w: parameter %s", errTokenHeader, strconv.QuoteToASCII(clip(key, 20)))
		}
	}
	return nil
}

// readClaims turns a verified payload's fields into claims, checking each
// claim roomchat reads and the token's times; other claims (iss, jti, …)
// are ignored.
func readClaims(fields map[string]json.RawMessage, now time.Time) (tokenClaims, error) {
	var c tokenClaims
	var err error
	if c.Expires, err = numericDate(fields, "exp", true); err != nil {
		return c, err
	}
	if c.NotBefore, err = numericDate(fields, "nbf", false); err != nil {
		return c, err
	}
	if c.IssuedAt, err = numericDate(fields, "iat", false); err != nil {
		return c, err
	}
	name, hasName, err := stringClaim(fields, "name")
	if err != nil {
		return c, err
	}
	if c.Subject, _, err = stringClaim(fields, "sub"); err != nil {
		return c, err
	}
	c.Name = c.Subject
	if hasName {
		c.Name = name
	}
	switch n := utf8.RuneCountInString(c.Name); {
	case n == 0 && hasName:
		return c, fmt.Errorf("%w: the name is empty", errTokenClaims)
	case n == 0:
		return c, fmt.Errorf("%w: no name and no sub", errTokenClaims)
	case n > maxNameChars:
		return c, fmt.Errorf("%w: the name is %d characters, over %d", errTokenClaims, n, maxNameChars)
	}
	if c.Rooms, err = roomsClaim(fields["rooms"]); err != nil {
		return c, err
	}
	if aud, ok := fields["aud"]; ok && !namesAudience(aud) {
		return c, fmt.Errorf("%w: aud does not name %s", errTokenClaims, tokenAudience)
	}
	switch {
	case !now.Before(c.Expires.Add(tokenLeeway)):
		return c, fmt.Errorf("%w %s ago", errTokenExpired, now.Sub(c.Expires).Round(time.Second))
	case !c.NotBefore.IsZero() && now.Add(tokenLeeway).Before(c.NotBefore):
		return c, fmt.Errorf("%w: nbf is %s ahead", errTokenNotYetValid, c.NotBefore.Sub(now).Round(time.Second))
	case !c.IssuedAt.IsZero() && now.Add(tokenLeeway).Before(c.IssuedAt):
		return c, fmt.Errorf("%w: iat is %s ahead", errTokenNotYetValid, c.IssuedAt.Sub(now).Round(time.Second))
	}
	return c, nil
}

// numericDate reads the claim key as a JSON number of seconds since 1970
// (RFC 7519 §2), which may have a fraction; a string or null is no date.
func numericDate(fields map[string]json.RawMessage, key string, required bool) (time.Time, error) {
	raw, ok := fields[key]
	if !ok {
		if required {
			return time.Time{}, fmt.Errorf("%w: no %s", errTokenClaims, key)
		}
		return time.Time{}, nil
	}
	// The raw value is valid JSON: one that starts with a digit or a minus
	// is a number, which ParseFloat reads (or finds out of range).
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return time.Time{}, fmt.Errorf("%w: %s is not a number", errTokenClaims, key)
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || v < 0 || v > maxNumericDate {
		return time.Time{}, fmt.Errorf("%w: %s is not a date between 1970 and 9999", errTokenClaims, key)
	}
	sec := math.Floor(v)
	return time.Unix(int64(sec), int64((v-sec)*1e9)), nil
}

// stringClaim reads the optional claim key, which must be a string if
// present; null is not one.
func stringClaim(fields map[string]json.RawMessage, key string) (value string, present bool, err error) {
	raw, ok := fields[key]
	if !ok {
		return "", false, nil
	}
	s, ok := jsonString(raw)
	if !ok {
		return "", true, fmt.Errorf("%w: %s is not a string", errTokenClaims, key)
	}
	return s, true, nil
}

// roomsClaim reads rooms: a non-empty array of room names or anyRoom.
func roomsClaim(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, fmt.Errorf("%w: no rooms", errTokenClaims)
	}
	var items []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, fmt.Errorf("%w: rooms is not an array", errTokenClaims)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: rooms is empty", errTokenClaims)
	}
	rooms := make([]string, len(items))
	for i, item := range items {
		room, ok := jsonString(item)
		if !ok || room != anyRoom && !roomRE.MatchString(room) {
			return nil, fmt.Errorf("%w: rooms[%d] is not a room name or %s", errTokenClaims, i, anyRoom)
		}
		rooms[i] = room
	}
	return rooms, nil
}

// namesAudience reports whether aud, a string or an array of strings,
// names roomchat.
func namesAudience(aud json.RawMessage) bool {
	if s, ok := jsonString(aud); ok {
		return s == tokenAudience
	}
	var list []json.RawMessage
	if len(aud) == 0 || aud[0] != '[' || json.Unmarshal(aud, &list) != nil {
		return false
	}
	return slices.ContainsFunc(list, func(item json.RawMessage) bool {
		s, ok := jsonString(item)
		return ok && s == tokenAudience
	})
}

// decodeJSONObject reads data as one JSON object whose keys are matched
// exactly, unlike encoding/json's struct fields, which also take "ALG" for
// alg. A key that appears twice is refused, rather than one of them being
// chosen, as parsers disagree on which; so is text that is not UTF-8,
// which encoding/json would quietly replace. Values are left raw: nested
// objects are never read, so their keys need no check.
func decodeJSONObject(data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not UTF-8")
	}
	fields := map[string]json.RawMessage{}
	var repeated []string
	isObject := json.Valid(data) && eachField(data, func(key string, value json.RawMessage) {
		if _, dup := fields[key]; dup {
			repeated = append(repeated, key)
		}
		fields[key] = value
	})
	switch {
	case !isObject: // json.Valid also refuses anything after the object
		return nil, errors.New("not a JSON object")
	case repeated != nil:
		return nil, fmt.Errorf("key %s twice", strconv.QuoteToASCII(clip(repeated[0], 20)))
	}
	return fields, nil
}

// jsonString decodes raw if it is a JSON string (not null, which
// encoding/json would take for "").
func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// clip shortens s to at most n runes, for an error that names a key a
// client chose.
func clip(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i] + "…"
		}
		n--
	}
	return s
}
