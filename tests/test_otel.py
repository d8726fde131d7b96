"""profviz.otel: the span processor, setup_otel, and spans joined to real samples end to end.

The end-to-end tests run real processes from tests/targets/: a Flask app under the WSGI
middleware's sampler with OpenTelemetry instrumentation, and an OTLP-exporting service sampled
by ``profviz attach`` while ``profviz serve`` receives its spans.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from profviz.analysis.calltree import build_call_tree, function_stats
from profviz.analysis.correlate import join_spans, unspanned
from profviz.analysis.span_views import span_flame_tree
from profviz.cli.spans import span_listing
from profviz.otel import SpanProcessor
from profviz.store import open_store
from profviz.store.spans import load_span_context, spans_for_profile

TARGETS = Path(__file__).parent / "targets"
PROFVIZ = shutil.which("profviz") or os.path.join(os.path.dirname(sys.executable), "profviz")


def _functions(tree) -> set[str]:
    return {f.function for f in function_stats(tree)}


def test_processor_stamps_native_thread_name_and_pid_at_start():
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    tracer = provider.get_tracer("t")
    seen = {}

    def work(name):
        with tracer.start_as_current_span(name) as span:
            seen[name] = (dict(span.attributes), threading.get_native_id())

    threads = [threading.Thread(target=work, args=(f"job{i}",), name=f"pool-{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    work("main")
    tids = set()
    for name, (attributes, native) in seen.items():
        assert attributes["thread.id"] == native and attributes["process.pid"] == os.getpid()
        tids.add(native)
    assert seen["job1"][0]["thread.name"] == "pool-1"
    assert seen["main"][0]["thread.name"] == threading.current_thread().name
    assert len(tids) == 4


def test_processor_records_ended_spans_in_the_store(tmp_path):
    store = open_store(tmp_path / "spans.db")
    processor = SpanProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER, attributes={"http.route": "/orders"}) as root:
        with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "deadlock"))
            child.set_attribute("db.statement", "SELECT * FROM orders WHERE id = 42 AND note = 'card 4111'" + " OR a = b" * 2_000)
            child.set_attribute("db.connection_string", "postgresql://shop:hunter2@db:5432/shop")
            child.set_attribute("http.request.header.authorization", "Bearer eyJhbGciOi")
    assert processor.force_flush(10_000)
    stored = {r.name: r for r in store.query_spans()}
    assert set(stored) == {"GET /orders", "SELECT orders"}
    parent, record = stored["GET /orders"], stored["SELECT orders"]
    assert record.trace_id == format(root.get_span_context().trace_id, "032x")
    assert record.parent_id == parent.span_id == format(root.get_span_context().span_id, "016x")
    assert record.kind == "client" and record.status == "error" and parent.kind == "server"
    assert record.attributes["otel.status_description"] == "deadlock"
    assert len(record.attributes["db.statement"]) == 4096  # normalised (no literals stored), then capped
    assert record.attributes["db.statement"].startswith("SELECT * FROM orders WHERE id = ? AND note = ? OR a = b")
    assert record.attributes["db.connection_string"] == "postgresql://shop:***@db:5432/shop"
    assert record.attributes["http.request.header.authorization"] == "[redacted]"
    assert record.tid == threading.get_native_id() and record.pid == os.getpid() and not record.approximate
    assert record.start_ns == child.start_time and record.end_ns == child.end_time
    assert record.source == "processor" and processor.recorded == 2 and processor.dropped == 0
    provider.shutdown()


def test_processor_drops_and_counts_when_its_queue_is_full(tmp_path):
    store = open_store(tmp_path / "spans.db")
    processor = SpanProcessor(store, queue_size=1, batch_size=1)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")

    def end_spans_while_the_store_is_locked(conn):
        conn.execute("DELETE FROM spans")  # takes the write lock: the writer thread cannot write meanwhile
        for i in range(50):
            tracer.start_span(f"s{i}").end()

    store.transaction("hold the write lock of", end_spans_while_the_store_is_locked)
    assert processor.force_flush(10_000)
    assert processor.dropped > 0 and processor.recorded + processor.dropped == 50
    assert len(store.query_spans()) == processor.recorded
    provider.shutdown()


def _run_target(*args, timeout=120) -> dict:
    done = subprocess.run([sys.executable, str(TARGETS / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_setup_otel_adds_to_an_existing_sdk_provider_and_changes_nothing_else(tmp_path):
    result = _run_target("otel_setup.py", "existing", str(tmp_path / "s.db"))
    assert result["same_provider"] and result["service_name"] == "billing"
    assert result["idempotent"] and result["profviz_processors"] == 1 and result["processor_count"] == 2
    assert result["attached"] and {"sqlite3", "requests", "logging"} <= set(result["instrumented"])
    exported = [(s["name"], s["attributes"]) for s in result["exported"]]
    # The app's own exporter still gets every span: the cursor's, the connection shortcuts', the
    # checkout; profviz's store statements are none of them.
    assert [name for name, _ in exported] == ["SELECT", "SELECT", "INSERT", "checkout"]
    assert [attributes["db.statement"] for _, attributes in exported[:3]] == ["SELECT 1", "SELECT 2", "INSERT INTO t VALUES (?)"]
    assert all("thread.id" in attributes for _, attributes in exported)
    assert result["recorded"] == 5  # and the CREATE TABLE before the checkout
    stored = open_store(tmp_path / "s.db").query_spans()
    (checkout,) = [r for r in stored if r.name == "checkout"]
    assert sorted(r.parent_id or "" for r in stored if r.name in ("SELECT", "INSERT")) == [checkout.span_id] * 3
    assert checkout.attributes["service.name"] == "billing"


def test_setup_otel_installs_a_provider_when_the_app_has_none(tmp_path):
    result = _run_target("otel_setup.py", "none", str(tmp_path / "s.db"))
    assert result["provider_type"] == "TracerProvider" and result["attached"] and result["idempotent"]
    assert result["processor_count"] == 1 and result["recorded"] == 5


@pytest.fixture(scope="module")
def flask_run(tmp_path_factory):
    """One slow request through Flask + the middleware's sampler + OpenTelemetry (see the target)."""
    store_path = tmp_path_factory.mktemp("flask") / "store.db"
    result = _run_target("otel_flask_app.py", str(store_path))
    store = open_store(store_path)
    (row,) = store.query_requests(route="/report", with_profile=True)
    return store, int(row.id), result


def test_flask_request_spans_get_their_own_samples(flask_run):
    store, request_id, result = flask_run
    assert result["dropped"] == 0 and {"sqlite3", "requests"} <= set(result["instrumented"])
    context = load_span_context(store, request_id=request_id)
    join = join_spans(context.profile, context.spans)
    by_kind = {}
    for index, span in enumerate(context.spans):
        by_kind.setdefault((span.kind, span.attributes.get("db.system") is not None), []).append(index)
    (query,) = by_kind[("client", True)]
    (http,) = by_kind[("client", False)]
    assert context.profile.threads[context.spans[query].thread].tid == result["tid"]
    query_functions = _functions(span_flame_tree(join, index=query))
    assert "run_slow_query" in query_functions and "call_inventory" not in query_functions
    assert "log_audit" not in query_functions
    http_functions = _functions(span_flame_tree(join, index=http))
    assert "call_inventory" in http_functions and "run_slow_query" not in http_functions
    for index in (query, http):
        assert join.samples[index] >= 3
        assert join.uncovered_ns[index] <= 0.2 * join.duration_ns[index]


def test_the_request_has_a_server_span_continuing_the_callers_trace_and_parenting_its_calls(flask_run):
    store, request_id, _ = flask_run
    context = load_span_context(store, request_id=request_id)
    (server,) = [s for s in context.spans if s.kind == "server"]
    assert server.name == "GET /report" and server.attributes["url.path"] == "/report"  # plain WSGI: no route template
    assert server.attributes["http.response.status_code"] == 200 and server.attributes["http.request.method"] == "GET"
    assert (server.trace_id, server.parent_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    children = [s for s in context.spans if s.kind == "client"]
    assert len(children) == 2 and all(c.parent_id == server.span_id and c.trace_id == server.trace_id for c in children)
    request = store.request_by_id(request_id)
    # the span takes the request's own clock readings: it and the request row agree
    assert abs(server.start_ns - request.start_ns) < 1_000_000
    assert server.end_ns - server.start_ns == request.duration_ns


def test_flask_request_logging_wait_shows_as_time_outside_every_span(flask_run):
    store, request_id, _ = flask_run
    context = load_span_context(store, request_id=request_id)
    join = join_spans(context.profile, context.spans)
    gap = unspanned(join, *context.window)
    assert gap.duration_ns >= 120_000_000  # the ~150 ms synchronous log call has no span
    gap_functions = _functions(build_call_tree(context.profile, mask=gap.mask))
    assert {"log_audit", "BlockingSocketLogHandler.emit", "Logger.callHandlers"} <= gap_functions
    cols = context.profile.columns()
    stacks_with_emit = np.array([
        any(context.profile.strings[context.profile.frame_function[f]] == "BlockingSocketLogHandler.emit" for f in context.profile.stack_frames(s))
        if s >= 0 else False for s in range(len(context.profile.stack_prefix))
    ])
    emit_samples = (cols["stack"] >= 0) & stacks_with_emit[np.maximum(cols["stack"], 0)]
    assert emit_samples.sum() >= 3
    assert (gap.mask & emit_samples).sum() >= 0.8 * emit_samples.sum()
    listing = span_listing(store, request_id=request_id)
    no_span = listing["spans"][-1]
    assert no_span["name"] == "(no span)" and no_span["duration_s"] >= 0.12
    assert no_span["wait_s"] >= 0.1


def test_profviz_spans_cli_lists_request_spans_and_no_span_entry(flask_run):
    store, request_id, _ = flask_run
    done = subprocess.run([PROFVIZ, "spans", "--request", str(request_id), "--store", str(store.path), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    names = [row["name"] for row in listing["spans"]]
    assert names[-1] == "(no span)" and "GET" in names and "GET /report" in names and len(names) == 4
    for row in listing["spans"]:
        assert {"span_id", "parent_id", "name", "kind", "tid", "start", "duration_s", "samples", "cpu_s", "wait_s",
                "uncovered_s", "top_functions"} <= set(row)
        assert row["cpu_s"] + row["wait_s"] + row["runnable_s"] + row["gil_s"] <= row["duration_s"] + 4e-6  # five values rounded to 1e-6
    text = subprocess.run([PROFVIZ, "spans", "--request", str(request_id), "--store", str(store.path)],
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and "(no span)" in text.stdout
    no_span_top = {f["function"]: f["share"] for f in listing["spans"][-1]["top_functions"]}
    assert max(no_span_top, key=no_span_top.get) in {"BlockingSocketLogHandler.emit", "SocketIO.readinto", "socket.recv"}, no_span_top
    assert no_span_top.get("run_slow_query", 0.0) < 0.1, "the query's caller runs inside its span, but for edge samples"
    missing = subprocess.run([PROFVIZ, "spans", "--request", "999", "--store", str(store.path)], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and missing.stderr.startswith("profviz: no request with id 999")


def test_attached_process_spans_over_otlp_join_samples_by_thread_and_time(tmp_path):
    store_path = tmp_path / "store.db"
    server = subprocess.Popen([PROFVIZ, "serve", "--port", "0", "--store", str(store_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    service = None
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), server.stderr.read()
        service = subprocess.Popen([sys.executable, str(TARGETS / "otel_service.py"), f"{url}v1/traces", "30"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = service.stdout.readline().split()
        assert ready[0] == "ready"
        attach = subprocess.run([PROFVIZ, "attach", ready[1], "--duration", "2", "--store", str(store_path), "--json"],
                                capture_output=True, text=True, timeout=90)
        assert attach.returncode == 0, attach.stderr
        profile_id = json.loads(attach.stdout)["profile_id"]
        service.communicate("stop\n", timeout=60)
        assert service.returncode == 0
        store = open_store(store_path)
        profile = store.load_profile(profile_id)
        spans, skipped = spans_for_profile(store, profile)
        assert skipped == 0 and all(not s.approximate for s in spans)
        assert {s.attributes.get("service.name") for s in spans} == {"otel-service"}
        join = join_spans(profile, spans)
        first, last = profile.time_range_ns
        inside = [i for i, s in enumerate(spans) if s.start_ns >= first and s.end_ns <= last]
        assert len(inside) >= 10
        for i in inside:
            assert join.covered_ns[i] >= 0.8 * join.duration_ns[i], (spans[i].name, join.covered_ns[i], join.duration_ns[i])
        cols = profile.columns()
        owned = join.owner >= 0
        span_tid = np.array([profile.threads[s.thread].tid for s in spans])
        sample_tid = np.array([t.tid for t in profile.threads])[cols["thread"]]
        assert (span_tid[join.owner[owned]] == sample_tid[owned]).all()
        expected = {"crunch": "burn_cpu", "nap": "take_nap"}
        right = total = 0
        for name, function in expected.items():
            for i in (i for i in inside if spans[i].name == name):
                tree = span_flame_tree(join, index=i)
                stats = {f.function: f.total_ns for f in function_stats(tree)}
                right += stats.get(function, 0)
                total += tree.root_total_ns
        assert total > 0 and right >= 0.7 * total
        cli = subprocess.run([PROFVIZ, "spans", str(profile_id), "--store", str(store_path), "--json"],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        rows = json.loads(cli.stdout)["spans"]
        assert {r["name"] for r in rows} == {"job", "crunch", "nap"}
        crunch_cpu = sum(r["cpu_s"] for r in rows if r["name"] == "crunch")
        nap_cpu = sum(r["cpu_s"] for r in rows if r["name"] == "nap")
        assert crunch_cpu > 2 * nap_cpu
    finally:
        for process in (service, server):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


def test_span_api_endpoints_serve_listing_waterfall_lanes_and_span_flame_graphs(flask_run):
    import requests as http

    from profviz.server import create_app
    from profviz.server.runner import RunningServer

    store, request_id, result = flask_run
    profile_id = int(store.request_by_id(request_id).profile_id)
    with RunningServer(create_app(store.path), "127.0.0.1", 0) as running:
        api = f"{running.url}api"
        by_request = http.get(f"{api}/requests/{request_id}/spans", timeout=30).json()
        by_profile = http.get(f"{api}/profiles/{profile_id}/spans", timeout=30).json()
        assert by_request["spans"] == by_profile["spans"] and by_request["request"]["id"] == request_id
        origin = int(by_profile["origin_ns"])
        rows = {r["name"]: r for r in by_profile["spans"]}
        assert rows["(no span)"]["intervals"][0][0] >= 0 and rows["GET"]["start_ns"] < 10**12
        assert rows["GET"]["start_ms"] == pytest.approx((origin + rows["GET"]["start_ns"]) / 1e6, abs=1e-3)

        view = http.get(f"{api}/profiles/{profile_id}/correlation", timeout=30).json()
        assert [s["name"] for s in view["spans"]] == [r["name"] for r in by_profile["spans"][:-1]]
        depths = {s["name"]: s["depth"] for s in view["spans"]}
        assert depths.pop("GET /report") == 0 and set(depths.values()) == {1}, "the server span parents the calls"
        assert view["no_span"]["name"] == "(no span)"
        (lane,) = view["lanes"]
        assert lane["tid"] == result["tid"] and set(lane["state"]) <= {"cpu", "waiting", "runnable", "gil", "unknown"}
        assert lane["start_ns"][0] >= view["window"]["start_ns"] and lane["end_ns"][-1] <= view["window"]["end_ns"]

        query = next(s for s in view["spans"] if s["attributes"].get("db.system") == "sqlite")
        flame = http.get(f"{api}/profiles/{profile_id}/span-flamegraph", params={"span_id": query["span_id"]}, timeout=30).json()
        names = {f["name"] for f in flame["functions"]}
        assert "run_slow_query" in names and "log_audit" not in names
        assert flame["root_total_ns"] == pytest.approx(sum(n["self_ns"] for n in flame["nodes"]), rel=0.01)
        gap = http.get(f"{api}/profiles/{profile_id}/span-flamegraph", params={"no_span": 1}, timeout=30).json()
        assert "BlockingSocketLogHandler.emit" in {f["name"] for f in gap["functions"]}
        by_name = http.get(f"{api}/profiles/{profile_id}/span-flamegraph", params={"name": "GET", "children": 1},
                           timeout=30).json()
        assert "call_inventory" in {f["name"] for f in by_name["functions"]}

        for url, status in (
            (f"{api}/profiles/{profile_id}/span-flamegraph", 400),
            (f"{api}/profiles/{profile_id}/span-flamegraph?span_id=00000000deadbeef", 404),
            (f"{api}/profiles/{profile_id}/spans?offset_ns=notanumber", 400),
            (f"{api}/requests/999/spans", 404),
            (f"{api}/requests/abc/spans", 404),
            (f"{api}/spans?trace_id=xyz", 400),
        ):
            response = http.get(url, timeout=30)
            assert response.status_code == status, (url, response.text)
            assert response.json()["error"]["message"]
        listing = http.get(f"{api}/spans", params={"trace_id": query["trace_id"]}, timeout=30).json()
        by_id = {s["span_id"]: s["name"] for s in view["spans"]}
        assert sorted(s["span_id"] for s in listing["spans"]) == sorted(by_id)  # one trace: the server span and its calls
        assert all(s["tid"] == result["tid"] and s["source"] == "processor" for s in listing["spans"])
