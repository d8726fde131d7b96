"""An OpenTelemetry-instrumented worker process exporting spans over OTLP/HTTP.

``python otel_service.py ENDPOINT SECONDS`` runs two worker threads until a line arrives on
stdin (or stdin closes), for at most SECONDS. Each loops over
a ``job`` span holding a ``crunch`` span (CPU-bound, ~120 ms in ``burn_cpu``) and a ``nap`` span
(sleeping ~120 ms in ``take_nap``). profviz's SpanProcessor stamps thread and process ids; the
standard OTLP/HTTP exporter ships the spans to ENDPOINT. Prints ``ready PID`` once the workers
run, and flushes every span before exiting.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from profviz.otel import SpanProcessor

STEP_S = 0.12


def burn_cpu(seconds: float) -> int:
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        total += sum(i * i for i in range(500))
    return total


def take_nap(seconds: float) -> None:
    time.sleep(seconds)


def worker(tracer, deadline: float, stop: threading.Event) -> None:
    while time.time() < deadline and not stop.is_set():
        with tracer.start_as_current_span("job"):
            with tracer.start_as_current_span("crunch"):
                burn_cpu(STEP_S)
            with tracer.start_as_current_span("nap"):
                take_nap(STEP_S)


def main() -> None:
    endpoint, seconds = sys.argv[1], float(sys.argv[2])
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-service"}))
    provider.add_span_processor(SpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=10), schedule_delay_millis=200))
    tracer = provider.get_tracer("otel-service")
    deadline = time.time() + seconds
    stop = threading.Event()
    threads = [threading.Thread(target=worker, args=(tracer, deadline, stop), name=f"worker-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    print(f"ready {os.getpid()}", flush=True)
    sys.stdin.readline()
    stop.set()
    for thread in threads:
        thread.join()
    provider.shutdown()


if __name__ == "__main__":
    main()
