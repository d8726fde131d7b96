"""The shop's Flask application factory; each bottleneck lives on its own endpoint.

Endpoints (all JSON):

    GET /health                      trivial and fast
    GET /posts                       N+1: 50 recent posts, then one author query per post
    GET /posts/fast                  the same data with one JOIN
    GET /posts/<int:post_id>         one post with its author
    GET /authors/<int:author_id>/posts   an author's latest posts
    GET /tags/<tag>                  latest posts with a tag
    GET /search/slow?q=prefix        title prefix search on the unindexed column (full scan)
    GET /search/fast?q=prefix        the same search on the indexed column
    GET /checkout                    places an order and logs each step synchronously to a remote sink
    GET /export                      serialises ~20k rows (several MB) with json.dumps
    GET /report                      ~20 small queries, each on a brand-new sqlite3 connection
    GET /report/fast                 the same queries on the thread's reused connection
    GET /enrich                      one external HTTP call per item, sequentially

With ``trace_sql=True`` every response carries ``X-Shop-Sql-Statements`` and
``X-Shop-Db-Connections`` headers, and ``app.extensions["shop"].traces`` keeps
the SQL text each recent request executed.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import random
import sqlite3
import threading
import time
from typing import Callable

import requests
from flask import Flask, Response, abort, current_app, g, has_app_context, jsonify, request

from profviz_shop import netdb
from profviz_shop.data import PRODUCT_COUNT, SCHEMA_VERSION, TAGS

AUDIT_LOGGER_NAME = "shop.audit"
TRACE_HISTORY = 1_000
OUTBOUND_TIMEOUT_S = 5.0

RECENT_POSTS_SQL = (
    "SELECT id, author_id, title, slug, tag, created_at FROM posts "
    "ORDER BY created_at DESC LIMIT ?"
)
AUTHOR_BY_ID_SQL = "SELECT id, name, email FROM authors WHERE id = ?"
RECENT_POSTS_WITH_AUTHORS_SQL = (
    "SELECT p.id, p.title, p.slug, p.tag, p.created_at, a.id AS author_id, a.name, a.email "
    "FROM posts AS p JOIN authors AS a ON a.id = p.author_id "
    "ORDER BY p.created_at DESC LIMIT ?"
)
POST_WITH_AUTHOR_SQL = (
    "SELECT p.id, p.title, p.slug, p.tag, p.body, p.created_at, a.id AS author_id, a.name, a.email "
    "FROM posts AS p JOIN authors AS a ON a.id = p.author_id WHERE p.id = ?"
)
POSTS_BY_AUTHOR_SQL = (
    "SELECT id, title, slug, tag, created_at FROM posts WHERE author_id = ? "
    "ORDER BY created_at DESC LIMIT 20"
)
POSTS_BY_TAG_SQL = (
    "SELECT id, title, slug, tag, created_at FROM posts WHERE tag = ? "
    "ORDER BY created_at DESC LIMIT 20"
)
SEARCH_SLOW_SQL = (
    "SELECT id, title FROM posts WHERE title LIKE ? ESCAPE '\\' ORDER BY title, id LIMIT ?"
)
SEARCH_FAST_SQL = (
    "SELECT id, title_indexed AS title FROM posts WHERE title_indexed LIKE ? ESCAPE '\\' "
    "ORDER BY title_indexed, id LIMIT ?"
)
PRODUCTS_BY_IDS_SQL = "SELECT id, sku, name, price_cents FROM products WHERE id IN ({placeholders}) ORDER BY id"
INSERT_ORDER_SQL = "INSERT INTO orders (created_at, item_count, total_cents) VALUES (?, ?, ?)"
EXPORT_SQL = (
    "SELECT p.id, p.title, p.slug, p.tag, p.body, p.created_at, a.id AS author_id, a.name, a.email "
    "FROM posts AS p JOIN authors AS a ON a.id = p.author_id ORDER BY p.id LIMIT ?"
)
ENRICH_PRODUCTS_SQL = "SELECT id, sku, name, price_cents FROM products ORDER BY id LIMIT ?"
REPORT_QUERIES: tuple[tuple[str, str, tuple], ...] = tuple(
    (f"latest_{tag}_post_at", "SELECT MAX(created_at) FROM posts WHERE tag = ?", (tag,)) for tag in TAGS
) + (
    ("author_count", "SELECT COUNT(*) FROM authors", ()),
    ("product_count", "SELECT COUNT(*) FROM products", ()),
    ("max_price_cents", "SELECT MAX(price_cents) FROM products", ()),
    ("order_count", "SELECT COUNT(*) FROM orders", ()),
)

TAX_RATE = 0.2


@dataclasses.dataclass(frozen=True)
class RequestTrace:
    """The SQL one request executed and how many sqlite3 connections it opened."""

    method: str
    path: str
    endpoint: str | None
    statements: tuple[str, ...]
    connections_opened: int


class ShopState:
    """Per-app state: the database path, per-thread connections and recent request traces."""

    def __init__(self, db_path: str, *, trace_sql: bool, db_address: str | None = None) -> None:
        self.db_path = db_path
        self.db_address = db_address
        self.trace_sql = trace_sql
        self.traces: collections.deque[RequestTrace] = collections.deque(maxlen=TRACE_HISTORY)
        self._per_thread = threading.local()

    def open_connection(self):
        """Open a new, fully configured connection (counted in the current request's trace): to the
        database server when the app has one, else to the SQLite file in process."""
        if self.db_address is not None:
            connection = netdb.connect(self.db_address, database=self.db_path)
            if self.trace_sql:
                connection.on_statement = _record_statement
        else:
            connection = sqlite3.connect(self.db_path, timeout=10)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA synchronous=NORMAL")
            if self.trace_sql:
                connection.set_trace_callback(_record_statement)
        if has_app_context() and "connections_opened" in g:
            g.connections_opened += 1
        return connection

    def thread_connection(self):
        """Return this thread's long-lived connection, opening it on first use."""
        connection = getattr(self._per_thread, "connection", None)
        if connection is None or getattr(connection, "closed", False):  # a failed network connection is replaced
            connection = self.open_connection()
            self._per_thread.connection = connection
        return connection


class RemoteLogHandler(logging.Handler):
    """Send each formatted record synchronously as ``POST <sink>/log`` and wait for the answer.

    ``sink_url_for_record`` picks the sink; records it maps to ``None`` are dropped.
    """

    def __init__(self, sink_url_for_record: Callable[[logging.LogRecord], str | None], *, timeout_s: float = OUTBOUND_TIMEOUT_S) -> None:
        super().__init__(level=logging.INFO)
        self.sink_url_for_record = sink_url_for_record
        self.timeout_s = timeout_s

    def emit(self, record: logging.LogRecord) -> None:
        sink_url = self.sink_url_for_record(record)
        if sink_url is None:
            return
        try:
            response = requests.post(
                f"{sink_url}/log",
                data=self.format(record).encode("utf-8"),
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=self.timeout_s,
            )
            response.raise_for_status()
        except Exception:
            self.handleError(record)


def create_app(db_path: str | os.PathLike[str], *, log_sink_url: str, external_url: str, trace_sql: bool = False,
               db_address: str | None = None) -> Flask:
    """Build the shop app over an existing database built by ``build_database``.

    ``log_sink_url`` is a ``SlowLogSink`` base URL and ``external_url`` an
    ``ExternalService`` base URL.  With ``db_address`` (a ``DatabaseServer``'s
    ``127.0.0.1:PORT`` serving that database) every query crosses a socket, as
    in production; without, the app opens the SQLite file in process.  Safe
    under a threaded server: each worker thread gets its own connection.
    """
    db_path = os.fspath(db_path)
    _check_database(db_path)
    app = Flask(__name__)
    app.config.update(
        SHOP_DB_PATH=db_path,
        SHOP_LOG_SINK_URL=log_sink_url.rstrip("/"),
        SHOP_EXTERNAL_URL=external_url.rstrip("/"),
        SHOP_TRACE_SQL=trace_sql,
    )
    state = ShopState(db_path, trace_sql=trace_sql, db_address=db_address)
    app.extensions["shop"] = state
    audit_logger = _audit_logger()

    def db():
        return state.thread_connection()

    @app.before_request
    def start_request_trace() -> None:
        g.sql_statements = []
        g.connections_opened = 0

    @app.after_request
    def finish_request_trace(response: Response) -> Response:
        if state.trace_sql and "sql_statements" in g:
            response.headers["X-Shop-Sql-Statements"] = str(len(g.sql_statements))
            response.headers["X-Shop-Db-Connections"] = str(g.connections_opened)
            state.traces.append(
                RequestTrace(
                    method=request.method,
                    path=request.path,
                    endpoint=request.endpoint,
                    statements=tuple(g.sql_statements),
                    connections_opened=g.connections_opened,
                )
            )
        return response

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.get("/posts")
    def recent_posts_n_plus_one():
        limit = _int_arg("limit", default=50, low=1, high=200)
        posts = []
        for row in query(db(), RECENT_POSTS_SQL, (limit,)):
            author = query(db(), AUTHOR_BY_ID_SQL, (row["author_id"],))[0]
            posts.append(_post_summary(row, author_id=author["id"], name=author["name"], email=author["email"]))
        return jsonify(posts=posts)

    @app.get("/posts/fast")
    def recent_posts_joined():
        limit = _int_arg("limit", default=50, low=1, high=200)
        rows = query(db(), RECENT_POSTS_WITH_AUTHORS_SQL, (limit,))
        return jsonify(posts=[_post_summary(row, author_id=row["author_id"], name=row["name"], email=row["email"]) for row in rows])

    @app.get("/posts/<int:post_id>")
    def post_detail(post_id: int):
        rows = query(db(), POST_WITH_AUTHOR_SQL, (post_id,))
        if not rows:
            abort(404)
        row = rows[0]
        post = _post_summary(row, author_id=row["author_id"], name=row["name"], email=row["email"])
        post["body"] = row["body"]
        return jsonify(post=post)

    @app.get("/authors/<int:author_id>/posts")
    def author_posts(author_id: int):
        rows = query(db(), POSTS_BY_AUTHOR_SQL, (author_id,))
        return jsonify(author_id=author_id, posts=[dict(row) for row in rows])

    @app.get("/tags/<tag>")
    def tag_posts(tag: str):
        rows = query(db(), POSTS_BY_TAG_SQL, (tag,))
        return jsonify(tag=tag, posts=[dict(row) for row in rows])

    @app.get("/search/slow")
    def search_unindexed():
        return _title_search(db(), SEARCH_SLOW_SQL, column="title")

    @app.get("/search/fast")
    def search_indexed():
        return _title_search(db(), SEARCH_FAST_SQL, column="title_indexed")

    @app.get("/checkout")
    def checkout():
        connection = db()
        product_ids = _checkout_product_ids()
        audit_logger.info("checkout started items=%d", len(product_ids))
        placeholders = ",".join("?" * len(product_ids))
        products = query(connection, PRODUCTS_BY_IDS_SQL.format(placeholders=placeholders), product_ids)
        for product in products:
            audit_logger.info("reserved sku=%s price_cents=%d", product["sku"], product["price_cents"])
        subtotal = sum(product["price_cents"] for product in products)
        total = subtotal + round(subtotal * TAX_RATE)
        with connection:
            cursor = connection.cursor()
            cursor.execute(INSERT_ORDER_SQL, (time.time(), len(products), total))
            order_id = cursor.lastrowid
        audit_logger.info("checkout complete order_id=%d total_cents=%d", order_id, total)
        return jsonify(
            order_id=order_id,
            items=[dict(product) for product in products],
            subtotal_cents=subtotal,
            total_cents=total,
        )

    @app.get("/export")
    def export():
        row_count = _int_arg("rows", default=20_000, low=1, high=50_000)
        rows = query(db(), EXPORT_SQL, (row_count,))
        payload = {
            "exported_at": time.time(),
            "count": len(rows),
            "posts": [
                {
                    "id": row["id"],
                    "title": row["title"],
                    "slug": row["slug"],
                    "tag": row["tag"],
                    "body": row["body"],
                    "created_at": row["created_at"],
                    "author": {"id": row["author_id"], "name": row["name"], "email": row["email"]},
                }
                for row in rows
            ],
        }
        return Response(json.dumps(payload), mimetype="application/json")

    @app.get("/report")
    def report_connection_per_query():
        results = {}
        for name, sql, params in REPORT_QUERIES:
            connection = state.open_connection()
            try:
                results[name] = query(connection, sql, params)[0][0]
            finally:
                connection.close()
        return jsonify(report=results)

    @app.get("/report/fast")
    def report_shared_connection():
        connection = db()
        return jsonify(report={name: query(connection, sql, params)[0][0] for name, sql, params in REPORT_QUERIES})

    @app.get("/enrich")
    def enrich():
        item_count = _int_arg("items", default=10, low=1, high=50)
        external_url = current_app.config["SHOP_EXTERNAL_URL"]
        items = []
        for product in query(db(), ENRICH_PRODUCTS_SQL, (item_count,)):
            try:
                response = requests.get(f"{external_url}/items/{product['id']}", timeout=OUTBOUND_TIMEOUT_S)
                response.raise_for_status()
            except requests.RequestException as error:
                return jsonify(error=f"external service failed: {error}"), 502
            items.append({**dict(product), "external": response.json()})
        return jsonify(items=items)

    return app


def query(connection, sql: str, params=()) -> list:
    """Run ``sql`` through a cursor and return its rows (rows read by column name)."""
    cursor = connection.cursor()
    cursor.execute(sql, params)
    return cursor.fetchall()


def _check_database(db_path: str) -> None:
    if not os.path.isfile(db_path):
        raise FileNotFoundError(f"shop database not found: {db_path} (run build_database first)")
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    finally:
        connection.close()
    if version != SCHEMA_VERSION:
        raise ValueError(f"{db_path} has schema version {version}, expected {SCHEMA_VERSION}")


def _record_statement(statement: str) -> None:
    if has_app_context() and "sql_statements" in g:
        g.sql_statements.append(statement)


def _sink_url_from_current_app(record: logging.LogRecord) -> str | None:
    if not has_app_context():
        return None
    return current_app.config.get("SHOP_LOG_SINK_URL")


def _audit_logger() -> logging.Logger:
    """Return ``shop.audit`` with exactly one ``RemoteLogHandler``, which posts to the current app's sink."""
    logger = logging.getLogger(AUDIT_LOGGER_NAME)
    logger.setLevel(logging.INFO)
    if not any(isinstance(handler, RemoteLogHandler) for handler in logger.handlers):
        handler = RemoteLogHandler(_sink_url_from_current_app)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
    return logger


def _int_arg(name: str, *, default: int, low: int, high: int) -> int:
    value = request.args.get(name, default, type=int)
    return max(low, min(high, value))


def _post_summary(row, *, author_id: int, name: str, email: str) -> dict:
    return {
        "id": row["id"],
        "title": row["title"],
        "slug": row["slug"],
        "tag": row["tag"],
        "created_at": row["created_at"],
        "author": {"id": author_id, "name": name, "email": email},
    }


def _title_search(connection, sql: str, *, column: str):
    text = request.args.get("q", "").strip()
    if not text:
        return jsonify(error="missing query parameter q"), 400
    limit = _int_arg("limit", default=20, low=1, high=100)
    pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = query(connection, sql, (pattern, limit))
    return jsonify(query=text, column=column, results=[dict(row) for row in rows])


def _checkout_product_ids() -> list[int]:
    requested = request.args.getlist("product", type=int)
    if requested:
        return sorted(set(requested))[:20]
    item_count = _int_arg("items", default=3, low=1, high=20)
    return sorted(random.sample(range(1, PRODUCT_COUNT + 1), item_count))
