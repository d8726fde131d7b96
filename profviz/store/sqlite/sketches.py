"""The ``latency_sketches`` table: per (route, method) and minute, and per hour, latency sketches
(:mod:`profviz.model.latency_sketch`) of the requests stored, kept as rows move into ``requests``
(:func:`add_requests`, in the same transaction), so that a window's percentiles come from merging
a few sketches: its whole hours, and the minutes at its edges (:func:`route_sketches`)."""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np

from ...model.latency_sketch import LatencySketch, RouteSketch, SketchError
from .database import Database

MINUTE_NS = 60 * 10**9
HOUR_NS = 3600 * 10**9
GRAINS_NS = (MINUTE_NS, HOUR_NS)
BACKFILL_ROWS = 200_000  # requests read at a time when a store from before the sketches is migrated

_READ_NEW = "SELECT route, method, start_ns, duration_ns, queue_ns, status, error FROM requests WHERE id >= ? AND id < ?"
_UPSERT = ("INSERT INTO latency_sketches (route, method, grain_ns, start_ns, errors, app, total) VALUES (?, ?, ?, ?, ?, ?, ?)"
           " ON CONFLICT (route, method, grain_ns, start_ns) DO UPDATE SET errors = excluded.errors, app = excluded.app,"
           " total = excluded.total")


def add_requests(c: sqlite3.Connection, first_id: int, end_id: int | None = None) -> None:
    """Merge the requests with ids from ``first_id`` (to ``end_id``, excluded) into their minutes'
    and hours' sketches (inside the caller's transaction): one read of the stored sketches they
    touch and one write of the merged ones per grain."""
    rows = c.execute(_READ_NEW, (first_id, end_id if end_id is not None else 1 << 62)).fetchall()
    if not rows:
        return
    routes, methods, starts, durations, queues, statuses, errors = zip(*rows)
    count = len(rows)
    keys: dict[tuple[str, str], int] = {}
    key_of = np.fromiter((keys.setdefault(key, len(keys)) for key in zip(routes, methods)), dtype=np.int64, count=count)
    names = list(keys)
    starts_arr = np.asarray(starts, dtype=np.int64)
    apps = np.asarray(durations, dtype=np.int64)
    known = np.fromiter((q is not None for q in queues), dtype=bool, count=count)
    totals = apps + np.fromiter((q or 0 for q in queues), dtype=np.int64, count=count)
    failed = np.fromiter((bool(e) or (s is not None and s >= 500) for s, e in zip(statuses, errors)), dtype=bool, count=count)
    for grain in GRAINS_NS:
        buckets = starts_arr // grain * grain
        order = np.lexsort((buckets, key_of))
        ordered_keys, ordered_buckets = key_of[order], buckets[order]
        edges = np.flatnonzero((np.diff(ordered_keys) != 0) | (np.diff(ordered_buckets) != 0)) + 1
        stored = _stored(c, grain, int(buckets.min()), int(buckets.max()), set(names))
        starts_at = np.concatenate(([0], edges))
        app_sketches = LatencySketch.of_groups(apps, order, starts_at)
        any_known = np.add.reduceat(known[order], starts_at, dtype=np.int64) > 0
        total_sketches = LatencySketch.of_groups(totals, order, starts_at) if any_known.any() else None
        errors_by_group = np.add.reduceat(failed[order], starts_at, dtype=np.int64)
        writes = []
        for index, at in enumerate(starts_at.tolist()):
            route, method = names[int(ordered_keys[at])]
            bucket = int(ordered_buckets[at])
            total = total_sketches[index] if total_sketches is not None and any_known[index] else None
            writes.append(_merged(route, method, grain, bucket, int(errors_by_group[index]), app_sketches[index], total,
                                  stored.get((route, method, bucket))))
        c.executemany(_UPSERT, writes)


def _stored(c: sqlite3.Connection, grain: int, low: int, high: int, keys: set) -> dict[tuple[str, str, int], tuple]:
    """The stored sketches of ``grain`` from ``low`` to ``high`` of the (route, method) ``keys``."""
    found = {}
    for route, method, start, errors, app, total in c.execute(
            "SELECT route, method, start_ns, errors, app, total FROM latency_sketches WHERE grain_ns = ? AND start_ns BETWEEN ? AND ?",
            (grain, low, high)):
        if (route, method) in keys:
            found[(route, method, start)] = (errors, app, total)
    return found


def _merged(route: str, method: str, grain: int, start: int, errors: int, app: LatencySketch, total: LatencySketch | None,
            stored: tuple | None) -> tuple:
    """The row to write: the new sketches merged with the stored ones."""
    if stored is not None:
        try:
            old_app = LatencySketch.decode(stored[1])
            old_total = LatencySketch.decode(stored[2]) if stored[2] is not None else None
        except SketchError:  # a damaged sketch: counted again from what comes next, not kept failing
            old_app, old_total = LatencySketch.empty(), None
        if total is not None or old_total is not None:  # queue times now known in part of the bucket: unknown ones count 0
            total = LatencySketch.merge_all([old_total or old_app, total or app])
        app = LatencySketch.merge_all([old_app, app])
        errors += int(stored[0])
    return route, method, grain, start, errors, app.encode(), None if total is None else total.encode()


def backfill(c: sqlite3.Connection) -> None:
    """Sketch every request already stored (a store migrated from before the sketches)."""
    last = c.execute("SELECT max(id) FROM requests").fetchone()[0]
    if last is None:
        return
    for first in range(1, last + 1, BACKFILL_ROWS):
        add_requests(c, first, first + BACKFILL_ROWS)


def route_sketches(store: Database, *, since_ns: int | None = None, until_ns: int | None = None) -> list[RouteSketch]:
    """See :meth:`profviz.store.base.Store.route_sketches`."""
    from .requests import materialize_requests

    materialize_requests(store)
    low = -(1 << 62) if since_ns is None else since_ns // MINUTE_NS * MINUTE_NS
    high = (1 << 62) if until_ns is None else -(-until_ns // MINUTE_NS) * MINUTE_NS  # the minute holding until_ns, whole
    hours_from = -(-low // HOUR_NS) * HOUR_NS
    hours_to = high // HOUR_NS * HOUR_NS
    if hours_from < hours_to:  # whole hours in the middle, minutes at the edges
        sql = ("SELECT route, method, grain_ns, start_ns, errors, app, total FROM latency_sketches WHERE"
               " (grain_ns = ? AND start_ns >= ? AND start_ns < ?) OR (grain_ns = ? AND ((start_ns >= ? AND start_ns < ?)"
               " OR (start_ns >= ? AND start_ns < ?)))")
        params: list[Any] = [HOUR_NS, hours_from, hours_to, MINUTE_NS, low, hours_from, hours_to, high]
    else:
        sql = "SELECT route, method, grain_ns, start_ns, errors, app, total FROM latency_sketches WHERE grain_ns = ? AND start_ns >= ? AND start_ns < ?"
        params = [MINUTE_NS, low, high]
    found: dict[tuple[str, str], list] = {}
    for route, method, grain, start, errors, app, total in store.read(sql, params):
        try:
            sketches = (LatencySketch.decode(app), LatencySketch.decode(total) if total is not None else None)
        except SketchError:
            continue  # a damaged row: that bucket's requests are missing from the sketches, not from the rows
        entry = found.setdefault((route, method), [0, [], [], False, start, start + grain])
        entry[0] += int(errors)
        entry[1].append(sketches[0])
        entry[2].append(sketches[1] if sketches[1] is not None else sketches[0])
        entry[3] = entry[3] or sketches[1] is not None
        entry[4], entry[5] = min(entry[4], start), max(entry[5], start + grain)
    return [RouteSketch(route, method, errors, LatencySketch.merge_all(apps), LatencySketch.merge_all(totals) if any_total else None,
                        first, end)
            for (route, method), (errors, apps, totals, any_total, first, end) in sorted(found.items())]
