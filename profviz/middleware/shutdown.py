"""Keep what was recorded when the process is told to stop: a SIGTERM handler that lets the
requests in flight finish, writes everything queued, then does what SIGTERM did before.

Installed once per process, from the main thread only (Python's rule for signal handlers),
chaining to the handler found there: a server's own (gunicorn's graceful stop) runs after the
drain, unchanged; with none (waitress, ``python app.py``), the default action follows, so the
process still ends by SIGTERM as it would have; an ignored SIGTERM stays ignored. When SIGTERM
interrupts a request on the main thread itself (``python app.py`` with a single-threaded server),
the exit waits for that request's end (at most IN_FLIGHT_WAIT_S), so its answer goes out whole;
a second SIGTERM meanwhile ends the process at once. Design notes: docs/middleware.md ("Shutdown").
"""

from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from typing import Any, Callable

IN_FLIGHT_WAIT_S = 5.0  # at most, for requests in flight to finish (only when SIGTERM would end the process)

_drains: "weakref.WeakSet[Any]" = weakref.WeakSet()
_previous: Any = None
_installed_pid: int | None = None
pending_exit: "_DeferredExit | None" = None


def drain_on_sigterm(recorder: Any) -> bool:
    """Have ``recorder`` drained (its ``drain_for_exit(wait_for_requests)``) on SIGTERM; False when
    the handler cannot be installed (not the main thread, or no SIGTERM on this platform)."""
    global _previous, _installed_pid
    _drains.add(recorder)
    if _installed_pid == os.getpid():
        return True
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return False
    try:
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        return False
    _previous, _installed_pid = previous, os.getpid()
    return True


def _on_sigterm(signum: int, frame: Any) -> None:
    global pending_exit
    previous = _previous
    ends_now = previous in (signal.SIG_DFL, None)
    me = threading.get_ident()
    if ends_now and pending_exit is None and any(recorder.serving_on(me) for recorder in list(_drains)):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        pending_exit = _DeferredExit(me)
        return
    _drain_all(wait_for_requests=ends_now)
    if callable(previous):
        previous(signum, frame)
    elif ends_now:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _drain_all(wait_for_requests: bool) -> None:
    for recorder in list(_drains):
        try:
            recorder.drain_for_exit(wait_for_requests=wait_for_requests)
        except Exception:
            pass  # whatever failed, SIGTERM must still do what it did


class _DeferredExit:
    """SIGTERM's default action, held until the interrupted thread's request ends, or IN_FLIGHT_WAIT_S."""

    def __init__(self, ident: int):
        self.ident = ident
        self._lock = threading.Lock()
        self._done = False
        timer = threading.Timer(IN_FLIGHT_WAIT_S, self.run)
        timer.daemon = True
        timer.start()

    def run(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        _drain_all(wait_for_requests=True)
        os.kill(os.getpid(), signal.SIGTERM)  # SIG_DFL since the handler ran: the process ends here


def request_ended(ident: int) -> None:
    """Called as a request of thread ``ident`` ends: runs a SIGTERM exit that waited for that thread."""
    deferred = pending_exit
    if deferred is not None and deferred.ident == ident and not any(r.serving_on(ident) for r in list(_drains)):
        deferred.run()


def wait_until(done: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``done()`` every 5 ms until it is true or ``timeout_s`` passed; its last answer."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True
