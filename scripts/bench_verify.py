#!/usr/bin/env python3
"""Independent check of the counts a worker recorded in Redis (used by scripts/bench.sh).

    bench_verify.py expect STREAM EXPECTED.json      # apply the counting rules to a stream file
    bench_verify.py check EXPECTED.json PORT NS      # compare Redis (127.0.0.1:PORT) with them
    bench_verify.py check-full EXPECTED.json PORT NS # the same, and the statistics by room,
                                                     # nick, emote and time (STATISTICS=full)

`expect` re-implements the counting rules of README.md without the Rust code: every `se-data:`
or `data:` line (one optional space after the colon dropped) and every line starting with `{`
is a payload; a payload that is UTF-8 and parses to a JSON object counts, anything else is a
failed message; room and nick count when not blank after trimming; words are the body split on
Unicode whitespace. Rust's `split_whitespace`/`trim` use the Unicode White_Space property,
which differs from Python's `str.split()` on U+001C..U+001F, so the set is spelled out here and
the two are compared on the stream (reported, not fatal).

`check` reads every member and score of `{NS}words`, `{NS}nicks`, `{NS}rooms`, the failed
total and the per-second counters over a minimal RESP client (no redis-py needed) and compares
them exactly with the expectation. `check-full` also compares, exactly: the all-time emotes;
every room's all-time words, nicks and emotes (its sorted sets plus its minutes not folded
into them yet); every nick's all-time rooms (its sorted set plus its pending records); and
the messages of every minute (from `tmi-sent-ts`; the stream must carry usable ones, as
`chatstats-sim --start-ms` writes). Emotes are the Twitch `emotes` tag's ranges, in code points (Python's
string indices). Prints PASS or FAIL lines; exits 1 on FAIL.
"""

import json
import re
import socket
import sys

# Unicode White_Space (what Rust's char::is_whitespace uses).
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
SPLIT = re.compile("[" + WHITE_SPACE + "]+")
STRIP = re.compile("^[" + WHITE_SPACE + "]+|[" + WHITE_SPACE + "]+$")


def words_of(body):
    return [w for w in SPLIT.split(body) if w]


def payloads(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.startswith(b"se-data:"):
            p = line[8:]
        elif line.startswith(b"data:"):
            p = line[5:]
        elif line.startswith(b"{"):
            yield line
            continue
        else:
            continue
        if p.startswith(b" "):
            p = p[1:]
        yield p


def field(obj, name):
    value = obj.get(name)
    return value if isinstance(value, str) else ""


def add(table, key, n=1):
    table[key] = table.get(key, 0) + n


def emotes_of(body, tags):
    """The Twitch emote uses of a message: the text at each valid code-point range."""
    tag = next((t[len("emotes="):] for t in tags.split(";") if t.startswith("emotes=")), "")
    found = []
    for emote in tag.split("/"):
        if ":" not in emote:
            continue
        for span in emote.split(":", 1)[1].split(","):
            try:
                start, end = (int(x) for x in span.split("-"))
            except ValueError:
                continue
            if start <= end < len(body):
                found.append((start, body[start : end + 1]))
    return [text for _, text in sorted(found)]


def expect(stream, out):
    words, nicks, rooms = {}, {}, {}
    emotes, by_room, by_nick, minutes = {}, {}, {}, {}
    counted = failed = 0
    split_differs = 0
    for raw in payloads(stream):
        try:
            text = raw.decode("utf-8")
            obj = json.loads(text) if text.lstrip(" \t\n\r").startswith("{") else None
        except (UnicodeDecodeError, ValueError):
            obj = None
        if not isinstance(obj, dict):
            failed += 1
            continue
        counted += 1
        for name, table in (("room", rooms), ("nick", nicks)):
            value = field(obj, name)
            if STRIP.sub("", value):
                table[value] = table.get(value, 0) + 1
        body = field(obj, "body")
        ws = words_of(body)
        if ws != body.split():
            split_differs += 1
        for w in ws:
            words[w] = words.get(w, 0) + 1
        room = field(obj, "room") if STRIP.sub("", field(obj, "room")) else None
        nick = field(obj, "nick") if STRIP.sub("", field(obj, "nick")) else None
        tags = field(obj, "tags")
        es = emotes_of(body, tags)
        for e in es:
            add(emotes, e)
        ts = next((t[len("tmi-sent-ts="):] for t in tags.split(";") if t.startswith("tmi-sent-ts=")), "")
        if ts.isdigit():
            add(minutes, str(int(ts) // 60000))
        if room is not None:
            r = by_room.setdefault(room, {"words": {}, "nicks": {}, "emotes": {}})
            for w in ws:
                add(r["words"], w)
            for e in es:
                add(r["emotes"], e)
            if nick is not None:
                add(r["nicks"], nick)
        if nick is not None and room is not None:
            add(by_nick.setdefault(nick, {}), room)
    result = {
        "counted": counted,
        "failed": failed,
        "words": words,
        "nicks": nicks,
        "rooms": rooms,
        "split_differs": split_differs,
        "emotes": emotes,
        "by_room": by_room,
        "by_nick": by_nick,
        "minutes": minutes,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)
    print(
        f"expected: {counted} messages counted, {failed} failed, "
        f"{sum(words.values())} word occurrences ({len(words)} distinct), "
        f"{len(nicks)} nicks, {len(rooms)} rooms; "
        f"bodies where Python's str.split() differs from the White_Space split: {split_differs}"
    )


class Resp:
    """Just enough RESP2 for this check."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
        self.f = self.sock.makefile("rb")

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self.read()

    def read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")


def room_key(ns, kind, name):
    escaped = name.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return f"{ns}{kind}:{{{escaped}}}"


def zset(r, key):
    flat = r.call("ZRANGE", key, 0, -1, "WITHSCORES")
    return {flat[i].decode("utf-8", "replace"): int(float(flat[i + 1])) for i in range(0, len(flat), 2)}


def pending_increments(text):
    """A nick's pending records (src/store/lua/records.lua): (letter, member, count) each."""
    pos = 0
    while pos < len(text):
        colon = text.index(b":", pos + 1)
        length = int(text[pos + 1 : colon])
        semi = text.index(b";", colon + 1 + length)
        yield chr(text[pos]), text[colon + 1 : colon + 1 + length], int(text[colon + 1 + length : semi])
        pos = semi + 1


def nick_list(r, ns, nick, name):
    """One of a nick's all-time lists: its sorted set plus its pending records."""
    key = room_key(ns, "nick", nick)
    counts = zset(r, f"{key}:{name}")
    for letter, member, n in pending_increments(r.call("GET", f"{key}:pending") or b""):
        if letter == name[0]:
            member = member.decode("utf-8", "replace")
            counts[member] = counts.get(member, 0) + n
    return counts


def room_list(r, ns, room, name):
    """One of a room's all-time lists: its sorted set plus its minutes of the hours after its
    `folded` hour and the last hour rolled up (added to it at their hour's roll-up:
    src/store/lua/rollup.lua; a minute written after that went to the sorted set as well)."""
    key = room_key(ns, "room", room)
    counts = zset(r, f"{key}:{name}")
    folded = r.call("GET", f"{key}:folded")
    last = r.call("ZSCORE", f"{ns}rooms:last", room)
    if folded is None or last is None:
        return counts
    rolled = int(r.call("HGET", f"{ns}rollup", "h") or -1)
    first = int(float(r.call("ZSCORE", f"{ns}rooms:first", room) or 0)) // 3_600_000
    for hour in range(max(int(folded) + 1, rolled + 1, first), int(float(last)) // 3_600_000 + 1):
        # The minutes with messages in the room: its activity hash of the hour.
        fields = r.call("HKEYS", f"{key}:activity:m:{hour}") or []
        for minute in fields:
            for member, n in zset(r, f"{key}:{name}:m:{minute.decode()}").items():
                counts[member] = counts.get(member, 0) + n
    return counts


def check_full(exp, r, ns, report):
    """The statistics by room, nick, emote and time."""
    report("emotes (all time)", zset(r, f"{ns}emotes") == exp["emotes"], f"{sum(exp['emotes'].values())} uses, {len(exp['emotes'])} emotes")
    bad_rooms = [
        room
        for room, lists in exp["by_room"].items()
        if any(room_list(r, ns, room, name) != lists[name] for name in ("words", "nicks", "emotes"))
    ]
    report("every room's words, nicks, emotes", not bad_rooms, f"{len(exp['by_room'])} rooms, {len(bad_rooms)} differ {bad_rooms[:3]}")
    bad_nicks = [nick for nick, rooms in exp["by_nick"].items() if nick_list(r, ns, nick, "rooms") != rooms]
    report("every nick's rooms", not bad_nicks, f"{len(exp['by_nick'])} nicks, {len(bad_nicks)} differ {bad_nicks[:3]}")
    bad_minutes = []
    for minute, n in exp["minutes"].items():
        hour = int(minute) // 60
        got = int(r.call("HGET", f"{ns}activity:m:{hour}", minute) or 0)
        if got != n:
            bad_minutes.append((minute, got, n))
    report("messages per minute", not bad_minutes, f"{len(exp['minutes'])} minutes, {len(bad_minutes)} differ {bad_minutes[:3]}")


def check(expected_path, port, ns, full=False):
    with open(expected_path, encoding="utf-8") as f:
        exp = json.load(f)
    r = Resp(port)
    ok = True

    def report(name, good, detail):
        nonlocal ok
        ok = ok and good
        print(f"  {'PASS' if good else 'FAIL'} {name}: {detail}")

    for name in ("words", "nicks", "rooms"):
        flat = r.call("ZRANGE", f"{ns}{name}", 0, -1, "WITHSCORES")
        got = {}
        for i in range(0, len(flat), 2):
            got[flat[i].decode("utf-8", "replace")] = int(float(flat[i + 1]))
        want = exp[name]
        diff = [m for m in set(got) | set(want) if got.get(m) != want.get(m)]
        detail = (
            f"total {sum(got.values())} (expected {sum(want.values())}), "
            f"distinct {len(got)} (expected {len(want)})"
        )
        if diff:
            sample = ", ".join(f"{m!r}: {got.get(m)} vs {want.get(m)}" for m in sorted(diff)[:5])
            detail += f", {len(diff)} members differ: {sample}"
        report(name, not diff, detail)
    total = int(r.call("GET", f"{ns}failedMessages:total") or 0)
    report("failed total", total == exp["failed"], f"{total} (expected {exp['failed']})")
    counted, cursor = 0, b"0"
    while True:
        cursor, keys = r.call("SCAN", cursor, "MATCH", f"{ns}messagesPerSecond:*", "COUNT", 1000)
        for k in keys:
            counted += int(r.call("GET", k) or 0)
        if cursor in (b"0", "0"):
            break
    report(
        "messages per second (sum)",
        counted == exp["counted"],
        f"{counted} (expected {exp['counted']})",
    )
    if full:
        check_full(exp, r, ns, report)
    print(f"verify {ns}: {'PASS' if ok else 'FAIL'}")
    return ok


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "expect":
        expect(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] in ("check", "check-full"):
        full = sys.argv[1] == "check-full"
        sys.exit(0 if check(sys.argv[2], sys.argv[3], sys.argv[4], full) else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
