"""Serving a WSGI app with waitress from a background thread, and stopping it cleanly."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import waitress


@contextlib.contextmanager
def waitress_in_thread(app: Callable, *, threads: int = 8, host: str = "127.0.0.1", port: int = 0) -> Iterator:
    """Serve ``app`` with waitress (``threads`` workers) from a daemon thread; yields the server
    (``server.effective_port``). On exit the workers stop first (a finishing task pulls the
    server's trigger), then the listening loop, whose ``select()`` on sockets closed under it
    at that moment is expected and not reported."""
    server = waitress.create_server(app, host=host, port=port, threads=threads)
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):
            if not closing.is_set():
                raise

    thread = threading.Thread(target=run, name="waitress-loop", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        closing.set()
        server.task_dispatcher.shutdown()
        server.close()
        thread.join(timeout=5)
