"""Django adapter: add ``"profviz.django.ProfvizMiddleware"`` to ``MIDDLEWARE`` (first is best).

Options come from the ``PROFVIZ`` setting, a dict of the engine's options
(:mod:`profviz.middleware.options`; e.g. ``{"store": "/var/lib/app/profviz.db", "tail_threshold_ms": 500}``).
Each request is named by its resolver match's route pattern with a leading slash
(``/items/<int:item_id>/``; regex routes keep their pattern); unresolved requests are ``(unmatched)``.

The request ends when Django's response is closed by the WSGI server (after a streaming body is
sent), through the response's resource closers. If the WSGI app is also wrapped in
``ProfilerMiddleware``, this middleware only names the route and the WSGI layer does the timing.
"""

from __future__ import annotations

import threading

from ..routes import UNMATCHED_ROUTE
from .recorder import Recorder
from .wsgi import ENVIRON_KEY, begin, wsgi_recorder

_recorder: Recorder | None = None
_lock = threading.Lock()


def get_recorder() -> Recorder:
    """The process's recorder for Django, built from ``settings.PROFVIZ`` on first use."""
    global _recorder
    with _lock:
        if _recorder is None:
            from django.conf import settings

            _recorder = wsgi_recorder(**dict(getattr(settings, "PROFVIZ", {}) or {}))
        return _recorder


def route_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED_ROUTE
    route = getattr(match, "route", None) or ""
    if not route:
        return UNMATCHED_ROUTE if not match.url_name else f"/{match.url_name}"
    return route if route.startswith(("/", "^")) else "/" + route


class ProfvizMiddleware:
    """Times each request (unless a WSGI ``ProfilerMiddleware`` already does) and names its route."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.recorder = get_recorder()

    def __call__(self, request):
        environ = request.META
        outer = environ.get(ENVIRON_KEY)
        if outer is not None:
            response = self.get_response(request)
            outer.route = route_of(request)
            return response
        info = begin(self.recorder, environ)
        if info is None:
            return self.get_response(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            info.route = route_of(request)
            self.recorder.finish(info, exc)
            raise
        try:
            info.route = route_of(request)
            info.status_line = response.status_code
            if response.streaming:
                response.streaming_content = _counted(response.streaming_content, info)
            else:
                info.response_bytes = len(response.content)
            response._resource_closers.append(lambda: self.recorder.finish(info))
        except Exception as exc:
            self.recorder.health.report("django response", exc)
            self.recorder.finish(info)
        return response


def _counted(chunks, info):
    for chunk in chunks:
        info.response_bytes += len(chunk)
        yield chunk
