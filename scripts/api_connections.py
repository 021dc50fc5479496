#!/usr/bin/env python3
"""Opens N concurrent connections to the API, makes one request on each, holds them, then closes
them; prints the API process's RSS before, while held and after (the RELIABILITY.md figure).

usage: api_connections.py PORT PID [N]
"""
import asyncio
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


async def one(port, held, ok):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    writer.write(b"GET /stats/words HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    await reader.readexactly(length)
    ok.append(1)
    held.append(writer)


async def main():
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 9000
    before = rss_kb(pid)
    held, ok = [], []
    started = time.time()
    for start in range(0, n, 500):
        await asyncio.gather(*(one(port, held, ok) for _ in range(start, min(n, start + 500))))
    during = rss_kb(pid)
    for writer in held:
        writer.close()
    await asyncio.sleep(2)
    after = rss_kb(pid)
    print(f"connections={n} answered={len(ok)} seconds={time.time() - started:.1f} "
          f"rss_before_kb={before} rss_held_kb={during} rss_after_close_kb={after}")


asyncio.run(main())
