#!/usr/bin/env bash
# Soak: a worker follows chatstats-sim over HTTP at a steady rate for DURATION seconds, with one
# Redis stall (SIGSTOP) of STALL seconds in the middle. Every 10 s it samples the worker's RSS
# and its recorded/failed counts. At the end the worker is stopped (SIGTERM) and the exact
# events it read are replayed in text mode into a second namespace: both must be identical.
# Usage: scripts/soak.sh [DURATION=600] [RATE=5000] [STALL=60]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-600}"; rate="${2:-5000}"; stall="${3:-60}"; seed=7
out=bench-out; mkdir -p "$out"
samples="$out/soak.tsv"
cargo build -q --release --bins
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] && cp "$work"/*.log "$out"/ ; rm -rf "$work"; }
trap cleanup EXIT

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
redis_pid=$!; pids+=($redis_pid)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
sport=$(free_port)
target/release/chatstats-sim --port "$sport" --rate "$rate" --seed "$seed" >"$work/sim.log" 2>&1 &
pids+=($!)
sleep 0.5
REDIS_URL="redis://127.0.0.1:$rport" REDIS_NAMESPACE=soak: CHAT_INTERFACE_URL="http://127.0.0.1:$sport/" \
  READ_TIMEOUT_MS=600000 PROGRESS_INTERVAL_SECS=10 LOG_FORMAT=json RUST_LOG=info \
  target/release/chatstats-worker >"$work/worker.log" 2>&1 &
worker=$!; pids+=($worker)

latest() { # field of the last progress line
  grep '"worker progress"' "$work/worker.log" | tail -1 | python3 -c "import sys,json; l=sys.stdin.read().strip(); print(json.loads(l)['$1'] if l else 0)"
}
printf 't_s\trss_kb\trecorded\tfailed\tredis\n' | tee "$samples"
stall_at=$(( duration / 2 - stall / 2 )); stalled=0
for (( t = 10; t <= duration; t += 10 )); do
  sleep 10
  if (( t >= stall_at && t < stall_at + stall )); then
    (( stalled == 0 )) && kill -STOP "$redis_pid" && stalled=1
    state=stalled
  else
    (( stalled == 1 )) && kill -CONT "$redis_pid" && stalled=2
    state=up
  fi
  rss=$(ps -o rss= -p "$worker" | tr -d ' ')
  printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" "$(latest messages)" "$(latest failed)" "$state" | tee -a "$samples"
done
kill -CONT "$redis_pid" 2>/dev/null || true
kill -TERM "$worker"
for _ in $(seq 1 100); do kill -0 "$worker" 2>/dev/null || break; sleep 0.1; done
wait "$worker" && echo "worker exited 0 after SIGTERM" || { echo "worker exit code $?"; exit 1; }
recorded=$(latest messages); failed=$(latest failed); events=$(( recorded + failed ))
echo "worker read and recorded $recorded messages and $failed failed ones ($events events)"

# Replay exactly those events in text mode into another namespace and compare.
target/release/chatstats-sim --count "$events" --seed "$seed" --out "$work/replay.txt"
REDIS_URL="redis://127.0.0.1:$rport" REDIS_NAMESPACE=replay: RESPONSE_STREAM_MODE=text \
  CHAT_INTERFACE_URL="$work/replay.txt" RUST_LOG=warn target/release/chatstats-worker
same=yes
for key in words nicks rooms failedMessages:total; do
  if [ "$key" = failedMessages:total ]; then
    a=$(redis-cli -p "$rport" GET "soak:$key"); b=$(redis-cli -p "$rport" GET "replay:$key")
  else
    a=$(redis-cli -p "$rport" ZRANGE "soak:$key" 0 -1 WITHSCORES | md5sum); b=$(redis-cli -p "$rport" ZRANGE "replay:$key" 0 -1 WITHSCORES | md5sum)
  fi
  [ "$a" = "$b" ] && echo "  $key: identical" || { echo "  $key: DIFFERENT"; same=no; }
done
python3 - "$samples" <<'PY'
import sys, csv
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
rss = [int(r['rss_kb']) for r in rows]
stalled = [int(r['rss_kb']) for r in rows if r['redis'] == 'stalled']
print(f"RSS KB: min {min(rss)}, max {max(rss)}, first {rss[0]}, last {rss[-1]}; during the stall max {max(stalled) if stalled else '-'}")
PY
[ "$same" = yes ] && echo "soak: PASS (counts exact)" || { echo "soak: FAIL"; exit 1; }
