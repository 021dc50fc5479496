#!/usr/bin/env python3
"""Increments to existing sorted sets in a Lua script: one ZINCRBY per member, against one
ZMSCORE of a group's members, the sums in Lua, and one variadic ZADD (BENCHMARKS.md, "Thread
caches, and scores updated in bulk"); and, for scale, the same increments appended to a string
as one record per group (BENCHMARKS.md, "Fewer allocations per full message").

    python3 scripts/bench_bulk_scores.py

Starts its own redis-server on a free port (removed on exit): 100 sorted sets of 2,000
members; each call increments random members of 20 of them; prints the time Redis spent in
EVALSHA (INFO commandstats) per increment, for 5, 20, 100 and 500 members a set, each way
twice, alternating. The records go to strings of their own, which grow over the run.
"""

import os
import random
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_verify import Resp  # noqa: E402

EACH = """
for g = 1, #KEYS do
  local base = (g - 1) * tonumber(ARGV[1]) + 2
  for j = base, base + tonumber(ARGV[1]) - 1 do
    redis.call('ZINCRBY', KEYS[g], '1', ARGV[j])
  end
end
return 1
"""
BULK = """
local k = tonumber(ARGV[1])
for g = 1, #KEYS do
  local base = (g - 1) * k + 2
  local members = {}
  for j = base, base + k - 1 do members[#members + 1] = ARGV[j] end
  local scores = redis.call('ZMSCORE', KEYS[g], unpack(members))
  local args = {}
  for j = 1, k do
    local n = 1
    if scores[j] then n = tonumber(scores[j]) + 1 end
    args[#args + 1] = string.format('%.17g', n)
    args[#args + 1] = members[j]
  end
  redis.call('ZADD', KEYS[g], unpack(args))
end
return 1
"""
# Not a sorted set at all: the group's increments as one record appended to a string (the
# write side of a layout that keeps recent buckets as encoded records, merged when read).
APPEND = """
for g = 1, #KEYS do
  redis.call('APPEND', KEYS[g], ARGV[g + 1])
end
return 1
"""
SETS, MEMBERS, PER_CALL, ROUNDS = 100, 2000, 20, 30


def record(members):
    """A group's increments of 1 as one record: `<length>:<member>` each."""
    return "".join(f"{len(m)}:{m}" for m in members)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def evalsha_usec(r):
    for line in r.call("INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("usec=")[1].split(",")[0])
    return 0


def main():
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="chatstats-bulk.")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while True:
            try:
                r = Resp(port)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        random.seed(1)
        words = [f"word{i}x" for i in range(MEMBERS)]
        for s in range(SETS):
            args = []
            for w in words:
                args += [random.randint(1, 100), w]
            r.call("ZADD", f"z{s}", *args)
        shas = {name: r.call("SCRIPT", "LOAD", text).decode() for name, text in
                [("ZINCRBY each", EACH), ("ZMSCORE + ZADD", BULK), ("APPEND record", APPEND)]}
        for k in [5, 20, 100, 500]:
            for name in list(shas) * 2:
                usec = 0
                for _ in range(ROUNDS):
                    keys = [f"z{s}" for s in random.sample(range(SETS), PER_CALL)]
                    args = [k]
                    for _ in keys:
                        args += random.sample(words, k)
                    if name == "APPEND record":
                        keys = [f"a{key}" for key in keys]
                        groups = [args[1 + g * k:1 + (g + 1) * k] for g in range(len(keys))]
                        args = [k] + [record(group) for group in groups]
                    r.call("CONFIG", "RESETSTAT")
                    r.call("EVALSHA", shas[name], len(keys), *keys, *args)
                    usec += evalsha_usec(r)
                print(f"{k:>4} members a set  {name:<15} {usec / (ROUNDS * PER_CALL * k):5.2f} µs per increment")
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
