#!/usr/bin/env bash
# Two or more builds side by side (BENCHMARKS.md: "Late messages folded once"):
#
#     bash scripts/bench_ab.sh BIN_DIR [BIN_DIR ...]    # e.g. /tmp/base target/release
#
# A BIN_DIR may carry settings for its runs, `DIR:VAR=value[,VAR=value…]` (the same build with
# other settings: e.g. `/tmp/proto:PROTO=append`, BENCHMARKS.md, "Records instead of sorted
# sets, by prototype"); AB_MODES chooses the modes (`basic full coalescing`, all three).
#
# One private redis-server and one live stream (`chatstats-sim --count AB_MESSAGES --seed 42`,
# 200,000 events ending a minute before now, inside the current hour: the script waits for it,
# BENCH_NO_WAIT=1 skips; AB_START_MS chooses another start). Each round runs
# every BIN_DIR's chatstats-worker in text mode, basic, full, then coalescing full
# (FLUSH_INTERVAL_MS=50), each into a flushed database, builds alternating; AB_ROUNDS rounds
# (2). Prints messages/s, Redis CPU per message (INFO cpu, user), the worker's CPU per message
# and peak RSS (/usr/bin/time), and per message the script calls, the commands they ran and the
# ZINCRBY and XADD among them (INFO commandstats: counts, which machine noise does not move). Copy a
# build's target/release binaries aside to compare it.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/bench_common.sh
source "$ROOT/scripts/bench_common.sh"
need redis-server "apt-get install -y redis-server"
need redis-cli "apt-get install -y redis-server"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found: apt-get install -y time"
[[ $# -gt 0 ]] || die "usage: bash scripts/bench_ab.sh BIN_DIR [BIN_DIR ...]"
for build in "$@"; do
  bin=${build%%:*}
  [[ -x $bin/chatstats-worker ]] || die "$bin: no chatstats-worker (cargo build --release --bins)"
done
MESSAGES=${AB_MESSAGES:-200000}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatstats-ab.XXXXXX")
PIDS=()
trap cleanup EXIT # bench_common.sh: stops PIDS, removes DIR
trap 'exit 130' INT TERM

start_redis "$DIR"
# Events come 5 ms apart on average: the stream spans MESSAGES * 5 ms, and ends a minute ago,
# inside the current hour with the runs (AB_RUN_MS, 10 minutes) unless AB_START_MS is given.
if [[ -z ${AB_START_MS:-} ]]; then
  inside_hour $((MESSAGES * 5 + 60000)) "${AB_RUN_MS:-600000}"
fi
START_MS=${AB_START_MS:-$((NOW_MS - MESSAGES * 5 - 60000))}
RUST_LOG=warn "${1%%:*}/chatstats-sim" --count "$MESSAGES" --seed 42 --start-ms "$START_MS" \
  --out "$DIR/stream.txt" || die "chatstats-sim failed"
echo "redis-server on $PORT; stream of $MESSAGES events from $(date -u -d "@$((START_MS / 1000))" +%H:%M:%S) UTC"

redis_cpu() {
  redis-cli -p "$PORT" INFO cpu | sed -n 's/^used_cpu_user:\([0-9.]*\)\r$/\1/p'
}

# run BIN_DIR LABEL [VAR=value…]
run() {
  local bin=$1 label=$2 c0 c1 t0 t1
  shift 2
  redis-cli -p "$PORT" FLUSHALL >/dev/null
  redis-cli -p "$PORT" CONFIG RESETSTAT >/dev/null
  c0=$(redis_cpu)
  t0=$EPOCHREALTIME
  env REDIS_URL="redis://127.0.0.1:$PORT" REDIS_NAMESPACE=ab: RESPONSE_STREAM_MODE=text \
    CHAT_INTERFACE_URL="$DIR/stream.txt" RUST_LOG=warn PROGRESS_INTERVAL_SECS=0 IGNORED_NICKS= "$@" \
    /usr/bin/time -f '%M %U %S' -o "$DIR/time.txt" "$bin/chatstats-worker" ||
    die "$label: chatstats-worker failed"
  t1=$EPOCHREALTIME
  c1=$(redis_cpu)
  read -r rss user sys <"$DIR/time.txt"
  redis-cli -p "$PORT" INFO commandstats >"$DIR/commands.txt"
  python3 - "$label" "$MESSAGES" "$t0" "$t1" "$c0" "$c1" "$rss" "$user" "$sys" "$DIR/commands.txt" <<'PY'
import re, sys
label, n, t0, t1, c0, c1, rss, user, sys_, commands = sys.argv[1:]
n = int(n)
calls = {m[1]: int(m[2]) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", open(commands).read())}
scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
inside = sum(calls.values()) - scripts - calls.get("info", 0) - calls.get("config", 0)
usec = {m[1]: int(m[2]) for m in re.finditer(r"cmdstat_(\w+):calls=\d+,usec=(\d+)", open(commands).read())}
print(f"{label:<48} {n / (float(t1) - float(t0)):>8.0f} msg/s  Redis {1e6 * (float(c1) - float(c0)) / n:6.1f} µs/msg"
      f" (in scripts {usec.get('evalsha', 0) / n:5.1f})"
      f"  worker {1e6 * (float(user) + float(sys_)) / n:6.1f} µs/msg  RSS {int(rss) / 1024:5.1f} MB"
      f"  calls {scripts / n:.3f}, commands {inside / n:.2f}, ZINCRBY {calls.get('zincrby', 0) / n:.2f},"
      f" XADD {calls.get('xadd', 0) / n:.2f}, APPEND {calls.get('append', 0) / n:.2f} /msg")
PY
}

MODES=${AB_MODES:-basic full coalescing}
for round in $(seq "${AB_ROUNDS:-2}"); do
  for build in "$@"; do
    bin=${build%%:*}
    settings=()
    [[ $build == *:* ]] && IFS=, read -r -a settings <<<"${build#*:}"
    for mode in $MODES; do
      case $mode in
      basic) run "$bin" "round $round, $build, basic" "${settings[@]}" STATISTICS=basic ;;
      full) run "$bin" "round $round, $build, full" "${settings[@]}" STATISTICS=full ;;
      coalescing)
        run "$bin" "round $round, $build, coalescing full" "${settings[@]}" STATISTICS=full FLUSH_INTERVAL_MS=50
        ;;
      *) die "AB_MODES: unknown mode '$mode' (basic, full, coalescing)" ;;
      esac
    done
  done
done
