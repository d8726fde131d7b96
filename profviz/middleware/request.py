"""One request as the engine sees it, from its start to the writer: :class:`RequestInfo`."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, Callable

from ..collect.tasks import TASK_LANE_BASE

HeaderFn = Callable[[Any, str], "str | None"]
"""``header(request, name)``: a request header's value (``name`` as in ``"X-Profviz-Deep"``), or None."""
QueryFn = Callable[[Any], str]
"""``query(request)``: the request's raw query string."""

_id_prefix = os.urandom(6).hex()
_id_counter = itertools.count(1)
_thread_ids = threading.local()  # .tid, .name: the thread's native id (a syscall to read) and name; new after fork
_wall_offset_ns = time.time_ns() - time.perf_counter_ns()  # epoch minus monotonic; refreshed by the writer


def id_prefix() -> str:
    """This process's random request id prefix (new in a forked child): also the source of its sampler's stack nodes."""
    return _id_prefix


def refresh_wall_offset() -> int:
    """Re-read the wall clock's offset from the monotonic one (the writer does, once a batch); returns it."""
    global _wall_offset_ns
    _wall_offset_ns = time.time_ns() - time.perf_counter_ns()
    return _wall_offset_ns


class RequestInfo:
    """What profviz knows about one request; WSGI apps find it in ``environ["profviz.request"]``.

    ``tid`` is the serving thread's native id; for a request served by an asyncio task
    (``own_thread`` False) its task lane (:func:`profviz.collect.tasks.lane_of`).

    ``id`` is unique across processes and restarts (a random per-process prefix and a counter;
    also stored in the request row's labels as ``request_id``). ``route`` may be set by the
    framework adapter (otherwise the route function names it at the end); ``labels`` may be
    filled by the app and are stored with the request. ``status_line`` is the status as the
    framework gave it (a WSGI status line or an int). Once the request has finished:
    ``duration_ns``, ``cpu_ns`` (CPU time of the thread that started it; ``own_thread`` False: a
    thread that serves other requests meanwhile, whose clock says nothing of this one) and
    ``error`` (``"Type: message"`` when the app raised, else None). Made by :meth:`Recorder.begin`.
    """

    pid = os.getpid()  # this process's id: a class attribute, set again in a forked child
    # what most requests never change, read from the class until set (fewer stores a request)
    route: str | None = None
    status_line: str | int | None = None
    response_bytes = 0
    error: str | None = None
    finished = False
    duration_ns: int | None = None
    cpu_ns: int | None = None
    thread_name = ""
    slot: Any = None  # the sampler's slot while the request runs
    previous_slot: Any = None  # the slot the thread served before, restored at the end (nested requests)
    samples: list | tuple = ()
    deep = False
    profiler: Any = None  # pyinstrument, for a deep profile
    deep_result: Any = None
    server_span: Any = None  # (OpenTelemetry span, context token) with otel="auto"
    _labels: dict | None = None
    queue_start: str | None = None  # the proxy's queue-start header, read as the request begins
    loop_queue_ns: int | None = None  # ASGI: how long its task waited for the loop before the app began it

    def __init__(self, method: str, path: str, request: Any = None, own_thread: bool = True):
        self.request = request  # the framework's request (a WSGI environ...), until the request ends
        self.method = method
        self.path = path
        self.seq = next(_id_counter)
        self.ident = threading.get_ident()
        if own_thread:
            tid = getattr(_thread_ids, "tid", None)
            self.tid = tid if tid is not None else _remember_thread_ids()
            self.cpu_start = time.thread_time_ns()
        else:  # a task on an event loop: its own lane in the place of the thread (profviz.collect.tasks)
            self.tid = TASK_LANE_BASE + (self.seq & 0x7FFF_FFFF)  # lane_of, inline
            self.cpu_start = None
        self.mono_start = time.perf_counter_ns()
        self.wall_offset_ns = _wall_offset_ns  # this request's reading of the wall clock's offset (see start_ns)

    @property
    def id(self) -> str:
        return f"{_id_prefix}-{self.seq:x}"

    @property
    def start_ns(self) -> int:
        """Epoch ns at the start: the monotonic start plus the wall clock's offset from it as the
        writer last read it when the request began. The request row, its server span and its
        profile all use this one value, so they agree even when the wall clock is stepped."""
        return self.mono_start + self.wall_offset_ns

    @property
    def labels(self) -> dict:
        labels = self._labels
        if labels is None:
            labels = self._labels = {}
        return labels

    @labels.setter
    def labels(self, value: dict) -> None:
        self._labels = value  # checked off the request path, by the writer

    def stop_clocks(self) -> None:
        """Set ``duration_ns`` and ``cpu_ns`` (at least 0; 0 when the starting thread's clock is
        unreadable, or when the thread serves other requests meanwhile: ``cpu_start`` None)."""
        self.duration_ns = time.perf_counter_ns() - self.mono_start
        if self.cpu_start is None:
            cpu_ns = 0
        elif threading.get_ident() == self.ident:
            cpu_ns = time.thread_time_ns() - self.cpu_start
        else:  # finished on another thread than it began on
            try:
                cpu_ns = time.clock_gettime_ns(time.pthread_getcpuclockid(self.ident)) - self.cpu_start
            except (AttributeError, OSError):
                cpu_ns = 0
        self.cpu_ns = cpu_ns if cpu_ns > 0 else 0

    def as_dict(self) -> dict:
        return {
            "id": self.id, "method": self.method, "path": self.path, "route": self.route, "start_ns": self.start_ns,
            "pid": self.pid, "tid": self.tid, "deep": self.deep, "status": self.status,
            "labels": dict(self._labels or {}),
        }

    @property
    def status(self) -> int | None:
        """The response's status code, once the app has started its response (None before)."""
        return status_code(self.status_line)


def thread_name() -> str:
    """The calling thread's name as at its first request."""
    return _thread_ids.name


def _remember_thread_ids() -> int:
    """Read and keep this thread's native id and name."""
    _thread_ids.name = threading.current_thread().name
    tid = _thread_ids.tid = threading.get_native_id()
    return tid


def status_code(status: str | int | None) -> int | None:
    """The code of a status line (``"404 Not Found"``) or an int status; None when there is none."""
    if status is None or status == "":
        return None
    if isinstance(status, int):
        return int(status)
    try:
        return int(str(status).split(None, 1)[0])
    except (ValueError, IndexError):
        return None


def _after_fork() -> None:
    """A forked worker: its own pid, a fresh id prefix so ids stay unique, new thread ids."""
    global _id_prefix, _id_counter, _thread_ids
    _id_prefix, _id_counter = os.urandom(6).hex(), itertools.count(1)
    RequestInfo.pid = os.getpid()
    _thread_ids = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
