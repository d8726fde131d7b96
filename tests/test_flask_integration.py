"""profviz.flask.init_app on a real Flask app behind waitress: route names, and percentiles that match
the client's own timings of the same run."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from flask import Flask, Response, abort

from profviz.analysis.routes import percentiles, route_table
from profviz.flask import init_app
from profviz.store import open_store
from tests.targets.wsgi_apps import serve


CLIENT_SCRIPT = """
import json, sys
from profviz_shop.loadgen import run_load
result = run_load(sys.argv[1], [sys.argv[2]], requests=int(sys.argv[3]), concurrency=int(sys.argv[4]), max_seconds=120)
assert all(r.status == 200 for r in result.records), [r.error for r in result.records if r.status != 200][:3]
print(json.dumps([r.latency_s * 1000 for r in result.records]))
"""


def client_latencies_ms(base: str, path: str, *, requests: int, concurrency: int) -> list[float]:
    """Client-side latencies measured from a separate process, so client threads never share the server's GIL."""
    result = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, base, path, str(requests), str(concurrency)],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    latencies = json.loads(result.stdout)
    assert len(latencies) == requests
    return latencies


def make_flask_app() -> Flask:
    app = Flask("profviz-test-shop")

    @app.before_request
    def deny_admin():
        from flask import request
        if request.path.startswith("/admin"):
            abort(403)

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return {"id": item_id}

    @app.get("/admin/<path:rest>")
    def admin(rest):
        return "never reached"

    @app.get("/slow")
    def slow():
        time.sleep(random.uniform(0.02, 0.2))
        return "done"

    @app.get("/stream")
    def stream():
        return Response((f"part {i}\n" for i in range(3)), mimetype="text/plain")

    @app.get("/fail")
    def fail():
        raise RuntimeError("boom")

    return app


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "flask.db") as s:
        yield s


def test_flask_routes_are_url_rules(store):
    app = make_flask_app()
    middleware = init_app(app, store=store)
    assert init_app(app) is middleware and app.wsgi_app is middleware
    try:
        with serve(app, threads=4) as base:
            with requests.Session() as http:
                assert http.get(base + "/items/5").json() == {"id": 5}
                assert http.get(base + "/admin/users/3").status_code == 403
                assert http.get(base + "/nothing/here/42").status_code == 404
                assert http.get(base + "/stream").text == "part 0\npart 1\npart 2\n"
                assert http.get(base + "/fail").status_code == 500
                assert http.post(base + "/items/5").status_code == 405
        assert middleware.flush()
        got = [(r.method, r.path, r.route, r.status) for r in store.query_requests()]
        assert got == [
            ("GET", "/items/5", "/items/<int:item_id>", 200),
            ("GET", "/admin/users/3", "/admin/<path:rest>", 403),
            ("GET", "/nothing/here/42", "(unmatched)", 404),
            ("GET", "/stream", "/stream", 200),
            ("GET", "/fail", "/fail", 500),
            ("POST", "/items/5", "(unmatched)", 405),
        ]
        stream_row = store.query_requests(route="/stream")[0]
        assert stream_row.response_bytes == len("part 0\npart 1\npart 2\n")
    finally:
        middleware.close()


def test_an_inner_middleware_that_copies_the_environ_still_gets_url_rules(store):
    from werkzeug.test import Client

    app = make_flask_app()
    flask_wsgi = app.wsgi_app
    app.wsgi_app = lambda environ, start_response: flask_wsgi(dict(environ), start_response)
    middleware = init_app(app, store=store)
    try:
        for path, status in (("/items/5", 200), ("/nothing/7", 404)):
            response = Client(app).get(path)
            assert response.status_code == status
            response.close()
        assert middleware.flush()
    finally:
        middleware.close()
    assert {r.path: r.route for r in store.query_requests()} == {"/items/5": "/items/<int:item_id>", "/nothing/7": "(unmatched)"}


def test_the_apps_request_class_and_its_url_rule_reads_are_kept(store):
    from flask import Request, request
    from werkzeug.test import Client

    class ShopRequest(Request):
        def shop_marker(self) -> str:
            return "shop"

    app = make_flask_app()
    app.request_class = ShopRequest
    seen = []

    @app.get("/folder/")
    def folder():
        seen.append((type(request._get_current_object()), request.shop_marker(), request.url_rule.rule,
                     request.endpoint, request.routing_exception))
        return "ok"

    middleware = init_app(app, store=store)
    assert issubclass(app.request_class, ShopRequest) and app.request_class.__name__ == "ShopRequest"
    unmatched = app.request_class({"REQUEST_METHOD": "GET", "PATH_INFO": "/"})
    assert unmatched.url_rule is None and unmatched.routing_exception is None and unmatched.endpoint is None
    try:
        client = Client(app)
        for path, status in (("/folder/", 200), ("/folder", 308), ("/items/x", 404)):
            response = client.get(path)
            assert response.status_code == status, path
            response.close()
        assert middleware.flush()
    finally:
        middleware.close()
    assert seen == [(app.request_class, "shop", "/folder/", "folder", None)]
    assert [(r.path, r.route, r.status) for r in store.query_requests()] == [
        ("/folder/", "/folder/", 200), ("/folder", "(unmatched)", 308), ("/items/x", "(unmatched)", 404),
    ]


def test_percentiles_match_client_side_timings_within_5_percent(store):
    app = make_flask_app()
    middleware = init_app(app, store=store)
    try:
        with serve(app, threads=8) as base:
            client_ms = client_latencies_ms(base, "/slow", requests=240, concurrency=8)
        assert middleware.flush()
    finally:
        middleware.close()
    rows = store.query_requests(route="/slow")
    assert len(rows) == 240
    server = percentiles([r.duration_ns / 1e6 for r in rows])
    client = percentiles(client_ms)
    for q, s, c in zip((50, 90, 95, 99), server, client):
        assert abs(s - c) / c < 0.05, f"P{q}: profviz {s:.1f} ms, client {c:.1f} ms"
    [row] = route_table(store.request_columns(route="/slow"))
    assert row.p50_ms == pytest.approx(server[0], abs=1e-3) and row.count == 240
    assert np.all(np.asarray([r.duration_ns for r in rows]) >= 19e6)
