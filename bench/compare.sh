#!/usr/bin/env bash
# compare.sh NAME 'SERVER_CMD_WITH_{PORT}'
#
# Builds the gorilla peer and loadchat into $BIN, then for each scenario
# starts a fresh server (SERVER_CMD with {PORT} replaced by a free port), waits
# for it, runs loadchat against it and stops the server by PID. Prints one JSON
# line per scenario on stdout; notes go to stderr.
#
# SERVER_CMD must be ONE command that execs the server itself (no wrappers such
# as `go run` or `npm start`), so that its PID is the server's PID for the CPU
# and RSS readings. Environment assignments are fine: 'PORT={PORT} node x.mjs'.
#
# Pinning: server on CPU $SERVER_CPU (default 1), loadchat on CPU $LOAD_CPU
# (default 0), both via taskset. Go programs then run with GOMAXPROCS=1
# (Centrifugo resets it to a cgroup's CPU quota, whatever taskset allows, unless
# GOMAXPROCS is set: its command says GOMAXPROCS=1).
#
# PROTO is the wire protocol loadchat speaks: roomchat (docs/protocol.md), or
# centrifugo for Centrifugo's own, which is the default when NAME begins with
# centrifugo; that also builds Centrifugo into $BIN (peers/centrifugo/build.sh)
# if it is not there. LOADCHAT_FLAGS adds flags to every loadchat run, such as
# -history (roomchat's clients ask for ids, as Centrifugo's always get offsets).
#
# Examples, from the repository's root (BIN defaults to /tmp/roomchat-bench):
#   go build -o /tmp/roomchat . && bench/compare.sh roomchat '/tmp/roomchat -addr 127.0.0.1:{PORT} -rate 0 -max-per-client 0'
#   bench/compare.sh gorilla '/tmp/roomchat-bench/peergorilla -addr 127.0.0.1:{PORT}'
#   bench/compare.sh nodews  'PORT={PORT} node /tmp/roomchat-bench/nodews/server.mjs'
#   bench/compare.sh centrifugo "GOMAXPROCS=1 /tmp/roomchat-bench/centrifugo -c $PWD/bench/peers/centrifugo/config.json --http_server.port {PORT}"
# bench/table.sh runs all four several times and prints the medians.
set -euo pipefail

if [ $# -ne 2 ] || [[ "$2" != *"{PORT}"* ]]; then
	echo "usage: $0 NAME 'SERVER_CMD_WITH_{PORT}'" >&2
	exit 2
fi
NAME=$1
CMD=$2
TOOLS=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-/tmp/roomchat-bench}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
LOGDIR=${LOGDIR:-/tmp/compare-logs}
mkdir -p "$BIN" "$LOGDIR"
case $NAME in centrifugo*) default_proto=centrifugo ;; *) default_proto=roomchat ;; esac
PROTO=${PROTO:-$default_proto}
case $PROTO in
roomchat) WSPATH=/ws/chat/ ;;
centrifugo) WSPATH=/connection/websocket ;;
*) echo "compare.sh: unknown PROTO $PROTO (roomchat, centrifugo)" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206
EXTRA=(${LOADCHAT_FLAGS:-})
# Every server, and loadchat, may open as many descriptors as the hard limit
# allows: c15k holds 15,000 connections on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # "unlimited" is refused; the soft limit stays

(cd "$TOOLS" && go build -o "$BIN/peergorilla" ./peers/gorilla && go build -o "$BIN/loadchat" ./loadchat)
if [ "$PROTO" = centrifugo ]; then
	BIN=$BIN "$TOOLS/peers/centrifugo/build.sh" >/dev/null
fi
# The Node peer runs from a copy in BIN, where npm can write node_modules.
if [ ! -d "$BIN/nodews/node_modules" ] && command -v npm >/dev/null; then
	mkdir -p "$BIN/nodews" && cp "$TOOLS"/peers/nodews/* "$BIN/nodews/" && (cd "$BIN/nodews" && npm ci --silent >/dev/null 2>&1) ||
		echo "# npm ci failed: the Node peer is not ready" >&2
fi

echo "# $NAME ($PROTO protocol): server on CPU $SERVER_CPU, loadchat on CPU $LOAD_CPU (taskset); nproc=$(nproc); $(go version | cut -d' ' -f3); node $(node --version 2>/dev/null || echo -); descriptors $(ulimit -n)" >&2

SPID=""
PORT=""

# Other processes on this machine skew every number. Before each scenario wait
# (up to QUIET_WAIT seconds, default 30) for a 1-second window in which the
# whole machine is less than 15 % of a core busy; loadchat's other_cpu_util
# then records what the rest of the machine did during the run.
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$9}' /proc/stat; }
wait_quiet() {
	local deadline=$((SECONDS + ${QUIET_WAIT:-30})) a b
	while :; do
		a=$(busy_ticks)
		sleep 1
		b=$(busy_ticks)
		[ $((b - a)) -lt 15 ] && return
		if [ $SECONDS -ge $deadline ]; then
			echo "# machine still busy ($((b - a)) % of a core in use by others); running anyway" >&2
			return
		fi
	done
}

start_server() { # $1: scenario name
	PORT=$("$BIN/loadchat" -freeport)
	local cmd=${CMD//\{PORT\}/$PORT}
	# taskset execs bash, bash execs env, env execs the server: one PID throughout.
	taskset -c "$SERVER_CPU" bash -c "exec env $cmd" >"$LOGDIR/$NAME-$1.log" 2>&1 &
	SPID=$!
	for _ in $(seq 100); do
		if ! kill -0 "$SPID" 2>/dev/null; then
			echo "# server exited at start; log: $LOGDIR/$NAME-$1.log" >&2
			tail -5 "$LOGDIR/$NAME-$1.log" >&2
			exit 1
		fi
		if curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT/healthz" 2>/dev/null ||
			(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
			sleep 0.2 # let it settle
			return
		fi
		sleep 0.1
	done
	echo "# server did not open port $PORT within 10 s" >&2
	exit 1
}

stop_server() {
	[ -n "$SPID" ] || return 0
	if kill -0 "$SPID" 2>/dev/null; then
		kill -TERM "$SPID" 2>/dev/null || true
		for _ in $(seq 30); do
			kill -0 "$SPID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$SPID" 2>/dev/null || true
	fi
	wait "$SPID" 2>/dev/null || true
	SPID=""
}
trap stop_server EXIT

scenario() { # name, loadchat flags...
	local name=$1
	shift
	wait_quiet
	start_server "$name"
	taskset -c "$LOAD_CPU" "$BIN/loadchat" -proto "$PROTO" -url "ws://127.0.0.1:$PORT$WSPATH" -pid "$SPID" \
		-tag "name=$NAME" -tag "scenario=$name" -tag "pin=server:cpu$SERVER_CPU,loadchat:cpu$LOAD_CPU" "$@" ${EXTRA[@]+"${EXTRA[@]}"} ||
		echo "# loadchat failed in scenario $name" >&2
	kill -0 "$SPID" 2>/dev/null || echo "# server died during scenario $name (log: $LOGDIR/$NAME-$name.log)" >&2
	stop_server
}

# SCENARIOS picks which run (default: fanout rooms idle, in this order); busy is
# the fanout room at 25 msg/s per client, where queues build up (about 250,000
# deliveries/s: most of one core for every server here). The scale scenarios
# (all of them: SCENARIOS=scale) show how the cost grows:
#   c1k c5k c15k       1,000, 5,000 and 15,000 idle connections, 100 a room:
#                      memory per connection, handshakes per second
#   room-100 room-1k   one room of 100, of 1,000 members, 20 of whom send
#   bigroom            1 msg/s each (20 msg/s in the room), and 5,000 members
#   bigroom-busy       the same 5,000 members, 100 of them sending: 100 msg/s,
#                      about 500,000 deliveries/s, more than one core can give
SCENARIOS=${SCENARIOS:-fanout rooms idle}
SCENARIOS=${SCENARIOS//scale/c1k c5k c15k room-100 room-1k bigroom bigroom-busy}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
big() { scenario "$1" -rooms 1 -clients "$2" -senders "$3" -rate 1 -duration 8s -size 100; }
want fanout && scenario fanout -rooms 1 -clients 100 -rate 5 -duration 8s -size 100
want busy && scenario busy -rooms 1 -clients 100 -rate 25 -duration 8s -size 100
want rooms && scenario rooms -rooms 50 -clients 10 -rate 2 -duration 8s -size 100
want idle && scenario idle -idle 5000 -rooms 50
want c1k && scenario c1k -idle 1000 -rooms 10
want c5k && scenario c5k -idle 5000 -rooms 50
want c15k && scenario c15k -idle 15000 -rooms 150
want room-100 && big room-100 100 20
want room-1k && big room-1k 1000 20
want bigroom && big bigroom 5000 20
want bigroom-busy && big bigroom-busy 5000 100
exit 0
