"""The request engine shared by every framework adapter: :class:`Recorder`.

An adapter calls :meth:`Recorder.begin` when a request arrives and :meth:`Recorder.finish` when
its response is done; the engine knows no framework. The request path only reads clocks,
registers the request with the sampler and queues it: percentiles, tail decisions, profiles and
store writes happen on a background writer thread fed by a bounded queue (full: the request is
dropped and counted, never waited for; see :mod:`.batches`). Anything that fails inside profviz
is counted in :attr:`Recorder.stats` and logged, and the request is served exactly as without it.
Design notes: docs/middleware.md.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import threading
import time
from typing import Any, Callable

from ..collect.sampler import ON_CPU, StackSampler, process_sampler
from ..collect import loop_queue, tasks
from ..collect.tasks import TASK_LANE_NAME, LoopStall, task_lane
from ..collect.writer import BackgroundWriter
from .batches import BatchWriter, FlushAggregates
from .health import Health, logger
from .options import Options
from .request import HeaderFn, QueryFn, RequestInfo, thread_name
from . import shutdown
from .shutdown import IN_FLIGHT_WAIT_S, drain_on_sigterm, wait_until

STORE_FLUSH_AT_EXIT_S = 10.0  # a collector's store: how long the last batches may take to send as the writer stops
DEEP_HEADER = "X-Profviz-Deep"
DEEP_PARAM = "profviz_deep"



class RecorderControls:
    """What every adapter's middleware offers over its ``recorder``: ``stats``, ``flush()``, ``close()``."""

    recorder: "Recorder"

    @property
    def stats(self) -> dict:
        return self.recorder.stats

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything recorded so far; False on timeout."""
        return self.recorder.flush(timeout_s)

    def close(self) -> None:
        """Write everything and stop the writer thread (also done at interpreter exit and on SIGTERM)."""
        self.recorder.close()


class Recorder:
    """Begin and finish requests; thread safe, one per middleware. ``header`` and ``query`` read
    the framework's requests (queue-time headers, on-demand deep profiles); ``queue_start``, when
    given, reads the first queue-time header in one pass."""

    def __init__(self, options: Options, *, header: HeaderFn, query: QueryFn,
                 queue_start: Callable[[Any], str | None] | None = None):
        self.options = options
        self.header = header
        self.query = query
        self.queue_start = queue_start or self._queue_header
        self.health = Health(options.log_interval_s)
        self.counts = {
            "recorded": 0, "write_failures": 0, "profiles_tail": 0, "profiles_baseline": 0, "profiles_deep": 0,
            "profiles_aggregate": 0, "tail_rate_limited": 0, "typical_dropped": 0,
        }
        self._deep_secret = options.deep_trigger_secret.encode() if options.deep_trigger_secret else None
        self._deep = bool(options.deep_fraction) or self._deep_secret is not None
        if self._deep:
            from ..collect import deep, deep_async  # noqa: F401  (now, not in the first profiled request: pyinstrument takes ~15 ms to import)
        self.sampler: StackSampler | None = process_sampler(options.sample_hz, self.health.report, options.task_sampler_budget) if options.sampler else None
        self.batches = BatchWriter(options, self.sampler, self.health, self.counts)
        self.writer = BackgroundWriter(
            self.batches.handle, maxsize=options.queue_size, batch_size=1000, idle=self.batches.flush_aggregates,
            idle_s=1.0, on_error=self.health.report, poll_s=options.writer_interval_s,
            on_close=self._on_close, on_drop=self._dropped,
        )
        self._drops_logged = 0  # the writer's dropped count as the last queue-full message gave it
        self.span_processor = self._setup_otel() if options.otel == "auto" else None
        self.server_spans = self._server_spans() if self.span_processor is not None else None
        self._serving: dict[int, int] = {}  # thread ident -> requests it has begun and not finished
        self._stall_ns = int(options.loop_block_ms * 1e6)
        self.drains_on_sigterm = options.enabled and options.drain_on_sigterm and drain_on_sigterm(self)

    def _setup_otel(self):
        """Record this process's OpenTelemetry spans in the same store (see :func:`profviz.otel.setup_otel`)."""
        try:
            from ..otel import setup_otel

            return setup_otel(self.options.store)
        except Exception as exc:
            self.health.report("OpenTelemetry setup", exc)
            return None

    def _server_spans(self):
        try:
            from .server_spans import ServerSpans

            return ServerSpans(self.header)
        except Exception as exc:
            self.health.report("OpenTelemetry server spans", exc)
            return None

    # -- the request path -----------------------------------------------------------------

    def begin(self, method: str, path: str, request: Any = None, *, own_thread: bool = True) -> RequestInfo | None:
        """Start timing a request of the calling thread; None when disabled or when profviz itself
        failed. ``own_thread`` False: the thread serves other requests meanwhile (an asyncio event
        loop, and the request is the calling task), so its samples are the task's
        (:mod:`profviz.collect.tasks`), its CPU time is estimated from them, and a deep profile
        follows its task (:mod:`profviz.collect.deep_async`)."""
        if not self.options.enabled:
            return None
        try:
            info = RequestInfo(method, path, request, own_thread)
            info.queue_start = self.queue_start(request)
            if not own_thread:
                self._loop_queue(info)
            if self.server_spans is not None:
                self._begin_span(info, request)
            sampler = self.sampler
            if sampler is not None:
                sampler.ensure_running()
                if own_thread:
                    info.thread_name = name = thread_name()
                    info.previous_slot = sampler.active.get(info.ident)
                    info.slot = sampler.begin(info.mono_start, info.cpu_start, info.ident, info.tid, name)
                else:
                    info.slot = sampler.begin_task(info, info.mono_start, self._stall_ns, self._loop_stalled)
            if not own_thread:
                info.thread_name = TASK_LANE_NAME
                if tasks.lanes_wanted:  # profviz's span processor stamps the spans the request's tasks start with its lane
                    task_lane.set(info.tid)
            if self._deep and self._wants_deep(request):
                self._start_deep(info, own_thread)
            serving = self._serving  # last: a request whose start failed is not waited for at SIGTERM
            serving[info.ident] = serving.get(info.ident, 0) + 1
            return info
        except Exception as exc:
            self.health.report("request start", exc)
            return None

    @staticmethod
    def _loop_queue(info: RequestInfo) -> None:
        """An ASGI request's wait for its loop before the app began it (:mod:`profviz.collect.loop_queue`),
        and the stamping of the tasks the loop makes from now on (before the sampler wraps its factory)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        info.loop_queue_ns = loop_queue.waited_ns(info.mono_start)
        loop_queue.stamp_new_tasks(loop)

    def _queue_header(self, request: Any) -> str | None:
        """The first of the ``queue_headers`` the request carries (its value), or None."""
        for name in self.options.queue_headers:
            value = self.header(request, name)
            if value is not None:
                return value
        return None

    def _begin_span(self, info: RequestInfo, request: Any) -> None:
        try:
            self.server_spans.begin(info, request)
        except Exception as exc:
            self.health.report("OpenTelemetry server span start", exc)

    def _end_span(self, info: RequestInfo) -> None:
        try:
            self.server_spans.finish(info)
        except Exception as exc:
            self.health.report("OpenTelemetry server span end", exc)

    def _wants_deep(self, request: Any) -> bool:
        if self.options.deep_fraction and random.random() < self.options.deep_fraction:
            return True
        if self._deep_secret is None:
            return False
        offered = self.header(request, DEEP_HEADER)
        if offered is None:
            query = self.query(request)
            if DEEP_PARAM + "=" not in query:
                return False
            from urllib.parse import parse_qs

            values = parse_qs(query).get(DEEP_PARAM)
            offered = values[0] if values else None
        return offered is not None and hmac.compare_digest(str(offered).encode(), self._deep_secret)

    def _start_deep(self, info: RequestInfo, own_thread: bool) -> None:
        if own_thread:
            from ..collect.deep import DeepProfiler as Deep
        else:  # the request is the calling task, on a loop thread others share
            from ..collect.deep_async import AsyncDeepProfiler as Deep

        try:
            profiler = Deep(self.options.deep_interval_s)
            profiler.begin()
            info.profiler = profiler
            info.deep = True
        except Exception as exc:
            self.health.report("deep profiler start", exc)

    def finish(self, info: RequestInfo, error: BaseException | None = None) -> None:
        """End a request (idempotent): its duration, CPU time and error; it goes to the writer thread."""
        if info.finished:
            return
        info.finished = True
        serving = self._serving
        left = serving.get(info.ident, 1) - 1
        if left > 0:
            serving[info.ident] = left
        else:
            serving.pop(info.ident, None)
        try:
            if info.profiler is not None:  # first: its last sample must not reach past the request's end
                info.deep_result = self._stop_deep(info)
            info.stop_clocks()
            if info.slot is not None:
                if info.cpu_start is None:
                    info.samples = samples = self.sampler.end_task(info.slot)
                    info.cpu_ns = sum(sample[3] for sample in samples if sample[2] == ON_CPU)
                else:
                    info.samples = self.sampler.end(info.slot, info.previous_slot)
            route_fn = self.options.route_fn
            if info.route is None and route_fn is not None:
                try:
                    route = route_fn(info.request)
                    if route is not None:
                        info.route = str(route)
                except Exception as exc:
                    self.health.report("route_fn", exc)
            info.request = None
            if error is not None:
                info.error = f"{type(error).__name__}: {error}"[:500]
            if info.server_span is not None:
                self._end_span(info)
            self.writer.submit(info)
        except Exception as exc:
            self.health.report("request finish", exc)
            if info.server_span is not None:  # the span ends (and leaves the thread's context) whatever failed
                self._end_span(info)
        if shutdown.pending_exit is not None:
            shutdown.request_ended(info.ident)

    def _loop_stalled(self, stall: LoopStall) -> None:
        """On the event loop, as it gets back from a stall: the writer stores it (:mod:`.batches`)."""
        self.writer.submit(stall)

    def _stop_deep(self, info: RequestInfo):
        profiler, info.profiler = info.profiler, None
        try:
            session = profiler.stop()
            if info.cpu_start is None:  # a task's: (pyinstrument session, its start)
                return (session, None, profiler.start_ns)
            return (session, profiler.cpu_ns_at_sample, profiler.start_cpu_ns)
        except Exception as exc:
            self.health.report("deep profiler stop", exc)
            return None

    # -- control --------------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything recorded so far, including the route aggregates; False on timeout."""
        if self.sampler is not None:
            self.writer.submit(FlushAggregates())
        deadline = time.monotonic() + timeout_s
        return self.writer.flush(timeout_s) and self.batches.flush_store(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Write everything, route aggregates included, and stop the writer thread (also done at interpreter exit)."""
        self.writer.close()

    def serving_on(self, ident: int) -> bool:
        """Whether thread ``ident`` is inside a request begun here."""
        return bool(self._serving.get(ident))

    def drain_for_exit(self, wait_for_requests: bool) -> None:
        """Before the process stops: let requests in flight on other threads finish (at most
        IN_FLIGHT_WAIT_S, when ``wait_for_requests``), then store everything queued and stop the
        writer (as at exit: what the store still refuses is reported lost). A request that
        finishes afterwards starts the writer again."""
        if wait_for_requests:
            me = threading.get_ident()
            wait_until(lambda: not any(n for ident, n in list(self._serving.items()) if ident != me), IN_FLIGHT_WAIT_S)
        self.writer.close()

    def _on_close(self) -> None:
        """On the writer thread as it stops: the last aggregates and held requests, sent on when the
        store is a collector's; the drops no message counted yet."""
        self.batches.flush_aggregates(force=True)
        if not self.batches.flush_store(STORE_FLUSH_AT_EXIT_S):
            unsent = self.batches.store_stats()
            logger.warning("profviz: %d requests were not sent to the collector before the writer stopped (%d dropped before, "
                           "as its buffer was full); last error: %s", unsent.get("requests_queued", 0),
                           unsent.get("requests_dropped", 0), unsent.get("last_error"))
        dropped = self.writer.dropped
        if dropped > self._drops_logged:
            self._drops_logged = dropped
            logger.warning("profviz: %d request records were dropped in all because the writer's queue was full "
                           "(queue_size=%d)", dropped, self.options.queue_size)

    def _dropped(self, new: int, total: int) -> None:
        if self.health.warn("queue full", f"dropped {new} request records ({total} in all): the writer's queue (queue_size="
                         f"{self.options.queue_size}) was full, because the store is slow or locked (see the other profviz "
                         "messages) or requests come faster than it writes; requests never wait for it. Fix the store, or "
                         "raise queue_size"):
            self._drops_logged = total

    @property
    def stats(self) -> dict:
        """Counters: requests queued/dropped/recorded, profiles kept by kind, internal errors by kind,
        profviz's own threads: the writer's batches and CPU time, the sampler's ticks and CPU time,
        and the event loops served (``loops``: lag, stalls, busy share; see :class:`~profviz.collect.tasks.LoopWatch`)."""
        sampler = self.sampler
        return {
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
                "interval_ms": round(sampler.interval_ns / 1e6, 3),
            },
            "loops": [] if sampler is None else [watch.health for watch in list(sampler.tasks.loops.values())],
            "store": self.batches.store_stats(),
        }
