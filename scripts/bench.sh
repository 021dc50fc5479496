#!/usr/bin/env bash
# The end-to-end benchmark of chatstats, in one command:   bash scripts/bench.sh
#
#  1. builds the release binaries and the e2e_latency bench binary;
#  2. starts a private redis-server on a free loopback port (temporary directory, no
#     persistence), removed on exit whatever happens;
#  3. writes two deterministic streams (chatstats-sim --count 200000 --seed 42, the same events
#     at two --start-ms): a live one whose message times end a minute before now, all inside the
#     current hour (what a worker reading a chat sees; the script waits for minute 18 of an hour
#     when the run would otherwise cross into the next hour), and a late one in an hour that has
#     ended and is rolled up, where each message also goes to its hour and day directly;
#  4. measures the Redis ceiling: redis-benchmark, pipelined ZINCRBY;
#  5. runs chatstats-worker in text mode over the live stream, one EVALSHA per message, with
#     STATISTICS=basic (the TypeScript service's work) and =full (plus the statistics by room,
#     nick, emote and time), =full over the late stream, then in coalescing mode
#     (FLUSH_INTERVAL_MS=50) both ways, each into
#     its own namespace: wall time, peak RSS, CPU, Redis commands executed (INFO commandstats
#     deltas), Redis memory (used_memory delta), and an independent check of every count
#     (scripts/bench_verify.py re-implements the counting rules in Python, part 2 included);
#  6. end-to-end latency at a steady 5,000 messages/s over HTTP (benches/e2e_latency.rs);
#  7. API load with wrk: GET / against /stats/words and the part-2 lists at 64 connections with
#     the default STATS_CACHE_MS (and /stats/words with 0), and window=24h top-10 at 16
#     connections with and without the cache;
#  8. prints a summary with the ratios to the TypeScript service's figures and the targets.
#
# Knobs (environment): BENCH_MESSAGES (200000), BENCH_E2E_SECONDS (20), BENCH_E2E_RATE (5000),
# BENCH_API_SECONDS (10), BENCH_API_CONNECTIONS (64), BENCH_SKIP_BUILD=1 (use the binaries in
# target/release as they are), BENCH_NO_WAIT=1 (never wait for the hour's minute 18: the live
# stream may then start in the hour before, and its first messages are late). Needs: cargo, redis-server, redis-cli, redis-benchmark, python3,
# /usr/bin/time, wrk (apt-get install -y redis-server time wrk). Never touches the Redis on 6379.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
MESSAGES=${BENCH_MESSAGES:-200000}
E2E_SECONDS=${BENCH_E2E_SECONDS:-20}
E2E_RATE=${BENCH_E2E_RATE:-5000}
API_SECONDS=${BENCH_API_SECONDS:-10}
API_CONNECTIONS=${BENCH_API_CONNECTIONS:-64}
# The TypeScript service's published figures (measured on this machine kind: BENCHMARKS.md).
TS_WORKER_MSGS=4355
TS_WORKER_RSS_MB=250
TS_API_RPS=10500

# shellcheck source=scripts/bench_common.sh
source "$ROOT/scripts/bench_common.sh"
need cargo "install Rust (https://rustup.rs)"
need python3 "install python3"
need redis-server "apt-get install -y redis-server"
need redis-cli "apt-get install -y redis-server"
need redis-benchmark "apt-get install -y redis-server (redis-tools)"
need wrk "apt-get install -y wrk"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found: apt-get install -y time"

PARSE="python3 $ROOT/scripts/bench_parse.py"
VERIFY="python3 $ROOT/scripts/bench_verify.py"
BIN=$ROOT/target/release

DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatstats-bench.XXXXXX")
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

STARTED=$SECONDS
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)," \
  "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. build ------------------------------------------------------------------------------
section "build (release)"
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  cargo build --release --bins
fi
E2E_BIN=$(e2e_bench_binary)
[[ -x $E2E_BIN ]] || die "could not build the e2e_latency bench (cargo bench --bench e2e_latency --no-run)"
for b in chatstats-worker chatstats-api chatstats-sim; do
  [[ -x $BIN/$b ]] || die "$BIN/$b missing: cargo build --release --bins"
done

# The binaries run in the temporary directory: the repository's .env (local defaults such as
# IGNORED_NICKS) must not change what is measured.
cd "$DIR"

# --- 2. redis ------------------------------------------------------------------------------
section "redis"
start_redis "$DIR"
REDIS_URL=redis://127.0.0.1:$PORT
REDIS_VERSION=$(redis-cli -p "$PORT" INFO server | sed -n 's/^redis_version:\(.*\)\r$/\1/p')
echo "redis-server $REDIS_VERSION on 127.0.0.1:$PORT (no persistence), data in $DIR"

# --- 3. stream -----------------------------------------------------------------------------
section "streams"
# The simulator's events come 1 to 9 ms apart (5 on average): the live stream spans about
# MESSAGES * 5 ms, and starts that long and a minute before now. The worker runs over it in
# full mode within about six minutes from here, all inside the current hour, unless the hour
# has less than that left or began less than the span ago: then wait for minute span + 1.
LIVE_SPAN_MS=$((MESSAGES * 5 + 60000))
inside_hour "$LIVE_SPAN_MS" 360000
# stream NAME START_MS: writes $DIR/NAME.txt and the counts expected from it, $DIR/NAME.json.
stream() {
  RUST_LOG=warn "$BIN/chatstats-sim" --count "$MESSAGES" --seed 42 --start-ms "$2" \
    --out "$DIR/$1.txt" || die "chatstats-sim --count $MESSAGES failed"
  [[ -s $DIR/$1.txt ]] || die "chatstats-sim wrote nothing"
  echo "$1: $MESSAGES events from $(date -u -d "@$(($2 / 1000))" +%H:%M:%S) UTC, $(stat -c %s "$DIR/$1.txt") bytes"
  $VERIFY expect "$DIR/$1.txt" "$DIR/$1.json"
}
stream live $((NOW_MS - LIVE_SPAN_MS))
# The late stream starts 45 minutes before the current hour: its hour has ended.
stream late $((NOW_MS - INTO_HOUR_MS - 2700000))

# --- 4. redis ceiling ----------------------------------------------------------------------
section "Redis ceiling: redis-benchmark -P 64 -n 2000000 -r 100000 -q zincrby"
redis-benchmark -p "$PORT" -P 64 -n 2000000 -r 100000 -q zincrby bench:z 1 __rand_int__ >"$DIR/redis-benchmark.txt" 2>&1 ||
  die "redis-benchmark failed: $(tail -3 "$DIR/redis-benchmark.txt")"
CEILING=$(kv rps "$($PARSE redis-benchmark "$DIR/redis-benchmark.txt")")
redis-cli -p "$PORT" DEL bench:z >/dev/null
echo "ceiling: $CEILING ZINCRBY/s"

section "Redis memory per distinct member (1,000,000 distinct 8-byte members in one sorted set)"
used_memory() {
  redis-cli -p "$PORT" INFO memory | sed -n 's/^used_memory:\([0-9]*\)\r$/\1/p'
}
M0=$(used_memory)
redis-cli -p "$PORT" EVAL "for i = 0, 999999 do redis.call('ZADD', KEYS[1], i % 1000 + 1, string.format('m%07d', i)) end return redis.call('ZCARD', KEYS[1])" 1 bench:mem >/dev/null
REDIS_PER_MEMBER=$(calc "round(($(used_memory) - $M0) / 1e6, 1)")
redis-cli -p "$PORT" DEL bench:mem >/dev/null
echo "redis: $REDIS_PER_MEMBER bytes per member (used_memory delta)"

# --- 5. worker, text mode ------------------------------------------------------------------
# run_worker LABEL NAMESPACE [VAR=value…]: runs over the stream $STREAM (live or late); sets
# W_SECS W_RSS W_MSGS W_SCRIPTS W_INNER W_CPU W_RCPU W_MEM (Redis bytes per message) W_OK. With STATISTICS=full among the variables, part 2 is
# checked too.
run_worker() {
  local label=$1 ns=$2 mem0 check=check
  shift 2
  # shellcheck disable=SC2100 # a pattern, not arithmetic
  [[ " $* " == *" STATISTICS=full "* ]] && check=check-full
  mem0=$(used_memory)
  redis-cli -p "$PORT" INFO commandstats >"$DIR/cs-before.txt"
  redis-cli -p "$PORT" INFO cpu >"$DIR/cpu-before.txt"
  local t0 t1
  t0=$EPOCHREALTIME
  if ! env REDIS_URL="$REDIS_URL" REDIS_NAMESPACE="$ns" RESPONSE_STREAM_MODE=text \
    CHAT_INTERFACE_URL="$DIR/$STREAM.txt" RUST_LOG=warn PROGRESS_INTERVAL_SECS=0 "$@" \
    /usr/bin/time -f '%e %M %U %S' -o "$DIR/time.txt" "$BIN/chatstats-worker"; then
    die "chatstats-worker ($label) failed"
  fi
  redis-cli -p "$PORT" INFO commandstats >"$DIR/cs-after.txt"
  redis-cli -p "$PORT" INFO cpu >"$DIR/cpu-after.txt"
  t1=$EPOCHREALTIME
  # Wall time from the shell's microsecond clock (time's %e has 10 ms steps); RSS and CPU from time.
  read -r _ W_RSS user sys <"$DIR/time.txt"
  W_SECS=$(calc "round($t1 - $t0, 3)")
  W_CPU=$(calc "round($user + $sys, 2)")
  local stats
  stats=$($PARSE cmdstats "$DIR/cs-before.txt" "$DIR/cs-after.txt")
  W_SCRIPTS=$(kv scripts "$stats")
  W_INNER=$(kv inner "$stats")
  W_RCPU=$(kv redis_cpu "$($PARSE cpu "$DIR/cpu-before.txt" "$DIR/cpu-after.txt")")
  W_MSGS=$(calc "round($MESSAGES / $W_SECS)")
  W_CMDS=$(calc "round($W_INNER / $W_SECS)")
  echo "wall ${W_SECS}s, peak RSS ${W_RSS} KB, worker CPU ${W_CPU}s, redis CPU ${W_RCPU}s"
  echo "commands: $(kv detail "$stats" | tr ',' ' ')"
  echo "$label: $W_MSGS msg/s, $(calc "round($W_SCRIPTS / $W_SECS)") script calls/s, $W_CMDS Redis commands/s inside scripts" \
    "($(calc "round(100 * $W_CMDS / $CEILING, 1)")% of the ${CEILING}/s ceiling), peak RSS $(calc "round($W_RSS / 1024, 1)") MB"
  W_MEM=$(calc "round(($(used_memory) - $mem0) / $MESSAGES)")
  echo "Redis memory: $W_MEM bytes per message ($(calc "round($W_MEM * 1e6 / 1048576)") MiB per million messages)"
  if $VERIFY $check "$DIR/$STREAM.json" "$PORT" "$ns"; then W_OK=PASS; else W_OK=FAIL; fi
}

STREAM=live
section "worker, one EVALSHA per message, STATISTICS=basic (text mode, $MESSAGES messages)"
run_worker "worker" "bench:" STATISTICS=basic
T_SECS=$W_SECS T_RSS=$W_RSS T_MSGS=$W_MSGS T_CMDS=$W_CMDS T_OK=$W_OK
T_CPU=$W_CPU T_RCPU=$W_RCPU T_MEM=$W_MEM

section "worker, one EVALSHA per message, STATISTICS=full (text mode, $MESSAGES messages)"
run_worker "full" "benchf:" STATISTICS=full
F_SECS=$W_SECS F_RSS=$W_RSS F_MSGS=$W_MSGS F_SCRIPTS=$W_SCRIPTS F_CMDS=$W_CMDS F_OK=$W_OK
F_CPU=$W_CPU F_RCPU=$W_RCPU F_MEM=$W_MEM

STREAM=late
section "worker, one EVALSHA per message, STATISTICS=full, the late stream ($MESSAGES messages)"
run_worker "full, late" "benchl:" STATISTICS=full
L_SECS=$W_SECS L_MSGS=$W_MSGS L_OK=$W_OK
STREAM=live

section "worker, coalescing (FLUSH_INTERVAL_MS=50), STATISTICS=basic ($MESSAGES messages)"
run_worker "coalescing" "benchc:" FLUSH_INTERVAL_MS=50 STATISTICS=basic
C_SECS=$W_SECS C_MSGS=$W_MSGS C_OK=$W_OK

section "worker, coalescing (FLUSH_INTERVAL_MS=50), STATISTICS=full ($MESSAGES messages)"
run_worker "coalescing full" "benchcf:" FLUSH_INTERVAL_MS=50 STATISTICS=full
CF_SECS=$W_SECS CF_RSS=$W_RSS CF_MSGS=$W_MSGS CF_SCRIPTS=$W_SCRIPTS CF_OK=$W_OK

# --- 6. end-to-end latency -----------------------------------------------------------------
section "end-to-end latency at $E2E_RATE msg/s over HTTP, ${E2E_SECONDS}s"
# A worker that cannot keep up at this rate (a slow day) leaves probes unseen: the bench then
# fails after its result line, which the summary reports as missed; the API steps still run.
E2E_REDIS_URL=$REDIS_URL E2E_WORKER=$BIN/chatstats-worker E2E_NAMESPACE=e2e: E2E_RATE=$E2E_RATE \
  E2E_SECONDS=$E2E_SECONDS "$E2E_BIN" | tee "$DIR/e2e.txt" ||
  echo "the e2e latency bench failed; its result line, if any, is reported below"
E2E=$(grep '^E2E ' "$DIR/e2e.txt") || die "no result line from the e2e latency bench"

# --- 7. API load ---------------------------------------------------------------------------
# start_api CACHE_MS: starts chatstats-api on the full run's namespace; sets APORT and API_PID.
start_api() {
  APORT=$(free_port)
  env NODE_HOST=127.0.0.1 NODE_PORT="$APORT" REDIS_URL="$REDIS_URL" REDIS_NAMESPACE=benchf: \
    STATS_CACHE_MS="$1" RUST_LOG=warn "$BIN/chatstats-api" &
  API_PID=$!
  PIDS+=("$API_PID")
  wait_healthy "$APORT"
}
stop_api() {
  A_RSS=$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' "/proc/$API_PID/status")
  kill "$API_PID"
  wait "$API_PID" 2>/dev/null || true
  echo "chatstats-api peak RSS $A_RSS KB"
}
# load LABEL CONNECTIONS PATH: wrk against the running API; prints and returns (in LOAD) the
# parsed result.
load() {
  local label=$1 connections=$2 path=$3 api0 api1 wrk_user wrk_sys
  api0=$(awk '{print $14 + $15}' "/proc/$API_PID/stat")
  redis-cli -p "$PORT" INFO cpu >"$DIR/cpu-before.txt"
  /usr/bin/time -f '%U %S' -o "$DIR/wrk-time.txt" \
    wrk -t2 -c"$connections" -d"${API_SECONDS}s" --latency "http://127.0.0.1:$APORT$path" >"$DIR/wrk.txt" 2>&1 ||
    die "wrk failed: $(cat "$DIR/wrk.txt")"
  api1=$(awk '{print $14 + $15}' "/proc/$API_PID/stat")
  redis-cli -p "$PORT" INFO cpu >"$DIR/cpu-after.txt"
  read -r wrk_user wrk_sys <"$DIR/wrk-time.txt"
  LOAD=$($PARSE wrk "$DIR/wrk.txt")
  echo "$label ($connections connections) $path: $LOAD"
  echo "  CPU seconds during the run: chatstats-api $(calc "round(($api1 - $api0) / $(getconf CLK_TCK), 2)")," \
    "redis-server $(kv redis_cpu "$($PARSE cpu "$DIR/cpu-before.txt" "$DIR/cpu-after.txt")")," \
    "wrk $(calc "round($wrk_user + $wrk_sys, 2)") (of $(nproc) cores x ${API_SECONDS} s = $(($(nproc) * API_SECONDS)))"
  if [[ $(kv errors "$LOAD") != 0 || $(kv non2xx "$LOAD") != 0 ]]; then
    sed -n '1,40p' "$DIR/wrk.txt"
    die "errors or non-2xx answers under load on $path"
  fi
}
TOP_ROOM=$(redis-cli -p "$PORT" ZREVRANGE benchf:rooms 0 0 | python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read().strip(), safe=""))')

section "API load, default STATS_CACHE_MS (answers at most that stale): wrk -t2 -d${API_SECONDS}s"
start_api 50
echo "sample /stats/words?window=24h: $(curl -fsS "http://127.0.0.1:$APORT/stats/words?window=24h&limit=3")"
load "cache 50 ms" "$API_CONNECTIONS" / && A_ROOT=$LOAD
load "cache 50 ms" "$API_CONNECTIONS" /stats/words && A_WORDS=$LOAD
load "cache 50 ms" "$API_CONNECTIONS" /stats && A_STATS=$LOAD
load "cache 50 ms" "$API_CONNECTIONS" "/stats/emotes?window=1h" && A_EMOTES=$LOAD
load "cache 50 ms" "$API_CONNECTIONS" "/stats/words?room=$TOP_ROOM&window=24h" && A_ROOMW=$LOAD
load "cache 50 ms" 16 "/stats/words?window=24h" && A_DAY=$LOAD
stop_api
K_RSS=$A_RSS

section "API load, STATS_CACHE_MS=0 (every answer read from Redis): wrk -t2 -d${API_SECONDS}s"
start_api 0
load "no cache" "$API_CONNECTIONS" /stats/words && N_WORDS=$LOAD
load "no cache" 16 "/stats/words?window=24h" && N_DAY=$LOAD
load "no cache" 16 "/stats/rooms/$TOP_ROOM?window=24h" && N_ROOM=$LOAD
stop_api
N_RSS=$A_RSS

# --- 8. summary ----------------------------------------------------------------------------
met() { if [[ $(calc "$1") == True ]]; then echo met; else echo MISSED; fi; }
row() { printf '| %-44s | %-36s | %-48s |\n' "$1" "$2" "$3"; }
E2E_P50=$(kv p50_ms "$E2E") E2E_P99=$(kv p99_ms "$E2E") E2E_MAX=$(kv max_ms "$E2E")
NW_RPS=$(kv rps "$N_WORDS") NW_P99=$(kv p99_ms "$N_WORDS")
T_RATIO=$(calc "round(100 * $T_CMDS / $CEILING, 1)")

section "summary ($(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), redis $REDIS_VERSION; $((SECONDS - STARTED)) s)"
ROOT_RPS=$(kv rps "$A_ROOT")
ratio() { calc "round($(kv rps "$1") / $ROOT_RPS, 2)"; }
FULL_RATIO=$(calc "round($F_MSGS / $T_MSGS, 2)")
row "measure" "measured" "vs TypeScript / target"
row "---" "---" "---"
row "Redis ceiling (pipelined ZINCRBY)" "$CEILING cmd/s" "redis-benchmark -P 64"
row "worker basic, 1 EVALSHA/msg: messages/s" "$T_MSGS msg/s ($T_SECS s) $T_OK" "$(calc "round($T_MSGS / $TS_WORKER_MSGS, 1)")x TS $TS_WORKER_MSGS; >= 26000: $(met "$T_MSGS >= 26000")"
row "worker basic: Redis commands/s" "$T_CMDS/s = $T_RATIO% of ceiling" ">= 80% of ceiling: $(met "$T_RATIO >= 80")"
row "worker basic: CPU (worker / redis-server)" "$T_CPU s / $T_RCPU s in $T_SECS s" "redis-server busy $(calc "round(100 * $T_RCPU / $T_SECS)")% of one core"
row "worker basic: peak RSS" "$(calc "round($T_RSS / 1024, 1)") MB" "$(calc "round($TS_WORKER_RSS_MB * 1024 / $T_RSS, 1)")x less than TS ~250 MB; <= 30 MB: $(met "$T_RSS <= 30 * 1024")"
row "worker full, 1 EVALSHA/msg: messages/s" "$F_MSGS msg/s ($F_SECS s) $F_OK" "$FULL_RATIO of basic; >= 0.33: $(met "$FULL_RATIO >= 0.33")"
row "worker full: Redis commands/s, calls/s" "$F_CMDS/s, $(calc "round($F_SCRIPTS / $F_SECS)") calls/s" "$(calc "round(100 * $F_CMDS / $CEILING, 1)")% of ceiling"
row "worker full: CPU (worker / redis-server)" "$F_CPU s / $F_RCPU s in $F_SECS s" "redis-server busy $(calc "round(100 * $F_RCPU / $F_SECS)")% of one core"
row "worker full, late stream: messages/s" "$L_MSGS msg/s ($L_SECS s) $L_OK" "$(calc "round($L_MSGS / $T_MSGS, 2)") of basic (each message also to its hour and day)"
row "worker full: peak RSS" "$(calc "round($F_RSS / 1024, 1)") MB" "<= 30 MB: $(met "$F_RSS <= 30 * 1024")"
row "Redis memory per message (basic / full)" "$T_MEM / $F_MEM B" "$(calc "round($F_MEM * 1e6 / 1048576)") MiB per million messages (full)"
row "coalescing basic (50 ms): messages/s" "$C_MSGS msg/s ($C_SECS s) $C_OK" "$(calc "round($C_MSGS / $TS_WORKER_MSGS, 1)")x TS; >= 110000: $(met "$C_MSGS >= 110000")"
row "coalescing full (50 ms): messages/s" "$CF_MSGS msg/s ($CF_SECS s) $CF_OK" "$(calc "round($CF_MSGS / $TS_WORKER_MSGS, 1)")x TS; >= 123000: $(met "$CF_MSGS >= 123000")"
row "coalescing full: peak RSS, calls/s" "$(calc "round($CF_RSS / 1024, 1)") MB, $(calc "round($CF_SCRIPTS / $CF_SECS)") calls/s" ""
E2E_MISSING=$(kv missing "$E2E")
row "e2e latency at $E2E_RATE msg/s (p50/p99/max)" "$E2E_P50 / $E2E_P99 / $E2E_MAX ms" "p99 <= 5 ms: $(met "$E2E_P99 <= 5 and ${E2E_MISSING:-0} == 0") ($(kv probes "$E2E") probes seen, ${E2E_MISSING:-0} never)"
row "API GET / (64 conn)" "$ROOT_RPS req/s, p99 $(kv p99_ms "$A_ROOT") ms" "the same run's reference"
row "API /stats/words, cache 50 ms (64)" "$(kv rps "$A_WORDS") req/s, p99 $(kv p99_ms "$A_WORDS") ms" "$(ratio "$A_WORDS") of GET /; >= 0.8 & p99 <= 5: $(met "$(ratio "$A_WORDS") >= 0.8 and $(kv p99_ms "$A_WORDS") <= 5")"
row "API /stats, cache 50 ms (64)" "$(kv rps "$A_STATS") req/s, p99 $(kv p99_ms "$A_STATS") ms" "$(ratio "$A_STATS") of GET /"
row "API /stats/emotes?window=1h (64)" "$(kv rps "$A_EMOTES") req/s, p99 $(kv p99_ms "$A_EMOTES") ms" "$(ratio "$A_EMOTES") of GET /; >= 0.8 & p99 <= 5: $(met "$(ratio "$A_EMOTES") >= 0.8 and $(kv p99_ms "$A_EMOTES") <= 5")"
row "API /stats/words?room=…&window=24h (64)" "$(kv rps "$A_ROOMW") req/s, p99 $(kv p99_ms "$A_ROOMW") ms" "$(ratio "$A_ROOMW") of GET /; >= 0.8 & p99 <= 5: $(met "$(ratio "$A_ROOMW") >= 0.8 and $(kv p99_ms "$A_ROOMW") <= 5")"
row "API /stats/words?window=24h, cache (16)" "$(kv rps "$A_DAY") req/s, p99 $(kv p99_ms "$A_DAY") ms" "p99 <= 20 ms: $(met "$(kv p99_ms "$A_DAY") <= 20")"
row "API /stats/words?window=24h, no cache (16)" "$(kv rps "$N_DAY") req/s, p99 $(kv p99_ms "$N_DAY") ms" "p99 <= 20 ms: $(met "$(kv p99_ms "$N_DAY") <= 20")"
row "API /stats/rooms/…?window=24h, no cache (16)" "$(kv rps "$N_ROOM") req/s, p99 $(kv p99_ms "$N_ROOM") ms" ""
row "API /stats/words, no cache (64)" "$NW_RPS req/s, p50 $(kv p50_ms "$N_WORDS") p99 $NW_P99 ms" "$(ratio "$N_WORDS") of GET /; $(calc "round($NW_RPS / $TS_API_RPS, 1)")x TS"
row "Redis sorted set, bytes per distinct member" "$REDIS_PER_MEMBER B (10^6 8-byte members)" "in-memory store: cargo bench --bench memory_per_member"
row "API peak RSS (cache 50 ms / off)" "$(calc "round($K_RSS / 1024, 1)") / $(calc "round($N_RSS / 1024, 1)") MB" ""
echo
echo "TypeScript figures: worker $TS_WORKER_MSGS msg/s, ~$TS_WORKER_RSS_MB MB peak RSS; API ~$TS_API_RPS req/s on /stats/words at 64 connections, p99 21-92 ms."
if [[ $T_OK != PASS || $F_OK != PASS || $L_OK != PASS || $C_OK != PASS || $CF_OK != PASS ]]; then
  die "count verification failed (basic: $T_OK, full: $F_OK, full late: $L_OK, coalescing: $C_OK, coalescing full: $CF_OK)"
fi
echo "counts verified: PASS"
