"""The span log as every backend keeps it: per batch of new spans that ran a statement or an HTTP
call, one row holding its time range and its columns (start, end, pid, tid, key id, span id) as
little-endian int64, beside a table of the distinct statements and calls (keys). An hour of a
million spans is then read in a few hundred rows (:class:`~profviz.model.SpanFacts`). Spans
inside another statement's span of the batch (an ORM's span around its driver's) are left out."""

from __future__ import annotations

import sys
from array import array
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

from ..model import Span, SpanFacts, SpanKey
from ..model.span_facts import span_id_int
from ..model.statements import key_of

_LITTLE = sys.byteorder == "little"
COLUMNS = 6


class LogRow(NamedTuple):
    first_ns: int
    last_ns: int
    rows: int
    data: bytes


def keyed_spans(spans: Iterable[tuple[Span, dict]]) -> list[tuple[Span, SpanKey]]:
    """The spans (each with its stored attributes) that the log keeps, with their keys."""
    keyed = []
    for span, attributes in spans:
        key = key_of(span.kind, attributes, span.source)
        if key is not None and span.tid is not None and span.pid is not None:
            keyed.append((span, key))
    db_ids = {(span.trace_id, span.span_id) for span, key in keyed if key.kind == "sql"}
    return [(span, key) for span, key in keyed if not (key.kind == "sql" and (span.trace_id, span.parent_id) in db_ids)]


def log_row(keyed: Sequence[tuple[Span, SpanKey]], ids: dict[tuple[str, str], int]) -> LogRow:
    """The log row of non-empty ``keyed`` spans, ``ids`` giving each (kind, text) key's stored id."""
    columns = array("q", [span.start_ns for span, _ in keyed])
    columns.extend(span.end_ns for span, _ in keyed)
    columns.extend(span.pid for span, _ in keyed)
    columns.extend(span.tid for span, _ in keyed)
    columns.extend(ids[(key.kind, key.text)] for _, key in keyed)
    columns.extend(span_id_int(span.span_id) for span, _ in keyed)
    if not _LITTLE:
        columns.byteswap()
    return LogRow(min(span.start_ns for span, _ in keyed), max(span.end_ns for span, _ in keyed), len(keyed), columns.tobytes())


def facts_of(rows: Sequence[Sequence], pids: Iterable[int], start_ns: int, end_ns: int,
             keys_by_id: Callable[[list[int]], dict[int, SpanKey]]) -> SpanFacts:
    """The facts of processes ``pids`` overlapping [start_ns, end_ns) from log rows (rows, data,
    first_ns, last_ns) in the order written; ``keys_by_id`` reads the keys of a list of ids."""
    wanted = np.array(sorted({int(p) for p in pids}), dtype=np.int64)
    if not rows or not len(wanted):
        return SpanFacts()
    blocks = [np.frombuffer(bytes(data), dtype="<i8").reshape(COLUMNS, int(count)) for count, data, _, _ in rows
              if isinstance(data, (bytes, memoryview)) and int(count) > 0 and len(data) == COLUMNS * 8 * int(count)]
    if not blocks:  # damaged rows are left out
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
    keys: dict[int, SpanKey] = {}
    used = np.unique(table[4]).tolist()
    for offset in range(0, len(used), 500):
        keys.update(keys_by_id(used[offset:offset + 500]))
    return SpanFacts(table[0], table[1], table[2], table[3], table[4], table[5], keys)  # views of one array: no copies
