"""Running the app on a real socket: a threaded werkzeug server that can stop cleanly."""

from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ..errors import ProfvizError


class _QuietHandler(WSGIRequestHandler):
    """Logs errors but not every request."""

    def log_request(self, code="-", size="-") -> None:
        return None


class RunningServer:
    """``app`` listening on ``host:port`` (port 0 picks a free one). Use :meth:`start` or :meth:`serve_forever`."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0):
        try:
            self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        except OSError as exc:
            hint = "pick another with --port, or --port 0 for a free one" if exc.errno in (98, 48, 10048) else "check --host"
            raise ProfvizError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): {hint}") from None
        self.host = host
        self.port = int(self._server.server_port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> "RunningServer":
        """Serve from a daemon thread and return at once."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="profviz-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> "RunningServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
