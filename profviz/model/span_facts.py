"""The spans the findings detectors read, as columns: every database statement and HTTP client call
(not the spans around them), with its thread and times, keyed by what it ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class SpanKey(NamedTuple):
    """What a span ran: ``kind`` "sql" (``text``: the normalised statement) or "http" (``text``:
    ``METHOD host/path`` with ids as ``{id}``); ``system`` and ``database`` (``db.system``,
    ``db.name``) and ``source`` of the first span stored with it (for reading query plans)."""

    kind: str
    text: str
    system: str | None = None
    database: str | None = None
    source: str = "processor"


@dataclass
class SpanFacts:
    """Columns of equal length (``start_ns``, ``end_ns``, ``pid``, ``tid``, ``key``, ``span_id``
    as int64, the span id's 64 bits) and ``keys`` (key id -> :class:`SpanKey`)."""

    start_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    end_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    key: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    span_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    keys: dict[int, SpanKey] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.start_ns)

    def span_hex(self, index: int) -> str:
        """The span id of fact ``index`` as the 16 hex digits spans carry."""
        return format(int(self.span_id[index]) & 0xFFFF_FFFF_FFFF_FFFF, "016x")


def span_id_int(span_id: str) -> int:
    """A 16-hex-digit span id as a signed 64-bit int (its bits), for an int64 column."""
    value = int(span_id, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def facts_from_spans(spans) -> SpanFacts:
    """The facts of ``spans`` (as a store logs them: statements and HTTP calls with a thread, not a
    statement's span inside another statement's span), for windows built from Span lists."""
    from .statements import key_of

    keyed = [(span, key_of(span.kind, span.attributes, span.source)) for span in spans]
    keyed = [(span, key) for span, key in keyed if key is not None and span.tid is not None and span.pid is not None]
    db_ids = {(span.trace_id, span.span_id) for span, key in keyed if key.kind == "sql"}
    keyed = [(span, key) for span, key in keyed if not (key.kind == "sql" and (span.trace_id, span.parent_id) in db_ids)]
    keyed.sort(key=lambda item: item[0].start_ns)
    numbers: dict[tuple[str, str], int] = {}
    keys: dict[int, SpanKey] = {}
    for _, key in keyed:
        if (key.kind, key.text) not in numbers:
            numbers[(key.kind, key.text)] = len(numbers) + 1
            keys[numbers[(key.kind, key.text)]] = key

    def column(values) -> np.ndarray:
        return np.array(list(values), dtype=np.int64)

    return SpanFacts(column(s.start_ns for s, _ in keyed), column(s.end_ns for s, _ in keyed), column(s.pid for s, _ in keyed),
                     column(s.tid for s, _ in keyed), column(numbers[(k.kind, k.text)] for _, k in keyed),
                     column(span_id_int(s.span_id) for s, _ in keyed), keys)
