#!/usr/bin/env python3
"""Helpers of scripts/bench_cluster.sh (standalone Redis against a local Redis Cluster).

    bench_cluster.py shards NS SHARDS PORT                 # which node holds which shard
    bench_cluster.py nodes MESSAGES DIR PORT...            # per-node Redis CPU and commands
    bench_cluster.py compare REF_PORT GOT_PORT FROM TO     # the two APIs' answers, route by route

`shards` asks the cluster (through the node on PORT: CLUSTER KEYSLOT, CLUSTER SLOTS) which
master owns each shard's hash tag (the rule of src/store/redis/shards.rs: shard k's tag is
`k.j` for the smallest j whose slot is in the k-th of SHARDS equal slot ranges) and prints
`home=PORT` then one `PORT:k,k,…` word per node.

`nodes` reads DIR/{cpu,cs}-{before,after}-PORT.txt (INFO cpu and INFO commandstats of each
node around one run) and prints one line per node, `port=… cpu_s=… cpu_us_msg=… calls=…
calls_msg=… inner=… inner_msg=… detail=…` (the commands split as bench_parse.py does).

`compare` fetches the same routes from two chatstats-api processes (the reference on
standalone Redis, the other on the cluster), both with STATS_CACHE_MS=0, and requires
identical JSON: the all-time lists at the largest limit, the ranged lists over [FROM, TO),
a few rooms and nicks taken from the reference's lists (their summaries — the nick's with its
rank — and their lists by room and by nick), activity, the failed messages and, when the
reference has a history, every recorded message (all pages, as a multiset: its order is the
order of recording; ids made up by the worker, `{writer}-{n}`, compared without the writer,
which is random per process), the same for two rooms, and the newest messages by id. Prints one line per difference with a
sample, and a final `compare: PASS|FAIL …` line; exits 1 on a difference.
"""

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_parse import OUTSIDE, commandstats  # noqa: E402
from bench_verify import Resp  # noqa: E402

SLOTS = 16384
LIMIT = 1000  # the API's largest `limit` (README, HTTP API)


def shard_owners(ns, shards, port):
    r = Resp(port)
    owner_of_slot = []
    for start, end, master, *_ in r.call("CLUSTER", "SLOTS"):
        owner_of_slot.append((int(start), int(end), int(master[1])))

    def owner(slot):
        return next(p for s, e, p in owner_of_slot if s <= slot <= e)

    owners = []
    for k in range(shards):
        low, high = k * SLOTS // shards, (k + 1) * SLOTS // shards
        j = 0
        while True:
            slot = r.call("CLUSTER", "KEYSLOT", f"{k}.{j}")
            if low <= slot < high:
                break
            j += 1
        owners.append(owner(slot))
    return owners


def cmd_shards(ns, shards, port):
    owners = shard_owners(ns, int(shards), port)
    by_port = {}
    for k, p in enumerate(owners):
        by_port.setdefault(p, []).append(str(k))
    print(f"home={owners[0]} " + " ".join(f"{p}:{','.join(ks)}" for p, ks in sorted(by_port.items())))


def cpu_seconds(path):
    total = 0.0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            name, _, value = line.strip().partition(":")
            if name in ("used_cpu_user", "used_cpu_sys"):
                total += float(value)
    return total


def cmd_nodes(messages, directory, ports):
    messages = int(messages)
    for port in ports:
        cpu = cpu_seconds(f"{directory}/cpu-after-{port}.txt") - cpu_seconds(f"{directory}/cpu-before-{port}.txt")
        a = commandstats(f"{directory}/cs-before-{port}.txt")
        b = commandstats(f"{directory}/cs-after-{port}.txt")
        delta = {k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0) > 0}
        calls = delta.get("evalsha", 0) + delta.get("eval", 0)
        inner = sum(n for k, n in delta.items() if not OUTSIDE.match(k))
        detail = ",".join(f"{k}:{n}" for k, n in sorted(delta.items(), key=lambda kv: -kv[1]))
        print(
            f"port={port} cpu_s={cpu:.3f} cpu_us_msg={cpu * 1e6 / messages:.2f} calls={calls} "
            f"calls_msg={calls / messages:.3f} inner={inner} inner_msg={inner / messages:.2f} "
            f"detail={detail or '-'}"
        )


def fetch(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body.decode("utf-8", "replace")


def q(value):
    return urllib.parse.quote(str(value), safe="")


def as_pairs(value):
    """A top list ([{member: n}, …]) as (member, n) pairs, or None for anything else."""
    if isinstance(value, list) and all(isinstance(e, dict) and len(e) == 1 for e in value):
        return [next(iter(e.items())) for e in value]
    return None


def describe(ref, got):
    """A short sample of how two answers differ."""
    pr, pg = as_pairs(ref), as_pairs(got)
    if pr is not None and pg is not None:
        dr, dg = dict(pr), dict(pg)
        members = [m for m in dict.fromkeys([m for m, _ in pr] + [m for m, _ in pg]) if dr.get(m) != dg.get(m)]
        if members:
            sample = ", ".join(f"{m!r}: {dr.get(m)} vs {dg.get(m)}" for m in members[:5])
            return f"{len(pr)} vs {len(pg)} entries, {len(members)} members differ (standalone vs cluster): {sample}"
        first = next(i for i, (a, b) in enumerate(zip(pr, pg)) if a != b)
        return f"same members and counts, order differs from position {first}: {pr[first:first + 3]} vs {pg[first:first + 3]}"
    if isinstance(ref, dict) and isinstance(got, dict):
        parts = []
        for k in dict.fromkeys(list(ref) + list(got)):
            if ref.get(k) != got.get(k):
                sub = describe(ref.get(k), got.get(k))
                parts.append(f"{k}: {sub}")
        return "; ".join(parts[:4])
    if isinstance(ref, list) and isinstance(got, list):
        strings = all(isinstance(x, str) for x in ref + got)
        set_ref, set_got = (set(ref), set(got)) if strings else (set(), set())
        only_ref = [x for x in ref if x not in set_got] if strings else []
        only_got = [x for x in got if x not in set_ref] if strings else []
        return (
            f"{len(ref)} vs {len(got)} entries; only in standalone ({len(only_ref)}): {only_ref[:2]}; "
            f"only in cluster ({len(only_got)}): {only_got[:2]}"
        )
    return f"{json.dumps(ref, ensure_ascii=False)[:200]} vs {json.dumps(got, ensure_ascii=False)[:200]}"


MADE_UP = re.compile(r"^[0-9a-f]{16}-([0-9a-f]+)$")


def anonymous(message_id):
    """A message id made up by a worker (`{writer}-{n}`: the writer is random per process) without
    its writer, so that two runs of the same stream compare; an upstream id as it is."""
    m = MADE_UP.match(message_id)
    return f"<writer>-{m.group(1)}" if m else message_id


def as_list(answer):
    """A history answer (status, messages) with made-up ids anonymous, in its order."""
    status, body = answer
    if not isinstance(body, list):
        return answer
    return status, [dict(m, id=anonymous(m["id"])) for m in body]


def cmd_compare(ref_port, got_port, from_ms, to_ms):
    compared, differ = 0, []

    def same(path, ref=None, got=None, key=None):
        nonlocal compared
        compared += 1
        if ref is None:
            ref, got = fetch(ref_port, path), fetch(got_port, path)
        if key:
            ref, got = (ref[0], key(ref[1])), (got[0], key(got[1]))
        if ref != got:
            if ref[0] != got[0]:
                detail = f"status {ref[0]} vs {got[0]}: {describe(ref[1], got[1])}"
            else:
                detail = describe(ref[1], got[1])
            differ.append(path)
            print(f"  DIFF {path}: {detail}")
        return ref[1]

    rng = f"from={from_ms}&to={to_ms}"
    mid = int(from_ms) + 20 * 60000
    slice_ = f"from={mid}&to={mid + 5 * 60000}"
    lists = {}
    for name in ("words", "nicks", "rooms", "emotes"):
        lists[name] = same(f"/stats/{name}?limit={LIMIT}")
        same(f"/stats/{name}?limit={LIMIT}&{rng}")
        same(f"/stats/{name}?limit={LIMIT}&{slice_}")
    same("/stats", key=lambda body: body.get("failedMessagesTotal") if isinstance(body, dict) else body)
    same(f"/stats/failedMessages?limit={LIMIT}", key=lambda body: sorted(body) if isinstance(body, list) else body)
    for bucket in ("1m", "1h"):
        same(f"/stats/activity?bucket={bucket}&{rng}")

    def picks(name):
        members = [m for m, _ in (as_pairs(lists[name]) or [])]
        chosen = [members[i] for i in (0, 1, 2, len(members) // 2, len(members) - 1) if 0 <= i < len(members)]
        return list(dict.fromkeys(chosen))

    rooms, nicks = picks("rooms"), picks("nicks")
    for room in rooms:
        r = q(room)
        same(f"/stats/rooms/{r}?limit={LIMIT}")
        same(f"/stats/rooms/{r}?limit={LIMIT}&{rng}")
        for name in ("words", "nicks", "emotes"):
            same(f"/stats/{name}?room={r}&limit={LIMIT}")
            same(f"/stats/{name}?room={r}&limit={LIMIT}&{slice_}")
        same(f"/stats/activity?room={r}&{rng}")
    for nick in nicks:
        n = q(nick)
        same(f"/stats/nicks/{n}?limit={LIMIT}")
        for name in ("words", "rooms", "emotes"):
            same(f"/stats/{name}?nick={n}&limit={LIMIT}")

    # The history (full mode): every recorded message, paged to the end on both sides and
    # compared as a multiset (the order is the order of recording, which concurrent calls may
    # change: reported, not a difference), then the newest page's messages by id.
    def history(port, room=None):
        messages, before = [], None
        while True:
            path = "/messages?limit=200" + (f"&room={q(room)}" if room else "") + (f"&before={q(before)}" if before else "")
            status, page = fetch(port, path)
            if status != 200:
                return status, page
            messages += page["messages"]
            before = page.get("next")
            if not before:
                return status, messages

    def as_set(body):
        if not isinstance(body, list):
            return body
        return sorted(json.dumps(dict(m, id=anonymous(m["id"])), sort_keys=True, ensure_ascii=False) for m in body)

    for room in [None] + rooms[:2]:
        label = f"/messages?room={q(room)}" if room else "/messages"
        ref, got = history(ref_port, room), history(got_port, room)
        if ref[0] != 200 or not ref[1]:
            continue
        same(f"{label} (all pages, as a multiset)", ref, got, key=as_set)
        if as_list(ref) == as_list(got):
            print(f"  {label}: {len(ref[1])} messages, the same order on both")
        elif isinstance(got[1], list) and as_set(ref[1]) == as_set(got[1]):
            moved = sum(a != b for a, b in zip(as_list(ref)[1], as_list(got)[1]))
            print(f"  {label}: {len(ref[1])} messages, the same ones; {moved} at another position (order of recording)")
        if room is None:
            for m in [m for m in ref[1] if anonymous(m["id"]) == m["id"]][:25]:
                same(f"/messages/{q(m['id'])}")
    sizes = ", ".join(f"{name} {len(lists[name]) if isinstance(lists[name], list) else '?'}" for name in lists)
    print(
        f"compare: {'PASS' if not differ else 'FAIL'}: {compared} routes, {len(differ)} differ "
        f"(lists: {sizes}; rooms {rooms[:2]}…, nicks {nicks[:2]}…)"
    )
    return not differ


def main():
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "shards" and len(args) == 3:
        cmd_shards(*args)
    elif cmd == "nodes" and len(args) >= 3:
        cmd_nodes(args[0], args[1], args[2:])
    elif cmd == "compare" and len(args) == 4:
        sys.exit(0 if cmd_compare(*args) else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
