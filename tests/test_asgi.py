"""The ASGI middleware (profviz/middleware/asgi.py) on a real uvicorn on 127.0.0.1, with
concurrent clients: nothing lost, routes named by template, streams timed to their last byte,
lifespan and exceptions untouched, a failing store changing no response, percentiles that
match the clients' own; task-aware samples (profviz/collect/tasks.py): a request's time awaiting
a remote peer shows as waiting on that peer, also through ``gather``; a blocking call inside
``async def`` is the ``event_loop_blocked`` finding, an awaited one is not."""

from __future__ import annotations

import contextlib
import json
import os
import threading
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

from profviz.analysis.findings import run_detectors
from profviz.analysis.summary import profile_summary
from profviz.model import State
from profviz.store import open_store
from profviz.store.window import load_window

from .proxied_server import free_port
from .served import wait_for_answer

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def uvicorn(env: dict[str, str], target: str = "tests.targets.asgi_apps:app", ready: str = "/ready",
            args: tuple[str, ...] = ()) -> Iterator[str]:
    """``target`` (tests/targets/asgi_apps.py's app by default) under a real uvicorn (with ``args``);
    yields its URL once ``ready`` answers; stops it with SIGTERM (uvicorn's graceful shutdown,
    after which the middleware's writer drains at exit)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1",
                                "--port", str(port), "--log-level", "warning", *args],
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_answer(process_url + ready, process, "uvicorn")
        yield process_url
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


def timed_load(url: str, paths: list, connections: int = 16) -> dict[str, float]:
    """Each path's latency in ms as a lean client in a process of its own saw it
    (tests/load_client.py: ``paths`` over ``connections`` connections at once, or each list of
    ``paths`` over a connection of its own)."""
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("load_client.py")), url, json.dumps(paths), str(connections)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


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
    assert sum(row.queue_ns is None for row in rows) <= 1  # the first request's task was made before the loop was stamped
    assert all(row.status == 500 for row in routes["/boom"])  # Starlette answers 500 before re-raising to uvicorn
    streams = routes["/stream"]
    assert all(row.duration_ns >= 99e6 and row.response_bytes == 40 for row in streams), sorted((row.duration_ns // 10**5 / 10, row.response_bytes) for row in streams)[:3]  # 5 chunks 20 ms apart: to the last byte
    # the server's percentiles against the clients' own, same run: the app's time plus the
    # request task's wait for the loop before the app began it (its queue time, docs/asgi.md);
    # the client's also holds uvicorn's HTTP parsing and its own reading
    for route, prefix in (("/items/{item_id}", "/items/"), ("/star/users/{name}", "/star/users/")):
        theirs_ms = [ms for path, ms in client_ms.items() if path.startswith(prefix)]
        ours_ms = [row.total_ns / 1e6 for row in routes[route]]
        for q, within in ((50, 0.05), (95, 0.05)):
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


class SlowPeer:
    """A remote service on 127.0.0.1, on its own event loop in a thread: ``GET /slow?ms=N`` answers
    after N ms (HTTP/1.1, keep-alive, headers and body in one write), hundreds at once."""

    def __init__(self):
        import asyncio

        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def answer(reader, writer) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    await asyncio.sleep(int(head.split(b" ", 2)[1].split(b"ms=")[1]) / 1000)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        async def start() -> None:
            self.server = await asyncio.start_server(answer, "127.0.0.1", 0, backlog=1024)
            self.server_address = self.server.sockets[0].getsockname()
            ready.set()

        def run() -> None:
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def peer() -> Iterator[SlowPeer]:
    server = SlowPeer()
    yield server
    server.shutdown()


EVERY_PROFILE = json.dumps({"tail_threshold_ms": 1, "tail_max_per_minute": 100000, "baseline_per_minute": 0})


def test_awaiting_a_remote_peer_shows_as_waiting_on_it_beside_50_concurrent_requests(tmp_path, peer):
    """While 50 other requests are in flight on the same loop (each awaiting 1 s, twice), 20
    requests await a 200 ms call (httpx.AsyncClient) and 4 await three at once (gather): in each
    one's own profile the time waiting on the peer's socket is >= 90% of its wall time on average
    (each >= 80%: one 10 ms sample of ~210 ms is 5%), the samples tile the wall time, and the
    fan-out's waits sit under the endpoint's frame, in the spawned tasks' frames."""
    store = tmp_path / "store.db"
    others = [[f"/hold/{2 * n}", f"/hold/{2 * n + 1}"] for n in range(50)]
    measured = [[f"/remote/{200 + 4 * n + i}" for i in range(4)] for n in range(5)] + [["/fanout", "/fanout"]] * 2
    with uvicorn({"ASGI_APP_STORE": str(store), "ASGI_APP_PEER": peer.url, "ASGI_APP_OPTIONS": EVERY_PROFILE}) as url:
        # warm-up: the first call makes the client and imports its modules (100+ ms on a CPU), and
        # opens the pool's connections, as a server that has run a while has them
        timed_load(url, [[f"/remote/{1000 + n}"] for n in range(16)])
        timed_load(url, others + measured)  # answers 200 or fails
    opened = open_store(store)
    try:
        rows = [row for row in opened.query_requests() if row.route in ("/remote/{n}", "/fanout") and not row.path.startswith("/remote/1")]
        assert len(rows) == 24 and all(row.profile_id is not None for row in rows)
        peer_wait = f"socket recv 127.0.0.1:{peer.server_address[1]}"
        shares = []
        for row in rows:
            profile = opened.load_profile(row.profile_id)
            summary = profile_summary(profile)
            sampled = int(summary.by_state.sum())
            assert sampled >= row.duration_ns - 2 * 10e6, (row.route, sampled, row.duration_ns)  # all but its last interval
            shares.append(summary.waits.get(peer_wait, 0) / row.duration_ns)
            assert shares[-1] >= 0.8, (row.route, row.duration_ns / 1e6, summary.by_state, summary.waits)
            if row.route == "/fanout":
                functions = _functions_waiting(profile, peer_wait)
                assert "fanout" in functions and "AsyncClient.get" in functions, functions
    finally:
        opened.close()
    assert np.mean(shares) >= 0.9, sorted(shares)


def _functions_waiting(profile, reason: str) -> set[str]:
    columns = profile.columns()
    wanted = profile.strings.index(reason)
    functions = set()
    for stack in set(columns["stack"][columns["reason"] == wanted].tolist()):
        functions.update(profile.frame(index).function for index in profile.stack_frames(stack))
    return functions


def test_a_blocking_call_in_async_def_is_found_with_the_requests_it_delayed(tmp_path, peer):
    """Concurrent /remote requests (awaited) beside /blocking ones (requests.get in async def):
    the event_loop_blocked finding names /blocking's call with its stack and counts the /remote
    requests it delayed; no finding blames /remote, and a run of /remote alone has no stall that
    delayed a request."""
    store = tmp_path / "store.db"
    paths = [f"/remote/{n}" for n in range(30)] + ["/blocking"] * 4
    env = {"ASGI_APP_STORE": str(store), "ASGI_APP_PEER": peer.url}
    with uvicorn(env) as url:
        fetch(url + "/remote/999")  # the first call imports httpx's modules: that blocks the loop 100+ ms, alone
        with ThreadPoolExecutor(len(paths)) as pool:
            answers = list(pool.map(lambda path: fetch(url + path), paths))
    assert all(status == 200 for status, _ in answers)
    opened = open_store(store)
    try:
        findings = [f for f in run_detectors(load_window(opened)) if f.kind == "event_loop_blocked"]
    finally:
        opened.close()
    assert [f.route for f in findings] == ["GET /blocking"], [(f.route, f.title) for f in findings]
    [finding] = findings
    evidence = finding.evidence
    assert evidence["call_site"]["function"] == "blocking" and evidence["call_site"]["file"].endswith("asgi_apps.py")
    assert evidence["blocking_call"]["function"] == "get" and evidence["blocking_call"]["file"].endswith("requests/api.py")
    assert evidence["stalls"] >= 1 and evidence["longest_ms"] >= 150
    assert evidence["delayed_routes"].get("GET /remote/{n}", 0) >= 10, evidence["delayed_routes"]
    assert finding.requests == evidence["delayed_requests"] >= 10
    assert any("blocking" in line for line in evidence["stack"]), evidence["stack"]

    alone = tmp_path / "alone.db"
    with uvicorn({**env, "ASGI_APP_STORE": str(alone)}) as url:
        fetch(url + "/remote/999")
        with ThreadPoolExecutor(30) as pool:
            assert all(status == 200 for status, _ in pool.map(lambda n: fetch(f"{url}/remote/{n}"), range(30)))
    opened = open_store(alone)
    try:
        assert all(stall["labels"]["delayed_requests"] == 0 for stall in opened.list_profiles(kind="loop_stall"))
        assert not [f for f in run_detectors(load_window(opened)) if f.kind == "event_loop_blocked"]
    finally:
        opened.close()



def test_a_def_endpoint_in_the_threadpool_is_its_requests_time(tmp_path, peer):
    """FastAPI runs a plain ``def`` endpoint in anyio's worker threads: 8 requests at once to one
    that calls the peer with requests.get show, in their own profiles, the endpoint's frames
    waiting on the peer's socket (>= 80% of the time the thread did not spend waiting for the
    GIL), not an opaque wait for the thread pool. The GIL share is left out of the bound: with 8
    worker threads on a 2-core box, a thread whose socket answered waits its turn for the
    interpreter, up to 20% of a request in a fresh-clone CI run, and that is the GIL's state,
    correctly not the socket's."""
    store = tmp_path / "store.db"
    with uvicorn({"ASGI_APP_STORE": str(store), "ASGI_APP_PEER": peer.url, "ASGI_APP_OPTIONS": EVERY_PROFILE}) as url:
        fetch(url + "/sync-remote")
        with ThreadPoolExecutor(8) as pool:
            assert all(status == 200 for status, _ in pool.map(lambda _: fetch(url + "/sync-remote"), range(8)))
    opened = open_store(store)
    try:
        rows = [row for row in opened.query_requests() if row.route == "/sync-remote"][1:]
        assert len(rows) == 8 and all(row.profile_id is not None for row in rows)
        peer_wait = f"socket recv 127.0.0.1:{peer.server_address[1]}"
        for row in rows:
            profile = opened.load_profile(row.profile_id)
            summary = profile_summary(profile)
            own_time = summary.by_state.sum() - summary.by_state[int(State.GIL)]
            assert summary.waits.get(peer_wait, 0) >= 0.8 * own_time, (summary.waits, summary.by_state)
            assert "sync_remote" in {name.rsplit(".", 1)[-1] for name in _functions_waiting(profile, peer_wait)}
    finally:
        opened.close()


def test_a_deep_profile_follows_its_task_only(tmp_path, peer):
    """A request with the deep trigger header, among 10 others on the loop: its pyinstrument
    profile (async mode) spends >= 80% of its time awaiting ([await] under the endpoint), and
    holds none of the other requests' frames."""
    store = tmp_path / "store.db"
    options = json.dumps({"deep_trigger_secret": "deep-secret-1"})
    with uvicorn({"ASGI_APP_STORE": str(store), "ASGI_APP_PEER": peer.url, "ASGI_APP_OPTIONS": options}) as url:
        fetch(url + "/remote/999")
        with ThreadPoolExecutor(11) as pool:
            others = [pool.submit(fetch, f"{url}/items/{n}") for n in range(10)]
            deep = requests.get(url + "/remote/1", headers={"X-Profviz-Deep": "deep-secret-1"}, timeout=30)
            assert deep.status_code == 200 and all(f.result()[0] == 200 for f in others)
    opened = open_store(store)
    try:
        [meta] = [m for m in opened.list_profiles(kind="request") if m["labels"]["capture"] == "deep"]
        assert meta["labels"]["path"] == "/remote/1" and meta["labels"]["collector"] == "pyinstrument"
        profile = opened.load_profile(meta["id"])
    finally:
        opened.close()
    summary = profile_summary(profile)
    assert summary.waits.get("await", 0) >= 0.8 * summary.by_state.sum(), summary.waits
    names = {profile.frame(i).function.rsplit(".", 1)[-1] for i in range(len(profile.frame_function))}
    assert {"remote", "[await]"} <= names and "item" not in names, sorted(names)
