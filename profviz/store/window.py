"""A window of stored traffic as the findings detectors read it (:class:`~profviz.model.window.Window`)."""

from __future__ import annotations

from ..model.window import Explain, Window
from .base import ProfileNotFound, Store
from .encoding import EncodingError

PROFILES_PER_ROUTE = 40
MAX_SPANS = 2_000_000


def load_window(store: Store, *, since_ns: int | None = None, until_ns: int | None = None, route: str | None = None,
                method: str | None = None, profiles_per_route: int = PROFILES_PER_ROUTE, explain: Explain | None = None) -> Window:
    """The requests started in [since_ns, until_ns) (of one route and method, if given), the spans
    of their processes meanwhile, and per route at most ``profiles_per_route`` of their kept
    profiles: the slowest half, and the rest spread over the others. A profile that cannot be
    decoded is left out."""
    requests = store.query_requests(since_ns=since_ns, until_ns=until_ns, route=route, method=method)
    if not requests:
        return Window(explain=explain)
    start = min(row.start_ns for row in requests)
    end = max(row.start_ns + row.duration_ns for row in requests) + 1
    spans = store.query_span_facts(pids={row.pid for row in requests}, start_ns=start, end_ns=end, limit=MAX_SPANS)
    chosen: dict[tuple[str, str], list] = {}
    for row in requests:
        if row.profile_id is not None:
            chosen.setdefault((row.method, row.route), []).append(row)
    profiles = {}
    for rows in chosen.values():
        for row in _spread(sorted(rows, key=lambda r: -r.duration_ns), profiles_per_route):
            try:
                profiles[row.profile_id] = store.load_profile(row.profile_id)
            except (EncodingError, ProfileNotFound):
                continue
    return Window(requests=requests, profiles=profiles, spans=spans, explain=explain)


def _spread(rows: list, count: int) -> list:
    if len(rows) <= count:
        return rows
    slowest = rows[: count // 2]
    rest = rows[count // 2:]
    step = len(rest) / (count - len(slowest))
    return slowest + [rest[int(i * step)] for i in range(count - len(slowest))]
