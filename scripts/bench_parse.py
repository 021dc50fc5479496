#!/usr/bin/env python3
"""Parsers for scripts/bench.sh: each prints shell-friendly `key=value` words on one line.

    bench_parse.py redis-benchmark OUTPUT     # rps=…
    bench_parse.py cmdstats BEFORE AFTER      # scripts=… inner=… other=… (INFO commandstats deltas)
    bench_parse.py cpu BEFORE AFTER           # redis_cpu=… (INFO cpu: user+sys seconds used)
    bench_parse.py wrk OUTPUT                 # rps=… p50_ms=… p99_ms=… errors=… non2xx=…
"""

import re
import sys

# Commands a client sends outside the apply script: not counted as "commands inside scripts".
OUTSIDE = re.compile(r"^(evalsha|eval|evalsha_ro|eval_ro|info|script\|.*|hello|client\|.*|ping|"
                     r"select|auth|config\|.*|command.*|quit|cluster\|.*)$")


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def redis_benchmark(path):
    text = read(path).replace("\r", "\n")
    found = re.findall(r"([0-9.]+) requests per second", text)
    if not found:
        sys.exit(f"no 'requests per second' in {path}:\n{text[-500:]}")
    print(f"rps={float(found[-1]):.0f}")


def commandstats(path):
    calls = {}
    for m in re.finditer(r"^cmdstat_([^:]+):calls=(\d+)", read(path), re.M):
        calls[m.group(1)] = int(m.group(2))
    return calls


def cmdstats(before, after):
    a, b = commandstats(before), commandstats(after)
    delta = {k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0) > 0}
    scripts = delta.get("evalsha", 0) + delta.get("eval", 0)
    inner = sum(n for k, n in delta.items() if not OUTSIDE.match(k))
    other = sum(n for k, n in delta.items() if OUTSIDE.match(k)) - scripts
    detail = ",".join(f"{k}:{n}" for k, n in sorted(delta.items(), key=lambda kv: -kv[1]))
    print(f"scripts={scripts} inner={inner} other={other} detail={detail}")


def cpu(before, after):
    def used(path):
        text = read(path)
        total = 0.0
        for name in ("used_cpu_user", "used_cpu_sys"):
            m = re.search(rf"^{name}:([0-9.]+)", text, re.M)
            total += float(m.group(1)) if m else 0.0
        return total

    print(f"redis_cpu={used(after) - used(before):.2f}")


def to_ms(value):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", value)
    if not m:
        return float("nan")
    n, unit = float(m.group(1)), m.group(2)
    return n * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(path):
    text = read(path)
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    if not (rps and p50 and p99):
        sys.exit(f"cannot read wrk's output {path}:\n{text}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    n_errors = sum(int(g) for g in errors.groups()) if errors else 0
    print(
        f"rps={float(rps.group(1)):.0f} p50_ms={to_ms(p50.group(1)):.3f} "
        f"p99_ms={to_ms(p99.group(1)):.3f} errors={n_errors} "
        f"non2xx={int(non2xx.group(1)) if non2xx else 0}"
    )


def main():
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "redis-benchmark" and len(args) == 1:
        redis_benchmark(*args)
    elif cmd == "cmdstats" and len(args) == 2:
        cmdstats(*args)
    elif cmd == "cpu" and len(args) == 2:
        cpu(*args)
    elif cmd == "wrk" and len(args) == 1:
        wrk(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
