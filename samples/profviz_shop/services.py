"""Real loopback HTTP helper services the shop app talks to.

Each service is a ``ThreadingHTTPServer`` bound to ``127.0.0.1`` on an
ephemeral port, served from a daemon thread.  ``start()`` returns the base
URL, ``stop()`` shuts the server down; both work as a context manager.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK_HOST = "127.0.0.1"
MAX_REQUEST_BODY_BYTES = 1_000_000


class _LoopbackService:
    """Lifecycle shared by the helper services; subclasses implement ``_handle``."""

    def __init__(self, delay_s: float, poll_interval_s: float = 0.05) -> None:
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be > 0")
        self.delay_s = delay_s
        self.poll_interval_s = poll_interval_s  # how often the idle server loop wakes (and how long stop() may wait)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None

    def start(self) -> str:
        """Start serving (idempotent) and return the base URL, e.g. ``http://127.0.0.1:41234``."""
        if self._server is not None:
            return self.url
        server = ThreadingHTTPServer((LOOPBACK_HOST, 0), self._make_handler_class())
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": self.poll_interval_s},
            name=f"{type(self).__name__}-server",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        self.url = f"http://{LOOPBACK_HOST}:{server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _make_handler_class(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out as two writes: with Nagle's algorithm the body waits for the
            # client's delayed ACK of the headers (40 ms) on a kept-alive connection
            disable_nagle_algorithm = True

            def do_GET(self):
                service._handle(self, "GET")

            def do_POST(self):
                service._handle(self, "POST")

            def log_message(self, format, *args):
                pass

        return Handler

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    @staticmethod
    def _read_body(request: BaseHTTPRequestHandler) -> bytes:
        length = int(request.headers.get("Content-Length") or 0)
        return request.rfile.read(min(length, MAX_REQUEST_BODY_BYTES))

    @staticmethod
    def _respond(request: BaseHTTPRequestHandler, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if body:
            request.wfile.write(body)


class SlowLogSink(_LoopbackService):
    """A remote log collector: ``POST /log`` stores the body's lines, then answers ``204`` after ``delay_s``.

    ``lines()`` returns the most recent ``max_lines`` received lines in arrival
    order; ``received_count`` counts every line ever received.
    """

    def __init__(self, delay_s: float = 0.05, *, max_lines: int = 10_000, poll_interval_s: float = 0.05) -> None:
        super().__init__(delay_s, poll_interval_s)
        self._lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self.received_count = 0

    def lines(self) -> list[str]:
        """Return a snapshot of the retained log lines."""
        with self._lock:
            return list(self._lines)

    def clear(self) -> None:
        """Forget retained lines and reset ``received_count``."""
        with self._lock:
            self._lines.clear()
            self.received_count = 0

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        if method != "POST" or request.path != "/log":
            self._respond(request, 404, b'{"error": "not found"}')
            return
        lines = self._read_body(request).decode("utf-8", "replace").splitlines()
        time.sleep(self.delay_s)
        with self._lock:
            self._lines.extend(lines)
            self.received_count += len(lines)
        self._respond(request, 204)


class ExternalService(_LoopbackService):
    """A pricing/enrichment API: ``GET /items/<id>`` answers JSON after ``delay_s``.

    The answer is deterministic per id: ``{"item_id", "price_cents",
    "currency", "in_stock"}``.  ``request_count`` counts answered item
    lookups and ``requested_ids()`` lists them in arrival order.
    """

    def __init__(self, delay_s: float = 0.01, *, max_ids: int = 10_000, poll_interval_s: float = 0.05) -> None:
        super().__init__(delay_s, poll_interval_s)
        self._requested_ids: collections.deque[int] = collections.deque(maxlen=max_ids)
        self.request_count = 0

    def requested_ids(self) -> list[int]:
        """Return a snapshot of the most recent requested item ids."""
        with self._lock:
            return list(self._requested_ids)

    def clear(self) -> None:
        """Forget requested ids and reset ``request_count``."""
        with self._lock:
            self._requested_ids.clear()
            self.request_count = 0

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        prefix, _, raw_id = request.path.partition("/items/")
        if method != "GET" or prefix or not raw_id.isdigit():
            self._respond(request, 404, b'{"error": "not found"}')
            return
        item_id = int(raw_id)
        time.sleep(self.delay_s)
        with self._lock:
            self._requested_ids.append(item_id)
            self.request_count += 1
        payload = {
            "item_id": item_id,
            "price_cents": 100 + (item_id * 7919) % 9_900,
            "currency": "EUR",
            "in_stock": item_id % 5 != 0,
        }
        self._respond(request, 200, json.dumps(payload).encode())
