#!/usr/bin/env bash
# table.sh: the README's side-by-side table, in one command.
#
# Builds roomchat from this repository (and Centrifugo from the module proxy,
# peers/centrifugo/build.sh, the first time), then runs compare.sh RUNS times
# (default 3) for each server in SERVERS (default: roomchat gorilla nodews
# centrifugo), the servers taking turns, so that a slow minute of the machine
# falls on all of them alike. Every JSON line goes to $BIN/table-*.jsonl; the
# table of medians, with the machine and versions it ran on, goes to stdout.
#
#   bench/table.sh                                  # about 13 minutes
#   RUNS=5 SCENARIOS="fanout busy" bench/table.sh
#   SCENARIOS=scale bench/table.sh                  # c1k c5k c15k room-100 room-1k bigroom bigroom-busy
#
# The JSON lines of earlier runs can be tabled again: go run ./table < FILE
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
export BIN=${BIN:-/tmp/roomchat-bench}
export SCENARIOS=${SCENARIOS:-fanout busy rooms idle}
RUNS=${RUNS:-3}
SERVERS=${SERVERS:-roomchat gorilla nodews centrifugo}
mkdir -p "$BIN"
OUT=$BIN/table-$(date +%Y%m%d-%H%M%S).jsonl

(cd "$ROOT" && go build -o "$BIN/roomchat" .)

command_of() { # the server command compare.sh starts, with {PORT} in it
	case $1 in
	roomchat) echo "$BIN/roomchat -addr 127.0.0.1:{PORT} -rate 0 -max-per-client 0" ;; # one load generator stands for many clients
	gorilla) echo "$BIN/peergorilla -addr 127.0.0.1:{PORT}" ;;
	nodews) echo "PORT={PORT} node $BIN/nodews/server.mjs" ;;
	# Centrifugo resets GOMAXPROCS to a cgroup's CPU quota (automaxprocs), whatever
	# taskset allows, unless GOMAXPROCS is set.
	centrifugo) echo "GOMAXPROCS=1 $BIN/centrifugo -c $BENCH/peers/centrifugo/config.json --http_server.port {PORT}" ;;
	*) echo "table.sh: unknown server $1 (roomchat, gorilla, nodews, centrifugo)" >&2; exit 2 ;;
	esac
}

for run in $(seq "$RUNS"); do
	for name in $SERVERS; do
		echo "# run $run of $RUNS: $name" >&2
		"$BENCH/compare.sh" "$name" "$(command_of "$name")" | tee -a "$OUT" >&2
	done
done
echo "# JSON lines: $OUT" >&2
(cd "$BENCH" && go run ./table) <"$OUT"
