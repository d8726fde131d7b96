"""``ProfilerMiddleware``: every request of any WSGI app timed, and the slow ones profiled.

Usage, in the manner of Werkzeug's middlewares::

    from profviz.wsgi import ProfilerMiddleware
    app = ProfilerMiddleware(app, store="/var/lib/app/profviz.db")

WSGI semantics: the response iterable is wrapped, so a streaming response is profiled through its
iteration, and the request ends when the iterable is exhausted or closed (whichever comes first;
``close()`` of the app's iterable is always called through), or when a caller that stopped
iterating without closing it drops it. ``start_response`` is passed through with the same
arguments (``exc_info`` only when given) and its ``write()`` callable is returned wrapped only to
count bytes. Exceptions from the app propagate unchanged. A response iterable with ``__len__``
keeps it. ``wsgi.file_wrapper`` responses are streamed by iteration (same bytes, no sendfile).
The request's :class:`RequestInfo` is ``environ["profviz.request"]``; frameworks set its ``route``.
A request is an error when its status is >= 500 or the app raised.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

from ..store import Store
from .options import describe, options_from
from .recorder import Recorder, RecorderControls
from .request import RequestInfo

ENVIRON_KEY = "profviz.request"

__all__ = ["ENVIRON_KEY", "ProfilerMiddleware", "RequestInfo", "wsgi_recorder"]


def wsgi_header(environ: Mapping, name: str) -> str | None:
    """A request header from a WSGI environ (``X-Profviz-Deep`` is ``HTTP_X_PROFVIZ_DEEP``)."""
    return environ.get("HTTP_" + name.upper().replace("-", "_"))


def wsgi_query(environ: Mapping) -> str:
    return environ.get("QUERY_STRING") or ""


def wsgi_recorder(store: Store | str | os.PathLike | None = None, **options: Any) -> Recorder:
    """The engine over WSGI environs (also Django's ``request.META``)."""
    return Recorder(options_from(store, **options), header=wsgi_header, query=wsgi_query)


def begin(recorder: Recorder, environ: dict) -> RequestInfo | None:
    """Start a request of a WSGI environ, found afterwards in ``environ[ENVIRON_KEY]``."""
    path = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "") or "/"
    info = recorder.begin(environ.get("REQUEST_METHOD") or "GET", path, environ)
    if info is not None:
        environ[ENVIRON_KEY] = info
    return info


class ProfilerMiddleware(RecorderControls):
    """Wrap a WSGI app: time every request and keep profiles of the slow ones (see the module docstring).

    Options (keyword, with defaults):

    """

    def __init__(self, app: Callable, store: Store | str | os.PathLike | None = None, **options: Any):
        self.app = app
        self.recorder = wsgi_recorder(store, **options)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        recorder = self.recorder
        info = begin(recorder, environ)
        if info is None:
            return self.app(environ, start_response)

        def observed_start_response(status, headers, exc_info=None):
            if exc_info is None:
                write = start_response(status, headers)
            else:
                write = start_response(status, headers, exc_info)
            info.status_line = status

            def counting_write(data):
                info.response_bytes += len(data)
                return write(data)

            return counting_write

        try:
            app_iter = self.app(environ, observed_start_response)
        except BaseException as exc:
            if not info.response_bytes:  # nothing went out: the server answers 500 whatever status was started
                info.status_line = None
            recorder.finish(info, exc)
            raise
        sized = _SIZED.get(type(app_iter))
        if sized is None:
            sized = _remember_sized(type(app_iter))
        return _SizedResponse(app_iter, info, recorder) if sized else _Response(app_iter, info, recorder)


if ProfilerMiddleware.__doc__:  # None under python -OO
    ProfilerMiddleware.__doc__ += describe().replace("\n", "\n    ")

_NO_CLOSE = (list, tuple)  # the usual response iterables without close()
_SIZED: dict[type, bool] = {}  # response iterable type -> has __len__ (a failed lookup costs an exception each time)


def _remember_sized(cls: type) -> bool:
    sized = hasattr(cls, "__len__")
    if len(_SIZED) < 1000:
        _SIZED[cls] = sized
    return sized


class _Response:
    """The app's response iterable, observed: counts bytes, ends the request when exhausted or closed.

    :meth:`close` closes the app's iterable whether or not iteration ever started.
    """

    __slots__ = ("app_iter", "info", "recorder", "chunks")

    def __init__(self, app_iter: Iterable[bytes], info: RequestInfo, recorder: Recorder):
        self.app_iter, self.info, self.recorder = app_iter, info, recorder
        self.chunks = None

    def __iter__(self):
        if self.chunks is None:
            self.chunks = _observed_chunks(self.app_iter, self.info, self.recorder)
        return self.chunks

    def close(self):
        app_iter = self.app_iter
        close = None if type(app_iter) in _NO_CLOSE else getattr(app_iter, "close", None)
        try:
            if close is not None:
                close()
        except BaseException as exc:
            self.recorder.finish(self.info, exc)
            raise
        if not self.info.finished:  # the usual case: iteration already ended the request
            self.recorder.finish(self.info)


class _SizedResponse(_Response):
    __slots__ = ()

    def __len__(self):
        return len(self.app_iter)


def _observed_chunks(app_iter: Iterable[bytes], info: RequestInfo, recorder: Recorder):
    """The app's chunks, counted; the request ends when they run out or the app raises.

    A caller that drops it half-way without calling ``close()`` (not WSGI-compliant, but it
    happens) still ends the request: collecting a started generator raises GeneratorExit here.
    A function, not a method, so that the generator holds no reference to its ``_Response``.
    """
    try:
        for chunk in app_iter:
            info.response_bytes += len(chunk)
            yield chunk
    except GeneratorExit:
        recorder.finish(info)
        raise
    except BaseException as exc:
        recorder.finish(info, exc)
        raise
    recorder.finish(info)
