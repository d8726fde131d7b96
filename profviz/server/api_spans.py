"""Spans in the server: the OTLP/HTTP trace receiver and the span / correlation JSON endpoints.

``POST /v1/traces`` accepts OTLP/HTTP exports (protobuf or JSON, optionally gzip) from any
OpenTelemetry SDK or Collector and stores their spans. Answers follow the OTLP/HTTP spec: an
``ExportTraceServiceResponse`` on success, a ``google.rpc.Status`` (code 3, INVALID_ARGUMENT)
with the reason on a rejected payload, in the request's encoding; 503 with ``Retry-After``
beyond the decoding budget (:mod:`.ingest`). The API endpoints return
profile-scoped times relative to the profile's origin, as everything in ``docs/api.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from ..analysis.calltree import SampleFilter
from ..analysis.correlate import SpanJoin, join_spans, root_spans, unspanned
from ..analysis.flamegraph import flamegraph
from ..analysis.span_views import gap_summary, span_depths, span_flame_mask, span_summaries, state_lanes
from ..formats.otlp import JSON, MAX_PAYLOAD_BYTES, OtlpError, decode_payload
from ..model import Profile
from ..shapes.flame import flamegraph_json
from ..shapes.spans import api_listing_json, gap_row, lane_json, listing_rows, relative_row, span_row, stored_span_json
from ..store import RequestNotFound
from ..store.spans import SpanContext, SpanLookupError, load_span_context
from .context import profile_origin_ns, server_context
from .ingest import RETRY_AFTER_S, IngestBudget
from .params import bad, bool_param, float_param, int_param, profile_id_param

bp = Blueprint("spans_api", __name__)
OFFSET_LIMIT_NS = 24 * 3600 * 10**9
MAX_WATERFALL_SPANS = 20_000
INVALID_ARGUMENT = 3
UNAVAILABLE = 14


def _status_protobuf(code: int, message: str) -> bytes:
    """A serialized ``google.rpc.Status`` {code, message} (its two scalar fields, encoded by hand)."""
    text = message.encode("utf-8")

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    return b"\x08" + varint(code) + b"\x12" + varint(len(text)) + text


def _otlp_answer(status: int, message: str | None, as_json: bool, code: int = INVALID_ARGUMENT) -> Response:
    if as_json:
        body = {} if message is None else {"code": code, "message": message,
                                          "error": {"status": status, "message": message}}
        response = jsonify(body)
    else:
        data = b"" if message is None else _status_protobuf(code, message)
        response = Response(data, content_type="application/x-protobuf")
    response.status_code = status
    return response


@bp.post("/v1/traces")
def receive_traces():
    """OTLP/HTTP trace export: store the spans; 4xx with a reason for anything malformed; 503
    with Retry-After while other exports use the decoding budget (see :mod:`.ingest`)."""
    content_type = request.headers.get("Content-Type", "")
    as_json = content_type.split(";", 1)[0].strip().lower() == JSON
    length = request.content_length
    if length is not None and length > MAX_PAYLOAD_BYTES:
        return _otlp_answer(413, f"payload of {length} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit: export smaller batches", as_json)
    reserved = MAX_PAYLOAD_BYTES if length is None or request.headers.get("Content-Encoding") else length  # decoded size
    budget = _ingest_budget()
    if not budget.take(reserved):
        response = _otlp_answer(503, "busy decoding other exports: retry after the time in Retry-After", as_json, UNAVAILABLE)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    try:
        body = request.stream.read(MAX_PAYLOAD_BYTES + 1)
        try:
            records = decode_payload(body, content_type, request.headers.get("Content-Encoding"))
        except OtlpError as exc:
            return _otlp_answer(exc.status, str(exc), as_json)
        del body
        server_context().store.insert_spans(records, checked=True)
    finally:
        budget.give_back(reserved)
    return _otlp_answer(200, None, as_json)


def _ingest_budget() -> IngestBudget:
    from flask import current_app

    return current_app.extensions.setdefault("profviz-ingest", IngestBudget())


# -- span and correlation API ------------------------------------------------------------------


def _offset() -> int:
    return int_param(request.args, "offset_ns", 0, low=-OFFSET_LIMIT_NS, high=OFFSET_LIMIT_NS)


@dataclass
class _Joined:
    context: SpanContext
    join: SpanJoin

    @property
    def window(self) -> tuple[int, int, int] | None:
        return self.context.window


def _joined(profile_id: int | None, request_id: int | None) -> _Joined:
    """A profile (or a request's profile) joined with its spans, memoised per (ids, offset)."""
    context = server_context()
    offset = _offset()

    def make() -> _Joined:
        try:
            loaded = load_span_context(context.store, profile_id, request_id=request_id, offset_ns=offset)
        except RequestNotFound as exc:
            raise NotFound(str(exc)) from None
        except SpanLookupError as exc:
            raise BadRequest(str(exc)) from None
        return _Joined(loaded, join_spans(loaded.profile, loaded.spans, offset_ns=offset))

    newest = context.store.newest_span_id()
    return context.memo(("span-join", profile_id, request_id, offset, newest), make)


def _listing(joined: _Joined) -> dict:
    """The JSON of ``profviz spans --json`` with times relative to the profile's origin."""
    context, join = joined.context, joined.join
    top = int_param(request.args, "top", 5, low=0, high=50)
    gap = gap_summary(join, unspanned(join, *context.window), top=top) if context.window else None
    rows = listing_rows(span_summaries(join, top=top), gap, context.profile)
    return api_listing_json(context.profile_id, context.request, profile_origin_ns(context.profile), join.offset_ns,
                            context.skipped, rows)


@bp.get("/api/profiles/<profile_id>/spans")
def get_profile_spans(profile_id: str):
    """The spans joined to a profile, as ``profviz spans ID --json`` (times relative to the origin)."""
    return jsonify(_listing(_joined(profile_id_param(profile_id), _request_param())))


@bp.get("/api/requests/<request_id>/spans")
def get_request_spans(request_id: str):
    """The spans of one request with its "(no span)" entry, as ``profviz spans --request RID --json``."""
    return jsonify(_listing(_joined(None, _request_id(request_id))))


def _request_param() -> int | None:
    return int_param(request.args, "request", None, low=1, high=2**62)


def _request_id(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise NotFound(f"no request with id {raw[:40]!r}: request ids are integers") from None
    if value <= 0:
        raise NotFound(f"no request with id {value}")
    return value


@bp.get("/api/spans")
def list_spans():
    """Stored spans, filtered by ``trace_id``, ``pid``, ``start_ms``/``end_ms`` (epoch ms), ``limit``."""
    args = request.args
    trace_id = args.get("trace_id")
    if trace_id is not None and (len(trace_id) != 32 or any(c not in "0123456789abcdefABCDEF" for c in trace_id)):
        raise bad("trace_id", "expected 32 hex digits")
    start = float_param(args, "start_ms", -1.0, low=-1.0, high=1e16)
    end = float_param(args, "end_ms", -1.0, low=-1.0, high=1e16)
    records = server_context().store.query_spans(
        pid=int_param(args, "pid", None, low=0, high=2**31),
        trace_id=trace_id,
        start_ns=None if start < 0 else int(start * 1e6),
        end_ns=None if end < 0 else int(end * 1e6),
        limit=int_param(args, "limit", 1000, low=1, high=100_000),
    )
    return jsonify({"spans": [stored_span_json(span) for span in records]})


@bp.get("/api/profiles/<profile_id>/correlation")
def get_correlation(profile_id: str):
    """Spans waterfall with per-span sample stats, the state lane of every span thread, and "(no span)".

    Spans come in tree order (parent before children, siblings by start), each with ``depth``;
    at most 20000 (``truncated`` says when more were cut).
    """
    joined = _joined(profile_id_param(profile_id), _request_param())
    join, profile = joined.join, joined.context.profile
    origin = profile_origin_ns(profile)
    rows = [span_row(summary, profile) for summary in span_summaries(join, top=int_param(request.args, "top", 5, low=0, high=50))]
    by_id = {(r["trace_id"], r["span_id"]): r for r in rows}
    depths = span_depths(join.spans)
    for span, depth in zip(join.spans, depths):
        by_id[(span.trace_id, span.span_id)]["depth"] = depth
    ordered = _tree_order(rows)
    truncated = len(ordered) > MAX_WATERFALL_SPANS
    ordered = ordered[:MAX_WATERFALL_SPANS]
    for index, row in enumerate(ordered):
        row["index"] = index
        relative_row(row, origin)
    threads = sorted({s.thread for s in join.spans if s.thread >= 0} | ({joined.window[0]} if joined.window else set()))
    if joined.window:
        start, end = joined.window[1], joined.window[2]
    elif len(join.spans):
        first, last = profile.time_range_ns
        start, end = max(int(join.start_ns.min()), first), min(int(join.end_ns.max()), last)
    else:
        start, end = profile.time_range_ns
    lanes = [lane_json(lane, origin) for lane in state_lanes(profile, threads, start, end)]
    no_span = None
    if joined.window:
        no_span = relative_row(gap_row(gap_summary(join, unspanned(join, *joined.window)), profile), origin)
    return jsonify({
        "profile_id": joined.context.profile_id, "request_id": joined.context.request.id if joined.context.request else None,
        "origin_ns": str(origin),
        "offset_ns": join.offset_ns, "window": {"start_ns": start - origin, "end_ns": end - origin},
        "roots": [join.spans[i].span_id for i in root_spans(join.spans)],
        "spans": ordered, "truncated": truncated, "skipped_spans": joined.context.skipped,
        "lanes": lanes, "no_span": no_span,
    })


def _tree_order(rows: list[dict]) -> list[dict]:
    """Rows (already in start order) reordered parent-first, children by start."""
    present = {(r["trace_id"], r["span_id"]) for r in rows}
    children: dict[tuple, list[dict]] = {}
    roots = []
    for row in rows:
        parent = (row["trace_id"], row["parent_id"])
        if row["parent_id"] and parent in present and parent != (row["trace_id"], row["span_id"]):
            children.setdefault(parent, []).append(row)
        else:
            roots.append(row)
    out: list[dict] = []
    seen: set[tuple] = set()
    stack = list(reversed(roots))
    while stack:
        row = stack.pop()
        key = (row["trace_id"], row["span_id"])
        if key in seen:
            continue
        seen.add(key)
        out.append(row)
        stack.extend(reversed(children.get(key, [])))
    out.extend(r for r in rows if (r["trace_id"], r["span_id"]) not in seen)
    return out


@dataclass
class MaskedSelection(SampleFilter):
    """A SampleFilter that also keeps only the samples of an explicit boolean mask."""

    extra: np.ndarray | None = None

    def mask(self, profile: Profile) -> np.ndarray:
        keep = super().mask(profile)
        return keep if self.extra is None else keep & self.extra


@bp.get("/api/profiles/<profile_id>/span-flamegraph")
def get_span_flamegraph(profile_id: str):
    """The flame graph of one span (``span_id``) or of every span named ``name``.

    ``children=0`` (default): only the samples the span owns (no child span was open);
    ``children=1``: every sample inside the span's window on its thread. ``no_span=1`` instead
    gives the request's "(no span)" samples. Same shape as ``/flamegraph``.
    """
    args = request.args
    joined = _joined(profile_id_param(profile_id), _request_param())
    join, context = joined.join, joined.context
    span_id, name = args.get("span_id"), args.get("name")
    if bool_param(args, "no_span"):
        if joined.window is None:
            raise bad("no_span", "this profile is not a request's profile; give request=RID")
        mask = unspanned(join, *joined.window).mask
        label = {"no_span": True}
    elif (span_id is None) == (name is None):
        raise bad("span_id", "give exactly one of span_id, name or no_span=1")
    else:
        include = bool_param(args, "children")
        if span_id is not None:
            index = next((i for i, s in enumerate(join.spans) if s.span_id == span_id.lower()), None)
            if index is None:
                raise NotFound(f"no span {span_id[:40]!r} is joined to profile {context.profile_id}: see /api/profiles/{context.profile_id}/spans")
            mask = span_flame_mask(join, index=index, include_children=include)
        else:
            if len(name) > 2000:
                raise bad("name", "at most 2000 characters")
            mask = span_flame_mask(join, name=name, include_children=include)
        label = {"span_id": span_id, "name": name, "children": include}
    min_fraction = float_param(args, "min_fraction", 0.001, low=0.0, high=1.0)
    max_nodes = int_param(args, "max_nodes", 20_000, low=1, high=100_000)
    body = flamegraph_json(flamegraph(context.profile, MaskedSelection(extra=mask), min_fraction=min_fraction, max_nodes=max_nodes))
    request_id = context.request.id if context.request else None
    return jsonify({"profile_id": context.profile_id, "request_id": request_id, **label, **body})
