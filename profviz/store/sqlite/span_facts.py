"""The ``span_keys`` and ``span_log`` tables of SQLite (see :mod:`profviz.store.span_log`):
what the findings detectors read of spans, written with them and read back as numpy columns."""

from __future__ import annotations

import sqlite3
from typing import Iterable

from ...model import Span, SpanFacts, SpanKey
from ..span_log import facts_of, keyed_spans, log_row
from .database import Database

BACKFILL_CHUNK = 50_000


def log_facts(conn: sqlite3.Connection, spans: list[tuple[Span, dict]]) -> None:
    """Add the facts of newly stored ``spans`` (each with its stored attributes) as one log row."""
    keyed = keyed_spans(spans)
    if keyed:
        conn.execute("INSERT INTO span_log (first_ns, last_ns, rows, data) VALUES (?, ?, ?, ?)",
                     log_row(keyed, _key_ids(conn, {key for _, key in keyed})))


def _key_ids(conn: sqlite3.Connection, keys: set[SpanKey]) -> dict[tuple[str, str], int]:
    conn.executemany("INSERT OR IGNORE INTO span_keys (kind, text, system, database, source) VALUES (?, ?, ?, ?, ?)",
                     [tuple(key) for key in keys])
    ids = {}
    for key in keys:
        ids[(key.kind, key.text)] = conn.execute("SELECT id FROM span_keys WHERE kind = ? AND text = ?", (key.kind, key.text)).fetchone()[0]
    return ids


def span_facts(store: Database, *, pids: Iterable[int], start_ns: int, end_ns: int) -> SpanFacts:
    """See :meth:`profviz.store.base.Store.span_facts`."""
    rows = store.read("SELECT rows, data, first_ns, last_ns FROM span_log WHERE last_ns >= ? AND first_ns < ? ORDER BY id",
                      (int(start_ns), int(end_ns)))

    def keys_by_id(ids: list[int]) -> dict[int, SpanKey]:
        return {int(key_id): SpanKey(kind, text, system, database, source) for key_id, kind, text, system, database, source in store.read(
            f"SELECT id, kind, text, system, database, source FROM span_keys WHERE id IN ({', '.join('?' * len(ids))})", ids)}

    return facts_of(rows, pids, start_ns, end_ns, keys_by_id)


def backfill(conn: sqlite3.Connection) -> None:
    """Log the facts of every span stored before the store had ``span_log`` (schema 3 and older)."""
    import json

    last = 0
    while True:
        rows = conn.execute("SELECT id, trace_id, span_id, parent_id, kind, start_ns, end_ns, pid, tid, attributes, source"
                            " FROM spans WHERE id > ? ORDER BY id LIMIT ?", (last, BACKFILL_CHUNK)).fetchall()
        if not rows:
            return
        batch = []
        for row in rows:
            try:
                attributes = json.loads(row[9] or "{}")
            except ValueError:
                attributes = {}
            span = Span(row[1], row[2], row[3], "", row[4], "unset", int(row[5]), int(row[6]), pid=row[7], tid=row[8],
                        source=row[10])
            batch.append((span, attributes if isinstance(attributes, dict) else {}))
        log_facts(conn, batch)
        last = rows[-1][0]
