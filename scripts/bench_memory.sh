#!/usr/bin/env bash
# Redis memory of the statistics by room, nick, emote and time, for one hour of the simulator at
# 1,000 messages/s, and the steady state that the retention defaults give:
#
#   bash scripts/bench_memory.sh            # about 5 minutes
#
#  1. writes 3,600,000 simulator events (seed 9) whose tmi-sent-ts are exactly 1 ms apart — one
#     hour at 1,000 messages/s — ending three hours ago, so that the hour has ended;
#  2. records them with chatstats-worker (STATISTICS=full, FLUSH_INTERVAL_MS=50) into a private
#     Redis, and waits until housekeeping has rolled the hour up;
#  3. measures used_memory by kind of key (MEMORY USAGE of every key): all-time lists, minute
#     buckets, the hour bucket, activity and the rest;
#  4. prints the steady state at 1,000 messages/s with the default retention: all-time + 420 x a
#     minute (7 h) + 49 x the hour (49 h) + 35 x a day (35 d), with a day
#     taken as DAY_FACTOR (default 2) hours: the simulator's vocabulary, nicks and rooms are
#     finite, so a day's buckets hold few members an hour's do not.
#
# Needs: cargo, redis-server, redis-cli, python3. Never touches the Redis on 6379.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/bench_common.sh
source "$ROOT/scripts/bench_common.sh"
BIN=$ROOT/target/release
COUNT=${MEMORY_MESSAGES:-3600000}
DAY_FACTOR=${DAY_FACTOR:-2}
[[ ${BENCH_SKIP_BUILD:-0} == 1 ]] || cargo build --release --bins
DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatstats-memory.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"

start_redis "$DIR"
echo "== stream: $COUNT events, 1 ms apart, ending three hours ago"
END_MS=$(python3 -c 'import time; print((int(time.time()) // 3600 - 3) * 3600 * 1000)')
START_MS=$((END_MS - COUNT))
RUST_LOG=warn "$BIN/chatstats-sim" --count "$COUNT" --seed 9 --start-ms "$START_MS" --out raw.txt
python3 - "$START_MS" <<'EOF'
import re, sys
start = int(sys.argv[1])
pattern = re.compile(rb"tmi-sent-ts=\d+")
n = 0
with open("raw.txt", "rb") as src, open("stream.txt", "wb") as out:
    for line in src:
        if line.startswith(b"se-data: "):
            line = pattern.sub(b"tmi-sent-ts=%d" % (start + n), line, count=1)
            n += 1
        out.write(line)
print(f"{n} payloads, tmi-sent-ts from {start} to {start + n - 1}")
EOF
rm raw.txt

echo "== record (STATISTICS=full, FLUSH_INTERVAL_MS=50)"
env REDIS_URL="redis://127.0.0.1:$PORT" REDIS_NAMESPACE=m: STATISTICS=full FLUSH_INTERVAL_MS=50 \
  RESPONSE_STREAM_MODE=text CHAT_INTERFACE_URL=stream.txt RUST_LOG=warn PROGRESS_INTERVAL_SECS=0 \
  /usr/bin/time -f '%e s, peak RSS %M KB' "$BIN/chatstats-worker"
HOUR=$(((END_MS - 1) / 3600000))
echo "== roll-up of hour $HOUR (a worker's housekeeping, with nothing left to read)"
for _ in $(seq 60); do
  rolled=$(redis-cli -p "$PORT" HGET m:rollup h)
  [[ -n $rolled && $rolled -ge $HOUR ]] && break
  env REDIS_URL="redis://127.0.0.1:$PORT" REDIS_NAMESPACE=m: RESPONSE_STREAM_MODE=text \
    CHAT_INTERFACE_URL=/dev/null RUST_LOG=warn "$BIN/chatstats-worker"
done
[[ $(redis-cli -p "$PORT" HGET m:rollup h) -ge $HOUR ]] || die "hour $HOUR was not rolled up"

echo "== memory by kind of key"
python3 - "$PORT" "$HOUR" "$DAY_FACTOR" <<'EOF'
import socket, sys
port, hour, day_factor = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rb")
def call(*args):
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x if isinstance(x, bytes) else str(x).encode() for x in args)))
    return read()
def read():
    line = f.readline(); t, rest = line[:1], line[1:-2]
    if t == b"+": return rest
    if t == b"-": raise RuntimeError(rest)
    if t == b":": return int(rest)
    if t == b"$":
        n = int(rest); return None if n < 0 else f.read(n + 2)[:-2]
    if t == b"*":
        n = int(rest); return [read() for _ in range(n)]
kinds = {}
cursor = b"0"
while True:
    cursor, keys = call("SCAN", cursor, "COUNT", 1000)
    for k in keys:
        key = k.decode("utf-8", "replace")
        size = call("MEMORY", "USAGE", k, "SAMPLES", 0) or 0
        if key.endswith(":history") or ":history:" in key or key == "m:history": kind = "history (HISTORY_RETENTION; scripts/bench_history.sh)"
        elif ":m:" in key and "activity" not in key: kind = "minute buckets"
        elif key.endswith(f":h:{hour}") and "activity" not in key: kind = "the hour bucket"
        elif ":d:" in key and "activity" not in key: kind = "day buckets"
        elif "activity" in key: kind = "activity"
        elif key.startswith("m:room:") or key.startswith("m:nick:") or key in ("m:words", "m:nicks", "m:rooms", "m:emotes") or key.endswith(":first") or key.endswith(":last"): kind = "all-time lists"
        else: kind = "other"
        count, total = kinds.get(kind, (0, 0)); kinds[kind] = (count + 1, total + size)
    if cursor == b"0": break
used = int([l for l in call("INFO", "memory").decode().splitlines() if l.startswith("used_memory:")][0].split(":")[1])
for kind, (count, total) in sorted(kinds.items()):
    print(f"{kind:16s} {count:8d} keys {total / 2**20:9.1f} MiB")
print(f"used_memory {used / 2**20:.1f} MiB for one hour at 1,000 messages/s (3.6 million messages)")
minute = kinds.get("minute buckets", (0, 0))[1] / 60
hour_b = kinds.get("the hour bucket", (0, 0))[1]
alltime = kinds.get("all-time lists", (0, 0))[1]
steady = alltime + 7 * 60 * minute + 49 * hour_b + 35 * day_factor * hour_b
print(f"a minute {minute / 2**20:.2f} MiB, the hour {hour_b / 2**20:.1f} MiB, all-time {alltime / 2**20:.1f} MiB")
print(f"steady state at 1,000 msg/s with MINUTE_RETENTION=7h HOUR_RETENTION=49h DAY_RETENTION=35d "
      f"(a day = {day_factor:g} hours): {steady / 2**30:.2f} GiB "
      f"= {7*60*minute/2**30:.2f} minutes + {49*hour_b/2**30:.2f} hours + {35*day_factor*hour_b/2**30:.2f} days + {alltime/2**30:.2f} all-time")
EOF
