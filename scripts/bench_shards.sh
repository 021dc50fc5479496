#!/usr/bin/env bash
# What REDIS_CLUSTER_SHARDS costs: a coalescing full worker and uncached reads on a local
# 3-master Redis Cluster, for several shard counts in one run (README, "Redis Cluster",
# "Limits"):
#
#   bash scripts/bench_shards.sh        # about a minute after the build
#
#  1. builds the release binaries (unless BENCH_SKIP_BUILD=1);
#  2. starts a local 3-master cluster (no persistence, free loopback ports, killed on exit)
#     and writes a stream (chatstats-sim --count BENCH_MESSAGES --seed 42, times of the last
#     minutes);
#  3. for each shard count in BENCH_SHARDS, into a namespace of its own: runs chatstats-worker
#     over the stream in coalescing full mode (FLUSH_INTERVAL_MS=50) and prints its rate, then
#     starts chatstats-api with STATS_CACHE_MS=0 and prints the median and the slowest of five
#     requests of each route (curl's time_total), every answer checked to be a 200.
#
# Every list of everything is spread over the shards by member, so each read of one costs a
# call per shard, and so does each merged worker call that touches them. Knobs (environment):
# BENCH_SHARDS ("12 96 1024"), BENCH_MESSAGES (20000), BENCH_SKIP_BUILD=1. Needs: cargo,
# redis-server (cluster support, >= 7.0), redis-cli, python3, curl. Never touches the Redis on
# 6379.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
MESSAGES=${BENCH_MESSAGES:-20000}
SHARD_COUNTS=${BENCH_SHARDS:-12 96 1024}

# shellcheck source=scripts/bench_common.sh
source "$ROOT/scripts/bench_common.sh"
[[ ${BENCH_SKIP_BUILD:-0} == 1 ]] || need cargo "install Rust (https://rustup.rs)"
need python3 "install python3"
need redis-server "apt-get install -y redis-server"
need redis-cli "apt-get install -y redis-server"
need curl "apt-get install -y curl"
[[ $MESSAGES =~ ^[1-9][0-9]*$ ]] || die "BENCH_MESSAGES must be a positive integer, not '$MESSAGES'"
BIN=$ROOT/target/release

DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatstats-shards.XXXXXX")
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  section "build"
  cargo build --release --bins || die "cargo build --release failed"
fi

section "cluster and stream"
start_cluster "$DIR"
echo "3 masters on 127.0.0.1:${CL_PORTS[0]},${CL_PORTS[1]},${CL_PORTS[2]}"
# Events come 5 ms apart on average: the stream ends a minute ago.
START_MS=$(($(date +%s%3N) - MESSAGES * 5 - 60000))
RUST_LOG=warn "$BIN/chatstats-sim" --count "$MESSAGES" --seed 42 --start-ms "$START_MS" \
  --out "$DIR/stream.txt" || die "chatstats-sim failed"

# timings URL: the median and the slowest of five requests, in ms; dies unless each is a 200.
timings() {
  local answers
  answers=$(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$1"; done)
  python3 - "$1" "$answers" <<'PY'
import sys
url, answers = sys.argv[1], sys.argv[2].split("\n")
codes = {line.split()[0] for line in answers}
if codes != {"200"}:
    sys.exit(f"{url}: answered {sorted(codes)}")
times = sorted(float(line.split()[1]) * 1000 for line in answers)
print(f"median {times[2]:7.1f} ms, slowest {times[-1]:7.1f} ms")
PY
}

for shards in $SHARD_COUNTS; do
  section "REDIS_CLUSTER_SHARDS=$shards"
  settings=(REDIS_URL="$CL_URL" REDIS_CLUSTER_SHARDS="$shards" REDIS_NAMESPACE="shards$shards:")
  t0=$EPOCHREALTIME
  env "${settings[@]}" RESPONSE_STREAM_MODE=text CHAT_INTERFACE_URL="$DIR/stream.txt" \
    RUST_LOG=warn PROGRESS_INTERVAL_SECS=0 STATISTICS=full FLUSH_INTERVAL_MS=50 \
    "$BIN/chatstats-worker" || die "chatstats-worker failed with $shards shards"
  t1=$EPOCHREALTIME
  echo "worker, coalescing full: $(calc "round($MESSAGES / ($t1 - $t0))") msg/s"
  APORT=$(free_port)
  env "${settings[@]}" NODE_PORT="$APORT" STATS_CACHE_MS=0 RUST_LOG=warn "$BIN/chatstats-api" &
  API_PID=$!
  PIDS+=("$API_PID")
  wait_healthy "$APORT"
  room=$(curl -fsS "http://127.0.0.1:$APORT/stats/rooms?limit=1" |
    python3 -c 'import json, sys, urllib.parse; print(urllib.parse.quote(next(iter(json.load(sys.stdin)[0])), safe=""))')
  for path in /stats/words "/stats/words?window=1h" "/stats/words?window=24h" \
    "/stats/words?window=30d" "/stats/nicks?window=30d" "/stats/rooms/$room?window=30d"; do
    took=$(timings "http://127.0.0.1:$APORT$path") || die "a read failed with $shards shards"
    printf '%-44s %s\n' "$path" "$took"
  done
  kill "$API_PID"
  wait "$API_PID" 2>/dev/null || true
done
