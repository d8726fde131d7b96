"""A Flask app under profviz's middleware and OpenTelemetry, serving one slow request, then exiting.

``python otel_flask_app.py STORE`` runs ``GET /report`` once on a real 127.0.0.1 server. The
request spends its time in three places, each ~150 ms or more:

* a slow SQLite query (recursive CTE) through the OpenTelemetry sqlite3 instrumentation: a
  client span, called from ``run_slow_query``;
* an HTTP call with ``requests`` to a slow server on 127.0.0.1: a client span, called from
  ``call_inventory``;
* a synchronous ``logging`` call whose handler blocks on a socket to a slow log sink: no span.

The middleware runs with ``otel="auto"``: the request's server span continues the caller's trace
(its ``traceparent`` header) and parents the query and HTTP spans.

Prints one JSON line: the request's route, the thread's native id and the processor's counters.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import sqlite3
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flask import Flask

from profviz.otel import setup_otel
from profviz.wsgi import ProfilerMiddleware
from werkzeug.serving import make_server

SLOW_S = 0.15
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # the caller's trace, continued by the server span


class SlowHTTPHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(SLOW_S)
        body = b'{"stock": 3}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class SlowSinkHandler(socketserver.StreamRequestHandler):
    """Reads one log line, waits, acknowledges."""

    def handle(self):
        while self.rfile.readline():
            time.sleep(SLOW_S)
            self.wfile.write(b"ok\n")


class BlockingSocketLogHandler(logging.Handler):
    """Sends each record to the sink and waits for its acknowledgement (synchronous, no span)."""

    def __init__(self, address):
        super().__init__()
        self.sock = socket.create_connection(address)
        self.reader = self.sock.makefile("rb")

    def emit(self, record):
        self.sock.sendall(self.format(record).encode() + b"\n")
        self.reader.readline()


def run_slow_query(db_path: str) -> int:
    conn = sqlite3.connect(db_path)
    cursor = conn.cursor()
    cursor.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1500000) SELECT sum(x % 7) FROM c"
    )
    (total,) = cursor.fetchone()
    conn.close()
    return total


def call_inventory(url: str) -> dict:
    import requests

    return requests.get(url, timeout=10).json()


def log_audit(logger: logging.Logger) -> None:
    logger.warning("report generated")


def main() -> None:
    store_path = sys.argv[1]
    processor = setup_otel(store_path)
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHTTPHandler)
    sink = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SlowSinkHandler)
    for server in (http_server, sink):
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    logger = logging.getLogger("audit")
    logger.propagate = False
    logger.addHandler(BlockingSocketLogHandler(sink.server_address))
    inventory_url = f"http://127.0.0.1:{http_server.server_address[1]}/stock"
    db_path = store_path + ".app.db"
    seen = {}

    app = Flask(__name__)

    @app.get("/report")
    def report():
        seen["tid"] = threading.get_native_id()
        total = run_slow_query(db_path)
        stock = call_inventory(inventory_url)
        log_audit(logger)
        return {"total": total, "stock": stock}

    middleware = ProfilerMiddleware(app.wsgi_app, store=store_path, sample_hz=200, tail_threshold_ms=50, otel="auto")
    app.wsgi_app = middleware
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    caller = urllib.request.Request(f"http://127.0.0.1:{server.server_port}/report", headers={"traceparent": TRACEPARENT})
    with urllib.request.urlopen(caller, timeout=30) as response:
        assert response.status == 200, response.status
        response.read()
    middleware.flush(30)
    processor.force_flush(30_000)
    server.shutdown()
    for handler in logger.handlers:
        handler.sock.close()
    print(json.dumps({"tid": seen["tid"], "instrumented": processor.instrumented, "recorded": processor.recorded,
                      "dropped": processor.dropped, "stats": middleware.stats}, default=str))


if __name__ == "__main__":
    main()
