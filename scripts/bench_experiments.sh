#!/usr/bin/env bash
# Follow-up experiments behind the analysis in BENCHMARKS.md:   bash scripts/bench_experiments.sh
#
#  A. worker (one EVALSHA per message): IN_FLIGHT 32 / 128 / 512: is it bound by the window or
#     by Redis?
#  B. coalescing mode: peak RSS against IN_FLIGHT x FLUSH_MAX_MESSAGES (in-flight batches keep
#     their input buffers alive).
#  C. API /stats/words: glibc malloc against jemalloc (LD_PRELOAD, no rebuild), alternating runs.
#  D. e2e latency: the upstream's socket with and without TCP_NODELAY (Nagle's algorithm).
#
# Uses the release binaries as built (run scripts/bench.sh or `cargo build --release --bins`
# first); starts its own redis-server on a free port, removed on exit. About 3.5 minutes.
# C needs libjemalloc2 (apt-get install -y libjemalloc2) and is skipped without it.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=$ROOT/target/release
JEMALLOC=${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}

# shellcheck source=scripts/bench_common.sh
source "$ROOT/scripts/bench_common.sh"
for b in chatstats-worker chatstats-api chatstats-sim; do
  [[ -x $BIN/$b ]] || die "$BIN/$b missing: cargo build --release --bins"
done
for c in redis-server redis-cli wrk python3; do
  command -v "$c" >/dev/null || die "$c not found"
done
E2E_BIN=$(e2e_bench_binary)
[[ -x $E2E_BIN ]] || die "cannot build the e2e_latency bench"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatstats-exp.XXXXXX")
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

calc() { python3 -c "print($1)"; }
redis_cpu() {
  redis-cli -p "$PORT" INFO cpu | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.2f", s }'
}

start_redis "$DIR"
REDIS_URL=redis://127.0.0.1:$PORT
RUST_LOG=warn "$BIN/chatstats-sim" --count 200000 --seed 42 --out "$DIR/stream.txt"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); redis on port $PORT"

# worker NS [VAR=value…]: one text-mode run over the stream; prints wall, msg/s, RSS, CPU.
worker() {
  local ns=$1 t0 t1 r0 r1
  shift
  r0=$(redis_cpu)
  t0=$EPOCHREALTIME
  env REDIS_URL="$REDIS_URL" REDIS_NAMESPACE="$ns" RESPONSE_STREAM_MODE=text \
    CHAT_INTERFACE_URL="$DIR/stream.txt" RUST_LOG=warn PROGRESS_INTERVAL_SECS=0 "$@" \
    /usr/bin/time -f '%M %U %S' -o "$DIR/time.txt" "$BIN/chatstats-worker" || die "worker failed ($*)"
  t1=$EPOCHREALTIME
  r1=$(redis_cpu)
  local rss user sys
  read -r rss user sys <"$DIR/time.txt"
  printf '  %-40s wall %6.3f s  %7.0f msg/s  peak RSS %6.1f MB  worker CPU %5.2f s  redis CPU %5.2f s\n' \
    "$*" "$(calc "$t1 - $t0")" "$(calc "200000 / ($t1 - $t0)")" "$(calc "$rss / 1024")" \
    "$(calc "$user + $sys")" "$(calc "$r1 - $r0")"
}

echo
echo "== A. worker, one EVALSHA per message: window size (200,000 messages)"
for n in 32 128 512; do
  worker "a$n:" IN_FLIGHT=$n
done

echo
echo "== B. coalescing (FLUSH_INTERVAL_MS=50): peak RSS against IN_FLIGHT x FLUSH_MAX_MESSAGES"
for cfg in "128 10000" "4 10000" "128 1000" "2 1000"; do
  read -r n max <<<"$cfg"
  worker "b$n-$max:" FLUSH_INTERVAL_MS=50 IN_FLIGHT="$n" FLUSH_MAX_MESSAGES="$max"
done

echo
echo "== C. API /stats/words (cache off), wrk -t2 -c64 -d8s: glibc malloc vs jemalloc (LD_PRELOAD)"
if [[ -f $JEMALLOC ]]; then
  api() {
    local preload=$1 label=glibc aport pid
    [[ -n $preload ]] && label=jemalloc
    aport=$(free_port)
    env LD_PRELOAD="$preload" NODE_HOST=127.0.0.1 NODE_PORT="$aport" REDIS_URL="$REDIS_URL" \
      REDIS_NAMESPACE=a128: STATS_CACHE_MS=0 RUST_LOG=warn "$BIN/chatstats-api" &
    pid=$!
    PIDS+=("$pid")
    wait_healthy "$aport"
    wrk -t2 -c64 -d8s --latency "http://127.0.0.1:$aport/stats/words" >"$DIR/wrk.txt" 2>&1
    printf '  %-8s %s  peak RSS %s KB\n' "$label" \
      "$(python3 "$ROOT/scripts/bench_parse.py" wrk "$DIR/wrk.txt")" \
      "$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' "/proc/$pid/status")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  }
  for _ in 1 2 3; do
    api ""
    api "$JEMALLOC"
  done
else
  echo "  skipped: $JEMALLOC not found (apt-get install -y libjemalloc2)"
fi

echo
echo "== D. e2e latency at 5,000 msg/s, 8 s: the upstream's TCP_NODELAY off (0) / on (1)"
for nodelay in 0 1 0 1 0 1; do
  E2E_REDIS_URL=$REDIS_URL E2E_WORKER=$BIN/chatstats-worker E2E_NAMESPACE="d$RANDOM:" \
    E2E_SECONDS=8 E2E_UPSTREAM_NODELAY=$nodelay "$E2E_BIN" >"$DIR/e2e.txt"
  printf '  E2E_UPSTREAM_NODELAY=%s  %s\n' "$nodelay" \
    "$(grep '^E2E ' "$DIR/e2e.txt" | cut -d' ' -f3-)"
done
