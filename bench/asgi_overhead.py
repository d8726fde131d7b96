"""Overhead of profviz's ASGI middleware under a real uvicorn, as ratios to the bare app.

Configurations: ``none`` (the bare app), ``timing`` (``ProfilerMiddleware(sampler=False)``:
every request timed and stored) and ``sampler`` (the default: task-aware sampling at 100 Hz with
tail capture, loop stalls). Each round starts one uvicorn per configuration on 127.0.0.1 (the
order rotates between rounds) and drives it from this process with a lean asyncio HTTP/1.1
client over ``--connections`` keep-alive connections. The app is the asyncio sample shop
(``profviz_shop.async_app``, over its database server and external service, started here once)
with two synthetic routes beside it:

    shop     the shop's routes in turn (SHOP_PATHS: the awaited N+1, its JOIN twin, single posts,
             per-item external calls one after another and at once): the throughput ratio of a
             real app (issue 19's goals: timing >= 0.98, sampler >= 0.95)
    fastapi  ``GET /api/items/7``: a FastAPI endpoint returning a pydantic model, ~100 us
    fast     ``GET /fast``: a raw ASGI answer, no await: profviz's cost per request shows most
    sleep    ``GET /sleep``: awaits 10 ms (client-side P50/P95)
    held     ``--suspended`` requests (default 1,000) each awaiting 4 s at once: the server's CPU
             meanwhile, so the sampler's cost at that many suspended tasks is the difference

Usage: ``python bench/asgi_overhead.py [--rounds 3] [--requests 3000] [--connections 16] [--no-pin]``.
The server runs on a CPU of its own (``taskset``) unless ``--no-pin``. Figures of this box:
docs/asgi.md ("Overhead"): the same configuration's CPU per request swings by 30-70% between
rounds here, so these ratios do not resolve the goals (bench/asgi_cpu.py measures profviz's own
CPU instead); 1,000 suspended requests cost the sampler 2.0-2.5% of a core in the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil

APP = textwrap.dedent('''
    import asyncio, os
    from fastapi import FastAPI
    from pydantic import BaseModel
    from profviz_shop.async_app import create_async_app

    shop = create_async_app(db_address=os.environ["BENCH_DB"], external_url=os.environ["BENCH_EXTERNAL"])

    class Item(BaseModel):
        id: int
        name: str
        tags: list[str]
        price: float

    api = FastAPI()

    @api.get("/api/items/{item_id}")
    async def item(item_id: int, q: str | None = None) -> Item:
        return Item(id=item_id, name=f"item {item_id}", tags=["a", "b", "c"], price=item_id * 1.5)

    async def raw(scope, receive, send):
        if scope["type"] == "lifespan":
            await shop(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/api/"):
            await api(scope, receive, send)
            return
        if path not in ("/fast", "/sleep", "/hold"):
            await shop(scope, receive, send)
            return
        if path == "/sleep":
            await asyncio.sleep(0.01)
        elif path == "/hold":
            await asyncio.sleep(float(scope["query_string"].decode().split("=")[1]))
        body = b'{"ok": true}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    config = os.environ["BENCH_CONFIG"]
    if config == "none":
        app = raw
    else:
        from profviz.asgi import ProfilerMiddleware
        app = ProfilerMiddleware(raw, store=os.environ["BENCH_STORE"], sampler=config == "sampler")
''')
CONFIGS = ("none", "timing", "sampler")
SERVER_CPU: int | None = None  # --pin: the server's own CPU; the client and the shop's services share the others
SHOP_PATHS = ("/posts", "/posts/fast", "/posts/17", "/enrich/fast", "/posts/fast", "/posts/3", "/enrich", "/posts/fast")
GOALS = {"timing": 0.98, "sampler": 0.95}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(config: str, directory: Path, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    pin = ["taskset", "-c", str(SERVER_CPU)] if SERVER_CPU is not None else []
    process = subprocess.Popen([*pin, sys.executable, "-m", "uvicorn", "bench_asgi_app:app", "--port", str(port), "--log-level", "warning",
                                "--app-dir", str(directory)],
                               env={**os.environ, **env, "BENCH_CONFIG": config, "BENCH_STORE": str(directory / f"{config}.db")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"uvicorn ({config}) did not start")


async def drive(port: int, paths: str | tuple[str, ...], total: int, connections: int) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms) of ``total`` GETs of ``paths`` (each connection
    takes them in turn from its own starting point) over ``connections`` connections."""
    latencies: list[float] = []
    paths = (paths,) if isinstance(paths, str) else paths

    async def connection(count: int, first: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        requests = [f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode() for path in paths]
        for n in range(count):
            request = requests[(first + n) % len(requests)]
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(connection(total // connections, index) for index in range(connections)))
    return len(latencies) / (time.perf_counter() - began), latencies


def server_cpu(process) -> float:
    """The server's CPU seconds so far (user + system)."""
    times = process.cpu_times()
    return times.user + times.system


def drive_measured(process, port: int, paths, total: int, connections: int) -> tuple[float, list[float], float]:
    """:func:`drive`, and the server's CPU microseconds per request meanwhile: steadier than
    throughput on a shared box (another process's burst slows the server, but costs it no CPU)."""
    before = server_cpu(process)
    rate, latencies = asyncio.run(drive(port, paths, total, connections))
    return rate, latencies, (server_cpu(process) - before) / len(latencies) * 1e6


async def hold(port: int, count: int, seconds: float, pid: int) -> float:
    """The server's CPU (cores) while ``count`` requests to /hold sit suspended for ``seconds``."""
    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /hold?s={seconds} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    process = psutil.Process(pid)
    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await asyncio.sleep(seconds / 4)  # all connected and suspended
    before, began = sum(process.cpu_times()[:2]), time.perf_counter()
    await asyncio.sleep(seconds / 2)
    used = (sum(process.cpu_times()[:2]) - before) / (time.perf_counter() - began)
    await asyncio.gather(*tasks)
    return used


@contextlib.contextmanager
def shop_services(directory: Path):
    """The asyncio shop's database server and external service, for every uvicorn of the run."""
    from profviz_shop.__main__ import default_database_path
    from profviz_shop.data import build_database
    from profviz_shop.dbserver import DatabaseServer
    from profviz_shop.services import ExternalService

    database_path = default_database_path()
    build_database(database_path)
    with DatabaseServer(database_path) as database, ExternalService() as external:
        yield {"BENCH_DB": database.address, "BENCH_EXTERNAL": external.url, "PYTHONPATH": os.pathsep.join(sys.path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--suspended", type=int, default=1000)
    parser.add_argument("--no-pin", action="store_true", help="do not give the server a CPU of its own")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if not args.no_pin and len(cpus) >= 2:
        global SERVER_CPU
        SERVER_CPU = cpus[-1]
        os.sched_setaffinity(0, cpus[:-1])  # this process and the services it starts
    directory = Path(tempfile.mkdtemp(prefix="profviz-bench-asgi-"))
    (directory / "bench_asgi_app.py").write_text(APP)
    results: dict[str, list] = {config: [] for config in CONFIGS}
    with shop_services(directory) as env:
        for round_index in range(args.rounds):
            order = CONFIGS[round_index % 3:] + CONFIGS[:round_index % 3]
            for config in order:
                process, port = start(config, directory, env)
                server = psutil.Process(process.pid)
                try:
                    for paths in ("/fast", "/api/items/1", SHOP_PATHS):  # warm-up
                        asyncio.run(drive(port, paths, 320, args.connections))
                    shop, _, shop_cpu = drive_measured(server, port, SHOP_PATHS, args.requests // 3, args.connections)
                    fastapi, _, fastapi_cpu = drive_measured(server, port, "/api/items/7?q=x", args.requests, args.connections)
                    fast, _, fast_cpu = drive_measured(server, port, "/fast", args.requests, args.connections)
                    _, sleep_ms = asyncio.run(drive(port, "/sleep", args.requests // 4, args.connections))
                    held = asyncio.run(hold(port, args.suspended, 4.0, process.pid))
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=60)
                p50, p95 = np.percentile(sleep_ms, [50, 95])
                results[config].append((shop, fastapi, fast, p50, p95, held, shop_cpu, fastapi_cpu, fast_cpu))
                print(f"round {round_index + 1} {config:<8} shop {shop:6.0f} req/s {shop_cpu:5.0f} us CPU  FastAPI {fastapi:6.0f} "
                      f"{fastapi_cpu:4.0f} us  /fast {fast:6.0f} {fast_cpu:4.0f} us  /sleep P50 {p50:5.2f} P95 {p95:5.2f} ms  "
                      f"{args.suspended} suspended: {100 * held:5.1f}% CPU", flush=True)
    median = {config: np.median(np.array(results[config]), axis=0) for config in CONFIGS}
    none = median["none"]
    print()
    for config in ("timing", "sampler"):
        m = median[config]
        print(f"{config:<8} throughput ratio to none: shop {m[0] / none[0]:.3f} (goal >= {GOALS[config]}), FastAPI {m[1] / none[1]:.3f}, "
              f"/fast {m[2] / none[2]:.3f}; /sleep P50 {none[3]:.2f} -> {m[3]:.2f} ms, P95 {none[4]:.2f} -> {m[4]:.2f} ms")
        print(f"{config:<8} CPU-per-request ratio (none / {config}): shop {none[6] / m[6]:.3f} (goal >= {GOALS[config]}), "
              f"FastAPI {none[7] / m[7]:.3f}, /fast {none[8] / m[8]:.3f}")
    print(f"{args.suspended} suspended requests: server CPU {100 * median['none'][5]:.1f}% bare, {100 * median['timing'][5]:.1f}% "
          f"timing, {100 * median['sampler'][5]:.1f}% with the sampler (its cost: "
          f"{100 * (median['sampler'][5] - median['timing'][5]):.1f}% of a core)")


if __name__ == "__main__":
    main()
