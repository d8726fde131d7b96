"""The request's OpenTelemetry server span, for ``otel="auto"``: :class:`ServerSpans`.

The span starts when the request begins (continuing the caller's trace from its ``traceparent``
header; none when an instrumentation around profviz already started the request's span) and is the current span while the app runs, so the app's own spans (SQL statements, HTTP
calls) are its children; it ends with the request, named ``METHOD route`` and carrying the
semantic conventions' ``http.*`` attributes. Its start and end are the request's own (the times
of its request row). It is the root that the span views call the request.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..routes import collapse_path
from .request import HeaderFn, RequestInfo


class _HeaderGetter(Getter):
    """Reads propagation headers (``traceparent``...) from the framework's request."""

    def __init__(self, header: HeaderFn):
        self.header = header

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = self.header(carrier, key)
        return None if value is None else [value]

    def keys(self, carrier: Any) -> list[str]:
        return []


class ServerSpans:
    """Start and end each request's server span; ``header`` reads the framework's request headers."""

    def __init__(self, header: HeaderFn):
        self.tracer = trace.get_tracer("profviz.middleware")
        self.getter = _HeaderGetter(header)
        propagate.get_global_textmap()  # loads the propagators now, not in the first request

    def begin(self, info: RequestInfo, request: Any) -> None:
        """Start the request's span, unless an instrumentation around profviz already started one."""
        if trace.get_current_span().is_recording():  # (a finished span left current on this thread is not)
            return
        parent = propagate.extract(request, getter=self.getter) if request is not None else None
        span = self.tracer.start_span(
            f"{info.method} {info.path}", context=parent, kind=SpanKind.SERVER, start_time=info.start_ns,
            attributes={"http.request.method": info.method, "url.path": info.path},
        )
        info.server_span = (span, context.attach(trace.set_span_in_context(span)))

    def finish(self, info: RequestInfo) -> None:
        span, token = info.server_span
        info.server_span = None
        if info.route is not None:
            span.update_name(f"{info.method} {info.route}")
            span.set_attribute("http.route", info.route)
        else:  # no framework route: the path with its ids collapsed, as profviz names the route
            span.update_name(f"{info.method} {collapse_path(info.path)}")
        status = info.status
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if info.error is not None or status is not None and status >= 500:
            span.set_status(Status(StatusCode.ERROR, info.error))
        # the request's own clocks, so the span and the request row agree
        span.end(end_time=None if info.duration_ns is None else info.start_ns + info.duration_ns)
        if threading.get_ident() == info.ident:  # a context token can only be detached where it was attached
            context.detach(token)
