"""Latency against load: latency percentiles by the load a request met when it arrived, the knee
where the tail departs from its low-load value, and the headroom left at the observed peak. Pure
functions over request columns (docs/load.md explains the choices).

A request's *utilisation at arrival* is the number of requests in the service (arrived, queued
or being served, itself included) when it arrived, over the capacity (worker threads:
:func:`~.routes.worker_capacity`). It passes 100% when requests queue. Arrival is the app's start
minus the request's queue time where a proxy stamped it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .routes import latency_ns, percentiles, utilisation_series, worker_capacity

UTILISATION_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
KNEE_FACTOR = 1.5  # the knee: the first band, above the low-load one, whose P99 is this many times the low-load P99
MIN_LEVEL_REQUESTS = 10  # a band with fewer requests is drawn but is neither the low-load band nor the knee
THROUGHPUT_LEVELS = 8


@dataclass
class LoadLevel:
    """Requests whose utilisation at arrival fell in [low, high) (``high`` None: no upper edge)."""

    low: float
    high: float | None
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass
class ThroughputLevel:
    """Requests that arrived in a second when the service took [low_rps, high_rps) requests per second."""

    low_rps: float
    high_rps: float
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass
class LoadCurve:
    """The curve of one route (or the whole service: ``route`` None) over a window."""

    route: str | None
    method: str | None
    latency: str  # "total" (queue + app) or "app"
    capacity: int
    capacity_source: str
    requests: int
    levels: list[LoadLevel]
    throughput: list[ThroughputLevel]
    baseline_p99_ms: float | None  # P99 at low load: the lowest P99 of a band under 100% (see _baseline)
    baseline_utilisation: float | None  # the low edge of that band
    knee: float | None  # utilisation where P99 reached KNEE_FACTOR x the baseline; None: not seen
    knee_p99_ms: float | None
    peak_utilisation: float  # the busiest second's average busy workers over capacity
    peak_rps: float
    headroom: float  # 1 - peak utilisation (at least 0)
    traffic_to_knee: float | None  # the knee (at most 100%) over the peak: how many times today's peak traffic before it


def _percentiles_ms(values_ns: np.ndarray) -> tuple[float, float, float]:
    p50, p95, p99 = percentiles(values_ns / 1e6, (50, 95, 99))
    return round(p50, 3), round(p95, 3), round(p99, 3)


def arrivals(columns: dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
    """(arrival, end) epoch ns per request: the app's start less the queue time where known, and its end."""
    starts = np.asarray(columns["start_ns"], dtype=np.int64)
    queued = np.fromiter((q or 0 for q in columns.get("queue_ns") or [0] * len(starts)), dtype=np.int64, count=len(starts))
    return starts - queued, starts + np.asarray(columns["duration_ns"], dtype=np.int64)


def in_flight_at_arrival(columns: dict[str, list]) -> np.ndarray:
    """Per request, the requests in the service when it arrived (arrived before or with it, not yet ended), itself included."""
    arrive, end = arrivals(columns)
    arrived = np.searchsorted(np.sort(arrive), arrive, side="right")
    ended = np.searchsorted(np.sort(end), arrive, side="right")
    return arrived - ended


def load_curve(columns: dict[str, list], latency: str, *, route: str | None = None, method: str | None = None,
               capacity: int | None = None) -> LoadCurve:
    """The load curve of the requests of ``route`` and ``method`` (all when None) among the
    service's ``columns`` (every route's requests: the load is the whole service's)."""
    n = len(columns.get("start_ns", []))
    if capacity is None:
        capacity, source = worker_capacity(columns) if n else (0, "none")
    else:
        source = "argument"
    chosen = np.ones(n, dtype=bool)
    if route is not None:
        chosen &= np.asarray([r == route for r in columns["route"]], dtype=bool)
    if method is not None:
        chosen &= np.asarray([m == method for m in columns["method"]], dtype=bool)
    if not n or not chosen.any() or not capacity:
        return LoadCurve(route, method, latency, int(capacity or 0), source, 0, [], [], None, None, None, None, 0.0, 0.0, 1.0, None)
    level = in_flight_at_arrival(columns) / capacity
    durations = latency_ns(columns, latency)
    levels = _levels(level[chosen], durations[chosen])
    baseline, baseline_at = _baseline(levels)
    knee = knee_p99 = None
    if baseline is not None:
        for band in levels:
            if band.low > baseline_at and band.requests >= MIN_LEVEL_REQUESTS and band.p99_ms >= KNEE_FACTOR * baseline:
                knee, knee_p99 = band.low, band.p99_ms
                break
    arrive, end = arrivals(columns)
    bucket_s = max(1.0, (int(end.max()) - int(arrive.min())) / 1e9 / 600)
    rps = _arrival_rate(arrive, bucket_s)
    usage = utilisation_series(columns, bucket_s, capacity=capacity)
    full = [p.utilisation or 0.0 for p in usage.series[:-1]] or [p.utilisation or 0.0 for p in usage.series]  # the last bucket is cut short
    peak = float(max(full))
    return LoadCurve(
        route, method, latency, int(capacity), source, int(chosen.sum()), levels,
        _throughput_levels(rps[chosen], durations[chosen]), baseline, baseline_at if baseline is not None else None,
        knee, knee_p99, round(peak, 4),
        round(float(rps.max()), 3), round(max(0.0, 1.0 - peak), 4),
        None if knee is None or peak <= 0 else round(min(knee, 1.0) / peak, 2),
    )


def _levels(level: np.ndarray, durations: np.ndarray) -> list[LoadLevel]:
    edges = np.asarray(UTILISATION_EDGES + (np.inf,))
    index = np.searchsorted(edges, level, side="right") - 1
    out = []
    for k in np.unique(index):
        inside = durations[index == k]
        high = None if not np.isfinite(edges[k + 1]) else float(edges[k + 1])
        out.append(LoadLevel(float(edges[k]), high, int(len(inside)), *_percentiles_ms(inside)))
    return out


def _baseline(levels: list[LoadLevel]) -> tuple[float | None, float]:
    """(the low-load P99, the utilisation band it was seen at): the lowest P99 of the bands under
    100% with at least MIN_LEVEL_REQUESTS requests (latency only grows with load, so the best band
    shows the unloaded tail, and one slow warm-up request in a band does not raise it); (None, 0)
    when no band qualifies."""
    candidates = [level for level in levels if level.low < 1.0 and level.requests >= MIN_LEVEL_REQUESTS]
    if not candidates:
        return None, 0.0
    best = min(candidates, key=lambda level: level.p99_ms)
    return best.p99_ms, best.low


def _arrival_rate(arrive: np.ndarray, bucket_s: float) -> np.ndarray:
    """Per request, the service's arrivals per second in the bucket it arrived in."""
    width = int(bucket_s * 1e9)
    bucket = (arrive - arrive.min()) // width
    counts = np.bincount(bucket)
    return counts[bucket] / bucket_s


def _throughput_levels(rps: np.ndarray, durations: np.ndarray) -> list[ThroughputLevel]:
    low, high = float(rps.min()), float(rps.max())
    if high <= low:
        return [ThroughputLevel(round(low, 3), round(high, 3), int(len(rps)), *_percentiles_ms(durations))]
    edges = np.linspace(low, high, THROUGHPUT_LEVELS + 1)
    index = np.minimum(np.searchsorted(edges, rps, side="right") - 1, THROUGHPUT_LEVELS - 1)
    return [ThroughputLevel(round(float(edges[k]), 3), round(float(edges[k + 1]), 3), int((index == k).sum()),
                            *_percentiles_ms(durations[index == k])) for k in np.unique(index)]
