#!/usr/bin/env bash
# profile.sh: where a message through Redis spends its time.
#
# Starts a redis-server and two roomchat processes sharing it on CPU 1, runs
# loadchat's rooms scenario (50 rooms x 10 clients x 2 msg/s, clients asking
# for history) on CPU 0 for 14 s, and perf-records one roomchat process and
# Redis for 6 s of it. Then:
#
#   perf report -i $BIN/perf-roomchat.data --no-children --sort dso,sym
#   perf report -i $BIN/perf-roomchat.data --children --sort sym   # by caller
#   perf report -i $BIN/perf-redis.data --no-children --sort dso,sym
#
# Needs perf (linux-perf) and redis-server; perf may need
# kernel.perf_event_paranoid at 1 or below.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
BIN=${BIN:-/tmp/roomchat-bench}
mkdir -p "$BIN"
(cd "$ROOT" && go build -o "$BIN/roomchat" .)
(cd "$BENCH" && go build -o "$BIN/loadchat" ./loadchat)
L=$BIN/loadchat
WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

rp=$($L -freeport)
taskset -c 1 redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" --logfile "" >/dev/null 2>&1 &
redis=$!
PIDS+=("$redis")
sleep 0.3
ports=()
servers=()
for _ in 1 2; do
	p=$($L -freeport)
	taskset -c 1 "$BIN/roomchat" -addr "127.0.0.1:$p" -rate 0 -max-per-client 0 -redis "redis://127.0.0.1:$rp" >>"$WORK/servers.log" 2>&1 &
	servers+=($!)
	PIDS+=($!)
	ports+=("$p")
done
sleep 0.5
taskset -c 0 "$L" -proto roomchat -rooms 50 -clients 10 -rate 2 -duration 14s -size 100 -history \
	-url "ws://127.0.0.1:${ports[0]}/ws/chat/" -pid "${servers[0]}" \
	-url2 "ws://127.0.0.1:${ports[1]}/ws/chat/" -pid2 "${servers[1]}" -redispid "$redis" >"$WORK/load.json" &
load=$!
sleep 4
perf record -F 1999 -g -p "${servers[0]}" -o "$BIN/perf-roomchat.data" -- sleep 6 >/dev/null 2>&1 &
p1=$!
perf record -F 1999 -g -p "$redis" -o "$BIN/perf-redis.data" -- sleep 6 >/dev/null 2>&1 &
p2=$!
wait "$p1" "$p2" "$load"
cat "$WORK/load.json"
echo "# profiles: $BIN/perf-roomchat.data $BIN/perf-redis.data" >&2
