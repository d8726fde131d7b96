"""OTLP decoding/encoding, span bounds, the OTLP/HTTP receiver (real exporter, real socket), import-traces."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from profviz.formats import otlp
from profviz.formats.otlp import OtlpError, decode_payload, dump_json, load_file, request_to_json
from profviz.otel import SpanProcessor
from profviz.server import create_app
from profviz.server.runner import RunningServer
from profviz.store import open_store
from profviz.store.spans import (
    DROPPED_ATTRIBUTES_KEY,
    MAX_ATTRIBUTE_VALUE_CHARS,
    MAX_ATTRIBUTES,
    MAX_NAME_CHARS,
)
from profviz.model import Span

PROFVIZ = shutil.which("profviz") or os.path.join(os.path.dirname(sys.executable), "profviz")
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def sdk_spans():
    """Real SDK spans: a server span with a client child (error status) and a link, stamped by profviz."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop", "process.pid": 4321}))
    provider.add_span_processor(SpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER, attributes={"http.route": "/cart"}) as root:
        with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT,
                                          attributes={"db.statement": "SELECT 1", "rows": 3, "ratio": 0.5,
                                                      "flags": [True, False]}) as child:
            child.set_status(Status(StatusCode.ERROR, "timeout"))
        root.add_link(child.get_span_context())
    provider.shutdown()
    return exporter.get_finished_spans()


def _payload(spans) -> bytes:
    return encode_spans(spans).SerializeToString()


def test_protobuf_payload_from_the_real_encoder_decodes_to_records(sdk_spans):
    records = {r.name: r for r in decode_payload(_payload(sdk_spans), "application/x-protobuf")}
    root, child = records["GET /cart"], records["SELECT"]
    sdk_child = [s for s in sdk_spans if s.name == "SELECT"][0]
    assert child.trace_id == format(sdk_child.context.trace_id, "032x")
    assert child.span_id == format(sdk_child.context.span_id, "016x")
    assert child.parent_id == root.span_id and root.parent_id is None
    assert (child.start_ns, child.end_ns) == (sdk_child.start_time, sdk_child.end_time)
    assert child.kind == "client" and root.kind == "server"
    assert child.status == "error" and child.attributes["otel.status_description"] == "timeout"
    assert child.attributes["db.statement"] == "SELECT 1" and child.attributes["rows"] == 3
    assert child.attributes["flags"] == [True, False] and child.attributes["ratio"] == 0.5
    assert child.attributes["service.name"] == "shop"
    assert child.tid == threading.get_native_id() and child.pid == os.getpid() and not child.approximate
    assert child.thread_name == threading.current_thread().name
    assert "thread.id" not in child.attributes


def test_gzip_and_json_encodings_give_the_same_records(sdk_spans):
    body = _payload(sdk_spans)
    plain = decode_payload(body, "application/x-protobuf")
    assert decode_payload(gzip.compress(body), "application/x-protobuf; charset=binary", "gzip") == plain
    text = json.dumps(request_to_json(encode_spans(sdk_spans)))
    assert '"traceId": "' + plain[0].trace_id + '"' in text  # OTLP/JSON ids are hex, not base64
    assert decode_payload(text.encode(), "application/json") == plain
    assert decode_payload(gzip.compress(text.encode()), "application/json", "gzip") == plain


def test_spans_without_thread_id_are_approximate_and_take_the_resource_pid():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"process.pid": 77}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("plain"):
        pass
    (record,) = decode_payload(_payload(exporter.get_finished_spans()), "application/x-protobuf")
    assert record.approximate and record.tid is None and record.pid == 77


def test_dump_json_round_trips_and_load_file_reads_objects_lines_and_gzip(sdk_spans, tmp_path):
    records = decode_payload(_payload(sdk_spans), "application/x-protobuf")
    text = dump_json(records)
    assert decode_payload(text.encode(), "application/json") == records
    single = tmp_path / "traces.json"
    single.write_text(text)
    assert otlp.detect(single) and [r.span_id for r in load_file(single)] == [r.span_id for r in records]
    assert all(r.source == "import" for r in load_file(single))
    lines = tmp_path / "traces.jsonl"
    lines.write_text(dump_json(records[:1]) + "\n" + dump_json(records[1:]) + "\n")
    assert len(load_file(lines)) == 2
    packed = tmp_path / "traces.json.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    assert otlp.detect(packed) and len(load_file(packed)) == 2
    other = tmp_path / "profile.json"
    other.write_text('{"shared": {"frames": []}}')
    assert not otlp.detect(other)


def _json_body(**span_overrides) -> bytes:
    span = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "x", "kind": 2,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000100000000"}
    span.update(span_overrides)
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


MALFORMED = [
    ("bad protobuf bytes", b"\x0a\xff\xff\xff\xff\x0f garbage", PROTOBUF, None, 400, "protobuf"),
    ("bad JSON", b'{"resourceSpans": [', JSON_HEADERS, None, 400, "not valid JSON"),
    ("JSON not an object", b"[1, 2]", JSON_HEADERS, None, 400, "expected an object"),
    ("resourceSpans of wrong type", b'{"resourceSpans": "many"}', JSON_HEADERS, None, 400, "expected a list"),
    ("span name of wrong type", _json_body(name={"a": 1}), JSON_HEADERS, None, 400, "OTLP/JSON"),
    ("times of wrong type", _json_body(startTimeUnixNano="soon"), JSON_HEADERS, None, 400, "OTLP/JSON"),
    ("non-hex trace id", _json_body(traceId="zz" * 16), JSON_HEADERS, None, 400, "not hex"),
    ("base64 span id", _json_body(spanId=base64.b64encode(b"12345678").decode()), JSON_HEADERS, None, 400, "spanId"),
    ("short span id", _json_body(spanId="abcd"), JSON_HEADERS, None, 400, "expected 8"),
    ("zero trace id", _json_body(traceId="0" * 32), JSON_HEADERS, None, 400, "not all zero"),
    ("end before start", _json_body(endTimeUnixNano="1600000000000000000"), JSON_HEADERS, None, 400, "before it starts"),
    ("bad span kind", _json_body(kind=9), JSON_HEADERS, None, 400, "kind"),
    ("truncated gzip", gzip.compress(_json_body())[:-12], JSON_HEADERS, "gzip", 400, "truncated"),
    ("corrupt gzip", b"\x1f\x8b\x08\x00garbage-garbage", JSON_HEADERS, "gzip", 400, "gzip"),
    ("unknown encoding", _json_body(), JSON_HEADERS, "br", 415, "Content-Encoding"),
    ("unknown content type", _json_body(), {"Content-Type": "text/plain"}, None, 415, "Content-Type"),
    ("gzip bomb", gzip.compress(b"\0" * (otlp.MAX_PAYLOAD_BYTES + 1024)), PROTOBUF, "gzip", 413, "decompresses to more"),
]


@pytest.mark.parametrize("label,body,headers,encoding,status,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_payloads_raise_otlp_error_with_a_reason(label, body, headers, encoding, status, message):
    with pytest.raises(OtlpError, match=message) as caught:
        decode_payload(body, headers["Content-Type"], encoding)
    assert caught.value.status == status


def test_oversized_payload_is_refused_before_parsing():
    with pytest.raises(OtlpError, match="limit") as caught:
        decode_payload(b"\0" * 2048, "application/x-protobuf", max_bytes=1024)
    assert caught.value.status == 413


def test_store_bounds_untrusted_names_and_attributes(tmp_path):
    store = open_store(tmp_path / "s.db")
    attributes = {f"k{i}": "v" for i in range(MAX_ATTRIBUTES + 40)}
    attributes["k0"] = "x" * 100_000
    attributes["k1"] = {"nested": ["y" * 10_000]}
    record = Span("1" * 32, "2" * 16, None, "n" * 50_000, "internal", "unset", 10, 20, attributes=attributes,
                        thread_name="t" * 5000)
    assert store.insert_spans([record]) == 1
    assert store.insert_spans([record]) == 0  # same ids: kept once
    (stored,) = store.query_spans()
    assert len(stored.name) == MAX_NAME_CHARS and stored.name.endswith("…")
    assert len(stored.attributes["k0"]) == MAX_ATTRIBUTE_VALUE_CHARS
    assert isinstance(stored.attributes["k1"], str) and len(stored.attributes["k1"]) == MAX_ATTRIBUTE_VALUE_CHARS
    assert stored.attributes[DROPPED_ATTRIBUTES_KEY] == 40
    assert len(stored.attributes) == MAX_ATTRIBUTES + 1
    assert len(stored.thread_name) == 256


def test_invalid_records_are_refused_before_anything_is_written(tmp_path):
    store = open_store(tmp_path / "s.db")
    good = Span("1" * 32, "2" * 16, None, "ok", "internal", "unset", 10, 20)
    bad = Span("1" * 32, "3" * 16, None, "bad", "internal", "unset", 30, 20)
    with pytest.raises(ValueError, match="ends"):
        store.insert_spans([good, bad])
    assert store.query_spans() == []


# -- the receiver on a real socket ----------------------------------------------------------------


@pytest.fixture(scope="module")
def running_server(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("otlp") / "store.db")
    with RunningServer(create_app(store), "127.0.0.1", 0) as running:
        yield running, store


@pytest.fixture
def server(running_server):
    """The shared receiver with an empty spans table."""
    running_server[1].transaction("clear spans in", lambda conn: conn.execute("DELETE FROM spans"))
    return running_server


def test_real_otlp_exporter_delivers_spans_to_the_receiver(server, sdk_spans):
    running, store = server
    for compression in (Compression.NoCompression, Compression.Gzip):
        exporter = OTLPSpanExporter(endpoint=f"{running.url}v1/traces", compression=compression, timeout=10)
        assert exporter.export(sdk_spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
    stored = {r.name: r for r in store.query_spans()}
    assert set(stored) == {"GET /cart", "SELECT"}
    assert stored["SELECT"].source == "otlp" and stored["SELECT"].tid is not None
    assert stored["SELECT"].parent_id == stored["GET /cart"].span_id
    listing = requests.get(f"{running.url}api/spans", params={"trace_id": stored["SELECT"].trace_id}, timeout=10).json()
    assert {s["name"] for s in listing["spans"]} == {"GET /cart", "SELECT"}


def test_receiver_accepts_otlp_json_and_answers_in_kind(server):
    running, store = server
    response = requests.post(f"{running.url}v1/traces", data=_json_body(), headers=JSON_HEADERS, timeout=10)
    assert response.status_code == 200 and response.json() == {}
    assert [r.span_id for r in store.query_spans()] == ["b7ad6b7169203331"]


@pytest.mark.parametrize("label,body,headers,encoding,status,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_receiver_answers_malformed_payloads_with_4xx_and_the_reason(server, label, body, headers, encoding, status, message):
    running, store = server
    sent = dict(headers)
    if encoding:
        sent["Content-Encoding"] = encoding
    response = requests.post(f"{running.url}v1/traces", data=body, headers=sent, timeout=30)
    assert response.status_code == status
    if headers["Content-Type"] == "application/json":
        assert message in response.json()["message"] and response.json()["error"]["status"] == status
    else:
        assert response.headers["Content-Type"] == "application/x-protobuf"
        assert response.content[:1] == b"\x08" and message.encode() in response.content  # google.rpc.Status
    assert store.query_spans() == []


def test_receiver_refuses_a_huge_body_by_content_length(server):
    running, _ = server
    body = b"\0" * (otlp.MAX_PAYLOAD_BYTES + 1)
    response = requests.post(f"{running.url}v1/traces", data=body, headers=PROTOBUF, timeout=30)
    assert response.status_code == 413


def test_receiver_requires_the_token_when_the_server_has_one(tmp_path, sdk_spans):
    store = open_store(tmp_path / "store.db")
    token = "otlp-test-token-123"
    app = create_app(store, token=token, host="0.0.0.0")
    with RunningServer(app, "127.0.0.1", 0) as running:
        endpoint = f"{running.url}v1/traces"
        response = requests.post(endpoint, data=_payload(sdk_spans), headers=PROTOBUF, timeout=10)
        assert response.status_code == 401
        wrong = OTLPSpanExporter(endpoint=endpoint, headers={"Authorization": "Bearer nope-nope-nope"}, timeout=5)
        assert wrong.export(sdk_spans) == SpanExportResult.FAILURE
        assert store.query_spans() == []
        exporter = OTLPSpanExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert exporter.export(sdk_spans) == SpanExportResult.SUCCESS
        assert len(store.query_spans()) == 2
        assert requests.get(f"{running.url}api/spans", timeout=10).status_code == 401


# -- import-traces ---------------------------------------------------------------------------------


def _profviz(*args, store):
    return subprocess.run([PROFVIZ, *args, "--store", str(store)], capture_output=True, text=True, timeout=60)


def test_import_traces_stores_spans_and_reports_bad_files(tmp_path, sdk_spans):
    store_path = tmp_path / "store.db"
    traces = tmp_path / "traces.json"
    traces.write_text(dump_json(decode_payload(_payload(sdk_spans), "application/x-protobuf")))
    done = _profviz("import-traces", str(traces), store=store_path)
    assert done.returncode == 0, done.stderr
    assert "imported 2 spans" in done.stdout
    assert {r.name for r in open_store(store_path).query_spans()} == {"GET /cart", "SELECT"}
    again = _profviz("import-traces", str(traces), store=store_path)
    assert "2 of 2 spans were already in the store" in again.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(_json_body(endTimeUnixNano="1").decode())
    failed = _profviz("import-traces", str(broken), store=store_path)
    assert failed.returncode == 1
    assert failed.stderr.startswith("profviz: ") and "before it starts" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    missing = _profviz("import-traces", str(tmp_path / "nope.json"), store=store_path)
    assert missing.returncode == 1 and "cannot read" in missing.stderr
