"""Django adapter: add ``"profviz.django.ProfvizMiddleware"`` to ``MIDDLEWARE`` (first is best).

Options come from the ``PROFVIZ`` setting, a dict of the engine's options
(:mod:`profviz.middleware.options`; e.g. ``{"store": "/var/lib/app/profviz.db", "tail_threshold_ms": 500}``).
Each request is named by its resolver match's route pattern with a leading slash
(``/items/<int:item_id>/``; regex routes keep their pattern); unresolved requests are ``(unmatched)``.

The request ends when Django's response is closed by the server (after a streaming body is
sent), through the response's resource closers. If the WSGI app is also wrapped in
``ProfilerMiddleware``, this middleware only names the route and the WSGI layer does the timing.

Under ASGI (Django's ``get_asgi_application()``) the middleware is async: no thread hop for async
views. Wrapping the ASGI application in :class:`profviz.asgi.ProfilerMiddleware` is best (it
times each request to its last byte, with task-aware samples): this middleware then only names
the route. Alone, it times each request as the engine does any event-loop request.
"""

from __future__ import annotations

import threading
from asgiref.sync import iscoroutinefunction, markcoroutinefunction  # (Django depends on asgiref)

from ..routes import UNMATCHED_ROUTE
from .asgi import SCOPE_KEY
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
    """Times each request (unless a WSGI or ASGI ``ProfilerMiddleware`` already does) and names its route."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.recorder = get_recorder()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
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
        return self._observe(request, response, info)

    async def _acall(self, request):
        scope = getattr(request, "scope", None) or {}
        outer = scope.get(SCOPE_KEY)
        if outer is not None:  # the ASGI middleware times it
            response = await self.get_response(request)
            outer.route = route_of(request)
            return response
        info = self.recorder.begin(request.method, request.path, request.META, own_thread=False)
        if info is None:
            return await self.get_response(request)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            info.route = route_of(request)
            self.recorder.finish(info, exc)
            raise
        # Django closes the response in a worker thread, after its task has sent it: the request
        # ends here, in its task (a body built already), or as its async stream ends
        self._observe(request, response, info, in_task=True)
        return response

    def _observe(self, request, response, info, in_task: bool = False):
        """Name the route and count the response; the request ends as the server closes the
        response (``in_task``: now, or at the end of an async stream, in the request's task)."""
        try:
            info.route = route_of(request)
            info.status_line = response.status_code
            if response.streaming:
                if getattr(response, "is_async", False):
                    response.streaming_content = _acounted(response.streaming_content, info,
                                                           self.recorder.finish if in_task else None)
                else:
                    response.streaming_content = _counted(response.streaming_content, info)
            else:
                info.response_bytes = len(response.content)
                if in_task:
                    self.recorder.finish(info)
            response._resource_closers.append(lambda: self.recorder.finish(info))  # (finish is idempotent)
        except Exception as exc:
            self.recorder.health.report("django response", exc)
            self.recorder.finish(info)
        return response


def _counted(chunks, info):
    for chunk in chunks:
        info.response_bytes += len(chunk)
        yield chunk


async def _acounted(chunks, info, finish=None):
    async for chunk in chunks:
        info.response_bytes += len(chunk)
        yield chunk
    if finish is not None:
        finish(info)
