"""The ``requests`` table (one row per timed request) and the ``request_log`` it is written through.

Writing is append-only: :func:`write_batch` (the middleware's writer, inside the profiled server)
stores a whole batch of rows as ONE ``request_log`` row, its values pickled (protocol 4, plain
values only), which costs about a tenth of inserting them into ``requests`` with its two indexes.
Every reader here first calls :func:`materialize_requests`, which moves the pending batches into
``requests`` in write transactions of up to ``MATERIALIZE_CHUNK_ROWS`` rows (each one decodes,
inserts and deletes the same log rows under SQLite's write lock, so concurrent processes neither
lose nor duplicate a row). Request ids are given then, in commit order.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import sqlite3
import sys
import time
from typing import Any

from ...model import FIELD_COUNT, RequestBatch, RequestRow
from ...model.requests import NO_QUEUE, OLD_FIELD_COUNT, PROFILE_ID_FIELD
from ..base import REQUEST_COLUMN_NAMES, RequestNotFound
from ..queries import REQUEST_COLUMNS, request_of, request_where, select_requests
from ..summary import encode_profile
from . import sketches, stack_nodes
from .database import Database
from .profiles import insert_encoded

INSERT_CHUNK_ROWS = 64  # 14 parameters a row: 896 per statement, under every SQLite's variable limit
_INSERT_HEAD = (
    "INSERT INTO requests (pid, tid, route, method, path, status, start_ns, duration_ns, cpu_ns,"
    " response_bytes, error, profile_id, labels, queue_ns) VALUES "
)
# error "", profile_id 0 and queue_ns -1 are stored as NULL: the request path passes those instead
# of None, which Python's sqlite3 binds only after two failed attribute lookups (its adaptation protocol)
_ROW_PLACEHOLDERS = f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, 0), ?, NULLIF(?, {NO_QUEUE}))"
_insert_sql: dict[int, str] = {}


def _multi_row_insert(count: int) -> str:
    sql = _insert_sql.get(count)
    if sql is None:
        sql = _insert_sql[count] = _INSERT_HEAD + ", ".join([_ROW_PLACEHOLDERS] * count)
    return sql


_encode_log = functools.partial(pickle.dumps, protocol=4)
_APPEND_LOG = "INSERT INTO request_log (rows, data) VALUES (?, ?)"


def write_batch(store: Database, batch: RequestBatch, batch_id: str | None = None) -> list[int]:
    """Store a batch in one transaction: its stack nodes, its profiles (encoded before the
    transaction starts), then its requests, linked to the profiles' new ids, as one
    ``request_log`` row (values must be plain ``int``, ``float``, ``str``, ``bytes`` or None, not
    subclasses: the log's reader refuses anything else). Returns the profiles' ids; a
    ``batch_id`` stored before stores nothing and returns the ids of that time."""
    encoded = [encode_profile(profile) for profile, _ in batch.profiles]

    def work(c: sqlite3.Connection) -> list[int]:
        if batch_id is not None:
            done = c.execute("SELECT profile_ids FROM ingested_batches WHERE id = ?", (batch_id,)).fetchone()
            if done is not None:
                return json.loads(done[0])
        if batch.stack_nodes is not None:
            stack_nodes.insert(c, batch.stack_nodes)
        ids = insert_encoded(c, encoded)
        batch.link(ids)
        if batch.values:
            c.execute(_APPEND_LOG, (len(batch), _encode_log(batch.values)))
        if batch_id is not None:
            c.execute("INSERT INTO ingested_batches VALUES (?, ?, ?)", (batch_id, time.time_ns(), json.dumps(ids)))
        return ids

    if not batch.values and not encoded and batch.stack_nodes is None and batch_id is None:
        return []
    ids = store.transaction("write requests to", work)
    for (profile, _), profile_id in zip(batch.profiles, ids):
        profile.meta["id"] = profile_id
    return ids


class _PlainValuesUnpickler(pickle.Unpickler):
    """Loads lists of plain values only: a pickle naming any class or function is refused (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"names {module}.{name}")


MATERIALIZE_CHUNK_ROWS = 20_000  # rows moved per write transaction: a few tenths of a second holding the lock


def materialize_requests(store: Database) -> int:
    """Move every batch pending in ``request_log`` into ``requests``; returns how many rows moved.

    One indexed lookup when nothing is pending. Otherwise one write transaction per
    ``MATERIALIZE_CHUNK_ROWS`` rows, so writers (the middleware) wait at most one chunk; batches
    appended after the call started are left to the next call. Rows pointing at a profile that
    was deleted meanwhile get a NULL ``profile_id``, as stored rows do.
    """
    if store.read_only:
        return 0  # batches still in the log stay there, for a process that may write
    found = store.read("SELECT max(id) FROM request_log")
    last = found[0][0] if found else None
    if last is None:
        return 0
    moved = 0
    more = True
    while more:
        count, more, dropped = store.transaction("move logged requests into", lambda c: _materialize_chunk(c, last))
        moved += count
        if dropped:
            print(f"profviz: dropped logged requests in store {store.location}: {'; '.join(dropped[:5])}"
                  + (f" (and {len(dropped) - 5} more)" if len(dropped) > 5 else ""), file=sys.stderr)
    return moved


def _materialize_chunk(c: sqlite3.Connection, last: int) -> tuple[int, bool, list[str]]:
    """Move the oldest pending batches with ids up to ``last`` (about ``MATERIALIZE_CHUNK_ROWS`` rows);
    returns (rows moved, whether batches up to ``last`` remain, what was dropped)."""
    c.execute("BEGIN IMMEDIATE")  # claim the write lock before reading the log: no other process moves these batches
    params: list = []
    dropped: list[str] = []
    upto = None
    more = False
    pending = c.execute("SELECT id, rows, data FROM request_log WHERE id <= ? ORDER BY id", (last,))
    for log_id, rows, data in pending:
        if upto is not None and len(params) >= MATERIALIZE_CHUNK_ROWS * FIELD_COUNT:
            more = True
            break
        upto = log_id
        try:
            values = _PlainValuesUnpickler(io.BytesIO(data)).load()
            if type(values) is list and rows and len(values) == rows * OLD_FIELD_COUNT:
                values = _with_queue_ns(values)
            if type(values) is not list or len(values) != rows * FIELD_COUNT:
                raise ValueError(f"holds {len(values) if type(values) is list else type(values).__name__} values, not {rows} rows")
        except Exception as exc:  # a damaged batch must not block every later one
            dropped.append(f"batch {log_id} of {rows} rows is unreadable ({type(exc).__name__}: {exc})")
            continue
        params.extend(values)
    pending.close()  # before writing the table it reads
    if upto is None:
        return 0, False, dropped
    _null_deleted_profiles(c, params)
    before = c.execute("SELECT max(id) FROM requests").fetchone()[0] or 0
    moved = _insert_rows(c, params, dropped)
    sketches.add_requests(c, before + 1)  # ids only grow (AUTOINCREMENT): the rows just inserted
    c.execute("DELETE FROM request_log WHERE id <= ?", (upto,))
    return moved, more, dropped


def _with_queue_ns(values: list) -> list:
    """A batch logged before ``queue_ns`` (schema 4), each row given an unknown queue time."""
    out: list = []
    for start in range(0, len(values), OLD_FIELD_COUNT):
        out += values[start:start + OLD_FIELD_COUNT]
        out.append(NO_QUEUE)
    return out


def show_pending(c: sqlite3.Connection) -> None:
    """On a read-only connection, where nothing can be moved: make ``requests`` (a TEMP view,
    which unqualified names find first) the stored rows plus the batches still in ``request_log``,
    numbered after the stored ones. Unreadable batches are left out."""
    params: list = []
    for rows, data in c.execute("SELECT rows, data FROM main.request_log ORDER BY id"):
        try:
            values = _PlainValuesUnpickler(io.BytesIO(data)).load()
            if type(values) is list and rows and len(values) == rows * OLD_FIELD_COUNT:
                values = _with_queue_ns(values)
            if type(values) is list and len(values) == rows * FIELD_COUNT:
                params.extend(values)
        except Exception:
            continue
    c.execute("CREATE TEMP TABLE pending_requests AS SELECT * FROM main.requests WHERE 0")
    first = (c.execute("SELECT max(id) FROM main.requests").fetchone()[0] or 0) + 1
    insert = _multi_row_insert(1).replace("INSERT INTO requests (", "INSERT INTO temp.pending_requests (id, ").replace("VALUES (", "VALUES (?, ")
    for n, at in enumerate(range(0, len(params), FIELD_COUNT)):
        c.execute(insert, [first + n, *params[at:at + FIELD_COUNT]])
    columns = ", ".join(REQUEST_COLUMNS)
    c.execute(f"CREATE TEMP VIEW requests AS SELECT {columns} FROM main.requests UNION ALL SELECT {columns} FROM temp.pending_requests")


def _null_deleted_profiles(c: sqlite3.Connection, params: list) -> None:
    """Set to 0 (stored as NULL) the ``profile_id`` of rows whose profile no longer exists."""
    wanted = {value for value in params[PROFILE_ID_FIELD::FIELD_COUNT] if value}
    if not wanted:
        return
    existing: set = set()
    ids = list(wanted)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        existing.update(r[0] for r in c.execute(f"SELECT id FROM profiles WHERE id IN ({', '.join('?' * len(chunk))})", chunk))
    if existing != wanted:
        for at in range(PROFILE_ID_FIELD, len(params), FIELD_COUNT):
            if params[at] and params[at] not in existing:
                params[at] = 0


def _insert_rows(c: sqlite3.Connection, params: list, dropped: list[str]) -> int:
    """Insert rows with multi-row statements; a statement SQLite refuses is redone row by row,
    skipping (and describing in ``dropped``) the rows it refuses. Returns how many were inserted."""
    step = INSERT_CHUNK_ROWS * FIELD_COUNT
    inserted = 0
    for start in range(0, len(params), step):
        chunk = params[start:start + step]
        try:
            c.execute(_multi_row_insert(len(chunk) // FIELD_COUNT), chunk)
            inserted += len(chunk) // FIELD_COUNT
        except sqlite3.OperationalError:
            raise  # locked, disk full...: the transaction fails and is retried or reported
        except (sqlite3.Error, ValueError, TypeError, OverflowError):  # that statement alone failed; the transaction goes on
            for at in range(0, len(chunk), FIELD_COUNT):
                try:
                    c.execute(_multi_row_insert(1), chunk[at:at + FIELD_COUNT])
                    inserted += 1
                except sqlite3.OperationalError:
                    raise
                except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:
                    dropped.append(f"a {chunk[at + 3]!r} {chunk[at + 2]!r} request SQLite refuses ({type(exc).__name__}: {exc})"[:300])
    return inserted


def query_requests(store: Database, **window: Any) -> list[RequestRow]:
    """See :meth:`profviz.store.base.Store.query_requests`."""
    materialize_requests(store)
    sql, params = select_requests(**window)
    return [request_of(r) for r in store.read(sql, params)]


def request_by_id(store: Database, request_id: int) -> RequestRow:
    materialize_requests(store)
    rows = store.read(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE id = ?", (int(request_id),))
    if not rows:
        raise RequestNotFound(f"no request with id {request_id} in {store.location}: run 'profviz requests' to see the ids")
    return request_of(rows[0])


def request_columns(
    store: Database,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    route: str | None = None,
    method: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, list[Any]]:
    """:data:`~profviz.store.base.REQUEST_COLUMN_NAMES` of the requests in a window, oldest first."""
    materialize_requests(store)
    names = REQUEST_COLUMN_NAMES
    where, params = request_where(since_ns, until_ns, route, method, labels)
    select = ", ".join(names[:-1]) + ", json_extract(labels, '$.capacity') AS capacity"
    sql = f"SELECT {select} FROM requests" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY start_ns"
    rows = store.read(sql, params)
    return {name: [r[i] for r in rows] for i, name in enumerate(names)}


def latest_request_ns(store: Database) -> int | None:
    materialize_requests(store)
    rows = store.read("SELECT MAX(start_ns + duration_ns) FROM requests")
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def request_for_profile(store: Database, profile_id: int) -> int | None:
    materialize_requests(store)
    rows = store.read("SELECT id FROM requests WHERE profile_id = ? ORDER BY id LIMIT 1", (int(profile_id),))
    return int(rows[0][0]) if rows else None
