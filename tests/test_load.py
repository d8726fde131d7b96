"""Latency against load (profviz/analysis/load.py): the curve by utilisation at arrival and by
throughput, the knee and the headroom; on synthetic columns, and under a real step load behind
nginx and gunicorn, where the saturation finding names the busy window."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from profviz.analysis.load import KNEE_FACTOR, in_flight_at_arrival, load_curve

from .browser_fixtures import browser_context, page  # noqa: F401 - pytest fixtures
from .proxied_server import nginx_and_gunicorn

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000
T0 = 1_764_000_000 * 10**9


def columns_of(rows: list[tuple[int, int, int | None]], capacity: int = 4, route: str = "/s") -> dict[str, list]:
    """(start_ns, duration_ns, queue_ns) rows as request columns on ``capacity`` worker threads."""
    return {"pid": [1] * len(rows), "tid": [i % capacity for i in range(len(rows))], "route": [route] * len(rows),
            "method": ["GET"] * len(rows), "start_ns": [r[0] for r in rows], "duration_ns": [r[1] for r in rows],
            "queue_ns": [r[2] for r in rows], "capacity": [capacity] * len(rows)}


def test_in_flight_at_arrival_counts_queued_and_served_requests_and_itself():
    columns = columns_of([(T0, 100 * MS, None), (T0 + 10 * MS, 150 * MS, None), (T0 + 150 * MS, 10 * MS, 30 * MS),
                          (T0 + 300 * MS, 10 * MS, None)])
    assert in_flight_at_arrival(columns).tolist() == [1, 2, 2, 1]  # the third arrived at +120 ms, while the second ran


def step_load(steps: tuple[int, ...], capacity: int = 4, service_ms: int = 40, per_step: int = 40) -> dict[str, list]:
    """A server of ``capacity`` workers taking ``service_ms`` a request, under ``clients`` closed-loop
    clients per step: beyond the capacity, requests queue (a proxy stamped their queue time)."""
    rows, now = [], T0
    for clients in steps:
        queue = max(0, clients - capacity) * service_ms * MS // capacity
        for _ in range(per_step):
            for _ in range(clients):
                rows.append((now + queue, service_ms * MS, queue))
            now += (service_ms * MS + queue) if clients >= capacity else service_ms * MS
    return columns_of(rows, capacity)


def test_a_step_load_past_capacity_has_its_knee_where_requests_queue_and_the_headroom_at_its_peak():
    curve = load_curve(step_load((1, 2, 3, 4, 8)), "total")
    assert curve.capacity == 4 and curve.capacity_source == "configured"
    assert curve.baseline_p99_ms == pytest.approx(40)
    assert curve.knee is not None and curve.knee >= 1.0 and curve.knee_p99_ms >= KNEE_FACTOR * curve.baseline_p99_ms
    below = [level for level in curve.levels if level.low < curve.knee]
    assert below and all(level.p99_ms < KNEE_FACTOR * curve.baseline_p99_ms for level in below)
    assert curve.peak_utilisation == pytest.approx(1.0, abs=0.05) and curve.headroom == pytest.approx(0.0, abs=0.05)
    assert sum(level.requests for level in curve.levels) == curve.requests == sum(t.requests for t in curve.throughput)
    app = load_curve(step_load((1, 2, 3, 4, 8)), "app")
    assert app.knee is None, "the app's own time never grew: only the queue did"


def test_a_service_that_never_saturates_has_no_knee_and_its_headroom():
    curve = load_curve(step_load((1, 2)), "total")
    assert curve.knee is None and curve.traffic_to_knee is None
    assert curve.peak_utilisation == pytest.approx(0.5, abs=0.05) and curve.headroom == pytest.approx(0.5, abs=0.05)


def test_one_routes_curve_is_its_latency_against_the_whole_services_load():
    busy = step_load((1, 8))
    other = columns_of([(T0 + i * 40 * MS, 5 * MS, None) for i in range(40)], route="/other")
    merged = {key: busy[key] + other[key] for key in busy}
    curve = load_curve(merged, "total", route="/other", method="GET")
    assert curve.route == "/other" and curve.requests == 40
    assert max(level.low for level in curve.levels) >= 0.25, "the /s requests in flight count in its load"
    assert load_curve(merged, "total", route="/missing").requests == 0


@pytest.fixture(scope="module")
def stepped(tmp_path_factory) -> tuple[Path, dict[int, float]]:
    """gunicorn (1 worker x 4 threads) behind nginx; /slow sleeps 40 ms. Closed-loop clients step
    1, 2, 3, 4, 6, 8, 12 (2 s each): past 4 the requests queue. (The store, when each step began.)"""
    store = tmp_path_factory.mktemp("stepped") / "store.db"
    env = {"QUEUE_APP_STORE": str(store), "QUEUE_APP_THREADS": "4", "PYTHONPATH": f"{ROOT}"}
    step_started = {}
    with nginx_and_gunicorn("tests.targets.queue_app:app", workers=1, threads=4, env=env, cwd=ROOT) as proxied:
        def client(until: float) -> int:
            sent = 0
            with requests.Session() as session:
                while time.monotonic() < until:
                    assert session.get(proxied.url + "/slow", timeout=30).status_code == 200
                    sent += 1
            return sent

        for clients in (1, 2, 3, 4, 6, 8, 12):
            step_started[clients] = time.time()
            until = time.monotonic() + 2.0
            with ThreadPoolExecutor(clients) as pool:
                assert sum(pool.map(client, [until] * clients)) > 0
    return store, step_started


def test_a_step_load_behind_nginx_and_gunicorn_shows_the_knee_and_the_saturation_window(stepped):
    """The curve's P99 stays flat below full utilisation and departs at the knee, where requests
    queue; the saturation finding's window starts with the busy steps."""
    store, step_started = stepped
    result = subprocess.run([sys.executable, "-m", "profviz", "routes", "--load", "--route", "/slow", "--json", "--store", str(store)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    curve = json.loads(result.stdout)
    levels = [(level["low"], level["requests"], level["p95_ms"], level["p99_ms"]) for level in curve["levels"]]
    assert curve["latency"] == "total" and curve["capacity"] == 4, curve
    assert curve["baseline_p99_ms"] < 60, levels
    assert curve["knee"] is not None and 0.9 <= curve["knee"] <= 2.0, levels
    # flat below full utilisation (P95: the first request after start-up is slow, and a band's P99 may be it)
    assert all(p95 < KNEE_FACTOR * curve["baseline_p99_ms"] for low, _, p95, _ in levels if low < 0.9), levels
    assert curve["peak_utilisation"] >= 0.9 and curve["headroom"] <= 0.1, curve
    text = subprocess.run([sys.executable, "-m", "profviz", "routes", "--load", "--store", str(store)],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "<- knee" in text.stdout and "headroom" in text.stdout, text.stdout + text.stderr
    findings = json.loads(subprocess.run([sys.executable, "-m", "profviz", "findings", "--json", "--route", "/slow", "--store", str(store)],
                                         capture_output=True, text=True, timeout=120).stdout)["findings"]
    (saturation,) = [f for f in findings if f["kind"] == "saturation"]
    window = saturation["evidence"]["window"]
    assert step_started[3] - 0.5 <= window["start"] <= step_started[6] + 1.0, (window, step_started)
    assert saturation["evidence"]["p95_busy_ms"] >= 1.5 * saturation["evidence"]["p95_calm_ms"]


@pytest.mark.browser
def test_the_routes_page_draws_the_curve_with_its_knee(stepped, page):
    """The routes page's load chart: a point per band, the knee rule where the CLI puts it, and
    the note naming the knee and the headroom. PROFVIZ_SCREENSHOTS saves the README's load.png."""
    from profviz.store import open_store

    from .browser_support import running_server
    from .test_demo_browser import screenshot

    store, _ = stepped
    curve = json.loads(subprocess.run([sys.executable, "-m", "profviz", "routes", "--load", "--json", "--store", str(store)],
                                      capture_output=True, text=True, timeout=120).stdout)
    opened = open_store(store)
    with running_server(opened) as url:
        page.goto(f"{url}/routes")
        page.wait_for_selector("#routes-load[data-points]:not([data-points='0'])")
        assert int(page.get_attribute("#routes-load", "data-points")) == len(curve["levels"])
        assert float(page.get_attribute("#routes-load", "data-knee")) == curve["knee"]
        assert page.locator("#routes-load line.mark.knee").count() == 1
        note = page.inner_text("#routes-load-note")
        assert f"Knee at {round(curve['knee'] * 100)}% busy" in note and "headroom" in note, note
        page.locator("#routes-load").scroll_into_view_if_needed()
        screenshot(page, "load.png")
    opened.close()
