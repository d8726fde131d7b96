"""Version comparison (profviz/analysis/versions.py, ``profviz versions``): per route, version A's
latency against B's, and the functions B's slow requests spend more time in."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from profviz.model import Profile, RequestBatch, RequestRow, State
from profviz.store import open_store

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def request_profile(start: int, parts: list[tuple[str, int, State]]) -> Profile:
    profile = Profile({"kind": "request", "pid": 1, "start_ns": start})
    thread = profile.add_thread(1, 2, "worker")
    at = start
    for function, ms, state in parts:
        stack = profile.intern_frames([("handle", "app.py", 1), (function, "app.py", 10)])
        for _ in range(ms):
            profile.append_sample(at, thread, stack, MS, state, "socket recv logs:514" if state == State.WAITING else None)
            at += MS
    return profile


def fill(path) -> None:
    rng = np.random.default_rng(5)
    store = open_store(path)
    batch = RequestBatch()
    for i in range(400):
        version = "1.4" if i < 200 else "1.5"
        start = T0 + i * 100 * MS
        charge, audit = int(rng.integers(8, 14)), (int(rng.integers(30, 50)) if version == "1.5" else 0)
        parts = [("charge", charge, State.ON_CPU)] + ([("audit_log", audit, State.WAITING)] if audit else [])
        duration = sum(ms for _, ms, _ in parts) * MS
        index = batch.add_row(RequestRow(pid=1, tid=2, route="/checkout", method="POST", path="/checkout", status=200, start_ns=start,
                                         duration_ns=duration, labels={"version": version, "host": "a"}))
        batch.keep(request_profile(start, parts), index)
        batch.add_row(RequestRow(pid=1, tid=2, route="/health", method="GET", path="/health", status=200, start_ns=start + 1,
                                 duration_ns=MS, labels={"version": version, "host": "a"}))
    store.write_batch(batch)
    store.close()


def test_versions_names_the_route_that_got_slower_and_the_function_behind_it(tmp_path):
    path = tmp_path / "store.db"
    fill(path)
    result = subprocess.run([sys.executable, "-m", "profviz", "versions", "1.4", "1.5", "--store", str(path), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    first = answer["routes"][0]
    assert (first["route"], first["method"]) == ("/checkout", "POST") and first["a"]["count"] == first["b"]["count"] == 200
    assert first["p95_change"] > 2.0 and answer["explained"] == {"route": "/checkout", "method": "POST"}
    top = max(answer["diff"]["frames"], key=lambda f: f["extra_self_ms"])
    assert top["function"] == "audit_log" and 35 <= top["extra_self_ms"] <= 52 and top["extra_wait_ms"] > 30
    text = subprocess.run([sys.executable, "-m", "profviz", "versions", "1.4", "1.5", "--store", str(path)],
                          capture_output=True, text=True, timeout=120).stdout
    assert "/checkout" in text and "audit_log" in text and "POST /checkout: its slowest requests" in text


def test_an_unknown_version_is_a_one_line_error(tmp_path):
    path = tmp_path / "store.db"
    fill(path)
    result = subprocess.run([sys.executable, "-m", "profviz", "versions", "1.4", "9.9", "--store", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [
        f"profviz: no requests of version '9.9' in {path}: the versions are the 'version' label of the middleware "
        "(its version option, or service.version in OTEL_RESOURCE_ATTRIBUTES)"]
