package main

// How a handshake carries a token (tokenhandshake.go): through x/net's
// server on a real socket, from Chromium, and at a roomchat server.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

func TestTokenFromRequest(t *testing.T) {
	const tok = "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"
	tests := []struct {
		name     string
		header   http.Header
		want     string
		err      error
		protocol []string // chosenSubprotocol's answer
	}{
		{name: "bearer", header: http.Header{"Authorization": {"Bearer " + tok}}, want: tok},
		{name: "bearer in lower case, two spaces", header: http.Header{"Authorization": {"bearer  " + tok}}, want: tok},
		{name: "subprotocols on one line", header: http.Header{"Sec-Websocket-Protocol": {"roomchat.token, " + tok}}, want: tok, protocol: []string{"roomchat.token"}},
		{name: "subprotocols on two lines", header: http.Header{"Sec-Websocket-Protocol": {"roomchat.token", tok}}, want: tok, protocol: []string{"roomchat.token"}},
		{name: "other subprotocols around", header: http.Header{"Sec-Websocket-Protocol": {"chat.v2,roomchat.token," + tok + ",x"}}, want: tok, protocol: []string{"roomchat.token"}},
		{name: "none", header: http.Header{}, err: errNoToken},
		{name: "token offered alone", header: http.Header{"Sec-Websocket-Protocol": {tok}}, err: errNoToken},
		{name: "query string is not read", header: http.Header{}, err: errNoToken},
		{name: "basic", header: http.Header{"Authorization": {"Basic YWxpY2U6aHVudGVyMg=="}}, err: errTokenMalformed},
		{name: "bearer without a token", header: http.Header{"Authorization": {"Bearer"}}, err: errTokenMalformed},
		{name: "two Authorization headers", header: http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}}, err: errTokenMalformed},
		{name: "roomchat.token last", header: http.Header{"Sec-Websocket-Protocol": {tok + ", roomchat.token"}}, err: errTokenMalformed, protocol: []string{"roomchat.token"}},
		{name: "roomchat.token twice", header: http.Header{"Sec-Websocket-Protocol": {"roomchat.token, " + tok + ", roomchat.token, x"}}, err: errTokenMalformed, protocol: []string{"roomchat.token"}},
		{name: "in both places", header: http.Header{"Authorization": {"Bearer " + tok}, "Sec-Websocket-Protocol": {"roomchat.token, " + tok}}, err: errTokenMalformed, protocol: []string{"roomchat.token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/ws/chat/room1/?token="+tok, nil)
			r.Header = tt.header
			got, err := tokenFromRequest(r)
			if got != tt.want || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("tokenFromRequest = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
			if err != nil && (strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), "YWxp")) {
				t.Errorf("the error shows what the header held: %v", err)
			}
			if p := chosenSubprotocol(r); !slices.Equal(p, tt.protocol) {
				t.Errorf("chosenSubprotocol = %q, want %q", p, tt.protocol)
			}
		})
	}
}

// tokenHandshakeServer is x/net's WebSocket server alone, with the
// Handshake func tokenhandshake.go asks upgrade to have: it selects the subprotocol
// and hands the token it found to seen.
func tokenHandshakeServer(t *testing.T, seen chan<- string) *httptest.Server {
	srv := httptest.NewServer(websocket.Server{
		Handshake: func(cfg *websocket.Config, r *http.Request) error {
			cfg.Protocol = chosenSubprotocol(r)
			token, err := tokenFromRequest(r)
			if err != nil {
				token = err.Error()
			}
			seen <- token
			return nil
		},
		Handler: func(ws *websocket.Conn) { ws.Close() },
	})
	t.Cleanup(srv.Close)
	return srv
}

// TestTokenSubprotocolHandshake offers the token as a browser does, on a
// real socket to x/net's server, and reads the 101 as it comes: it selects
// roomchat.token, and never echoes the token, even offered alone.
func TestTokenSubprotocolHandshake(t *testing.T) {
	token := hourToken(t, []byte(testSecret), "Alice", "room1")
	seen := make(chan string, 1)
	srv := tokenHandshakeServer(t, seen)

	tests := []struct {
		name, offer  string
		wantProtocol []string
		wantSeen     string
	}{
		{"as a browser offers it", "roomchat.token, " + token, []string{"roomchat.token"}, token},
		{"token alone", token, nil, errNoToken.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET /ws/chat/room1/ HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
				"Origin: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n", srv.Listener.Addr(), srv.URL, tt.offer)
			if got := <-seen; got != tt.wantSeen {
				t.Errorf("the handshake saw %q, want %q", got, tt.wantSeen)
			}
			head, err := readResponseHead(conn)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %s", resp.Status)
			}
			if got := resp.Header.Values("Sec-Websocket-Protocol"); !slices.Equal(got, tt.wantProtocol) {
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tt.wantProtocol)
			}
			if strings.Contains(head, token) {
				t.Errorf("the response holds the token:\n%s", head)
			}
		})
	}

	// x/net's own client, which checks that the server chose one of its offers.
	cfg, err := websocket.NewConfig("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/chat/room1/", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{tokenSubprotocol, token}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if got := <-seen; got != token {
		t.Errorf("the handshake saw %q", got)
	}
	if !slices.Equal(ws.Config().Protocol, []string{tokenSubprotocol}) {
		t.Errorf("client's protocol %q", ws.Config().Protocol)
	}
}

// readResponseHead reads an HTTP response's head, up to its blank line,
// within 5 s.
func readResponseHead(conn net.Conn) (string, error) {
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			return head.String(), err
		}
		if line == "\r\n" {
			return head.String(), nil
		}
	}
}

// TestTokenSubprotocolInBrowser has Chromium offer ["roomchat.token",
// token], as the chat page would: the browser takes a JWT as a subprotocol
// and opens the socket when the server selects roomchat.token. Without the
// selection, x/net refuses two offers with 400 and the browser gives up.
func TestTokenSubprotocolInBrowser(t *testing.T) {
	t.Parallel()
	token := hourToken(t, []byte(testSecret), "Alice", "*")
	b := startBrowser(t)
	seen := make(chan string, 10)
	selecting := tokenHandshakeServer(t, seen)
	unselecting := httptest.NewServer(websocket.Server{
		Handshake: func(*websocket.Config, *http.Request) error { return nil },
		Handler:   func(ws *websocket.Conn) { ws.Close() },
	})
	defer unselecting.Close()
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<!doctype html><title>token</title>")
	}))
	defer page.Close()

	tab := b.newTab(t, page.URL)
	open := func(server string) string {
		url := "ws" + strings.TrimPrefix(server, "http") + "/ws/chat/room1/"
		tab.eval(t, fmt.Sprintf(`window.result = undefined; (() => {
			const ws = new WebSocket(%s, ["roomchat.token", %s]);
			ws.onopen = () => { window.result = "open " + ws.protocol; ws.close(); };
			ws.onerror = () => { window.result = "error"; };
		})(); true`, jsString(url), jsString(token)))
		tab.waitFor(t, `window.result !== undefined`)
		var got string
		if err := json.Unmarshal(tab.eval(t, `window.result`), &got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := open(selecting.URL); got != "open roomchat.token" {
		t.Errorf("selecting server: %s, want open roomchat.token", got)
	}
	if got := <-seen; got != token {
		t.Errorf("the handshake saw %q", got)
	}
	if got := open(unselecting.URL); got != "error" {
		t.Errorf("server that does not select: %s, want error", got)
	}
}

// TestTokenAtTheHandshake runs a server with tokens: each kind of token is
// answered as docs/protocol.md says, before the 101, and the log says why
// without the token; a member's messages go out under its token's name.
func TestTokenAtTheHandshake(t *testing.T) {
	secret := []byte(strings.Repeat("s", minTokenSecretBytes))
	var logs syncBuffer
	h, err := buildHub(options{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s := serveHub(t, h, options{secret: secret})
	now := time.Now()
	mint := func(c tokenClaims) string {
		t.Helper()
		tok, err := mintToken(secret, c, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice := mint(tokenClaims{Name: "Alice", Subject: "u1", Rooms: []string{"room1"}, Expires: now.Add(time.Hour)})
	anyRoomToken := mint(tokenClaims{Subject: "u2", Rooms: []string{anyRoom}, Expires: now.Add(time.Hour)})
	other, _ := mintToken([]byte(strings.Repeat("x", minTokenSecretBytes)), tokenClaims{Name: "Eve", Rooms: []string{anyRoom}, Expires: now.Add(time.Hour)}, now)
	header, payload, _ := segments(alice)
	tests := []struct {
		name, room, bearer, protocol string
		want                         int
	}{
		{"no token", "room1", "", "", 401},
		{"a token signed with another secret", "room1", other, "", 401},
		{"tampered", "room1", header + "." + b64(`{"name":"Alice","rooms":["*"],"exp":9999999999}`) + "." + strings.Split(alice, ".")[2], "", 401},
		{"alg none", "room1", b64(`{"alg":"none"}`) + "." + payload + ".", "", 401},
		{"expired", "room1", signToken(secret, []byte(tokenHeader), []byte(fmt.Sprintf(`{"name":"Alice","rooms":["room1"],"exp":%d}`, now.Add(-time.Hour).Unix()))), "", 401},
		{"a room outside its claims", "room2", alice, "", 403},
		{"bearer", "room1", alice, "", 101},
		{"subprotocol", "room1", "", alice, 101},
		{"any room", "elsewhere", anyRoomToken, "", 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := http.Header{}
			if tt.bearer != "" {
				header.Set("Authorization", "Bearer "+tt.bearer)
			}
			if tt.protocol != "" {
				header.Set("Sec-WebSocket-Protocol", tokenSubprotocol+", "+tt.protocol)
			}
			code, conn := hold(t, s, "/ws/chat/"+tt.room+"/", header)
			if code != tt.want {
				t.Fatalf("status %d, want %d", code, tt.want)
			}
			conn.Close()
		})
	}
	for _, tok := range []string{alice, other, anyRoomToken, payload} {
		checkQuiet(t, logs.String(), tok)
	}
	if !strings.Contains(logs.String(), "token expired") || !strings.Contains(logs.String(), "bad token signature") {
		t.Errorf("the log does not say why tokens were refused:\n%s", logs.String())
	}

	// Alice says something in Mallory's name: the room hears Alice's.
	bob := dialWithToken(t, s, "room1", anyRoomToken)
	a := dialWithToken(t, s, "room1", alice)
	sendText(t, a, chat("hi", "Mallory"))
	expectText(t, bob, chat("hi", "Alice"))
}

// dialWithToken joins room as a program does, with the token in
// Authorization.
func dialWithToken(t *testing.T, s *testServer, room, token string) *websocket.Conn {
	t.Helper()
	cfg, err := websocket.NewConfig(s.wsURL(room), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = http.Header{"Authorization": {"Bearer " + token}}
	c, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTokenRefusalSaysWhereTheTokenGoes(t *testing.T) {
	s := newTestServer(t, options{secret: []byte(strings.Repeat("s", minTokenSecretBytes))})
	const where = "A program sends it in `Authorization: Bearer <token>`; " +
		`a browser offers the subprotocols ["roomchat.token", <token>].`
	for _, tc := range []struct{ name, query, want string }{
		{"no token", "", "a valid token is needed to join: no token. " + where + "\n"},
		{"a token in the URL", "?token=abc", "a valid token is needed to join: no token. " + where +
			" A ?token= in the URL is not read: URLs end up in logs and histories.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", s.URL+"/ws/chat/room/"+tc.query, nil)
			setUpgradeHeaders(req.Header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || string(body) != tc.want {
				t.Fatalf("got %d %q, want 401 %q", resp.StatusCode, body, tc.want)
			}
		})
	}
}

// TestTokenExpiryClosesTheConnection holds a connection whose token ends
// (exp and the leeway) one to two seconds after the handshake: the server
// closes it then, with 4401 "token expired".
func TestTokenExpiryClosesTheConnection(t *testing.T) {
	t.Parallel()
	secret := []byte(strings.Repeat("s", minTokenSecretBytes))
	s := newTestServer(t, options{secret: secret})
	now := time.Now().Truncate(time.Second) // exp is whole seconds
	// Expired nearly tokenLeeway ago: still admitted, for two seconds more.
	end := now.Add(2 * time.Second)
	tok, err := mintToken(secret, tokenClaims{Name: "A", Rooms: []string{"r"}, Expires: end.Add(-tokenLeeway)}, now)
	if err != nil {
		t.Fatal(err)
	}
	c := dialWithToken(t, s, "r", tok)
	for {
		op, payload := readFrame(t, c)
		if op != websocket.CloseFrame {
			continue
		}
		want := binary.BigEndian.AppendUint16(nil, closeTokenExpired)
		if want = append(want, "token expired"...); string(payload) != string(want) {
			t.Fatalf("close frame %q, want %q", payload, want)
		}
		break
	}
	if early := time.Until(end); early > 0 {
		t.Fatalf("closed %v before the token ended", early)
	}
	s.waitHealth(t, func(h health) bool { return h.Connections == 0 })
}
