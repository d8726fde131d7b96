"""Queue time: the X-Request-Start / X-Queue-Start stamp a proxy adds, read by the middleware, and
total (queue + app) latency against a real nginx's own access log (profviz/middleware/queue_time.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from profviz.middleware.queue_time import queue_ns, received_ns
from profviz.store import open_store
from profviz.wsgi import ProfilerMiddleware

from .proxied_server import nginx_and_gunicorn

ROOT = Path(__file__).resolve().parent.parent
T = 1_764_000_000.123456  # epoch s


@pytest.mark.parametrize("value, expected", [
    (f"t={T:.3f}", int(round(T, 3) * 1e9)),  # nginx ${msec}
    (f"{T:.3f}", int(round(T, 3) * 1e9)),
    (f"t={int(T * 1e3)}", int(T * 1e3) * 1_000_000),  # Heroku: ms
    (f"t={int(T * 1e6)}", int(T * 1e6) * 1_000),  # HAProxy: us
    (f"{int(T * 1e9)}", int(T * 1e9)),
    ("  t=1764000000  ", 1_764_000_000 * 10**9),
])
def test_a_proxy_stamp_is_read_in_any_of_its_units(value, expected):
    assert received_ns(value) == pytest.approx(expected, abs=1_000)


@pytest.mark.parametrize("value", ["", "t=", "t=abc", "t=-5", "0", "t=1e400", "9" * 30, "t=1764000000;x", "<script>"])
def test_a_stamp_that_is_not_a_time_is_ignored(value):
    assert received_ns(value) is None
    assert queue_ns(value, int(T * 1e9)) is None


def test_clock_skew_clamps_and_a_nonsense_gap_is_dropped():
    start = int(T * 1e9)
    assert queue_ns(f"t={(start - 25_000_000) / 1e9:.6f}", start) == pytest.approx(25_000_000, abs=1_000)
    assert queue_ns(f"t={(start + 300_000_000) / 1e9:.6f}", start) == 0  # the proxy's clock a little ahead
    assert queue_ns(f"t={(start + 5 * 10**9) / 1e9:.6f}", start) is None  # far ahead: not a queue
    assert queue_ns(f"t={(start - 2 * 3600 * 10**9) / 1e9:.6f}", start) is None  # two hours: a wrong clock
    assert queue_ns(None, start) is None


def test_the_middleware_stores_the_queue_time_and_leaves_the_response_alone(tmp_path):
    def app(environ, start_response):
        time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    store = tmp_path / "s.db"
    wrapped = ProfilerMiddleware(app, store=str(store), sampler=False)
    answers = []
    for headers in ({"HTTP_X_REQUEST_START": f"t={time.time() - 0.2:.3f}"}, {"HTTP_X_QUEUE_START": f"t={int((time.time() - 0.05) * 1e6)}"},
                    {}, {"HTTP_X_REQUEST_START": "t=garbage"}):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/q", "wsgi.input": None, **headers}
        answers.append(b"".join(wrapped(environ, lambda status, headers, exc=None: None)))
    wrapped.close()
    assert answers == [b"ok"] * 4
    rows = open_store(store).query_requests()
    assert rows[0].queue_ns == pytest.approx(200e6, abs=15e6) and rows[1].queue_ns == pytest.approx(50e6, abs=15e6)
    assert rows[2].queue_ns is None and rows[3].queue_ns is None
    assert rows[0].total_ns == rows[0].duration_ns + rows[0].queue_ns


def _percentiles(values) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(values, dtype=float), [50, 95])
    return float(p50), float(p95)


def test_total_latency_behind_nginx_and_gunicorn_matches_nginx_and_app_latency_does_not(tmp_path):
    """gunicorn with 2 threads behind nginx (X-Request-Start "t=${msec}"), 8 clients: requests queue
    in gunicorn before the app. profviz's total P50/P95 per route match nginx's $request_time within
    10%; its app-only latency does not."""
    store = tmp_path / "store.db"
    env = {"QUEUE_APP_STORE": str(store), "QUEUE_APP_THREADS": "2", "PYTHONPATH": f"{ROOT}"}
    with nginx_and_gunicorn("tests.targets.queue_app:app", workers=1, threads=2, env=env, cwd=ROOT) as proxied:
        def client(index: int) -> list[int]:
            statuses = []
            with requests.Session() as session:
                for n in range(24):
                    path = "/slow" if (index + n) % 3 else "/fast"
                    statuses.append(session.get(proxied.url + path, timeout=60).status_code)
            return statuses

        with ThreadPoolExecutor(8) as pool:
            statuses = [s for chunk in pool.map(client, range(8)) for s in chunk]
        assert statuses == [200] * 192
    result = subprocess.run([sys.executable, "-m", "profviz", "routes", "--json", "--store", str(store)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    total = {r["route"]: r for r in json.loads(result.stdout)}
    app_only = {r["route"]: r for r in json.loads(subprocess.run(
        [sys.executable, "-m", "profviz", "routes", "--json", "--latency", "app", "--store", str(store)],
        capture_output=True, text=True, timeout=120).stdout)}
    for route in ("/slow", "/fast"):
        logged = proxied.request_times_ms(route)
        assert total[route]["count"] == len(logged), (route, total[route]["count"], len(logged))
        nginx_p50, nginx_p95 = _percentiles(logged)
        row = total[route]
        print(f"{route}: nginx P50 {nginx_p50:.1f} P95 {nginx_p95:.1f}; profviz total P50 {row['p50_ms']:.1f} P95 {row['p95_ms']:.1f};"
              f" app P50 {app_only[route]['p50_ms']:.1f} P95 {app_only[route]['p95_ms']:.1f}; queue P95 {row['queue_p95_ms']:.1f}")
        assert row["latency"] == "total" and row["queue_p95_ms"] > 0
        assert row["p50_ms"] == pytest.approx(nginx_p50, rel=0.10), (route, row, nginx_p50, nginx_p95)
        assert row["p95_ms"] == pytest.approx(nginx_p95, rel=0.10), (route, row, nginx_p50, nginx_p95)
        assert app_only[route]["p95_ms"] < 0.7 * nginx_p95, (route, app_only[route], nginx_p95)
