"""The routes/requests JSON API behind the routes view (see "Routes and requests" in docs/api.md).

Every endpoint reads the store's ``requests`` table (written by the WSGI middleware) over a time
window given by ``since`` (a duration back from now: ``30s``, ``15m``, ``2h``) or ``since_ns`` /
``until_ns`` (epoch ns); without them, all requests. ``service``, ``host``, ``version`` and ``env``
keep the requests with those origin labels. Statistics come from the pure functions of
:mod:`profviz.analysis.routes`. Times in responses are epoch seconds (``start``, ``t``) and
milliseconds (latencies).
"""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import NotFound

from ..analysis.load import load_curve
from ..analysis.pruning import DEFAULT_MAX_NODES, DEFAULT_MIN_FRACTION
from ..analysis import routes as route_analysis
from ..analysis.routes import (
    LATENCIES, TAIL_TREE_MAX_NODES, has_queue_times, latency_histogram, latency_ns, latency_series, pick_latency,
    route_table, route_table_from_sketches, sketch_latency, tail_diff, tail_groups, utilisation_series,
)
from ..analysis.versions import TAIL_PERCENTILE, compare_versions, slow_profiled, slow_requests
from ..routes import parse_duration
from ..shapes.routes import (
    histogram_json, load_json, request_detail_json, request_entry, route_json, series_json, tail_diff_json, utilisation_json,
    version_row_json,
)
from ..store import ProfileNotFound, RequestNotFound
from ..store.window import loaded_profiles
from .context import server_context
from .params import bad, choice_param, float_param, int_param, origin_param

bp = Blueprint("routes_api", __name__)
MAX_TAIL_PROFILES = 200


def _window() -> tuple[int | None, int | None]:
    args = request.args
    since = args.get("since")
    if since:
        try:
            since_ns = time.time_ns() - int(parse_duration(since) * 1e9)
        except ValueError as exc:
            raise bad("since", str(exc)) from None
    else:
        since_ns = int_param(args, "since_ns", None, low=0)
    until_ns = int_param(args, "until_ns", None, low=0)
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        raise bad("until_ns", "must be after the window's start")
    return since_ns, until_ns


def _route() -> tuple[str, str]:
    route = request.args.get("route")
    if not route:
        raise bad("route", "required: a route as listed by /api/routes")
    return route, (request.args.get("method") or "GET").upper()


def _given_latency() -> str | None:
    """The ``latency`` parameter (total or app) when given."""
    given = request.args.get("latency") or None
    if given is not None and given not in LATENCIES:
        raise bad("latency", f"expected one of {', '.join(LATENCIES)}, got {given[:40]!r}")
    return given


def _latency(columns: dict) -> str:
    """The ``latency`` parameter, by default total when queue times exist."""
    return pick_latency(columns, _given_latency())


def _span(columns: dict, since_ns: int | None, until_ns: int | None) -> tuple[int, int]:
    """The window actually covered: from the later of since and the first start to the earlier of until and the last end."""
    starts = columns["start_ns"]
    first = max(min(starts), since_ns or 0)
    last = max(s + d for s, d in zip(starts, columns["duration_ns"]))
    if until_ns is not None:
        last = min(last, until_ns)
    return first, max(last, first + 1)


def _auto_bucket(start_ns: int, end_ns: int, points: int = 60) -> float:
    raw = max(0.001, (end_ns - start_ns) / 1e9 / points)
    for step in (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400):
        if step >= raw:
            return float(step)
    return 86400.0


@bp.get("/api/routes")
def routes():
    """The route table: from every request up to EXACT_LIMIT of them (or with from=rows), else (or
    with from=sketches) from the minutes' latency sketches, which "source" says."""
    since_ns, until_ns = _window()
    store, labels = server_context().store, origin_param()
    source = choice_param(request.args, "from", "auto", ("auto", "rows", "sketches"))
    if source != "rows":
        sketches = [s for s in store.route_sketches(since_ns=since_ns, until_ns=until_ns, labels=labels) if s.count]
        if source == "sketches" or sum(s.count for s in sketches) > route_analysis.EXACT_LIMIT:
            latency = sketch_latency(sketches, _given_latency())
            if not sketches:
                return jsonify({"window": None, "routes": [], "latency": latency, "queue_known": False, "source": "sketches"})
            first, last = min(s.first_ns for s in sketches), max(s.end_ns for s in sketches)
            return jsonify({
                "window": {"start": first / 1e9, "end": last / 1e9, "duration_s": round(max(1.0, (last - first) / 1e9), 3)},
                "latency": latency, "queue_known": any(s.total is not None for s in sketches), "source": "sketches",
                "routes": [route_json(r) for r in route_table_from_sketches(sketches, None, latency)],
            })
    columns = store.request_columns(since_ns=since_ns, until_ns=until_ns, labels=labels)
    latency = _latency(columns)
    if not columns["id"]:
        return jsonify({"window": None, "routes": [], "latency": latency, "queue_known": False, "source": "rows"})
    first, last = _span(columns, since_ns, until_ns)
    return jsonify({
        "window": {"start": first / 1e9, "end": last / 1e9, "duration_s": round(max(1.0, (last - first) / 1e9), 3)},
        "latency": latency, "queue_known": has_queue_times(columns), "source": "rows",
        "routes": [route_json(r) for r in route_table(columns, max(1.0, (last - first) / 1e9), latency)],
    })



@bp.get("/api/routes/origins")
def route_origins():
    """The values of each origin label (service, host, version, env) among the window's requests, for the filters."""
    since_ns, until_ns = _window()
    return jsonify({"origins": server_context().store.origin_values(since_ns=since_ns, until_ns=until_ns)})


@bp.get("/api/routes/latency")
def route_latency():
    """One route's latency histogram and latency-over-time series."""
    since_ns, until_ns = _window()
    route, method = _route()
    columns = server_context().store.request_columns(since_ns=since_ns, until_ns=until_ns, route=route, method=method, labels=origin_param())
    if not columns["id"]:
        raise NotFound(f"no {method} {route} requests in this window: pick a route from /api/routes")
    first, last = _span(columns, since_ns, until_ns)
    bins = int_param(request.args, "bins", 40, low=1, high=200)
    bucket_s = float_param(request.args, "bucket_s", _auto_bucket(first, last), low=0.01, high=86400.0)
    latency = _latency(columns)
    durations = latency_ns(columns, latency)
    return jsonify({
        "route": route, "method": method, "count": len(columns["id"]), "bucket_s": bucket_s,
        "latency": latency, "queue_known": has_queue_times(columns),
        "histogram": histogram_json(latency_histogram(durations, bins)),
        "series": series_json(latency_series(columns["start_ns"], durations, bucket_s, since_ns=first)),
    })


@bp.get("/api/routes/utilisation")
def utilisation():
    """Busy worker threads over capacity, per time bucket, for all routes."""
    since_ns, until_ns = _window()
    columns = server_context().store.request_columns(since_ns=since_ns, until_ns=until_ns, labels=origin_param())
    capacity = int_param(request.args, "capacity", None, low=1, high=100_000)
    if not columns["id"]:
        return jsonify({"capacity": capacity or 0, "capacity_source": "none", "bucket_s": None, "series": []})
    first, last = _span(columns, since_ns, until_ns)
    bucket_s = float_param(request.args, "bucket_s", _auto_bucket(first, last), low=0.01, high=86400.0)
    if (last - first) / 1e9 / bucket_s > 5000:
        raise bad("bucket_s", f"{bucket_s} s makes more than 5000 buckets over this window; use a larger bucket")
    return jsonify(utilisation_json(utilisation_series(columns, bucket_s, since_ns=first, until_ns=last, capacity=capacity)))


@bp.get("/api/routes/load")
def route_load():
    """Latency against load: percentiles by utilisation at arrival and by throughput, the knee and
    the headroom, for one route (``route``, ``method``) or, without ``route``, every request."""
    since_ns, until_ns = _window()
    columns = server_context().store.request_columns(since_ns=since_ns, until_ns=until_ns, labels=origin_param())
    route = request.args.get("route") or None
    method = (request.args.get("method") or "GET").upper() if route is not None else None
    if route is not None and route not in set(columns["route"]):
        raise NotFound(f"no {method} {route} requests in this window: pick a route from /api/routes")
    capacity = int_param(request.args, "capacity", None, low=1, high=100_000)
    return jsonify(load_json(load_curve(columns, _latency(columns), route=route, method=method, capacity=capacity)))


@bp.get("/api/requests")
def requests_list():
    since_ns, until_ns = _window()
    args = request.args
    slowest = int_param(args, "slowest", None, low=1, high=10_000)
    limit = int_param(args, "limit", 100, low=1, high=10_000)
    latency = _given_latency() or "total"
    rows = server_context().store.query_requests(
        since_ns=since_ns, until_ns=until_ns, route=args.get("route") or None,
        method=args.get("method") or None, slowest=slowest, limit=None if slowest else limit, latency=latency,
        labels=origin_param(),
    )
    return jsonify({"requests": [request_entry(r) for r in rows]})


@bp.get("/api/requests/<request_id>")
def request_detail(request_id: str):
    try:
        rid = int(request_id)
    except ValueError:
        raise bad("id", f"expected an integer request id, got {request_id[:40]!r}") from None
    store = server_context().store
    try:
        row = store.request_by_id(rid)
    except RequestNotFound:
        raise NotFound(f"no request with id {rid}: list requests with /api/requests") from None
    meta = None
    if row.profile_id is not None:
        try:
            meta = store.profile_meta(row.profile_id)
        except ProfileNotFound:
            row.profile_id = None
    return jsonify(request_detail_json(row, meta))


@bp.get("/api/routes/tail")
def route_tail():
    """Why is the tail slow: profiles of requests above the route's P95 against those between P40 and P60 (each side
    widened to P90 and P25-P75 when too few of its requests have a profile; see tail_groups)."""
    since_ns, until_ns = _window()
    route, method = _route()
    store = server_context().store
    columns = store.request_columns(since_ns=since_ns, until_ns=until_ns, route=route, method=method, labels=origin_param())
    if not columns["id"]:
        raise NotFound(f"no {method} {route} requests in this window: pick a route from /api/routes")
    max_profiles = int_param(request.args, "max_profiles", 50, low=1, high=MAX_TAIL_PROFILES)
    min_profiles = int_param(request.args, "min_profiles", 2, low=1, high=MAX_TAIL_PROFILES)
    profile_of = dict(zip(columns["id"], columns["profile_id"]))
    duration_of = dict(zip(columns["id"], columns["duration_ns"]))
    groups = tail_groups(columns["id"], columns["duration_ns"], [bool(p) for p in columns["profile_id"]], min_profiles)

    def profiles(ids: list[int], slowest_first: bool) -> list:
        with_profile = [i for i in ids if profile_of.get(i)]
        with_profile.sort(key=lambda i: duration_of[i], reverse=slowest_first)
        return loaded_profiles(server_context().profile, [profile_of[i] for i in with_profile[:max_profiles]])

    tail = profiles(groups.tail, True)
    typical = profiles(groups.typical, False)
    answer = {
        "route": route, "method": method, "requests": len(columns["id"]),
        "tail_percentile": groups.tail_percentile, "tail_ms": round(groups.tail_ns / 1e6, 3),
        "typical_band": list(groups.typical_band), "typical_ms": [round(v / 1e6, 3) for v in groups.typical_ns],
        "tail_requests": len(groups.tail), "typical_requests": len(groups.typical), "min_profiles": min_profiles,
        "tail_profile_ids": [p.meta.get("id") for p in tail], "typical_profile_ids": [p.meta.get("id") for p in typical],
        "diff": None, "message": None,
    }
    if len(tail) < min_profiles or len(typical) < min_profiles:
        low, high = groups.typical_band
        answer["message"] = (
            f"Not enough profiled requests to compare yet: {len(tail)} of the slow ones (above P{groups.tail_percentile:g},"
            f" {answer['tail_ms']:g} ms) and {len(typical)} typical ones (P{low:g}-P{high:g}) have a profile, and each side"
            f" needs {min_profiles}. Send this route more traffic or widen the time window: profviz keeps the profile of"
            " a route's slow requests and of a few typical ones every minute."
        )
    else:
        answer["diff"] = tail_diff_json(tail_diff(
            tail, typical, limit=int_param(request.args, "limit", 50, low=1, high=1000),
            min_fraction=float_param(request.args, "min_fraction", DEFAULT_MIN_FRACTION, low=0.0, high=1.0),
            max_nodes=int_param(request.args, "max_nodes", TAIL_TREE_MAX_NODES, low=10, high=DEFAULT_MAX_NODES),
        ))
    return jsonify(answer)


@bp.get("/api/routes/versions")
def route_versions():
    """Version ``a`` against version ``b`` (their ``version`` label). Without ``route``: each route's
    stats in both, the largest P95 increase first. With ``route``: the shape of /api/routes/tail,
    its "tail" B's requests at or above their P90 and its "typical" A's, so the diff shows what B's
    slow requests spend more time in; plus ``versions`` (both versions' stats)."""
    since_ns, until_ns = _window()
    a, b = request.args.get("a"), request.args.get("b")
    if not a or not b or a == b:
        raise bad("a", "give two different versions as a= and b= (their 'version' label, as /api/routes/origins lists them)")
    base = {key: value for key, value in (origin_param() or {}).items() if key != "version"}
    route = request.args.get("route") or None
    method = (request.args.get("method") or "GET").upper() if route else None
    store = server_context().store
    columns = {version: store.request_columns(since_ns=since_ns, until_ns=until_ns, route=route, method=method,
                                              labels={**base, "version": version}) for version in (a, b)}
    latency = _latency({name: columns[a][name] + columns[b][name] for name in columns[a]})
    rows = compare_versions(columns[a], columns[b], latency)
    if route is None:
        return jsonify({"a": a, "b": b, "latency": latency, "routes": [version_row_json(r) for r in rows]})
    if not rows or rows[0].a is None or rows[0].b is None:
        raise NotFound(f"{method} {route} has no requests of version {a if not columns[a]['id'] else b} in this window: "
                       "pick two versions that both served it")
    row = rows[0]
    min_profiles = int_param(request.args, "min_profiles", 2, low=1, high=MAX_TAIL_PROFILES)
    max_profiles = int_param(request.args, "max_profiles", 50, low=1, high=MAX_TAIL_PROFILES)
    sides = {version: loaded_profiles(server_context().profile, slow_profiled(columns[version], route, method, latency,
                                                                              limit=max_profiles)) for version in (a, b)}
    above = {version: [v for v, _ in slow_requests(columns[version], route, method, latency)] for version in (a, b)}
    answer = {
        "route": route, "method": method, "requests": row.a.count + row.b.count,
        "tail_percentile": TAIL_PERCENTILE, "tail_ms": round(min(above[b]) / 1e6, 3),
        "typical_band": [TAIL_PERCENTILE, 100], "typical_ms": [round(min(above[a]) / 1e6, 3), round(max(above[a]) / 1e6, 3)],
        "tail_requests": len(above[b]), "typical_requests": len(above[a]), "min_profiles": min_profiles,
        "tail_profile_ids": [p.meta.get("id") for p in sides[b]], "typical_profile_ids": [p.meta.get("id") for p in sides[a]],
        "diff": None, "message": None, "versions": version_row_json(row) | {"a_version": a, "b_version": b},
    }
    if min(len(sides[a]), len(sides[b])) < min_profiles:
        answer["message"] = (f"Not enough profiled slow requests to compare the versions yet: {len(sides[b])} of {b}'s and "
                             f"{len(sides[a])} of {a}'s above their P{TAIL_PERCENTILE:g} have a profile, and each side needs "
                             f"{min_profiles}. Widen the time window, or send the route more traffic.")
    else:
        answer["diff"] = tail_diff_json(tail_diff(sides[b], sides[a], limit=int_param(request.args, "limit", 50, low=1, high=1000)))
    return jsonify(answer)
