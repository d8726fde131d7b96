"""Requests in PostgreSQL: a batch written in one transaction (stack nodes, profiles, the rows by
``COPY``, their latency sketches), and read back with the shared queries (:mod:`profviz.store.queries`).

Values PostgreSQL refuses (an int over 64 bits, a string that is not valid Unicode, JSON labels it
cannot parse) drop their row alone, with a notice; a NUL character, which PostgreSQL refuses in
text, is stored as U+FFFD.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from ...model import FIELD_COUNT, REQUEST_FIELDS, RequestBatch, RequestRow, StackNodes
from ...model.latency_sketch import LatencySketch, RouteSketch
from ...model.requests import NO_QUEUE
from ..base import REQUEST_COLUMN_NAMES, RequestNotFound
from ..queries import REQUEST_COLUMNS, request_of, request_where, select_requests
from ..sketch_rows import KEY_COLUMNS, KEY_SIZE, SKETCH_COLUMNS, merged, origin_of, route_sketches_of, sketch_rows, window_where
from ..summary import SUMMARY_FIELDS, encode_profile
from .database import Database, PartitionMissing
from .schema import day_of

_START = REQUEST_FIELDS.index("start_ns")
_COPY = f"COPY requests ({', '.join(REQUEST_FIELDS)}) FROM STDIN"
_INSERT_ONE = f"INSERT INTO requests ({', '.join(REQUEST_FIELDS)}) VALUES ({', '.join(['%s'] * FIELD_COUNT)})"
_SELECTED = ", ".join("labels::text AS labels" if name == "labels" else name for name in REQUEST_COLUMNS)
PARTITIONED_NS = range(-(2**62), 2**62)  # starts whose day partitions' bounds fit in bigint
_EMPTY_SKETCH = LatencySketch.empty().encode()
# the order Python sorts the keys in (code points: the C collation), so that rows are locked in one order everywhere
_IN_PYTHON_ORDER = ", ".join(f'{name} COLLATE "C"' if name not in ("grain_ns", "start_ns") else name for name in KEY_COLUMNS)


def _rows(values: list, dropped: list[str]) -> list[tuple]:
    """A batch's values as rows to store: error "", profile_id 0 and queue_ns -1 as NULL; a row
    whose start no day partition can hold (beyond 2**62 ns either way) left out, described in ``dropped``."""
    rows = []
    for at in range(0, len(values), FIELD_COUNT):
        row = list(values[at:at + FIELD_COUNT])
        if type(row[_START]) is not int or row[_START] not in PARTITIONED_NS:
            dropped.append(f"a {row[3]!r} {row[2]!r} request PostgreSQL refuses: it starts at {str(row[_START])[:30]} ns, which no "
                           "day partition holds"[:300])
            continue
        row[10] = row[10] or None
        row[11] = row[11] or None
        row[13] = None if row[13] == NO_QUEUE else row[13]
        rows.append(tuple(row))
    return rows


def _without_nul(row: tuple) -> tuple:
    return tuple(value.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd") if type(value) is str else value for value in row)


def insert_profiles(c: psycopg.Connection, encoded: list) -> list[int]:
    """Insert encoded profiles (ids taken from the sequence first, so that they follow the order given); their ids."""
    if not encoded:
        return []
    ids = [row[0] for row in c.execute("SELECT nextval(pg_get_serial_sequence('profiles', 'id')) FROM generate_series(1, %s)",
                                       (len(encoded),))]
    with c.cursor() as cur:
        cur.executemany(f"INSERT INTO profiles (id, {', '.join(SUMMARY_FIELDS)}) VALUES ({', '.join(['%s'] * (len(SUMMARY_FIELDS) + 1))})",
                        [(profile_id, *_without_nul(item.summary)) for profile_id, item in zip(ids, encoded)])
        cur.executemany("INSERT INTO profile_data VALUES (%s, %s, %s)",
                        [(profile_id, item.tables, item.samples) for profile_id, item in zip(ids, encoded)])
    return ids


def insert_stack_nodes(c: psycopg.Connection, nodes: StackNodes) -> None:
    with c.cursor() as cur:
        cur.executemany("INSERT INTO stack_nodes VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [_without_nul((nodes.source, node, prefix, function, file, line))
                         for node, prefix, function, file, line in nodes.nodes])


def write_batch(store: Database, batch: RequestBatch, batch_id: str | None = None) -> list[int]:
    """See :meth:`profviz.store.base.Store.write_batch`."""
    encoded = [encode_profile(profile) for profile, _ in batch.profiles]
    if not batch.values and not encoded and batch.stack_nodes is None and batch_id is None:
        return []
    days = {day_of(start) for start in batch.values[_START::FIELD_COUNT] if type(start) is int and start in PARTITIONED_NS}
    dropped: list[str] = []
    if batch_id is None:  # a commit whose answer is lost is retried: the id makes the retry find it
        batch_id = batch.batch_id = batch.batch_id or str(uuid.uuid4())

    def work(c: psycopg.Connection) -> list[int]:
        dropped.clear()
        if batch_id is not None:  # the row lock taken here makes a second sender of the same batch wait, then find it
            done = c.execute("INSERT INTO ingested_batches (id, received_ns) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING id",
                             (batch_id, time.time_ns())).fetchone()
            if done is None:
                return json.loads(c.execute("SELECT profile_ids FROM ingested_batches WHERE id = %s", (batch_id,)).fetchone()[0])
        if batch.stack_nodes is not None:
            insert_stack_nodes(c, batch.stack_nodes)
        ids = insert_profiles(c, encoded)
        batch.link(ids)
        stored = _insert_rows(c, _rows(batch.values, dropped), dropped)
        if stored:
            add_sketches(c, stored)
        if batch_id is not None:
            c.execute("UPDATE ingested_batches SET profile_ids = %s WHERE id = %s", (json.dumps(ids), batch_id))
        return ids

    ids = store.write_in_days("requests", days, "write requests to", work)
    for (profile, _), profile_id in zip(batch.profiles, ids):
        profile.meta["id"] = profile_id
    if dropped:
        print(f"profviz: dropped requests in store {store.location}: {'; '.join(dropped[:5])}"
              + (f" (and {len(dropped) - 5} more)" if len(dropped) > 5 else ""), file=sys.stderr)
    return ids


def _insert_rows(c: psycopg.Connection, rows: list[tuple], dropped: list[str]) -> list[tuple]:
    """COPY the rows; when PostgreSQL refuses the copy, insert them one by one (each in a savepoint),
    NULs replaced, dropping (and describing in ``dropped``) those it still refuses. The rows stored."""
    if not rows:
        return []
    try:
        with c.transaction():
            with c.cursor().copy(_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        return rows
    except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError, ValueError, TypeError, OverflowError,
            UnicodeError) as exc:
        if isinstance(exc, pg_errors.CheckViolation) and "no partition" in str(exc):
            raise PartitionMissing("a day partition of requests was dropped meanwhile") from None
    stored = []
    for row in rows:
        row = _without_nul(row)
        try:
            with c.transaction():
                c.execute(_INSERT_ONE, row)
            stored.append(row)
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError, ValueError, TypeError, OverflowError,
                UnicodeError) as exc:
            if isinstance(exc, pg_errors.CheckViolation) and "no partition" in str(exc):
                raise PartitionMissing("a day partition of requests was dropped meanwhile") from None
            reason = " ".join(str(exc).split())[:120]
            dropped.append(f"a {row[3]!r} {row[2]!r} request PostgreSQL refuses ({type(exc).__name__}: {reason})"[:300])
    return stored


def add_sketches(c: psycopg.Connection, rows: list[tuple]) -> None:
    """Merge stored rows into their buckets' sketches. Each bucket's row is made if missing, then
    locked in key order (two writers of one minute wait for each other, and cannot deadlock), merged and written."""
    columns = list(zip(*rows))
    fresh = sketch_rows(columns[2], columns[3], columns[6], columns[7], columns[13], columns[5], columns[10],
                        [origin_of(labels) for labels in columns[12]])
    fresh.sort(key=lambda row: row[:KEY_SIZE])
    keys = [row[:KEY_SIZE] for row in fresh]
    placeholders = ", ".join(["%s"] * KEY_SIZE)
    with c.cursor() as cur:
        cur.executemany(f"INSERT INTO latency_sketches ({SKETCH_COLUMNS}) VALUES ({placeholders}, 0, %s, NULL) ON CONFLICT DO NOTHING",
                        [(*key, _EMPTY_SKETCH) for key in keys])
        found = {}
        for at in range(0, len(keys), 500):
            part = keys[at:at + 500]
            for stored in cur.execute(
                    f"SELECT {SKETCH_COLUMNS} FROM latency_sketches WHERE ({', '.join(KEY_COLUMNS)}) IN"
                    f" ({', '.join([f'({placeholders})'] * len(part))}) ORDER BY {_IN_PYTHON_ORDER} FOR UPDATE",
                    [value for key in part for value in key]).fetchall():
                found[tuple(stored[:KEY_SIZE])] = tuple(stored[KEY_SIZE:])
        cur.executemany(f"INSERT INTO latency_sketches ({SKETCH_COLUMNS}) VALUES ({placeholders}, %s, %s, %s) ON CONFLICT"
                        f" ({', '.join(KEY_COLUMNS)}) DO UPDATE SET errors = excluded.errors, app = excluded.app, total = excluded.total",
                        [merged(row, found.get(row[:KEY_SIZE])) for row in fresh])


def route_sketches(store: Database, *, since_ns: int | None = None, until_ns: int | None = None,
                   labels: dict[str, str] | None = None) -> list[RouteSketch]:
    where, params = window_where(since_ns, until_ns, labels)
    return route_sketches_of(store.read(f"SELECT {SKETCH_COLUMNS} FROM latency_sketches WHERE {where}", params))


def label_sql(key: str) -> tuple[str, Any]:
    return "labels->>?", key


def query_requests(store: Database, **window: Any) -> list[RequestRow]:
    sql, params = select_requests(**window, columns=_SELECTED, label_sql=label_sql)
    return [request_of(row) for row in store.read(sql, params)]


def request_by_id(store: Database, request_id: int) -> RequestRow:
    rows = store.read(f"SELECT {_SELECTED} FROM requests WHERE id = ?", (int(request_id),))
    if not rows:
        raise RequestNotFound(f"no request with id {request_id} in {store.location}: run 'profviz requests' to see the ids")
    return request_of(rows[0])


def request_columns(store: Database, *, since_ns: int | None = None, until_ns: int | None = None, route: str | None = None,
                    method: str | None = None, labels: dict[str, str] | None = None) -> dict[str, list[Any]]:
    names = REQUEST_COLUMN_NAMES
    where, params = request_where(since_ns, until_ns, route, method, labels, label_sql)
    select = ", ".join(names[:-1]) + ", labels->'capacity' AS capacity"
    sql = f"SELECT {select} FROM requests" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY start_ns, id"
    rows = store.read(sql, params)
    out = {name: [r[i] for r in rows] for i, name in enumerate(names)}
    out["capacity"] = [value if value is None or isinstance(value, (int, float, str)) else json.dumps(value) for value in out["capacity"]]
    return out


def latest_request_ns(store: Database) -> int | None:
    rows = store.read("SELECT max(start_ns::numeric + duration_ns) FROM requests")
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def request_for_profile(store: Database, profile_id: int) -> int | None:
    rows = store.read("SELECT id FROM requests WHERE profile_id = ? ORDER BY id LIMIT 1", (int(profile_id),))
    return int(rows[0][0]) if rows else None

