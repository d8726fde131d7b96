"""Tail capture: which sampled requests keep their profile, from each route's running percentiles.

A request is kept as ``"tail"`` when it is slower than ``tail_threshold_ms`` or than its route's
running ``tail_percentile`` (once the route has seen ``tail_min_requests``; before that, when it is
the slowest of its route so far), within a per-route budget of ``tail_max_per_minute``; a few
typical ones (between the route's running P40 and P60) are kept as ``"baseline"`` to compare with. Every sampled request's samples are also summed per route
into an aggregate. Writer thread only.
"""

from __future__ import annotations

import time
from bisect import bisect_left, insort
from collections import deque

from .options import Options

ROUTE_WINDOW = 1000  # recent durations per route behind the running percentiles
RECOMPUTE_EVERY = 20  # requests between updates of a route's cached percentiles


class TokenBucket:
    """``per_minute`` tokens a minute, at most ``saved_s`` seconds' worth saved up (full at the start)."""

    def __init__(self, per_minute: float, saved_s: float = 10.0):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * saved_s)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def percentile(ordered: list[int], q: float) -> float:
    """The ``q``-th percentile of sorted values, interpolated linearly (numpy's default method)."""
    position = (len(ordered) - 1) * q / 100.0
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


class RouteAggregate:
    """Summed sampler samples of one route over one window."""

    def __init__(self, start_ns: int):
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.requests = 0
        self.samples = 0
        self.weights: dict[tuple[int, int, str | None], int] = {}  # (stack id, state, wait reason) -> summed weight

    def add(self, start_ns: int, duration_ns: int, samples: list) -> None:
        self.requests += 1
        self.samples += len(samples)
        self.end_ns = max(self.end_ns, start_ns + duration_ns)
        weights = self.weights
        for _, stack, state, weight, reason in samples:
            key = (stack, state, reason)
            weights[key] = weights.get(key, 0) + weight


class RouteState:
    """One (route, method): its recent durations, cached percentiles, budgets and current aggregate.

    The window of the last ``ROUTE_WINDOW`` durations is kept twice: in arrival order (to know
    which one leaves) and sorted (``bisect``: a percentile is an index, never a sort).
    """

    def __init__(self, options: Options):
        self.durations: deque[int] = deque()
        self.ordered: list[int] = []
        self.seen = 0
        self.p_tail: float | None = None
        self.p40: float | None = None
        self.p60: float | None = None
        self.tail_budget = TokenBucket(options.tail_max_per_minute)
        # A minute's worth saved up: a route's first minute already has typical requests to compare with.
        self.baseline_budget = TokenBucket(options.baseline_per_minute, 60.0) if options.baseline_per_minute > 0 else None
        self.slowest_ns = 0
        self.aggregate: RouteAggregate | None = None  # taken away when it is stored

    def observe(self, duration_ns: int, start_ns: int, samples: list, tail_percentile: float | None) -> None:
        """Add one request: its duration to the window, its samples (if any) to the aggregate. The
        cached percentiles are refreshed after each of the route's first ``RECOMPUTE_EVERY``
        requests, then every ``RECOMPUTE_EVERY`` requests."""
        if samples:
            if self.aggregate is None:
                self.aggregate = RouteAggregate(start_ns)
            self.aggregate.add(start_ns, duration_ns, samples)
        self.slowest_ns = max(self.slowest_ns, duration_ns)
        durations, ordered = self.durations, self.ordered
        durations.append(duration_ns)
        insort(ordered, duration_ns)
        if len(durations) > ROUTE_WINDOW:
            del ordered[bisect_left(ordered, durations.popleft())]
        self.seen += 1
        if self.seen <= RECOMPUTE_EVERY or self.seen % RECOMPUTE_EVERY == 0:
            self.p40, self.p60 = percentile(ordered, 40.0), percentile(ordered, 60.0)
            self.p_tail = percentile(ordered, tail_percentile) if tail_percentile is not None else None


class TailCapture:
    """Per route state and the keep-or-drop decision; ``counts`` are the middleware's counters."""

    def __init__(self, options: Options, counts: dict[str, int]):
        self.options = options
        self.threshold_ns = None if options.tail_threshold_ms is None else int(options.tail_threshold_ms * 1e6)
        self.counts = counts
        self.routes: dict[tuple[str, str], RouteState] = {}

    def observe(self, key: tuple[str, str], duration_ns: int, start_ns: int, samples: list) -> str | None:
        """Add a sampled request of route ``key`` = (route, method); ``"tail"``, ``"baseline"`` or
        None (its profile is not kept) when it has samples, else None."""
        state = self.routes.get(key)
        if state is None:
            state = self.routes[key] = RouteState(self.options)
        kind = self._decide(state, duration_ns) if samples else None
        state.observe(duration_ns, start_ns, samples, self.options.tail_percentile)
        return kind

    def _decide(self, state: RouteState, duration_ns: int) -> str | None:
        slow = self.threshold_ns is not None and duration_ns >= self.threshold_ns
        warm = state.seen >= self.options.tail_min_requests
        if not slow and self.options.tail_percentile is not None:
            if warm:
                slow = state.p_tail is not None and duration_ns > state.p_tail
            else:  # before the percentile means anything: the slowest the route has seen so far
                slow = duration_ns > state.slowest_ns
        if slow:
            if state.tail_budget.take():
                return "tail"
            self.counts["tail_rate_limited"] += 1
            return None
        if warm and state.baseline_budget is not None and state.p40 is not None and state.p40 <= duration_ns <= state.p60:
            if state.baseline_budget.take():
                return "baseline"
        self.counts["typical_dropped"] += 1
        return None

    def due_aggregates(self, now_ns: int, interval_ns: int, force: bool) -> list[tuple[tuple[str, str], RouteAggregate]]:
        """The aggregates whose window is over (all when ``force``), taken away from their routes."""
        due = []
        for key, state in self.routes.items():
            aggregate = state.aggregate
            if aggregate is None or not force and now_ns - aggregate.start_ns < interval_ns:
                continue
            state.aggregate = None
            if aggregate.weights:
                due.append((key, aggregate))
        return due
