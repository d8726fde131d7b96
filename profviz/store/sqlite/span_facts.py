"""The ``span_keys`` and ``span_log`` tables: what the findings detectors read of spans, written
with them and read back as numpy columns (:class:`~profviz.model.SpanFacts`).

Each batch of new spans that ran a statement or an HTTP call (not those inside another such span
of the batch, an ORM's span around its driver's) adds one ``span_log`` row: its time range and its
columns (start, end, pid, tid, key, span id) as little-endian int64, so an hour of a million spans
is read in a few hundred rows instead of a million. ``span_keys`` holds each distinct
statement or call once.
"""

from __future__ import annotations

import sqlite3
import sys
from array import array
from typing import Iterable

import numpy as np

from ...model import Span, SpanFacts, SpanKey
from ...model.span_facts import span_id_int
from ...model.statements import key_of
from .database import Database

_LITTLE = sys.byteorder == "little"
_COLUMNS = 6
BACKFILL_CHUNK = 50_000


def log_facts(conn: sqlite3.Connection, spans: list[tuple[Span, dict]]) -> None:
    """Add the facts of newly stored ``spans`` (each with its stored attributes) as one log row."""
    keyed = []
    for span, attributes in spans:
        key = key_of(span.kind, attributes, span.source)
        if key is not None and span.tid is not None and span.pid is not None:
            keyed.append((span, key))
    if not keyed:
        return
    db_ids = {(span.trace_id, span.span_id) for span, key in keyed if key.kind == "sql"}
    keyed = [(span, key) for span, key in keyed
             if not (key.kind == "sql" and (span.trace_id, span.parent_id) in db_ids)]  # inside another statement's span
    ids = _key_ids(conn, {key for _, key in keyed})
    columns = array("q", [span.start_ns for span, _ in keyed])
    columns.extend(span.end_ns for span, _ in keyed)
    columns.extend(span.pid for span, _ in keyed)
    columns.extend(span.tid for span, _ in keyed)
    columns.extend(ids[(key.kind, key.text)] for _, key in keyed)
    columns.extend(span_id_int(span.span_id) for span, _ in keyed)
    if not _LITTLE:
        columns.byteswap()
    conn.execute("INSERT INTO span_log (first_ns, last_ns, rows, data) VALUES (?, ?, ?, ?)",
                 (min(span.start_ns for span, _ in keyed), max(span.end_ns for span, _ in keyed), len(keyed), columns.tobytes()))


def _key_ids(conn: sqlite3.Connection, keys: set[SpanKey]) -> dict[tuple[str, str], int]:
    conn.executemany("INSERT OR IGNORE INTO span_keys (kind, text, system, database, source) VALUES (?, ?, ?, ?, ?)",
                     [tuple(key) for key in keys])
    ids = {}
    for key in keys:
        ids[(key.kind, key.text)] = conn.execute("SELECT id FROM span_keys WHERE kind = ? AND text = ?", (key.kind, key.text)).fetchone()[0]
    return ids


def span_facts(store: Database, *, pids: Iterable[int], start_ns: int, end_ns: int) -> SpanFacts:
    """See :meth:`profviz.store.base.Store.span_facts`."""
    wanted = np.array(sorted({int(p) for p in pids}), dtype=np.int64)
    rows = store.read("SELECT rows, data, first_ns, last_ns FROM span_log WHERE last_ns >= ? AND first_ns < ? ORDER BY id",
                      (int(start_ns), int(end_ns)))
    if not rows or not len(wanted):
        return SpanFacts()
    blocks = [np.frombuffer(data, dtype="<i8").reshape(_COLUMNS, int(count)) for count, data, _, _ in rows
              if isinstance(data, bytes) and int(count) > 0 and len(data) == _COLUMNS * 8 * int(count)]  # a damaged row is left out
    if not blocks:
        return SpanFacts()
    table = np.concatenate(blocks, axis=1).astype(np.int64, copy=False)
    start, end, pid = table[0], table[1], table[2]
    chosen = pid == wanted[0] if len(wanted) == 1 else np.isin(pid, wanted)
    if min(first for _, _, first, _ in rows) < start_ns or max(last for _, _, _, last in rows) >= end_ns:
        chosen &= (end >= start_ns) & (start < end_ns)  # blocks that reach out of the window
    if not chosen.all():
        table = table[:, chosen]
    if len(table[0]) > 1 and np.any(table[0][1:] < table[0][:-1]):
        table = table[:, np.argsort(table[0], kind="stable")]
    used = np.unique(table[4]).tolist()
    keys = {}
    for offset in range(0, len(used), 500):
        part = used[offset:offset + 500]
        for key_id, kind, text, system, database, source in store.read(
                f"SELECT id, kind, text, system, database, source FROM span_keys WHERE id IN ({', '.join('?' * len(part))})", part):
            keys[int(key_id)] = SpanKey(kind, text, system, database, source)
    return SpanFacts(table[0], table[1], table[2], table[3], table[4], table[5], keys)  # views of one array: no copies


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
