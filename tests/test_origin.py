"""Origin labels (profviz/model/origin.py): given, from OpenTelemetry's variables, or the host's name."""

from __future__ import annotations

import socket

from profviz.middleware.options import options_from
from profviz.model.origin import origin_labels, resource_attributes


def test_labels_come_from_opentelemetry_variables_unless_given(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=shop,service.version=1.5%2Brc1,deployment.environment=prod,host.name=web-3")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert origin_labels() == {"service": "shop", "host": "web-3", "version": "1.5+rc1", "env": "prod"}
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    assert origin_labels(version="2.0")["service"] == "checkout" and origin_labels(version="2.0")["version"] == "2.0"
    options = options_from("x.db", host="b", labels={"team": "pay", "env": "staging"})
    assert options.labels == {"service": "checkout", "host": "b", "version": "1.5+rc1", "env": "staging", "team": "pay"}


def test_without_variables_only_the_host_is_known(monkeypatch):
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert origin_labels() == {"host": socket.gethostname()}
    assert resource_attributes("a=1,,=x,b") == {"a": "1"}


def test_spans_carry_the_origin_of_their_resource():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    from profviz.formats.otlp import records_from_request

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (("service.name", "shop"), ("host.name", "web-2"), ("service.version", "1.5"), ("deployment.environment", "prod")):
        resource_spans.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "GET /"
    span.start_time_unix_nano, span.end_time_unix_nano = 10**18, 10**18 + 5
    (record,) = records_from_request(request)
    assert {k: record.attributes[k] for k in ("service.name", "host.name", "service.version", "deployment.environment")} == {
        "service.name": "shop", "host.name": "web-2", "service.version": "1.5", "deployment.environment": "prod"}
