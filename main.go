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
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
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
	addr       string         // where the server listens, for the Host check (security.go)
	origins    []string       // extra origins allowed to open a WebSocket
	hosts      []string       // extra Host names a loopback server answers to
	rate       float64        // messages a second per connection; 0 is no limit
	history    int            // messages each room keeps for clients that ask; 0 is none
	redis      string         // URL of the Redis that shares rooms with other processes; "" for none
	maxConns   int            // TCP connections in all; 0 is no limit
	perClient  int            // WebSockets per client address, and TCP connections (with some slack, connlimit.go); 0 is no limit
	proxies    []netip.Prefix // reverse proxies whose Forwarded and X-Forwarded-For are believed
	ipv6Prefix int            // leading bits of an IPv6 address that name one client (addrKey); 0 is defaultIPv6Prefix
	metrics    net.Listener   // where /metrics is served alone (-metrics-addr); nil: on the main listener, to loopback (metrics.go)
	secret     []byte         // the key of connection tokens ($ROOMCHAT_TOKEN_SECRET); nil: no tokens (token.go)
	apiKey     []byte         // the key of the HTTP API ($ROOMCHAT_API_KEY); nil: no API (api.go)
	data       string         // the directory that keeps every room's history on disk (-data, journal.go); "" for none
	dataKeep   time.Duration  // how long, with data, a room's history outlives its last member

	apiPlaceWait time.Duration // how long an API publish waits before 202; 0 is apiPlaceWait. Tests only: no flag sets it
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		os.Exit(runToken(os.Args[2:], os.LookupEnv, os.Stdout, os.Stderr)) // tokencmd.go
	}
	addr := flag.String("addr", "localhost:8000", "listen `address`; :8000 listens on every interface")
	origins := flag.String("origins", "", "comma-separated extra `origins` allowed to connect, such as https://chat.example.com")
	rate := flag.Float64("rate", defaultRate, "messages a second per connection, with bursts of twice that; 0 turns off this and the byte and frame limits")
	redis := flag.String("redis", "", "share rooms with other roomchat processes through the Redis at this `URL`: redis://[[user]:password@]host[:port], or rediss:// for TLS; "+
		"better given as $"+redisURLEnv+", which other users cannot read in the process list")
	hosts := flag.String("hosts", "", "comma-separated extra `names` a server listening on loopback answers to (DNS rebinding defence)")
	maxConns := flag.Int("max-conns", fdLimit()-fdReserve, "TCP `connections` in all, plain HTTP included; the default leaves some of the descriptor limit free")
	perClient := flag.Int("max-per-client", defaultMaxPerClient, "WebSockets one client address may hold, and as many TCP connections and a few more; 0 for no limit")
	trustProxy := flag.String("trust-proxy", "", "comma-separated `CIDRs` of reverse proxies whose Forwarded or X-Forwarded-For names the client")
	ipv6Prefix := flag.Int("ipv6-prefix", defaultIPv6Prefix, "leading `bits` of an IPv6 address that the per-address limits count as one client; 128 counts every address apart")
	history := flag.Int("history", defaultHistory, "`messages` each room keeps, for clients that ask for them (?history, ?since=ID); 0 turns history off")
	verbose := flag.Bool("v", false, "log every frame in and out")
	data := flag.String("data", "", "keep every room's history in this `directory` too, so that it survives a restart (one process, not with -redis); "+
		"or $"+dataDirEnv)
	dataKeep := flag.Duration("data-keep", defaultDataKeep, "with -data, how long a room's history outlives its last member")
	metricsAddr := flag.String("metrics-addr", "", "serve /metrics on this `address` alone; without it, the main address serves it to loopback clients only")
	logFormat := logFormatFlag()
	flag.Usage = usage
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(logHandler(*logFormat, os.Stderr, &slog.HandlerOptions{Level: level}))

	if *redis == "" {
		*redis = os.Getenv(redisURLEnv)
	}
	if *data == "" {
		*data = os.Getenv(dataDirEnv)
	}
	invalid := func(what string, err error) { // a setting that cannot work: exit 2, as flag does
		if err != nil {
			log.Error(what, "err", err)
			os.Exit(2)
		}
	}
	proxies, err := parsePrefixes(splitList(*trustProxy))
	invalid("-trust-proxy", err)
	if *ipv6Prefix < 1 || *ipv6Prefix > 128 {
		invalid("-ipv6-prefix", fmt.Errorf("%d bits: want 1 to 128", *ipv6Prefix))
	}
	secret, err := tokenSecretFrom(os.LookupEnv)
	invalid("$"+tokenSecretEnv, err)
	apiKey, err := apiKeyFrom(os.LookupEnv)
	invalid("$"+apiKeyEnv, err)
	if *data != "" && *redis != "" {
		invalid("-data", errDataWithRedis)
	}
	if *dataKeep <= 0 {
		invalid("-data-keep", errDataKeep)
	}
	opts := options{
		addr: *addr, origins: splitList(*origins), hosts: splitList(*hosts), rate: *rate, redis: *redis, history: *history,
		maxConns: *maxConns, perClient: *perClient, proxies: proxies, ipv6Prefix: *ipv6Prefix, secret: secret, apiKey: apiKey,
		data: *data, dataKeep: *dataKeep,
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

// usage is -h: the subcommand, the variables, then the flags. Secrets
// are variables only: a flag's value is in the process list for every user
// of the machine to read.
func usage() {
	out := flag.CommandLine.Output()
	fmt.Fprintf(out, `usage: roomchat [flags]
       roomchat token -name NAME -room ROOM [-sub ID] [-ttl 1h]
                  prints a connection token signed with $%[2]s (roomchat token -h)

Environment:
  %-22[1]s the Redis to share rooms through, when -redis is not given
  %-22[2]s turns connection tokens on: the secret that signs them, 32 bytes or more
  %-22[3]s turns the HTTP API (/api/) on: its key, 16 bytes or more
  %-22[4]s the directory that keeps history on disk, when -data is not given

Flags:
`, redisURLEnv, tokenSecretEnv, apiKeyEnv, dataDirEnv)
	flag.PrintDefaults()
}

// run serves on ln until ctx ends, then shuts down within shutdownTimeout.
// Every connection ln accepts is counted against opts' limits (connlimit.go).
func run(ctx context.Context, ln net.Listener, opts options, log *slog.Logger) error {
	h, err := buildHub(opts, log)
	if err != nil {
		ln.Close()
		return err
	}
	limit := newConnLimit(opts)
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
	log.Info("roomchat listening", "chat", base+"/chat/", "docs", base+"/asyncapi/docs/", "broker", h.broker.status().Kind,
		"tokens", opts.secret != nil, "api", opts.apiKey != nil)

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
		mb := newMemoryBroker(opts.history)
		if opts.data != "" {
			if err := mb.openData(opts.data, opts.dataKeep, log); err != nil {
				mb.close()
				return nil, fmt.Errorf("-data %s: %w", opts.data, err)
			}
		}
		b = mb
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
	chat := chatHandler(h, opts)
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", http.RedirectHandler("/chat/", http.StatusFound))
	mux.HandleFunc("GET /chat/{$}", servePage("static/chat.html"))
	mux.Handle("GET /static/", noListing(http.FileServerFS(static)))
	// The slash-less path is served, not redirected: a browser's
	// WebSocket handshake does not follow redirects. An empty room name
	// is a bad room name, however the path is written.
	mux.HandleFunc("GET /ws/chat/{room}/{$}", chat)
	mux.HandleFunc("GET /ws/chat/{room}", chat)
	mux.HandleFunc("GET /ws/chat/{$}", chat)
	mux.HandleFunc("GET /healthz", healthz(h, limit, opts))
	mux.HandleFunc("GET /metrics", metricsOnMain(h, limit, opts))
	mux.HandleFunc("GET /asyncapi/schema/{$}", serveSchema(opts.proxies))
	mux.HandleFunc("GET /asyncapi/docs/{$}", servePage("static/docs.html"))
	if opts.apiKey != nil {
		mux.Handle("/api/", apiHandler(h, opts))
	}
	routes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/ws/chat//") {
			chat(w, r) // an empty room name: 400, not the mux's redirect of the doubled slash
			return
		}
		mux.ServeHTTP(w, r)
	})
	return protect(routes, opts.addr, opts.hosts, &h.stats)
}

// chatHandler upgrades GET /ws/chat/{room}/ to a WebSocket in that room, in
// three steps: admit refuses, with a plain HTTP answer, what must not be
// upgraded; upgrade answers the handshake (upgrade.go), joining the client
// to its room before the 101; then the connection is served on a goroutine
// of its own, and net/http keeps nothing for it, until its token (if any)
// expires.
func chatHandler(h *hub, opts options) http.HandlerFunc {
	allowed := make(map[string]bool, len(opts.origins))
	for _, o := range opts.origins {
		allowed[normalizeOrigin(o)] = true
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c, ok := admit(w, r, h, opts, allowed)
		if !ok {
			return
		}
		conn, in, err := upgrade(w, r, func(*http.Request) error {
			h.join(c)
			return nil
		})
		if err != nil {
			if !errors.Is(err, errRefused) {
				h.log.Error("cannot take the connection from net/http", "remote", c.addr, "err", err)
			}
			h.leave(c) // undoes what admit counted
			return
		}
		h.stats.handshake.observe(time.Since(start))
		go func() {
			stop := expireWithToken(c) // tokenhandshake.go
			c.serve(conn, in)
			stop()
		}()
	}
}

// admit answers, with a plain-text reason, a request that must not be
// upgraded: a bad room name, an unreadable forwarded client, a page from
// another origin (origins: -origins, normalized), a missing or bad token,
// an address at its cap. Otherwise it returns the client, counted in its
// room (hub.enter), so that the server cannot fill up between the answer
// and the join.
func admit(w http.ResponseWriter, r *http.Request, h *hub, opts options, origins map[string]bool) (*client, bool) {
	roomName := r.PathValue("room") // already percent-decoded
	if !roomRE.MatchString(roomName) {
		h.stats.refuse(refusedRoomName)
		http.Error(w, "invalid room name: use 1 to 99 characters of A-Z a-z 0-9 . _ -", http.StatusBadRequest)
		return nil, false
	}
	addr, err := clientAddr(r, opts.proxies, opts.ipv6Prefix)
	if err != nil {
		h.log.Info("refused an unreadable forwarded address", "proxy", r.RemoteAddr, "why", err)
		h.stats.refuse(refusedForwarded)
		http.Error(w, err.Error()+": a proxy listed with -trust-proxy must name the client by its IP address, "+
			"in Forwarded (for=) or X-Forwarded-For", http.StatusBadRequest)
		return nil, false
	}
	if scheme := requestScheme(r, opts.proxies); !originAllowed(r, origins, scheme) {
		h.log.Info("refused foreign origin", "origin", r.Header.Get("Origin"), "host", r.Host, "scheme", scheme, "remote", addr)
		h.stats.refuse(refusedOrigin)
		refuseForeignOrigin(w, r, scheme)
		return nil, false
	}
	c := newClient(h, addr)
	query := r.URL.Query()
	c.history = parseHistoryRequest(query, opts.history)
	if opts.secret != nil {
		if c.token = checkToken(w, r, h, opts.secret, roomName, addr); c.token == nil {
			return nil, false
		}
	}
	if c.name, c.presence, err = presenceQuery(query, c.token); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	switch err = h.enter(c, roomName); {
	case errors.Is(err, errTooManyFromAddr):
		h.stats.refuse(refusedPerAddress)
		refuseRetry(w, "too many connections from your address", http.StatusTooManyRequests)
	case err != nil:
		h.stats.refuse(refusedShuttingDown)
		refuseRetry(w, "server shutting down, try again later", http.StatusServiceUnavailable)
	default:
		return c, true
	}
	return nil, false
}

// servePage serves one embedded HTML page.
func servePage(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, name)
	}
}
