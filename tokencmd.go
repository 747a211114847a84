package main

// This file makes tokens: mintToken, and `roomchat token`, the command that
// prints one signed with $ROOMCHAT_TOKEN_SECRET for development and tests.
// token.go checks them.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// mintToken makes a token for c, signed with secret, issued at now. It
// verifies what it made, so that it never hands out a token the server
// would refuse.
func mintToken(secret []byte, c tokenClaims, now time.Time) (string, error) {
	payload, err := json.Marshal(struct {
		Name  string   `json:"name,omitempty"`
		Sub   string   `json:"sub,omitempty"`
		Rooms []string `json:"rooms"`
		Iat   int64    `json:"iat"`
		Nbf   int64    `json:"nbf,omitempty"`
		Exp   int64    `json:"exp"`
	}{c.Name, c.Subject, c.Rooms, now.Unix(), unixOrZero(c.NotBefore), c.Expires.Unix()})
	if err != nil {
		return "", err
	}
	token := signToken(secret, []byte(tokenHeader), payload)
	if _, err := verifyToken(secret, token, now); err != nil {
		return "", err
	}
	return token, nil
}

// unixOrZero is t in seconds since 1970, or 0 (absent) for the zero time.
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// signToken is the compact JWS (RFC 7515 §7.1) of header and payload,
// signed with HS256: the tests use it to sign what mintToken would not.
func signToken(secret, header, payload []byte) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	return signed + "." + enc.EncodeToString(hs256(secret, signed))
}

// runToken is `roomchat token`: it prints a token made with the secret in
// $ROOMCHAT_TOKEN_SECRET, for development and tests. It has no flag for the
// secret, so that the secret is never in the process list.
func runToken(args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("roomchat token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "the user's display `name`, up to 100 characters")
	sub := fs.String("sub", "", "the user's `id`; the display name too when there is no -name")
	var rooms roomList
	fs.Var(&rooms, "room", "a `room` the token may join, or * for any; repeat the flag or separate rooms with commas")
	ttl := fs.Duration("ttl", defaultTokenTTL, "how long the token is valid")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: roomchat token -name NAME -room ROOM [-room ROOM…] [-sub ID] [-ttl 1h]\n\n"+
			"Prints a connection token signed with $%s, which the server must have too.\n\n", tokenSecretEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "roomchat token: "+format+"\n", a...)
		return code
	}
	switch {
	case fs.NArg() > 0: // the value is not printed: it may be a secret
		return fail(2, "unexpected argument; the secret goes in $%s, never on the command line", tokenSecretEnv)
	case *name == "" && *sub == "":
		return fail(2, "-name or -sub is required")
	case len(rooms) == 0:
		return fail(2, "-room is required: a room name, or * for any room")
	case *ttl < time.Second:
		return fail(2, "-ttl must be at least 1s")
	}
	secret, err := tokenSecretFrom(lookup)
	if err == nil && secret == nil {
		err = fmt.Errorf("$%s is not set: set it to the server's secret", tokenSecretEnv)
	}
	if err != nil {
		return fail(1, "%v", err)
	}
	now := time.Now()
	token, err := mintToken(secret, tokenClaims{Name: *name, Subject: *sub, Rooms: rooms, Expires: now.Add(*ttl)}, now)
	if err != nil {
		return fail(2, "%v", err)
	}
	if _, err := fmt.Fprintln(stdout, token); err != nil {
		return fail(1, "%v", err)
	}
	return 0
}

// roomList is the -room flag: repeated, or separated with commas.
type roomList []string

// String is the list as -room would take it back.
func (l *roomList) String() string { return strings.Join(*l, ",") }

// Set adds one -room's rooms; mintToken checks them.
func (l *roomList) Set(s string) error {
	*l = append(*l, splitList(s)...)
	return nil
}
