"""What every request-based detector needs: a window's requests by route, the statements and calls
each request ran (vectorised over the window's span facts), and how a per-request cost turns into
a finding's figures (requests, impact, tail share, share)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...model import Profile, RequestRow
from ...model.window import Window

TAIL_PERCENTILE = 95
TYPICAL_BAND = (25, 75)

SEQUENTIAL_SHARE = 0.5


@dataclass
class RouteTraffic:
    """One route's requests in a window (by start), its percentiles and its tail and typical ids;
    ``indices``: the requests' positions in ``window.requests``."""

    key: str  # "GET /posts", as findings name routes
    requests: list[RequestRow]
    p50_ms: float
    p95_ms: float
    tail: set[int] = field(default_factory=set)  # request ids at or over the route's P95
    typical: set[int] = field(default_factory=set)  # request ids between its P25 and P75
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _durations: dict | None = field(default=None, repr=False)
    _rows: dict | None = field(default=None, repr=False)

    def duration_ns(self) -> dict[int, int]:
        """Request id -> duration (made once)."""
        if self._durations is None:
            self._durations = {row.id: row.duration_ns for row in self.requests}
        return self._durations

    def by_id(self) -> dict[int, RequestRow]:
        """Request id -> request (made once)."""
        if self._rows is None:
            self._rows = {row.id: row for row in self.requests}
        return self._rows


def route_key(row: RequestRow) -> str:
    return f"{row.method} {row.route}"


def routes_of(window: Window) -> dict[str, RouteTraffic]:
    """The window's requests grouped by route (method and route), with tail and typical sets (computed once per window)."""
    return window.once("routes", lambda: _routes_of(window))


def _routes_of(window: Window) -> dict[str, RouteTraffic]:
    grouped: dict[str, list[int]] = {}
    for index, row in enumerate(window.requests):
        grouped.setdefault(route_key(row), []).append(index)
    traffic = {}
    for key, indices in grouped.items():
        rows = [window.requests[i] for i in indices]
        durations = np.array([row.duration_ns for row in rows], dtype=np.float64)
        p25, p50, p75, p95 = np.percentile(durations, [TYPICAL_BAND[0], 50, TYPICAL_BAND[1], TAIL_PERCENTILE])
        ids = np.array([row.id for row in rows], dtype=np.int64)
        tail = set(ids[durations >= p95].tolist())
        typical = set(ids[(durations >= p25) & (durations <= p75)].tolist())
        traffic[key] = RouteTraffic(key, rows, p50 / 1e6, p95 / 1e6, tail, typical, np.array(indices, dtype=np.int64))
    return traffic


@dataclass
class RequestFacts:
    """The window's span facts placed in its requests: ``request`` (per fact, the position of the
    request it started in on its thread, or -1), ``duration`` per fact, and per distinct (request,
    key) pair: ``pair_request``, ``pair_key``, ``pair_count``, ``pair_total`` (ns) and
    ``pair_wall`` (ns of the union of their intervals: below the total when they overlapped)."""

    request: np.ndarray
    duration: np.ndarray
    pair_request: np.ndarray
    pair_key: np.ndarray
    pair_count: np.ndarray
    pair_total: np.ndarray
    key_kind: dict[int, str]
    pair_wall: np.ndarray

    def measured(self, window: Window) -> set[int]:
        """Ids of the requests that ran any statement or call."""
        return set(request_ids(window)[np.unique(self.request[self.request >= 0])].tolist())


def request_facts(window: Window) -> RequestFacts:
    """The window's facts placed in its requests (computed once per window)."""
    return window.once("request_facts", lambda: _request_facts(window))


def _request_facts(window: Window) -> RequestFacts:
    facts = window.facts
    count = len(window.requests)
    placed = np.full(len(facts), -1, dtype=np.int64)
    if count and len(facts):
        pid = np.array([r.pid for r in window.requests], dtype=np.int64)
        tid = np.array([r.tid for r in window.requests], dtype=np.int64)
        start = np.array([r.start_ns for r in window.requests], dtype=np.int64)
        end = start + np.array([r.duration_ns for r in window.requests], dtype=np.int64)
        threads, thread_of = np.unique(np.concatenate([pid * (1 << 32) + tid, facts.pid * (1 << 32) + facts.tid]), return_inverse=True)
        request_thread, fact_thread = thread_of[:count], thread_of[count:]
        origin = min(int(start.min()), int(facts.start_ns.min()))
        shift = 1 << 47  # thread number above, ns since the window's start below (about 39 hours)
        request_key = request_thread * shift + (start - origin)
        order = np.argsort(request_key, kind="stable")
        found = np.searchsorted(request_key[order], fact_thread * shift + (facts.start_ns - origin), side="right") - 1
        candidate = order[np.maximum(found, 0)]
        inside = (found >= 0) & (request_thread[candidate] == fact_thread) & (facts.start_ns <= end[candidate])
        placed = np.where(inside, candidate, -1)
    duration = facts.end_ns - facts.start_ns
    mask = placed >= 0
    width = int(facts.key.max()) + 1 if len(facts) else 1
    pairs, inverse = np.unique(placed[mask] * width + facts.key[mask], return_inverse=True)
    totals = np.bincount(inverse, weights=duration[mask]) if len(pairs) else np.zeros(0)
    counts = np.bincount(inverse) if len(pairs) else np.zeros(0, np.int64)
    walls = _union_per_group(inverse, facts.start_ns[mask], facts.end_ns[mask], len(pairs))
    return RequestFacts(placed, duration, pairs // width, pairs % width, counts.astype(np.int64), totals.astype(np.float64),
                        {key_id: key.kind for key_id, key in facts.keys.items()}, walls)


def _union_per_group(group: np.ndarray, start: np.ndarray, end: np.ndarray, groups: int) -> np.ndarray:
    """Per group, the ns covered by the union of its [start, end) intervals (vectorised sweep: the
    groups, each from its own first start, are laid end to end, so one running maximum serves all)."""
    if not len(group):
        return np.zeros(groups)
    order = np.lexsort((start, group))
    g, s, e = group[order], start[order], np.maximum(end, start)[order]
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])  # each group's first row
    base = s[first]  # its first start
    counts = np.diff(np.r_[first, len(g)])
    s, e = s - np.repeat(base, counts), e - np.repeat(base, counts)  # each group from 0
    spans = np.maximum.reduceat(e, first) + 1
    offsets = np.repeat(np.r_[0, np.cumsum(spans)[:-1]], counts)  # sum of the groups' own spans: request-sized
    s, e = s + offsets, e + offsets
    reach = np.maximum.accumulate(e)  # furthest end so far: groups never overlap, so it never crosses one
    before = np.empty_like(reach)
    before[0] = -1
    before[1:] = np.where(g[1:] == g[:-1], reach[:-1], -1)
    covered = np.maximum(0, e - np.maximum(s, before))
    return np.bincount(g, weights=covered, minlength=groups).astype(np.float64)


def windows_of(window: Window, request_index: int, key: int | None = None) -> list[tuple[int, int]]:
    """[start, end) of the facts of one request (of one key, if given)."""
    placed = request_facts(window)
    chosen = placed.request == request_index
    if key is not None:
        chosen &= window.facts.key == key
    return list(zip(window.facts.start_ns[chosen].tolist(), window.facts.end_ns[chosen].tolist()))


def span_ids_of(window: Window, request_index: int, key: int | None = None, most: int = 5) -> list[str]:
    """The span ids (hex) of up to ``most`` facts of one request (of one key, if given)."""
    placed = request_facts(window)
    chosen = placed.request == request_index
    if key is not None:
        chosen &= window.facts.key == key
    return [window.facts.span_hex(i) for i in np.flatnonzero(chosen)[:most].tolist()]


@dataclass
class Figures:
    """A finding's figures from per-request costs (see :class:`~profviz.analysis.findings.Finding`)."""

    requests: int
    impact_ms: float
    tail_share: float
    share: float

    def fields(self) -> dict:
        """The figures as a Finding's keyword arguments, rounded for people."""
        return {"requests": self.requests, "impact_ms": round(self.impact_ms, 3), "tail_share": round(self.tail_share, 3),
                "share": round(self.share, 3)}


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


def reportable(traffic: RouteTraffic, numbers: Figures, measured: int, minimum: int, min_share: float) -> bool:
    """A route finding needs ``minimum`` affected requests (all measured ones when fewer were
    measured) and at least ``min_share`` of the measured requests' time."""
    return numbers.requests > 0 and enough(traffic, numbers.requests, measured, minimum) and numbers.share >= min_share


@dataclass
class SampledRoute:
    """A route where a sample-based measure found a problem worth a finding: the cost per affected
    request, the call sites and ``extra`` counts the measure gave, and the figures."""

    traffic: RouteTraffic
    cost: dict[int, float]
    sites: Counter
    extra: Counter
    numbers: Figures


Measure = Callable[[Profile], "tuple[float, Counter, Counter | None]"]


def sampled_routes(window: Window, measure: Measure, min_ns: float, minimum: int, min_share: float) -> list[SampledRoute]:
    """Per route, the requests whose kept profile ``measure`` (ns of the problem, by call site,
    and any extra counts) finds at least ``min_ns`` in, over the requests with a kept profile;
    only routes where that is :func:`reportable`."""
    found = []
    for traffic in routes_of(window).values():
        kept = kept_profiles(window, traffic)
        cost, sites, extra = {}, Counter(), Counter()
        for row, profile in kept:
            spent, by_site, more = measure(profile)
            if spent >= min_ns:
                cost[row.id] = spent
                sites.update(by_site)
                extra.update(more or {})
        numbers = figures(traffic, cost, {row.id for row, _ in kept})
        if reportable(traffic, numbers, len(kept), minimum, min_share):
            found.append(SampledRoute(traffic, cost, sites, extra, numbers))
    return found


def enough(traffic: RouteTraffic, affected: int, measured: int, minimum: int) -> bool:
    """A route finding needs ``minimum`` affected requests, or all measured ones when fewer were measured."""
    return affected >= min(minimum, max(measured, 1))


def examples(traffic: RouteTraffic, costs_ns: dict[int, float], spans=None, count: int = 3) -> list[dict]:
    """The affected requests the problem cost most (costliest first, then by id), as evidence:
    ``{"request": id, "profile": its kept profile's id or None, "spans": span ids that show it}``;
    ``spans(request_id)`` gives those ids (none when not given)."""
    rows = traffic.by_id()
    ranked = sorted((-cost, request) for request, cost in costs_ns.items() if cost > 0 and request in rows)
    return [{"request": request, "profile": rows[request].profile_id, "spans": spans(request) if spans else []}
            for _, request in ranked[:count]]


def kept_profiles(window: Window, traffic: RouteTraffic) -> list[tuple[RequestRow, Profile]]:
    """(request, its stored profile) for the route's requests whose profile the window holds."""
    return [(row, window.profiles[row.profile_id]) for row in traffic.requests
            if row.profile_id is not None and row.profile_id in window.profiles]


def profile_figures(profile: Profile, spent_ns: float, min_ns: float, min_share: float) -> Figures | None:
    """Figures of a problem in an attach profile alone (no requests): its time in all, and its
    share of the profile's sampled time; None when it took less than ``min_ns`` or ``min_share``."""
    total = float(profile.columns()["weight_ns"].sum()) if profile.sample_count else 0.0
    numbers = Figures(0, spent_ns / 1e6, 0.0, spent_ns / total if total else 0.0)
    return numbers if spent_ns >= min_ns and numbers.share >= min_share else None


@dataclass
class KeyGroup:
    """One (route, key) of a window: per affected request id its cost, count and position."""

    traffic: RouteTraffic
    key: int
    cost: dict[int, float]
    count: dict[int, int]
    position: dict[int, int]


def repeated_groups(window: Window, kind: str, min_count: int, min_total_ns: float) -> list[KeyGroup]:
    """(route, key) groups of ``kind`` ("sql" or "http") whose requests ran the key at least
    ``min_count`` times and ``min_total_ns`` in all, one after another (the union of the runs'
    intervals at least SEQUENTIAL_SHARE of their summed time: runs made at once are not waited
    for in turn); a request's cost is all but one run's time."""
    placed = request_facts(window)
    kinds = _of_kind(placed, kind)[placed.pair_key]
    hit = kinds & (placed.pair_count >= min_count) & (placed.pair_total >= min_total_ns)
    hit &= placed.pair_wall >= SEQUENTIAL_SHARE * placed.pair_total  # run one after another, not at once (gather)
    return _groups(window, placed.pair_request[hit], placed.pair_key[hit], placed.pair_count[hit],
                   placed.pair_total[hit] * (placed.pair_count[hit] - 1) / np.maximum(placed.pair_count[hit], 1))


def key_groups(window: Window, kind: str, min_mean_ns: float = 0.0) -> list[KeyGroup]:
    """The (route, key) groups of ``kind`` whose runs took ``min_mean_ns`` on average, a request's
    cost being all the key's time in it."""
    placed = request_facts(window)
    kinds = _of_kind(placed, kind)[placed.pair_key]
    return _groups(window, placed.pair_request[kinds], placed.pair_key[kinds], placed.pair_count[kinds], placed.pair_total[kinds],
                   min_mean_ns)


def _of_kind(placed: RequestFacts, kind: str) -> np.ndarray:
    """Per key id, whether the key is of ``kind``."""
    lookup = np.zeros(max(placed.key_kind, default=0) + 1, dtype=bool)
    lookup[[k for k, found in placed.key_kind.items() if found == kind]] = True
    return lookup


def request_ids(window: Window) -> np.ndarray:
    """The ids of the window's requests, by position (made once)."""
    return window.once("request_ids", lambda: np.array([r.id for r in window.requests], dtype=np.int64))


def _groups(window: Window, requests: np.ndarray, keys: np.ndarray, counts: np.ndarray, costs: np.ndarray,
            min_mean_ns: float = 0.0) -> list[KeyGroup]:
    route_of = np.full(len(window.requests), -1, dtype=np.int64)
    traffics = list(routes_of(window).values())
    for number, traffic in enumerate(traffics):
        route_of[traffic.indices] = number
    groups = []
    if not len(requests):
        return groups
    combined = route_of[requests] * (int(keys.max()) + 1) + keys
    order = np.argsort(combined, kind="stable")
    boundaries = np.flatnonzero(np.diff(combined[order])) + 1
    for members in np.split(order, boundaries):
        if min_mean_ns and costs[members].sum() < min_mean_ns * counts[members].sum():
            continue
        traffic = traffics[int(route_of[requests[members[0]]])]
        positions = requests[members].tolist()
        ids = request_ids(window)[requests[members]].tolist()
        groups.append(KeyGroup(traffic, int(keys[members[0]]), dict(zip(ids, costs[members].tolist())),
                               dict(zip(ids, counts[members].tolist())), dict(zip(ids, positions))))
    return groups
