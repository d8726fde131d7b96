"""``ProfilerMiddleware`` for ASGI apps (FastAPI, Starlette, Django's ASGI handler, any ASGI 3 app).

Usage::

    from profviz.asgi import ProfilerMiddleware
    app = ProfilerMiddleware(app, store="/var/lib/app/profviz.db")

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which runs the app in another task
and breaks context variables). An ``http`` scope is timed from entry until the final
``http.response.body`` (``more_body`` false) is handed to the server, so a streaming response
counts to its last byte; the status and the response bytes come from the ``send`` messages,
which pass through unchanged, as do ``receive`` and exceptions. ``lifespan`` and ``websocket``
scopes pass through untouched. Routes are named by the matched route's path template (Starlette
and FastAPI set ``scope["route"]``; a ``Mount``'s prefix is kept), else by ``route_fn``, else by
the path with ids collapsed. The request's :class:`RequestInfo` is ``scope["profviz.request"]``.
The queue-time header and every option work as for WSGI. Requests share the event loop's thread:
the sampler follows each request's task instead (:mod:`profviz.collect.tasks`), its CPU time is
estimated from its samples, and the loop's stalls are recorded (docs/asgi.md).
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


def asgi_queue_start(names: tuple[str, ...]) -> Callable[[Scope], str | None]:
    """Reads the first of the queue-time header ``names`` a scope carries, in one pass over its
    headers (ASGI servers give header names lowercased)."""
    wanted = {name.lower().encode("latin-1"): rank for rank, name in enumerate(names)}

    def queue_start(scope: Scope) -> str | None:
        best, best_rank = None, len(wanted)
        for key, value in scope.get("headers") or ():
            rank = wanted.get(key)
            if rank is not None and rank < best_rank:
                best, best_rank = value, rank
                if rank == 0:
                    break
        return None if best is None else best.decode("latin-1")

    return queue_start


def asgi_recorder(store: Store | str | os.PathLike | None = None, **options: Any) -> Recorder:
    """The engine over ASGI scopes."""
    checked = options_from(store, **options)
    return Recorder(checked, header=asgi_header, query=asgi_query, queue_start=asgi_queue_start(checked.queue_headers))


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

        def observed_send(message: Message) -> Awaitable[None]:
            # a plain function handing on send's awaitable: a coroutine of our own around each
            # message cost twice the rest of the middleware on the loop
            kind = message.get("type")
            if kind == "http.response.body":
                info.response_bytes += len(message.get("body") or b"")
                if not message.get("more_body", False) and not info.finished:
                    self._finish(info, scope, root_path)
            elif kind == "http.response.start":
                info.status_line = message.get("status")
            return send(message)

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
