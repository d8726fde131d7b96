"""Trace spans in the store: bounded insert and windowed queries over the ``spans`` table.

Span records come from the in-process :class:`profviz.otel.SpanProcessor`, the OTLP/HTTP
receiver and ``profviz import-traces``. Everything in them (names, SQL text, attribute values)
is untrusted, so :func:`bound_record` caps every string before it reaches the store: a name at
:data:`MAX_NAME_CHARS`, attribute keys at :data:`MAX_ATTRIBUTE_KEY_CHARS`, values at
:data:`MAX_ATTRIBUTE_VALUE_CHARS` and at most :data:`MAX_ATTRIBUTES` attributes per span (the
number dropped is kept as ``profviz.dropped_attributes``).

Times are absolute CLOCK_REALTIME epoch nanoseconds, as are sample times.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from ..errors import ProfvizError
from ..model import Profile, Span
from . import Store
from .requests import RequestRow, materialize_requests, request_by_id

MAX_NAME_CHARS = 1024
MAX_ATTRIBUTE_KEY_CHARS = 256
MAX_ATTRIBUTE_VALUE_CHARS = 4096
MAX_ATTRIBUTES = 64
MAX_THREAD_NAME_CHARS = 256
TRUNCATION_MARK = "…"
DROPPED_ATTRIBUTES_KEY = "profviz.dropped_attributes"

SPAN_KINDS = ("internal", "server", "client", "producer", "consumer")
SPAN_STATUSES = ("unset", "ok", "error")
SPAN_SOURCES = ("processor", "otlp", "import")

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")

SPAN_COLUMNS = (
    "id", "trace_id", "span_id", "parent_id", "name", "kind", "status", "start_ns", "end_ns", "pid", "tid",
    "thread_name", "attributes", "approximate", "request_id", "source",
)


class SpanRecordError(ValueError):
    """A span record breaks a rule (ids, times, kind, status); the message names the span and the rule."""


@dataclass
class SpanRecord:
    """One span as stored: hex ids, absolute epoch-ns times, the thread that ran it if known.

    ``tid`` is the native thread id (``threading.get_native_id()``) and ``pid`` the process id;
    either may be None for spans from plain OpenTelemetry apps. ``approximate`` is set when the
    span carries no thread id and can only be joined to samples by time window.
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    status: str
    start_ns: int
    end_ns: int
    pid: int | None = None
    tid: int | None = None
    thread_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    approximate: bool = False
    request_id: int | None = None
    source: str = "processor"
    id: int | None = None

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def check(self) -> None:
        """Raise SpanRecordError naming the first broken rule."""
        label = f"span {self.span_id!r:.40} ({self.name!r:.60})"
        if not isinstance(self.trace_id, str) or not _TRACE_ID.match(self.trace_id) or self.trace_id == "0" * 32:
            raise SpanRecordError(f"{label} has trace id {self.trace_id!r:.80}; expected 32 lowercase hex digits, not all zero")
        if not isinstance(self.span_id, str) or not _SPAN_ID.match(self.span_id) or self.span_id == "0" * 16:
            raise SpanRecordError(f"{label} has span id {self.span_id!r:.80}; expected 16 lowercase hex digits, not all zero")
        if self.parent_id is not None and (not isinstance(self.parent_id, str) or not _SPAN_ID.match(self.parent_id)):
            raise SpanRecordError(f"{label} has parent id {self.parent_id!r:.80}; expected 16 lowercase hex digits or none")
        if not isinstance(self.start_ns, int) or not isinstance(self.end_ns, int) or self.start_ns <= 0:
            raise SpanRecordError(f"{label} has start {self.start_ns!r:.40}; expected a positive int of epoch ns")
        if self.end_ns < self.start_ns:
            raise SpanRecordError(f"{label} ends ({self.end_ns}) before it starts ({self.start_ns})")
        if self.end_ns >= 2**63:
            raise SpanRecordError(f"{label} has end {self.end_ns}, beyond 64-bit epoch ns")
        if self.kind not in SPAN_KINDS:
            raise SpanRecordError(f"{label} has kind {self.kind!r:.40}; expected one of {', '.join(SPAN_KINDS)}")
        if self.status not in SPAN_STATUSES:
            raise SpanRecordError(f"{label} has status {self.status!r:.40}; expected one of {', '.join(SPAN_STATUSES)}")
        if self.source not in SPAN_SOURCES:
            raise SpanRecordError(f"{label} has source {self.source!r:.40}; expected one of {', '.join(SPAN_SOURCES)}")
        for name, value in (("pid", self.pid), ("tid", self.tid)):
            if value is not None and (not isinstance(value, int) or not 0 <= value < 2**63):
                raise SpanRecordError(f"{label} has {name} {value!r:.40}; expected a non-negative int or none")


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + TRUNCATION_MARK


def bound_value(value: Any) -> Any:
    """An attribute value as stored: str/int/float/bool kept (strings capped), anything else as capped JSON text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else _cap(str(value), MAX_ATTRIBUTE_VALUE_CHARS)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, str):
        return _cap(value, MAX_ATTRIBUTE_VALUE_CHARS)
    if isinstance(value, (bytes, bytearray)):
        return _cap(bytes(value[:MAX_ATTRIBUTE_VALUE_CHARS]).hex(), MAX_ATTRIBUTE_VALUE_CHARS)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)[: MAX_ATTRIBUTE_VALUE_CHARS * 2]
    return _cap(text, MAX_ATTRIBUTE_VALUE_CHARS)


_PLAIN = (bool, int, float, type(None))


def _within_bounds(attributes: dict[str, Any]) -> bool:
    """True when bounding would change nothing (the common case, checked cheaply)."""
    if len(attributes) > MAX_ATTRIBUTES:
        return False
    for key, value in attributes.items():
        if type(key) is not str or len(key) > MAX_ATTRIBUTE_KEY_CHARS:
            return False
        kind = type(value)
        if kind is str:
            if len(value) > MAX_ATTRIBUTE_VALUE_CHARS:
                return False
        elif kind not in _PLAIN or (kind is int and not -(2**63) <= value < 2**63) or (kind is float and value != value):
            return False
        elif kind is float and abs(value) == float("inf"):
            return False
    return True


def bound_attributes(attributes: dict[str, Any] | None) -> dict[str, Any]:
    """At most MAX_ATTRIBUTES attributes with capped keys and values; the number dropped is recorded."""
    if attributes and _within_bounds(attributes):
        return dict(attributes)
    out: dict[str, Any] = {}
    dropped = 0
    for key, value in (attributes or {}).items():
        if len(out) >= MAX_ATTRIBUTES:
            dropped += 1
            continue
        out[_cap(str(key), MAX_ATTRIBUTE_KEY_CHARS)] = bound_value(value)
    if dropped:
        out[DROPPED_ATTRIBUTES_KEY] = dropped
    return out


def bound_record(record: SpanRecord) -> SpanRecord:
    """A copy of ``record`` with its name, thread name and attributes capped (see the module docstring)."""
    return replace(
        record,
        name=_cap(str(record.name), MAX_NAME_CHARS),
        thread_name=None if record.thread_name is None else _cap(str(record.thread_name), MAX_THREAD_NAME_CHARS),
        attributes=bound_attributes(record.attributes),
    )


def insert_spans(store: Store, records: Iterable[SpanRecord], *, checked: bool = False) -> int:
    """Check, bound and insert span records in one transaction; return how many were new.

    A span already stored (same trace and span id) is kept as it is. Raises SpanRecordError for
    the first record that breaks a rule, before anything is written (``checked``: the caller
    already ran :meth:`SpanRecord.check` on every record).
    """
    rows = []
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for record in records:
        if not checked:
            record.check()
        name, thread_name = str(record.name), record.thread_name
        rows.append((
            record.trace_id, record.span_id, record.parent_id,
            name if len(name) <= MAX_NAME_CHARS else _cap(name, MAX_NAME_CHARS), record.kind, record.status,
            record.start_ns, record.end_ns, record.pid, record.tid,
            None if thread_name is None else _cap(str(thread_name), MAX_THREAD_NAME_CHARS),
            dumps(bound_attributes(record.attributes)), int(bool(record.approximate)), record.request_id, record.source,
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


def _row_to_record(row: sqlite3.Row) -> SpanRecord:
    try:
        attributes = json.loads(row["attributes"] or "{}")
    except ValueError:
        attributes = {}
    return SpanRecord(
        trace_id=row["trace_id"], span_id=row["span_id"], parent_id=row["parent_id"], name=row["name"],
        kind=row["kind"], status=row["status"], start_ns=int(row["start_ns"]), end_ns=int(row["end_ns"]),
        pid=row["pid"], tid=row["tid"], thread_name=row["thread_name"],
        attributes=attributes if isinstance(attributes, dict) else {}, approximate=bool(row["approximate"]),
        request_id=row["request_id"], source=row["source"], id=int(row["id"]),
    )


def query_spans(
    store: Store,
    *,
    pid: int | None = None,
    pids: Iterable[int] | None = None,
    include_unknown_pid: bool = False,
    start_ns: int | None = None,
    end_ns: int | None = None,
    trace_id: str | None = None,
    tids: Iterable[int] | None = None,
    limit: int = 100_000,
) -> list[SpanRecord]:
    """Spans overlapping the window [start_ns, end_ns), oldest first, at most ``limit``.

    ``pid``/``pids`` keep spans of those processes (and, with ``include_unknown_pid``, spans whose
    process is unknown); ``tids`` keeps spans run on those native threads; ``trace_id`` one trace.
    """
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
    return [_row_to_record(row) for row in store.execute(sql, params)]


def count_spans(store: Store) -> int:
    return int(store.execute("SELECT count(*) FROM spans")[0][0])


def model_span(record: SpanRecord, thread: int) -> Span:
    """The model's Span for a record joined to profile thread index ``thread`` (-1: approximate)."""
    return Span(
        trace_id=record.trace_id, span_id=record.span_id, parent_id=record.parent_id, name=record.name,
        kind=record.kind, status=record.status, start_ns=record.start_ns, end_ns=record.end_ns, thread=thread,
        attributes=record.attributes, approximate=thread < 0,
    )


def spans_for_profile(
    store: Store,
    profile: Profile,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    offset_ns: int = 0,
    limit: int = 1_000_000,
) -> tuple[list[Span], int]:
    """The stored spans of the profile's processes overlapping its samples, as model Spans.

    The window defaults to the profile's sample time range (``start_ns``/``end_ns`` narrow it;
    all on the samples' clock, ``offset_ns`` being what span times need added to get there). A
    span is matched to a profile thread by (pid, tid), or by tid alone when its pid is unknown.
    Spans without a thread id become approximate (thread -1). Spans whose thread is not in the
    profile (it was not sampled) are left out; their count is returned with the spans.
    """
    first, last = profile.time_range_ns
    window_start = first if start_ns is None else max(first, start_ns)
    window_end = last if end_ns is None else min(last, end_ns)
    if not profile.sample_count or window_end <= window_start:
        return [], 0
    pids = sorted({t.pid for t in profile.threads} | ({int(profile.meta["pid"])} if profile.meta.get("pid") else set()))
    records = query_spans(
        store, pids=pids, include_unknown_pid=True, start_ns=window_start - offset_ns, end_ns=window_end - offset_ns,
        limit=limit,
    )
    by_pid_tid = {(t.pid, t.tid): i for i, t in enumerate(profile.threads)}
    by_tid: dict[int, int] = {}
    for i, t in enumerate(profile.threads):
        by_tid[t.tid] = i if t.tid not in by_tid else -2
    spans: list[Span] = []
    skipped = 0
    for record in records:
        if record.tid is None:
            spans.append(model_span(record, -1))
            continue
        thread = by_pid_tid.get((record.pid, record.tid)) if record.pid is not None else by_tid.get(record.tid)
        if thread is None or thread < 0:
            skipped += 1
            continue
        spans.append(model_span(record, thread))
    return spans, skipped


def request_for_profile(store: Store, profile_id: int) -> int | None:
    """The id of the request whose profile this is, if any."""
    materialize_requests(store)
    rows = store.execute("SELECT id FROM requests WHERE profile_id = ? ORDER BY id LIMIT 1", (int(profile_id),))
    return int(rows[0][0]) if rows else None


class SpanLookupError(ProfvizError):
    """The profile or request asked for cannot be joined with spans; the message says why and what to do."""


@dataclass
class SpanContext:
    """What joining spans to a profile needs: the profile, its spans and, for a request, its window.

    ``window`` is (thread index, start_ns, end_ns) of the request on the samples' clock, or None.
    """

    profile_id: int
    profile: Profile
    spans: list[Span]
    skipped: int
    request: RequestRow | None
    window: tuple[int, int, int] | None


def load_span_context(store: Store, profile_id: int | None = None, *, request_id: int | None = None,
                      offset_ns: int = 0) -> SpanContext:
    """Load a profile (or a request's profile) and the spans to join to it.

    With ``request_id`` (or a profile that is a request's profile) the spans are those of the
    request's thread overlapping the request, and ``window`` is set. Raises
    :class:`SpanLookupError`, RequestNotFound or ProfileNotFound with what to do.
    """
    request = None
    if request_id is not None:
        request = request_by_id(store, request_id)
        if request.profile_id is None:
            raise SpanLookupError(
                f"request {request_id} ({request.method} {request.route}) has no stored profile: only slow and "
                "sampled requests keep one; pick one with 'profviz requests --slowest 10'"
            )
        if profile_id is not None and profile_id != request.profile_id:
            raise SpanLookupError(f"request {request_id} belongs to profile {request.profile_id}, not {profile_id}: give one of them")
        profile_id = request.profile_id
    elif profile_id is None:
        raise SpanLookupError("give a profile id, or a request id")
    else:
        found = request_for_profile(store, profile_id)
        request = request_by_id(store, found) if found is not None else None
    profile = store.load_profile(profile_id)
    window = None
    if request is not None:
        thread = next((i for i, t in enumerate(profile.threads) if t.pid == request.pid and t.tid == request.tid), None)
        if thread is not None:
            window = (thread, request.start_ns, request.start_ns + request.duration_ns)
    spans, skipped = spans_for_profile(
        store, profile, start_ns=window[1] if window else None, end_ns=window[2] if window else None, offset_ns=offset_ns,
    )
    if window:
        spans = [s for s in spans if s.thread in (window[0], -1)]
    return SpanContext(profile_id, profile, spans, skipped, request, window)
