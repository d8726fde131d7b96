"""Trace spans: one type for a span as recorded, stored, and lined up against a profile's samples."""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

SPAN_KINDS = ("internal", "server", "client", "producer", "consumer")
SPAN_STATUSES = ("unset", "ok", "error")
SPAN_SOURCES = ("processor", "otlp", "import")

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")


class SpanError(ValueError):
    """A span breaks a rule (ids, times, kind, status); the message names the span and the rule."""


@dataclass
class Span:
    """One span: hex ids, absolute epoch-ns times (CLOCK_REALTIME, as sample times).

    Where it ran, when known: ``pid`` and ``tid`` (the native thread id,
    ``threading.get_native_id()``) and ``thread_name``. ``approximate`` is set when the span
    carries no thread id and can only be joined to samples by time window. ``thread`` is the
    span's thread as an index into a profile's threads once it is joined to one (-1: none, or
    joined by time only). ``source`` says how it arrived; ``id`` and ``request_id`` are the
    store's, once stored.
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    status: str
    start_ns: int
    end_ns: int
    _: KW_ONLY
    thread: int = -1
    attributes: dict[str, Any] = field(default_factory=dict)
    approximate: bool = False
    pid: int | None = None
    tid: int | None = None
    thread_name: str | None = None
    request_id: int | None = None
    source: str = "processor"
    id: int | None = None

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def check(self) -> None:
        """Raise SpanError naming the first broken rule."""
        label = f"span {self.span_id!r:.40} ({self.name!r:.60})"
        if not isinstance(self.trace_id, str) or not _TRACE_ID.match(self.trace_id) or self.trace_id == "0" * 32:
            raise SpanError(f"{label} has trace id {self.trace_id!r:.80}; expected 32 lowercase hex digits, not all zero")
        if not isinstance(self.span_id, str) or not _SPAN_ID.match(self.span_id) or self.span_id == "0" * 16:
            raise SpanError(f"{label} has span id {self.span_id!r:.80}; expected 16 lowercase hex digits, not all zero")
        if self.parent_id is not None and (not isinstance(self.parent_id, str) or not _SPAN_ID.match(self.parent_id)):
            raise SpanError(f"{label} has parent id {self.parent_id!r:.80}; expected 16 lowercase hex digits or none")
        if not isinstance(self.start_ns, int) or not isinstance(self.end_ns, int) or self.start_ns <= 0:
            raise SpanError(f"{label} has start {self.start_ns!r:.40}; expected a positive int of epoch ns")
        if self.end_ns < self.start_ns:
            raise SpanError(f"{label} ends ({self.end_ns}) before it starts ({self.start_ns})")
        if self.end_ns >= 2**63:
            raise SpanError(f"{label} has end {self.end_ns}, beyond 64-bit epoch ns")
        if self.kind not in SPAN_KINDS:
            raise SpanError(f"{label} has kind {self.kind!r:.40}; expected one of {', '.join(SPAN_KINDS)}")
        if self.status not in SPAN_STATUSES:
            raise SpanError(f"{label} has status {self.status!r:.40}; expected one of {', '.join(SPAN_STATUSES)}")
        if self.source not in SPAN_SOURCES:
            raise SpanError(f"{label} has source {self.source!r:.40}; expected one of {', '.join(SPAN_SOURCES)}")
        for name, value in (("pid", self.pid), ("tid", self.tid)):
            if value is not None and (not isinstance(value, int) or not 0 <= value < 2**63):
                raise SpanError(f"{label} has {name} {value!r:.40}; expected a non-negative int or none")
