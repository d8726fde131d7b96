"""Exercise ``profviz.otel.setup_otel`` in a fresh process (the global tracer provider is per process).

``python otel_setup.py MODE STORE``; MODE ``existing``: the app configured an SDK provider with
its own exporter, resource and sampler first; ``none``: the app configured nothing. Prints one
JSON line describing what setup_otel did and what the spans looked like.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from profviz.otel import SpanProcessor, setup_otel
from profviz.store import open_store


def main() -> None:
    mode, store = sys.argv[1], sys.argv[2]
    exporter = InMemorySpanExporter()
    app_provider = None
    if mode == "existing":
        app_provider = TracerProvider(resource=Resource.create({"service.name": "billing"}), sampler=ALWAYS_ON)
        app_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(app_provider)
    processor = setup_otel(store)
    again = setup_otel(f"sqlite://{os.path.abspath(store)}")  # the same store, named by URL
    provider = trace.get_tracer_provider()
    processors = list(provider._active_span_processor._span_processors)
    tracer = trace.get_tracer("app")
    conn = sqlite3.connect(":memory:")
    conn.cursor().execute("CREATE TABLE t (x)")
    exporter.clear()
    with tracer.start_as_current_span("checkout"):
        conn.cursor().execute("SELECT 1").fetchall()
        conn.execute("SELECT 2").fetchall()  # sqlite3's connection shortcuts make spans too
        with conn:
            conn.executemany("INSERT INTO t VALUES (?)", [(3,), (4,)])
    open_store(store).list_profiles()  # profviz's own store statements make none
    processor.force_flush()
    exported = exporter.get_finished_spans()
    print(json.dumps({
        "same_provider": app_provider is None or provider is app_provider,
        "provider_type": type(provider).__name__,
        "idempotent": again is processor,
        "profviz_processors": sum(isinstance(p, SpanProcessor) for p in processors),
        "processor_count": len(processors),
        "attached": processor.attached,
        "instrumented": processor.instrumented,
        "recorded": processor.recorded,
        "service_name": provider.resource.attributes.get("service.name"),
        "exported": [{"name": s.name, "attributes": dict(s.attributes)} for s in exported],
        "connection_type": type(conn).__name__,
    }))


if __name__ == "__main__":
    main()
