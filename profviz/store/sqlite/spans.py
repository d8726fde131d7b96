"""The ``spans`` table: bounded inserts and windowed queries."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterable

from .database import Database
from ...model import Span
from ..spans import bounded_name, bounded_thread_name, stored_attributes
from .span_facts import log_facts


SPAN_COLUMNS = (
    "id", "trace_id", "span_id", "parent_id", "name", "kind", "status", "start_ns", "end_ns", "pid", "tid",
    "thread_name", "attributes", "approximate", "request_id", "source",
)


def insert_spans(store: Database, spans: Iterable[Span], *, checked: bool = False) -> int:
    """See :meth:`profviz.store.base.Store.insert_spans`."""
    rows, stored = [], []
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for span in spans:
        if not checked:
            span.check()
        attributes = stored_attributes(span.attributes)
        stored.append((span, attributes))
        rows.append((
            span.trace_id, span.span_id, span.parent_id,
            bounded_name(span.name), span.kind, span.status,
            span.start_ns, span.end_ns, span.pid, span.tid,
            bounded_thread_name(span.thread_name),
            dumps(attributes), int(bool(span.approximate)), span.request_id, span.source,
        ))
    if not rows:
        return 0

    def work(conn: sqlite3.Connection) -> int:
        before = conn.total_changes
        last_id = conn.execute("SELECT coalesce(max(id), 0) FROM spans").fetchone()[0]
        conn.executemany(
            "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_id, name, kind, status, start_ns, end_ns, pid, tid,"
            " thread_name, attributes, approximate, request_id, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        added = conn.total_changes - before
        if added == len(rows):
            log_facts(conn, stored)
        elif added:  # some were stored already: log only the new ones
            new = set(conn.execute("SELECT trace_id, span_id FROM spans WHERE id > ?", (last_id,)).fetchall())
            log_facts(conn, [(span, attributes) for span, attributes in stored if (span.trace_id, span.span_id) in new])
        return added

    return store.transaction("write spans to", work)


def _span(row: sqlite3.Row) -> Span:
    try:
        attributes = json.loads(row["attributes"] or "{}")
    except ValueError:
        attributes = {}
    return Span(
        trace_id=row["trace_id"], span_id=row["span_id"], parent_id=row["parent_id"], name=row["name"],
        kind=row["kind"], status=row["status"], start_ns=int(row["start_ns"]), end_ns=int(row["end_ns"]),
        pid=row["pid"], tid=row["tid"], thread_name=row["thread_name"],
        attributes=attributes if isinstance(attributes, dict) else {}, approximate=bool(row["approximate"]),
        request_id=row["request_id"], source=row["source"], id=int(row["id"]),
    )


def query_spans(
    store: Database,
    *,
    pid: int | None = None,
    pids: Iterable[int] | None = None,
    include_unknown_pid: bool = False,
    start_ns: int | None = None,
    end_ns: int | None = None,
    trace_id: str | None = None,
    tids: Iterable[int] | None = None,
    limit: int = 100_000,
) -> list[Span]:
    """See :meth:`profviz.store.base.Store.query_spans`."""
    where: list[str] = []
    params: list[Any] = []
    pid_list = ([] if pid is None else [int(pid)]) + ([] if pids is None else [int(p) for p in pids])
    if pid is not None or pids is not None:
        clause = f"pid IN ({', '.join('?' * len(pid_list))})" if pid_list else "0"
        where.append(f"({clause} OR pid IS NULL)" if include_unknown_pid else clause)
        params.extend(pid_list)
    if start_ns is not None:
        where.append("end_ns >= ?")
        params.append(int(start_ns))
    if end_ns is not None:
        where.append("start_ns < ?")
        params.append(int(end_ns))
    if trace_id is not None:
        where.append("trace_id = ?")
        params.append(str(trace_id).lower())
    if tids is not None:
        tid_list = [int(t) for t in tids]
        where.append(f"tid IN ({', '.join('?' * len(tid_list))})" if tid_list else "0")
        params.extend(tid_list)
    sql = f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY start_ns, id LIMIT ?"
    params.append(int(limit))
    return [_span(row) for row in store.read(sql, params)]

