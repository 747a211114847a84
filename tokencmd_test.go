package main

// Making tokens (tokencmd.go): the minter, and `roomchat token` run as the
// command itself.

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMintToken(t *testing.T) {
	now := time.Now()
	in := tokenClaims{Name: "Zoë", Subject: "u-7", Rooms: []string{"room1", "*"}, Expires: now.Add(time.Hour)}
	token, err := mintToken([]byte(testSecret), in, now)
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := segments(token)
	if h != b64(tokenHeader) {
		t.Errorf("header %s, want %s", h, b64(tokenHeader))
	}
	got, err := verifyToken([]byte(testSecret), token, now)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Expires, want.IssuedAt = time.Unix(in.Expires.Unix(), 0), time.Unix(now.Unix(), 0)
	if !sameClaims(got, want) {
		t.Errorf("claims = %+v, want %+v", got, want)
	}

	// What the server would refuse is not minted.
	for _, bad := range []tokenClaims{
		{Name: "A", Rooms: []string{"bad room"}, Expires: now.Add(time.Hour)},
		{Name: "A", Expires: now.Add(time.Hour)},
		{Rooms: []string{"r"}, Expires: now.Add(time.Hour)},
		{Name: strings.Repeat("n", maxNameChars+1), Rooms: []string{"r"}, Expires: now.Add(time.Hour)},
		{Name: "A", Rooms: []string{"r"}, Expires: now.Add(-time.Hour)},
	} {
		if token, err := mintToken([]byte(testSecret), bad, now); err == nil {
			t.Errorf("%+v minted %s", bad, token)
		}
	}
}

// TestTokenCommand runs `roomchat token` as the command itself.
func TestTokenCommand(t *testing.T) {
	t.Setenv(tokenSecretEnv, testSecret)
	before := time.Now()
	out, code := runMain(t, "token", "-name", "Alice", "-room", "room1,room2", "-room", "lobby", "-ttl", "2h")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	token, ok := strings.CutSuffix(out, "\n")
	if !ok || strings.Contains(token, "\n") {
		t.Fatalf("want the token alone on one line, got %q", out)
	}
	checkQuiet(t, out, "")
	claims, err := verifyToken([]byte(testSecret), token, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if claims.Name != "Alice" || !slices.Equal(claims.Rooms, []string{"room1", "room2", "lobby"}) ||
		claims.Expires.Before(before.Add(2*time.Hour-time.Second)) || claims.Expires.After(time.Now().Add(2*time.Hour)) {
		t.Errorf("claims %+v", claims)
	}
	out, code = runMain(t, "token", "-sub", "u-1", "-room", "*")
	if claims, err := verifyToken([]byte(testSecret), strings.TrimSpace(out), time.Now()); code != 0 || err != nil ||
		claims.Name != "u-1" || !claims.mayJoin("any") || claims.Expires.After(time.Now().Add(defaultTokenTTL)) {
		t.Errorf("-sub u-1 -room *: exit %d, %q, %v, %+v", code, out, err, claims)
	}

	refusals := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no name", []string{"-room", "room1"}, 2, "-name or -sub is required"},
		{"no room", []string{"-name", "A"}, 2, "-room is required"},
		{"bad room", []string{"-name", "A", "-room", "bad room"}, 2, "rooms[0] is not a room name"},
		{"long name", []string{"-name", strings.Repeat("n", 101), "-room", "r"}, 2, "over 100"},
		{"ttl zero", []string{"-name", "A", "-room", "r", "-ttl", "0s"}, 2, "-ttl must be at least 1s"},
		{"a secret in argv", []string{"-name", "A", "-room", "r", "my-secret-on-the-command-line"}, 2, "never on the command line"},
		{"a -secret flag", []string{"-secret", "my-secret-on-the-command-line", "-name", "A", "-room", "r"}, 2, "flag provided but not defined: -secret"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runMain(t, append([]string{"token"}, tt.args...)...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, %q; want %d, %q", code, out, tt.code, tt.want)
			}
			checkQuiet(t, out, "")
			if strings.Contains(out, "my-secret-on-the-command-line") {
				t.Errorf("the argument is shown: %q", out)
			}
		})
	}

	t.Run("secret too short", func(t *testing.T) {
		t.Setenv(tokenSecretEnv, "too-short-a-secret")
		out, code := runMain(t, "token", "-name", "A", "-room", "r")
		if code != 1 || !strings.Contains(out, "at least 32") || strings.Contains(out, "too-short-a-secret") {
			t.Errorf("exit %d, %q", code, out)
		}
	})
	t.Run("no secret", func(t *testing.T) {
		t.Setenv(tokenSecretEnv, "") // restored after the test
		os.Unsetenv(tokenSecretEnv)
		out, code := runMain(t, "token", "-name", "A", "-room", "r")
		if code != 1 || !strings.Contains(out, "$ROOMCHAT_TOKEN_SECRET is not set") {
			t.Errorf("exit %d, %q", code, out)
		}
	})
}
