"""Per-route request statistics and the tail diff: pure functions over request columns and profiles.

Percentiles use linear interpolation between closest ranks (numpy's default ``"linear"``
method, Hyndman & Fan type 7): for sorted values x[0..n-1], percentile p is at rank
h = (n - 1) * p / 100, interpolated between x[floor(h)] and x[ceil(h)]. One value gives itself.

A request is an error when its status is >= 500 or the app raised (``error`` is set).

Latency is ``total`` (the time queued before the app, where a proxy's header gave it, plus the
app's time: what a client saw) or ``app`` (the app's time alone); see :func:`latency_ns`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..model import Profile
from ..model.latency_sketch import RouteSketch
from .calltree import CallTree, build_call_tree, function_stats
from .diff import DiffTree, group_diff
from .pruning import DEFAULT_MIN_FRACTION

PERCENTILES = (50, 90, 95, 99)
LATENCIES = ("total", "app")


def has_queue_times(columns: dict[str, list]) -> bool:
    """Whether any request of ``columns`` knows its queue time."""
    return any(q is not None for q in columns.get("queue_ns") or ())


def pick_latency(columns: dict[str, list], latency: str | None) -> str:
    """``latency`` if given (one of LATENCIES), else ``total`` when queue times exist, else ``app``."""
    if latency is None:
        return "total" if has_queue_times(columns) else "app"
    if latency not in LATENCIES:
        raise ValueError(f"latency must be one of {', '.join(LATENCIES)}, got {latency!r}")
    return latency


def latency_ns(columns: dict[str, list], latency: str) -> np.ndarray:
    """Per request, the app's ``duration_ns`` plus, for ``total``, its ``queue_ns`` (0 where unknown)."""
    durations = np.asarray(columns["duration_ns"], dtype=np.int64)
    if latency == "app" or not has_queue_times(columns):
        return durations
    queued = np.fromiter((q or 0 for q in columns["queue_ns"]), dtype=np.int64, count=len(durations))
    return durations + queued
TAIL_TREE_MAX_NODES = 5000


def percentiles(values: Sequence[float], qs: Sequence[float] = PERCENTILES) -> list[float]:
    """Percentiles ``qs`` (0-100) of ``values`` by linear interpolation; NaN for no values."""
    if len(values) == 0:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), list(qs))]


def is_error(status: int | None, error: str | None) -> bool:
    return bool(error) or (status is not None and status >= 500)


@dataclass
class RouteStats:
    """One (route, method) over a window: requests, per second, error rate, latency percentiles in ms."""

    route: str
    method: str
    count: int
    rps: float
    error_rate: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    latency: str = "app"  # what the percentiles measure: "total" (queue + app) or "app"
    queue_p50_ms: float | None = None  # the time queued before the app, where known (None: no request knew it)
    queue_p95_ms: float | None = None


def route_table(columns: dict[str, list], window_s: float | None = None, latency: str = "app") -> list[RouteStats]:
    """One row per (route, method): count, rps, error_rate, p50/p90/p95/p99/max in ms of ``latency``
    (:func:`latency_ns`), and the P50/P95 of the queue time where requests knew it.

    ``columns`` has equal-length lists ``route``, ``method``, ``status``, ``error``, ``start_ns``,
    ``duration_ns`` and optionally ``queue_ns``. ``rps`` is count over ``window_s`` (default: the
    span from the first start to the last end of all requests given, at least 1 s). Rows come
    slowest P95 first (then busiest).
    """
    n = len(columns.get("route", []))
    if n == 0:
        return []
    starts = np.asarray(columns["start_ns"], dtype=np.int64)
    durations = latency_ns(columns, latency)
    queues = columns.get("queue_ns") or [None] * n
    if window_s is None:
        window_s = max(1.0, float((starts + durations).max() - starts.min()) / 1e9)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(columns["route"], columns["method"])):
        groups.setdefault(key, []).append(i)
    errors = np.fromiter((is_error(s, e) for s, e in zip(columns["status"], columns["error"])), dtype=bool, count=n)
    rows = []
    for (route, method), index in groups.items():
        index_arr = np.asarray(index)
        ms = durations[index_arr] / 1e6
        p50, p90, p95, p99 = percentiles(ms)
        queued = [queues[i] / 1e6 for i in index if queues[i] is not None]
        queue_p50, queue_p95 = percentiles(queued, (50, 95)) if queued else (None, None)
        rows.append(RouteStats(
            route, method, len(index), round(len(index) / window_s, 3), round(float(errors[index_arr].mean()), 4),
            round(p50, 3), round(p90, 3), round(p95, 3), round(p99, 3), round(float(ms.max()), 3), latency,
            None if queue_p50 is None else round(queue_p50, 3), None if queue_p95 is None else round(queue_p95, 3),
        ))
    rows.sort(key=lambda r: (-r.p95_ms, -r.count, r.route, r.method))  # the slow tails first
    return rows


EXACT_LIMIT = 1_000_000  # route tables from every request up to this many requests, from latency sketches beyond


def route_table_from_sketches(sketches: Sequence[RouteSketch], window_s: float | None = None,
                              latency: str = "app") -> list[RouteStats]:
    """:func:`route_table` from each route's latency sketches (:meth:`Store.route_sketches`): the
    percentiles within the sketches' relative accuracy (1%, at ddsketch's rank), the max exact;
    no queue percentiles. ``rps`` is count over ``window_s`` (default: the minutes the sketches span)."""
    rows = []
    if window_s is None and sketches:
        window_s = max(1.0, (max(s.end_ns for s in sketches) - min(s.first_ns for s in sketches)) / 1e9)
    for sketch in sketches:
        if not sketch.count:
            continue
        chosen = sketch.total if latency == "total" and sketch.total is not None else sketch.app
        p50, p90, p95, p99 = (chosen.quantile_ns(q / 100) / 1e6 for q in PERCENTILES)
        rows.append(RouteStats(
            sketch.route, sketch.method, sketch.count, round(sketch.count / (window_s or 1.0), 3),
            round(sketch.errors / sketch.count, 4), round(p50, 3), round(p90, 3), round(p95, 3), round(p99, 3),
            round(chosen.max_ns / 1e6, 3), latency,
        ))
    rows.sort(key=lambda r: (-r.p95_ms, -r.count, r.route, r.method))
    return rows


def sketch_latency(sketches: Sequence[RouteSketch], latency: str | None) -> str:
    """:func:`pick_latency` for sketches: ``total`` when any route knew queue times, unless given."""
    if latency is not None:
        return latency
    return "total" if any(s.total is not None for s in sketches) else "app"


@dataclass
class HistogramBin:
    low_ms: float
    high_ms: float
    count: int


def latency_histogram(durations_ns: Sequence[int], bins: int = 40) -> list[HistogramBin]:
    """Counts of durations in ``bins`` log-spaced buckets."""
    if len(durations_ns) == 0:
        return []
    ms = np.maximum(np.asarray(durations_ns, dtype=np.float64) / 1e6, 1e-3)
    low, high = float(ms.min()), float(ms.max())
    if high <= low * 1.0001:
        return [HistogramBin(round(low, 3), round(high, 3), int(len(ms)))]
    edges = np.geomspace(low, high, bins + 1)
    counts, _ = np.histogram(ms, bins=edges)
    return [HistogramBin(round(float(a), 3), round(float(b), 3), int(c)) for a, b, c in zip(edges[:-1], edges[1:], counts)]


@dataclass
class LatencyPoint:
    """One time bucket (by request start; ``t`` its start in epoch s) of one route's latencies."""

    t: float
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def latency_series(start_ns: Sequence[int], duration_ns: Sequence[int], bucket_s: float, *,
                   since_ns: int | None = None) -> list[LatencyPoint]:
    """Per time bucket (by request start), the count and latency percentiles."""
    if len(start_ns) == 0:
        return []
    starts = np.asarray(start_ns, dtype=np.int64)
    ms = np.asarray(duration_ns, dtype=np.float64) / 1e6
    origin = int(since_ns if since_ns is not None else starts.min())
    width = int(bucket_s * 1e9)
    bucket = (starts - origin) // width
    out = []
    for b in np.unique(bucket):
        values = ms[bucket == b]
        p50, p95, p99 = percentiles(values, (50, 95, 99))
        out.append(LatencyPoint(
            round((origin + int(b) * width) / 1e9, 3), int(len(values)), round(p50, 3), round(p95, 3), round(p99, 3),
            round(float(values.max()), 3),
        ))
    return out


@dataclass
class UtilisationPoint:
    t: float
    busy_avg: float
    busy_max: int
    utilisation: float | None


@dataclass
class Utilisation:
    """Busy worker threads over capacity per time bucket; ``capacity_source`` says where the capacity came from."""

    capacity: int
    capacity_source: str
    bucket_s: float | None
    series: list[UtilisationPoint]


def worker_capacity(columns: dict[str, list]) -> tuple[int, str]:
    """(capacity, source): the sum over processes of the ``capacity`` label requests carry (the
    middleware's ``worker_threads``; "configured") when every process has one, else the number of
    distinct (pid, tid) that served a request ("observed")."""
    n = len(columns.get("pid", []))
    configured: dict[int, int] = {}
    for pid, cap in zip(columns["pid"], columns.get("capacity") or [None] * n):
        if cap:
            configured[pid] = max(configured.get(pid, 0), int(cap))
    if configured and len(configured) == len(set(columns["pid"])):
        return sum(configured.values()), "configured"
    return len(set(zip(columns["pid"], columns["tid"]))), "observed"


def utilisation_series(
    columns: dict[str, list],
    bucket_s: float,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    capacity: int | None = None,
) -> Utilisation:
    """Busy worker threads over capacity, per time bucket, from request start/end times.

    A thread is busy while it serves a request. Per bucket: ``busy_avg`` (request time inside
    the bucket / bucket length), ``busy_max`` (most requests in flight at once), and
    ``utilisation`` = busy_avg / capacity. ``capacity`` is the argument if given, else the sum
    over processes of the ``capacity`` label requests carry (the middleware's ``worker_threads``),
    else the number of distinct (pid, tid) that served a request (``capacity_source`` says which).
    ``columns`` has ``pid``, ``tid``, ``start_ns``, ``duration_ns`` and optionally ``capacity``.
    """
    n = len(columns.get("start_ns", []))
    if n == 0:
        return Utilisation(capacity or 0, "none", bucket_s, [])
    starts = np.asarray(columns["start_ns"], dtype=np.int64)
    ends = starts + np.asarray(columns["duration_ns"], dtype=np.int64)
    source = "argument"
    if capacity is None:
        capacity, source = worker_capacity(columns)
    origin = int(since_ns if since_ns is not None else starts.min())
    stop = int(until_ns if until_ns is not None else ends.max())
    width = max(1, int(bucket_s * 1e9))
    count = max(1, -(-(stop - origin) // width))
    edges = origin + np.arange(count + 1, dtype=np.int64) * width
    busy_ns = np.zeros(count, dtype=np.float64)
    for i in range(count):
        overlap = np.minimum(ends, edges[i + 1]) - np.maximum(starts, edges[i])
        busy_ns[i] = overlap[overlap > 0].sum()
    times = np.concatenate([starts, ends])
    deltas = np.concatenate([np.ones(n, dtype=np.int64), -np.ones(n, dtype=np.int64)])
    order = np.lexsort((deltas, times))  # ends before starts at equal times
    in_flight = np.cumsum(deltas[order])
    event_times = times[order]
    busy_max = np.zeros(count, dtype=np.int64)
    level_before = 0
    for i in range(count):
        lo, hi = np.searchsorted(event_times, [edges[i], edges[i + 1]], side="left")
        peak = in_flight[lo:hi].max() if hi > lo else 0
        busy_max[i] = max(level_before, peak)
        level_before = int(in_flight[hi - 1]) if hi > 0 else 0
    series = [
        UtilisationPoint(round(edges[i] / 1e9, 3), round(busy_ns[i] / width, 4), int(busy_max[i]),
                         round(busy_ns[i] / width / capacity, 4) if capacity else None)
        for i in range(count)
    ]
    return Utilisation(int(capacity), source, bucket_s, series)


TAIL_PERCENTILES = (95.0, 90.0)  # the tail: above the first of these that gives enough profiled requests
TYPICAL_BANDS = ((40.0, 60.0), (25.0, 75.0))  # typical requests: the first band that gives enough


@dataclass
class TailGroups:
    """Requests of one route split for the tail diff: ``tail`` above the route's
    ``tail_percentile`` (``tail_ns``), ``typical`` between its ``typical_band`` percentiles
    (``typical_ns``). Ids are request ids."""

    tail_percentile: float
    tail_ns: float
    typical_band: tuple[float, float]
    typical_ns: tuple[float, float]
    tail: list[int]
    typical: list[int]


def tail_groups(request_ids: Sequence[int], durations_ns: Sequence[int], profiled: Sequence[bool] | None = None,
                min_profiled: int = 2) -> TailGroups:
    """Split requests into the tail (duration above P95) and typical ones (between P40 and P60).

    With ``profiled`` (whether each request has a profile), a side with fewer than
    ``min_profiled`` profiled requests widens once: the tail to above P90, typical to P25-P75
    (a route with little traffic still gets an answer, which says what it compared).
    """
    durations = np.asarray(durations_ns, dtype=np.float64)
    ids = np.asarray(request_ids, dtype=np.int64)
    has_profile = np.ones(len(ids), dtype=bool) if profiled is None else np.asarray(profiled, dtype=bool)
    if not len(durations):
        return TailGroups(TAIL_PERCENTILES[0], float("nan"), TYPICAL_BANDS[0], (float("nan"), float("nan")), [], [])
    for tail_percentile in TAIL_PERCENTILES:
        (tail_ns,) = percentiles(durations, (tail_percentile,))
        in_tail = durations > tail_ns
        if not in_tail.any():  # all equal, or too few requests: the slowest one(s) at the percentile
            in_tail = durations >= tail_ns
        if (in_tail & has_profile).sum() >= min_profiled:
            break
    for band in TYPICAL_BANDS:
        low_ns, high_ns = percentiles(durations, band)
        in_band = (durations >= low_ns) & (durations <= high_ns)
        if (in_band & has_profile).sum() >= min_profiled:
            break
    return TailGroups(tail_percentile, float(tail_ns), band, (float(low_ns), float(high_ns)),
                      ids[in_tail].tolist(), ids[in_band].tolist())


def _function_totals(trees: Iterable[CallTree]) -> tuple[dict[tuple[str, str], np.ndarray], int]:
    """Per (function, file): [total, self, cpu, wait, gil] ns summed over call trees; also the wall sum."""
    totals: dict[tuple[str, str], np.ndarray] = {}
    wall = 0
    for tree in trees:
        wall += tree.root_total_ns
        for stat in function_stats(tree):
            key = (stat.function, stat.file)
            row = totals.get(key)
            if row is None:
                row = totals[key] = np.zeros(5, dtype=np.int64)
            row += (stat.total_ns, stat.self_ns, stat.cpu_ns, stat.wait_ns, stat.gil_ns)
    return totals, wall


@dataclass
class TailFrame:
    """One function's time per request (ms) in the tail and in typical requests, and the difference."""

    function: str
    file: str
    tail_total_ms: float
    typical_total_ms: float
    extra_total_ms: float
    tail_self_ms: float
    typical_self_ms: float
    extra_self_ms: float
    extra_cpu_ms: float
    extra_wait_ms: float
    share_of_extra: float = 0.0
    extra_gil_ms: float = 0.0  # of the extra total, waiting for the GIL


@dataclass
class TailDiff:
    tail_profiles: int
    typical_profiles: int
    tail_sampled_ms: float
    typical_sampled_ms: float
    extra_ms: float
    frames: list[TailFrame]
    tree: DiffTree


def tail_diff(
    tail_profiles: Sequence[Profile],
    typical_profiles: Sequence[Profile],
    *,
    limit: int = 50,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_nodes: int = TAIL_TREE_MAX_NODES,
) -> TailDiff:
    """Why is the tail slow? Per-request mean profile of the tail minus that of typical requests.

    Each group's function times (inclusive total, self, and the inclusive total split into CPU
    and waiting) are summed over its profiles and divided by its number of profiles (one profile
    per request). ``frames`` lists functions by extra self time per request (tail minus typical),
    largest first; self times partition the samples, so the positive ``extra_self_ms`` values
    account for the extra time. Times in ms per request.

    ``tree`` is the diff tree (:func:`profviz.analysis.diff.group_diff`): side ``a`` the typical
    requests, side ``b`` the tail, both in ns per request, ``base`` ``"b"`` (widths from the tail).
    Raises ValueError when a group has no profiles.
    """
    if not tail_profiles or not typical_profiles:
        raise ValueError(
            f"a tail diff needs profiles on both sides; have {len(tail_profiles)} tail and {len(typical_profiles)} typical"
        )
    tail_trees = [build_call_tree(p) for p in tail_profiles]
    typical_trees = [build_call_tree(p) for p in typical_profiles]
    tail, tail_wall = _function_totals(tail_trees)
    typical, typical_wall = _function_totals(typical_trees)
    n_tail, n_typical = len(tail_profiles), len(typical_profiles)
    rows = []
    for key in set(tail) | set(typical):
        a = [float(v) for v in tail.get(key, np.zeros(5, dtype=np.int64)) / n_tail / 1e6]
        b = [float(v) for v in typical.get(key, np.zeros(5, dtype=np.int64)) / n_typical / 1e6]
        rows.append(TailFrame(
            key[0], key[1], round(a[0], 3), round(b[0], 3), round(a[0] - b[0], 3), round(a[1], 3), round(b[1], 3),
            round(a[1] - b[1], 3), round(a[2] - b[2], 3), round(a[3] - b[3], 3), extra_gil_ms=round(a[4] - b[4], 3),
        ))
    extra_wall = tail_wall / n_tail / 1e6 - typical_wall / n_typical / 1e6
    positive = sum(r.extra_self_ms for r in rows if r.extra_self_ms > 0) or 1.0
    for r in rows:
        r.share_of_extra = round(max(0.0, r.extra_self_ms) / positive, 4)
    rows.sort(key=lambda r: (-r.extra_self_ms, -r.extra_total_ms, r.function))
    tree = group_diff(typical_trees, tail_trees, divisors=(n_typical, n_tail), base="b", min_fraction=min_fraction, max_nodes=max_nodes)
    return TailDiff(
        n_tail, n_typical, round(tail_wall / n_tail / 1e6, 3), round(typical_wall / n_typical / 1e6, 3),
        round(extra_wall, 3), rows[:limit], tree,
    )


__all__ = [
    "EXACT_LIMIT", "PERCENTILES", "TAIL_PERCENTILES", "TAIL_TREE_MAX_NODES", "TYPICAL_BANDS", "HistogramBin", "LatencyPoint", "RouteStats", "TailDiff", "TailFrame", "TailGroups",
    "Utilisation", "UtilisationPoint", "is_error", "latency_histogram", "latency_series", "percentiles", "route_table",
    "tail_diff", "tail_groups", "utilisation_series",
]
