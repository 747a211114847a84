#!/usr/bin/env bash
# redis.sh: what the Redis channel layer costs.
#
# The same load twice, in turns, RUNS times (default 3): once on one server
# with rooms in memory, once on two server processes sharing one
# redis-server, every room's clients split between the two. Servers and Redis
# run on CPU 1, loadchat on CPU 0. Server CPU per delivery counts both
# server processes; Redis's own CPU is reported apart. Prints the JSON lines
# to stderr and the table of medians to stdout.
#
# PEER picks the server: roomchat (the default; columns memory and redis) or
# centrifugo (columns centrifugo-memory and centrifugo-redis: Centrifugo's
# Redis engine, with its history in Redis too), built by
# peers/centrifugo/build.sh if it is not in $BIN.
#
#   bench/redis.sh                          # about 3 minutes
#   RUNS=5 SCENARIOS="fanout" bench/redis.sh
#   ROOMCHAT_FLAGS="-history 0" bench/redis.sh   # flags for every roomchat started
#   PEER=centrifugo bench/redis.sh
#   LOADCHAT_FLAGS=-history bench/redis.sh       # flags for every loadchat run
#   ROOMCHAT_BIN=/tmp/roomchat-old NAME=old bench/redis.sh   # a roomchat built elsewhere, its columns named old-...
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
BIN=${BIN:-/tmp/roomchat-bench}
RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-fanout rooms}
CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PEER=${PEER:-roomchat}
# shellcheck disable=SC2206
EXTRA=(${LOADCHAT_FLAGS:-})
mkdir -p "$BIN"
OUT=$BIN/redis-$(date +%Y%m%d-%H%M%S).jsonl
WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

command -v redis-server >/dev/null || { echo "redis.sh: needs redis-server (apt-get install redis-server)" >&2; exit 1; }
case $PEER in
roomchat)
	ROOMCHAT=${ROOMCHAT_BIN:-$BIN/roomchat}
	[ -n "${ROOMCHAT_BIN:-}" ] || (cd "$ROOT" && go build -o "$BIN/roomchat" .)
	WSPATH=/ws/chat/ PREFIX=${NAME:+$NAME-}
	;;
centrifugo)
	BIN=$BIN "$BENCH/peers/centrifugo/build.sh" >/dev/null
	WSPATH=/connection/websocket PREFIX=centrifugo-
	;;
*) echo "redis.sh: unknown PEER $PEER (roomchat, centrifugo)" >&2; exit 2 ;;
esac
(cd "$BENCH" && go build -o "$BIN/loadchat" ./loadchat)

# start PORT CMD...: runs CMD on the server CPU, waits for PORT to open, sets PID.
start() {
	local port=$1
	shift
	taskset -c "$CPU" "$@" >>"$WORK/servers.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
		kill -0 "$PID" 2>/dev/null || { echo "redis.sh: $1, for port $port, exited:" >&2; tail -5 "$WORK/servers.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "redis.sh: nothing listens on port $port" >&2
	exit 1
}

# serve PORT [REDIS_PORT]: one $PEER on PORT, its rooms in memory, or shared
# through the Redis on REDIS_PORT.
serve() {
	local port=$1 redis=${2:-} shared=()
	case $PEER in
	roomchat)
		[ -n "$redis" ] && shared=(-redis "redis://127.0.0.1:$redis")
		# shellcheck disable=SC2086
		start "$port" "$ROOMCHAT" -addr "127.0.0.1:$port" -rate 0 -max-per-client 0 ${ROOMCHAT_FLAGS:-} ${shared[@]+"${shared[@]}"}
		;;
	centrifugo)
		# GOMAXPROCS=1: Centrifugo would take a cgroup's CPU quota instead.
		[ -n "$redis" ] && shared=(CENTRIFUGO_ENGINE_TYPE=redis "CENTRIFUGO_ENGINE_REDIS_ADDRESS=redis://127.0.0.1:$redis")
		start "$port" env GOMAXPROCS=1 ${shared[@]+"${shared[@]}"} \
			"$BIN/centrifugo" -c "$BENCH/peers/centrifugo/config.json" --http_server.port "$port"
		;;
	esac
}

stop_all() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	PIDS=()
}

flags_of() {
	case $1 in
	fanout) echo "-rooms 1 -clients 100 -rate 5 -duration 8s -size 100" ;;
	rooms) echo "-rooms 50 -clients 10 -rate 2 -duration 8s -size 100" ;;
	*) echo "redis.sh: unknown scenario $1 (fanout, rooms)" >&2; exit 2 ;;
	esac
}

load() { # name scenario loadchat-flags...
	local name=$1 scenario=$2
	shift 2
	# shellcheck disable=SC2046
	taskset -c "$LOAD_CPU" "$BIN/loadchat" -proto "$PEER" "$@" $(flags_of "$scenario") ${EXTRA[@]+"${EXTRA[@]}"} \
		-tag "name=$PREFIX$name" -tag "scenario=$scenario" | tee -a "$OUT" >&2
}

for run in $(seq "$RUNS"); do
	for scenario in $SCENARIOS; do
		echo "# run $run of $RUNS, $scenario: one $PEER process, rooms in memory" >&2
		p=$("$BIN/loadchat" -freeport)
		serve "$p"
		load memory "$scenario" -url "ws://127.0.0.1:$p$WSPATH" -pid "$PID"
		stop_all

		echo "# run $run of $RUNS, $scenario: two $PEER processes sharing a Redis" >&2
		rp=$("$BIN/loadchat" -freeport)
		start "$rp" redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" --logfile ""
		redis=$PID
		pa=$("$BIN/loadchat" -freeport)
		serve "$pa" "$rp"
		a=$PID
		pb=$("$BIN/loadchat" -freeport)
		serve "$pb" "$rp"
		load redis "$scenario" -url "ws://127.0.0.1:$pa$WSPATH" -pid "$a" \
			-url2 "ws://127.0.0.1:$pb$WSPATH" -pid2 "$PID" -redispid "$redis"
		stop_all
	done
done
echo "# JSON lines: $OUT" >&2
(cd "$BENCH" && go run ./table) <"$OUT"
