"""The writer thread's side of the engine: finished requests to store batches.

For each finished request: its status and route, the tail decision, the profile to keep (the
sampler's samples over its shared stack table, or a pyinstrument session), its row; then one
:meth:`Store.write_batch` a wake-up. When a batch's profiles cannot be saved, its requests are
written without them. When the store fails (locked past its timeout, a full disk, a store that
cannot be opened), the requests are held in memory (at most ``queue_size`` of them, the oldest
dropped beyond that) and written once it works again, retried with backoff; a store file deleted
or replaced under the writer is created again at its path. Every failure, drop and recovery is
counted and logged (rate limited). Route aggregates are stored when their window ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from typing import Any, Iterator

from ..collect.sampler import StackSampler
from ..collect.stack_table import samples_to_profile
from ..collect.tasks import LoopStall
from ..model import Profile, RequestBatch, SharedStackProfile, StackNodes
from ..model.requests import NO_QUEUE
from ..routes import collapse_path
from ..model.origin import bounded_origin
from ..store import Store, open_store
from .capture import RouteAggregate, TailCapture
from .health import Health
from .options import Options
from .queue_time import queue_ns
from .request import RequestInfo, id_prefix, refresh_wall_offset, status_code
from .stalls import StallBook

MAX_STATUS_LINES = 1000
MAX_PATH_ROUTES = 20_000
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 30.0


class FlushAggregates:
    """A queue item: store every route aggregate now."""


class BatchWriter:
    """Turns the writer thread's batches of finished requests into stored rows and profiles."""

    def __init__(self, options: Options, sampler: StackSampler | None, health: Health, counts: dict[str, int]):
        self.options = options
        self.sampler = sampler
        self.health = health
        self.counts = counts
        self.capture = TailCapture(options, counts)
        self.aggregate_interval_ns = int(options.aggregate_interval_s * 1e9)
        self._store: Store | None = options.store if isinstance(options.store, Store) else None
        self._tuned_threads: set[int] = set()
        self._status_codes: dict[Any, int] = {}
        self._path_routes: dict[str, str] = {}
        self._labels_tail = self._constant_labels_tail()
        self._nodes_source: str | None = None  # the sampler's stack nodes stored so far, and under which source
        self._nodes_stored = 0
        self._held: deque[RequestBatch] = deque()  # requests whose write failed, oldest first, to write again
        self._held_rows = 0
        self._failing_since: float | None = None
        self._retry_at = 0.0
        self._backoff_s = FIRST_RETRY_S
        self.stalls = StallBook(sampler.table, options.sample_hz, options.labels, self.route_name) if sampler is not None else None
        for key in ("store_failures", "held", "dropped_after_failure", "store_recovered", "store_reopened", "profiles_loop_stall"):
            counts.setdefault(key, 0)

    def store(self) -> Store:
        """The store, opened on first use (again when its file was deleted or replaced); the
        calling thread's commits relaxed (see :meth:`Store.relax_durability`)."""
        if self._store is not None and not isinstance(self.options.store, Store) and self._store.moved_away():
            location = getattr(self._store, "location", self.options.store)
            self._store.close()
            self._store = None
            self._tuned_threads.clear()
            self._nodes_source, self._nodes_stored = None, 0  # the new file has none of the stack nodes
            self.counts["store_reopened"] += 1
            self.health.warn("store moved", f"store {location} was deleted or replaced while recording: recording goes on in "
                             "a new store created at that path (what was written before is in the old file, if anyone kept it)")
        if self._store is None:
            self._store = open_store(self.options.store)
        if threading.get_ident() not in self._tuned_threads:
            self._store.relax_durability()
            self._tuned_threads.add(threading.get_ident())
        return self._store

    def flush_store(self, timeout_s: float) -> bool:
        """Wait until what was written is stored (a collector's store sends it on); False on timeout."""
        return True if self._store is None else self._store.flush(timeout_s)

    def store_stats(self) -> dict:
        """The store's counters when it sends batches to a collector (sent, queued, dropped); else empty."""
        return {} if self._store is None else self._store.stats()

    def handle(self, items: list) -> None:
        """One writer wake-up: every request's row, and the profiles kept, in one batch."""
        refresh_wall_offset()  # once a batch: the offset requests beginning from now on take
        prefix = id_prefix()
        batch = RequestBatch()
        flush_all = False
        add = self._add
        for item in items:
            if isinstance(item, FlushAggregates):
                flush_all = True
                continue
            if isinstance(item, LoopStall):
                if self.stalls is not None:
                    self.stalls.add(item)
                continue
            try:
                add(item, batch, prefix)
            except Exception as exc:
                self.health.report("request record", exc)
        for profile in self.due_aggregates(force=flush_all):
            batch.keep(profile)
        for profile in self._due_stalls(force=flush_all):
            batch.keep(profile)
        if flush_all:
            self._retry_at = 0.0  # a flush tries the held requests now
        self.write(batch)

    def flush_aggregates(self, force: bool = False) -> None:
        """Store the route aggregates that are due (all when ``force``, at close: then the held
        requests are tried once more, and those still failing are reported lost)."""
        batch = RequestBatch()
        for profile in self.due_aggregates(force):
            batch.keep(profile)
        for profile in self._due_stalls(force):
            batch.keep(profile)
        if force:
            self._retry_at = 0.0
        self.write(batch)
        if force and self._held:
            lost, self._held, self._held_rows = self._held_rows, deque(), 0
            self.counts["dropped_after_failure"] += lost
            self.counts["held"] = 0
            self.health.warn("held lost", f"{lost} request records were never stored: the store still failed when recording "
                             "stopped (see the message before)")

    def write(self, batch: RequestBatch) -> None:
        """Store the batch, after any requests held from a failed write; when the store fails,
        hold its requests for a later try (see the module docstring)."""
        if not batch.values and not batch.profiles and not self._held:
            return
        if self._held and time.monotonic() < self._retry_at:
            self._hold(batch, None)
            return
        try:
            store = self.store()
            while self._held:
                self._write_one(store, self._held[0])
                done = self._held.popleft()
                self._held_rows -= len(done)
                self.counts["held"] = self._held_rows
                if not self._held:
                    self._recovered(store)
            if batch.values or batch.profiles:
                self._write_one(store, batch)
        except Exception as exc:
            self._hold(batch, exc)

    def _hold(self, batch: RequestBatch, exc: BaseException | None) -> None:
        """Keep the batch's requests (not its profiles) for a later write; drop the oldest held beyond ``queue_size``."""
        now = time.monotonic()
        if exc is not None:
            self.counts["store_failures"] += 1
            if self._failing_since is None:
                self._failing_since, self._backoff_s = now, FIRST_RETRY_S
            else:
                self._backoff_s = min(MAX_RETRY_S, self._backoff_s * 2)
            self._retry_at = now + self._backoff_s
            self.health.warn("store failing", f"could not write {len(batch)} request records: {exc}; holding them in memory "
                             f"({self._held_rows + len(batch)} now, at most {self.options.queue_size}) to write again in {self._backoff_s:g} s")
        if batch.profiles:
            self.health.warn("profiles lost", f"{len(batch.profiles)} profiles not stored while the store fails (their requests are kept)")
        held = batch.without_profiles() if batch.profiles else batch
        if not held.values:
            return
        self._held.append(held)
        self._held_rows += len(held)
        self.counts["write_failures"] += len(held)
        dropped = 0
        while self._held_rows > self.options.queue_size and len(self._held) > 1:
            oldest = self._held.popleft()
            self._held_rows -= len(oldest)
            dropped += len(oldest)
        self.counts["held"] = self._held_rows
        if dropped:
            self.counts["dropped_after_failure"] += dropped
            self.health.warn("held dropped", f"dropped {dropped} request records held since the store failed "
                             f"({self.counts['dropped_after_failure']} in all): it has failed for {now - (self._failing_since or now):.0f} s "
                             f"and at most queue_size={self.options.queue_size} are held; fix the store (see the message before)")

    def _recovered(self, store: Store) -> None:
        since = self._failing_since
        self._failing_since, self._retry_at, self._backoff_s = None, 0.0, FIRST_RETRY_S
        self.counts["store_recovered"] += 1
        if since is not None:
            location = getattr(store, "location", self.options.store)
            self.health.warn("store recovered", f"store {location} works again after {time.monotonic() - since:.1f} s: the "
                             "request records held meanwhile are stored")

    def _write_one(self, store: Store, batch: RequestBatch) -> None:
        """Store the batch (with the sampler's stack nodes its profiles need); when its profiles
        cannot be saved, its requests alone. Raises when the requests cannot be written."""
        nodes_end = None
        if any(type(profile) is SharedStackProfile for profile, _ in batch.profiles):
            batch.stack_nodes, nodes_end = self._new_stack_nodes()
        try:
            with _no_spans():
                store.write_batch(batch)
        except Exception as exc:
            if not batch.profiles:
                raise
            self.health.report("saving profiles", exc)
            with _no_spans():
                store.write_batch(batch.without_profiles())
        else:
            for profile, _ in batch.profiles:
                self.counts[_counter(profile)] += 1
            if nodes_end is not None:
                self._nodes_source, self._nodes_stored = batch.stack_nodes.source, nodes_end
        self.counts["recorded"] += len(batch)

    def _new_stack_nodes(self) -> tuple[StackNodes, int]:
        """The sampler's stack nodes not stored yet by this writer, and the table's length. The
        source is this process's request id prefix, new in a forked child: the child's table grows
        apart from its parent's, so its nodes are all stored again under its own source."""
        table = self.sampler.table
        source, stored = id_prefix(), self._nodes_stored
        if source != self._nodes_source:
            stored = 0
        end = len(table)
        return StackNodes(source, table.nodes(stored, end)), end

    def _add(self, info: RequestInfo, batch: RequestBatch, prefix: str) -> None:
        """Route, status, tail decision and profile of one finished request, added to ``batch``
        (``prefix`` makes its id, as :class:`RequestInfo` does)."""
        status = self._status_codes.get(info.status_line)
        if status is None:
            status = status_code(info.status_line)
            if status is not None and len(self._status_codes) < MAX_STATUS_LINES:
                self._status_codes[info.status_line] = status
        if status is None:
            status = 500 if info.error is not None else 0
        if not info.method.isupper():
            info.method = str(info.method).upper()
        route = info.route
        if route is None:
            route = self.route_name(info)
        start_ns = info.mono_start + info.wall_offset_ns
        capture = None
        if self.sampler is not None:
            capture = self.capture.observe((route, info.method), info.duration_ns, start_ns, info.samples)
        keep_deep, keep_sampled = info.deep_result is not None, capture is not None
        full_labels = info._labels or self._labels_tail is None
        labels = self._labels(info) if full_labels or keep_deep or keep_sampled else None
        labels_json = json.dumps(labels) if full_labels else f'{{"request_id": "{prefix}-{info.seq:x}' + self._labels_tail
        queued = queue_ns(info.queue_start, start_ns) if info.queue_start is not None else None
        if queued is None:
            queued = info.loop_queue_ns
        index = batch.add(
            info.pid, info.tid, route, info.method, info.path, status, start_ns, info.duration_ns,
            info.cpu_ns, info.response_bytes, info.error or "", labels_json, NO_QUEUE if queued is None else queued,
        )
        if keep_deep:
            profile = self._deep_profile(info, route, status, labels)
        elif keep_sampled:
            profile = self._sampled_profile(info, route, status, labels, capture)
        else:
            return
        if profile is not None:
            batch.keep(profile, index)

    def route_name(self, info: RequestInfo) -> str:
        """The request's route: as the adapter named it, else its path with ids collapsed."""
        route = info.route
        if route is None:
            route = self._path_routes.get(info.path)
            if route is None:
                if len(self._path_routes) >= MAX_PATH_ROUTES:
                    self._path_routes.clear()
                route = self._path_routes[info.path] = collapse_path(info.path)
        return route

    def _due_stalls(self, force: bool) -> list[Profile]:
        if self.stalls is None or not self.stalls.pending:
            return []
        try:
            return self.stalls.due(force)
        except Exception as exc:
            self.health.report("loop stall record", exc)
            return []

    def _labels(self, info: RequestInfo) -> dict:
        """A request's labels: its id, the middleware's labels, the app's labels, the capacity."""
        labels = {"request_id": info.id, **self.options.labels}
        if info._labels:
            labels = bounded_origin({**labels, **json_safe_labels(info._labels)})  # an app's own version or host: text too
        if self.options.worker_threads:
            labels["capacity"] = self.options.worker_threads
        return labels

    def _constant_labels_tail(self) -> str | None:
        """``json.dumps(self._labels(info))`` after the request id, for requests without app labels
        (the id is hex and a dash: nothing to escape); None when that shortcut does not apply."""
        if "request_id" in self.options.labels:
            return None
        constant = dict(self.options.labels)
        if self.options.worker_threads:
            constant["capacity"] = self.options.worker_threads
        try:
            encoded = json.dumps(constant)
        except (TypeError, ValueError):
            return None
        return '"}' if not constant else '", ' + encoded[1:]

    def _request_meta(self, info: RequestInfo, route: str, status: int, labels: dict, capture: str, collector: str,
                      rate_hz: float) -> dict:
        return {
            "kind": "request",
            "pid": info.pid,
            "cmdline": f"{info.method} {info.path}",
            "start_ns": info.start_ns,
            "duration_ns": info.duration_ns,
            "rate_hz": rate_hz,
            "labels": {
                **labels, "route": route, "method": info.method, "path": info.path, "status": status,
                "capture": capture, "collector": collector, "duration_ms": round(info.duration_ns / 1e6, 3),
                "cpu_ms": round(info.cpu_ns / 1e6, 3),
            },
        }

    def _sampled_profile(self, info: RequestInfo, route: str, status: int, labels: dict, capture: str) -> SharedStackProfile | None:
        """The request's samples over the sampler's stack table (no Profile is built until someone loads it)."""
        try:
            meta = self._request_meta(info, route, status, labels, capture, "sampler", self.options.sample_hz)
            samples = info.samples
            return SharedStackProfile(
                meta, id_prefix(), (info.pid, info.tid, info.thread_name), [sample[0] for sample in samples],
                [sample[1] for sample in samples], [sample[3] for sample in samples], [sample[2] for sample in samples],
                [sample[4] for sample in samples],
            )
        except Exception as exc:
            self.health.report("saving a request profile", exc)
            return None

    def _deep_profile(self, info: RequestInfo, route: str, status: int, labels: dict) -> Profile | None:
        from ..collect.deep import session_to_profile

        try:
            session, cpu_at_sample, start_cpu = info.deep_result
            meta = self._request_meta(info, route, status, labels, "deep", "pyinstrument", round(1.0 / self.options.deep_interval_s, 3))
            if info.cpu_start is None:  # a task's (pyinstrument's async mode); start_cpu is its start time
                from ..collect.deep_async import async_session_to_profile

                return async_session_to_profile(session, start_cpu, pid=info.pid, tid=info.tid, thread_name=info.thread_name, meta=meta)
            return session_to_profile(
                session, cpu_at_sample, start_cpu, pid=info.pid, tid=info.tid, thread_name=info.thread_name, meta=meta,
            )
        except Exception as exc:
            self.health.report("saving a deep profile", exc)
            return None

    def due_aggregates(self, force: bool = False) -> list[Profile]:
        """Route aggregates whose window is over (all when ``force``) as profiles, removed from memory."""
        profiles = []
        for key, aggregate in self.capture.due_aggregates(time.time_ns(), self.aggregate_interval_ns, force):
            try:
                profiles.append(self._aggregate_profile(key, aggregate))
            except Exception as exc:
                self.health.report("saving a route aggregate", exc)
        return profiles

    def _aggregate_profile(self, key: tuple[str, str], aggregate: RouteAggregate) -> Profile:
        route, method = key
        pid = os.getpid()
        meta = {
            "kind": "route-aggregate",
            "pid": pid,
            "cmdline": f"{method} {route}",
            "start_ns": aggregate.start_ns,
            "duration_ns": max(0, aggregate.end_ns - aggregate.start_ns),
            "rate_hz": self.options.sample_hz,
            "labels": {
                **self.options.labels, "route": route, "method": method, "requests": aggregate.requests,
                "samples": aggregate.samples, "collector": "sampler",
            },
            "notes": [
                f"sums {aggregate.samples} samples of {aggregate.requests} requests of {method} {route} over all threads;"
                " each sample here is one (stack, state) with its summed weight"
            ],
        }
        start_ns = aggregate.start_ns
        samples = [(start_ns, stack_id, state, weight, reason)
                   for (stack_id, state, reason), weight in sorted(aggregate.weights.items(), key=_aggregate_order)]
        return samples_to_profile(self.sampler.table, samples, pid=pid, tid=0, thread_name=f"{method} {route}", meta=meta)


def _aggregate_order(item: tuple) -> tuple:
    (stack_id, state, reason), _ = item
    return stack_id, state, reason or ""


def json_safe_labels(labels: Any) -> dict:
    """An app's request labels as a dict that JSON can store: keys as text, values that JSON
    cannot encode as their ``str()``; something that is not a mapping is kept as one text label."""
    try:
        items = dict(labels)
    except (TypeError, ValueError):
        return {"labels": str(labels)[:500]}
    return json.loads(json.dumps({str(key): value for key, value in items.items()}, default=str))


def _counter(profile: Profile | SharedStackProfile) -> str:
    """The stats counter a stored profile adds to."""
    if profile.meta.get("kind") == "route-aggregate":
        return "profiles_aggregate"
    if profile.meta.get("kind") == "loop_stall":
        return "profiles_loop_stall"
    return "profiles_" + profile.meta["labels"]["capture"]


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
