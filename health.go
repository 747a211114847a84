package main

// This file is /healthz: for everyone, a load balancer included, the
// server's health alone, healthy, degraded or unhealthy; for the ones
// /metrics is for (metrics.go), its counts and running totals too.

import "net/http"

// The answers of /healthz's status.
const (
	healthHealthy   = "healthy"
	healthDegraded  = "degraded"  // Redis is away: chat goes on in each process alone
	healthUnhealthy = "unhealthy" // shutting down
)

// healthStatus is the server's health, and the HTTP status that says it to
// a load balancer. Degraded is still 200: while Redis is away every
// process is degraded at once, and a balancer that dropped them all would
// stop the chat that each still carries.
func healthStatus(h *hub) (string, int) {
	if h.closing.Load() {
		return healthUnhealthy, http.StatusServiceUnavailable
	}
	if st := h.broker.status(); st.redisStatus != nil && !st.Connected {
		return healthDegraded, http.StatusOK
	}
	return healthHealthy, http.StatusOK
}

// healthz is /healthz on the main listener. Everyone gets the status
// alone: the counts are for the ones /metrics is for, a client on this
// machine (fromThisMachine) when there is no -metrics-addr; with one, they
// are on its /healthz (healthDetails).
func healthz(h *hub, limit *connLimit, opts options) http.HandlerFunc {
	details := healthDetails(h, limit)
	return func(w http.ResponseWriter, r *http.Request) {
		if opts.metrics == nil && fromThisMachine(r, opts.proxies) {
			details(w, r)
			return
		}
		status, code := healthStatus(h)
		writeJSON(w, code, map[string]string{"status": status})
	}
}

// healthDetails is /healthz with the server's counts and running totals,
// for an operator and for a test to see a connection go; each total is the
// one /metrics shows (refused_connections sums every reason of
// roomchat_connections_refused_total).
func healthDetails(h *hub, limit *connLimit) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		status, code := healthStatus(h)
		rooms, conns := h.counts()
		tcp := 0
		if limit != nil {
			tcp, _, _ = limit.metrics()
		}
		var refused int64
		for _, n := range refusals(h, limit) {
			refused += n
		}
		writeJSON(w, code, map[string]any{
			"tcp_connections":      tcp,
			"refused_connections":  refused,
			"status":               status,
			"rooms":                rooms,
			"connections":          conns,
			"messages_received":    h.stats.received.Load(),
			"frames_delivered":     h.stats.delivered.Load(),
			"slow_clients_dropped": h.stats.dropped.Load(),
			"layer":                h.broker.status(), // its name before brokers, kept for monitors that read it
		})
	}
}

// brokerStatus is the broker's part of /healthz: which broker runs and,
// for Redis, its connection and totals, whose fields JSON lifts into this one.
type brokerStatus struct {
	Kind            string `json:"kind"`
	HistoryBytes    int64  `json:"history_bytes"`    // what the rooms' histories hold here
	HistoryMessages int64  `json:"history_messages"` // likewise, in messages
	HistoryStreams  int64  `json:"history_streams"`  // the rooms' streams that hold them, each counted in the memory bound
	*redisStatus           // nil for the memory broker
}

// counts reports the number of rooms and connections, for /healthz.
func (h *hub) counts() (rooms, conns int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rooms), h.conns
}
