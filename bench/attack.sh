#!/usr/bin/env bash
# attack.sh BINARY...: every loadchat -attack against each roomchat binary,
# in turns, RUNS times (default 3); one JSON line each, tagged with the
# binary, on stdout. Each attack gets a fresh server, pinned like compare.sh's.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-/tmp/roomchat-bench}
RUNS=${RUNS:-3}
ATTACKS=${ATTACKS:-declared pings pongs continuations huge}
mkdir -p "$BIN"
(cd "$BENCH" && go build -o "$BIN/loadchat" ./loadchat)
for run in $(seq "$RUNS"); do
	for server in "$@"; do
		# A build from before the per-client cap has no such flag.
		extra=()
		if "$server" -h 2>&1 | grep -q -- -max-per-client; then extra=(-max-per-client 0); fi
		for attack in $ATTACKS; do
			port=$("$BIN/loadchat" -freeport)
			taskset -c "${SERVER_CPU:-1}" "$server" -addr "127.0.0.1:$port" "${extra[@]}" 2>/dev/null &
			spid=$!
			for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
			echo "# run $run: $server $attack" >&2
			taskset -c "${LOAD_CPU:-0}" "$BIN/loadchat" -attack "$attack" -url "ws://127.0.0.1:$port/ws/chat/" -pid "$spid" \
				-tag "server=$server" -tag "run=$run" || true
			kill "$spid" 2>/dev/null || true
			wait "$spid" 2>/dev/null || true
		done
	done
done
