"""A lean HTTP/1.1 load client for the tests that compare the server's latencies with a client's,
run as a process of its own (``python tests/load_client.py URL PATHS_JSON CONNECTIONS``): the
test process carries hundreds of earlier tests' threads and heap, and one stall of its loop of
10 ms delays every request in flight and moves a P95. Prints ``{path: latency ms}`` as JSON."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from urllib.parse import urlsplit


def load(url: str, paths: list, connections: int) -> dict[str, float]:
    """Send ``paths`` over ``connections`` keep-alive connections at once, or each list of ``paths``
    (a list of lists) over a connection of its own; each path's latency in ms, from the request's
    first byte sent to its body's last byte read."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    latency: dict[str, float] = {}

    async def connection(mine: list[str]) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        for path in mine:
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{path}: {head[:80]!r}")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latency[path] = (time.perf_counter() - started) * 1000
        writer.close()

    async def everything() -> None:
        if paths and isinstance(paths[0], list):
            await asyncio.gather(*(connection(mine) for mine in paths))
        else:
            await asyncio.gather(*(connection(paths[i::connections]) for i in range(connections)))

    gc.disable()  # a collection would be the client's time, not the server's
    asyncio.run(everything())
    return latency


if __name__ == "__main__":
    try:
        os.nice(-5)  # the measuring client ahead of the box's other work, where allowed (CI runs as root)
    except OSError:
        pass
    print(json.dumps(load(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]))))
