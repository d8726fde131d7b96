"""Route naming for plain WSGI, percentile and route statistics, the tail diff, and the routes/requests CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from werkzeug.test import Client

from profviz.analysis import routes as stats
from profviz.analysis.routes import percentiles, tail_groups
from profviz.cli import main
from profviz.model import Profile, State
from profviz.routes import collapse_path
from profviz.store import open_store
from profviz.model import RequestRow
from profviz.shapes.routes import histogram_json, route_json, series_json, tail_diff_json, utilisation_json
from profviz.wsgi import ProfilerMiddleware
from tests.targets.wsgi_apps import make_app


def route_table(*args, **kwargs) -> list[dict]:
    """The route table as the API sends it."""
    return [route_json(row) for row in stats.route_table(*args, **kwargs)]


def latency_histogram(*args, **kwargs) -> list[dict]:
    return histogram_json(stats.latency_histogram(*args, **kwargs))


def latency_series(*args, **kwargs) -> list[dict]:
    return series_json(stats.latency_series(*args, **kwargs))


def utilisation_series(*args, **kwargs) -> dict:
    return utilisation_json(stats.utilisation_series(*args, **kwargs))


def tail_diff(*args, **kwargs) -> dict:
    return tail_diff_json(stats.tail_diff(*args, **kwargs))


@pytest.mark.parametrize("path, route", [
    ("/", "/"),
    ("", "/"),
    ("/users/42", "/users/{int}"),
    ("/users/42/orders/7?x=1", "/users/{int}/orders/{int}"),
    ("/files/123e4567-E89B-12d3-a456-426614174000", "/files/{uuid}"),
    ("/blobs/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "/blobs/{hash}"),
    ("/commits/a1b2c3d4", "/commits/{hash}"),
    ("/tokens/Zx9_kq2LmN8pQr4sT6uV", "/tokens/{id}"),
    ("/prices/-3.50", "/prices/{num}"),
    ("/api/v2/search", "/api/v2/search"),
    ("/posts/hello-world", "/posts/hello-world"),
    ("/deadbeef", "/deadbeef"),
    ("/static/app.js", "/static/app.js"),
])
def test_collapse_path(path, route):
    assert collapse_path(path) == route


def test_plain_wsgi_routes_and_route_fn(tmp_path):
    with open_store(tmp_path / "p.db") as store:
        default = ProfilerMiddleware(make_app(), store=store)
        custom = ProfilerMiddleware(make_app(), store=store, route_fn=lambda environ: "custom:" + environ["PATH_INFO"].split("/")[1])
        broken = ProfilerMiddleware(make_app(), store=store, route_fn=lambda environ: 1 / 0)
        for middleware in (default, custom, broken):
            response = Client(middleware).get("/items/17", environ_overrides={"SCRIPT_NAME": "/shop"})
            assert response.get_data() == b"ok /items/17"
            assert middleware.flush()
            middleware.close()
        routes = [r.route for r in store.query_requests()]
        assert routes == ["/shop/items/{int}", "custom:items", "/shop/items/{int}"]
        assert broken.stats["errors_by_kind"] == {"route_fn": 1}


def test_percentiles_interpolate_linearly_like_numpy():
    values = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert percentiles(values, (50, 90, 95, 99)) == pytest.approx([55.0, 91.0, 95.5, 99.1])
    assert percentiles([7.0]) == [7.0] * 4
    assert all(np.isnan(percentiles([])))
    rng = np.random.default_rng(3)
    sample = rng.lognormal(3, 1, 999)
    assert percentiles(sample, (50, 99)) == pytest.approx(list(np.percentile(sample, [50, 99])))


def columns(rows):
    keys = ("route", "method", "status", "error", "start_ns", "duration_ns", "pid", "tid")
    return {k: [r[i] for r in rows] for i, k in enumerate(keys)}


def test_route_table_counts_rps_errors_and_percentiles():
    base = 1_700_000_000 * 10**9
    rows = [("/a", "GET", 200, None, base + i * 10**8, (i + 1) * 10**6, 1, 1) for i in range(100)]
    rows += [("/a", "POST", 500, None, base, 5 * 10**6, 1, 1), ("/b", "GET", 200, "ValueError: x", base, 10**6, 1, 2)]
    table = route_table(columns(rows), window_s=10.0)
    assert [(r["route"], r["method"]) for r in table] == [("/a", "GET"), ("/a", "POST"), ("/b", "GET")]
    a = table[0]
    assert set(a) == {"route", "method", "count", "rps", "error_rate", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms",
                      "latency", "queue_p50_ms", "queue_p95_ms"}
    assert a["count"] == 100 and a["rps"] == 10.0 and a["error_rate"] == 0
    assert (a["p50_ms"], a["p90_ms"], a["p95_ms"], a["p99_ms"], a["max_ms"]) == (50.5, 90.1, 95.05, 99.01, 100.0)
    assert table[1]["error_rate"] == 1.0 and table[2]["error_rate"] == 1.0


def test_histogram_series_and_utilisation():
    base = 10**18
    starts = [base + i * 10**8 for i in range(20)]
    durations = [50 * 10**6] * 10 + [150 * 10**6] * 10
    hist = latency_histogram(durations, bins=4)
    assert sum(b["count"] for b in hist) == 20 and hist[0]["count"] == 10 and hist[-1]["count"] == 10
    series = latency_series(starts, durations, bucket_s=1.0)
    assert [s["count"] for s in series] == [10, 10] and series[1]["p50_ms"] == 150.0
    cols = {"pid": [1] * 20, "tid": [1, 2] * 10, "start_ns": starts, "duration_ns": durations}
    util = utilisation_series(cols, 1.0, since_ns=base, until_ns=base + 2 * 10**9)
    assert util["capacity"] == 2 and util["capacity_source"] == "observed"
    first, second = util["series"]
    assert first["busy_avg"] == pytest.approx(0.5) and first["busy_max"] == 1
    assert second["busy_avg"] == pytest.approx(1.45) and second["busy_max"] == 2  # the last request runs past the window
    assert second["utilisation"] == pytest.approx(0.725)
    configured = utilisation_series({**cols, "capacity": [8] * 20}, 1.0, since_ns=base)
    assert configured["capacity"] == 8 and configured["capacity_source"] == "configured"


def request_profile(work: dict[str, tuple[int, State]]) -> Profile:
    """A one-thread request profile: handler -> each function for (ms, state)."""
    profile = Profile({"kind": "request"})
    thread = profile.add_thread(1, 1, "worker")
    t = 10**18
    for function, (ms, state) in work.items():
        stack = profile.intern_frames([("handler", "app.py", 1), (function, "app.py", 2)])
        profile.append_sample(t, thread, stack, ms * 10**6, state)
        t += ms * 10**6
    return profile


def test_tail_groups_and_tail_diff_point_at_the_extra_time():
    ids = list(range(100))
    durations = [10**7 + i * 10**4 for i in range(95)] + [10**8] * 5
    groups = tail_groups(ids, durations)
    assert groups.tail == [95, 96, 97, 98, 99]
    assert groups.typical and all(40 <= i <= 60 for i in groups.typical)
    typical = [request_profile({"render": (8, State.ON_CPU), "query": (2, State.WAITING)}) for _ in range(4)]
    tail = [request_profile({"render": (8, State.ON_CPU), "query": (62, State.WAITING), "lock": (30, State.WAITING)}) for _ in range(2)]
    diff = tail_diff(tail, typical)
    assert diff["extra_ms"] == pytest.approx(90.0) and diff["tail_profiles"] == 2 and diff["typical_profiles"] == 4
    top = diff["frames"][:2]
    assert [(f["function"], f["extra_self_ms"]) for f in top] == [("query", 60.0), ("lock", 30.0)]
    assert top[0]["extra_wait_ms"] == 60.0 and top[0]["extra_cpu_ms"] == 0.0 and top[0]["share_of_extra"] == pytest.approx(2 / 3, abs=1e-3)
    render = next(f for f in diff["frames"] if f["function"] == "render")
    assert render["extra_self_ms"] == 0.0
    with pytest.raises(ValueError, match="both sides"):
        tail_diff(tail, [])


def test_a_tail_waiting_for_the_gil_says_so_apart_from_cpu_and_waits():
    typical = [request_profile({"render": (8, State.ON_CPU)}) for _ in range(3)]
    tail = [request_profile({"render": (8, State.ON_CPU), "score": (40, State.GIL)}) for _ in range(3)]
    diff = tail_diff(tail, typical)
    top = diff["frames"][0]
    assert (top["function"], top["extra_gil_ms"], top["extra_cpu_ms"], top["extra_wait_ms"]) == ("score", 40.0, 0.0, 0.0)
    nodes = {node["fn"]: node for node in diff["tree"]["nodes"] if node["fn"] is not None}
    assert max(node["b_gil_ns"] for node in nodes.values()) == 40 * 10**6


def test_tail_diff_tree_is_per_request_with_widths_from_the_tail():
    typical = [request_profile({"render": (8, State.ON_CPU), "query": (2, State.WAITING)}) for _ in range(4)]
    tail = [request_profile({"render": (8, State.ON_CPU), "query": (62, State.WAITING), "lock": (30, State.WAITING)}) for _ in range(2)]
    tree = tail_diff(tail, typical)["tree"]
    assert tree["base"] == "b" and tree["a"]["root_total_ns"] == 10 * 10**6 and tree["b"]["root_total_ns"] == 100 * 10**6
    names = [f["name"] for f in tree["functions"]]
    by_name = {names[n["fn"]]: n for n in tree["nodes"] if n["fn"] >= 0}
    assert by_name["query"]["a_total_ns"] == 2 * 10**6 and by_name["query"]["b_total_ns"] == 62 * 10**6
    assert by_name["query"]["delta_ns"] == 60 * 10**6 and by_name["query"]["b_wait_ns"] == 62 * 10**6
    assert by_name["lock"]["a_total_ns"] == 0 and by_name["lock"]["delta_ns"] == 30 * 10**6
    assert by_name["render"]["delta_ns"] == 0 and by_name["handler"]["delta_ns"] == 90 * 10**6
    assert by_name["render"]["b_fraction"] == pytest.approx(0.08)
    children = [names[n["fn"]] for n in tree["nodes"] if n["parent"] == by_name["handler"]["id"]]
    assert children == ["query", "lock", "render"]  # ordered by the tail side
    doubled = tail_diff(tail + tail, typical * 3)["tree"]
    assert doubled["nodes"] == tree["nodes"]  # normalised per request: more requests alike change nothing


@pytest.fixture
def filled_store(tmp_path):
    path = tmp_path / "r.db"
    with open_store(path) as store:
        import time
        now = time.time_ns()
        rows = [RequestRow(1, 1, "/a/{int}", "GET", f"/a/{i}", 200, now - 10**9 + i * 10**6, (i + 1) * 10**6) for i in range(50)]
        rows.append(RequestRow(1, 1, "/old", "GET", "/old", 200, now - 3 * 3600 * 10**9, 10**6))
        store.insert_requests(rows)
    return path


def test_routes_and_requests_commands(filled_store):
    runner = CliRunner()
    out = runner.invoke(main, ["routes", "--json", "--store", str(filled_store)])
    assert out.exit_code == 0, out.output
    table = json.loads(out.output)
    assert [r["route"] for r in table] == ["/a/{int}", "/old"]
    recent = json.loads(runner.invoke(main, ["routes", "--since", "1h", "--json", "--store", str(filled_store)]).output)
    assert [r["route"] for r in recent] == ["/a/{int}"] and recent[0]["count"] == 50
    assert recent[0]["p50_ms"] == pytest.approx(25.5) and recent[0]["max_ms"] == 50.0
    text = runner.invoke(main, ["routes", "--store", str(filled_store)])
    assert "/a/{int}" in text.output and "p99 ms" in text.output
    slowest = json.loads(runner.invoke(main, ["requests", "--route", "/a/{int}", "--slowest", "3", "--json", "--store", str(filled_store)]).output)
    assert [r["duration_ms"] for r in slowest] == [50.0, 49.0, 48.0]
    assert set(slowest[0]) == {"id", "route", "method", "path", "status", "duration_ms", "queue_ms", "total_ms", "cpu_ms", "start",
                               "profile_id", "pid", "tid", "error"}
    assert slowest[0]["profile_id"] is None
    bad = runner.invoke(main, ["routes", "--since", "yesterday", "--store", str(filled_store)])
    assert bad.exit_code != 0 and "profviz: cannot read duration 'yesterday'" in bad.output
    cols = open_store(filled_store).request_columns(route="/a/{int}")
    assert len(cols["id"]) == 50 and cols["capacity"] == [None] * 50


def test_routes_from_sketches_match_the_exact_table_within_one_percent(filled_store, monkeypatch):
    """--from sketches (and auto past analysis.routes.EXACT_LIMIT requests) gives the same routes, counts, errors
    and max as the rows, percentiles within 1% of the value at the same rank, and says where they came from."""
    runner = CliRunner()
    exact = {r["route"]: r for r in json.loads(runner.invoke(main, ["routes", "--json", "--from", "rows", "--store", str(filled_store)]).output)}
    out = runner.invoke(main, ["routes", "--json", "--from", "sketches", "--store", str(filled_store)])
    assert out.exit_code == 0, out.output
    sketched = {r["route"]: r for r in json.loads(out.output)}
    assert set(sketched) == set(exact)
    for route, row in sketched.items():
        assert (row["count"], row["error_rate"], row["max_ms"]) == (exact[route]["count"], exact[route]["error_rate"], exact[route]["max_ms"])
        assert row["queue_p95_ms"] is None
    durations = sorted(float(i + 1) for i in range(50))  # /a/{int}: 1..50 ms
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        at_rank = durations[int(q * 49)]
        assert abs(sketched["/a/{int}"][key] - at_rank) <= 0.01 * at_rank + 0.001, key
    monkeypatch.setattr(stats, "EXACT_LIMIT", 10)
    text = runner.invoke(main, ["routes", "--store", str(filled_store)]).output
    assert "from latency sketches" in text and "/a/{int}" in text
    monkeypatch.setattr(stats, "EXACT_LIMIT", 1000)
    assert "from latency sketches" not in runner.invoke(main, ["routes", "--store", str(filled_store)]).output


def test_routes_api_reads_sketches_past_the_exact_limit_and_says_so(filled_store, monkeypatch):
    """/api/routes: rows up to EXACT_LIMIT requests, sketches beyond it or with from=sketches (the
    same routes, counts, errors and max; no queue percentiles), and "source" says which."""
    from profviz.server import create_app

    api = create_app(open_store(filled_store)).test_client()
    exact = api.get("/api/routes").get_json()
    assert exact["source"] == "rows"
    sketched = api.get("/api/routes?from=sketches").get_json()
    assert sketched["source"] == "sketches" and sketched["queue_known"] is False  # no request of this store knew its queue time
    assert all(row["queue_p95_ms"] is None for row in sketched["routes"])
    by_route = {r["route"]: r for r in exact["routes"]}
    assert {r["route"] for r in sketched["routes"]} == set(by_route)
    for row in sketched["routes"]:
        assert (row["count"], row["error_rate"], row["max_ms"]) == tuple(by_route[row["route"]][k] for k in ("count", "error_rate", "max_ms"))
        assert abs(row["p95_ms"] - by_route[row["route"]]["p95_ms"]) <= 0.02 * by_route[row["route"]]["p95_ms"] + 1.0
    assert sketched["window"]["start"] <= exact["window"]["start"] and sketched["window"]["end"] >= exact["window"]["end"] - 60
    monkeypatch.setattr(stats, "EXACT_LIMIT", 10)
    assert api.get("/api/routes").get_json()["source"] == "sketches"
    assert api.get("/api/routes?from=rows").get_json()["source"] == "rows"
    wrong = api.get("/api/routes?from=<b>")
    assert wrong.status_code == 400 and wrong.get_json()["error"]["message"].startswith("parameter from:")


def test_routes_api_table_latency_utilisation_requests_and_tail(tmp_path):
    from profviz.server import create_app

    with open_store(tmp_path / "api.db") as store:
        middleware = ProfilerMiddleware(make_app(), store=store, deep_fraction=1.0, sampler=False, worker_threads=4)
        client = Client(middleware)
        for i in range(40):
            client.get("/sleep/80" if i % 10 == 9 else "/sleep/5").close()
        assert middleware.flush()
        middleware.close()
        api = create_app(store).test_client()
        table = api.get("/api/routes").get_json()
        [row] = table["routes"]
        assert row["route"] == "/sleep/{int}" and row["count"] == 40 and row["max_ms"] >= 80
        assert table["window"]["duration_s"] >= 1.0
        latency = api.get("/api/routes/latency?route=/sleep/{int}&bins=10").get_json()
        assert sum(b["count"] for b in latency["histogram"]) == 40 and sum(s["count"] for s in latency["series"]) == 40
        util = api.get("/api/routes/utilisation?bucket_s=0.5").get_json()
        assert util["capacity"] == 4 and util["capacity_source"] == "configured"
        assert 0 < max(s["utilisation"] for s in util["series"]) <= 0.25 + 1e-9  # one request at a time on 4 threads
        slowest = api.get("/api/requests?slowest=4").get_json()["requests"]
        assert [r["path"] for r in slowest] == ["/sleep/80"] * 4 and all(r["profile_id"] for r in slowest)
        detail = api.get(f"/api/requests/{slowest[0]['id']}").get_json()
        assert detail["profile"]["capture"] == "deep" and detail["labels"]["request_id"]
        assert api.get("/api/requests/999999").status_code == 404
        assert api.get("/api/requests/abc").status_code == 400
        tail = api.get("/api/routes/tail?route=/sleep/{int}").get_json()
        assert tail["tail_requests"] == 2 and tail["diff"]["tail_profiles"] == 2 and tail["diff"]["typical_profiles"] >= 5
        top = tail["diff"]["frames"][0]
        assert top["function"] == "sleep" and top["extra_wait_ms"] > 60
        assert api.get("/api/routes/tail?route=/nope").status_code == 404
        bad_since = api.get("/api/routes?since=soon")
        assert bad_since.status_code == 400 and "since" in bad_since.get_json()["error"]["message"]
        assert api.get("/api/routes?since=1h").get_json()["routes"][0]["count"] == 40


def test_tail_groups_widen_a_side_that_has_too_few_profiles():
    """50 requests, the slowest 5 (above P90) and every fifth one profiled: P95's 3 requests hold only
    1 profile, so the tail widens to above P90; P40-P60 holds 2 profiles and stays."""
    ids = list(range(50))
    durations = [10**7 + i * 10**5 for i in range(50)]
    profiled = [i % 5 == 0 or i >= 45 and i != 48 and i != 49 for i in ids]
    groups = tail_groups(ids, durations, profiled, min_profiled=2)
    assert groups.tail_percentile == 90 and groups.tail == [45, 46, 47, 48, 49]
    assert groups.typical_band == (40, 60) and groups.typical == list(range(20, 30))
    everything = tail_groups(ids, durations)
    assert everything.tail_percentile == 95 and everything.tail == [47, 48, 49]
    none = tail_groups(ids, durations, [False] * 50)
    assert none.tail_percentile == 90 and none.typical_band == (25, 75), "too few anywhere: the widest, said as such"
