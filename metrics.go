package main

// This file is what the server tells Prometheus at /metrics: running totals
// and histograms, kept where things happen, and gauges, read at scrape time
// from what the server counts anyway; all written in Prometheus's text
// exposition format (version 0.0.4) with the standard library alone.
//
// Nothing here locks or allocates on a message's path: a total is one
// atomic add, an observation a few, and every label has a fixed set of
// values (an array indexed by a small enum), so no input can grow them. A
// scrape does the rest: it reads, sums and formats.
//
// /metrics is not for everyone. With -metrics-addr it is served on a
// listener of its own and nowhere else; without it, the main listener
// answers it to loopback clients only (metricsOnMain).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// metricsContentType is the text exposition format's media type.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// stats are the server's running totals, for /healthz and /metrics;
// atomics, because every connection's goroutines add to them.
type stats struct {
	received  atomic.Int64 // messages read from clients
	delivered atomic.Int64 // frames written to clients
	dropped   atomic.Int64 // clients closed for not reading

	refused     [numRefusals]atomic.Int64         // requests refused, by reason (connLimit counts those it refuses at accept)
	closes      [len(closeCodes) + 1]atomic.Int64 // connections ended, by close code: closeCodes' order, then any other
	rateLimited [numLimits]atomic.Int64           // messages answered rate_limited, by limit

	apiKeyFailures  atomic.Int64 // API requests with a missing or wrong key (401)
	apiKeyThrottled atomic.Int64 // API requests refused for the wrong keys their address sent (429)

	handshake histogram // a WebSocket handshake: chatHandler's start to the 101 written
	delivery  histogram // a batch a member's writer wrote: its oldest frame's wait in the queue, and the write
}

// refusalReason is why a connection or a request was refused: the label
// of roomchat_connections_refused_total.
type refusalReason int

const (
	refusedServerFull    refusalReason = iota // at accept: -max-conns held (every WebSocket is one), no idle keep-alive to close (connlimit.go)
	refusedTCPPerAddress                      // at accept: the address holds its TCP connections
	refusedPerAddress                         // the handshake: the address holds -max-per-client WebSockets (429)
	refusedShuttingDown                       // the handshake, during shutdown (503)
	refusedRoomName                           // the handshake: not a room name (400)
	refusedToken                              // the handshake: no token, a bad one (401), or one for other rooms (403)
	refusedOrigin                             // the handshake: a page from another site (403)
	refusedHost                               // any request: a Host a loopback server does not answer to (421)
	refusedForwarded                          // the handshake: a trusted proxy named the client by no IP address (400)
	numRefusals
)

// refusalNames are the label values, in refusalReason's order.
var refusalNames = [numRefusals]string{
	"server_full", "tcp_per_address", "per_address", "shutting_down", "room_name", "token", "origin", "host", "forwarded",
}

// refuse counts a refusal. s may be nil, for a handler built without a hub.
func (s *stats) refuse(why refusalReason) {
	if s != nil {
		s.refused[why].Add(1)
	}
}

// closeCodes are the codes the server closes with (frameread.go), the
// labels of roomchat_connections_closed_total; any other counts as
// "other", the last slot of stats.closes.
var closeCodes = [...]int{
	closeNormal, closeGoingAway, closeProtocolError, closeUnsupportedData,
	closeInvalidPayload, closePolicyViolation, closeTooBig, closeTokenExpired,
}

// closed counts a connection that ended with code.
func (s *stats) closed(code int) {
	i := slices.Index(closeCodes[:], code)
	if i < 0 {
		i = len(closeCodes)
	}
	s.closes[i].Add(1)
}

// The limits a message can be over (ratelimit.go), the labels of
// roomchat_rate_limited_total.
const (
	limitMessages = iota
	limitBytes
	numLimits
)

var limitNames = [numLimits]string{"messages", "bytes"}

// bucketBounds are the upper bounds of every histogram's buckets, from a
// handshake or a delivery on loopback (well under a millisecond) to the
// longest either may take: subscribeWait with Redis, writeTimeout.
var bucketBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// histogram counts durations into bucketBounds' buckets. Observing one is
// a short scan and two atomic adds: no lock, no allocation. A scrape that
// runs meanwhile may see an observation's sum without its count; the next
// one sees both.
type histogram struct {
	counts    [len(bucketBounds) + 1]atomic.Int64 // per bucket, not cumulative; the last is past every bound
	sumMicros atomic.Int64                        // microseconds: 292,000 years before it overflows
}

// observe counts one duration.
func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(bucketBounds) && d > bucketBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumMicros.Add(int64((d + time.Microsecond/2) / time.Microsecond))
}

// processStart is the origin of monotonic.
var processStart = time.Now()

// monotonic is a point in time as 8 bytes: nanoseconds since the process
// started, on the monotonic clock.
func monotonic() int64 { return int64(time.Since(processStart)) }

// noteQueued notes, as a frame is about to join c's queue, when the queue
// began: now, if it is empty. The writer observes, after its batch is
// written, the time since then (client.writeBatch): one clock reading per
// batch, not per frame. It runs with c.mu held.
func noteQueued(c *client) {
	if len(c.queue) == 0 {
		c.queuedAt = monotonic()
	}
}

// wrote observes the delivery of a batch whose queue began at queuedAt
// (noteQueued), if it was written.
func (h *histogram) wrote(queuedAt int64, err error) {
	if err == nil {
		h.observe(time.Duration(monotonic() - queuedAt))
	}
}

// writeMetrics writes every metric family of the server: h's, limit's
// (nil: none) and the channel layer's, with -redis.
func writeMetrics(h *hub, limit *connLimit) []byte {
	var e exposition
	rooms, conns := h.counts()
	e.gauge("roomchat_connections", "WebSocket connections open.", int64(conns))
	e.gauge("roomchat_rooms", "Rooms with members in this process.", int64(rooms))
	if limit != nil {
		tcp, max, _ := limit.metrics()
		e.gauge("roomchat_tcp_connections", "TCP connections held, plain HTTP included.", int64(tcp))
		if max > 0 {
			e.gauge("roomchat_tcp_connections_limit", "TCP connections the server holds at most (-max-conns).", int64(max))
		}
	}
	refused := refusals(h, limit)
	e.counter("roomchat_messages_received_total", "Messages read from clients.", h.stats.received.Load())
	e.counter("roomchat_frames_delivered_total", "Frames written to clients.", h.stats.delivered.Load())
	e.counter("roomchat_slow_clients_dropped_total", "Clients closed (1008) for not reading what they were sent.", h.stats.dropped.Load())

	e.family("roomchat_connections_refused_total", "counter", "Connections and requests refused, by reason.")
	for i, name := range refusalNames {
		e.sample("roomchat_connections_refused_total", `reason="`+name+`"`, refused[i])
	}
	e.family("roomchat_connections_closed_total", "counter", "WebSocket connections ended, by the close code the server chose (not sent when the connection was cut off or had dropped).")
	for i := range h.stats.closes {
		code := "other"
		if i < len(closeCodes) {
			code = strconv.Itoa(closeCodes[i])
		}
		e.sample("roomchat_connections_closed_total", `code="`+code+`"`, h.stats.closes[i].Load())
	}
	e.counter("roomchat_api_key_failures_total", "HTTP API requests with a missing or wrong key (401).", h.stats.apiKeyFailures.Load())
	e.counter("roomchat_api_key_throttled_total", "HTTP API requests refused (429) because their address sent too many wrong keys.", h.stats.apiKeyThrottled.Load())
	e.family("roomchat_rate_limited_total", "counter", "Messages answered rate_limited, by the limit they were over.")
	for i, name := range limitNames {
		e.sample("roomchat_rate_limited_total", `limit="`+name+`"`, h.stats.rateLimited[i].Load())
	}

	st := h.broker.status()
	e.gauge("roomchat_history_bytes", "Bytes the rooms' histories hold in this process.", st.HistoryBytes)
	e.gauge("roomchat_history_messages", "Messages the rooms' histories hold in this process.", st.HistoryMessages)

	if st.redisStatus != nil {
		up := int64(0)
		if st.Connected {
			up = 1
		}
		e.gauge("roomchat_redis_up", "1 while the Redis broker is connected, else 0.", up)
		e.gauge("roomchat_redis_backlog_messages", "Messages said here while Redis was away, waiting for it.", int64(st.Backlog))
		e.counter("roomchat_redis_published_total", "Chat messages sent to Redis.", st.Published)
		e.counter("roomchat_redis_received_total", "Chat messages received from Redis, this process's own included.", st.Received)
		e.counter("roomchat_redis_rejected_total", "Messages from Redis that were not the protocol's, never delivered.", st.Rejected)
		e.counter("roomchat_redis_dropped_total", "Chat messages that reached only this process: Redis was away and the backlog full.", st.Dropped)
		e.counter("roomchat_redis_reconnects_total", "Sessions with Redis begun again after one ended.", st.Reconnects)
	}

	e.histogram("roomchat_handshake_duration_seconds",
		"WebSocket handshakes, from the handler's start to the 101 written (the join included).", &h.stats.handshake)
	e.histogram("roomchat_delivery_duration_seconds",
		"Batches of frames written to a member: the time since the oldest joined the member's queue.", &h.stats.delivery)
	return e.b
}

// metrics reports, for /metrics, the connections held, the cap, and the
// refusals at accept by reason.
func (l *connLimit) metrics() (total, max int, refused [numRefusals]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.max, l.refusedFor
}

// exposition is a response in the text format, built in memory: a scrape
// is small (a few kilobytes), and a whole body lets net/http set its length.
type exposition struct {
	b []byte
}

// family begins a metric family with its help and type, which every
// family has.
func (e *exposition) family(name, kind, help string) {
	e.b = fmt.Appendf(e.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
}

// sample writes one line: name, labels in braces unless empty, value.
func (e *exposition) sample(name, labels string, v int64) {
	e.b = append(e.b, name...)
	if labels != "" {
		e.b = append(append(append(e.b, '{'), labels...), '}')
	}
	e.b = strconv.AppendInt(append(e.b, ' '), v, 10)
	e.b = append(e.b, '\n')
}

// gauge writes a family of one gauge.
func (e *exposition) gauge(name, help string, v int64) {
	e.family(name, "gauge", help)
	e.sample(name, "", v)
}

// counter writes a family of one counter.
func (e *exposition) counter(name, help string, v int64) {
	e.family(name, "counter", help)
	e.sample(name, "", v)
}

// histogram writes a histogram family: its buckets cumulative, as the
// format wants, and a count equal to the +Inf bucket's.
func (e *exposition) histogram(name, help string, h *histogram) {
	e.family(name, "histogram", help)
	var total int64
	for i := range h.counts {
		total += h.counts[i].Load()
		le := "+Inf"
		if i < len(bucketBounds) {
			le = strconv.FormatFloat(bucketBounds[i].Seconds(), 'g', -1, 64)
		}
		e.sample(name+"_bucket", `le="`+le+`"`, total)
	}
	e.b = append(e.b, name+"_sum "...)
	e.b = strconv.AppendFloat(e.b, float64(h.sumMicros.Load())/1e6, 'g', -1, 64)
	e.b = append(e.b, '\n')
	e.sample(name+"_count", "", total)
}

// metricsHandler serves the exposition.
func metricsHandler(h *hub, limit *connLimit) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeBody(w, metricsContentType, writeMetrics(h, limit))
	}
}

// metricsOnMain is /metrics on the main listener. With -metrics-addr
// there is none there (404). Without it, only a client on this machine
// may read it: its TCP peer is a loopback address that is not a trusted
// proxy, for a proxy on this machine carries anyone's requests.
func metricsOnMain(h *hub, limit *connLimit, opts options) http.HandlerFunc {
	if opts.metrics != nil {
		return http.NotFound
	}
	serve := metricsHandler(h, limit)
	return func(w http.ResponseWriter, r *http.Request) {
		if !fromThisMachine(r, opts.proxies) {
			http.Error(w, "metrics are for clients on this machine; see -metrics-addr", http.StatusForbidden)
			return
		}
		serve(w, r)
	}
}

// fromThisMachine reports whether r's TCP peer is a loopback address that
// is not a trusted proxy: a proxy on this machine carries anyone's
// requests.
func fromThisMachine(r *http.Request, proxies []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	addr := ap.Addr().Unmap()
	return err == nil && addr.IsLoopback() && !inPrefixes(addr, proxies)
}

// listenMetrics opens the -metrics-addr listener; none for "".
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	return ln, nil
}

// serveMetrics serves /metrics, and /healthz with its counts, on
// opts.metrics, if there is one, behind the same Host check as the main
// listener: a page that DNS rebinding brings to a loopback port must not
// read it either. It returns the function that stops it.
func serveMetrics(h *hub, limit *connLimit, opts options, log *slog.Logger) (stop func()) {
	if opts.metrics == nil {
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", metricsHandler(h, limit))
	mux.HandleFunc("GET /healthz", healthDetails(h, limit))
	srv := &http.Server{
		Handler:           protect(mux, opts.metrics.Addr().String(), opts.hosts, &h.stats),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(opts.metrics); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	log.Info("metrics listening", "metrics", "http://"+browsableHost(opts.metrics.Addr().String())+"/metrics")
	return func() {
		// A scrape cut off mid-answer is retried by the next one.
		_ = srv.Close()
		<-done
	}
}

// refusals are the refusals so far by reason: limit's at accept (nil:
// none) and the hub's.
func refusals(h *hub, limit *connLimit) [numRefusals]int64 {
	var refused [numRefusals]int64
	if limit != nil {
		_, _, refused = limit.metrics()
	}
	for i := range refused {
		refused[i] += h.stats.refused[i].Load()
	}
	return refused
}

// writeJSON answers code with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // "<" as "<": this is JSON, not HTML
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body.Bytes()) // fails only when the client has gone: no one to tell
}

// writeBody sends a response of contentType.
func writeBody(w http.ResponseWriter, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(body) // fails only when the client has gone: no one to tell
}
