"""The ``spans`` table: bounded inserts and windowed queries."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterable

from .database import Database
from ...model import Span
from ..spans import bounded_name, bounded_thread_name, stored_attributes


SPAN_COLUMNS = (
    "id", "trace_id", "span_id", "parent_id", "name", "kind", "status", "start_ns", "end_ns", "pid", "tid",
    "thread_name", "attributes", "approximate", "request_id", "source",
)


def insert_spans(store: Database, spans: Iterable[Span], *, checked: bool = False) -> int:
    """See :meth:`profviz.store.base.Store.insert_spans`."""
    rows = []
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for span in spans:
        if not checked:
            span.check()
        rows.append((
            span.trace_id, span.span_id, span.parent_id,
            bounded_name(span.name), span.kind, span.status,
            span.start_ns, span.end_ns, span.pid, span.tid,
            bounded_thread_name(span.thread_name),
            dumps(stored_attributes(span.attributes)), int(bool(span.approximate)), span.request_id, span.source,
        ))
    if not rows:
        return 0

    def work(conn: sqlite3.Connection) -> int:
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_id, name, kind, status, start_ns, end_ns, pid, tid,"
            " thread_name, attributes, approximate, request_id, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return conn.total_changes - before

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


FINDINGS_ATTRIBUTES = ("db.statement", "db.query.text", "db.system", "db.name", "http.method", "http.request.method",
                       "http.url", "url.full")
"""The span attributes the findings detectors read; :func:`query_span_facts` extracts only these."""


def query_span_facts(store: Database, *, pids: Iterable[int], start_ns: int, end_ns: int, limit: int) -> list[Span]:
    """See :meth:`profviz.store.base.Store.query_span_facts`: the attributes are picked out by
    SQLite's JSON functions, so no span's whole attribute text is parsed in Python."""
    pid_list = [int(p) for p in pids]
    if not pid_list:
        return []
    picks = ", ".join(f"json_extract(attributes, '$.\"{key}\"')" for key in FINDINGS_ATTRIBUTES)
    sql = (f"SELECT span_id, parent_id, kind, start_ns, end_ns, pid, tid, source, {picks} FROM spans"
           f" WHERE pid IN ({', '.join('?' * len(pid_list))}) AND tid IS NOT NULL AND end_ns >= ? AND start_ns < ?"
           " ORDER BY start_ns, id LIMIT ?")
    rows = store.transaction("read", lambda c: c.execute(sql, (*pid_list, int(start_ns), int(end_ns), int(limit))).fetchall())
    keys = FINDINGS_ATTRIBUTES
    facts = []
    for row in rows:
        values = row[8:]
        attributes = {key: value for key, value in zip(keys, values) if value is not None} if any(v is not None for v in values) else {}
        facts.append(Span("0" * 31 + "1", row[0], row[1], "", row[2], "unset", int(row[3]), int(row[4]), pid=row[5], tid=row[6],
                          attributes=attributes, source=row[7]))
    return facts
