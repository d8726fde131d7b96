"""Findings: the registry, each detector on made-up windows with its near misses, and the demo shop,
where every seeded bottleneck must be the top finding of its route."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from profviz.analysis.findings import KINDS, Finding, Thresholds, Window, run_detectors
from profviz.analysis.findings.logging_io import sync_logging
from profviz.analysis.findings.remote_calls import repeated_remote_calls
from profviz.analysis.findings.repeated_queries import repeated_queries
from profviz.analysis.findings.serialization import serialization
from profviz.model import Profile, RequestRow, Span, State
from profviz.store import open_store

MS = 1_000_000
T0 = 1_764_000_000_000_000_000
LOGGING = "/usr/lib/python3.11/logging/__init__.py"
APP = "/srv/app/views.py"


def finding(kind: str, route: str, impact_ms: float) -> Finding:
    return Finding(kind, route, f"{kind} on {route}", 3, impact_ms, 0.5, 0.2, {"count": 3}, "fix it")


def test_findings_of_every_detector_come_largest_impact_first():
    detectors = [
        lambda window, limits: [finding("slow_query", "/a", 12.0), finding("cpu_hotspot", "/b", 40.0)],
        lambda window, limits: [finding("n_plus_one_query", "/a", 25.0)],
        lambda window, limits: [],
    ]
    found = run_detectors(Window(), detectors=detectors)
    assert [(f.kind, f.impact_ms) for f in found] == [("cpu_hotspot", 40.0), ("n_plus_one_query", 25.0), ("slow_query", 12.0)]
    assert run_detectors(Window(), detectors=[]) == []
    behind = Finding("gil_contention", "/a", "waits for the GIL", 3, 90.0, 0.5, 0.2, {"computing_routes": [{"route": "GET /b", "cpu_ms": 5.0}]}, "fix")
    own = Finding("gil_contention", "/c", "waits for the GIL", 3, 80.0, 0.5, 0.2, {"computing_routes": []}, "fix")
    ordered = run_detectors(Window(), detectors=detectors + [lambda window, limits: [behind, own]])
    assert [(f.kind, f.route) for f in ordered][0] == ("gil_contention", "/c") and ordered[-1] is behind  # its fix is on /b


def test_the_vocabulary_is_closed_and_thresholds_name_unknown_keys():
    assert len(set(KINDS)) == 14 and "n_plus_one_query" in KINDS and "event_loop_blocked" in KINDS
    with pytest.raises(ValueError, match="not one of"):
        finding("slow_endpoint", "/a", 1.0)
    assert Thresholds.from_dict({"repeat_min_count": "3"}).repeat_min_count == 3
    with pytest.raises(ValueError, match="unknown finding threshold 'repeats'"):
        Thresholds.from_dict({"repeats": 3})


def test_an_empty_window_finds_nothing():
    assert run_detectors(Window()) == []


# -- made-up windows ------------------------------------------------------------------------


class Traffic:
    """Requests of one route on one thread, each with the spans a callback gives it."""

    def __init__(self, route: str = "/feed"):
        self.route, self.requests, self.spans, self.profiles = route, [], [], {}

    def request(self, duration_ms: float, spans=(), response_bytes: int = 100, profile: Profile | None = None) -> int:
        start = T0 + len(self.requests) * 1_000 * MS
        request_id = len(self.requests) + 1
        profile_id = None
        if profile is not None:
            profile_id = 100 + request_id
            self.profiles[profile_id] = profile
        cpu_ns = 0
        if profile is not None and profile.sample_count:  # the thread CPU time the middleware measures: the CPU samples'
            columns = profile.columns()
            cpu_ns = int(columns["weight_ns"][columns["state"] == int(State.ON_CPU)].sum())
        self.requests.append(RequestRow(pid=1, tid=2, route=self.route, method="GET", path=self.route, status=200,
                                        start_ns=start, duration_ns=int(duration_ms * MS), cpu_ns=cpu_ns,
                                        response_bytes=response_bytes, profile_id=profile_id, id=request_id))
        offset = start + MS
        for index, (attributes, length_ms) in enumerate(spans):
            span_id = f"{request_id:08x}{index:08x}"
            self.spans.append(Span("ab" * 16, span_id, None, "span", "client", "ok", offset, offset + int(length_ms * MS),
                                   attributes=attributes, pid=1, tid=2))
            offset += int(length_ms * MS) + 10_000
        return request_id

    def window(self) -> Window:
        return Window(requests=self.requests, profiles=self.profiles, spans=self.spans)


def query(sql: str) -> dict:
    return {"db.system": "postgresql", "db.statement": sql}


def get(url: str) -> dict:
    return {"http.method": "GET", "http.url": url}


def test_the_same_query_per_item_is_an_n_plus_one_with_its_statement():
    traffic = Traffic()
    for item in range(6):
        traffic.request(80, [(query("SELECT * FROM posts LIMIT 20"), 2)]
                        + [(query(f"SELECT name FROM authors WHERE id = {i}"), 2.5) for i in range(20)])
    (found,) = repeated_queries(traffic.window(), Thresholds())
    assert found.kind == "n_plus_one_query" and found.route == "GET /feed"
    assert found.evidence["statement"] == "SELECT name FROM authors WHERE id = ?" and found.evidence["count_per_request"] == 20
    assert found.title == "GET /feed runs the same SELECT on `authors` 20 times per request"
    assert found.impact_ms == pytest.approx(20 * 2.5 * 19 / 20) and found.requests == 6
    assert "JOIN" in found.fix and "IN (...)" in found.fix


@pytest.mark.parametrize("spans", [
    [(query(f"SELECT * FROM t{i} WHERE id = 1"), 5) for i in range(8)],  # a handful of distinct queries
    [(query("SELECT name FROM authors WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)"), 12)],  # one bulk IN query
    [(query("SELECT name FROM authors WHERE id = ?"), 0.2) for _ in range(8)],  # repeated, but 1.6 ms in all
])
def test_near_misses_are_not_n_plus_one(spans):
    traffic = Traffic()
    for _ in range(6):
        traffic.request(60, spans)
    assert repeated_queries(traffic.window(), Thresholds()) == []


def test_one_call_per_item_to_the_same_endpoint_is_a_repeated_remote_call_and_one_call_is_not():
    traffic = Traffic("/enrich")
    for _ in range(5):
        traffic.request(120, [(get(f"http://inventory:8080/items/{i}?full=1"), 9) for i in range(12)])
    (found,) = repeated_remote_calls(traffic.window(), Thresholds())
    assert found.evidence["url"] == "inventory:8080/items/{id}" and found.evidence["count_per_request"] == 12
    single = Traffic("/enrich")
    for _ in range(5):
        single.request(30, [(get("http://inventory:8080/items/batch"), 25)])
    assert repeated_remote_calls(single.window(), Thresholds()) == []


def test_a_logging_handlers_own_calls_are_not_the_apps_repeated_remote_calls():
    """The POSTs a synchronous log handler makes are sync_logging's evidence, not a finding of their own."""
    traffic = Traffic("/checkout")
    for _ in range(4):
        request = traffic.request(120, [({"http.method": "POST", "http.url": "http://logs:9000/log"}, 15) for _ in range(6)])
        first = traffic.requests[-1].start_ns
        row = traffic.requests[-1]
        row.profile_id = 500 + request
        traffic.profiles[row.profile_id] = profile_with(
            [([("checkout", APP), ("Logger.info", LOGGING), ("Logger.callHandlers", LOGGING), ("HTTPLogHandler.emit", "/srv/app/log.py")],
              State.WAITING, 100, "socket recv 10.0.0.9:9000")], start_ns=first + 1 * MS)
    assert repeated_remote_calls(traffic.window(), Thresholds()) == []


def profile_with(stacks: list[tuple[list[tuple[str, str]], State, float, str | None]], start_ns: int = T0) -> Profile:
    """A one-thread profile: each entry is (frames root first as (function, file), state, ms, reason)."""
    profile = Profile({"kind": "request"})
    thread = profile.add_thread(1, 2, "worker")
    now = start_ns
    for frames, state, ms, reason in stacks:
        stack = profile.intern_frames([(function, file, 1) for function, file in frames])
        profile.append_sample(now, thread, stack, int(ms * MS), state, reason)
        now += int(ms * MS)
    return profile



def test_a_handler_doing_network_io_on_the_request_thread_is_sync_logging_and_a_queue_handler_is_not():
    def logging_call(handler: str, state: State, reason: str | None):
        return [("view", APP), ("Logger.info", LOGGING), ("Logger.callHandlers", LOGGING), ("Handler.handle", LOGGING),
                (f"{handler}.emit", "/srv/app/log.py" if handler != "QueueHandler" else "/usr/lib/python3.11/logging/handlers.py")]

    slow, queued = Traffic("/checkout"), Traffic("/checkout")
    for _ in range(4):
        slow.request(100, profile=profile_with([
            ([("view", APP)], State.ON_CPU, 10, None),
            (logging_call("HTTPLogHandler", State.WAITING, None), State.WAITING, 60, "socket recv 10.0.0.9:514"),
            ([("view", APP), ("Logger.info", LOGGING), ("Logger.callHandlers", LOGGING), ("Handler.handle", LOGGING),
              ("Handler.acquire", LOGGING)], State.WAITING, 30, "lock (futex)"),
        ]))
        queued.request(12, profile=profile_with([
            ([("view", APP)], State.ON_CPU, 10, None),
            (logging_call("QueueHandler", State.ON_CPU, None), State.ON_CPU, 0.5, None),
        ]))
    (found,) = sync_logging(slow.window(), Thresholds())
    assert found.evidence["handler"] == "HTTPLogHandler" and found.impact_ms == pytest.approx(90)
    assert found.evidence["call_site"] == {"function": "view", "file": APP, "line": 1} and "QueueHandler" in found.fix
    assert [e["request"] for e in found.evidence["examples"]] == [1, 2, 3] and found.evidence["examples"][0]["profile"] == 101
    assert found.evidence["waits"] == {"socket recv 10.0.0.9:514": 240.0, "lock (futex)": 120.0}
    assert sync_logging(queued.window(), Thresholds()) == []


def test_json_encoding_cpu_is_serialization_and_a_small_response_is_not():
    encoder = "/usr/lib/python3.11/json/encoder.py"
    big, small = Traffic("/export"), Traffic("/item")
    for _ in range(4):
        big.request(200, response_bytes=5_000_000, profile=profile_with([
            ([("export", APP), ("JSONEncoder.encode", encoder), ("JSONEncoder.iterencode", encoder)], State.ON_CPU, 150, None),
            ([("export", APP)], State.WAITING, 50, "socket recv db:5432"),
        ]))
        small.request(20, response_bytes=800, profile=profile_with([
            ([("item", APP), ("JSONEncoder.encode", encoder)], State.ON_CPU, 0.3, None),
            ([("item", APP)], State.WAITING, 19.7, "socket recv db:5432"),
        ]))
    (found,) = serialization(big.window(), Thresholds())
    assert found.impact_ms == pytest.approx(150) and "5.0 MB" in found.title and found.evidence["call_site"]["function"] == "export"
    assert serialization(small.window(), Thresholds()) == []


# -- the demo shop ----------------------------------------------------------------------------

SEEDED = {  # route -> the kind of its seeded bottleneck (samples/profviz_shop/app.py)
    "GET /posts": "n_plus_one_query",
    "GET /search/slow": "full_scan",
    "GET /checkout": "sync_logging",
    "GET /export": "large_payload",
    "GET /report": "connection_setup",
    "GET /enrich": "repeated_remote_call",
}
FIXED_TWINS = {"GET /posts/fast": "n_plus_one_query", "GET /search/fast": "full_scan", "GET /report/fast": "connection_setup"}


@pytest.fixture(scope="module")
def demo_findings(demo_run):
    store_path, summary, stdout = demo_run
    result = subprocess.run([sys.executable, "-m", "profviz", "findings", "--json", "--limit", "100", "--store", str(store_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["findings"], summary, stdout


def test_every_seeded_bottleneck_is_the_top_finding_of_its_route(demo_findings):
    findings, _, _ = demo_findings
    elsewhere = [f["kind"] == "gil_contention" and bool(f["evidence"].get("computing_routes")) for f in findings]
    assert elsewhere == sorted(elsewhere), "findings caused by other routes come last"
    for part in (False, True):
        impacts = [f["impact_ms"] for f, other in zip(findings, elsewhere) if other is part]
        assert impacts == sorted(impacts, reverse=True)
    top = {}
    for f in findings:
        top.setdefault(f["route"], f)
    assert {route: top[route]["kind"] for route in SEEDED if route in top} == SEEDED, [(f["route"], f["kind"]) for f in findings]
    for route, kind in FIXED_TWINS.items():
        assert not [f for f in findings if f["route"] == route and f["kind"] == kind], route
    # the light routes have no bottleneck of their own; they may wait for the GIL while the heavy
    # routes compute beside them (true of a loaded box), which gil_contention then says
    assert not [f for f in findings if f["route"] in ("GET /health", "GET /posts/<int:post_id>") and f["kind"] != "gil_contention"]
    assert all(f["evidence"]["computing_routes"] for f in findings if f["kind"] == "gil_contention"), "the demo's GIL waits are behind other routes"


def test_the_demo_findings_carry_their_evidence(demo_findings):
    findings, _, _ = demo_findings
    top = {}
    for f in findings:
        top.setdefault(f["route"], f)
    posts = top["GET /posts"]["evidence"]
    assert posts["statement"] == "SELECT id, name, email FROM authors WHERE id = ?" and posts["count_per_request"] == 50
    assert posts["call_site"]["function"] == "create_app.<locals>.recent_posts_n_plus_one"
    assert posts["call_site"]["file"].endswith("profviz_shop/app.py")
    example = posts["examples"][0]
    assert example["request"] and len(example["spans"]) == 5
    assert any(e["profile"] for e in posts["examples"]) or top["GET /posts"]["requests"] > 0
    search = top["GET /search/slow"]
    assert "SCAN posts" in search["evidence"]["plan"] and search["evidence"]["filter_columns"] == ["title"]
    assert search["fix"].startswith("CREATE INDEX posts_title ON posts (title);")
    assert top["GET /checkout"]["evidence"]["handler"] == "RemoteLogHandler"
    assert top["GET /checkout"]["evidence"]["call_site"]["function"] == "create_app.<locals>.checkout"
    assert top["GET /enrich"]["evidence"]["url"].endswith("/items/{id}") and top["GET /enrich"]["evidence"]["count_per_request"] == 10
    assert top["GET /report"]["evidence"]["call_site"]["function"] == "create_app.<locals>.report_connection_per_query"
    assert top["GET /export"]["evidence"]["response_bytes"] >= 1_000_000
    for f in findings:
        assert f["title"] and f["fix"] and f["requests"] >= 1 and 0 <= f["share"] <= 1 and 0 <= f["tail_share"] <= 1


def test_the_demo_prints_the_top_finding_of_each_route(demo_findings):
    _, summary, stdout = demo_findings
    assert "What to fix first" in stdout
    printed = {f["route"]: f["kind"] for f in summary["findings"]}
    assert {route: printed.get(route) for route in SEEDED} == SEEDED


def test_findings_of_an_unknown_route_list_the_known_ones(demo_run):
    result = subprocess.run([sys.executable, "-m", "profviz", "findings", "--route", "/nope", "--store", str(demo_run[0])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and result.stderr.startswith("profviz: no requests of route '/nope'")
    assert "/checkout" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_findings_of_one_route_and_of_a_missing_profile(demo_run):
    store_path = str(demo_run[0])
    result = subprocess.run([sys.executable, "-m", "profviz", "findings", "--route", "/posts", "--json", "--store", store_path],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert {f["route"] for f in json.loads(result.stdout)["findings"]} == {"GET /posts"}
    missing = subprocess.run([sys.executable, "-m", "profviz", "findings", "--profile", "999999", "--store", store_path],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and missing.stderr.startswith("profviz: ") and len(missing.stderr.strip().splitlines()) == 1
    assert open_store(store_path).query_requests(limit=1)


POOL = "/venv/lib/python3.11/site-packages/psycopg_pool/pool.py"
THREADING = "/usr/lib/python3.11/threading.py"


def test_a_pool_wait_is_a_blocked_checkout_and_a_gil_wait_inside_the_checkout_is_not():
    from profviz.analysis.findings.pools import pool_wait

    blocked, gil = Traffic("/orders"), Traffic("/orders")
    checkout = [("view", APP), ("ConnectionPool.connection", POOL), ("ConnectionPool.getconn", POOL)]
    for _ in range(4):
        blocked.request(80, profile=profile_with([
            (checkout + [("WaitingClient.wait", POOL), ("Condition.wait", THREADING)], State.WAITING, 60, "lock (futex)"),
            ([("view", APP)], State.ON_CPU, 20, None)]))
        gil.request(30, profile=profile_with([
            (checkout, State.WAITING, 10, "lock (futex)"),  # waiting for the GIL in the checkout's own code
            ([("view", APP)], State.ON_CPU, 20, None)]))
    (found,) = pool_wait(blocked.window(), Thresholds())
    assert found.evidence["pool"] == "ConnectionPool" and found.impact_ms == pytest.approx(60)
    assert found.evidence["call_site"]["function"] == "view"
    assert pool_wait(gil.window(), Thresholds()) == []


def test_a_lock_wait_is_at_a_line_that_takes_a_lock_and_a_gil_wait_in_a_loop_is_not(tmp_path):
    from profviz.analysis.findings.locks import lock_contention

    source = tmp_path / "app.py"
    source.write_text("def transfer():\n    with ACCOUNTS_LOCK:\n        pass\n    total = sum(range(10))\n")
    app_file = str(source)

    def at(line: int, reason: str):
        profile = Profile({"kind": "request"})
        thread = profile.add_thread(1, 2, "worker")
        stack = profile.intern_frames([("transfer", app_file, line)])
        profile.append_sample(T0, thread, stack, 40 * MS, State.WAITING, reason)
        profile.append_sample(T0 + 40 * MS, thread, stack, 10 * MS, State.ON_CPU)
        return profile

    locked, looping, sleeping = Traffic("/transfer"), Traffic("/transfer"), Traffic("/transfer")
    for _ in range(4):
        locked.request(50, profile=at(2, "lock (futex)"))
        looping.request(50, profile=at(4, "lock (futex)"))  # the GIL, while others compute
        sleeping.request(50, profile=at(2, "sleep"))
    (found,) = lock_contention(locked.window(), Thresholds())
    assert found.evidence["call_site"] == {"function": "transfer", "file": app_file, "line": 2}
    assert found.impact_ms == pytest.approx(40)
    assert lock_contention(looping.window(), Thresholds()) == []
    assert lock_contention(sleeping.window(), Thresholds()) == []


def test_one_function_computing_is_a_cpu_hotspot_and_spread_work_is_not():
    from profviz.analysis.findings.cpu_hotspot import cpu_hotspot

    hot, spread, io = Traffic("/score"), Traffic("/score"), Traffic("/score")
    for _ in range(4):
        io.request(100, profile=profile_with([  # the GIL after a socket read returned: not computing
            ([("view", APP), ("SocketIO.readinto", "/usr/lib/python3.11/socket.py")], State.WAITING, 60, "lock (futex)"),
            ([("view", APP), ("SocketIO.readinto", "/usr/lib/python3.11/socket.py")], State.ON_CPU, 10, None),
            ([("view", APP)], State.WAITING, 30, "socket recv db:5432")]))
        hot.request(100, profile=profile_with([
            ([("view", APP), ("score", "/srv/app/scoring.py")], State.ON_CPU, 40, None),
            ([("view", APP), ("score", "/srv/app/scoring.py")], State.WAITING, 40, "lock (futex)"),
            ([("view", APP)], State.WAITING, 20, "socket recv db:5432")]))
        spread.request(100, profile=profile_with(
            [([("view", APP), (f"step{i}", "/srv/app/steps.py")], State.ON_CPU, 10, None) for i in range(10)]))
    (found,) = cpu_hotspot(hot.window(), Thresholds())
    assert found.evidence["function"] == "score" and found.impact_ms == pytest.approx(80) and found.share == pytest.approx(0.8)
    assert cpu_hotspot(spread.window(), Thresholds()) == []
    assert cpu_hotspot(io.window(), Thresholds()) == []


def test_latency_rising_with_busy_workers_is_saturation_and_a_steady_route_is_not():
    from profviz.analysis.findings.saturation import saturation

    def traffic_with(busy_ms: float) -> Traffic:
        traffic = Traffic("/search")
        rows = []
        for i in range(30):  # calm: one request at a time, 20 ms every 100 ms
            rows.append((T0 + i * 100 * MS, 1, 20))
        for i in range(40):  # busy: the 4 workers always serving, busy_ms each
            for tid in range(4):
                rows.append((T0 + 3_000 * MS + i * int(busy_ms * MS), 10 + tid, busy_ms))
        for n, (start, tid, ms) in enumerate(rows, 1):
            traffic.requests.append(RequestRow(pid=1, tid=tid, route="/search", method="GET", path="/search", status=200,
                                               start_ns=start, duration_ns=int(ms * MS), labels={"capacity": 4}, id=n))
        return traffic

    (found,) = saturation(traffic_with(80).window(), Thresholds())
    assert found.kind == "saturation" and found.route == "GET /search" and found.evidence["capacity"] == 4
    assert found.evidence["p95_calm_ms"] == pytest.approx(20) and found.evidence["p95_busy_ms"] == pytest.approx(80)
    assert found.evidence["window"]["start"] == pytest.approx((T0 + 3_000 * MS) / 1e9)
    # the busy phase's last 8 requests start in the last, cut-short bucket: neither saturated nor calm
    assert found.impact_ms == pytest.approx(60) and found.requests == 152 and found.tail_share == pytest.approx(152 / 160)
    assert saturation(traffic_with(21).window(), Thresholds()) == []  # as busy, but no slower


def test_an_attach_profile_alone_gets_its_sample_based_findings(tmp_path):
    """No requests, no spans: the sample-based detectors speak about the whole profile (route null)."""
    from profviz.store import open_store as open_a_store

    profile = profile_with([
        ([("worker", APP), ("Logger.info", LOGGING), ("Logger.callHandlers", LOGGING), ("HTTPHandler.emit", "/usr/lib/python3.11/logging/handlers.py")],
         State.WAITING, 400, "socket recv 10.0.0.9:514"),
        ([("worker", APP)], State.ON_CPU, 600, None),
    ])
    profile.meta.update({"kind": "attach", "pid": 1, "start_ns": T0, "duration_ns": 1_000 * MS})
    found = run_detectors(Window(profile=profile))
    assert [(f.kind, f.route, f.share) for f in found] == [("sync_logging", None, pytest.approx(0.4))]
    assert found[0].evidence["handler"] == "HTTPHandler" and found[0].impact_ms == pytest.approx(400)
    store = open_a_store(tmp_path / "s.db")
    profile_id = store.save_profile(profile)
    store.close()
    result = subprocess.run([sys.executable, "-m", "profviz", "findings", "--profile", str(profile_id), "--json",
                             "--store", str(tmp_path / "s.db")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (cli,) = json.loads(result.stdout)["findings"]
    assert cli["kind"] == "sync_logging" and cli["route"] is None and cli["evidence"]["call_site"]["function"] == "worker"


def test_an_empty_store_and_an_unreachable_plan_database_say_so_in_one_line(tmp_path):
    import socket

    store = str(tmp_path / "empty.db")
    empty = subprocess.run([sys.executable, "-m", "profviz", "findings", "--store", store], capture_output=True, text=True, timeout=120)
    assert empty.returncode == 0 and empty.stdout.startswith("no findings in 0 requests of ")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"postgresql://shop:hunter2@127.0.0.1:{port}/shop"
    unreachable = subprocess.run([sys.executable, "-m", "profviz", "findings", "--explain-dsn", dsn, "--store", store],
                                 capture_output=True, text=True, timeout=120)
    assert unreachable.returncode != 0 and unreachable.stderr.startswith("profviz: cannot connect to postgresql://shop:***@127.0.0.1:")
    assert "hunter2" not in unreachable.stderr and len(unreachable.stderr.strip().splitlines()) == 1


def test_waiting_for_the_gil_is_gil_contention_and_a_lock_wait_is_not():
    from profviz.analysis.findings.gil import gil_contention

    contended, locked = Traffic("/score"), Traffic("/score")
    for _ in range(4):
        contended.request(60, profile=profile_with([([("view", APP), ("render", APP)], State.GIL, 40, None),
                                                    ([("view", APP), ("parse", APP)], State.ON_CPU, 20, None)]))
        locked.request(60, profile=profile_with([([("view", APP)], State.WAITING, 40, "lock (futex)"), ([("view", APP)], State.ON_CPU, 20, None)]))
    (found,) = gil_contention(contended.window(), Thresholds())
    assert found.impact_ms == pytest.approx(40) and found.evidence["call_site"]["function"] == "render" and "processes" in found.fix
    assert gil_contention(locked.window(), Thresholds()) == []
    own = Traffic("/score")  # its own hot function computes and waits for the GIL: cpu_hotspot's finding, not this one
    for _ in range(4):
        own.request(60, profile=profile_with([([("view", APP), ("score", APP)], State.GIL, 40, None),
                                              ([("view", APP), ("score", APP)], State.ON_CPU, 20, None)]))
    assert [f.kind for f in run_detectors(own.window())] == ["cpu_hotspot"]


def test_a_saturated_route_waiting_for_the_gil_behind_its_own_cpu_is_saturation_alone():
    """Four workers all serving /search, each request waiting 30 ms for the GIL while the others compute:
    the route saturates its process, and saturation (not gil_contention) names it. The same waits behind
    another route's CPU stay gil_contention's."""
    from profviz.analysis.findings.gil import cpu_beside, gil_contention, own_share
    from profviz.analysis.findings.traffic import sampled_routes
    from profviz.analysis.findings import gil

    def busy_profile() -> Profile:
        return profile_with([([("view", APP), ("render", APP)], State.GIL, 30, None),
                             ([("view", APP), ("fetch", APP)], State.WAITING, 46, "sleep"),
                             ([("view", APP), ("parse", APP)], State.ON_CPU, 4, None)])

    rows, profiles = [], {}
    for i in range(30):
        rows.append(RequestRow(pid=1, tid=1, route="/search", method="GET", path="/search", status=200,
                               start_ns=T0 + i * 100 * MS, duration_ns=20 * MS, labels={"capacity": 4}, id=len(rows) + 1))
    for i in range(40):
        for tid in range(4):
            request_id = len(rows) + 1
            profiles[1000 + request_id] = busy_profile()
            rows.append(RequestRow(pid=1, tid=10 + tid, route="/search", method="GET", path="/search", status=200,
                                   start_ns=T0 + 3_000 * MS + i * 80 * MS, duration_ns=80 * MS, cpu_ns=4 * MS,
                                   labels={"capacity": 4}, profile_id=1000 + request_id, id=request_id))
    window = Window(requests=rows, profiles=profiles)
    (hit,) = sampled_routes(window, gil.gil_waits, 5e6, 3, 0.05)
    assert own_share(cpu_beside(window, hit), "GET /search") == pytest.approx(1.0)
    found = run_detectors(window)
    assert [f.kind for f in found] == ["saturation"]

    others = rows + [RequestRow(pid=1, tid=20, route="/hot", method="GET", path="/hot", status=200, start_ns=row.start_ns,
                                duration_ns=row.duration_ns, cpu_ns=60 * MS, id=10_000 + row.id) for row in rows[30:]]
    elsewhere = Window(requests=others, profiles=profiles)
    (hit,) = sampled_routes(elsewhere, gil.gil_waits, 5e6, 3, 0.05)
    beside = cpu_beside(elsewhere, hit)
    assert own_share(beside, "GET /search") < 0.1 and max(beside, key=beside.get) == "GET /hot"
    assert [f.kind for f in gil_contention(elsewhere, Thresholds())] == ["gil_contention"]
