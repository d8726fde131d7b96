"""OpenTelemetry integration: stamp spans with their thread, record them, set tracing up.

profviz does not have a tracing API of its own: spans come from OpenTelemetry.

* :class:`SpanProcessor` stamps every span at start with ``thread.id`` (the native thread id,
  ``threading.get_native_id()``, the tid py-spy and ``/proc`` report; in an ASGI request, its
  task lane), ``thread.name`` and ``process.pid``, so spans exported from another process still join samples exactly. Given a
  store, it also records every ended span there, off the hot path: ``on_end`` only queues the
  span (bounded queue; when full, spans are dropped and counted) and a background thread turns
  batches into span records and writes them with OpenTelemetry instrumentation suppressed.
* :func:`setup_otel` is the "auto" setup used by the WSGI middleware: profviz's processor on the
  app's SDK tracer provider (one is created and installed only if the app has none) plus the
  OpenTelemetry instrumentations that are installed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
import time
from typing import Iterable, Iterator

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import SpanProcessor as _SdkSpanProcessor

from .collect import tasks
from .collect.tasks import TASK_LANE_NAME, task_lane
from .collect.writer import BackgroundWriter
from .model import Span, SpanError
from .model.origin import resource_origin
from .store import Store, open_store, store_location

THREAD_ID = "thread.id"
THREAD_NAME = "thread.name"
PROCESS_PID = "process.pid"
_STAMP_KEYS = (THREAD_ID, THREAD_NAME, PROCESS_PID)

# name -> (library module that must be importable, instrumentation module, instrumentor class, instrument() kwargs)
INSTRUMENTATIONS: dict[str, tuple[str, str, str, dict]] = {
    "sqlite3": ("sqlite3", "opentelemetry.instrumentation.sqlite3", "SQLite3Instrumentor", {}),
    "psycopg": ("psycopg", "opentelemetry.instrumentation.psycopg", "PsycopgInstrumentor", {}),
    "psycopg2": ("psycopg2", "opentelemetry.instrumentation.psycopg2", "Psycopg2Instrumentor", {}),
    "sqlalchemy": ("sqlalchemy", "opentelemetry.instrumentation.sqlalchemy", "SQLAlchemyInstrumentor", {}),
    "requests": ("requests", "opentelemetry.instrumentation.requests", "RequestsInstrumentor", {}),
    "urllib3": ("urllib3", "opentelemetry.instrumentation.urllib3", "URLLib3Instrumentor", {}),
    "httpx": ("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor", {}),
    "logging": ("logging", "opentelemetry.instrumentation.logging", "LoggingInstrumentor",
                {"inject_trace_context": True, "enable_log_auto_instrumentation": False}),
}

_pid = os.getpid()
_thread_info = threading.local()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def _current_thread_stamp() -> dict:
    """{thread.id, thread.name, process.pid} of the calling thread (native id cached per thread and
    process); in a request served by an asyncio task, its task lane (:data:`profviz.collect.tasks.task_lane`)."""
    lane = task_lane.get()
    if lane is not None:
        return {THREAD_ID: lane, THREAD_NAME: TASK_LANE_NAME, PROCESS_PID: _pid}
    cached = getattr(_thread_info, "stamp", None)
    name = threading.current_thread().name
    if cached is None or cached[PROCESS_PID] != _pid or cached[THREAD_NAME] != name:
        cached = {THREAD_ID: threading.get_native_id(), THREAD_NAME: name, PROCESS_PID: _pid}
        _thread_info.stamp = cached
    return cached


@contextlib.contextmanager
def suppressed() -> Iterator[None]:
    """Suppress OpenTelemetry instrumentation in this context (profviz's own store writes make no spans)."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


def record_from_span(span: ReadableSpan) -> Span:
    """The profviz Span of an ended SDK span; thread and process come from the stamped attributes."""
    context = span.get_span_context()
    attributes = dict(span.attributes or {})
    tid = attributes.pop(THREAD_ID, None)
    thread_name = attributes.pop(THREAD_NAME, None)
    pid = attributes.pop(PROCESS_PID, None)
    resource = span.resource.attributes if span.resource is not None else {}
    for key, value in resource_origin(resource).items():  # where the span came from: service, host, version, env
        attributes.setdefault(key, value)
    status = span.status
    if status is not None and status.description:
        attributes.setdefault("otel.status_description", status.description)
    tid = tid if isinstance(tid, int) and not isinstance(tid, bool) else None
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else resource.get("process.pid")
    return Span(
        trace_id=format(context.trace_id, "032x"),
        span_id=format(context.span_id, "016x"),
        parent_id=format(span.parent.span_id, "016x") if span.parent is not None else None,
        name=span.name,
        kind=span.kind.name.lower(),
        status=status.status_code.name.lower() if status is not None else "unset",
        start_ns=int(span.start_time or 0),
        end_ns=int(span.end_time or span.start_time or 0),
        pid=pid if isinstance(pid, int) else None,
        tid=tid,
        thread_name=thread_name if isinstance(thread_name, str) else None,
        attributes=attributes,
        approximate=tid is None,
        source="processor",
    )


class SpanProcessor(_SdkSpanProcessor):
    """An OpenTelemetry SDK span processor that stamps thread and process on every span.

    ``store``: a :class:`~profviz.store.Store` (or path) to record every ended span in, through
    a queue of at most ``queue_size`` spans drained by a background thread; None to only stamp.
    Counters: ``recorded`` (written), ``dropped`` (queue full), ``rejected`` (invalid spans).
    :func:`setup_otel` sets ``attached`` and ``instrumented``.
    """

    def __init__(self, store: Store | str | os.PathLike | None = None, *, queue_size: int = 100_000,
                 batch_size: int = 1000):
        tasks.lanes_wanted = True  # from now on ASGI requests set their task lane, which on_start stamps
        self.store = None if store is None else open_store(store)
        self.recorded = 0
        self.rejected = 0
        self.instrumented: list[str] = []
        self.attached = False
        self._error_reported = False
        self._writer: BackgroundWriter | None = None
        if self.store is not None:
            self._writer = BackgroundWriter(
                self._write_batch, maxsize=queue_size, batch_size=batch_size, on_error=self._on_error,
                name="profviz-spans", idle_s=0.5,
            )

    @property
    def dropped(self) -> int:
        return self._writer.dropped if self._writer is not None else 0

    def on_start(self, span, parent_context=None) -> None:
        span.set_attributes(_current_thread_stamp())

    def on_end(self, span: ReadableSpan) -> None:
        if self._writer is not None:
            self._writer.submit(span)

    def _write_batch(self, spans: list[ReadableSpan]) -> None:
        records = []
        for span in spans:
            try:
                record = record_from_span(span)
                record.check()
            except (SpanError, AttributeError, TypeError, ValueError):
                self.rejected += 1
                continue
            records.append(record)
        with suppressed():
            self.store.insert_spans(records, checked=True)
        self.recorded += len(records)

    def _on_error(self, where: str, exc: BaseException) -> None:
        if not self._error_reported:
            self._error_reported = True
            print(f"profviz: could not record spans in {self.store.location} ({exc}); spans are being lost", file=sys.stderr)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until every span ended so far is written; False on timeout."""
        if self._writer is None:
            return True
        deadline = time.monotonic() + timeout_millis / 1000
        return self._writer.flush(timeout_millis / 1000) and self.store.flush(max(0.0, deadline - time.monotonic()))

    def shutdown(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self.store.flush(10.0)  # a collector's store sends what is queued


_setup_lock = threading.Lock()


def _store_key(store: Store | str | os.PathLike | None) -> str | None:
    if store is None:
        return None
    backend, location = (("sqlite", store.location) if isinstance(store, Store) else store_location(store))
    return os.path.realpath(location) if backend == "sqlite" else location


def _processors_of(provider: TracerProvider) -> tuple:
    return tuple(getattr(provider._active_span_processor, "_span_processors", ()))


def instrument_libraries(names: Iterable[str] | None = None) -> list[str]:
    """Turn on the installed OpenTelemetry instrumentations among ``names`` (default: all known).

    A library or instrumentation that is not installed is skipped; one already instrumented is
    left as it is. Returns the names that are active afterwards.
    """
    active = []
    for name in (INSTRUMENTATIONS if names is None else names):
        if name not in INSTRUMENTATIONS:
            raise ValueError(f"unknown instrumentation {name!r}; known: {', '.join(INSTRUMENTATIONS)}")
        library, module_name, class_name, kwargs = INSTRUMENTATIONS[name]
        if importlib.util.find_spec(library) is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        instrumentor = getattr(module, class_name)()
        if not instrumentor.is_instrumented_by_opentelemetry:
            try:
                instrumentor.instrument(**kwargs)
            except Exception as exc:  # an instrumentation's own failure must not break the app
                print(f"profviz: OpenTelemetry {name} instrumentation failed ({exc}); continuing without it", file=sys.stderr)
        if instrumentor.is_instrumented_by_opentelemetry:
            active.append(name)
            if name == "sqlite3":
                trace_sqlite3_shortcuts()
    return active


def trace_sqlite3_shortcuts() -> None:
    """Make ``Connection.execute``, ``executemany`` and ``executescript`` of sqlite3 make spans.

    OpenTelemetry's sqlite3 instrumentation traces cursors only, so the connection shortcuts
    most sqlite3 code uses (the Flask tutorial's ``db.execute``) make no span
    (opentelemetry-python-contrib#3082). Connections that ``sqlite3.connect`` returns afterwards
    run the shortcuts on a traced cursor, as sqlite3 itself does on an untraced one. Idempotent.
    """
    import sqlite3
    import sqlite3.dbapi2

    import wrapt

    class ShortcutConnection(wrapt.ObjectProxy):
        def execute(self, sql, parameters=(), /):
            return self.__wrapped__.cursor().execute(sql, parameters)

        def executemany(self, sql, parameters, /):
            return self.__wrapped__.cursor().executemany(sql, parameters)

        def executescript(self, script, /):
            return self.__wrapped__.cursor().executescript(script)

        def __enter__(self):
            self.__wrapped__.__enter__()
            return self

    def connect(wrapped, instance, args, kwargs):
        return ShortcutConnection(wrapped(*args, **kwargs))

    for module in (sqlite3, sqlite3.dbapi2):
        if not getattr(module.connect, "_self_profviz_shortcuts", False):
            wrapt.wrap_function_wrapper(module, "connect", connect)
            module.connect._self_profviz_shortcuts = True


def setup_otel(store: Store | str | os.PathLike | None = None, *, instrument: bool | Iterable[str] = True) -> SpanProcessor:
    """Make every span of this process carry its thread, and (with ``store``) record it there.

    Contract:

    * If the global tracer provider is an SDK ``TracerProvider`` (the app configured
      OpenTelemetry), profviz's :class:`SpanProcessor` is added to it and nothing else changes
      (its exporters, sampler and resource stay). Otherwise, if no provider was set, a new SDK
      ``TracerProvider`` with the processor is installed as the global provider. A non-SDK
      provider cannot take processors: a ``profviz:`` notice is printed and the processor is
      returned unattached (``processor.attached`` is False).
    * Idempotent: calling again for the same store (same path, or both None) returns the same
      processor instead of adding another.
    * ``instrument``: True turns on every installed instrumentation of sqlite3, psycopg,
      psycopg2, SQLAlchemy, requests, urllib3, httpx and logging (trace ids injected into log
      records; no log handler is added); an iterable picks names; False none. The names active
      afterwards are in ``processor.instrumented``.
    * Never raises for a missing or failing instrumentation. Call it after the app has set its
      own tracer provider, if it sets one.
    """
    key = _store_key(store)
    with _setup_lock:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            if isinstance(provider, trace.ProxyTracerProvider):
                provider = TracerProvider()
                trace.set_tracer_provider(provider)
                provider = trace.get_tracer_provider()
        processor = None
        if isinstance(provider, TracerProvider):
            for existing in _processors_of(provider):
                if isinstance(existing, SpanProcessor) and _store_key(existing.store) == key:
                    processor = existing
                    break
        if processor is None:
            processor = SpanProcessor(store)
            processor.attached = isinstance(provider, TracerProvider)
            if processor.attached:
                provider.add_span_processor(processor)
            else:
                print(
                    f"profviz: the tracer provider is a {type(provider).__name__}, not the OpenTelemetry SDK's: "
                    "spans will not carry thread ids; configure opentelemetry-sdk to join spans to samples",
                    file=sys.stderr,
                )
        if instrument:
            names = None if instrument is True else list(instrument)
            processor.instrumented = sorted(set(processor.instrumented) | set(instrument_libraries(names)))
        return processor
