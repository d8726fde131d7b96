"""A window of stored traffic as the findings detectors read it (:class:`~profviz.model.window.Window`),
and the profiles of chosen requests."""

from __future__ import annotations

from typing import Callable, Iterable

from ..model import Profile, RequestRow
from ..model.window import Explain, Window, gc_paused
from .base import REQUEST_COLUMN_NAMES, ProfileNotFound, Store
from .encoding import EncodingError

PROFILES_PER_ROUTE = 20
STALLS_KEPT = 200


def load_window(store: Store, *, since_ns: int | None = None, until_ns: int | None = None, route: str | None = None,
                method: str | None = None, profiles_per_route: int = PROFILES_PER_ROUTE, explain: Explain | None = None,
                labels: dict[str, str] | None = None) -> Window:
    """The requests started in [since_ns, until_ns) (of one route and method, if given; read as
    columns, their path left as their route), the statements and calls of their processes
    meanwhile (:meth:`Store.span_facts`), and per route at most ``profiles_per_route`` of their
    kept profiles: the slowest half, and the rest spread over the others; the event loop stalls
    of their processes meanwhile (the longest STALLS_KEPT). A profile that cannot be decoded is left out."""
    with gc_paused():
        return _load_window(store, since_ns, until_ns, route, method, profiles_per_route, explain, labels)


def _load_window(store: Store, since_ns, until_ns, route, method, profiles_per_route: int, explain, labels) -> Window:
    columns = store.request_columns(since_ns=since_ns, until_ns=until_ns, route=route, method=method, labels=labels)
    requests = [
        RequestRow(pid, tid, route_name, method_name, route_name, status, start, duration, cpu_ns=cpu or 0,
                   response_bytes=size or 0, error=error, profile_id=profile_id,
                   labels={} if capacity is None else {"capacity": capacity}, id=request_id, queue_ns=queue)
        for request_id, pid, tid, route_name, method_name, status, error, start, duration, cpu, profile_id, size, queue, capacity
        in zip(*(columns[name] for name in REQUEST_COLUMN_NAMES))
    ]
    if not requests:
        return Window(explain=explain)
    start = min(columns["start_ns"])
    end = max(s + d for s, d in zip(columns["start_ns"], columns["duration_ns"])) + 1
    facts = store.span_facts(pids=set(columns["pid"]), start_ns=start, end_ns=end)
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
    return Window(requests=requests, profiles=profiles, span_facts=facts, explain=explain,
                  stalls=_stalls(store, set(columns["pid"]), start, end))


def _stalls(store: Store, pids: set, start: int, end: int) -> dict:
    """The ``loop_stall`` profiles of ``pids`` that began in [start, end), the longest STALLS_KEPT."""
    metas = [meta for meta in store.list_profiles(kind="loop_stall")
             if meta.get("pid") in pids and start <= (meta.get("start_ns") or 0) < end]
    metas.sort(key=lambda meta: -(meta.get("duration_ns") or 0))
    stalls = {}
    for meta in metas[:STALLS_KEPT]:
        try:
            stalls[meta["id"]] = store.load_profile(meta["id"])
        except (EncodingError, ProfileNotFound):
            continue
    return stalls


def _spread(rows: list, count: int) -> list:
    if len(rows) <= count:
        return rows
    slowest = rows[: count // 2]
    rest = rows[count // 2:]
    step = len(rest) / (count - len(slowest))
    return slowest + [rest[int(i * step)] for i in range(count - len(slowest))]


def loaded_profiles(load: Callable[[int], Profile], profile_ids: Iterable[int]) -> list[Profile]:
    """The profiles of ``profile_ids`` that ``load`` (a store's ``load_profile``, or a cache of it)
    still finds, in order: one deleted meanwhile is left out."""
    found = []
    for profile_id in profile_ids:
        try:
            found.append(load(profile_id))
        except ProfileNotFound:
            continue
    return found
