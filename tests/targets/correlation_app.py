"""A Flask app under profviz's middleware and OpenTelemetry serving one slow, traced request.

``python correlation_app.py STORE`` runs ``GET /orders/<id>`` once on a real 127.0.0.1 server
(``profviz.flask.init_app`` + ``profviz.otel.setup_otel(STORE)``), then flushes and exits. The
request, inside a server span named like Flask's instrumentation would, does:

* a slow real SQLite query (recursive CTE, ~120 ms on CPU) through the sqlite3
  instrumentation, whose SQL text carries a hostile string literal;
* 12 short identical SQLite queries (~4 ms each, one span name: the aggregate-by-name case);
* an HTTP call with ``requests`` to a slow server on 127.0.0.1 (~150 ms waiting), whose URL
  query string is hostile;
* internal spans whose names and attributes are attack strings (``<script>``, an ``<img
  onerror>``, a ``javascript:`` URL, a U+202E override, a 10 kB string);
* ~100 ms of pure-Python CPU work outside every child span (the "(no span)" time).

``--plain`` (after STORE) names those spans like a normal app would (for screenshots).
Prints one JSON line: the request thread's native id and the processor's counters.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flask import Flask
from opentelemetry import trace
from werkzeug.serving import make_server

from profviz.flask import init_app
from profviz.otel import setup_otel

SLOW_S = 0.15
HOSTILE_SCRIPT = "<script>window.__pwned='script'</script>"
HOSTILE_IMG = "\"><img src=x onerror=\"window.__pwned='img';alert(1)\">"
HOSTILE_JS_URL = "javascript:window.__pwned='href'"
HOSTILE_RTL = "evil\u202egnp.exe"
HOSTILE_LONG = "long_" + "B" * 10_240
SLOW_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 600000) "
    "SELECT sum(x % 7) AS \"<script>window.__pwned='sql'</script>\" FROM c"
)
PLAIN_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 600000) "
    "SELECT sum(x % 7) AS checksum, count(*) AS line_count FROM c"
)
QUICK_SQL = (
    "SELECT o.total, (SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000) "
    "SELECT x FROM c)) FROM orders o WHERE o.id = ?"
)


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


def slow_query(conn: sqlite3.Connection, sql: str) -> int:
    cursor = conn.cursor()
    cursor.execute(sql)
    return cursor.fetchone()[0]


def quick_queries(conn: sqlite3.Connection, count: int) -> int:
    cursor = conn.cursor()
    total = 0
    for i in range(count):
        cursor.execute(QUICK_SQL, (i % 5 + 1,))
        total += cursor.fetchone()[0]
    return total


def fetch_stock(url: str) -> dict:
    import requests

    return requests.get(url, timeout=10).json()


def render_invoice(rounds: int) -> int:
    """Pure-Python CPU work that no span covers."""
    acc = 0
    deadline = time.perf_counter() + 0.1
    while time.perf_counter() < deadline:
        for i in range(rounds):
            acc = (acc * 31 + i) % 1_000_003
    return acc


def main() -> None:
    store_path = sys.argv[1]
    plain = sys.argv[2:] == ["--plain"]
    load_name, fetch_name, audit_name = ("load_order", "fetch_stock", "write_audit") if plain else (HOSTILE_SCRIPT, HOSTILE_RTL, HOSTILE_LONG)
    load_attributes = {"order.id": 7, "order.source": "web"} if plain else {
        "note": HOSTILE_IMG, "link": HOSTILE_JS_URL, "rtl": HOSTILE_RTL, "blob": HOSTILE_LONG,
    }
    processor = setup_otel(store_path, instrument=["sqlite3", "requests"])
    tracer = trace.get_tracer("correlation-app")
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHTTPHandler)
    http_server.daemon_threads = True
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    query = "sku=7" if plain else f"next={HOSTILE_JS_URL}&q=%22%3E%3Cimg%20src%3Dx%3E"
    stock_url = f"http://127.0.0.1:{http_server.server_address[1]}/stock?{query}"
    db_path = store_path + ".app.db"
    setup = sqlite3.connect(db_path)
    setup.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, total INTEGER)")
    setup.executemany("INSERT OR REPLACE INTO orders VALUES (?, ?)", [(i, i * 10) for i in range(1, 6)])
    setup.commit()
    setup.close()
    seen = {}

    app = Flask(__name__)

    @app.get("/orders/<int:order_id>")
    def order(order_id: int):
        seen["tid"] = threading.get_native_id()
        with tracer.start_as_current_span("GET /orders/<int:order_id>", kind=trace.SpanKind.SERVER,
                                          attributes={"http.route": "/orders/<int:order_id>", "http.method": "GET"}):
            conn = sqlite3.connect(db_path)
            with tracer.start_as_current_span(load_name, attributes=load_attributes):
                total = slow_query(conn, PLAIN_SQL if plain else SLOW_SQL)
            with tracer.start_as_current_span("load_order_lines"):
                total += quick_queries(conn, 12)
            conn.close()
            with tracer.start_as_current_span(fetch_name, attributes={"peer": "inventory" if plain else HOSTILE_IMG}):
                stock = fetch_stock(stock_url)
            invoice = render_invoice(2000)
            with tracer.start_as_current_span(audit_name):
                time.sleep(0.02)
        return {"order": order_id, "total": total, "stock": stock, "invoice": invoice}

    middleware = init_app(app, store=store_path, sample_hz=500, tail_threshold_ms=50)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/orders/7", timeout=30) as response:
        assert response.status == 200, response.status
        response.read()
    middleware.flush(30)
    processor.force_flush(30_000)
    server.shutdown()
    http_server.shutdown()
    print(json.dumps({"tid": seen["tid"], "recorded": processor.recorded, "dropped": processor.dropped,
                      "rejected": processor.rejected, "stats": middleware.stats}, default=str))


if __name__ == "__main__":
    main()
