"""Bare WSGI apps and a real waitress server on 127.0.0.1 for the middleware tests."""

from __future__ import annotations

import contextlib
import random
import sys
import time

from profviz_shop.serving import waitress_in_thread


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class StreamingBody:
    """A response iterable that yields ``chunks`` and records that close() was called."""

    def __init__(self, chunks, fail_at: int | None = None):
        self.chunks = list(chunks)
        self.fail_at = fail_at
        self.closed = False

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError("body failed midway")
            yield chunk

    def close(self):
        self.closed = True


class AppError(Exception):
    """Raised by the demo app; tests check it propagates unchanged."""


def make_app(bodies: list | None = None):
    """A plain WSGI app with one behaviour per path; streaming bodies are appended to ``bodies``."""

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/raise":
            raise AppError("raised before start_response")
        if path.startswith("/stream"):
            body = StreamingBody([b"chunk-%d;" % i for i in range(5)], fail_at=3 if path.endswith("/fail") else None)
            if bodies is not None:
                bodies.append(body)
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-Kind", "stream")])
            return body
        if path == "/write":
            write = start_response("201 Created", [("Content-Type", "text/plain")])
            write(b"written-")
            return [b"returned"]
        if path == "/exc-info":
            try:
                raise AppError("handled")
            except AppError:
                start_response("200 OK", [("Content-Type", "text/plain")])
                start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Retry-After", "1")], sys.exc_info())
            return [b"unavailable"]
        if path.startswith("/sleep/"):
            time.sleep(float(path.rsplit("/", 1)[1]) / 1000)
        if path.startswith("/busy/"):
            busy(float(path.rsplit("/", 1)[1]) / 1000)
        if path.startswith("/random"):
            time.sleep(random.uniform(0.02, 0.2))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok " + path.encode()]

    return app


@contextlib.contextmanager
def serve(app, threads: int = 8):
    """Serve ``app`` with waitress on 127.0.0.1 (ephemeral port) in a thread; yields the base URL."""
    with waitress_in_thread(app, threads=threads) as server:
        yield f"http://127.0.0.1:{server.effective_port}"
