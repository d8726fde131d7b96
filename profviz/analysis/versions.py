"""What a deploy changed: per route, the latency of version A against version B, and which
requests' profiles to diff to see why (B's slow requests against A's)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .routes import RouteStats, latency_ns, route_table

TAIL_PERCENTILE = 90.0  # the slow requests compared: at or above their version's P90 of the route


@dataclass
class VersionRoute:
    """One (route, method) in versions A and B (None where a version has no request of it)."""

    route: str
    method: str
    a: RouteStats | None
    b: RouteStats | None

    @property
    def p95_change(self) -> float | None:
        """B's P95 over A's, minus 1 (0.25: 25% slower); None unless both versions served the route."""
        if self.a is None or self.b is None or self.a.p95_ms <= 0:
            return None
        return self.b.p95_ms / self.a.p95_ms - 1


def compare_versions(columns_a: dict[str, list], columns_b: dict[str, list], latency: str = "app") -> list[VersionRoute]:
    """Each route's stats in both versions' request columns, the largest P95 increase (in ms) first,
    then the routes one version alone served."""
    table_a = {(r.route, r.method): r for r in route_table(columns_a, latency=latency)}
    table_b = {(r.route, r.method): r for r in route_table(columns_b, latency=latency)}
    rows = [VersionRoute(route, method, table_a.get((route, method)), table_b.get((route, method)))
            for route, method in sorted(set(table_a) | set(table_b))]

    def order(row: VersionRoute) -> tuple:
        both = row.a is not None and row.b is not None
        return (not both, -(row.b.p95_ms - row.a.p95_ms) if both else 0.0, row.route, row.method)

    return sorted(rows, key=order)


def slow_requests(columns: dict[str, list], route: str, method: str, latency: str = "app",
                  percentile: float = TAIL_PERCENTILE) -> list[tuple[int, int | None]]:
    """(latency ns, profile id or None) of the route's requests at or above its ``percentile`` of ``latency``, slowest first."""
    chosen = [i for i, (r, m) in enumerate(zip(columns["route"], columns["method"])) if r == route and m == method]
    if not chosen:
        return []
    values = latency_ns(columns, latency)[np.asarray(chosen)]
    threshold = float(np.percentile(values, percentile))
    slow = [(int(v), columns["profile_id"][i]) for i, v in zip(chosen, values.tolist()) if v >= threshold]
    return sorted(slow, key=lambda item: -item[0])


def slow_profiled(columns: dict[str, list], route: str, method: str, latency: str = "app",
                  percentile: float = TAIL_PERCENTILE, limit: int = 50) -> list[int]:
    """The profile ids of :func:`slow_requests` that kept one, slowest first, at most ``limit``."""
    return [profile_id for _, profile_id in slow_requests(columns, route, method, latency, percentile) if profile_id][:limit]
