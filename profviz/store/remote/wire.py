"""The body of a push from a sender (a middleware, ``profviz attach``) to a collector
(``profviz serve``): one batch of requests, profiles, stack nodes and spans as gzip-compressed JSON.

Layout (``version`` 1)::

    {"format": "profviz-batch", "version": 1,
     "requests": [values of REQUEST_FIELDS, row after row],
     "profiles": [{"request": index or null, "profile": <profviz JSON document>}
                  | {"request": index or null, "shared": {"meta", "source", "thread", "times", "stacks",
                                                          "weights", "states", "reasons"}}],
     "stack_nodes": {"source", "nodes": [[node, prefix, function, file, line], ...]} or null,
     "spans": [{Span fields}, ...]}

Everything in a body is untrusted: :func:`decode` checks every value and raises WireError (with
the HTTP status to answer) naming the first one that breaks a rule, before anything is stored;
requests whose times are out of range are left out alone.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from typing import Any

from ...formats.base import FormatError, expect_dict, expect_int, expect_list, expect_str, read_meta
from ...formats.profviz_json import from_doc, to_doc
from ...model import FIELD_COUNT, REQUEST_FIELDS, Profile, ProfileError, RequestBatch, SharedStackProfile, Span, SpanError, StackNodes, State
from ...model.origin import bounded_origin
from ..queries import SPAN_COLUMNS
from ...model.requests import NO_QUEUE, PROFILE_ID_FIELD

FORMAT = "profviz-batch"
VERSION = 1
MAX_BODY_BYTES = 16 * 1024 * 1024  # compressed, as sent
MAX_DECODED_BYTES = 128 * 1024 * 1024  # once decompressed
FUTURE_NS = 86_400 * 10**9  # how far ahead of the collector's clock a request or span may start
MAX_SPAN_NS = 1 << 62  # a request's duration or queue time beyond this (146 years) is not a time
_INT_FIELDS = frozenset(("pid", "tid", "status", "start_ns", "duration_ns", "cpu_ns", "response_bytes", "profile_id", "queue_ns"))
_START, _DURATION, _QUEUE, _LABELS = (REQUEST_FIELDS.index(name) for name in ("start_ns", "duration_ns", "queue_ns", "labels"))
_SPAN_FIELDS = SPAN_COLUMNS[1:]


class WireError(Exception):
    """A body the collector refuses; ``status`` is the HTTP status to answer (400 or 413)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def encode(batch: RequestBatch | None = None, spans: list[Span] = (), *, profiles: list = ()) -> bytes:
    """A gzip body of ``batch`` (its requests, profiles with their request links, stack nodes),
    extra ``profiles`` not linked to a request, and ``spans``."""
    out_profiles = []
    pairs = list(batch.profiles) if batch is not None else []
    for profile, request in pairs + [(profile, None) for profile in profiles]:
        if type(profile) is SharedStackProfile:
            out_profiles.append({"request": request, "shared": {
                "meta": _portable(profile.meta), "source": profile.source, "thread": list(profile.thread), "times": profile.times,
                "stacks": profile.stacks, "weights": profile.weights, "states": profile.states, "reasons": profile.reasons}})
        else:
            out_profiles.append({"request": request, "profile": to_doc(profile)})
    nodes = batch.stack_nodes if batch is not None else None
    doc = {
        "format": FORMAT, "version": VERSION,
        "requests": batch.values if batch is not None else [],
        "profiles": out_profiles,
        "stack_nodes": None if nodes is None else {"source": nodes.source, "nodes": [list(node) for node in nodes.nodes]},
        "spans": [{key: getattr(span, key) for key in _SPAN_FIELDS} for span in spans],
    }
    return gzip.compress(json.dumps(doc, separators=(",", ":"), default=_plain).encode(),
                         compresslevel=5)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _portable(meta: dict) -> dict:
    return {key: meta[key] for key in ("kind", "pid", "cmdline", "start_ns", "duration_ns", "rate_hz", "error_count", "labels", "notes")
            if meta.get(key) is not None}


def decode(body: bytes, content_encoding: str | None = "gzip") -> tuple[RequestBatch, list[Span]]:
    """The batch and spans of a body; WireError (413 when too large, else 400) for anything that breaks a rule."""
    if len(body) > MAX_BODY_BYTES:
        raise WireError(413, f"batch of {len(body)} bytes is over the {MAX_BODY_BYTES}-byte limit: send smaller batches")
    if (content_encoding or "").strip().lower() == "gzip":
        try:
            reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = reader.decompress(body, MAX_DECODED_BYTES + 1)
        except zlib.error as exc:
            raise WireError(400, f"batch is not valid gzip ({exc})") from None
        if len(data) > MAX_DECODED_BYTES:
            raise WireError(413, f"batch decompresses to over {MAX_DECODED_BYTES} bytes: send smaller batches")
    elif content_encoding:
        raise WireError(400, f"Content-Encoding {content_encoding[:40]!r} is not supported: send gzip or nothing")
    else:
        data = body
    try:
        doc = expect_dict(json.loads(data), "the batch")
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise FormatError(f"format is {str(doc.get('format'))[:40]!r} version {str(doc.get('version'))[:10]}, "
                              f"expected {FORMAT!r} version {VERSION}: upgrade the sender or the collector")
        batch = RequestBatch()
        batch.values, kept_as = _requests(expect_list(doc.get("requests", []), "requests"))
        count = len(kept_as)
        for i, raw in enumerate(expect_list(doc.get("profiles", []), "profiles")):
            entry = expect_dict(raw, f"profiles[{i}]")
            request = entry.get("request")
            if request is not None:
                request = expect_int(request, f"profiles[{i}].request", minimum=0)
                if request >= count:
                    raise FormatError(f"profiles[{i}].request is {request}, but the batch has {count} requests")
                request = kept_as[request]
            batch.keep(_shared(entry["shared"], f"profiles[{i}].shared") if "shared" in entry else _profile(entry.get("profile")), request)
        if doc.get("stack_nodes") is not None:
            batch.stack_nodes = _nodes(expect_dict(doc["stack_nodes"], "stack_nodes"))
        spans = [_span(raw, f"spans[{i}]") for i, raw in enumerate(expect_list(doc.get("spans", []), "spans"))]
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WireError(400, f"batch is not valid JSON ({str(exc)[:200]})") from None
    except (FormatError, ProfileError, SpanError, KeyError, TypeError) as exc:
        raise WireError(400, f"batch refused: {str(exc)[:300]}") from None
    return batch, spans


def _requests(values: list) -> tuple[list, list[int | None]]:
    """The request values of a body, checked: a value of the wrong type refuses the body; a row
    whose times are out of range (before 1970, over a day ahead, a negative or 146-year duration)
    is left out. Origin labels become strings of at most :data:`MAX_ORIGIN_CHARS`. Returns the
    values kept and, per row sent, its index among them (None when left out)."""
    if len(values) % FIELD_COUNT:
        raise FormatError(f"requests holds {len(values)} values, not a whole number of {FIELD_COUNT}-field rows")
    for at, value in enumerate(values):
        field = REQUEST_FIELDS[at % FIELD_COUNT]
        where = f"requests[{at // FIELD_COUNT}].{field}"
        if field in _INT_FIELDS:
            if type(value) is not int or not -(2**63) <= value < 2**63:
                raise FormatError(f"{where} is {str(value)[:40]!r}; expected a 64-bit int")
        elif type(value) is not str:
            raise FormatError(f"{where} is {str(value)[:40]!r}; expected a string")
    latest = time.time_ns() + FUTURE_NS
    kept: list = []
    index: list[int | None] = []
    for at in range(0, len(values), FIELD_COUNT):
        row = values[at:at + FIELD_COUNT]
        start, duration, queue = row[_START], row[_DURATION], row[_QUEUE]
        if not (0 <= start <= latest and 0 <= duration < MAX_SPAN_NS and (queue == NO_QUEUE or 0 <= queue < MAX_SPAN_NS)):
            index.append(None)
            continue
        row[PROFILE_ID_FIELD] = 0  # links to profiles come from the profiles' "request"; ids are the collector's
        row[_LABELS] = _checked_labels(row[_LABELS], f"requests[{at // FIELD_COUNT}].labels")
        index.append(len(kept) // FIELD_COUNT)
        kept.extend(row)
    return kept, index


def _checked_labels(text: str, where: str) -> str:
    try:
        labels = json.loads(text)
    except ValueError:
        labels = None
    if not isinstance(labels, dict):
        raise FormatError(f"{where} is not a JSON object")
    bounded = bounded_origin(labels)
    return text if bounded is labels else json.dumps(bounded)


def _profile(raw: Any) -> Profile:
    return from_doc(raw)


def _int_list(raw: Any, where: str, count: int | None = None) -> list[int]:
    values = expect_list(raw, where)
    for i, value in enumerate(values):
        if type(value) is not int or not -(2**63) <= value < 2**63:
            raise FormatError(f"{where}[{i}] is {str(value)[:40]!r}; expected a 64-bit int")
    if count is not None and len(values) != count:
        raise FormatError(f"{where} has {len(values)} values, not {count}")
    return values


def _shared(raw: Any, where: str) -> SharedStackProfile:
    entry = expect_dict(raw, where)
    thread = expect_list(entry.get("thread"), f"{where}.thread")
    if len(thread) != 3:
        raise FormatError(f"{where}.thread must be [pid, tid, name]")
    times = _int_list(entry.get("times"), f"{where}.times")
    states = _int_list(entry.get("states"), f"{where}.states", len(times))
    if any(not 0 <= state < len(State) for state in states):
        raise FormatError(f"{where}.states holds a value that is not a sample state")
    weights = _int_list(entry.get("weights"), f"{where}.weights", len(times))
    if any(weight <= 0 for weight in weights):
        raise FormatError(f"{where}.weights holds a weight that is not positive")
    reasons = entry.get("reasons")
    if reasons is not None:
        reasons = expect_list(reasons, f"{where}.reasons")
        if len(reasons) != len(times) or any(r is not None and type(r) is not str for r in reasons):
            raise FormatError(f"{where}.reasons must hold a string or null per sample")
    return SharedStackProfile(
        read_meta(entry.get("meta", {}), f"{where}.meta"), expect_str(entry.get("source"), f"{where}.source"),
        (expect_int(thread[0], f"{where}.thread[0]", minimum=0), expect_int(thread[1], f"{where}.thread[1]"),
         expect_str(thread[2], f"{where}.thread[2]")),
        times, _int_list(entry.get("stacks"), f"{where}.stacks", len(times)), weights, states, reasons)


def _nodes(entry: dict) -> StackNodes:
    source = expect_str(entry.get("source"), "stack_nodes.source")
    nodes = []
    for i, raw in enumerate(expect_list(entry.get("nodes"), "stack_nodes.nodes")):
        row = expect_list(raw, f"stack_nodes.nodes[{i}]")
        if len(row) != 5:
            raise FormatError(f"stack_nodes.nodes[{i}] must be [node, prefix, function, file, line]")
        nodes.append((expect_int(row[0], f"stack_nodes.nodes[{i}][0]", minimum=0), expect_int(row[1], f"stack_nodes.nodes[{i}][1]"),
                      expect_str(row[2], f"stack_nodes.nodes[{i}][2]"), expect_str(row[3], f"stack_nodes.nodes[{i}][3]"),
                      expect_int(row[4], f"stack_nodes.nodes[{i}][4]")))
    return StackNodes(source, nodes)


def _span(raw: Any, where: str) -> Span:
    entry = expect_dict(raw, where)
    fields = {key: entry.get(key) for key in _SPAN_FIELDS}
    attributes = fields.pop("attributes") or {}
    if not isinstance(attributes, dict):
        raise FormatError(f"{where}.attributes must be an object")
    for key in ("name", "kind", "status", "source"):
        fields[key] = expect_str(fields[key], f"{where}.{key}")
    if fields["request_id"] is not None:
        fields["request_id"] = None  # request ids are the collector's own
    span = Span(fields.pop("trace_id"), fields.pop("span_id"), fields.pop("parent_id"), fields.pop("name"), fields.pop("kind"),
                fields.pop("status"), fields.pop("start_ns"), fields.pop("end_ns"), attributes=attributes,
                approximate=bool(fields.pop("approximate")), **fields)
    span.check()
    if span.start_ns > time.time_ns() + FUTURE_NS:
        raise FormatError(f"{where} starts more than a day from now: check the sender's clock")
    if span.thread_name is not None and type(span.thread_name) is not str:
        raise FormatError(f"{where}.thread_name must be a string")
    return span
