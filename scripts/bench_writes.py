#!/usr/bin/env python3
"""Distinct list writes per message that the statistics by room, nick, emote and time need,
counted over a stream file without Redis (BENCHMARKS.md, "Live and late streams").

    python3 scripts/bench_writes.py STREAM [BATCH ...]   # default batches: 335 and 10000

A batch is the messages one detail merges (335: 50 ms at about 6,700 messages/s; 10,000: a
coalesced batch). Within a batch each distinct (scope, period, list, member) is one write;
the script prints them per message, by list, and the distinct room and nick words per hour
(what an hourly fold of the all-time lists would write). A nick's lists are written as one
appended record per nick and batch, folded into its sorted sets once past 4 KiB
(`src/store/lua/records.lua`): the script prints those appends and folded writes per message
beside the nick lists' distinct writes.
"""

import json
import sys

from bench_verify import STRIP, emotes_of, field, payloads, words_of


def messages(path):
    for raw in payloads(path):
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if not isinstance(obj, dict):
            continue
        body, tags = field(obj, "body"), field(obj, "tags")
        room = field(obj, "room") if STRIP.sub("", field(obj, "room")) else None
        nick = field(obj, "nick") if STRIP.sub("", field(obj, "nick")) else None
        ts = next((t[13:] for t in tags.split(";") if t.startswith("tmi-sent-ts=")), "")
        minute = int(ts) // 60000 if ts.isdigit() else 0
        yield room, nick, set(words_of(body)), set(emotes_of(body, tags)), minute


def writes(batch):
    seen = {}

    def add(kind, *key):
        seen.setdefault(kind, set()).add(key)

    for room, nick, words, emotes, minute in batch:
        for w in words:
            add("everything's words, minute", minute, w)
            if room:
                add("room's words, all time", room, w)
                add("room's words, minute", room, minute, w)
            if nick:
                add("nick's words, all time", nick, w)
        for e in emotes:
            add("everything's emotes, minute", minute, e)
            add("everything's emotes, all time", e)
            if room:
                add("room's emotes, all time", room, e)
                add("room's emotes, minute", room, minute, e)
            if nick:
                add("nick's emotes, all time", nick, e)
        if nick:
            add("everything's nicks, minute", minute, nick)
            if room:
                add("room's nicks, all time", room, nick)
                add("room's nicks, minute", room, minute, nick)
                add("nick's rooms, all time", nick, room)
        if room:
            add("everything's rooms, minute", minute, room)
    return {kind: len(keys) for kind, keys in seen.items()}


FOLD_BYTES = 4096


def nick_records(msgs, size):
    """Appends and folded writes per message of the nicks' records (see the docstring)."""
    pending = {}
    appends = folded = 0
    for start in range(0, len(msgs), size):
        batch = {}
        for room, nick, words, emotes, _ in msgs[start : start + size]:
            if not nick:
                continue
            record = batch.setdefault(nick, {})
            for key in [("w", w) for w in words] + [("e", e) for e in emotes]:
                record[key] = record.get(key, 0) + 1
            if room:
                record[("r", room)] = record.get(("r", room), 0) + 1
        for nick, record in batch.items():
            appends += 1
            length, sums = pending.get(nick, (0, {}))
            for (letter, member), n in record.items():
                length += len(letter) + len(str(len(member))) + 1 + len(member) + len(str(n)) + 1
                sums[(letter, member)] = sums.get((letter, member), 0) + n
            if length > FOLD_BYTES:
                folded += len(sums)
                pending.pop(nick, None)
            else:
                pending[nick] = (length, sums)
    left = sum(len(sums) for _, sums in pending.values())
    return appends, folded, left


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    msgs = list(messages(sys.argv[1]))
    n = len(msgs)
    print(f"{n} messages, {sum(len(m[2]) for m in msgs) / n:.2f} distinct words each")
    for size in [int(b) for b in sys.argv[2:]] or [335, 10000]:
        total = {}
        for start in range(0, n, size):
            for kind, count in writes(msgs[start : start + size]).items():
                total[kind] = total.get(kind, 0) + count
        print(f"batches of {size}: {sum(total.values()) / n:.2f} writes per message")
        for kind, count in sorted(total.items(), key=lambda kv: -kv[1]):
            print(f"  {kind}: {count / n:.2f}")
        appends, folded, left = nick_records(msgs, size)
        print(
            f"  nicks' lists as records: {appends / n:.2f} appends and {folded / n:.2f} folded"
            f" writes per message ({left / n:.2f} more still pending at the end)"
        )
    hourly = {"room's words": set(), "nick's words": set()}
    for room, nick, words, _, minute in msgs:
        for w in words:
            if room:
                hourly["room's words"].add((room, minute // 60, w))
            if nick:
                hourly["nick's words"].add((nick, minute // 60, w))
    for kind, keys in hourly.items():
        print(f"distinct per hour, {kind}: {len(keys) / n:.2f} per message")


if __name__ == "__main__":
    main()
