"""The ``latency_sketches`` table: per (route, method, origin) and minute, and per hour, latency sketches
(:mod:`profviz.store.sketch_rows`) of the requests stored, kept as rows move into ``requests``
(:func:`add_requests`, in the same transaction), so that a window's percentiles come from merging
a few sketches: its whole hours, and the minutes at its edges (:func:`route_sketches`)."""

from __future__ import annotations

import sqlite3

from ...model.latency_sketch import RouteSketch
from ..sketch_rows import KEY_COLUMNS, KEY_SIZE, SKETCH_COLUMNS, merged, route_sketches_of, sketch_rows, window_where
from .database import Database

BACKFILL_ROWS = 200_000  # requests read at a time when a store from before the sketches is migrated

_LABEL = "coalesce(CAST(json_extract(labels, '$.{}') AS TEXT), '')"
_READ_NEW = (f"SELECT route, method, start_ns, duration_ns, queue_ns, status, error, {_LABEL.format('service')},"
             f" {_LABEL.format('host')}, {_LABEL.format('version')}, {_LABEL.format('env')} FROM requests WHERE id >= ? AND id < ?")
_UPSERT = (f"INSERT INTO latency_sketches ({SKETCH_COLUMNS}) VALUES ({', '.join('?' * (KEY_SIZE + 3))})"
           f" ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET errors = excluded.errors, app = excluded.app,"
           " total = excluded.total")


def add_requests(c: sqlite3.Connection, first_id: int, end_id: int | None = None) -> None:
    """Merge the requests with ids from ``first_id`` (to ``end_id``, excluded) into their minutes'
    and hours' sketches (inside the caller's transaction, which holds the write lock): one read of
    the stored sketches they touch and one write of the merged ones."""
    rows = c.execute(_READ_NEW, (first_id, end_id if end_id is not None else 1 << 62)).fetchall()
    if not rows:
        return
    columns = list(zip(*rows))
    fresh = sketch_rows(*columns[:7], list(zip(*columns[7:])))
    keys = {row[:KEY_SIZE] for row in fresh}
    stored: dict[tuple, tuple] = {}
    for grain in {row.grain_ns for row in fresh}:
        starts = [row.start_ns for row in fresh if row.grain_ns == grain]
        for found in c.execute(f"SELECT {SKETCH_COLUMNS} FROM latency_sketches WHERE grain_ns = ? AND start_ns BETWEEN ? AND ?",
                               (grain, min(starts), max(starts))):
            if tuple(found[:KEY_SIZE]) in keys:
                stored[tuple(found[:KEY_SIZE])] = tuple(found[KEY_SIZE:])
    c.executemany(_UPSERT, [merged(row, stored.get(row[:KEY_SIZE])) for row in fresh])


def backfill(c: sqlite3.Connection) -> None:
    """Sketch every request already stored (a store migrated from before the sketches)."""
    last = c.execute("SELECT max(id) FROM requests").fetchone()[0]
    if last is None:
        return
    for first in range(1, last + 1, BACKFILL_ROWS):
        add_requests(c, first, first + BACKFILL_ROWS)


def route_sketches(store: Database, *, since_ns: int | None = None, until_ns: int | None = None,
                   labels: dict[str, str] | None = None) -> list[RouteSketch]:
    """See :meth:`profviz.store.base.Store.route_sketches`."""
    from .requests import materialize_requests

    materialize_requests(store)
    where, params = window_where(since_ns, until_ns, labels)
    return route_sketches_of(store.read(f"SELECT {SKETCH_COLUMNS} FROM latency_sketches WHERE {where}", params))
