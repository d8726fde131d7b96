"""OTLP trace payloads (protobuf and JSON encodings) to and from span records.

Decoding uses ``opentelemetry-proto``'s generated ``ExportTraceServiceRequest``; JSON goes
through ``google.protobuf.json_format`` after turning OTLP JSON's hex ``traceId``/``spanId``/
``parentSpanId`` strings into the base64 that the protobuf JSON mapping expects (OTLP/JSON
deviates from the standard mapping there). Payloads are untrusted: bodies and gzip output are
capped at :data:`MAX_PAYLOAD_BYTES`, every span is checked (ids, times, kind, status) and any
failure raises :class:`OtlpError` with a message naming what was wrong, never anything else.

The thread of a span comes from its ``thread.id``/``thread.name`` attributes (stamped by
:class:`profviz.otel.SpanProcessor`); its process from the span's or the resource's
``process.pid``. Spans without ``thread.id`` are marked approximate.

Files: :func:`detect` and :func:`load_file` read OTLP JSON, either one ``ExportTraceServiceRequest``
object or one per line (the Collector's file exporter); :func:`dump_json` writes it.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import zlib
from typing import Any, Callable, Iterable

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from ..errors import ProfvizError
from ..model import Span, SpanError
from ..model.origin import resource_origin
from .json_stream import Cursor, JsonStreamError, array_items, walk_object

MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
MAX_VALUE_DEPTH = 8

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_KINDS = {
    OtlpSpan.SPAN_KIND_UNSPECIFIED: "internal",
    OtlpSpan.SPAN_KIND_INTERNAL: "internal",
    OtlpSpan.SPAN_KIND_SERVER: "server",
    OtlpSpan.SPAN_KIND_CLIENT: "client",
    OtlpSpan.SPAN_KIND_PRODUCER: "producer",
    OtlpSpan.SPAN_KIND_CONSUMER: "consumer",
}
_KIND_CODES = {"internal": OtlpSpan.SPAN_KIND_INTERNAL, "server": OtlpSpan.SPAN_KIND_SERVER, "client": OtlpSpan.SPAN_KIND_CLIENT,
               "producer": OtlpSpan.SPAN_KIND_PRODUCER, "consumer": OtlpSpan.SPAN_KIND_CONSUMER}
_STATUSES = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}
_STATUS_CODES = {v: k for k, v in _STATUSES.items()}
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_THREAD_KEYS = ("thread.id", "thread.name", "process.pid")


class OtlpError(ProfvizError):
    """An OTLP payload or file could not be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def read_limited(data: bytes, encoding: str | None, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The body after Content-Encoding (``gzip``, ``deflate`` or identity), at most ``max_bytes``.

    Decompression stops as soon as the output passes the limit, so a gzip bomb costs at most
    ``max_bytes`` of memory. Raises OtlpError (413 too large, 415 unknown encoding, 400 corrupt).
    """
    if len(data) > max_bytes:
        raise OtlpError(f"payload of {len(data)} bytes is over the {max_bytes}-byte limit: export smaller batches", 413)
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return data
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise OtlpError(f"Content-Encoding {encoding!r:.40} is not supported: send gzip or uncompressed", 415)
    decompressor = zlib.decompressobj(wbits=47)
    try:
        out = decompressor.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise OtlpError(f"payload is not valid {coding} data ({exc}): check the exporter's compression setting") from None
    if len(out) > max_bytes or decompressor.unconsumed_tail:
        raise OtlpError(f"payload decompresses to more than {max_bytes} bytes: export smaller batches", 413)
    if not decompressor.eof:
        raise OtlpError(f"{coding} payload is truncated: the body ended before the compressed stream did")
    if decompressor.unused_data:
        raise OtlpError(f"{coding} payload has {len(decompressor.unused_data)} bytes after the compressed stream: send one stream")
    return out


def _hex_to_b64(value: Any, where: str, size: int) -> str:
    if not isinstance(value, str):
        raise OtlpError(f"{where} is {type(value).__name__}, expected a hex string of {size * 2} digits")
    if value == "":
        return ""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OtlpError(f"{where} {value!r:.80} is not hex; OTLP/JSON ids are hex strings of {size * 2} digits") from None
    if len(raw) != size:
        raise OtlpError(f"{where} {value!r:.80} has {len(raw)} bytes, expected {size}")
    return base64.b64encode(raw).decode()


def _convert_json_ids(document: Any) -> Any:
    """Rewrite OTLP/JSON hex ids into protobuf-JSON base64 in place; check the shape on the way."""
    if not isinstance(document, dict):
        raise OtlpError(f"OTLP/JSON payload is a {type(document).__name__}, expected an object with resourceSpans")
    for r_index, resource_spans in enumerate(_list(document, ("resourceSpans", "resource_spans"), "payload")):
        where_r = f"resourceSpans[{r_index}]"
        if not isinstance(resource_spans, dict):
            raise OtlpError(f"{where_r} is a {type(resource_spans).__name__}, expected an object")
        for s_index, scope_spans in enumerate(_list(resource_spans, ("scopeSpans", "scope_spans"), where_r)):
            where_s = f"{where_r}.scopeSpans[{s_index}]"
            if not isinstance(scope_spans, dict):
                raise OtlpError(f"{where_s} is a {type(scope_spans).__name__}, expected an object")
            for index, span in enumerate(_list(scope_spans, ("spans",), where_s)):
                where = f"{where_s}.spans[{index}]"
                if not isinstance(span, dict):
                    raise OtlpError(f"{where} is a {type(span).__name__}, expected an object")
                _convert_span_ids(span, where)
    return document


def _convert_span_ids(span: dict, where: str) -> None:
    """A span's hex ids, and its links', as protobuf-JSON base64."""
    _convert_ids(span, where)
    for l_index, link in enumerate(_list(span, ("links",), where)):
        if isinstance(link, dict):
            _convert_ids(link, f"{where}.links[{l_index}]")


def _convert_ids(obj: dict, where: str) -> None:
    for key in _ID_FIELDS:
        if key in obj:
            obj[key] = _hex_to_b64(obj[key], f"{where}.{key}", 16 if key.startswith("trace") else 8)


def _list(obj: dict, keys: tuple[str, ...], where: str) -> list:
    for key in keys:
        if key in obj:
            value = obj[key]
            if not isinstance(value, list):
                raise OtlpError(f"{where}.{key} is a {type(value).__name__}, expected a list")
            return value
    return []


def parse_request(body: bytes, content_type: str | None) -> ExportTraceServiceRequest:
    """Parse an ``ExportTraceServiceRequest`` from protobuf or OTLP/JSON bytes (already decompressed)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    request = ExportTraceServiceRequest()
    if media in (PROTOBUF, "application/protobuf"):
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise OtlpError(f"payload is not a valid protobuf ExportTraceServiceRequest ({exc})") from None
        return request
    if media == JSON:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise OtlpError(f"payload is not valid JSON ({str(exc)[:200]})") from None
        try:
            json_format.ParseDict(_convert_json_ids(document), request, ignore_unknown_fields=True)
        except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
            raise OtlpError(f"payload is not a valid OTLP/JSON ExportTraceServiceRequest ({str(exc)[:300]})") from None
        return request
    raise OtlpError(
        f"Content-Type {content_type!r:.60} is not supported: send {PROTOBUF} or {JSON}", 415
    )


def _value(value: AnyValue, depth: int = 0) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which in ("array_value", "kvlist_value") and depth >= MAX_VALUE_DEPTH:
        return "(nested too deep)"
    if which == "array_value":
        return [_value(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 2**63 else None
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def records_from_request(request: ExportTraceServiceRequest, *, source: str = "otlp") -> list[Span]:
    """Span records from a parsed request, each checked. Raises OtlpError naming the first bad span."""
    records: list[Span] = []
    for r_index, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(resource_spans.resource.attributes)
        resource_pid = _int_or_none(resource.get("process.pid"))
        origin = resource_origin(resource)
        for s_index, scope_spans in enumerate(resource_spans.scope_spans):
            for index, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r_index}].scopeSpans[{s_index}].spans[{index}]"
                records.append(_record(span, where, resource_pid, origin, source))
    return records


def _record(span: OtlpSpan, where: str, resource_pid: int | None, origin: dict, source: str) -> Span:
    if len(span.trace_id) != 16:
        raise OtlpError(f"{where} has a {len(span.trace_id)}-byte trace id, expected 16")
    if len(span.span_id) != 8:
        raise OtlpError(f"{where} has a {len(span.span_id)}-byte span id, expected 8")
    if len(span.parent_span_id) not in (0, 8):
        raise OtlpError(f"{where} has a {len(span.parent_span_id)}-byte parent span id, expected 8 or none")
    kind = _KINDS.get(span.kind)
    if kind is None:
        raise OtlpError(f"{where} has span kind {span.kind}, expected 0-5")
    status = _STATUSES.get(span.status.code)
    if status is None:
        raise OtlpError(f"{where} has status code {span.status.code}, expected 0-2")
    attributes = _attributes(span.attributes)
    tid = _int_or_none(attributes.get("thread.id"))
    thread_name = attributes.get("thread.name")
    pid = _int_or_none(attributes.get("process.pid"))
    if pid is None:
        pid = resource_pid
    for key, value in origin.items():  # where the span came from: service, host, version, env
        attributes.setdefault(key, value)
    if status == "error" and span.status.message:
        attributes.setdefault("otel.status_description", span.status.message)
    record = Span(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex() or None,
        name=span.name,
        kind=kind,
        status=status,
        start_ns=int(span.start_time_unix_nano),
        end_ns=int(span.end_time_unix_nano),
        pid=pid,
        tid=tid,
        thread_name=thread_name if isinstance(thread_name, str) else None,
        attributes={k: v for k, v in attributes.items() if k not in _THREAD_KEYS},
        approximate=tid is None,
        source=source,
    )
    try:
        record.check()
    except SpanError as exc:
        raise OtlpError(f"{where}: {exc}") from None
    return record


def decode_payload(
    data: bytes, content_type: str | None, content_encoding: str | None = None, *, max_bytes: int = MAX_PAYLOAD_BYTES,
    source: str = "otlp",
) -> list[Span]:
    """Span records from an OTLP/HTTP request body. Raises OtlpError with the HTTP status to answer."""
    body = read_limited(data, content_encoding, max_bytes=max_bytes)
    if (content_type or "").split(";", 1)[0].strip().lower() == JSON:
        return records_from_json(body, source=source)
    return records_from_request(parse_request(body, content_type), source=source)


def records_from_json(body: bytes, *, source: str = "otlp") -> list[Span]:
    """Span records from an OTLP/JSON body, one span decoded at a time (:mod:`.json_stream`): the
    memory is the text and the records, never the whole document's objects. Raises OtlpError."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OtlpError(f"payload is not valid JSON (not UTF-8: {exc})") from None
    cursor = Cursor(text)
    records: list[Span] = []

    def resource_list(key: str) -> Callable[[Cursor], None]:
        def walk(c: Cursor) -> None:
            if c.peek() != "[":
                raise OtlpError(f"payload.{key} is a {type(c.value()).__name__}, expected a list")
            for r_index in array_items(c):
                _resource_spans(c, r_index, records, source)
        return walk

    try:
        if cursor.peek() != "{":
            raise OtlpError(f"OTLP/JSON payload is a {type(cursor.value()).__name__}, expected an object with resourceSpans")
        walk_object(cursor, {"resourceSpans": resource_list("resourceSpans"), "resource_spans": resource_list("resource_spans")})
        cursor.end()
    except JsonStreamError as exc:
        raise OtlpError(f"payload is not valid JSON ({exc})") from None
    return records


def _resource_spans(cursor: Cursor, r_index: int, records: list[Span], source: str) -> None:
    where_r = f"resourceSpans[{r_index}]"
    if cursor.peek() != "{":
        raise OtlpError(f"{where_r} is a {type(cursor.value()).__name__}, expected an object")
    group: list[Span] = []

    def scope_list(c: Cursor) -> None:
        if c.peek() != "[":
            raise OtlpError(f"{where_r}.scopeSpans is a {type(c.value()).__name__}, expected a list")
        for s_index in array_items(c):
            where_s = f"{where_r}.scopeSpans[{s_index}]"
            if c.peek() != "{":
                raise OtlpError(f"{where_s} is a {type(c.value()).__name__}, expected an object")
            walk_object(c, {"spans": lambda c2: _json_spans(c2, where_s, group, source)})

    rest = walk_object(cursor, {"scopeSpans": scope_list, "scope_spans": scope_list})
    resource = Resource()
    try:
        json_format.ParseDict(rest.get("resource") or {}, resource, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise OtlpError(f"{where_r}.resource is not a valid OTLP/JSON resource ({str(exc)[:300]})") from None
    attributes = _attributes(resource.attributes)
    resource_pid, origin = _int_or_none(attributes.get("process.pid")), resource_origin(attributes)
    for record in group:  # the resource may come after its spans in the text
        if record.pid is None:
            record.pid = resource_pid
        for key, value in origin.items():
            record.attributes.setdefault(key, value)
    records.extend(group)


def _json_spans(cursor: Cursor, where_s: str, group: list[Span], source: str) -> None:
    if cursor.peek() != "[":
        raise OtlpError(f"{where_s}.spans is a {type(cursor.value()).__name__}, expected a list")
    for index in array_items(cursor):
        where = f"{where_s}.spans[{index}]"
        span = cursor.value()
        if not isinstance(span, dict):
            raise OtlpError(f"{where} is a {type(span).__name__}, expected an object")
        _convert_span_ids(span, where)
        message = OtlpSpan()
        try:
            json_format.ParseDict(span, message, ignore_unknown_fields=True)
        except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
            raise OtlpError(f"{where} is not a valid OTLP/JSON span ({str(exc)[:300]})") from None
        group.append(_record(message, where, None, {}, source))


# -- encoding -----------------------------------------------------------------------------------


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(_any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=str(k), value=_any_value(v)) for k, v in value.items())
        return out
    return AnyValue(string_value="" if value is None else str(value))


def request_from_records(records: Iterable[Span]) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest`` holding the records, one resource per process id.

    Thread and process go into ``thread.id``/``thread.name``/``process.pid`` span attributes, so
    decoding the result gives back equal records.
    """
    request = ExportTraceServiceRequest()
    by_pid: dict[int | None, ScopeSpans] = {}
    for record in records:
        scope = by_pid.get(record.pid)
        if scope is None:
            resource_spans: ResourceSpans = request.resource_spans.add()
            if record.pid is not None:
                resource_spans.resource.attributes.append(KeyValue(key="process.pid", value=AnyValue(int_value=record.pid)))
            scope = resource_spans.scope_spans.add()
            scope.scope.name = "profviz"
            by_pid[record.pid] = scope
        span = scope.spans.add()
        span.trace_id = bytes.fromhex(record.trace_id)
        span.span_id = bytes.fromhex(record.span_id)
        if record.parent_id:
            span.parent_span_id = bytes.fromhex(record.parent_id)
        span.name = record.name
        span.kind = _KIND_CODES[record.kind]
        span.status.code = _STATUS_CODES[record.status]
        span.start_time_unix_nano = record.start_ns
        span.end_time_unix_nano = record.end_ns
        attributes = dict(record.attributes)
        if record.tid is not None:
            attributes["thread.id"] = record.tid
        if record.thread_name is not None:
            attributes["thread.name"] = record.thread_name
        if record.pid is not None:
            attributes["process.pid"] = record.pid
        span.attributes.extend(KeyValue(key=str(k), value=_any_value(v)) for k, v in attributes.items())
    return request


def request_to_json(request: ExportTraceServiceRequest) -> dict:
    """OTLP/JSON form of a request: lowerCamelCase keys, hex ids, enums as integers."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for obj in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in obj:
                            obj[key] = base64.b64decode(obj[key]).hex()
    return document


def dump_json(records: Iterable[Span]) -> str:
    """OTLP/JSON text for the records (one ExportTraceServiceRequest), readable by :func:`load_file`."""
    return json.dumps(request_to_json(request_from_records(records)), ensure_ascii=False)


# -- files --------------------------------------------------------------------------------------


def detect(path: str | os.PathLike) -> bool:
    """Whether the file looks like OTLP/JSON traces (an object with ``resourceSpans`` near its start)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(4096)
        except (OSError, EOFError, zlib.error):
            return False
    text = head.lstrip()
    return text.startswith(b"{") and (b'"resourceSpans"' in text or b'"resource_spans"' in text)


def load_file(path: str | os.PathLike, *, max_bytes: int = 1024 * 1024 * 1024) -> list[Span]:
    """Span records from an OTLP/JSON file (gzip allowed): one request object, or one per line.

    Raises OtlpError naming the file (and the line, for JSON Lines) on any problem.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise OtlpError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = read_limited(data, "gzip", max_bytes=max_bytes)
        except OtlpError as exc:
            raise OtlpError(f"{path}: {exc}") from None
    if len(data) > max_bytes:
        raise OtlpError(f"{path} is over {max_bytes} bytes: split it into smaller files")
    stripped = data.strip()
    if not stripped.startswith(b"{"):
        raise OtlpError(f"{path} is not OTLP/JSON traces: expected a JSON object with resourceSpans")
    try:
        json.loads(stripped)
        documents = [(None, stripped)]
    except ValueError:
        documents = [(n, line) for n, line in enumerate(stripped.split(b"\n"), 1) if line.strip()]
    records: list[Span] = []
    for line_number, document in documents:
        try:
            records.extend(records_from_request(parse_request(document, JSON), source="import"))
        except OtlpError as exc:
            where = f"{path} line {line_number}" if line_number else str(path)
            raise OtlpError(f"{where}: {exc}") from None
    return records
