"""`profviz demo` end to end: the real shop, real load, the middleware, spans and an attach profile."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

from profviz.cli.demo import LOAD_SECONDS, START_TIMEOUT_S, WARMUP_REQUESTS
from profviz.store import open_store


def test_demo_records_every_request_in_its_own_store_even_with_sigint_ignored(tmp_path):
    """Run as a background job would (SIGINT ignored): the demo still stops its shop cleanly, in
    its stated time, with every request recorded in the demo's own store (not the default one)."""
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "profviz", "demo", "--no-serve", "--requests", "120", "--json"],
        capture_output=True, text=True, timeout=START_TIMEOUT_S + LOAD_SECONDS + 120, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert "killed" not in result.stderr and "may be missing" not in result.stderr
    assert elapsed < START_TIMEOUT_S + LOAD_SECONDS, elapsed
    store_path = tmp_path / "data" / "profviz" / "demo.db"
    assert f"recording into {store_path}" in result.stderr
    assert not (tmp_path / "data" / "profviz" / "profviz.db").exists(), "the default store is left alone"
    assert "sent 120/120 requests" in result.stderr, "progress while the load runs"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 120 and summary["failed"] == 0
    store = open_store(store_path)
    rows = store.query_requests()
    assert len(rows) == summary["sent"] + WARMUP_REQUESTS
    routes = {row.route for row in rows}
    durations = {}
    for row in rows:
        durations.setdefault(row.route, []).append(row.duration_ns)
    n_plus_one, joined = statistics.median(durations["/posts"]), statistics.median(durations["/posts/fast"])
    assert n_plus_one >= 3 * joined, "the N+1 route's P50 is at least 3x its fixed twin's: its queries cross a socket"
    assert {"/checkout", "/search/slow", "/posts/<int:post_id>", "/export"} <= routes
    kinds = {m["kind"] for m in store.list_profiles()}
    assert "request" in kinds
    attach = store.profile_meta(summary["attach_profile_id"])
    assert attach["kind"] == "attach" and attach["sample_count"] > 1000 and attach["wait_ns"] > 0
    span_names = {span.name for span in store.query_spans()}
    assert span_names, "OpenTelemetry spans from the shop were recorded"
    assert "/checkout" in result.stdout and "p99 ms" in result.stdout


def test_the_demo_store_is_never_the_default_store(tmp_path, monkeypatch):
    from profviz.cli.demo import demo_store_path
    from profviz.store import default_store_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("PROFVIZ_STORE", raising=False)
    assert demo_store_path() == tmp_path / "profviz" / "demo.db" != default_store_path()
    monkeypatch.setenv("PROFVIZ_STORE", str(tmp_path / "profviz" / "demo.db"))  # the user's own store has that name
    assert demo_store_path() == tmp_path / "profviz" / "profviz-demo.db"


def test_the_asyncio_demo_finds_its_bottlenecks(tmp_path):
    """``profviz demo --asgi``: the asyncio shop under uvicorn, every request recorded under its
    route template, the spans on each request's task lane, and each route's own bottleneck found:
    the awaited N+1 and per-item calls, the blocking call inside async def; calls made at once are
    not reported as one after another."""
    from profviz.analysis.findings import run_detectors
    from profviz.collect.tasks import TASK_LANE_BASE
    from profviz.store.window import load_window

    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"))
    result = subprocess.run(
        [sys.executable, "-m", "profviz", "demo", "--asgi", "--no-serve", "--no-attach", "--requests", "250", "--json"],
        capture_output=True, text=True, timeout=START_TIMEOUT_S + LOAD_SECONDS + 120, env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 250 and summary["failed"] == 0
    store = open_store(tmp_path / "data" / "profviz" / "demo.db")
    rows = store.query_requests()
    assert len(rows) == summary["sent"] + WARMUP_REQUESTS
    durations: dict = {}
    for row in rows:
        durations.setdefault(row.route, []).append(row.duration_ns)
        assert row.tid >= TASK_LANE_BASE  # each request its own lane
    assert {"/posts", "/posts/fast", "/posts/{post_id:int}", "/enrich", "/enrich/fast", "/enrich/sync", "/export"} <= set(durations)
    assert statistics.median(durations["/posts"]) >= 3 * statistics.median(durations["/posts/fast"])
    spans = store.query_spans()
    assert spans and all(span.tid >= TASK_LANE_BASE for span in spans if span.tid is not None and span.name.startswith("SELECT"))
    found = {(f.route, f.kind) for f in run_detectors(load_window(store))}
    store.close()
    assert {("GET /posts", "n_plus_one_query"), ("GET /enrich", "repeated_remote_call"),
            ("GET /enrich/sync", "event_loop_blocked")} <= found, sorted(found, key=str)
    assert ("GET /enrich/fast", "repeated_remote_call") not in found
    assert ("GET /posts/fast", "n_plus_one_query") not in found
