"""ProfilerMiddleware: WSGI semantics (werkzeug test client), concurrency on a real waitress server,
several worker processes on one store, and failure isolation."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from werkzeug.test import Client

from profviz.store import StoreError, open_store
from profviz.store.sqlite import SQLiteStore
from profviz.wsgi import ENVIRON_KEY
from profviz.wsgi import ProfilerMiddleware as _ProfilerMiddleware
from tests.targets.wsgi_apps import AppError, make_app, serve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "profviz.db") as s:
        yield s
        for middleware in created:
            middleware.close()
        created.clear()


created: list[ProfilerMiddleware] = []


def ProfilerMiddleware(app, store=None, **options):  # noqa: N802 - tracked so writers stop before their store closes
    middleware = _ProfilerMiddleware(app, store=store, **options)
    created.append(middleware)
    return middleware


def both(path, bodies_bare=None, bodies_wrapped=None, store=None, **options):
    bare = Client(make_app(bodies_bare))
    middleware = ProfilerMiddleware(make_app(bodies_wrapped), store=store, **options)
    return bare, Client(middleware), middleware


def exchange(client, path):
    """(status, headers, body, exception type) of one request through the werkzeug test client."""
    try:
        response = client.get(path)
        body = response.get_data()
        response.close()
        return response.status, sorted(response.headers.items()), body, None
    except Exception as exc:
        return None, None, None, type(exc)


@pytest.mark.parametrize("path", ["/plain", "/stream", "/write", "/exc-info", "/raise", "/stream/fail"])
def test_responses_and_exceptions_are_identical_to_the_bare_app(store, path):
    bare_bodies, wrapped_bodies = [], []
    bare, wrapped, middleware = both(path, bare_bodies, wrapped_bodies, store=store)
    expected = exchange(bare, path)
    got = exchange(wrapped, path)
    assert got == expected
    assert middleware.flush()
    rows = store.query_requests()
    assert len(rows) == 1
    row = rows[0]
    if path in ("/raise", "/exc-info"):  # werkzeug's client re-raises exc_info, like a server whose headers went out
        assert expected[3] is AppError and row.status == 500 and row.error.startswith("AppError")
    elif path == "/stream/fail":
        assert expected[3] is RuntimeError and row.error.startswith("RuntimeError")
    else:
        assert row.error is None and row.status == int(expected[0].split()[0])
        assert row.response_bytes == len(expected[2])
    if path.startswith("/stream"):
        assert bare_bodies[0].closed == wrapped_bodies[0].closed
        if path == "/stream":
            assert wrapped_bodies[0].closed


def test_streaming_request_ends_when_the_body_is_consumed_and_close_is_called(store):
    bodies = []
    middleware = ProfilerMiddleware(make_app(bodies), store=store)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status
        return lambda data: None

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/stream", "SCRIPT_NAME": "", "QUERY_STRING": ""}
    iterable = middleware(environ, start_response)
    info = environ[ENVIRON_KEY]
    assert info.route is None and not info.finished and info.id and info.start_ns > 0
    first = next(iter(iterable))
    assert first == b"chunk-0;" and not info.finished
    rest = b"".join(iterable)
    assert info.finished and not bodies[0].closed
    iterable.close()
    assert bodies[0].closed
    assert middleware.flush()
    [row] = store.query_requests()
    assert row.response_bytes == len(first + rest) and row.status == 200 and row.route == "/stream"


def test_close_without_iteration_ends_the_request_and_closes_the_app_iterable(store):
    bodies = []
    middleware = ProfilerMiddleware(make_app(bodies), store=store)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/stream", "SCRIPT_NAME": "", "QUERY_STRING": ""}
    iterable = middleware(environ, lambda status, headers, exc_info=None: None)
    iterable.close()
    assert bodies[0].closed and environ[ENVIRON_KEY].finished


def test_request_info_after_finish_has_duration_cpu_error_and_the_serving_threads_ids(store):
    middleware = ProfilerMiddleware(make_app([]), store=store)
    seen = {}

    def serve_one(path, key):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": ""}
        try:
            iterable = middleware(environ, lambda status, headers, exc_info=None: None)
            list(iterable)
            list(iterable)  # a second iter() continues the same iteration: no chunk twice, no second finish
            iterable.close()
        except AppError:
            pass
        seen[key] = (environ[ENVIRON_KEY], threading.get_native_id(), threading.current_thread().name)

    threads = [threading.Thread(target=serve_one, args=(path, path), name=f"worker {path}") for path in ("/stream", "/raise")]
    for thread in threads:
        thread.start()
        thread.join()
    serve_one("/stream", "main")
    for key, (info, native_id, name) in seen.items():
        assert info.finished and info.duration_ns > 0 and info.cpu_ns >= 0, key
        assert info.tid == native_id and info.pid == os.getpid(), key
    assert seen["/raise"][0].error.startswith("AppError") and seen["/stream"][0].error is None
    assert seen["/stream"][0].status == 200 and seen["/raise"][0].status is None, "as the app started it, for apps to read"
    assert seen["/stream"][0].as_dict()["status"] == 200 and seen["/stream"][0].as_dict()["path"] == "/stream"
    assert seen["/stream"][0].response_bytes == seen["main"][0].response_bytes > 0
    assert len({info.id for info, _, _ in seen.values()}) == 3
    assert middleware.flush()
    rows = {row.path: row for row in store.query_requests()}
    assert rows["/raise"].error.startswith("AppError") and rows["/raise"].status == 500
    writer = middleware.stats["writer"]
    assert writer["batches"] >= 1 and writer["cpu_s"] > 0


def test_a_response_dropped_half_read_without_close_still_ends_its_request(store):
    import gc

    middleware = ProfilerMiddleware(make_app([]), store=store)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/stream", "SCRIPT_NAME": "", "QUERY_STRING": ""}
    iterable = middleware(environ, lambda status, headers, exc_info=None: None)
    info = environ[ENVIRON_KEY]
    assert next(iter(iterable)) == b"chunk-0;" and not info.finished
    del iterable
    gc.collect()
    assert info.finished and info.response_bytes == len(b"chunk-0;")
    assert middleware.flush()
    [row] = store.query_requests()
    assert row.path == "/stream" and row.response_bytes == len(b"chunk-0;")


def test_app_labels_of_any_type_are_stored_as_text_and_never_lose_the_request(store):
    import datetime

    stamp = datetime.datetime(2026, 1, 2, 3, 4, 5)

    def app(environ, start_response):
        info = environ[ENVIRON_KEY]
        if environ["PATH_INFO"] == "/odd":
            info.labels["when"] = stamp
            info.labels[7] = {"nested": [1, object()]}
            info.labels["user"] = "<script>alert(1)</script>"
        else:
            info.labels = "not a mapping"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = ProfilerMiddleware(app, store=store, sampler=False)
    client = Client(middleware)
    assert client.get("/odd").status_code == 200 and client.get("/plain").status_code == 200
    assert middleware.flush()
    rows = {row.path: row for row in store.query_requests()}
    odd = rows["/odd"].labels
    assert odd["when"] == str(stamp) and odd["user"] == "<script>alert(1)</script>"
    assert odd["7"]["nested"][0] == 1 and odd["7"]["nested"][1].startswith("<object object")
    assert rows["/plain"].labels["labels"] == "not a mapping" and rows["/plain"].labels["request_id"]
    assert middleware.stats["errors"] == 0


def test_sized_iterables_keep_their_length_so_servers_can_set_content_length(store):
    middleware = ProfilerMiddleware(make_app(), store=store)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/plain", "SCRIPT_NAME": "", "QUERY_STRING": ""}
    iterable = middleware(environ, lambda status, headers, exc_info=None: None)
    assert len(iterable) == 1
    iterable.close()


class FailingStore(SQLiteStore):
    """A real store whose every write raises once it is open, as a full disk would."""

    def write_batch(self, batch):
        raise StoreError(f"cannot write requests to store {self.path}: disk I/O error (simulated full disk)")


def failing_stores(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    locked_path = tmp_path / "locked.db"
    open_store(locked_path).close()
    locker = sqlite3.connect(locked_path)
    locker.execute("BEGIN EXCLUSIVE")
    return {
        "writes raise": FailingStore(tmp_path / "failing.db"),
        "unopenable path": blocker / "profviz.db",
        "locked database": SQLiteStore(locked_path, busy_timeout_s=0.2),
    }, locker


def test_a_failing_store_changes_no_response_and_is_counted_and_logged_once(tmp_path, caplog):
    stores, locker = failing_stores(tmp_path)
    try:
        for name, store in stores.items():
            caplog.clear()
            bare = Client(make_app())
            middleware = ProfilerMiddleware(make_app(), store=store, tail_threshold_ms=0, log_interval_s=3600)
            wrapped = Client(middleware)
            with caplog.at_level(logging.WARNING, logger="profviz"):
                for path in ["/plain", "/stream", "/write", "/raise", "/busy/15"] * 3:
                    assert exchange(wrapped, path) == exchange(bare, path), (name, path)
                middleware.flush(timeout_s=20)
            stats = middleware.stats
            assert stats["store_failures"] >= 1 and stats["recorded"] == 0, (name, stats)
            assert stats["write_failures"] == stats["held"] == 15, (name, stats)  # held for a later try, not silently lost
            messages = [r.getMessage() for r in caplog.records if r.name == "profviz"]
            assert messages and all(m.startswith("profviz:") for m in messages), (name, messages)
            assert any("holding them in memory" in m for m in messages), (name, messages)
            assert len(messages) == len(set(m.split(":")[1] for m in messages)) <= 4, (name, messages)  # each kind once
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="profviz"):
                middleware.close()
            assert middleware.stats["dropped_after_failure"] == 15, (name, middleware.stats)
            assert any("15 request records were never stored" in r.getMessage() for r in caplog.records), (name, caplog.records)
    finally:
        locker.rollback()
        locker.close()


def test_concurrent_clients_on_a_real_server_lose_no_requests(store):
    middleware = ProfilerMiddleware(make_app(), store=store, tail_threshold_ms=30)
    paths = [f"/items/{i}" for i in range(150)] + [f"/sleep/{5 + i % 20}" for i in range(100)] + ["/busy/40"] * 10
    with serve(middleware, threads=8) as base:
        def fetch(path):
            with requests.get(base + path, timeout=10) as response:
                return response.status_code, response.content

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(fetch, paths))
    assert all(status == 200 for status, _ in results)
    assert middleware.flush()
    rows = store.query_requests()
    assert len(rows) == len(paths) and middleware.stats["dropped"] == 0
    assert sorted(r.path for r in rows) == sorted(paths)
    assert {r.route for r in rows} == {"/items/{int}", "/sleep/{int}", "/busy/{int}"}
    assert len({r.tid for r in rows}) > 1 and all(r.pid == os.getpid() for r in rows)
    slow = [r for r in rows if r.route == "/busy/{int}"]
    # ten CPU-bound requests on eight threads starve the sampler of the GIL for tens of ms at a time,
    # so a 40 ms request can get no sample at all; most still do
    kept = [r for r in slow if r.profile_id is not None]
    assert len(kept) >= len(slow) // 2, ([(r.duration_ns, r.profile_id) for r in slow], middleware.stats)
    for row in kept:
        assert store.profile_meta(row.profile_id)["labels"]["capture"] == "tail"
    assert all(0 < r.cpu_ns <= r.duration_ns + 1_000_000 for r in rows), [(r.cpu_ns, r.duration_ns) for r in rows]
    sleeps = [r for r in rows if r.route == "/sleep/{int}"]
    assert all(r.cpu_ns < 0.5 * r.duration_ns for r in sleeps)


def test_two_worker_processes_write_one_store(tmp_path):
    db = tmp_path / "shared.db"
    open_store(db).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen([sys.executable, str(ROOT / "tests/targets/wsgi_worker.py"), str(db)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        for _ in range(2)
    ]
    try:
        ports = [int(w.stdout.readline()) for w in workers]
        paths = [(port, f"/orders/{i}" if i % 3 else "/busy/8") for i in range(120) for port in ports]

        def fetch(item):
            port, path = item
            return requests.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(fetch, paths)) == {200}
    finally:
        for w in workers:
            w.stdin.write("quit\n")
            w.stdin.flush()
        codes = [w.wait(timeout=30) for w in workers]
    assert codes == [0, 0]
    with open_store(db) as store:
        rows = store.query_requests()
        assert len(rows) == len(paths)
        assert {r.pid for r in rows} == {w.pid for w in workers}
        assert all(r.labels.get("capacity") == 4 for r in rows)
        kept = [r for r in rows if r.profile_id is not None]
        assert kept and all(store.profile_meta(r.profile_id)["pid"] == r.pid for r in kept)
        aggregates = store.list_profiles(kind="route-aggregate")  # flushed at exit, well before their minute is up
        assert {m["pid"] for m in aggregates} == {w.pid for w in workers}


def test_deep_profiles_only_with_the_configured_secret(store):
    middleware = ProfilerMiddleware(make_app(), store=store, sampler=False, deep_trigger_secret="correct-horse")
    client = Client(middleware)
    for path, headers in [
        ("/busy/20?profviz_deep=wrong-secret", {}),
        ("/busy/20", {"X-Profviz-Deep": "nope"}),
        ("/busy/20?profviz_deep=correct-horse", {}),
        ("/sleep/20", {"X-Profviz-Deep": "correct-horse"}),
    ]:
        client.get(path, headers=headers).close()
        assert middleware.flush()  # the writer converting a profile would compete for the GIL
    rows = store.query_requests()
    assert [r.profile_id is not None for r in rows] == [False, False, True, True]
    cpu = store.profile_meta(rows[2].profile_id)
    wait = store.profile_meta(rows[3].profile_id)
    assert cpu["labels"]["capture"] == "deep" and cpu["kind"] == "request"
    # a spinning thread on a loaded 2-core box is sometimes descheduled (counted as waiting): loose bound
    assert cpu["cpu_ns"] > 0.3 * (cpu["cpu_ns"] + cpu["wait_ns"]), cpu
    assert wait["wait_ns"] > 0.8 * (wait["cpu_ns"] + wait["wait_ns"]), wait
    untriggered = ProfilerMiddleware(make_app(), store=store, sampler=False)
    Client(untriggered).get("/busy/5", headers={"X-Profviz-Deep": "correct-horse"}).close()
    assert untriggered.flush() and untriggered.stats["profiles_deep"] == 0


def test_deep_fraction_profiles_every_request_with_absolute_sample_times(store):
    middleware = ProfilerMiddleware(make_app(), store=store, sampler=False, deep_fraction=1.0)
    client = Client(middleware)
    for _ in range(3):
        client.get("/busy/10").close()
    assert middleware.flush()
    rows = store.query_requests()
    assert all(r.profile_id for r in rows)
    for row in rows:
        profile = store.load_profile(row.profile_id)
        first, end = profile.time_range_ns
        assert row.start_ns - 2_000_000 <= first and end <= row.start_ns + row.duration_ns + 2_000_000
        assert profile.sample_count >= 2  # 1 ms apart, but a loaded box can stretch one sample over several ms


def test_a_sampled_request_profile_says_what_its_waits_wait_on(store):
    """A request that sleeps, waits on a lock and reads a socket from a real server on 127.0.0.1:
    its stored sampler profile names each wait (from /proc/self/task/TID/syscall)."""
    import socket
    import time

    from profviz.analysis.summary import profile_summary

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []

    def answer_late():
        connection, _ = server.accept()
        accepted.append(connection)
        connection.recv(16)
        time.sleep(0.25)
        connection.sendall(b"done")

    threading.Thread(target=answer_late, daemon=True).start()
    held = threading.Lock()
    held.acquire()

    def app(environ, start_response):
        time.sleep(0.25)
        held.acquire(timeout=0.25)
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(b"query")
            connection.recv(16)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = ProfilerMiddleware(app, store=store, tail_threshold_ms=1, deep_fraction=0.0)
    response = Client(middleware).get("/waits")
    assert response.get_data() == b"ok"
    response.close()
    assert middleware.flush()
    [row] = store.query_requests()
    summary = profile_summary(store.load_profile(row.profile_id))
    waits_ms = {reason: ns / 1e6 for reason, ns in summary.waits.items()}
    for reason in ("sleep", "lock (futex)", f"socket recv 127.0.0.1:{port}"):
        assert waits_ms.get(reason, 0) >= 150, (reason, waits_ms)
    server.close()
    for connection in accepted:
        connection.close()


def test_a_request_waiting_for_the_gil_is_gil_and_one_blocked_on_a_lock_is_lock(store):
    """In-process: a request compressing with zlib (which lets the GIL go) beside a pure-Python
    spinner thread is CPU, runnable or GIL, under 5% lock; a request blocked on a lock another
    thread holds is lock, under 5% GIL."""
    import time
    import zlib

    import numpy as np

    from profviz.model import State

    data = bytes(range(256)) * 4096
    stop = threading.Event()

    def spin():
        count = 0
        while not stop.is_set():
            count += 1

    held = threading.Lock()

    def app(environ, start_response):
        until = time.monotonic() + 1.2
        if environ["PATH_INFO"] == "/compress":
            while time.monotonic() < until:
                zlib.compress(data, 6)
        else:
            held.acquire(timeout=1.2)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = ProfilerMiddleware(app, store=store, tail_threshold_ms=1, deep_fraction=0.0)
    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        Client(middleware).get("/compress").close()
    finally:
        stop.set()
        spinner.join()
    held.acquire()
    releaser = threading.Timer(1.3, held.release)
    releaser.start()
    Client(middleware).get("/locked").close()
    releaser.join()
    assert middleware.flush()
    shares = {}
    for row in store.query_requests():
        # a request's first and last samples have no state reading of their own (docs/middleware.md:
        # about 50 ms together under contention): the shares are of the samples between them
        profile = store.load_profile(row.profile_id)
        columns = profile.columns()
        order = np.argsort(columns["time_ns"], kind="stable")[1:-1]
        state, weight, reason = columns["state"][order], columns["weight_ns"][order].astype(float), columns["reason"][order]
        lock_reason = profile.strings.index("lock (futex)") if "lock (futex)" in profile.strings else -2
        total = weight.sum()
        busy = weight[np.isin(state, [int(State.ON_CPU), int(State.RUNNABLE), int(State.GIL)])].sum()
        shares[row.path] = {"busy": busy / total, "gil": weight[state == int(State.GIL)].sum() / total,
                            "lock": weight[(state == int(State.WAITING)) & (reason == lock_reason)].sum() / total}
    compress, locked = shares["/compress"], shares["/locked"]
    assert compress["busy"] >= 0.9 and compress["lock"] < 0.05 and compress["gil"] > 0.05, shares
    assert locked["lock"] >= 0.9 and locked["gil"] < 0.05, shares


def test_show_works_on_request_profiles(store, tmp_path):
    middleware = ProfilerMiddleware(make_app(), store=store, deep_fraction=1.0, tail_threshold_ms=1)
    Client(middleware).get("/busy/30").close()
    assert middleware.flush()
    [row] = store.query_requests()
    out = subprocess.run(
        [sys.executable, "-m", "profviz.cli", "show", str(row.profile_id), "--json", "--store", str(store.path)],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0 and "No module named profviz.cli.__main__" in out.stderr:
        out = subprocess.run(["profviz", "show", str(row.profile_id), "--json", "--store", str(store.path)],
                             capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '"busy"' in out.stdout


def test_otel_auto_leaves_the_server_span_to_an_instrumentation_around_it(tmp_path):
    """An OpenTelemetry middleware outside profviz already made the request's span: profviz makes no second one."""
    code = f"""
import sqlite3
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from werkzeug.test import Client
from profviz.wsgi import ProfilerMiddleware
from profviz.store import open_store

def app(environ, start_response):
    sqlite3.connect(":memory:").cursor().execute("SELECT 1").fetchall()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

profiled = ProfilerMiddleware(app, store={str(tmp_path / "s.db")!r}, otel="auto")

def outer(environ, start_response):
    with trace.get_tracer("outer").start_as_current_span("outer request", kind=SpanKind.SERVER):
        return list(profiled(environ, start_response))

assert Client(outer).get("/x").status_code == 200
profiled.flush()
profiled.recorder.span_processor.force_flush()
spans = {{span.name: span for span in open_store({str(tmp_path / "s.db")!r}).query_spans()}}
print(sorted(spans), spans["SELECT"].parent_id == spans["outer request"].span_id)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['SELECT', 'outer request'] True"


def test_otel_auto_records_the_apps_spans_in_the_same_store(tmp_path):
    """otel="auto" sets OpenTelemetry up and the app's spans land beside its requests."""
    code = f"""
import sqlite3
from werkzeug.test import Client
from profviz.wsgi import ProfilerMiddleware
from profviz.store import open_store

def app(environ, start_response):
    conn = sqlite3.connect(":memory:")
    conn.cursor().execute("SELECT 1").fetchall()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

middleware = ProfilerMiddleware(app, store={str(tmp_path / "s.db")!r}, otel="auto")
assert middleware.recorder.span_processor is not None
response = Client(middleware).get("/x")
assert response.status_code == 200
response.close()  # the request (and its server span) ends when the server closes the response
middleware.flush()
middleware.recorder.span_processor.force_flush()
store = open_store({str(tmp_path / "s.db")!r})
print(sorted({{span.name for span in store.query_spans()}}))
print(len(store.query_requests()))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    names, requests = result.stdout.strip().splitlines()
    assert names == "['GET /x', 'SELECT']", "the request's server span and the app's query, and nothing else (profviz's own writes)"
    assert requests == "1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_stores_the_stacks_it_sampled_under_its_own_source(store):
    """After a fork the parent's and the child's sampler tables grow apart from the same ids;
    each process stores its kept profiles' stack nodes under its own source, so every kept
    profile loads with the functions its own process ran."""
    import time

    def parent_second():
        time.sleep(0.06)

    def child_only():
        time.sleep(0.06)

    def parent_first():
        time.sleep(0.06)

    views = {"/parent-first": parent_first, "/child": child_only, "/parent-second": parent_second}

    def app(environ, start_response):
        views[environ["PATH_INFO"]]()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = ProfilerMiddleware(app, store=store, tail_threshold_ms=20, tail_percentile=None)
    Client(middleware).get("/parent-first").close()
    assert middleware.flush()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            Client(middleware).get("/child").close()
            code = 0 if middleware.flush() else 3
        finally:
            os._exit(code)
    Client(middleware).get("/parent-second").close()
    assert middleware.flush()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    kept = {row.path: row.profile_id for row in store.query_requests() if row.profile_id is not None}
    assert set(kept) == set(views)
    sources = {row[0] for row in store.read("SELECT DISTINCT source FROM stack_nodes")}
    assert len(sources) == 2
    for path, profile_id in kept.items():
        loaded = store.load_profile(profile_id)
        functions = {loaded.frame(index).function.rsplit(".", 1)[-1] for index in range(len(loaded.frame_function))}
        assert views[path].__name__ in functions and not (functions & ({v.__name__ for v in views.values()} - {views[path].__name__}))
