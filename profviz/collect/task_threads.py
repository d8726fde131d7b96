"""The worker thread a suspended request waits for (a FastAPI/Starlette ``def`` endpoint, anyio's
``to_thread.run_sync``, ``asyncio.to_thread``, ``run_in_executor``), so the task sampler can
show the call that thread runs, in the thread's own state, as the request's time.

A worker is matched by identity, not by guess: anyio's ``WorkerThread.run`` holds the very
asyncio future its caller awaits; a ``concurrent.futures`` worker (``_WorkItem.run``) holds the
future that ``run_in_executor`` chained to the one the caller awaits.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

_ANYIO_BACKEND = os.path.join("anyio", "_backends", "_asyncio.py")
_FUTURES_THREAD = os.path.join("concurrent", "futures", "thread.py")


class PoolWorkers:
    """The threads running thread-pool calls at one tick (``frames``: ``sys._current_frames()``),
    by the future their caller awaits; scanned once, on the first :meth:`find`."""

    def __init__(self, frames: dict):
        self.frames = frames
        self._by_future: dict[int, tuple] | None = None

    def find(self, waiter) -> tuple[int, int | None, list] | None:
        """(thread ident, native id or None, its frames above the pool's own, root first) of the
        worker running the call ``waiter`` (an asyncio future) stands for; None when none does."""
        if self._by_future is None:
            self._by_future = self._scan()
        if not self._by_future:
            return None
        hit = self._by_future.get(id(waiter))
        if hit is None:
            source = _chained_source(waiter)
            hit = self._by_future.get(id(source)) if source is not None else None
        return None if hit is None else hit[:3]

    def _scan(self) -> dict[int, tuple]:
        found = {}
        for ident, leaf in self.frames.items():
            above = []
            frame = leaf
            while frame is not None:
                if frame.f_code.co_name == "run":
                    future = _worker_future(frame)
                    if future is not None:
                        above.reverse()
                        thread = threading._active.get(ident)  # noqa: SLF001 (the native id of another thread)
                        found[id(future)] = (ident, getattr(thread, "native_id", None), above, future)
                        break
                above.append(frame)
                frame = frame.f_back
        return found


def _worker_future(frame):
    """The future a pool worker's ``run`` frame completes, or None for any other ``run``."""
    path = frame.f_code.co_filename
    if path.endswith(_ANYIO_BACKEND):
        return frame.f_locals.get("future")
    if path.endswith(_FUTURES_THREAD):
        return getattr(frame.f_locals.get("self"), "future", None)
    return None


def _chained_source(waiter):
    """The concurrent.futures future that ``run_in_executor`` chained to ``waiter`` (held in its
    ``_call_check_cancel`` callback's closure), or None."""
    for callback in list(getattr(waiter, "_callbacks", None) or ()):
        function = callback[0] if isinstance(callback, tuple) else callback
        if getattr(function, "__name__", "") != "_call_check_cancel":
            continue
        for cell in getattr(function, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if isinstance(value, concurrent.futures.Future):
                return value
    return None
