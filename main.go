// Command roomchat is a multi-room WebSocket chat server: open
// http://localhost:8000/chat/ in two tabs, join the same room, and talk.
//
// It is the Go edition of the Chanx chat tutorial and speaks its protocol
// (docs/protocol.md). This file is the outside of the server: flags,
// routes, the WebSocket handshake with its checks, and a graceful shutdown.
// The README's "Reading order" says which file holds what, and in which
// order to read them.
package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// roomPattern is the room rule of the Channels group layer: 1 to 99
// characters of A-Z a-z 0-9 . _ -. static/asyncapi.json states it too.
const roomPattern = `^[A-Za-z0-9._-]{1,99}$`

var roomRE = regexp.MustCompile(roomPattern)

// Limits of the HTTP server itself, so that a slow or idle client cannot
// hold a connection open for free. WebSocket connections leave net/http's
// hands after the handshake and set their own deadlines (client.go).
const (
	readHeaderTimeout = 5 * time.Second
	httpReadTimeout   = 10 * time.Second
	httpWriteTimeout  = 10 * time.Second
	httpIdleTimeout   = 60 * time.Second
	maxHeaderBytes    = 16 << 10

	// shutdownTimeout is how long SIGINT or SIGTERM waits for connections
	// to close with 1001 before cutting the rest off, so that the process
	// exits inside the 5 s docs/protocol.md promises.
	shutdownTimeout = 4 * time.Second
)

// static holds the chat page, the docs page and the AsyncAPI document, so the
// binary is the whole app.
//
//go:embed static
var static embed.FS

// options are the settings that flags control, gathered so that tests can
// build a server without flags.
type options struct {
	addr      string         // where the server listens, for the Host check (security.go)
	origins   []string       // extra origins allowed to open a WebSocket
	hosts     []string       // extra Host names a loopback server answers to
	rate      float64        // messages a second per connection; 0 is no limit
	history   int            // messages each room keeps for clients that ask; 0 is none
	redis     string         // URL of the Redis that shares rooms with other processes; "" for none
	maxConns  int            // TCP connections in all; 0 is no limit
	perClient int            // TCP connections, and WebSockets, per client address; 0 is no limit
	proxies   []netip.Prefix // reverse proxies whose Forwarded and X-Forwarded-For are believed
	metrics   net.Listener   // where /metrics is served alone (-metrics-addr); nil: on the main listener, to loopback (metrics.go)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		os.Exit(runToken(os.Args[2:], os.LookupEnv, os.Stdout, os.Stderr)) // token.go
	}
	addr := flag.String("addr", "localhost:8000", "listen `address`; :8000 listens on every interface")
	origins := flag.String("origins", "", "comma-separated extra `origins` allowed to connect, such as https://chat.example.com")
	rate := flag.Float64("rate", defaultRate, "messages a second per connection, with bursts of twice that; 0 turns off this and the byte and frame limits")
	redis := flag.String("redis", "", "share rooms with other roomchat processes through the Redis at this `URL`: redis://[:password@]host:port, or rediss:// for TLS; "+
		"better given as $"+redisURLEnv+", which other users cannot read in the process list")
	hosts := flag.String("hosts", "", "comma-separated extra `names` a server listening on loopback answers to (DNS rebinding defence)")
	maxConns := flag.Int("max-conns", fdLimit()-fdReserve, "TCP `connections` in all, plain HTTP included; the default leaves some of the descriptor limit free")
	perClient := flag.Int("max-per-client", defaultMaxPerClient, "TCP connections, and WebSockets, one client address may hold; 0 for no limit")
	trustProxy := flag.String("trust-proxy", "", "comma-separated `CIDRs` of reverse proxies whose Forwarded or X-Forwarded-For names the client")
	history := flag.Int("history", defaultHistory, "`messages` each room keeps, for clients that ask for them (?history, ?since=ID); 0 turns history off")
	verbose := flag.Bool("v", false, "log every frame in and out")
	metricsAddr := flag.String("metrics-addr", "", "serve /metrics on this `address` alone; without it, the main address serves it to loopback clients only")
	logFormat := logFormatFlag()
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(logHandler(*logFormat, os.Stderr, &slog.HandlerOptions{Level: level}))

	if *redis == "" {
		*redis = os.Getenv(redisURLEnv)
	}
	proxies, err := parsePrefixes(splitList(*trustProxy))
	if err != nil {
		log.Error("-trust-proxy", "err", err)
		os.Exit(2)
	}
	opts := options{
		addr: *addr, origins: splitList(*origins), hosts: splitList(*hosts), rate: *rate, redis: *redis, history: *history,
		maxConns: *maxConns, perClient: *perClient, proxies: proxies,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err == nil {
		opts.metrics, err = listenMetrics(*metricsAddr)
	}
	if err == nil {
		err = run(ctx, ln, opts, log)
	}
	if err != nil {
		log.Error("roomchat stopped", "err", err)
		os.Exit(1)
	}
}

// run serves on ln until ctx ends, then shuts down: no new connections,
// every WebSocket closed with 1001, all within shutdownTimeout. Every
// connection ln accepts is counted against opts' limits (connlimit.go).
func run(ctx context.Context, ln net.Listener, opts options, log *slog.Logger) error {
	h, err := buildHub(opts, log)
	if err != nil {
		ln.Close()
		return err
	}
	limit := newConnLimit(opts.maxConns, opts.perClient, opts.proxies)
	ln = limit.listen(ln)
	defer serveMetrics(h, limit, opts, log)()
	srv := &http.Server{
		Handler:           newMux(h, opts, limit),
		ConnState:         limit.track,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	base := "http://" + browsableHost(ln.Addr().String())
	log.Info("roomchat listening", "chat", base+"/chat/", "docs", base+"/asyncapi/docs/", "broker", h.broker.status().Kind)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}

	_, conns := h.counts()
	log.Info("shutting down", "connections", conns)
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Shutdown stops the listener and waits for plain HTTP requests; it
	// does not see hijacked connections, which the hub closes meanwhile.
	var wg sync.WaitGroup
	wg.Go(func() { h.shutdown(ctx) })
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("HTTP shutdown", "err", err)
	}
	wg.Wait()
	return nil
}

// buildHub makes the hub with its broker: in memory, or Redis's when opts
// asks for it, which fails if that Redis cannot be reached.
func buildHub(opts options, log *slog.Logger) (*hub, error) {
	var b broker
	if opts.redis == "" {
		b = newMemoryBroker(opts.history)
	} else {
		rb, err := dialRedisBroker(opts.redis, log, opts.history)
		if err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
		b = rb
	}
	h := newHub(b, newRateLimit(opts.rate), log)
	h.perClient, h.proxies = opts.perClient, opts.proxies
	return h, nil
}

// newMux routes every URL the server answers. It is the whole HTTP surface,
// behind the Host check and the security headers (security.go). limit, the
// TCP connection counts for /healthz, may be nil.
func newMux(h *hub, opts options, limit *connLimit) http.Handler {
	chat := chatHandler(h, opts.origins)
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", http.RedirectHandler("/chat/", http.StatusFound))
	mux.HandleFunc("GET /chat/{$}", servePage("static/chat.html"))
	mux.Handle("GET /static/", noListing(http.FileServerFS(static)))
	// The slash-less path is served, not redirected: a browser's
	// WebSocket handshake does not follow redirects.
	mux.HandleFunc("GET /ws/chat/{room}/{$}", chat)
	mux.HandleFunc("GET /ws/chat/{room}", chat)
	mux.HandleFunc("GET /healthz", healthz(h, limit))
	mux.HandleFunc("GET /metrics", metricsOnMain(h, limit, opts))
	mux.HandleFunc("GET /asyncapi/schema/{$}", serveSchema)
	mux.HandleFunc("GET /asyncapi/docs/{$}", servePage("static/docs.html"))
	return protect(mux, opts.addr, opts.hosts, &h.stats)
}

// chatHandler upgrades GET /ws/chat/{room}/ to a WebSocket in that room, in
// three steps. admit refuses, with a plain HTTP answer, what must not be
// upgraded (a bad room name is 400, a full server 503). upgrade answers the
// handshake on a connection taken from net/http (upgrade.go); before it
// writes the 101, the origin is checked and the client joins its room. Then
// the connection is served on a goroutine of its own, and this handler
// returns: net/http keeps nothing for it.
func chatHandler(h *hub, extraOrigins []string) http.HandlerFunc {
	allowed := make(map[string]bool, len(extraOrigins))
	for _, o := range extraOrigins {
		allowed[normalizeOrigin(o)] = true
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		roomName, ok := admit(w, r, h)
		if !ok {
			return
		}
		c := newClient(h, clientAddr(r, h.proxies))
		c.history = parseHistoryRequest(r.URL.Query())
		conn, in, err := upgrade(w, r, func(r *http.Request) error {
			if !originAllowed(r, allowed) {
				h.log.Info("refused foreign origin", "origin", r.Header.Get("Origin"), "host", r.Host, "remote", r.RemoteAddr)
				h.stats.refuse(refusedOrigin)
				return errForeignOrigin
			}
			return h.join(c, roomName)
		})
		if err != nil {
			if !errors.Is(err, errRefused) {
				h.log.Error("cannot take the connection from net/http", "remote", r.RemoteAddr, "err", err)
			}
			h.leave(c) // undoes a join whose handshake then failed
			return
		}
		h.stats.handshake.observe(time.Since(start))
		go c.serve(conn, in)
	}
}

// admit answers, with a plain-text reason, a request that must not be
// upgraded, and otherwise returns the room it asks for.
func admit(w http.ResponseWriter, r *http.Request, h *hub) (roomName string, ok bool) {
	roomName = r.PathValue("room") // already percent-decoded
	switch err := h.hasRoomFor(clientAddr(r, h.proxies)); {
	case !roomRE.MatchString(roomName):
		h.stats.refuse(refusedRoomName)
		http.Error(w, "invalid room name: use 1 to 99 characters of A-Z a-z 0-9 . _ -", http.StatusBadRequest)
	case errors.Is(err, errTooManyFromAddr):
		h.stats.refuse(refusedPerAddress)
		http.Error(w, "too many connections from your address", http.StatusTooManyRequests)
	case err != nil:
		h.stats.refuse(refusalOf(err))
		http.Error(w, "server full, try again later", http.StatusServiceUnavailable)
	default:
		return roomName, true
	}
	return "", false
}

// errForeignOrigin refuses a handshake from a page on another site.
var errForeignOrigin = errors.New("origin not allowed")

// originAllowed is the defence against cross-site WebSocket hijacking: a
// page on another site must not open a socket with this site's cookies.
// Browsers always send Origin; a request without one is not from a page and
// is allowed. x/net/websocket's default check accepts any parseable Origin,
// so it is no defence, which is why the server brings its own.
func originAllowed(r *http.Request, allowed map[string]bool) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if allowed[normalizeOrigin(origin)] {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" { // "null" (sandboxed pages, files) has no host
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// normalizeOrigin makes "HTTPS://Chat.Example.com/" and
// "https://chat.example.com" the same entry.
func normalizeOrigin(o string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
}

// healthz reports that the server is up, with its counts and running totals:
// enough for a load balancer, and for a test to see a connection go.
func healthz(h *hub, limit *connLimit) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rooms, conns := h.counts()
		tcp, refused := 0, int64(0)
		if limit != nil {
			tcp, refused = limit.counts()
		}
		writeJSON(w, map[string]any{
			"tcp_connections":      tcp,
			"refused_connections":  refused,
			"status":               "ok",
			"rooms":                rooms,
			"connections":          conns,
			"messages_received":    h.stats.received.Load(),
			"frames_delivered":     h.stats.delivered.Load(),
			"slow_clients_dropped": h.stats.dropped.Load(),
			"layer":                h.broker.status(), // its name before brokers, kept for monitors that read it
		})
	}
}

// servePage serves one embedded HTML page.
func servePage(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, name)
	}
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeBody(w, "application/json", append(body, '\n'))
}

// writeBody sends a response. A write fails only when the client has gone
// away, and then there is no one left to tell: it is logged at debug level.
func writeBody(w http.ResponseWriter, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	if _, err := w.Write(body); err != nil {
		slog.Debug("response not sent", "err", err)
	}
}

// parsePrefixes reads CIDRs such as 10.0.0.0/8, or bare addresses.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, err
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
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
