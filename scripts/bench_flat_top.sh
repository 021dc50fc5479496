#!/usr/bin/env bash
# A ranged top list over flat counts (BENCHMARKS.md, "A top list over flat counts"):
#
#     bash scripts/bench_flat_top.sh [BIN_DIR ...]     # default: target/release
#
# Writes FLAT_MESSAGES (20,000) messages of FLAT_WORDS (2) random words each (40,000 words said
# once) into two minutes of one room, records them with each BIN_DIR's chatstats-worker (text mode) into a private
# redis-server, then times one uncached answer of each route with that BIN_DIR's chatstats-api
# (STATS_CACHE_MS=0). Several BIN_DIRs (copies of older builds) are measured in the same run.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/bench_common.sh
source "$ROOT/scripts/bench_common.sh"
need redis-server "apt-get install redis-server"
need curl "apt-get install curl"
[[ $# -gt 0 ]] || set -- "$ROOT/target/release"
for bin in "$@"; do
  [[ -x $bin/chatstats-worker && -x $bin/chatstats-api ]] || die "$bin: no chatstats-worker / chatstats-api (cargo build --release --bins)"
done

DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatstats-flat.XXXXXX")
PIDS=()
trap cleanup EXIT # bench_common.sh: stops PIDS, removes DIR
trap 'exit 130' INT TERM

start_redis "$DIR"
MINUTE=$(python3 - "$DIR/flat.txt" "${FLAT_MESSAGES:-20000}" "${FLAT_WORDS:-2}" <<'PY'
import json, random, sys, time
minute = int(time.time() * 1000) // 60000 * 60000 - 5 * 60000
rng = random.Random(5)
messages, words = int(sys.argv[2]), int(sys.argv[3])
with open(sys.argv[1], "w") as f:
    for i in range(messages):
        body = " ".join(f"u{rng.getrandbits(40)}" for _ in range(words))
        tags = f"tmi-sent-ts={minute + (i % 2) * 60000 + i % 59000}"
        payload = {"room": "#d", "nick": f"n{i % 50}", "body": body, "tags": tags}
        f.write("event: privmsg\nse-data: " + json.dumps(payload) + "\n\n")
print(minute)
PY
)
M=$MINUTE
n=0
for bin in "$@"; do
  n=$((n + 1))
  ns="flat$n:"
  echo "== $bin"
  env REDIS_URL="redis://127.0.0.1:$PORT" REDIS_NAMESPACE="$ns" RESPONSE_STREAM_MODE=text \
    CHAT_INTERFACE_URL="$DIR/flat.txt" RUST_LOG=warn PROGRESS_INTERVAL_SECS=0 "$bin/chatstats-worker"
  api_port=$(free_port)
  env REDIS_URL="redis://127.0.0.1:$PORT" REDIS_NAMESPACE="$ns" STATS_CACHE_MS=0 \
    REDIS_TIMEOUT_MS=60000 NODE_HOST=127.0.0.1 NODE_PORT="$api_port" RUST_LOG=warn \
    "$bin/chatstats-api" &
  api=$!
  PIDS+=("$api")
  wait_healthy "$api_port"
  redis-cli -p "$PORT" CONFIG SET slowlog-log-slower-than 0 >/dev/null
  redis-cli -p "$PORT" CONFIG SET slowlog-max-len 100000 >/dev/null
  redis-cli -p "$PORT" SLOWLOG RESET >/dev/null
  for q in "/stats/words?from=$M&to=$((M + 60000))" \
    "/stats/words?from=$M&to=$((M + 120000))" \
    "/stats/words?from=$M&to=$((M + 120000))&limit=1000" \
    "/stats/rooms/%23d?from=$M&to=$((M + 120000))" \
    "/stats/words?window=1h" \
    "/stats/words?window=15m&room=%23d"; do
    curl -s -o /dev/null -w "  %{http_code} %{time_total} s  $q\n" "http://127.0.0.1:$api_port$q"
  done
  # The longest single Redis command while they were answered: how long Redis made everyone
  # else wait.
  longest=$(redis-cli -p "$PORT" SLOWLOG GET 100000 | python3 -c '
import sys
lines = sys.stdin.read().split("\n")
print(max((int(lines[i + 2]) for i in range(0, len(lines) - 2) if lines[i].isdigit() and lines[i + 1].isdigit() and int(lines[i + 1]) > 10**9 and lines[i + 2].isdigit()), default=0))')
  echo "  longest Redis command meanwhile: $(calc "$longest / 1000") ms"
  kill "$api"
  wait "$api" 2>/dev/null || true
done
