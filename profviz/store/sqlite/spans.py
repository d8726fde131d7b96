"""The ``spans`` table of SQLite: bounded inserts and windowed queries (:mod:`profviz.store.queries`)."""

from __future__ import annotations

import sqlite3
from typing import Any, Iterable

from ...model import Span
from ..queries import select_spans, span_of, span_values
from .database import Database
from .span_facts import log_facts


def insert_spans(store: Database, spans: Iterable[Span], *, checked: bool = False) -> int:
    """See :meth:`profviz.store.base.Store.insert_spans`."""
    rows, stored = span_values(spans, checked)
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


def query_spans(store: Database, **where: Any) -> list[Span]:
    """See :meth:`profviz.store.base.Store.query_spans`."""
    sql, params = select_spans(**where)
    return [span_of(row) for row in store.read(sql, params)]
