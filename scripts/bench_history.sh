#!/usr/bin/env bash
# The history's costs: a deep page against the first, and Redis memory per kept message.
#
#   bash scripts/bench_history.sh           # about 3 minutes; HISTORY_MESSAGES=200000 by default
#
#  1. records HISTORY_MESSAGES simulator events (timestamps now) with chatstats-worker
#     (STATISTICS=full, HISTORY_RETENTION=24h) into a private Redis;
#  2. sums MEMORY USAGE of the history's keys ({ns}history, the rooms' and nicks' index streams,
#     the id hashes) and prints it per million kept messages;
#  3. starts chatstats-api, follows `next` from page 1 to page 1,000 (50 messages a page) of
#     /messages, and of a room's /messages to its page 200, then times the first and the deep
#     page alternately (keep-alive, one client) and prints their mean and p99 and the ratio.
#
# Needs: cargo, redis-server, redis-cli, python3. Never touches the Redis on 6379.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/bench_common.sh
source "$ROOT/scripts/bench_common.sh"
BIN=$ROOT/target/release
COUNT=${HISTORY_MESSAGES:-200000}
ROUNDS=${HISTORY_ROUNDS:-2000}
[[ ${BENCH_SKIP_BUILD:-0} == 1 ]] || cargo build --release --bins
DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatstats-history.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"

start_redis "$DIR"
echo "== stream: $COUNT simulator events stamped now"
NOW_MS=$(python3 -c 'import time; print(int(time.time() * 1000) - 60000)')
RUST_LOG=warn "$BIN/chatstats-sim" --count "$COUNT" --seed 5 --start-ms "$NOW_MS" --out stream.txt

echo "== record (STATISTICS=full, HISTORY_RETENTION=24h)"
env REDIS_URL="redis://127.0.0.1:$PORT" REDIS_NAMESPACE=h: STATISTICS=full HISTORY_RETENTION=24h \
  RESPONSE_STREAM_MODE=text CHAT_INTERFACE_URL=stream.txt RUST_LOG=warn PROGRESS_INTERVAL_SECS=0 \
  /usr/bin/time -f '%e s, peak RSS %M KB' "$BIN/chatstats-worker"

API_PORT=$(free_port)
env REDIS_URL="redis://127.0.0.1:$PORT" REDIS_NAMESPACE=h: NODE_HOST=127.0.0.1 NODE_PORT="$API_PORT" \
  STATS_CACHE_MS=0 RUST_LOG=warn "$BIN/chatstats-api" &
PIDS+=($!)
wait_healthy "$API_PORT"

python3 - "$PORT" "$API_PORT" "$ROUNDS" <<'PY'
import http.client, json, socket, statistics, sys, time, urllib.parse
redis_port, api_port, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

s = socket.create_connection(("127.0.0.1", redis_port)); f = s.makefile("rb")
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

kept = call("XLEN", "h:history")
sizes = {"stream": 0, "indexes": 0, "ids": 0}
cursor = b"0"
while True:
    cursor, keys = call("SCAN", cursor, "MATCH", "*history*", "COUNT", 1000)
    for k in keys:
        size = call("MEMORY", "USAGE", k, "SAMPLES", 0) or 0
        kind = "stream" if k == b"h:history" else "ids" if b"history:ids:" in k else "indexes"
        sizes[kind] += size
    if cursor == b"0": break
total = sum(sizes.values())
print(f"kept messages: {kept}")
for kind, size in sizes.items():
    print(f"  {kind:8} {size / 2**20:8.1f} MiB  {size / kept:6.0f} B per message")
print(f"history memory: {total / 2**20:.1f} MiB = {total / kept * 1e6 / 2**30:.2f} GiB per million kept messages")

conn = http.client.HTTPConnection("127.0.0.1", api_port)
def get(path):
    conn.request("GET", path)
    r = conn.getresponse(); body = r.read()
    assert r.status == 200, (path, r.status, body[:200])
    return json.loads(body)

def deep(path, pages):
    url, sep = path, "&" if "?" in path else "?"
    seen = 0
    for _ in range(pages - 1):
        page = get(url)
        seen += len(page["messages"])
        assert page["next"], f"{path}: only {seen} messages"
        url = f"{path}{sep}before={urllib.parse.quote(page['next'])}"
    return url

def timed(first, deep_url):
    a, b = [], []
    for _ in range(rounds):
        for url, out in ((first, a), (deep_url, b)):
            t = time.perf_counter(); page = get(url); out.append((time.perf_counter() - t) * 1000)
            assert len(page["messages"]) == 50
    p99 = lambda v: sorted(v)[int(len(v) * 0.99)]
    ma, mb = statistics.mean(a), statistics.mean(b)
    print(f"  page 1:     mean {ma:.3f} ms, p99 {p99(a):.3f} ms")
    print(f"  deep page:  mean {mb:.3f} ms, p99 {p99(b):.3f} ms")
    print(f"  ratio deep/first (mean): {mb / ma:.2f}")

rooms = get("/stats/rooms?limit=1")
room = next(iter(rooms[0]))
print(f"== /messages, page 1 against page 1,000 (50 a page), {rounds} rounds")
timed("/messages?limit=50", deep("/messages?limit=50", 1000))
room_q = urllib.parse.quote(room, safe="")
print(f"== /messages?room={room} ({rooms[0][room]} messages), page 1 against page 200")
timed(f"/messages?room={room_q}&limit=50", deep(f"/messages?room={room_q}&limit=50", 200))
PY
