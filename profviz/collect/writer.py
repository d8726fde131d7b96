"""A bounded queue drained by one background thread: how request records leave the request path.

:meth:`BackgroundWriter.submit` never blocks and takes no lock on the common path (a deque
append); when ``maxsize`` items are waiting the item is dropped and counted. The writer thread
wakes every ``poll_s`` (default 50 ms), early when the queue is half full or on :meth:`flush` /
:meth:`close`, and takes what is queued as one batch (up to ``batch_size``; a longer backlog is
worked off without waiting). Waking on a timer rather than per item keeps the thread's GIL
handoffs (each SQLite statement and commit releases the GIL) to a few per ``poll_s`` however
busy the server is. Each batch goes to ``handle_batch``
(which does the SQLite work); an exception there is reported to ``on_error`` and the batch is
lost, but the thread lives on. ``idle`` runs whenever the queue has been empty for ``idle_s``
(periodic work such as flushing aggregates). Items dropped because the queue was full are
reported to ``on_drop(new, total)`` from the writer thread (the request path only counts them).
:meth:`close` (also registered with ``atexit``) drains everything still queued and runs
``on_close`` on the writer thread, so nothing buffered is lost at normal interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections import deque
import threading
import time
from typing import Any, Callable

from . import forks

_STOP = object()


class BackgroundWriter:
    def __init__(
        self,
        handle_batch: Callable[[list[Any]], None],
        *,
        maxsize: int = 10_000,
        batch_size: int = 500,
        idle: Callable[[], None] | None = None,
        idle_s: float = 1.0,
        on_error: Callable[[str, BaseException], None] | None = None,
        name: str = "profviz-writer",
        close_timeout_s: float = 30.0,
        poll_s: float = 0.05,
        on_close: Callable[[], None] | None = None,
        on_drop: Callable[[int, int], None] | None = None,
    ):
        if maxsize < 1:
            raise ValueError(f"writer queue size must be >= 1, got {maxsize}")
        self.handle_batch = handle_batch
        self.maxsize = maxsize
        self.batch_size = batch_size
        self.idle = idle
        self.idle_s = idle_s
        self.on_error = on_error
        self.name = name
        self.close_timeout_s = close_timeout_s
        self.poll_s = poll_s
        self.on_close = on_close
        self.on_drop = on_drop
        self.handled = 0
        self.dropped = 0
        self._dropped_reported = 0
        self.written_batches = 0
        self.cpu_ns = 0  # the writer thread's CPU time so far (batches, idle work, waking up)
        self.failed_batches = 0
        self._queue: deque = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._atexit_registered = False
        self._live = False  # the writer thread is running (cleared by the thread as it ends)
        self._forks_seen = forks.count

    def submit(self, item: Any) -> bool:
        """Queue one item for the writer thread; False (and counted as dropped) when the queue is full."""
        if not self._live or self._forks_seen != forks.count:
            if sys.is_finalizing():  # no thread can start any more (e.g. a response collected at exit)
                with self._lock:
                    self.dropped += 1
                return False
            self._start()
        items = self._queue
        if len(items) >= self.maxsize:
            with self._lock:
                self.dropped += 1
            return False
        items.append(item)
        if len(items) * 2 == self.maxsize:
            self._wake.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread and queue are not ours
                self._pid = os.getpid()
                self._queue = deque()
                self._wake = threading.Event()
                self._thread = None
            if self._closed:
                self._closed = False
            self._forks_seen = forks.count
            if self._thread is None or not self._thread.is_alive():
                self._live = True
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            if not self._atexit_registered:
                atexit.register(self.close)
                self._atexit_registered = True

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._live = False

    def _loop(self) -> None:
        last_idle = time.monotonic()
        items = self._queue
        cpu_base = time.thread_time_ns() - self.cpu_ns
        draining = False  # woken early (flush, close, a half-full queue): empty the queue before waiting again
        while True:
            if not draining and len(items) < self.batch_size:  # one batch per poll: few, large transactions
                draining = self._wake.wait(self.poll_s)
                self._wake.clear()
            batch, markers, stop = [], [], False
            take = items.popleft
            while items and len(batch) < self.batch_size:
                item = take()
                if item.__class__ is _Marker:
                    markers.append(item)
                elif item is _STOP:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                self._handle(batch)
                self.handled += len(batch)
                batch.clear()  # not kept while waiting for the next one (requests' samples, pyinstrument sessions)
            if not items:
                draining = False
            if self.dropped != self._dropped_reported and self.on_drop is not None:
                total = self.dropped
                try:
                    self.on_drop(total - self._dropped_reported, total)
                except Exception as exc:
                    self._report("writer-drop", exc)
                self._dropped_reported = total
            now = time.monotonic()
            if self.idle is not None and (stop or now - last_idle >= self.idle_s):
                last_idle = now
                try:
                    self.idle()
                except Exception as exc:
                    self._report("writer-idle", exc)
            if stop and self.on_close is not None:
                try:
                    self.on_close()
                except Exception as exc:
                    self._report("writer-close", exc)
            self.cpu_ns = time.thread_time_ns() - cpu_base
            for marker in markers:
                marker.event.set()
            if stop and not items:  # what a request queued while the writer stopped is written first
                return
            if stop:
                draining = True

    def _handle(self, batch: list) -> None:
        try:
            self.handle_batch(batch)
            self.written_batches += 1
        except Exception as exc:
            self.failed_batches += 1
            self._report("writer", exc)

    def _report(self, where: str, exc: BaseException) -> None:
        if self.on_error is not None:
            try:
                self.on_error(where, exc)
            except Exception:
                pass

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything submitted so far has been handled; False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            return not self._queue
        done = threading.Event()
        self._queue.append(_Marker(done))
        self._wake.set()
        return done.wait(timeout_s)

    def close(self) -> None:
        """Drain the queue and stop the thread (waits at most ``close_timeout_s``). Safe to call twice;
        items queued after an earlier close (a request that finished as the writer stopped) are written."""
        thread = self._thread
        if self._pid == os.getpid() and not sys.is_finalizing() and any(item is not _STOP for item in list(self._queue)) \
                and (thread is None or not thread.is_alive()):
            self._start()
            thread = self._thread
        if self._closed or thread is None or not thread.is_alive() or self._pid != os.getpid():
            self._closed = True
            return
        self._closed = True
        self._queue.append(_STOP)
        self._wake.set()
        thread.join(self.close_timeout_s)
        self._thread = None


class _Marker:
    """A flush marker: handled by setting its event once every earlier item is written."""

    def __init__(self, event: threading.Event):
        self.event = event
