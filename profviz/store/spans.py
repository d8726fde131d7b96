"""Spans and the store, whatever the backend: the bounds every stored span is held to, and
joining stored spans to a profile's threads.

Everything in a span (names, SQL text, attribute values) is untrusted and may hold secrets, so every
backend stores its attributes through :func:`stored_attributes` (secrets redacted, SQL literals
normalised) and caps each string before storing it (:func:`bounded_name`, :func:`bounded_thread_name`, :func:`bound_attributes`):
a name at :data:`MAX_NAME_CHARS`, attribute keys at :data:`MAX_ATTRIBUTE_KEY_CHARS`, values at
:data:`MAX_ATTRIBUTE_VALUE_CHARS` and at most :data:`MAX_ATTRIBUTES` attributes per span (the
number dropped is kept as ``profviz.dropped_attributes``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ProfvizError
from ..model import Profile, RequestRow, Span
from ..model.redact import redact_attributes
from .base import Store

MAX_NAME_CHARS = 1024
MAX_ATTRIBUTE_KEY_CHARS = 256
MAX_ATTRIBUTE_VALUE_CHARS = 4096
MAX_ATTRIBUTES = 64
MAX_THREAD_NAME_CHARS = 256
TRUNCATION_MARK = "…"
DROPPED_ATTRIBUTES_KEY = "profviz.dropped_attributes"


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


def stored_attributes(attributes: dict[str, Any] | None) -> dict[str, Any]:
    """What a backend stores of a span's attributes: redacted and normalised
    (:func:`~profviz.model.redact.redact_attributes`), then bounded (:func:`bound_attributes`)."""
    return bound_attributes(redact_attributes(attributes))


def bounded_name(name: Any) -> str:
    name = str(name)
    return name if len(name) <= MAX_NAME_CHARS else _cap(name, MAX_NAME_CHARS)


def bounded_thread_name(name: Any) -> str | None:
    return None if name is None else _cap(str(name), MAX_THREAD_NAME_CHARS)


def spans_for_profile(
    store: Store,
    profile: Profile,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    offset_ns: int = 0,
    limit: int = 1_000_000,
) -> tuple[list[Span], int]:
    """The stored spans of the profile's processes overlapping its samples, each with its ``thread`` set.

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
    stored = store.query_spans(
        pids=pids, include_unknown_pid=True, start_ns=window_start - offset_ns, end_ns=window_end - offset_ns,
        limit=limit,
    )
    by_pid_tid = {(t.pid, t.tid): i for i, t in enumerate(profile.threads)}
    by_tid: dict[int, int] = {}
    for i, t in enumerate(profile.threads):
        by_tid[t.tid] = i if t.tid not in by_tid else -2
    spans: list[Span] = []
    skipped = 0
    for span in stored:
        if span.tid is None:
            spans.append(replace(span, thread=-1, approximate=True))
            continue
        thread = by_pid_tid.get((span.pid, span.tid)) if span.pid is not None else by_tid.get(span.tid)
        if thread is None or thread < 0:
            skipped += 1
            continue
        spans.append(replace(span, thread=thread, approximate=False))
    return spans, skipped


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
        request = store.request_by_id(request_id)
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
        found = store.request_for_profile(profile_id)
        request = store.request_by_id(found) if found is not None else None
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
