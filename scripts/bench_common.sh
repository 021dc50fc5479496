# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run).

# die MESSAGE: print an error naming the script, exit 1.
die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 1
}

# free_port: a free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# e2e_bench_binary: builds the e2e_latency bench and prints the path of its executable.
e2e_bench_binary() {
  cargo bench --bench e2e_latency --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "e2e_latency" and m.get("executable"):
        print(m["executable"])
'
}

# start_redis DIR: starts a private redis-server (loopback, no persistence, files in DIR) on a
# free port; sets PORT and appends its pid to PIDS (the caller's cleanup kills PIDS).
start_redis() {
  PORT=$(free_port)
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$1" \
    --logfile "$1/redis.log" --daemonize no &
  PIDS+=($!)
  for _ in $(seq 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  die "redis-server did not start on port $PORT ($(tail -3 "$1/redis.log"))"
}

# wait_healthy PORT: waits (5 s at most) until the API on PORT answers /healthcheck.
wait_healthy() {
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$1/healthcheck" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  die "the API did not become healthy on port $1"
}

# need COMMAND HINT: dies unless COMMAND is on PATH.
need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"
}
# calc EXPR: a Python expression, printed.
calc() {
  python3 -c "print($1)"
}
# kv KEY "k1=v1 k2=v2": the value of KEY.
kv() {
  tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n1
}
section() {
  printf '\n== %s\n' "$*"
}
# cleanup: the EXIT trap of a bench script: stops the processes in PIDS, removes DIR, and
# exits with the script's status.
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$DIR"
  exit "$status"
}

# inside_hour SPAN_MS RUN_MS: waits, unless BENCH_NO_WAIT=1, until a stream whose message times
# span SPAN_MS up to now and the RUN_MS of runs over it lie inside the current hour: a message
# of an hour that has ended also goes to that hour's and day's buckets (a late stream, which
# costs about twice the writes). Sets NOW_MS and INTO_HOUR_MS.
inside_hour() {
  local span=$1 run=$2 wait_ms
  hour_ms() { python3 -c "import time; t = int(time.time() * 1000); print(t, t % 3600000)"; }
  read -r NOW_MS INTO_HOUR_MS < <(hour_ms)
  if ((span > 3600000 - run)); then
    echo "the stream and the runs over it take more than an hour: some of its messages are late"
  elif [[ ${BENCH_NO_WAIT:-0} != 1 ]] && ((INTO_HOUR_MS < span || INTO_HOUR_MS > 3600000 - run)); then
    wait_ms=$(((span - INTO_HOUR_MS + 3600000) % 3600000))
    echo "waiting $((wait_ms / 1000)) s, so that the stream and the runs over it lie inside one hour (BENCH_NO_WAIT=1 to skip)"
    sleep "$(calc "$wait_ms / 1000")"
    read -r NOW_MS INTO_HOUR_MS < <(hour_ms)
  fi
}

# start_cluster DIR [TAKEN_PORT]: starts three cluster-enabled redis-servers on free loopback
# ports other than TAKEN_PORT (no persistence, files in DIR), joins them as a 3-master cluster
# with `redis-cli --cluster create`, and waits for cluster_state:ok; sets CL_PORTS and CL_URL
# and appends the pids to PIDS (the caller's cleanup kills PIDS).
start_cluster() {
  local ports=() p i port bus
  while ((${#ports[@]} < 6)); do
    p=$(free_port)
    [[ $p == "${2:-}" || " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
  done
  CL_PORTS=("${ports[@]:0:3}")
  for i in 0 1 2; do
    port=${CL_PORTS[$i]} bus=${ports[$((i + 3))]}
    mkdir -p "$1/node-$i"
    redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$1/nodes-$i.conf" --save '' --appendonly no --dir "$1/node-$i" \
      --logfile "$1/node-$i/redis.log" --daemonize no &
    PIDS+=($!)
  done
  for i in 0 1 2; do
    port=${CL_PORTS[$i]}
    for _ in $(seq 100); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.05
    done
    redis-cli -p "$port" ping >/dev/null 2>&1 ||
      die "cluster node $i did not start on port $port ($(tail -3 "$1/node-$i/redis.log"))"
  done
  redis-cli --cluster create "127.0.0.1:${CL_PORTS[0]}" "127.0.0.1:${CL_PORTS[1]}" \
    "127.0.0.1:${CL_PORTS[2]}" --cluster-replicas 0 --cluster-yes >"$1/cluster-create.txt" 2>&1 ||
    die "redis-cli --cluster create failed: $(tail -5 "$1/cluster-create.txt")"
  for _ in $(seq 300); do
    cluster_ok && break
    sleep 0.1
  done
  cluster_ok || die "the cluster did not reach cluster_state:ok in 30 s: $(redis-cli -p "${CL_PORTS[0]}" CLUSTER INFO | head -3 | tr -d '\r' | tr '\n' ' ')"
  CL_URL="redis-cluster://127.0.0.1:${CL_PORTS[0]},127.0.0.1:${CL_PORTS[1]},127.0.0.1:${CL_PORTS[2]}"
}
# cluster_ok: whether every node of CL_PORTS sees a whole 3-master cluster.
cluster_ok() {
  local port info
  for port in "${CL_PORTS[@]}"; do
    info=$(redis-cli -p "$port" CLUSTER INFO 2>/dev/null) || return 1
    [[ $info == *"cluster_state:ok"* && $info == *"cluster_known_nodes:3"* &&
      $info == *"cluster_slots_ok:16384"* ]] || return 1
  done
}
