#!/usr/bin/env bash
# Worker throughput on one standalone Redis against a local 3-master Redis Cluster, same run:
#
#   bash scripts/bench_cluster.sh        # about 2.5 minutes (200,000 messages) after the build
#
#  1. builds the release binaries (unless BENCH_SKIP_BUILD=1);
#  2. starts, in a temporary directory on free loopback ports, one standalone redis-server and
#     three cluster-enabled ones joined with `redis-cli --cluster create … --cluster-replicas 0`
#     (no persistence anywhere); every process is killed on exit whatever happens;
#  3. writes bench.sh's deterministic stream (chatstats-sim --count BENCH_MESSAGES --seed 42,
#     times starting an hour ago) and the expected counts (bench_verify.py expect);
#  4. runs chatstats-worker in text mode over the stream, each run into its own namespace, in
#     four modes — STATISTICS=basic and =full with one call per message, then both with
#     FLUSH_INTERVAL_MS=50 — on standalone and on the cluster (REDIS_URL=redis-cluster://…,
#     REDIS_CLUSTER_SHARDS default 12): wall time, msg/s, the worker's peak RSS and CPU, and per
#     Redis node its CPU (INFO cpu deltas) and the commands it ran (INFO commandstats deltas);
#  5. checks the counts: each standalone run with bench_verify.py (check, check-full), each
#     cluster run against the standalone run of the same mode through two chatstats-api
#     processes (STATS_CACHE_MS=0) that must give identical JSON on every route compared
#     (scripts/bench_cluster.py compare);
#  6. prints the summary table, the per-node Redis CPU, and the "on paper" rate N masters on
#     N machines would carry if Redis CPU were the bottleneck.
#
# Knobs (environment): BENCH_MESSAGES (200000), BENCH_SKIP_BUILD=1 (use target/release as it
# is). Needs: cargo, redis-server (with cluster support, >= 7.0 for --cluster-port), redis-cli,
# python3, curl, /usr/bin/time. Never touches the Redis on 6379.
#
# All four Redis processes, the worker and the API share this machine's cores: the cluster's
# measured rate is not a scaling figure (see the caveat printed at the end).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
MESSAGES=${BENCH_MESSAGES:-200000}
SHARDS=${REDIS_CLUSTER_SHARDS:-12}

# shellcheck source=scripts/bench_common.sh
source "$ROOT/scripts/bench_common.sh"
[[ ${BENCH_SKIP_BUILD:-0} == 1 ]] || need cargo "install Rust (https://rustup.rs)"
need python3 "install python3"
need redis-server "apt-get install -y redis-server"
need redis-cli "apt-get install -y redis-server"
need curl "apt-get install -y curl"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found: apt-get install -y time"
[[ $MESSAGES =~ ^[1-9][0-9]*$ ]] || die "BENCH_MESSAGES must be a positive integer, not '$MESSAGES'"

VERIFY="python3 $ROOT/scripts/bench_verify.py"
HELP="python3 $ROOT/scripts/bench_cluster.py"
BIN=$ROOT/target/release

DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatstats-cluster.XXXXXX")
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

STARTED=$SECONDS
MACHINE="$(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
echo "machine: $MACHINE, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. build ------------------------------------------------------------------------------
section "build (release)"
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  cargo build --release --bins
fi
for b in chatstats-worker chatstats-api chatstats-sim; do
  [[ -x $BIN/$b ]] || die "$BIN/$b missing: cargo build --release --bins"
done

# The binaries run in the temporary directory: the repository's .env must not change what is
# measured.
cd "$DIR"

# --- 2. redis: standalone and cluster ------------------------------------------------------
section "redis"
start_redis "$DIR"
SA_PORT=$PORT
SA_URL=redis://127.0.0.1:$SA_PORT
REDIS_VERSION=$(redis-cli -p "$SA_PORT" INFO server | sed -n 's/^redis_version:\(.*\)\r$/\1/p')
echo "standalone: redis-server $REDIS_VERSION on 127.0.0.1:$SA_PORT"

start_cluster "$DIR" "$SA_PORT"
OWNERS=$($HELP shards x "$SHARDS" "${CL_PORTS[0]}") || die "cannot map the shards to the nodes"
HOME_PORT=$(kv home "$OWNERS")
echo "cluster: 3 masters on 127.0.0.1:${CL_PORTS[0]},${CL_PORTS[1]},${CL_PORTS[2]} (cluster_state:ok), $SHARDS shards;"
for port in "${CL_PORTS[@]}"; do
  echo "  node $port: slots $(redis-cli -p "$port" CLUSTER NODES | awk '/myself/ {for (i = 9; i <= NF; i++) printf "%s ", $i}')shards $(kv "$port" "${OWNERS//:/=}")$([[ $port == "$HOME_PORT" ]] && echo ' (home: shard 0)')"
done

# --- 3. stream -----------------------------------------------------------------------------
section "stream"
START_MS=$(python3 -c 'import time; print(int(time.time() * 1000) - 3600 * 1000)')
# The ranges the comparison asks for: the hour from the stream's first minute (all of it).
FROM_MS=$((START_MS / 60000 * 60000))
TO_MS=$((FROM_MS + 3600 * 1000))
RUST_LOG=warn "$BIN/chatstats-sim" --count "$MESSAGES" --seed 42 --start-ms "$START_MS" \
  --out "$DIR/stream.txt" || die "chatstats-sim --count $MESSAGES failed"
[[ -s $DIR/stream.txt ]] || die "chatstats-sim wrote nothing"
echo "$MESSAGES events, $(stat -c %s "$DIR/stream.txt") bytes: $DIR/stream.txt"
$VERIFY expect "$DIR/stream.txt" "$DIR/expected.json"

# --- 4. worker runs ------------------------------------------------------------------------
# snapshot WHEN PORT…: INFO cpu and INFO commandstats of each node into DIR.
snapshot() {
  local when=$1 port
  shift
  for port in "$@"; do
    redis-cli -p "$port" INFO commandstats >"$DIR/cs-$when-$port.txt"
    redis-cli -p "$port" INFO cpu >"$DIR/cpu-$when-$port.txt"
  done
}
# keys PORT…: the number of keys on each node, space-separated.
keys() {
  local port out=()
  for port in "$@"; do out+=("$(redis-cli -p "$port" DBSIZE)"); done
  echo "${out[*]}"
}
# run_worker LABEL URL NAMESPACE PORT… -- VAR=value…: one worker run over the stream; sets W_SECS
# W_MSGS W_RSS W_CPU, and NODES (bench_cluster.py nodes: one line per node), W_MAX (the busiest
# node's Redis CPU per message, µs), W_BUSY (its CPU as a % of the wall time), W_SUM (the nodes'
# sum), W_CALLS (script calls/message), W_CORES (the CPU of Redis and the worker / wall time) and
# W_WUS (the worker's CPU per message, µs).
run_worker() {
  local label=$1 url=$2 ns=$3 ports=() t0 t1 user sys k0 k1
  shift 3
  while [[ $1 != -- ]]; do
    ports+=("$1")
    shift
  done
  shift
  k0=$(keys "${ports[@]}")
  snapshot before "${ports[@]}"
  t0=$EPOCHREALTIME
  if ! env REDIS_URL="$url" REDIS_NAMESPACE="$ns" RESPONSE_STREAM_MODE=text \
    CHAT_INTERFACE_URL="$DIR/stream.txt" RUST_LOG=warn PROGRESS_INTERVAL_SECS=0 "$@" \
    /usr/bin/time -f '%e %M %U %S' -o "$DIR/time.txt" "$BIN/chatstats-worker"; then
    die "chatstats-worker ($label) failed"
  fi
  t1=$EPOCHREALTIME
  snapshot after "${ports[@]}"
  k1=$(keys "${ports[@]}")
  read -r _ W_RSS user sys <"$DIR/time.txt"
  W_SECS=$(calc "round($t1 - $t0, 3)")
  W_CPU=$(calc "round($user + $sys, 2)")
  W_MSGS=$(calc "round($MESSAGES / $W_SECS)")
  W_WUS=$(calc "round($W_CPU * 1e6 / $MESSAGES, 1)")
  NODES=$($HELP nodes "$MESSAGES" "$DIR" "${ports[@]}")
  W_MAX=$(calc "max([$(sed -n 's/.*cpu_us_msg=\([0-9.]*\).*/\1/p' <<<"$NODES" | paste -sd,)])")
  W_SUM=$(calc "round(sum([$(sed -n 's/.*cpu_us_msg=\([0-9.]*\).*/\1/p' <<<"$NODES" | paste -sd,)]), 2)")
  W_CALLS=$(calc "f'{sum([$(sed -n 's/.*calls_msg=\([0-9.]*\).*/\1/p' <<<"$NODES" | paste -sd,)]):.3f}'")
  W_CORES=$(calc "round(($(sed -n 's/.*cpu_s=\([0-9.]*\).*/\1/p' <<<"$NODES" | paste -sd+) + $W_CPU) / $W_SECS, 2)")
  W_BUSY=$(calc "round(100 * max([$(sed -n 's/.*cpu_s=\([0-9.]*\).*/\1/p' <<<"$NODES" | paste -sd,)]) / $W_SECS)")
  echo "$label: $W_MSGS msg/s (wall ${W_SECS}s), worker peak RSS $(calc "round($W_RSS / 1024, 1)") MB, worker CPU ${W_CPU}s = $W_WUS µs/msg;" \
    "Redis CPU per message: busiest node $W_MAX µs (busy $W_BUSY% of the wall time), all nodes $W_SUM µs; $W_CALLS script calls per message; Redis + worker used $W_CORES of $(nproc) cores"
  local line port i=0 before after
  read -r -a before <<<"$k0"
  read -r -a after <<<"$k1"
  while read -r line; do
    port=$(kv port "$line")
    echo "  node $port$([[ $port == "$HOME_PORT" ]] && echo ' (home)'): Redis CPU $(kv cpu_s "$line") s =" \
      "$(kv cpu_us_msg "$line") µs/msg, $(kv calls_msg "$line") calls/msg, $(kv inner_msg "$line") commands/msg" \
      "inside scripts, +$((after[i] - before[i])) keys; $(kv detail "$line" | tr ',' ' ' | cut -c1-160)"
    i=$((i + 1))
  done <<<"$NODES"
}

# start_api URL NAMESPACE: a chatstats-api on a free port, STATS_CACHE_MS=0; sets APORT, API_PID.
start_api() {
  APORT=$(free_port)
  env NODE_HOST=127.0.0.1 NODE_PORT="$APORT" REDIS_URL="$1" REDIS_NAMESPACE="$2" STATS_CACHE_MS=0 \
    RUST_LOG=warn "$BIN/chatstats-api" &
  API_PID=$!
  PIDS+=("$API_PID")
  wait_healthy "$APORT"
}
stop_api() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

MODES=(basic full coalescing coalescing-full)
declare -A MODE_VARS=(
  [basic]="STATISTICS=basic"
  [full]="STATISTICS=full"
  [coalescing]="FLUSH_INTERVAL_MS=50 STATISTICS=basic"
  [coalescing-full]="FLUSH_INTERVAL_MS=50 STATISTICS=full"
)
declare -A SA_MSGS SA_US SA_BUSY SA_CORES CL_CORES SA_WUS CL_WUS SA_RSS CL_RSS CL_MSGS CL_MAX CL_SUM CL_HOME CL_BUSY SA_OK CL_OK SA_CALLS CL_CALLS CL_NODES
ALL_OK=1
for mode in "${MODES[@]}"; do
  read -r -a vars <<<"${MODE_VARS[$mode]}"
  check=check
  [[ ${MODE_VARS[$mode]} == *STATISTICS=full* ]] && check="check-full"

  section "$mode (${MODE_VARS[$mode]}), standalone, $MESSAGES messages"
  run_worker "standalone $mode" "$SA_URL" "sa-$mode:" "$SA_PORT" -- "${vars[@]}"
  SA_MSGS[$mode]=$W_MSGS SA_US[$mode]=$W_SUM SA_CALLS[$mode]=$W_CALLS SA_BUSY[$mode]=$W_BUSY SA_CORES[$mode]=$W_CORES SA_WUS[$mode]=$W_WUS SA_RSS[$mode]=$W_RSS
  if $VERIFY $check "$DIR/expected.json" "$SA_PORT" "sa-$mode:"; then SA_OK[$mode]=PASS; else SA_OK[$mode]=FAIL ALL_OK=0; fi

  section "$mode (${MODE_VARS[$mode]}), cluster (3 masters, $SHARDS shards), $MESSAGES messages"
  run_worker "cluster $mode" "$CL_URL" "cl-$mode:" "${CL_PORTS[@]}" -- "${vars[@]}"
  CL_MSGS[$mode]=$W_MSGS CL_MAX[$mode]=$W_MAX CL_SUM[$mode]=$W_SUM CL_CALLS[$mode]=$W_CALLS CL_BUSY[$mode]=$W_BUSY CL_CORES[$mode]=$W_CORES CL_WUS[$mode]=$W_WUS CL_RSS[$mode]=$W_RSS
  CL_HOME[$mode]=$(kv cpu_us_msg "$(grep "port=$HOME_PORT " <<<"$NODES")")
  CL_NODES[$mode]=$(for port in "${CL_PORTS[@]}"; do kv cpu_us_msg "$(grep "port=$port " <<<"$NODES")"; done | paste -sd' ')

  echo "-- counts: the cluster's answers against standalone's, through chatstats-api (STATS_CACHE_MS=0)"
  start_api "$SA_URL" "sa-$mode:"
  ref_port=$APORT ref_pid=$API_PID
  start_api "$CL_URL" "cl-$mode:"
  got_port=$APORT got_pid=$API_PID
  if $HELP compare "$ref_port" "$got_port" "$FROM_MS" "$TO_MS"; then CL_OK[$mode]=PASS; else CL_OK[$mode]=FAIL ALL_OK=0; fi
  stop_api "$ref_pid"
  stop_api "$got_pid"
done

# --- 5. summary ----------------------------------------------------------------------------
section "summary ($MESSAGES messages; $MACHINE; redis $REDIS_VERSION; $((SECONDS - STARTED)) s)"
echo "| mode | standalone msg/s | cluster msg/s | cluster / standalone | busiest node Redis CPU µs/msg | all nodes Redis CPU µs/msg | standalone Redis CPU µs/msg | script calls/msg (standalone → cluster) | worker CPU µs/msg (standalone → cluster) | worker peak RSS MB (standalone → cluster) | counts (standalone / cluster) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for mode in "${MODES[@]}"; do
  echo "| $mode (${MODE_VARS[$mode]}) | $(calc "f'{${SA_MSGS[$mode]}:,}'") | $(calc "f'{${CL_MSGS[$mode]}:,}'") |" \
    "$(calc "round(${CL_MSGS[$mode]} / ${SA_MSGS[$mode]}, 2)") | ${CL_MAX[$mode]} | ${CL_SUM[$mode]} | ${SA_US[$mode]} |" \
    "${SA_CALLS[$mode]} → ${CL_CALLS[$mode]} | ${SA_WUS[$mode]} → ${CL_WUS[$mode]} |" \
    "$(calc "round(${SA_RSS[$mode]} / 1024, 1)") → $(calc "round(${CL_RSS[$mode]} / 1024, 1)") | ${SA_OK[$mode]} / ${CL_OK[$mode]} |"
done

echo
echo "Redis CPU per message on each cluster node, µs (home = the node of shard 0: per-second counters,"
echo "failed payloads, global activity, history; every node also holds $((SHARDS / 3)) of the $SHARDS member shards):"
echo
echo "| mode |$(for port in "${CL_PORTS[@]}"; do printf ' node %s%s |' "$port" "$([[ $port == "$HOME_PORT" ]] && echo ' (home)')"; done)"
echo "|---|---|---|---|"
for mode in "${MODES[@]}"; do
  echo "| $mode | $(tr ' ' '\n' <<<"${CL_NODES[$mode]}" | paste -sd'|' | sed 's/|/ | /g') |"
done

# On paper: per message the home node does a fixed part F that stays on one node however many
# masters there are, plus its share of the member shards; the other nodes only their share. With
# the 3-node split measured, F = home − mean(other nodes) and the spread part S = all − F; with
# N masters (N dividing the shard count, so each holds SHARDS/N shards) the busiest node is the
# home one at F + S/N µs per message.
section "on paper: the rate if Redis CPU were the only bottleneck, each master on its own machine"
for mode in "${MODES[@]}"; do
  read -r -a n <<<"${CL_NODES[$mode]}"
  others=()
  home=${CL_HOME[$mode]}
  for i in 0 1 2; do
    [[ ${CL_PORTS[$i]} == "$HOME_PORT" ]] || others+=("${n[$i]}")
  done
  F=$(calc "max(0.0, round($home - (${others[0]} + ${others[1]}) / 2, 3))")
  S=$(calc "round(${CL_SUM[$mode]} - $F, 3)")
  est=""
  for N in 3 6 12; do
    est+="N=$N: $(calc "f'{round(1e6 / ($F + $S / $N)):,}'") msg/s; "
  done
  echo "$mode: the busiest master was busy ${CL_BUSY[$mode]}% of one core in the cluster run (Redis + worker: ${CL_CORES[$mode]} cores), the standalone Redis ${SA_BUSY[$mode]}% (${SA_CORES[$mode]} cores)$( ((CL_BUSY[$mode] < 70)) && echo ' (not Redis-bound here: read the estimate as a Redis-side bound only)');" \
    "measured split (3 masters): busiest node ${CL_MAX[$mode]} µs/msg → $(calc "f'{round(1e6 / ${CL_MAX[$mode]}):,}'") msg/s;" \
    "home fixed part F = $F µs, spread part S = $S µs →" "${est}floor (N → ∞): $(calc "f'{round(1e6 / $F):,}' if $F > 0 else 'unbounded'") msg/s;" \
    "standalone Redis-bound: $(calc "f'{round(1e6 / ${SA_US[$mode]}):,}'") msg/s;" \
    "the worker's CPU: ${CL_WUS[$mode]} µs/msg on the cluster (${SA_WUS[$mode]} standalone) = $(calc "f'{round(1e6 / ${CL_WUS[$mode]}):,}'") msg/s per worker core"
done
echo
echo "Formula: rate(N) = 1e6 / (F + S/N) with F = home node µs/msg − mean of the other nodes' µs/msg,"
echo "S = sum over nodes − F (N dividing $SHARDS; the per-message calls do not change with N: they follow the shards)."
echo "The worker's own CPU is not in it: at rate(N) the workers need rate(N) × (their µs/msg) / 1e6 cores."
echo "Caveat: the three masters, the standalone Redis, the worker and the API all share this machine's"
echo "$(nproc) cores (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)), so the cluster's measured msg/s is not a"
echo "scaling figure; only the per-node CPU split is."

echo
if ((ALL_OK)); then
  echo "counts verified: PASS"
else
  die "count verification failed: standalone $(for m in "${MODES[@]}"; do printf '%s=%s ' "$m" "${SA_OK[$m]}"; done)cluster $(for m in "${MODES[@]}"; do printf '%s=%s ' "$m" "${CL_OK[$m]}"; done)"
fi
