package main

// Connection tokens (token.go): the verifier against every kind of token
// it must refuse, and the RFC 7515 example. tokencmd_test.go has the
// minter, tokenhandshake_test.go the handshake.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// testSecret signs the tests' tokens; it is distinctive, so that a test can
// tell when it leaks into an error or into output.
const testSecret = "roomchat-test-secret-0123456789abcdef"

// testNow is the time the table's tokens are checked at.
var testNow = time.Unix(1_800_000_000, 0)

// signed is a token for the header and payload given as text, signed with
// testSecret, whatever they say.
func signed(header, payload string) string {
	return signToken([]byte(testSecret), []byte(header), []byte(payload))
}

// claimsJSON is a payload valid at testNow, with extra members after rooms.
func claimsJSON(extra string) string {
	return fmt.Sprintf(`{"name":"Alice","rooms":["room1"],"exp":%d%s}`, testNow.Unix()+3600, extra)
}

// hourToken is a token signed with secret for name in rooms, valid for an
// hour from now: what a backend hands its users.
func hourToken(t testing.TB, secret []byte, name string, rooms ...string) string {
	t.Helper()
	now := time.Now()
	tok, err := mintToken(secret, tokenClaims{Name: name, Rooms: rooms, Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// b64 is the base64url segment of s.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// segments splits a token into its three parts.
func segments(token string) (header, payload, signature string) {
	parts := strings.SplitN(token, ".", 3)
	return parts[0], parts[1], parts[2]
}

func TestVerifyToken(t *testing.T) {
	exp := testNow.Unix() + 3600
	valid := signed(tokenHeader, claimsJSON(""))
	h, p, sig := segments(valid)
	other := signed(tokenHeader, `{"name":"Mallory","rooms":["*"],"exp":1900000000}`)
	_, otherPayload, _ := segments(other)
	// The signature with its first character changed: another signature
	// (a change in the last one might only touch its unused bits).
	flipped := "A" + sig[1:]
	if sig[0] == 'A' {
		flipped = "B" + sig[1:]
	}
	alice := tokenClaims{Name: "Alice", Rooms: []string{"room1"}, Expires: time.Unix(exp, 0)}
	hundred := strings.Repeat("é", maxNameChars)

	tests := []struct {
		name  string
		token string
		err   error        // nil: accepted
		want  *tokenClaims // the claims of an accepted token, when checked
	}{
		{name: "valid", token: valid, want: &alice},
		{name: "sub is the name without one", token: signed(tokenHeader, fmt.Sprintf(`{"sub":"u42","rooms":["*"],"exp":%d}`, exp)),
			want: &tokenClaims{Name: "u42", Subject: "u42", Rooms: []string{"*"}, Expires: time.Unix(exp, 0)}},
		{name: "name before sub", token: signed(tokenHeader, fmt.Sprintf(`{"sub":"u42","name":"Zoë","rooms":["a","b.c_d-e"],"exp":%d}`, exp)),
			want: &tokenClaims{Name: "Zoë", Subject: "u42", Rooms: []string{"a", "b.c_d-e"}, Expires: time.Unix(exp, 0)}},
		{name: "nbf and iat read", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["r"],"nbf":%d,"iat":%d,"exp":%d}`, testNow.Unix()-5, testNow.Unix()-9, exp)),
			want: &tokenClaims{Name: "A", Rooms: []string{"r"}, Expires: time.Unix(exp, 0), NotBefore: testNow.Add(-5 * time.Second), IssuedAt: testNow.Add(-9 * time.Second)}},
		{name: "exp with a fraction", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["r"],"exp":%d.5}`, exp)),
			want: &tokenClaims{Name: "A", Rooms: []string{"r"}, Expires: time.Unix(exp, 5e8)}},
		{name: "typ absent", token: signed(`{"alg":"HS256"}`, claimsJSON(""))},
		{name: "typ in lower case", token: signed(`{"typ":"jwt","alg":"HS256"}`, claimsJSON(""))},
		{name: "kid ignored", token: signed(`{"alg":"HS256","kid":"2024-01"}`, claimsJSON(""))},
		{name: "spaces and newlines in the JSON", token: signed("{\r\n \"alg\" : \"HS256\" }", fmt.Sprintf("{ \"name\": \"A\",\n \"rooms\": [ \"r\" ],\n \"exp\": %d }", exp))},
		{name: "unknown claims ignored", token: signed(tokenHeader, claimsJSON(`,"iss":"me","jti":"x","EXP":"soon","deep":{"a":1,"a":2}`))},
		{name: "aud naming roomchat", token: signed(tokenHeader, claimsJSON(`,"aud":"roomchat"`))},
		{name: "aud list naming roomchat", token: signed(tokenHeader, claimsJSON(`,"aud":["other","roomchat"]`))},
		{name: "name of 100 characters", token: signed(tokenHeader, fmt.Sprintf(`{"name":%q,"rooms":["r"],"exp":%d}`, hundred, exp))},
		{name: "expired within the leeway", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["r"],"exp":%d}`, testNow.Add(time.Second-tokenLeeway).Unix()))},
		{name: "nbf within the leeway", token: signed(tokenHeader, claimsJSON(fmt.Sprintf(`,"nbf":%d`, testNow.Add(tokenLeeway).Unix())))},

		// Not a compact JWS at all.
		{name: "empty", token: "", err: errTokenMalformed},
		{name: "two segments", token: h + "." + p, err: errTokenMalformed},
		{name: "four segments", token: valid + "." + sig, err: errTokenMalformed},
		{name: "five segments (JWE)", token: h + ".." + p + "." + sig + ".x", err: errTokenMalformed},
		{name: "padding", token: valid + "=", err: errTokenMalformed},
		{name: "padded header", token: b64(tokenHeader) + "==." + p + "." + sig, err: errTokenMalformed},
		{name: "standard base64 alphabet", token: h + "." + p + "." + strings.ReplaceAll(strings.ReplaceAll(sig, "-", "+"), "_", "/") + "+/", err: errTokenMalformed},
		{name: "bad base64 length", token: h + "." + p + "." + sig + "AA", err: errTokenMalformed},
		{name: "unused bits set", token: h + "." + p + "." + sig[:len(sig)-1] + string(sig[len(sig)-1]+1), err: errTokenMalformed},
		{name: "leading space", token: " " + valid, err: errTokenMalformed},
		{name: "trailing newline", token: valid + "\n", err: errTokenMalformed},
		{name: "newline inside", token: h + ".\n" + p + "." + sig, err: errTokenMalformed},
		{name: "oversize", token: signed(tokenHeader, claimsJSON(`,"x":"`+strings.Repeat("x", maxTokenBytes)+`"`)), err: errTokenMalformed},
		{name: "header not JSON", token: signed("alg=HS256", claimsJSON("")), err: errTokenMalformed},
		{name: "header an array", token: signed(`["HS256"]`, claimsJSON("")), err: errTokenMalformed},
		{name: "header with two algs", token: signed(`{"alg":"HS256","alg":"none"}`, claimsJSON("")), err: errTokenMalformed},
		{name: "header with two algs, one escaped", token: signed(`{"alg":"none","\u0061lg":"HS256"}`, claimsJSON("")), err: errTokenMalformed},
		{name: "header with text after it", token: signed(tokenHeader+`{}`, claimsJSON("")), err: errTokenMalformed},

		// The header: HS256, and nothing that changes what it means.
		{name: "alg none, no signature", token: b64(`{"alg":"none"}`) + "." + p + ".", err: errTokenAlgorithm},
		{name: "alg none, signed anyway", token: signed(`{"alg":"none"}`, claimsJSON("")), err: errTokenAlgorithm},
		{name: "alg RS256 with the secret as HMAC key", token: signed(`{"alg":"RS256","typ":"JWT"}`, claimsJSON("")), err: errTokenAlgorithm},
		{name: "alg HS512", token: signed(`{"alg":"HS512","typ":"JWT"}`, claimsJSON("")), err: errTokenAlgorithm},
		{name: "alg in lower case", token: signed(`{"alg":"hs256"}`, claimsJSON("")), err: errTokenAlgorithm},
		{name: "ALG instead of alg", token: signed(`{"ALG":"HS256"}`, claimsJSON("")), err: errTokenAlgorithm},
		{name: "alg an array", token: signed(`{"alg":["HS256"]}`, claimsJSON("")), err: errTokenAlgorithm},
		{name: "no alg", token: signed(`{"typ":"JWT"}`, claimsJSON("")), err: errTokenAlgorithm},
		{name: "crit", token: signed(`{"alg":"HS256","crit":["exp"]}`, claimsJSON("")), err: errTokenHeader},
		{name: "b64 false", token: signed(`{"alg":"HS256","b64":false,"crit":["b64"]}`, claimsJSON("")), err: errTokenHeader},
		{name: "jwk", token: signed(`{"alg":"HS256","jwk":{"kty":"oct","k":"AA"}}`, claimsJSON("")), err: errTokenHeader},
		{name: "jku", token: signed(`{"alg":"HS256","jku":"https://evil.example/keys"}`, claimsJSON("")), err: errTokenHeader},
		{name: "typ JWS", token: signed(`{"alg":"HS256","typ":"JWS"}`, claimsJSON("")), err: errTokenHeader},
		{name: "typ null", token: signed(`{"alg":"HS256","typ":null}`, claimsJSON("")), err: errTokenHeader},
		{name: "kid a number", token: signed(`{"alg":"HS256","kid":7}`, claimsJSON("")), err: errTokenHeader},
		{name: "kid null", token: signed(`{"alg":"HS256","kid":null}`, claimsJSON("")), err: errTokenHeader},

		// The signature.
		{name: "tampered payload", token: h + "." + otherPayload + "." + sig, err: errTokenSignature},
		{name: "tampered signature", token: h + "." + p + "." + flipped, err: errTokenSignature},
		{name: "no signature", token: h + "." + p + ".", err: errTokenSignature},
		{name: "another secret", token: signToken([]byte(strings.ToUpper(testSecret)), []byte(tokenHeader), []byte(claimsJSON(""))), err: errTokenSignature},
		{name: "header changed to the same alg", token: b64(`{"alg":"HS256"}`) + "." + p + "." + sig, err: errTokenSignature},

		// The payload, signed: its shape.
		{name: "payload not UTF-8", token: signed(tokenHeader, claimsJSON(`,"x":"`+"\xff"+`"`)), err: errTokenMalformed},
		{name: "payload an array", token: signed(tokenHeader, `[1]`), err: errTokenMalformed},
		{name: "payload with text after it", token: signed(tokenHeader, claimsJSON("")+" x"), err: errTokenMalformed},
		{name: "duplicate rooms", token: signed(tokenHeader, claimsJSON(`,"rooms":["*"]`)), err: errTokenMalformed},
		{name: "duplicate name", token: signed(tokenHeader, claimsJSON(`,"name":"Bob"`)), err: errTokenMalformed},

		// The claims.
		{name: "missing exp", token: signed(tokenHeader, `{"name":"A","rooms":["r"]}`), err: errTokenClaims},
		{name: "EXP for exp", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["r"],"EXP":%d}`, exp)), err: errTokenClaims},
		{name: "exp a string", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["r"],"exp":"%d"}`, exp)), err: errTokenClaims},
		{name: "exp null", token: signed(tokenHeader, `{"name":"A","rooms":["r"],"exp":null}`), err: errTokenClaims},
		{name: "exp true", token: signed(tokenHeader, `{"name":"A","rooms":["r"],"exp":true}`), err: errTokenClaims},
		{name: "exp negative", token: signed(tokenHeader, `{"name":"A","rooms":["r"],"exp":-1}`), err: errTokenClaims},
		{name: "exp past 9999", token: signed(tokenHeader, `{"name":"A","rooms":["r"],"exp":1e300}`), err: errTokenClaims},
		{name: "exp out of range", token: signed(tokenHeader, `{"name":"A","rooms":["r"],"exp":1e400}`), err: errTokenClaims},
		{name: "nbf a string", token: signed(tokenHeader, claimsJSON(`,"nbf":"0"`)), err: errTokenClaims},
		{name: "no name and no sub", token: signed(tokenHeader, fmt.Sprintf(`{"rooms":["r"],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "empty name", token: signed(tokenHeader, fmt.Sprintf(`{"name":"","sub":"u1","rooms":["r"],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "name null", token: signed(tokenHeader, fmt.Sprintf(`{"name":null,"sub":"u1","rooms":["r"],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "name a number", token: signed(tokenHeader, fmt.Sprintf(`{"name":7,"rooms":["r"],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "sub a number", token: signed(tokenHeader, claimsJSON(`,"sub":7`)), err: errTokenClaims},
		{name: "sub null", token: signed(tokenHeader, claimsJSON(`,"sub":null`)), err: errTokenClaims},
		{name: "name of 101 characters", token: signed(tokenHeader, fmt.Sprintf(`{"name":%q,"rooms":["r"],"exp":%d}`, hundred+"x", exp)), err: errTokenClaims},
		{name: "sub of 101 characters without a name", token: signed(tokenHeader, fmt.Sprintf(`{"sub":%q,"rooms":["r"],"exp":%d}`, hundred+"x", exp)), err: errTokenClaims},
		{name: "no rooms", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","exp":%d}`, exp)), err: errTokenClaims},
		{name: "rooms a string", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":"room1","exp":%d}`, exp)), err: errTokenClaims},
		{name: "rooms an object", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":{"room1":true},"exp":%d}`, exp)), err: errTokenClaims},
		{name: "rooms null", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":null,"exp":%d}`, exp)), err: errTokenClaims},
		{name: "rooms empty", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":[],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "room not a room name", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["room1","bad room"],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "room with a slash", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["a/b"],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "room empty", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":[""],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "room of 100 characters", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":[%q],"exp":%d}`, strings.Repeat("r", 100), exp)), err: errTokenClaims},
		{name: "room a number", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":[1],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "room **", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["**"],"exp":%d}`, exp)), err: errTokenClaims},
		{name: "aud of another service", token: signed(tokenHeader, claimsJSON(`,"aud":"billing"`)), err: errTokenClaims},
		{name: "aud list without roomchat", token: signed(tokenHeader, claimsJSON(`,"aud":["billing"]`)), err: errTokenClaims},

		// The times.
		{name: "expired", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["r"],"exp":%d}`, testNow.Unix()-3600)), err: errTokenExpired},
		{name: "expired by the leeway", token: signed(tokenHeader, fmt.Sprintf(`{"name":"A","rooms":["r"],"exp":%d}`, testNow.Add(-tokenLeeway).Unix())), err: errTokenExpired},
		{name: "nbf in the future", token: signed(tokenHeader, claimsJSON(fmt.Sprintf(`,"nbf":%d`, testNow.Add(tokenLeeway).Unix()+1))), err: errTokenNotYetValid},
		{name: "iat in the future", token: signed(tokenHeader, claimsJSON(fmt.Sprintf(`,"iat":%d`, testNow.Unix()+600))), err: errTokenNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := verifyToken([]byte(testSecret), tt.token, testNow)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				checkQuiet(t, err.Error(), tt.token)
				if !sameClaims(got, tokenClaims{}) {
					t.Errorf("refused, but claims %+v returned", got)
				}
				return
			}
			if tt.want != nil && !sameClaims(got, *tt.want) {
				t.Errorf("claims = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

// checkQuiet fails if text, an error or a command's output, holds the
// secret, or a token long enough to be told from the text around it.
func checkQuiet(t testing.TB, text, token string) {
	t.Helper()
	if strings.Contains(text, testSecret) {
		t.Errorf("%q holds the secret", text)
	}
	if len(token) >= 24 && strings.Contains(text, token) {
		t.Errorf("%q holds the token", text)
	}
}

// sameClaims compares claims, their times as instants.
func sameClaims(a, b tokenClaims) bool {
	return a.Name == b.Name && a.Subject == b.Subject && slices.Equal(a.Rooms, b.Rooms) &&
		a.Expires.Equal(b.Expires) && a.NotBefore.Equal(b.NotBefore) && a.IssuedAt.Equal(b.IssuedAt)
}

// TestTokenSizeLimit finds the longest token under the limit, which passes,
// and the shortest over it, which is refused before it is decoded.
func TestTokenSizeLimit(t *testing.T) {
	var under, over string
	for n := 2800; over == ""; n++ { // 2800 makes a token of some 3.8 KiB
		token := signed(tokenHeader, claimsJSON(`,"x":"`+strings.Repeat("x", n)+`"`))
		if len(token) <= maxTokenBytes {
			under = token
		} else {
			over = token
		}
	}
	if _, err := verifyToken([]byte(testSecret), under, testNow); under == "" || err != nil {
		t.Errorf("%d bytes: %v", len(under), err)
	}
	if _, err := verifyToken([]byte(testSecret), over, testNow); !errors.Is(err, errTokenMalformed) || !strings.Contains(err.Error(), "over 4096") {
		t.Errorf("%d bytes: err = %v, want malformed, over 4096", len(over), err)
	}
}

// TestTokenRFC7515Example checks the verifier and signToken against the
// HS256 example of RFC 7515, appendix A.1: an implementation that is not
// this one made that token. It carries no name and no rooms, so it fails
// only at the claims, after its header and signature passed.
func TestTokenRFC7515Example(t *testing.T) {
	const token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9" +
		".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ" +
		".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	key, err := base64.RawURLEncoding.DecodeString("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
	if err != nil {
		t.Fatal(err)
	}
	header := "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}"
	payload := "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
	if got := signToken(key, []byte(header), []byte(payload)); got != token {
		t.Errorf("signToken = %s, want the RFC's %s", got, token)
	}
	_, err = verifyToken(key, token, time.Unix(1300819000, 0))
	if !errors.Is(err, errTokenClaims) || err.Error() != "invalid token claims: no name and no sub" {
		t.Errorf("err = %v, want invalid token claims: no name and no sub", err)
	}
}

func TestTokenMayJoin(t *testing.T) {
	tests := []struct {
		rooms []string
		room  string
		want  bool
	}{
		{[]string{"room1"}, "room1", true},
		{[]string{"room1"}, "room2", false},
		{[]string{"room1"}, "Room1", false}, // room names are case-sensitive
		{[]string{"room1"}, "room10", false},
		{[]string{"a", "b", "c"}, "c", true},
		{[]string{"*"}, "anything", true},
		{[]string{"a", "*"}, "z", true},
	}
	for _, tt := range tests {
		if got := (tokenClaims{Rooms: tt.rooms}).mayJoin(tt.room); got != tt.want {
			t.Errorf("rooms %q, mayJoin(%q) = %v, want %v", tt.rooms, tt.room, got, tt.want)
		}
	}
}

func TestTokenSecretFrom(t *testing.T) {
	env := func(v string, ok bool) func(string) (string, bool) {
		return func(key string) (string, bool) {
			if key != tokenSecretEnv {
				t.Fatalf("looked up %s", key)
			}
			return v, ok
		}
	}
	if s, err := tokenSecretFrom(env("", false)); s != nil || err != nil {
		t.Errorf("unset: %q, %v; want tokens off", s, err)
	}
	for _, short := range []string{"", "short-secret", testSecret[:minTokenSecretBytes-1]} {
		s, err := tokenSecretFrom(env(short, true))
		if s != nil || err == nil {
			t.Errorf("%d bytes: %q, %v; want an error", len(short), s, err)
			continue
		}
		if short != "" && strings.Contains(err.Error(), short) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	if s, err := tokenSecretFrom(env(testSecret[:minTokenSecretBytes], true)); string(s) != testSecret[:minTokenSecretBytes] || err != nil {
		t.Errorf("32 bytes: %q, %v", s, err)
	}
}

// FuzzVerifyToken feeds the verifier anything: it must not panic, and it
// must accept nothing but the one valid token of the seeds, since no other
// string is signed with the secret (base64url has one spelling of each
// signature, so no change to a token leaves it valid).
func FuzzVerifyToken(f *testing.F) {
	valid := signed(tokenHeader, claimsJSON(""))
	h, p, sig := segments(valid)
	for _, seed := range []string{
		valid, "", ".", "..", h + "." + p + ".", valid + "=", " " + valid,
		b64(`{"alg":"none"}`) + "." + p + ".",
		signed(`{"alg":"HS512"}`, claimsJSON("")),
		h + "." + b64(`{"name":"A","rooms":["*"],"exp":9e99}`) + "." + sig,
		signToken([]byte("wrong-secret-wrong-secret-wrong-secret"), []byte(tokenHeader), []byte(claimsJSON(""))),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		_, err := verifyToken([]byte(testSecret), token, testNow)
		if err == nil && token != valid {
			t.Fatalf("accepted %q", token)
		}
		if err != nil {
			checkQuiet(t, err.Error(), token)
		}
	})
}

// FuzzTokenClaims signs whatever header and payload it is given, so that
// the parsers behind the signature are fuzzed too: what they accept must
// hold claims the server can trust, and read as encoding/json reads them.
func FuzzTokenClaims(f *testing.F) {
	f.Add(tokenHeader, claimsJSON(""))
	f.Add(`{"alg":"HS256","kid":"k"}`, claimsJSON(`,"aud":["roomchat"],"nbf":1.5e9,"sub":"s"`))
	f.Add(`{"alg":"HS256","alg":"HS256"}`, `{"sub":"\u00e9","rooms":["*","a"],"exp":18e8}`)
	f.Fuzz(func(t *testing.T, header, payload string) {
		token := signed(header, payload)
		c, err := verifyToken([]byte(testSecret), token, testNow)
		if err != nil {
			return
		}
		var h, p map[string]any
		if json.Unmarshal([]byte(header), &h) != nil || h["alg"] != "HS256" || json.Unmarshal([]byte(payload), &p) != nil {
			t.Fatalf("accepted header %q, payload %q", header, payload)
		}
		name, _ := p["name"].(string)
		if _, ok := p["name"]; !ok {
			name, _ = p["sub"].(string)
		}
		if c.Name != name || c.Name == "" || len([]rune(c.Name)) > maxNameChars {
			t.Errorf("name %q; encoding/json reads %q", c.Name, name)
		}
		if len(c.Rooms) == 0 || slices.ContainsFunc(c.Rooms, func(r string) bool { return r != anyRoom && !roomRE.MatchString(r) }) {
			t.Errorf("rooms %q", c.Rooms)
		}
		if exp, ok := p["exp"].(float64); !ok || !testNow.Before(c.Expires.Add(tokenLeeway)) || c.Expires.Unix() != int64(exp) {
			t.Errorf("exp %v, read as %v", p["exp"], c.Expires)
		}
	})
}

func BenchmarkVerifyToken(b *testing.B) {
	token := signed(tokenHeader, claimsJSON(`,"sub":"u-123456","iat":1799990000`))
	for b.Loop() {
		if _, err := verifyToken([]byte(testSecret), token, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
