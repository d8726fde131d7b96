"""``ProfilerMiddleware`` for ASGI apps (FastAPI, Starlette, Django's ASGI handler, any ASGI 3 app).

Usage::

    from profviz.asgi import ProfilerMiddleware
    app = ProfilerMiddleware(app, store="/var/lib/app/profviz.db")

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which runs the app in another task
and breaks context variables). An ``http`` scope is timed from entry until the final
``http.response.body`` (``more_body`` false) has been sent, so a streaming response counts to its
last byte; the status and the response bytes come from the ``send`` messages, which pass through
unchanged, as do ``receive`` and exceptions. ``lifespan`` and ``websocket`` scopes pass through
untouched. Routes are named by the matched route's path template (Starlette and FastAPI set
``scope["route"]``; a ``Mount``'s prefix is kept), else by ``route_fn``, else by the path with ids
collapsed. The request's :class:`RequestInfo` is ``scope["profviz.request"]``. The queue-time header and every option work as for WSGI. Requests share the event
loop's thread, so their CPU time and samples are not measured per request yet (``cpu_ns`` 0, no
sampled profiles; task-aware sampling is the next step of docs/asgi.md).
"""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable, MutableMapping

from ..store import Store
from .options import describe, options_from
from .recorder import Recorder, RecorderControls
from .request import RequestInfo

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
SCOPE_KEY = "profviz.request"  # the request's RequestInfo, for the app (labels, route)

__all__ = ["ProfilerMiddleware", "RequestInfo", "asgi_recorder"]


def asgi_header(scope: Scope, name: str) -> str | None:
    """A request header of an ASGI scope (names compared case-insensitively, the first value)."""
    wanted = name.lower().encode("latin-1")
    for key, value in scope.get("headers") or ():
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def asgi_query(scope: Scope) -> str:
    raw = scope.get("query_string") or b""
    return raw.decode("latin-1") if isinstance(raw, (bytes, bytearray)) else str(raw)


def route_template(scope: Scope, root_path: str) -> str | None:
    """The path template of the route Starlette/FastAPI matched (``/items/{item_id}``), with the
    prefixes of the mounts on the way (``root_path`` is the scope's at the middleware); None when no route matched."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    mounted = str(scope.get("root_path") or "")
    prefix = mounted[len(root_path):] if mounted.startswith(root_path) else ""
    return (prefix + path) or "/"


def asgi_recorder(store: Store | str | os.PathLike | None = None, **options: Any) -> Recorder:
    """The engine over ASGI scopes."""
    return Recorder(options_from(store, **options), header=asgi_header, query=asgi_query)


class ProfilerMiddleware(RecorderControls):
    """Wrap an ASGI app: time every HTTP request (see the module docstring).

    Options (keyword, with defaults):

    """

    def __init__(self, app: Callable[[Scope, Callable, Callable], Awaitable[None]],
                 store: Store | str | os.PathLike | None = None, **options: Any):
        self.app = app
        self.recorder = asgi_recorder(store, **options)

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        recorder = self.recorder
        path = (scope.get("root_path") or "") + (scope.get("path") or "") or "/"
        info = recorder.begin(scope.get("method") or "GET", path, scope, own_thread=False)
        if info is None:
            await self.app(scope, receive, send)
            return
        root_path = str(scope.get("root_path") or "")
        scope[SCOPE_KEY] = info

        async def observed_send(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                info.status_line = message.get("status")
            elif kind == "http.response.body":
                info.response_bytes += len(message.get("body") or b"")
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                self._finish(info, scope, root_path)

        try:
            await self.app(scope, receive, observed_send)
        except BaseException as exc:
            if not info.finished:
                if not info.response_bytes:  # nothing went out: the server answers 500 whatever status was started
                    info.status_line = None
                self._finish(info, scope, root_path, exc)
            raise
        if not info.finished:  # the app returned without a final body (a client that went away)
            self._finish(info, scope, root_path)

    def _finish(self, info: RequestInfo, scope: Scope, root_path: str, error: BaseException | None = None) -> None:
        if info.route is None:
            try:
                info.route = route_template(scope, root_path)
            except Exception as exc:
                self.recorder.health.report("route name", exc)
        self.recorder.finish(info, error)


if ProfilerMiddleware.__doc__:  # None under python -OO
    ProfilerMiddleware.__doc__ += describe().replace("\n", "\n    ")
