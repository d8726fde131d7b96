"""Spans in PostgreSQL: bounded inserts into the day-partitioned ``spans`` table with their facts
logged (:mod:`profviz.store.span_log`), windowed queries, and the facts read back."""

from __future__ import annotations

from typing import Any, Iterable

import psycopg

from ...model import Span, SpanFacts, SpanKey
from ..queries import SPAN_COLUMNS, select_spans, span_of, span_values
from ..span_log import facts_of, keyed_spans, log_row
from .database import Database
from .requests import _without_nul
from .schema import day_of

_SPAN_FIELDS = ", ".join(SPAN_COLUMNS[1:])
_TYPED_ROW = "(" + ", ".join(f"%s::{kind}" for kind in (
    "text", "text", "text", "text", "text", "text", "bigint", "bigint", "bigint", "bigint", "text", "text", "smallint", "bigint",
    "text")) + ")"
_PER_STATEMENT = 500  # 15 parameters a span: under PostgreSQL's 65535


def insert_spans(store: Database, spans: Iterable[Span], *, checked: bool = False) -> int:
    """See :meth:`profviz.store.base.Store.insert_spans`."""
    rows, stored = span_values(spans, checked)
    if not rows:
        return 0
    first: dict[tuple[str, str], tuple] = {}
    for row in rows:  # a span sent twice in one batch is stored once, as its first
        first.setdefault((row[0], row[1]), _without_nul(row))
    rows = list(first.values())

    def work(c: psycopg.Connection) -> int:
        new: set[tuple[str, str]] = set()
        for at in range(0, len(rows), _PER_STATEMENT):
            part = rows[at:at + _PER_STATEMENT]
            # stored already (same trace and span id, whatever its start): kept as it is, as SQLite's unique key does
            new.update((row[0], row[1]) for row in c.execute(
                f"INSERT INTO spans ({_SPAN_FIELDS}) SELECT * FROM (VALUES {', '.join([_TYPED_ROW] * len(part))}) AS v ({_SPAN_FIELDS})"
                " WHERE NOT EXISTS (SELECT 1 FROM spans AS s WHERE s.trace_id = v.trace_id AND s.span_id = v.span_id)"
                " ON CONFLICT DO NOTHING RETURNING trace_id, span_id", [value for row in part for value in row]).fetchall())
        if new:
            _log_facts(c, [(span, attributes) for span, attributes in stored if (span.trace_id, span.span_id) in new])
        return len(new)

    return store.write_in_days("spans", {day_of(row[6]) for row in rows}, "write spans to", work)


def _log_facts(c: psycopg.Connection, spans: list[tuple[Span, dict]]) -> None:
    keyed = keyed_spans(spans)
    if not keyed:
        return
    keys = sorted({key for _, key in keyed}, key=lambda key: (key.kind, key.text))
    with c.cursor() as cur:
        cur.executemany("INSERT INTO span_keys (kind, text, system, database, source) VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT (kind, md5(text)) DO NOTHING", [_without_nul(tuple(key)) for key in keys])
    ids = {}
    for key in keys:
        found = c.execute("SELECT id FROM span_keys WHERE kind = %s AND md5(text) = md5(%s)", _without_nul((key.kind, key.text))).fetchone()
        ids[(key.kind, key.text)] = found[0]
    c.execute("INSERT INTO span_log (first_ns, last_ns, rows, data) VALUES (%s, %s, %s, %s)", log_row(keyed, ids))


def query_spans(store: Database, **where: Any) -> list[Span]:
    sql, params = select_spans(**where)
    return [span_of(row) for row in store.read(sql, params)]


def span_facts(store: Database, *, pids: Iterable[int], start_ns: int, end_ns: int) -> SpanFacts:
    rows = store.read("SELECT rows, data, first_ns, last_ns FROM span_log WHERE last_ns >= ? AND first_ns < ? ORDER BY id",
                      (int(start_ns), int(end_ns)))

    def keys_by_id(ids: list[int]) -> dict[int, SpanKey]:
        return {int(key_id): SpanKey(kind, text, system, database, source) for key_id, kind, text, system, database, source in
                store.read("SELECT id, kind, text, system, database, source FROM span_keys WHERE id = ANY(?)", (ids,))}

    return facts_of(rows, pids, start_ns, end_ns, keys_by_id)
