"""What every request-based detector needs: a window's requests by route, the spans each request
ran, and how a per-request cost turns into a finding's figures (requests, impact, tail share, share)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from ...model import Profile, RequestRow, Span
from ...model.statements import statement_of
from ...model.window import Window

TAIL_PERCENTILE = 95
TYPICAL_BAND = (25, 75)


@dataclass
class RouteTraffic:
    """One route's requests in a window (by start), its percentiles and its tail and typical ids."""

    key: str  # "GET /posts", as findings name routes
    requests: list[RequestRow]
    p50_ms: float
    p95_ms: float
    tail: set[int] = field(default_factory=set)  # request ids at or over the route's P95
    typical: set[int] = field(default_factory=set)  # request ids between its P25 and P75

    def duration_ns(self) -> dict[int, int]:
        return {row.id: row.duration_ns for row in self.requests}


def route_key(row: RequestRow) -> str:
    return f"{row.method} {row.route}"


def routes_of(window: Window) -> dict[str, RouteTraffic]:
    """The window's requests grouped by route (method and route), with tail and typical sets (computed once per window)."""
    return window.once("routes", lambda: _routes_of(window))


def _routes_of(window: Window) -> dict[str, RouteTraffic]:
    grouped: dict[str, list[RequestRow]] = {}
    for row in window.requests:
        grouped.setdefault(route_key(row), []).append(row)
    traffic = {}
    for key, rows in grouped.items():
        durations = np.array([row.duration_ns for row in rows], dtype=np.float64)
        p25, p50, p75, p95 = np.percentile(durations, [TYPICAL_BAND[0], 50, TYPICAL_BAND[1], TAIL_PERCENTILE])
        tail = {row.id for row, d in zip(rows, durations) if d >= p95}
        typical = {row.id for row, d in zip(rows, durations) if p25 <= d <= p75}
        traffic[key] = RouteTraffic(key, rows, p50 / 1e6, p95 / 1e6, tail, typical)
    return traffic


def spans_by_request(window: Window) -> dict[int, list[Span]]:
    """Request id -> the spans that started inside it on its thread (same pid and native tid),
    by start (computed once per window). A span with no thread is matched by nothing."""
    return window.once("spans_by_request", lambda: _spans_by_request(window))


def _spans_by_request(window: Window) -> dict[int, list[Span]]:
    by_thread: dict[tuple[int | None, int | None], list[Span]] = {}
    for span in window.spans:
        if span.tid is not None:
            by_thread.setdefault((span.pid, span.tid), []).append(span)
    starts = {}
    for key, spans in by_thread.items():
        spans.sort(key=lambda s: s.start_ns)
        starts[key] = [s.start_ns for s in spans]
    result: dict[int, list[Span]] = {}
    for row in window.requests:
        key = (row.pid, row.tid)
        spans = by_thread.get(key)
        if not spans:
            continue
        first = bisect.bisect_left(starts[key], row.start_ns)
        last = bisect.bisect_left(starts[key], row.start_ns + row.duration_ns + 1)
        if last > first:
            result[row.id] = spans[first:last]
    return result


@dataclass
class Figures:
    """A finding's figures from per-request costs (see :class:`~profviz.analysis.findings.Finding`)."""

    requests: int
    impact_ms: float
    tail_share: float
    share: float


def figures(traffic: RouteTraffic, costs_ns: dict[int, float], measured: set[int] | None = None) -> Figures:
    """``costs_ns``: request id -> time the problem cost it (absent or 0: not affected), over the
    ``measured`` requests (those whose spans or samples could show it; default: all of the
    route's). The tail share compares the mean cost of measured tail requests with that of
    measured typical ones, against the difference of their mean durations."""
    durations = traffic.duration_ns()
    measured_ids = set(durations) if measured is None else measured & set(durations)
    affected = [cost for request, cost in costs_ns.items() if cost > 0 and request in measured_ids]
    total = sum(durations[r] for r in measured_ids) or 1
    share = sum(costs_ns.get(r, 0.0) for r in measured_ids) / total
    tail = [r for r in traffic.tail if r in measured_ids]
    typical = [r for r in traffic.typical if r in measured_ids]
    tail_share = 0.0
    if tail and typical:
        extra = np.mean([durations[r] for r in tail]) - np.mean([durations[r] for r in typical])
        if extra > 0:
            explained = np.mean([costs_ns.get(r, 0.0) for r in tail]) - np.mean([costs_ns.get(r, 0.0) for r in typical])
            tail_share = float(min(1.0, max(0.0, explained / extra)))
    return Figures(len(affected), float(np.mean(affected)) / 1e6 if affected else 0.0, tail_share, float(min(1.0, share)))


def enough(traffic: RouteTraffic, affected: int, measured: int, minimum: int) -> bool:
    """A route finding needs ``minimum`` affected requests, or all measured ones when fewer were measured."""
    return affected >= min(minimum, max(measured, 1))


def examples(traffic: RouteTraffic, costs_ns: dict[int, float], spans: dict[int, list[Span]] | None = None,
             count: int = 3) -> list[dict]:
    """The affected requests the problem cost most (costliest first, then by id), as evidence: ``{"request": id,
    "profile": its kept profile's id or None, "spans": ids of (up to 5 of) its spans that show it}``."""
    rows = {row.id: row for row in traffic.requests}
    ranked = sorted((-cost, request) for request, cost in costs_ns.items() if cost > 0 and request in rows)
    return [{"request": request, "profile": rows[request].profile_id,
             "spans": [s.span_id for s in (spans or {}).get(request, [])[:5]]}
            for _, request in ranked[:count]]


def kept_profiles(window: Window, traffic: RouteTraffic) -> list[tuple[RequestRow, Profile]]:
    """(request, its stored profile) for the route's requests whose profile the window holds."""
    return [(row, window.profiles[row.profile_id]) for row in traffic.requests
            if row.profile_id is not None and row.profile_id in window.profiles]


def profile_figures(profile: Profile, spent_ns: float) -> Figures:
    """Figures of a problem in an attach profile alone (no requests): its time in all, and its
    share of the profile's sampled time."""
    total = float(profile.columns()["weight_ns"].sum()) if profile.sample_count else 0.0
    return Figures(0, spent_ns / 1e6, 0.0, spent_ns / total if total else 0.0)


def statements_in(spans: list[Span]) -> list[tuple[str, Span]]:
    """(statement, span) of the database spans among ``spans`` that are not inside another
    database span of them (an ORM's span around its driver's span for the same statement counts once)."""
    with_statement = [(statement_of(span), span) for span in spans]
    db_ids = {span.span_id for statement, span in with_statement if statement is not None}
    return [(statement, span) for statement, span in with_statement if statement is not None and span.parent_id not in db_ids]
