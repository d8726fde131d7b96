"""Reading and writing the store's ``requests`` table (one row per request the middleware timed)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import Store, StoreError

REQUEST_COLUMNS = (
    "id", "pid", "tid", "route", "method", "path", "status", "start_ns", "duration_ns", "cpu_ns",
    "response_bytes", "error", "profile_id", "labels",
)


@dataclass
class RequestRow:
    """One timed request. ``start_ns`` is epoch ns; ``profile_id`` the kept profile, if any."""

    pid: int
    tid: int
    route: str
    method: str
    path: str
    status: int
    start_ns: int
    duration_ns: int
    cpu_ns: int = 0
    response_bytes: int = 0
    error: str | None = None
    profile_id: int | None = None
    labels: dict = field(default_factory=dict)
    id: int | None = None

    def as_tuple(self) -> tuple:
        return (
            self.pid, self.tid, self.route, self.method, self.path, self.status, self.start_ns, self.duration_ns,
            self.cpu_ns, self.response_bytes, self.error, self.profile_id, json.dumps(self.labels) if self.labels else "{}",
        )


def insert_requests(store: Store, rows: Iterable[RequestRow]) -> int:
    """Insert rows in one transaction; returns how many were written."""
    return insert_request_values(store, [row.as_tuple() for row in rows])


INSERT_CHUNK_ROWS = 64  # 13 parameters a row: 832 per statement, under every SQLite's variable limit
_INSERT_HEAD = (
    "INSERT INTO requests (pid, tid, route, method, path, status, start_ns, duration_ns, cpu_ns,"
    " response_bytes, error, profile_id, labels) VALUES "
)
# error "" and profile_id 0 are stored as NULL: the request path passes those instead of None,
# which Python's sqlite3 binds only after two failed attribute lookups (its adaptation protocol)
_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, 0), ?)"
_insert_sql: dict[int, str] = {}


def _multi_row_insert(count: int) -> str:
    sql = _insert_sql.get(count)
    if sql is None:
        sql = _insert_sql[count] = _INSERT_HEAD + ", ".join([_ROW_PLACEHOLDERS] * count)
    return sql


ROW_WIDTH = 13  # parameters per row, in RequestRow.as_tuple() order
ROW_PROFILE_ID = 11  # position of profile_id within a row's parameters


def insert_request_values(store: Store, values: list, *, conn: sqlite3.Connection | None = None) -> int:
    """Insert rows given as :meth:`RequestRow.as_tuple` sequences in one transaction; returns how many.
    An ``error`` of ``""`` and a ``profile_id`` of 0 are stored as NULL, like None.

    With ``conn`` (a connection inside a transaction of ``store``, e.g. from
    :meth:`Store.save_profiles`) the rows are inserted there, in that transaction.
    """
    return insert_request_params(store, [value for row in values for value in row], conn=conn)


def insert_request_params(store: Store, params: list, *, conn: sqlite3.Connection | None = None) -> int:
    """:func:`insert_request_values` for the rows' parameters laid end to end (``ROW_WIDTH`` a row),
    as the middleware's writer builds them; returns how many rows.

    Rows go in multi-row INSERT statements of up to ``INSERT_CHUNK_ROWS`` rows: SQLite runs each
    statement with Python's GIL released once, where ``executemany`` would release and retake
    it for every row (a handoff the request threads of a busy server pay for).
    """
    rows, extra = divmod(len(params), ROW_WIDTH)
    if extra:
        raise ValueError(f"request parameters must come {ROW_WIDTH} a row, got {len(params)} values")
    if not rows:
        return 0
    step = INSERT_CHUNK_ROWS * ROW_WIDTH

    def work(c: sqlite3.Connection) -> int:
        for start in range(0, len(params), step):
            chunk = params[start:start + step]
            c.execute(_multi_row_insert(len(chunk) // ROW_WIDTH), chunk)
        return rows

    if conn is not None:
        return work(conn)
    return store.transaction("write requests to", work)


def _row(row: sqlite3.Row) -> RequestRow:
    data = dict(row)
    try:
        data["labels"] = json.loads(data.get("labels") or "{}")
    except ValueError:
        data["labels"] = {}
    return RequestRow(**data)


def query_requests(
    store: Store,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    route: str | None = None,
    method: str | None = None,
    slowest: int | None = None,
    limit: int | None = None,
    with_profile: bool = False,
) -> list[RequestRow]:
    """Requests in a window, oldest first; or the ``slowest`` N, slowest first."""
    where, params = _where(since_ns, until_ns, route, method)
    if with_profile:
        where.append("profile_id IS NOT NULL")
    sql = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if slowest:
        sql += " ORDER BY duration_ns DESC, id LIMIT ?"
        params.append(int(slowest))
    else:
        sql += " ORDER BY start_ns, id"
        if limit:
            sql = f"SELECT * FROM ({sql.replace(' ORDER BY start_ns, id', ' ORDER BY start_ns DESC, id DESC')} LIMIT ?) ORDER BY start_ns, id"
            params.append(int(limit))
    return [_row(r) for r in store.execute(sql, params)]


def request_by_id(store: Store, request_id: int) -> RequestRow:
    rows = store.execute(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE id = ?", (int(request_id),))
    if not rows:
        raise RequestNotFound(f"no request with id {request_id} in {store.path}: run 'profviz requests' to see the ids")
    return _row(rows[0])


class RequestNotFound(StoreError):
    """No request with the requested id exists."""


def request_columns(
    store: Store,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    route: str | None = None,
    method: str | None = None,
) -> dict[str, list[Any]]:
    """Columns for analysis: id, pid, tid, route, method, status, error, start_ns, duration_ns,
    cpu_ns, profile_id, and capacity (the ``capacity`` label, else None), oldest first."""
    names = ("id", "pid", "tid", "route", "method", "status", "error", "start_ns", "duration_ns", "cpu_ns", "profile_id", "capacity")
    where, params = _where(since_ns, until_ns, route, method)
    select = ", ".join(names[:-1]) + ", json_extract(labels, '$.capacity') AS capacity"
    sql = f"SELECT {select} FROM requests" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY start_ns"
    rows = store.execute(sql, params)
    return {name: [r[i] for r in rows] for i, name in enumerate(names)}


def latest_request_ns(store: Store) -> int | None:
    rows = store.execute("SELECT MAX(start_ns + duration_ns) FROM requests")
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def _where(since_ns, until_ns, route, method) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if since_ns is not None:
        where.append("start_ns >= ?")
        params.append(int(since_ns))
    if until_ns is not None:
        where.append("start_ns < ?")
        params.append(int(until_ns))
    if route is not None:
        where.append("route = ?")
        params.append(route)
    if method is not None:
        where.append("method = ?")
        params.append(method.upper())
    return where, params
