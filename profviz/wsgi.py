"""``ProfilerMiddleware``: times every WSGI request and keeps profiles of the slow ones.

Usage, in the manner of Werkzeug's middlewares::

    from profviz.wsgi import ProfilerMiddleware
    app = ProfilerMiddleware(app, store="/var/lib/app/profviz.db")

Every request is timed (route, method, status, wall latency, thread CPU time, start time,
response size) and written to the store's ``requests`` table. Profiles come from two collectors:

* the always-on sampler (default, :mod:`profviz.collect.sampler`): one thread per process samples
  the stacks of the threads serving requests at ``sample_hz``. A request's samples become a stored
  profile (kind ``"request"``) only when the request turned out slow: over ``tail_threshold_ms``,
  or over its route's running ``tail_percentile`` (P95 by default, once the route has seen
  ``tail_min_requests``). A few typical requests (between the route's running P40 and P60) are
  kept as a baseline for tail diffs (``baseline_per_minute``). All samples, of every request, are
  summed per route into a ``"route-aggregate"`` profile flushed every ``aggregate_interval_s``.
* deep profiles with pyinstrument (:mod:`profviz.collect.deep`, 1 ms, per-sample timeline) for a
  random ``deep_fraction`` of requests, or on demand when ``deep_trigger_secret`` is configured and
  the request carries it in the ``X-Profviz-Deep`` header or the ``profviz_deep`` query parameter.

The request path only reads clocks and queues a record: routes' percentiles, tail decisions,
profile building and SQLite writes happen on a background writer thread fed by a bounded queue
(full queue: the record is dropped and counted, the request never waits). Anything that fails
inside profviz is logged (logger ``profviz``, rate limited, messages prefixed ``profviz:``),
counted in :attr:`ProfilerMiddleware.stats`, and the request is served exactly as without it.

WSGI semantics: the response iterable is wrapped, so a streaming response is profiled through its
iteration and the request ends when the iterable is exhausted or closed (whichever comes first;
``close()`` of the app's iterable is always called through), or when a caller that stopped
iterating without closing it drops it. ``start_response`` is passed
through with the same arguments (``exc_info`` only when given) and its ``write()`` callable is
returned wrapped only to count bytes. Exceptions from the app propagate unchanged. A response
iterable with ``__len__`` keeps it. ``wsgi.file_wrapper`` responses are streamed by iteration (same
bytes, no sendfile). Per-request metadata is in ``environ["profviz.request"]`` (a
:class:`RequestInfo`); frameworks set its ``route``.

Errors for ``error_rate``: a request is an error when its status is >= 500 or the app raised.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import json
import logging
import os
import random
import threading
import time
from bisect import bisect_left, insort
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Mapping

from .accel import speedups
from .collect.sampler import StackSampler, process_sampler, samples_to_profile
from .collect.writer import BackgroundWriter
from .model import Profile
from .routes import RouteFn, collapse_path
from .store import Store, open_store
from .store.shared_stacks import SharedStackProfile, insert_stack_nodes
from .store.requests import ROW_PROFILE_ID, ROW_WIDTH, insert_request_params

logger = logging.getLogger("profviz")

ENVIRON_KEY = "profviz.request"
DEEP_HEADER = "HTTP_X_PROFVIZ_DEEP"
DEEP_PARAM = "profviz_deep"
ROUTE_WINDOW = 1000  # recent durations per route behind the running percentiles
RECOMPUTE_EVERY = 20  # requests between updates of a route's cached percentiles


class Health:
    """Counts failures inside profviz and logs each kind at most once per ``interval_s``."""

    def __init__(self, interval_s: float = 60.0):
        self.interval_s = interval_s
        self.errors: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def report(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self.errors[where] = self.errors.get(where, 0) + 1
            now = time.monotonic()
            last = self._last_logged.get(where)
            if last is not None and now - last < self.interval_s:
                self._suppressed[where] = self._suppressed.get(where, 0) + 1
                return
            self._last_logged[where] = now
            suppressed = self._suppressed.pop(where, 0)
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        logger.warning("profviz: %s failed: %s: %s%s; requests are served unchanged", where, type(exc).__name__, exc, more)

    @property
    def total(self) -> int:
        return sum(self.errors.values())


class _RequestFieldsPython:
    """The fields of a :class:`RequestInfo`, as class-level defaults (the base class when the C
    extension is not there; its ``RequestFields`` stores the same fields, with the same defaults,
    in a C struct). The request path sets only what it measures: this object is created and
    dropped for every request, so each attribute set is paid by every request."""

    environ: Mapping | None = None
    method = "GET"
    path = "/"
    route: str | None = None
    thread_name = ""
    deep = False
    status_line: str | None = None
    response_bytes = 0
    finished = False
    duration_ns: int | None = None
    cpu_ns: int | None = None
    error: str | None = None
    tid = 0
    _seq = 0
    _ident = 0
    _mono_start = 0
    _cpu_start = 0
    _slot = None
    _previous_slot = None
    _profiler = None
    _samples: list | tuple = ()
    _deep_result = None
    _status = 0
    _labels: dict | None = None
    _start_response: Callable | None = None  # the server's, for the request's lifetime
    _write: Callable | None = None

    def _observed_start_response(self, status, headers, exc_info=None):
        """The server's ``start_response``, called through with the same arguments; notes the
        status and returns the server's ``write`` wrapped to count bytes."""
        if exc_info is None:
            self._write = self._start_response(status, headers)
        else:
            self._write = self._start_response(status, headers, exc_info)
        self.status_line = status
        return self._counting_write

    def _counting_write(self, data):
        self.response_bytes += len(data)
        return self._write(data)


_RequestFields: type = speedups.RequestFields if speedups is not None else _RequestFieldsPython


class RequestInfo(_RequestFields):
    """What profviz knows about one request; found in ``environ["profviz.request"]``.

    ``id`` is unique across processes and restarts (a random per-process prefix and a counter;
    also stored in the request row's labels as ``request_id``);
    ``route`` may be set by the framework integration (otherwise the route function names it at
    the end); ``labels`` may be filled by the app and are stored with the request. Once the
    request has finished: ``duration_ns``, ``cpu_ns`` (the serving thread's CPU time) and
    ``error`` (``"Type: message"`` when the app raised, else None). The fields and their
    defaults are those of :class:`_RequestFieldsPython`. :meth:`Recorder.begin` makes it.
    """

    pid = os.getpid()  # this process's id: a class attribute, set again in a forked child

    @property
    def id(self) -> str:
        return f"{_id_prefix}-{self._seq:x}"

    @property
    def start_ns(self) -> int:
        """Epoch ns at the start (the monotonic start plus the wall clock's current offset from it)."""
        return self._mono_start + _wall_offset_ns

    @property
    def labels(self) -> dict:
        labels = self._labels
        if labels is None:
            labels = self._labels = {}
        return labels

    @labels.setter
    def labels(self, value: dict) -> None:
        self._labels = value  # checked off the request path, by the writer (see _json_safe_labels)

    @property
    def status(self) -> int | None:
        return _status_code(self.status_line)

    def as_dict(self) -> dict:
        return {
            "id": self.id, "method": self.method, "path": self.path, "route": self.route, "start_ns": self.start_ns,
            "pid": self.pid, "tid": self.tid, "deep": self.deep, "status": self.status, "labels": dict(self._labels or {}),
        }


_id_prefix = os.urandom(6).hex()
_wall_offset_ns = time.time_ns() - time.perf_counter_ns()  # epoch minus monotonic; refreshed by the writer


def _refresh_wall_offset() -> None:
    global _wall_offset_ns
    _wall_offset_ns = time.time_ns() - time.perf_counter_ns()

_id_counter = itertools.count(1)
_new_object = object.__new__
_thread_ids = threading.local()  # .tid, .name: the thread's native id (a syscall to read) and name; new after fork


def _native_thread_id() -> int:
    """Read and keep this thread's native id and name (its name as at its first request)."""
    _thread_ids.name = threading.current_thread().name
    tid = _thread_ids.tid = threading.get_native_id()
    return tid


def _start_request_python(cls: type, environ: dict, counter, thread_ids, native_thread_id: Callable[[], int], environ_key: str):
    """A new ``cls`` (a :class:`RequestInfo`) for ``environ``, its clocks started; ``environ[environ_key]`` is set to it."""
    info = cls.__new__(cls)
    info.environ = environ
    info.method = environ.get("REQUEST_METHOD") or "GET"
    info.path = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "") or "/"  # request_path(), inlined
    info._seq = next(counter)
    info._ident = threading.get_ident()
    tid = getattr(thread_ids, "tid", None)
    info.tid = tid if tid is not None else native_thread_id()
    info._mono_start = time.perf_counter_ns()
    info._cpu_start = time.thread_time_ns()
    environ[environ_key] = info
    return info


def _stop_clocks_python(info: RequestInfo, other_thread_cpu_ns: Callable[[int], int | None]) -> None:
    """Set ``info.duration_ns`` and ``info.cpu_ns`` (CPU time of the thread that started it, at least 0)."""
    info.duration_ns = time.perf_counter_ns() - info._mono_start
    if threading.get_ident() == info._ident:
        cpu_ns = time.thread_time_ns() - info._cpu_start
    else:
        now = other_thread_cpu_ns(info._ident)
        cpu_ns = 0 if now is None else now - info._cpu_start
    info.cpu_ns = cpu_ns if cpu_ns > 0 else 0


def _other_thread_cpu_ns(ident: int) -> int | None:
    """The CPU clock of the thread ``ident`` (a request finished on another thread than it began on); None when unreadable."""
    try:
        return time.clock_gettime_ns(time.pthread_getcpuclockid(ident))
    except (AttributeError, OSError):
        return None


if speedups is not None:  # the C versions (see profviz/accel.py)
    _start_request, _stop_clocks = speedups.start_request, speedups.stop_clocks
else:
    _start_request, _stop_clocks = _start_request_python, _stop_clocks_python


def _after_fork() -> None:
    """A forked worker: its own pid, a fresh id prefix so ids stay unique, new thread ids."""
    global _id_prefix, _id_counter, _thread_ids
    _id_prefix, _id_counter = os.urandom(6).hex(), itertools.count(1)
    RequestInfo.pid = os.getpid()
    _thread_ids = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


_STATUS_CODES: dict[str, int] = {}  # status line -> code, filled by the writer thread


def _cached_status_code(status_line: str | None) -> int | None:
    """:func:`_status_code`, remembered for the first thousand distinct status lines (writer thread)."""
    status = _STATUS_CODES.get(status_line)
    if status is None:
        status = _status_code(status_line)
        if status is not None and len(_STATUS_CODES) < 1000:
            _STATUS_CODES[status_line] = status
    return status


def _status_code(status_line: str | None) -> int | None:
    if not status_line:
        return None
    try:
        return int(str(status_line).split(None, 1)[0])
    except (ValueError, IndexError):
        return None


def _json_safe_labels(labels: Any) -> dict:
    """An app's request labels as a dict that JSON can store: keys as text, values that JSON
    cannot encode as their ``str()``; something that is not a mapping is kept as one text label."""
    try:
        items = dict(labels)
    except (TypeError, ValueError):
        return {"labels": str(labels)[:500]}
    return json.loads(json.dumps({str(key): value for key, value in items.items()}, default=str))


class _FlushAggregates:
    """Writer item: flush every route aggregate now."""


class _TokenBucket:
    """``per_minute`` tokens a minute, at most ten seconds' worth saved up."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _RouteState:
    """Writer-thread state of one (route, method) when the sampler runs: recent durations, cached
    percentiles, budgets, and the samples summed over the current aggregate window.

    The window of the last ``ROUTE_WINDOW`` durations is kept twice: in arrival order (to know
    which one leaves) and sorted (``bisect``: a percentile is an index, never a sort).
    """

    def __init__(self, tail_per_minute: float, baseline_per_minute: float):
        self.durations: deque[int] = deque()
        self.ordered: list[int] = []
        self.seen = 0
        self.p_tail: float | None = None
        self.p40: float | None = None
        self.p60: float | None = None
        self.tail_budget = _TokenBucket(tail_per_minute)
        self.baseline_budget = _TokenBucket(baseline_per_minute) if baseline_per_minute > 0 else None
        self.aggregate: _RouteAggregate | None = None  # taken away by Recorder._due_aggregates

    def observe(self, duration_ns: int, start_ns: int, samples: list, tail_percentile: float | None) -> None:
        """Add one request: its duration to the window, its sampler samples (if any) to the
        aggregate. The cached percentiles are refreshed after each of a route's first
        ``RECOMPUTE_EVERY`` requests, then every ``RECOMPUTE_EVERY`` requests. (One call does
        both: this runs for every request, and a call costs more than either body.)"""
        if samples:
            aggregate = self.aggregate
            if aggregate is None:
                aggregate = self.aggregate = _RouteAggregate(start_ns)
            aggregate.requests += 1
            aggregate.samples += len(samples)
            end_ns = start_ns + duration_ns
            if end_ns > aggregate.end_ns:
                aggregate.end_ns = end_ns
            weights = aggregate.weights
            for _, stack, state, weight in samples:
                pair = (stack, state)
                weights[pair] = weights.get(pair, 0) + weight
        durations, ordered = self.durations, self.ordered
        durations.append(duration_ns)
        insort(ordered, duration_ns)
        if len(durations) > ROUTE_WINDOW:
            del ordered[bisect_left(ordered, durations.popleft())]
        self.seen = seen = self.seen + 1
        if seen <= RECOMPUTE_EVERY or seen % RECOMPUTE_EVERY == 0:
            self.p40, self.p60 = _percentile(ordered, 40.0), _percentile(ordered, 60.0)
            self.p_tail = _percentile(ordered, tail_percentile) if tail_percentile is not None else None


def _percentile(ordered: list[int], q: float) -> float:
    """The ``q``-th percentile of sorted values, interpolated linearly (numpy's default method)."""
    position = (len(ordered) - 1) * q / 100.0
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


class _RouteAggregate:
    """Summed sampler samples of one route over one window (writer thread only)."""

    def __init__(self, start_ns: int):
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.requests = 0
        self.samples = 0
        self.weights: dict[tuple[int, int], int] = {}


@contextlib.contextmanager
def _no_spans() -> Iterator[None]:
    """profviz's own store writes must not become spans of the profiled app."""
    try:
        from opentelemetry.instrumentation.utils import suppress_instrumentation
    except ImportError:
        yield
        return
    with suppress_instrumentation():
        yield


class Recorder:
    """The engine shared by the WSGI, Flask and Django integrations: begin/finish a request.

    See :class:`ProfilerMiddleware` for the options. Thread safe; one per middleware instance.
    """

    def __init__(
        self,
        store: Store | str | os.PathLike | None = None,
        *,
        route_fn: RouteFn | None = None,
        sampler: bool = True,
        sample_hz: float = 100.0,
        tail_threshold_ms: float | None = None,
        tail_percentile: float | None = 95.0,
        tail_min_requests: int = 20,
        tail_max_per_minute: float = 60.0,
        baseline_per_minute: float = 6.0,
        aggregate_interval_s: float = 60.0,
        deep_fraction: float = 0.0,
        deep_interval_s: float = 0.001,
        deep_trigger_secret: str | None = None,
        queue_size: int = 10_000,
        writer_interval_s: float = 1.0,
        worker_threads: int | None = None,
        labels: Mapping[str, Any] | None = None,
        enabled: bool = True,
        log_interval_s: float = 60.0,
        otel: str | None = None,
    ):
        if otel not in (None, "auto"):
            raise ValueError(f"otel must be None or 'auto', got {otel!r}")
        if not 0.0 <= deep_fraction <= 1.0:
            raise ValueError(f"deep_fraction must be between 0 and 1, got {deep_fraction}")
        if tail_percentile is not None and not 0 < tail_percentile < 100:
            raise ValueError(f"tail_percentile must be in (0, 100) or None, got {tail_percentile}")
        if deep_trigger_secret is not None and len(deep_trigger_secret) < 8:
            raise ValueError("deep_trigger_secret must be at least 8 characters (anyone who knows it can trigger deep profiles)")
        self.store_spec = store
        self.route_fn = route_fn
        self.use_sampler = sampler
        self.sample_hz = sample_hz
        self.tail_threshold_ns = None if tail_threshold_ms is None else int(tail_threshold_ms * 1e6)
        self.tail_percentile = tail_percentile
        self.tail_min_requests = tail_min_requests
        self.tail_max_per_minute = tail_max_per_minute
        self.baseline_per_minute = baseline_per_minute
        self.aggregate_interval_ns = int(aggregate_interval_s * 1e9)
        self.deep_fraction = deep_fraction
        self.deep_interval_s = deep_interval_s
        self._deep_secret = deep_trigger_secret.encode() if deep_trigger_secret else None
        if deep_fraction or self._deep_secret is not None:
            from .collect import deep  # noqa: F401  (now, not in the first profiled request: pyinstrument takes ~15 ms to import)
        self.worker_threads = worker_threads
        self.labels = dict(labels or {})
        self.enabled = enabled
        self.health = Health(log_interval_s)
        self.counts = {
            "recorded": 0, "write_failures": 0, "profiles_tail": 0, "profiles_baseline": 0, "profiles_deep": 0,
            "profiles_aggregate": 0, "tail_rate_limited": 0, "typical_dropped": 0,
        }
        self._store: Store | None = store if isinstance(store, Store) else None
        self._sampler: StackSampler | None = process_sampler(sample_hz, self.health.report) if sampler else None
        self._routes: dict[tuple[str, str], _RouteState] = {}  # only with the sampler
        self._path_routes: dict[str, str] = {}
        self._tuned_threads: set[int] = set()
        self._labels_tail = self._constant_labels_tail()
        self._nodes_source: str | None = None  # the sampler's stack nodes stored so far, and under which source
        self._nodes_stored = 0
        self.writer = BackgroundWriter(
            self._handle_batch, maxsize=queue_size, batch_size=1000, idle=self._idle, idle_s=1.0, on_error=self.health.report,
            poll_s=writer_interval_s, on_close=self._final_flush,
        )
        self.span_processor = self._setup_otel(store) if otel == "auto" else None

    def _setup_otel(self, store: Store | str | os.PathLike | None):
        """Record this process's OpenTelemetry spans in the same store (see :func:`profviz.otel.setup_otel`)."""
        try:
            from .otel import setup_otel

            return setup_otel(store)
        except Exception as exc:
            self.health.report("OpenTelemetry setup", exc)
            return None

    # -- the request path -----------------------------------------------------------------

    def begin(self, environ: dict) -> RequestInfo | None:
        """Start timing a request; None when disabled or when profviz itself failed."""
        if not self.enabled:
            return None
        try:
            info = _start_request(RequestInfo, environ, _id_counter, _thread_ids, _native_thread_id, ENVIRON_KEY)
            if self._sampler is not None:
                self._sampler.ensure_running()
                info._previous_slot = self._sampler.active.get(info._ident)
                info.thread_name = name = _thread_ids.name
                info._slot = self._sampler.begin(info._mono_start, info._cpu_start, info._ident, info.tid, name)
            if (self.deep_fraction or self._deep_secret is not None) and self._wants_deep(environ):
                self._start_deep(info)
            return info
        except Exception as exc:
            self.health.report("request start", exc)
            return None

    def _wants_deep(self, environ: Mapping) -> bool:
        if self.deep_fraction and random.random() < self.deep_fraction:
            return True
        if self._deep_secret is None:
            return False
        offered = environ.get(DEEP_HEADER)
        if offered is None:
            query = environ.get("QUERY_STRING") or ""
            if DEEP_PARAM + "=" not in query:
                return False
            from urllib.parse import parse_qs

            values = parse_qs(query).get(DEEP_PARAM)
            offered = values[0] if values else None
        return offered is not None and hmac.compare_digest(str(offered).encode(), self._deep_secret)

    def _start_deep(self, info: RequestInfo) -> None:
        from .collect.deep import DeepProfiler

        try:
            profiler = DeepProfiler(self.deep_interval_s)
            profiler.begin()
            info._profiler = profiler
            info.deep = True
        except Exception as exc:
            self.health.report("deep profiler start", exc)

    def finish(self, info: RequestInfo, error: BaseException | None = None) -> None:
        """End a request (idempotent): set its duration, CPU time and error; it goes to the writer thread."""
        if info.finished:
            return
        info.finished = True
        try:
            _stop_clocks(info, _other_thread_cpu_ns)
            slot = info._slot
            if slot is not None:
                info._samples = self._sampler.end(slot, info._previous_slot)
            if info._profiler is not None:
                info._deep_result = self._stop_deep(info)
            if info.route is None and self.route_fn is not None:
                try:
                    route = self.route_fn(info.environ)
                    if route is not None:
                        info.route = str(route)
                except Exception as exc:
                    self.health.report("route_fn", exc)
            info.environ = info._start_response = info._write = None
            if error is not None:
                info.error = f"{type(error).__name__}: {error}"[:500]
            self.writer.submit(info)
        except Exception as exc:
            self.health.report("request finish", exc)

    def _stop_deep(self, info: RequestInfo):
        profiler = info._profiler
        info._profiler = None
        try:
            session = profiler.stop()
            return (session, profiler.cpu_ns_at_sample, profiler.start_cpu_ns)
        except Exception as exc:
            self.health.report("deep profiler stop", exc)
            return None

    # -- the writer thread ----------------------------------------------------------------

    def store(self) -> Store:
        """The store, opened on first use by the writer thread.

        The writer's connection commits with ``synchronous = NORMAL``: in WAL mode that cannot
        corrupt the store, but a power cut (not a crash) may lose the last second of records,
        and each commit costs a third of the CPU. Other connections keep the store's settings.
        """
        if self._store is None:
            self._store = open_store(self.store_spec)
        if threading.get_ident() not in self._tuned_threads:
            self._store.execute("PRAGMA synchronous = NORMAL")
            self._tuned_threads.add(threading.get_ident())
        return self._store

    def _handle_batch(self, batch: list) -> None:
        """One writer wake-up: every record's row, and the profiles kept, in one transaction."""
        _refresh_wall_offset()
        params: list = []  # the request rows' parameters, ROW_WIDTH a row
        kept: list[tuple[Profile, str, int | None]] = []  # (profile, counter, where its row's profile_id is in params)
        flush_all = False
        process = self._process
        for item in batch:
            if isinstance(item, _FlushAggregates):
                flush_all = True
                continue
            try:
                profile, counter = process(item, params)
            except Exception as exc:
                self.health.report("request record", exc)
                continue
            if profile is not None:
                kept.append((profile, counter, len(params) - ROW_WIDTH + ROW_PROFILE_ID))
        kept.extend((profile, "profiles_aggregate", None) for profile in self._due_aggregates(force=flush_all))
        self._write(params, kept)

    def _write(self, params: list, kept: list[tuple[Profile | SharedStackProfile, str, int | None]]) -> None:
        """Insert the profiles (and the sampler's stack nodes they use), then the request rows
        pointing at them, in one transaction. When that fails, the rows are written again without
        profiles (those are reported lost)."""
        if not params and not kept:
            return
        store = self.store()
        rows = len(params) // ROW_WIDTH
        nodes = self._new_stack_nodes() if any(type(profile) is SharedStackProfile for profile, _, _ in kept) else None

        def insert_rows(conn, ids: list[int]) -> None:
            if nodes is not None:
                insert_stack_nodes(conn, nodes[0], nodes[2])
            for (_, _, at), profile_id in zip(kept, ids):
                if at is not None:
                    params[at] = profile_id
            insert_request_params(store, params, conn=conn)

        try:
            with _no_spans():
                if kept:
                    store.save_profiles([profile for profile, _, _ in kept], also=insert_rows)
                else:
                    insert_request_params(store, params)
        except Exception as exc:
            if not kept:
                self.counts["write_failures"] += rows
                raise
            self.health.report("saving profiles", exc)
            for _, _, at in kept:
                if at is not None:
                    params[at] = 0
            try:
                with _no_spans():
                    insert_request_params(store, params)
            except Exception:
                self.counts["write_failures"] += rows
                raise
        else:
            for _, counter, _ in kept:
                self.counts[counter] += 1
            if nodes is not None:
                self._nodes_source, self._nodes_stored = nodes[0], nodes[1]
        self.counts["recorded"] += rows

    def _new_stack_nodes(self) -> tuple[str, int, list]:
        """(source, table length, nodes) of the sampler's stack nodes not stored yet by this writer.

        The source is this process's request id prefix, new in a forked child: the child's table
        grows apart from its parent's, so its nodes are all stored again under its own source.
        """
        table = self._sampler.table
        source, stored = _id_prefix, self._nodes_stored
        if source != self._nodes_source:
            stored = 0
        end = len(table)
        return source, end, table.nodes(stored, end)

    def _process(self, info: RequestInfo, params: list) -> tuple[Profile | None, str]:
        """Route, percentiles, tail decision and profile of one finished request: appends its
        ``requests`` row to ``params`` (``error`` "" and ``profile_id`` 0 for NULL, see
        :func:`insert_request_params`) and returns the profile to keep (or None) and the counter it adds to."""
        status = _STATUS_CODES.get(info.status_line)  # _cached_status_code's lookup, inlined
        if status is None:
            status = _cached_status_code(info.status_line)
        info._status = status if status is not None else (500 if info.error is not None else 0)
        method = info.method
        if not method.isupper():
            method = info.method = str(method).upper()
        path = info.path
        route = info.route
        if route is None:
            route = self._path_routes.get(path)
            if route is None:
                if len(self._path_routes) >= 20_000:
                    self._path_routes.clear()
                route = self._path_routes[path] = collapse_path(path)
        key = (route, method)
        duration_ns = info.duration_ns
        start_ns = info._mono_start + _wall_offset_ns  # info.start_ns, inlined
        samples = info._samples
        capture = None
        if self._sampler is not None:  # running percentiles: which sampled requests to keep (timing alone needs none)
            state = self._routes.get(key)
            if state is None:
                state = self._routes[key] = _RouteState(self.tail_max_per_minute, self.baseline_per_minute)
            if samples:
                capture = self._capture_kind(state, duration_ns)
            state.observe(duration_ns, start_ns, samples, self.tail_percentile)
        profile, counter = None, ""
        full_labels = info._labels or self._labels_tail is None  # else the row's labels take the shortcut
        keep_deep, keep_sampled = info._deep_result is not None, capture is not None and bool(samples)
        labels = self._labels(info) if full_labels or keep_deep or keep_sampled else None
        if keep_deep:
            profile, counter = self._deep_profile(info, route, labels), "profiles_deep"
        elif keep_sampled:
            profile, counter = self._sampled_profile(info, route, labels, capture), "profiles_" + capture
        if full_labels:
            labels_json = json.dumps(labels)
        else:
            labels_json = f'{{"request_id": "{_id_prefix}-{info._seq:x}' + self._labels_tail  # info.id, inlined
        params += (
            info.pid, info.tid, route, method, path, info._status, start_ns, duration_ns,
            info.cpu_ns, info.response_bytes, info.error or "", 0, labels_json,
        )
        return profile, counter

    def _labels(self, info: RequestInfo) -> dict:
        """A request's labels: its id, the middleware's labels, the app's labels, the capacity."""
        labels = {"request_id": info.id, **self.labels}
        if info._labels:
            labels.update(_json_safe_labels(info._labels))
        if self.worker_threads:
            labels["capacity"] = self.worker_threads
        return labels

    def _constant_labels_tail(self) -> str | None:
        """``json.dumps(self._labels(info))`` after the request id, for requests without app labels
        (the id is hex and a dash: nothing to escape); None when that shortcut does not apply."""
        if "request_id" in self.labels:
            return None
        constant = {**self.labels}
        if self.worker_threads:
            constant["capacity"] = self.worker_threads
        try:
            encoded = json.dumps(constant)
        except (TypeError, ValueError):
            return None
        return '"}' if not constant else '", ' + encoded[1:]

    def _capture_kind(self, state: _RouteState, duration_ns: int) -> str | None:
        """"tail", "baseline" or None (dropped) for a request of this route and duration."""
        slow = self.tail_threshold_ns is not None and duration_ns >= self.tail_threshold_ns
        warm = state.seen >= self.tail_min_requests
        if not slow and warm and state.p_tail is not None:
            slow = duration_ns > state.p_tail
        if slow:
            if state.tail_budget.take():
                return "tail"
            self.counts["tail_rate_limited"] += 1
            return None
        if warm and state.baseline_budget is not None and state.p40 is not None and state.p40 <= duration_ns <= state.p60:
            if state.baseline_budget.take():
                return "baseline"
        self.counts["typical_dropped"] += 1
        return None

    def _request_meta(self, info: RequestInfo, route: str, labels: dict, capture: str, collector: str, rate_hz: float) -> dict:
        return {
            "kind": "request",
            "pid": info.pid,
            "cmdline": f"{info.method} {info.path}",
            "start_ns": info.start_ns,
            "duration_ns": info.duration_ns,
            "rate_hz": rate_hz,
            "labels": {
                **labels, "route": route, "method": info.method, "path": info.path, "status": info._status,
                "capture": capture, "collector": collector, "duration_ms": round(info.duration_ns / 1e6, 3),
                "cpu_ms": round(info.cpu_ns / 1e6, 3),
            },
        }

    def _sampled_profile(self, info: RequestInfo, route: str, labels: dict, capture: str) -> SharedStackProfile | None:
        """The request's samples over the sampler's stack table (see :mod:`profviz.store.shared_stacks`:
        no Profile is built until someone loads it)."""
        try:
            meta = self._request_meta(info, route, labels, capture, "sampler", self.sample_hz)
            samples = info._samples
            return SharedStackProfile(
                meta, _id_prefix, (info.pid, info.tid, info.thread_name), [sample[0] for sample in samples],
                [sample[1] for sample in samples], [sample[3] for sample in samples], [sample[2] for sample in samples],
            )
        except Exception as exc:
            self.health.report("saving a request profile", exc)
            return None

    def _deep_profile(self, info: RequestInfo, route: str, labels: dict) -> Profile | None:
        from .collect.deep import session_to_profile

        try:
            session, cpu_at_sample, start_cpu = info._deep_result
            meta = self._request_meta(info, route, labels, "deep", "pyinstrument", round(1.0 / self.deep_interval_s, 3))
            return session_to_profile(
                session, cpu_at_sample, start_cpu, pid=info.pid, tid=info.tid, thread_name=info.thread_name, meta=meta,
            )
        except Exception as exc:
            self.health.report("saving a deep profile", exc)
            return None

    def _due_aggregates(self, force: bool = False) -> list[Profile]:
        """Route aggregates whose window is over (all when ``force``) as profiles, removed from memory."""
        now = time.time_ns()
        due = []
        for key, state in self._routes.items():
            aggregate = state.aggregate
            if aggregate is None or not force and now - aggregate.start_ns < self.aggregate_interval_ns:
                continue
            state.aggregate = None
            if not aggregate.weights:
                continue
            try:
                due.append(self._aggregate_profile(key, aggregate))
            except Exception as exc:
                self.health.report("saving a route aggregate", exc)
        return due

    def _flush_aggregates(self, force: bool = False) -> None:
        due = self._due_aggregates(force)
        if due:
            self._write([], [(profile, "profiles_aggregate", None) for profile in due])

    def _aggregate_profile(self, key: tuple[str, str], aggregate: _RouteAggregate) -> Profile:
        route, method = key
        pid = os.getpid()
        meta = {
            "kind": "route-aggregate",
            "pid": pid,
            "cmdline": f"{method} {route}",
            "start_ns": aggregate.start_ns,
            "duration_ns": max(0, aggregate.end_ns - aggregate.start_ns),
            "rate_hz": self.sample_hz,
            "labels": {
                **self.labels, "route": route, "method": method, "requests": aggregate.requests,
                "samples": aggregate.samples, "collector": "sampler",
            },
            "notes": [
                f"sums {aggregate.samples} samples of {aggregate.requests} requests of {method} {route} over all threads;"
                " each sample here is one (stack, state) with its summed weight"
            ],
        }
        start_ns = aggregate.start_ns
        samples = [(start_ns, stack_id, state, weight) for (stack_id, state), weight in sorted(aggregate.weights.items())]
        return samples_to_profile(self._sampler.table, samples, pid=pid, tid=0, thread_name=f"{method} {route}", meta=meta)

    def _idle(self) -> None:
        self._flush_aggregates(force=False)

    def _final_flush(self) -> None:
        self._flush_aggregates(force=True)

    # -- control --------------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything recorded so far, including the route aggregates; False on timeout."""
        if self.use_sampler:
            self.writer.submit(_FlushAggregates())
        return self.writer.flush(timeout_s)

    def close(self) -> None:
        """Write everything, route aggregates included, and stop the writer thread (also done at interpreter exit)."""
        self.writer.close()

    @property
    def stats(self) -> dict:
        """Counters: requests queued/dropped/recorded, profiles kept by kind, internal errors by kind,
        and profviz's own threads: the writer's batches and CPU time, the sampler's ticks and CPU time;
        ``speedups``: whether the request path runs the C extension (see :mod:`profviz.accel`)."""
        sampler = self._sampler
        return {
            "speedups": speedups is not None,
            "handled": self.writer.handled,
            "dropped": self.writer.dropped,
            "pending": self.writer.pending,
            **self.counts,
            "errors": self.health.total,
            "errors_by_kind": dict(self.health.errors),
            "writer": {"batches": self.writer.written_batches, "cpu_s": round(self.writer.cpu_ns / 1e9, 6)},
            "sampler": None if sampler is None else {
                "rate_hz": sampler.rate_hz, "ticks": sampler.ticks, "samples": sampler.samples_taken,
                "cpu_s": round(sampler.cpu_ns / 1e9, 6), "stacks": len(sampler.table), "running": sampler.running,
            },
        }


class ProfilerMiddleware:
    """Wrap a WSGI app: time every request and keep profiles of slow ones (see the module docstring).

    Options (keyword, with defaults): ``store`` (path or Store; default: the CLI's store),
    ``route_fn(environ) -> str | None`` (route names for plain WSGI, called as the request ends;
    None, or no ``route_fn``: :func:`collapse_path` of the path),
    ``sampler=True``, ``sample_hz=100``, ``tail_threshold_ms=None``, ``tail_percentile=95``,
    ``tail_min_requests=20``, ``tail_max_per_minute=60`` (per route), ``baseline_per_minute=6``,
    ``aggregate_interval_s=60``, ``deep_fraction=0.0``, ``deep_interval_s=0.001``,
    ``deep_trigger_secret=None``, ``queue_size=10000`` (records waiting for the writer; more are
    dropped and counted), ``writer_interval_s=1.0`` (how often the writer commits a batch: larger, rarer transactions cost less per request),
    ``worker_threads=None`` (capacity for the
    utilisation view; default: threads observed), ``labels`` (stored with every request and
    profile), ``enabled=True``, ``otel=None`` (``"auto"``: record the app's OpenTelemetry spans in
    the same store, setting OpenTelemetry up when the app has not; :func:`profviz.otel.setup_otel`).
    """

    def __init__(self, app: Callable, store: Store | str | os.PathLike | None = None, **options: Any):
        self.app = app
        self.recorder = Recorder(store, **options)

    @property
    def stats(self) -> dict:
        return self.recorder.stats

    def flush(self, timeout_s: float = 30.0) -> bool:
        return self.recorder.flush(timeout_s)

    def close(self) -> None:
        self.recorder.close()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        recorder = self.recorder
        info = recorder.begin(environ)
        if info is None:
            return self.app(environ, start_response)
        info._start_response = start_response
        try:
            app_iter = self.app(environ, info._observed_start_response)
        except BaseException as exc:
            if not info.response_bytes:  # nothing went out: the server answers 500 whatever status was started
                info.status_line = None
            recorder.finish(info, exc)
            raise
        sized = _SIZED.get(type(app_iter))
        if sized is None:
            sized = _is_sized(type(app_iter))
        return _observe_response(app_iter, info, recorder, sized)


_SIZED: dict[type, bool] = {}  # response iterable type -> has __len__ (a failed lookup costs an exception each time)


def _is_sized(cls: type) -> bool:
    sized = hasattr(cls, "__len__")
    if len(_SIZED) < 1000:
        _SIZED[cls] = sized
    return sized


_NO_CLOSE = (list, tuple)  # the usual response iterables without close(); they cannot have instance attributes


class _Response:
    """The app's response iterable, observed: counts bytes, ends the request when exhausted or closed.

    Iterating it runs a generator over the app's iterable (cheaper per chunk and at the end than
    a ``__next__`` method raising StopIteration); :meth:`close` closes the app's iterable whether
    or not iteration ever started. Made by :meth:`ProfilerMiddleware.__call__`, which sets its
    four slots (no ``__init__``, see :class:`RequestInfo`).
    """

    __slots__ = ("app_iter", "_info", "_recorder", "_chunks_iter")

    def __iter__(self):
        chunks = self._chunks_iter
        if chunks is None:
            chunks = self._chunks_iter = _observed_chunks(self.app_iter, self._info, self._recorder)
        return chunks

    def close(self):
        app_iter = self.app_iter
        close = None if type(app_iter) in _NO_CLOSE else getattr(app_iter, "close", None)
        try:
            if close is not None:
                close()
        except BaseException as exc:
            self._recorder.finish(self._info, exc)
            raise
        if not self._info.finished:
            self._recorder.finish(self._info)


def _observed_chunks(app_iter, info: RequestInfo, recorder: Recorder):
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


class _SizedResponse(_Response):
    __slots__ = ()

    def __len__(self):
        return len(self.app_iter)


def _observe_response_python(app_iter, info: RequestInfo, recorder: Recorder, sized: bool) -> _Response:
    """The app's response iterable, observed (:class:`_Response`; with ``__len__`` when ``sized``)."""
    response = _new_object(_SizedResponse if sized else _Response)  # see _Response
    response.app_iter, response._info, response._recorder, response._chunks_iter = app_iter, info, recorder, None
    return response


_observe_response = speedups.observe_response if speedups is not None else _observe_response_python  # see profviz/accel.py
