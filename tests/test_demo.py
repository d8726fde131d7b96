"""`profviz demo` end to end: the real shop, real load, the middleware, spans and an attach profile."""

import json
import subprocess
import sys

from profviz.store import open_store


def test_demo_records_requests_routes_profiles_and_spans(tmp_path):
    store_path = tmp_path / "demo.db"
    result = subprocess.run(
        [sys.executable, "-m", "profviz", "demo", "--no-serve", "--requests", "120", "--json", "--store", str(store_path)],
        capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 120 and summary["failed"] == 0
    store = open_store(store_path)
    warmup = 20
    rows = store.query_requests()
    assert len(rows) == summary["sent"] + warmup
    routes = {row.route for row in rows}
    assert {"/checkout", "/search/slow", "/posts/<int:post_id>", "/export"} <= routes
    kinds = {m["kind"] for m in store.list_profiles()}
    assert "request" in kinds
    attach = store.profile_meta(summary["attach_profile_id"])
    assert attach["kind"] == "attach" and attach["sample_count"] > 1000 and attach["wait_ns"] > 0
    span_names = {span.name for span in store.query_spans()}
    assert span_names, "OpenTelemetry spans from the shop were recorded"
    assert "/checkout" in result.stdout and "p99 ms" in result.stdout
