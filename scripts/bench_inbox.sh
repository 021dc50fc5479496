#!/usr/bin/env bash
# The inbox path against the HTTP-upstream path, in one run:
#
#   bash scripts/bench_inbox.sh             # about 4 minutes; INBOX_MESSAGES=200000 by default
#
#  1. writes INBOX_MESSAGES simulator events (seed 42, stamped now) and the same payloads as
#     NDJSON;
#  2. direct: chatstats-worker reads the stream file (text mode, one call per message, as from
#     an HTTP upstream) into namespace d:, timed;
#  3. ingestion: chatstats-api (INGEST_TOKENS set) takes the NDJSON as POST /messages batches
#     of 500 from 4 client threads into namespace i1:, timed, with the API's peak RSS;
#  4. consumption: 1, then 3 inbox workers (CHAT_INTERFACE_URL=inbox) drain the inbox of i1:
#     and of i3: (filled the same way), timed until the inbox is empty and nothing is pending,
#     with each worker's peak RSS;
#  5. sustained: POSTs at SUSTAIN_RATE (6,000) messages/s for SUSTAIN_SECONDS (30) while one
#     inbox worker consumes (namespace s:): the largest backlog, the time to drain it, and the
#     RSS of the API and of the worker;
#  6. checks that i1: and i3: hold exactly what d: holds (every member and score of words,
#     nicks, rooms and emotes, and the failed total) and prints PASS or FAIL.
#
# Needs: cargo, redis-server, redis-cli, python3. Never touches the Redis on 6379.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/bench_common.sh
source "$ROOT/scripts/bench_common.sh"
BIN=$ROOT/target/release
COUNT=${INBOX_MESSAGES:-200000}
[[ ${BENCH_SKIP_BUILD:-0} == 1 ]] || cargo build --release --bins
DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatstats-inbox.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"
start_redis "$DIR"
REDIS="redis://127.0.0.1:$PORT"

echo "== stream: $COUNT simulator events"
START_MS=$(python3 -c 'import time; print(int(time.time() * 1000) - 120000)')
RUST_LOG=warn "$BIN/chatstats-sim" --count "$COUNT" --seed 42 --start-ms "$START_MS" --out raw.txt
# POST /messages refuses a batch with a payload that is not a JSON object (the simulator mixes
# some in): both paths get the JSON objects only, the direct one as an upstream stream.
python3 - <<'PY'
import json
n = skipped = 0
with open("raw.txt", "rb") as src, open("stream.ndjson", "wb") as out, open("stream.txt", "wb") as stream:
    for line in src:
        if not line.startswith(b"se-data: "):
            continue
        payload = line[len(b"se-data: "):].rstrip(b"\r\n")
        try:
            ok = isinstance(json.loads(payload), dict)
        except ValueError:
            ok = False
        if not ok:
            skipped += 1
            continue
        out.write(payload + b"\n")
        stream.write(b"event: privmsg\nse-data: " + payload + b"\n\n")
        n += 1
print(f"{n} payloads as NDJSON and as a stream ({skipped} that are not JSON objects left out)")
open("count", "w").write(str(n))
PY
COUNT=$(cat count)

echo "== direct: one worker reads the stream (one call per message)"
env REDIS_URL="$REDIS" REDIS_NAMESPACE=d: RESPONSE_STREAM_MODE=text CHAT_INTERFACE_URL=stream.txt \
  RUST_LOG=warn PROGRESS_INTERVAL_SECS=0 /usr/bin/time -f 'direct: %e s, peak RSS %M KB' \
  "$BIN/chatstats-worker"

ingest() { # ingest NAMESPACE: POSTs the NDJSON into NAMESPACE's inbox, timed
  local api_port api_pid
  api_port=$(free_port)
  env REDIS_URL="$REDIS" REDIS_NAMESPACE="$1" NODE_HOST=127.0.0.1 NODE_PORT="$api_port" \
    INGEST_TOKENS=bench-token-0123456789abcdef RUST_LOG=warn "$BIN/chatstats-api" &
  api_pid=$!
  PIDS+=("$api_pid")
  wait_healthy "$api_port"
  python3 - "$api_port" "$api_pid" <<'PY'
import http.client, sys, threading, time
port, pid = int(sys.argv[1]), sys.argv[2]
lines = open("stream.ndjson", "rb").read().splitlines(keepends=True)
batches = [b"".join(lines[i:i + 500]) for i in range(0, len(lines), 500)]
def post(mine):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for body in mine:
        conn.request("POST", "/messages", body, {"Authorization": "Bearer bench-token-0123456789abcdef",
                                                  "Content-Type": "application/x-ndjson"})
        r = conn.getresponse(); r.read()
        assert r.status == 202, (r.status, r.read()[:200])
errors = []
def run(mine):
    try:
        post(mine)
    except Exception as e:
        errors.append(repr(e))
t = time.perf_counter()
threads = [threading.Thread(target=run, args=(batches[k::4],)) for k in range(4)]
for th in threads: th.start()
for th in threads: th.join()
took = time.perf_counter() - t
if errors:
    sys.exit(f"POST failed: {errors[0]}")
rss = [l for l in open(f"/proc/{pid}/status") if l.startswith(("VmHWM", "VmRSS"))]
print(f"ingestion: {len(lines)} messages in {len(batches)} POSTs in {took:.2f} s = {len(lines) / took:,.0f} msg/s;",
      " ".join(l.split()[0] + " " + l.split()[1] + " kB" for l in rss))
PY
  kill "$api_pid"
}

drain() { # drain NAMESPACE WORKERS: runs WORKERS inbox workers until the inbox is empty, timed
  local pids=() t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq "$2"); do
    env REDIS_URL="$REDIS" REDIS_NAMESPACE="$1" CHAT_INTERFACE_URL=inbox RUST_LOG=warn \
      PROGRESS_INTERVAL_SECS=0 "$BIN/chatstats-worker" &
    pids+=($!)
    PIDS+=($!)
  done
  while :; do
    len=$(redis-cli -p "$PORT" XLEN "${1}inbox")
    pending=$(redis-cli -p "$PORT" XPENDING "${1}inbox" chatstats | head -1)
    [[ $len == 0 && $pending == 0 ]] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  local rss=""
  for pid in "${pids[@]}"; do
    rss+="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status") "
    kill "$pid"
  done
  python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f'consumed by $2 worker(s): {n} in {t:.2f} s = {n/t:,.0f} msg/s; peak RSS per worker (kB): $rss')" "$t0" "$t1" "$COUNT"
}

echo "== 1 inbox worker"
ingest i1:
drain i1: 1
echo "== 3 inbox workers"
ingest i3:
drain i3: 3

echo "== sustained: POSTs at SUSTAIN_RATE msg/s for SUSTAIN_SECONDS while 1 inbox worker consumes"
SUSTAIN_RATE=${SUSTAIN_RATE:-6000}
SUSTAIN_SECONDS=${SUSTAIN_SECONDS:-30}
API_PORT=$(free_port)
env REDIS_URL="$REDIS" REDIS_NAMESPACE=s: NODE_HOST=127.0.0.1 NODE_PORT="$API_PORT" \
  INGEST_TOKENS=bench-token-0123456789abcdef RUST_LOG=warn "$BIN/chatstats-api" &
API_PID=$!
PIDS+=("$API_PID")
env REDIS_URL="$REDIS" REDIS_NAMESPACE=s: CHAT_INTERFACE_URL=inbox RUST_LOG=warn \
  PROGRESS_INTERVAL_SECS=0 "$BIN/chatstats-worker" &
WORKER_PID=$!
PIDS+=("$WORKER_PID")
wait_healthy "$API_PORT"
python3 - "$API_PORT" "$API_PID" "$WORKER_PID" "$PORT" "$SUSTAIN_RATE" "$SUSTAIN_SECONDS" <<'PY'
import http.client, subprocess, sys, time
port, api, worker, rport, rate, seconds = (int(a) for a in sys.argv[1:])
lines = open("stream.ndjson", "rb").read().splitlines(keepends=True)
conn = http.client.HTTPConnection("127.0.0.1", port)
def kb(pid, field):
    return int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith(field)))
def backlog():
    out = subprocess.run(["redis-cli", "-p", str(rport), "XLEN", "s:inbox"], capture_output=True, text=True).stdout
    return int(out.strip() or 0)
sent, i, start, worst = 0, 0, time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    due = (time.perf_counter() - start) * rate
    while sent < due:
        batch = b"".join(lines[i:i + 500]) or b"".join(lines[:500])
        i = (i + 500) % len(lines)
        conn.request("POST", "/messages", batch, {"Authorization": "Bearer bench-token-0123456789abcdef",
                                                   "Content-Type": "application/x-ndjson"})
        r = conn.getresponse(); r.read()
        assert r.status == 202, r.status
        sent += batch.count(b"\n")
    worst = max(worst, backlog())
    time.sleep(0.05)
posted = time.perf_counter() - start
while backlog() > 0:
    time.sleep(0.05)
took = time.perf_counter() - start
print(f"sustained: {sent} messages posted in {posted:.1f} s ({sent / posted:,.0f} msg/s); inbox drained {took - posted:.1f} s after the last POST; largest backlog {worst} entries")
print(f"  API: RSS {kb(api, 'VmRSS')} kB, peak {kb(api, 'VmHWM')} kB; worker: RSS {kb(worker, 'VmRSS')} kB, peak {kb(worker, 'VmHWM')} kB")
PY
kill "$API_PID" "$WORKER_PID"

echo "== counts: i1: and i3: against d:"
python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); f = s.makefile("rb")
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
ok = True
for ns in ("i1:", "i3:"):
    for key in ("words", "nicks", "rooms", "emotes"):
        a = call("ZRANGE", f"d:{key}", 0, -1, "WITHSCORES")
        b = call("ZRANGE", f"{ns}{key}", 0, -1, "WITHSCORES")
        if sorted(zip(a[::2], a[1::2])) != sorted(zip(b[::2], b[1::2])) or not a:
            ok = False; print(f"FAIL {ns}{key}")
    if call("GET", "d:failedMessages:total") != call("GET", f"{ns}failedMessages:total"):
        ok = False; print(f"FAIL {ns}failedMessages:total")
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
