"""Each finding kind on an app built for it (tests/targets/findings_apps.py): real PostgreSQL,
psycopg_pool, SQLAlchemy's ORM, httpx against a real item service, a synchronous HTTP log handler;
served by waitress with 8 concurrent clients. The route's top finding has the kind its bottleneck
is, with the right evidence; its near miss beside it has no finding of that kind."""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from .postgres_cluster import PASSWORD

TARGET = Path(__file__).parent / "targets" / "findings_apps.py"
REQUESTS_PER_ROUTE = 24
CLIENTS = 8
EXPECTED = {
    "GET /report/per-query": "connection_setup",
    "GET /tiny-pool": "pool_wait",
    "GET /search/scan": "full_scan",
    "GET /orm/lazy": "n_plus_one_query",
    "GET /django/lazy": "n_plus_one_query",
    "GET /items/per-item": "repeated_remote_call",
    "GET /log/sync": "sync_logging",
    "GET /lock/contended": "lock_contention",
    "GET /cpu/hot": "cpu_hotspot",
    "GET /json/encode": "serialization",
    "GET /query/slow": "slow_query",
}
NEAR_MISSES = {
    "GET /report/pooled": ("connection_setup", "pool_wait"),
    "GET /search/indexed": ("full_scan", "slow_query"),
    "GET /orm/eager": ("n_plus_one_query",),
    "GET /django/eager": ("n_plus_one_query",),
    "GET /items/batch": ("repeated_remote_call",),
    "GET /log/queued": ("sync_logging",),
    "GET /lock/uncontended": ("lock_contention",),
    "GET /cpu/light": ("cpu_hotspot",),
    "GET /json/small": ("serialization", "large_payload"),
    "GET /query/fast": ("slow_query", "full_scan"),
}


@contextlib.contextmanager
def running_app(postgres, store: Path):
    """The findings app serving into ``store``; yields its URL. On exit it is told to stop (stdin
    closes), flushes everything into the store and must exit cleanly."""
    app = subprocess.Popen([sys.executable, str(TARGET), str(store), postgres.dsn()], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([app.stdout], [], [], 120)
        assert ready, "the findings app did not start within 120 s"
        yield json.loads(app.stdout.readline())["url"]
        app.stdin.close()
        assert app.wait(timeout=120) == 0
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()


@pytest.fixture(scope="module")
def app_run(postgres, tmp_path_factory):
    """(findings of the whole run, store path) after driving every route of the app."""
    store = tmp_path_factory.mktemp("findings_apps") / "store.db"
    with running_app(postgres, store) as url:
        paths = [route.split(" ", 1)[1] for route in [*EXPECTED, *NEAR_MISSES]]
        with requests.Session() as warm:
            for path in paths:
                assert warm.get(url + path, timeout=30).status_code == 200, path

        def fetch(path: str) -> int:
            return requests.get(url + path, timeout=60).status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            for path in paths:  # one route at a time, 8 clients at once: each route sees concurrency
                assert set(pool.map(fetch, [path] * REQUESTS_PER_ROUTE)) == {200}, path
    result = subprocess.run([sys.executable, "-m", "profviz", "findings", "--json", "--limit", "200", "--store", str(store),
                             "--explain-dsn", postgres.dsn()], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["findings"], store


def top_of(findings: list[dict]) -> dict[str, dict]:
    top = {}
    for finding in findings:
        top.setdefault(finding["route"], finding)
    return top


def test_each_routes_top_finding_is_its_bottleneck(app_run):
    findings, _ = app_run
    top = top_of(findings)
    assert {route: top.get(route, {}).get("kind") for route in EXPECTED} == EXPECTED, [(f["route"], f["kind"]) for f in findings]


def test_near_misses_produce_no_finding_of_that_kind(app_run):
    findings, _ = app_run
    for route, kinds in NEAR_MISSES.items():
        wrong = [(f["kind"], f["title"], f["impact_ms"], f["requests"]) for f in findings if f["route"] == route and f["kind"] in kinds]
        assert not wrong, (route, wrong)


def test_the_evidence_names_the_statement_call_and_call_site(app_run):
    top = top_of(app_run[0])
    connect = top["GET /report/per-query"]["evidence"]
    assert connect["call_site"]["function"] == "create_app.<locals>.report_per_query"
    pool = top["GET /tiny-pool"]
    assert pool["evidence"]["pool"] == "ConnectionPool" and pool["evidence"]["call_site"]["function"] == "create_app.<locals>.tiny"
    scan = top["GET /search/scan"]
    assert "Seq Scan on items" in scan["evidence"]["plan"] and scan["evidence"]["filter_columns"] == ["note"]
    assert scan["fix"].startswith("CREATE INDEX items_note ON items (note);")
    lazy = top["GET /orm/lazy"]
    assert "FROM authors" in lazy["evidence"]["statement"] and lazy["evidence"]["count_per_request"] >= 5
    assert "selectinload" in lazy["fix"] and lazy["evidence"]["call_site"]["function"].startswith("create_app.<locals>.orm_lazy")
    django = top["GET /django/lazy"]
    assert "FROM \"authors\"" in django["evidence"]["statement"] and "select_related" in django["fix"]
    assert django["evidence"]["call_site"]["function"].startswith("create_app.<locals>.django_lazy")
    calls = top["GET /items/per-item"]["evidence"]
    assert calls["url"].endswith("/items/{id}") and calls["count_per_request"] == 10
    assert calls["call_site"]["function"].startswith("create_app.<locals>.items_per_item")
    lock = top["GET /lock/contended"]["evidence"]["call_site"]
    assert lock["function"] == "create_app.<locals>.lock_contended" and lock["file"].endswith("findings_apps.py")
    assert top["GET /cpu/hot"]["evidence"]["function"] == "checksum"
    logging_ = top["GET /log/sync"]["evidence"]
    assert logging_["handler"] == "HTTPHandler" and logging_["call_site"]["function"] == "create_app.<locals>.log_sync"


def test_no_password_reaches_the_store(app_run):
    _, store = app_run
    for path in store.parent.glob(store.name + "*"):
        assert PASSWORD.encode() not in path.read_bytes(), path


def test_latency_rising_with_busy_workers_is_named_saturation_with_its_window(postgres, tmp_path):
    """/saturate (50 ms asleep, then about 30 ms of CPU) from one client, then from sixteen (more
    than the eight workers, so all of them stay busy): their CPU work competes for the GIL and its P95
    rises; the finding names the busy window and both P95s."""
    import time

    store = tmp_path / "store.db"
    with running_app(postgres, store) as url:
        with requests.Session() as one_client:
            calm_until = time.monotonic() + 4
            while time.monotonic() < calm_until:
                assert one_client.get(url + "/saturate", timeout=30).status_code == 200
        busy_from = time.time()

        def client(_: int) -> None:
            with requests.Session() as session:
                until = time.monotonic() + 4
                while time.monotonic() < until:
                    assert session.get(url + "/saturate", timeout=30).status_code == 200

        with ThreadPoolExecutor(2 * CLIENTS) as pool:
            list(pool.map(client, range(2 * CLIENTS)))
    result = subprocess.run([sys.executable, "-m", "profviz", "findings", "--json", "--route", "/saturate", "--store", str(store)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert findings and findings[0]["kind"] == "saturation", [(f["kind"], f["impact_ms"]) for f in findings]
    found = findings[0]
    evidence = found["evidence"]
    assert evidence["capacity"] == 8 and evidence["capacity_source"] == "configured"
    assert evidence["p95_busy_ms"] >= 1.5 * evidence["p95_calm_ms"]
    assert busy_from - 1.5 <= evidence["window"]["start"] <= busy_from + 1.5, (evidence["window"], busy_from)
    assert found["requests"] > 20 and found["impact_ms"] > 0


def test_the_ui_api_reads_postgresql_plans_through_the_same_setting(app_run, postgres, monkeypatch):
    from profviz.server import create_app

    _, store = app_run
    monkeypatch.setenv("PROFVIZ_EXPLAIN_DSN", postgres.dsn())
    body = create_app(str(store)).test_client().get("/api/findings?route=/search/scan").get_json()
    (scan,) = [f for f in body["findings"] if f["kind"] == "full_scan"]
    assert "Seq Scan on items" in scan["evidence"]["plan"] and body["notes"] == []
    monkeypatch.setenv("PROFVIZ_EXPLAIN_DSN", postgres.dsn(password="wrong-pw"))
    body = create_app(str(store)).test_client().get("/api/findings?route=/search/scan").get_json()
    assert not [f for f in body["findings"] if f["kind"] == "full_scan"]  # no plan: the scan cannot be told
    (note,) = body["notes"]
    assert note.startswith("cannot connect to postgresql://shop:***@127.0.0.1:") and "wrong-pw" not in note


def test_a_route_waiting_for_the_gil_while_another_computes_is_gil_contention(postgres, tmp_path):
    """/gil/victim (short sleeps, little CPU of its own) served while /cpu/hot keeps other workers
    computing: after each sleep it waits to take the GIL back, and that is its top finding."""
    import threading

    store = tmp_path / "store.db"
    with running_app(postgres, store) as url:
        stop = threading.Event()

        def compute() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    session.get(url + "/cpu/hot", timeout=60)

        computing = [threading.Thread(target=compute) for _ in range(4)]
        for thread in computing:
            thread.start()
        try:
            with requests.Session() as session:
                for _ in range(REQUESTS_PER_ROUTE):
                    assert session.get(url + "/gil/victim", timeout=60).status_code == 200
        finally:
            stop.set()
            for thread in computing:
                thread.join(60)
    result = subprocess.run([sys.executable, "-m", "profviz", "findings", "--json", "--route", "/gil/victim", "--store", str(store)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert findings and findings[0]["kind"] == "gil_contention", [(f["kind"], f["title"]) for f in findings]
    assert findings[0]["evidence"]["call_site"]["function"] == "create_app.<locals>.gil_victim"
    assert not [f for f in findings if f["kind"] in ("lock_contention", "cpu_hotspot")]
