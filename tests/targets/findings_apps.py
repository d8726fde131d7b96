"""An app built for the findings tests (tests/test_findings_apps.py): one bottleneck per route and
its near miss beside it, over a real PostgreSQL (psycopg 3, psycopg_pool, SQLAlchemy's ORM), a
real HTTP item service (httpx) and a real slow log collector, profiled by profviz with
``otel="auto"`` (Django's ORM through tests/targets/djangoshop) and served by waitress (8 threads) on 127.0.0.1.

Usage: ``findings_apps.py STORE DSN``. Prints ``{"url": ...}`` once serving; serves until stdin
closes, then flushes profviz and exits.

=====================  =======================================  ==========================
route                  what it does                              expected
=====================  =======================================  ==========================
/report/per-query      a new psycopg connection per query (5)    connection_setup
/report/pooled         the same queries on a pool sized to fit   nothing
/tiny-pool             a one-connection pool held 30 ms          pool_wait
/search/scan           WHERE on an unindexed column, 200k rows   full_scan (Seq Scan)
/search/indexed        WHERE on an indexed column                nothing
/orm/lazy              30 posts, each post.author lazy-loaded    n_plus_one_query
/orm/eager             the same with selectinload()              nothing
/django/lazy           the same with Django's ORM                n_plus_one_query
/django/eager          with select_related()                     nothing
/items/per-item        httpx GET per item (10)                   repeated_remote_call
/items/batch           one httpx GET for all items               nothing
/log/sync              logging.handlers.HTTPHandler, 3 records   sync_logging
/log/queued            QueueHandler -> QueueListener(HTTPHandler) nothing
/lock/contended        one lock every request holds for 20 ms    lock_contention
/lock/uncontended      a lock of its own                         nothing
/cpu/hot               pure-Python hashing, ~50 ms of CPU        cpu_hotspot
/cpu/light             the same over 1/200 of the data           nothing
/json/encode           json.dumps of 20k objects (small reply)   serialization
/json/small            json.dumps of 50 objects                  nothing
/query/slow            one 80 ms statement, no scan               slow_query
/query/fast            one indexed lookup                        nothing
/gil/victim            20 short sleeps, little CPU of its own     gil_contention (driven beside
                       (waits for the GIL after each)             /cpu/hot: tests/test_findings_apps.py)
/saturate              50 ms asleep, ~30 ms of CPU: slow only    saturation (driven by 1 client,
                       when all the workers compete for the GIL   then 16: tests/test_findings_apps.py)
=====================  =======================================  ==========================
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
from urllib.parse import urlsplit

import httpx
import psycopg
from flask import Flask, jsonify
from psycopg_pool import ConnectionPool
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

import profviz.flask
from profviz_shop.serving import waitress_in_thread
from profviz_shop.services import ExternalService, SlowLogSink

THREADS = 8
REPORT_KINDS = ("k1", "k2", "k3", "k4", "k5")


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship(lazy="select")


def create_schema(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS items, posts, authors")
        connection.execute("CREATE TABLE items (id serial PRIMARY KEY, kind text, code text, note text)")
        connection.execute("INSERT INTO items (kind, code, note) SELECT 'k' || (i % 10), 'c' || i, 'note ' || i"
                           " FROM generate_series(1, 200000) AS i")
        connection.execute("CREATE INDEX items_code ON items (code)")
        connection.execute("CREATE TABLE authors (id integer PRIMARY KEY, name text NOT NULL)")
        connection.execute("CREATE TABLE posts (id integer PRIMARY KEY, title text NOT NULL, author_id integer REFERENCES authors (id))")
        connection.execute("INSERT INTO authors SELECT i, 'author ' || i FROM generate_series(1, 200) AS i")
        connection.execute("INSERT INTO posts SELECT i, 'post ' || i, 1 + (i * 7) % 200 FROM generate_series(1, 3000) AS i")
        connection.execute("ANALYZE")


def checksum(count: int) -> int:
    """Pure-Python CPU work: a rolling hash over ``count`` numbers."""
    value = 0
    for number in range(count):
        value = (value * 31 + number * number) % 1_000_000_007
    return value


def setup_django(dsn: str) -> None:
    """Django's ORM over the same database (tests/targets/djangoshop)."""
    import django
    from django.conf import settings
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    settings.configure(
        INSTALLED_APPS=["djangoshop"], USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": parts["dbname"], "USER": parts["user"],
                               "PASSWORD": parts["password"], "HOST": parts["host"], "PORT": str(parts["port"])}},
    )
    django.setup()


def create_app(store: str, dsn: str) -> tuple[Flask, list]:
    setup_django(dsn)
    from djangoshop.models import Post as DjangoPost

    app = Flask(__name__)
    profviz.flask.init_app(app, store=store, otel="auto", tail_threshold_ms=1, worker_threads=THREADS)
    items_service = ExternalService(delay_s=0.008)
    log_sink = SlowLogSink(delay_s=0.02)
    items_url, sink_url = items_service.start(), log_sink.start()
    pool = ConnectionPool(dsn, min_size=THREADS, max_size=THREADS, open=True)
    tiny_pool = ConnectionPool(dsn, min_size=1, max_size=1, open=True, timeout=30)
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"), pool_size=THREADS)
    http = httpx.Client(timeout=10)
    sink = urlsplit(sink_url)
    sync_log = logging.getLogger("findings.sync")
    sync_log.addHandler(logging.handlers.HTTPHandler(sink.netloc, "/log", method="POST"))
    sync_log.setLevel(logging.INFO)
    sync_log.propagate = False
    records: queue.Queue = queue.Queue()
    listener = logging.handlers.QueueListener(records, logging.handlers.HTTPHandler(sink.netloc, "/log", method="POST"))
    listener.start()
    queued_log = logging.getLogger("findings.queued")
    queued_log.addHandler(logging.handlers.QueueHandler(records))
    queued_log.setLevel(logging.INFO)
    queued_log.propagate = False

    def report(connection) -> dict:
        return {kind: connection.execute("SELECT count(*) FROM items WHERE kind = %s AND id < 2000", (kind,)).fetchone()[0]
                for kind in REPORT_KINDS}

    @app.get("/report/per-query")
    def report_per_query():
        counts = {}
        for kind in REPORT_KINDS:
            with psycopg.connect(dsn) as connection:
                counts[kind] = report(connection)[kind] if kind == REPORT_KINDS[0] else connection.execute(
                    "SELECT count(*) FROM items WHERE kind = %s AND id < 2000", (kind,)).fetchone()[0]
        return jsonify(counts)

    @app.get("/report/pooled")
    def report_pooled():
        with pool.connection() as connection:
            return jsonify(report(connection))

    @app.get("/tiny-pool")
    def tiny():
        with tiny_pool.connection() as connection:
            connection.execute("SELECT pg_sleep(0.03)")
        return jsonify(ok=True)

    @app.get("/search/scan")
    def search_scan():
        with pool.connection() as connection:
            rows = connection.execute("SELECT id FROM items WHERE note = %s", ("note 123456",)).fetchall()
        return jsonify(ids=[r[0] for r in rows])

    @app.get("/search/indexed")
    def search_indexed():
        with pool.connection() as connection:
            rows = connection.execute("SELECT id FROM items WHERE code = %s", ("c123456",)).fetchall()
        return jsonify(ids=[r[0] for r in rows])

    @app.get("/orm/lazy")
    def orm_lazy():
        with Session(engine) as session:
            posts = session.scalars(select(Post).order_by(Post.id).limit(30)).all()
            return jsonify([{"title": p.title, "author": p.author.name} for p in posts])

    @app.get("/orm/eager")
    def orm_eager():
        with Session(engine) as session:
            posts = session.scalars(select(Post).options(selectinload(Post.author)).order_by(Post.id).limit(30)).all()
            return jsonify([{"title": p.title, "author": p.author.name} for p in posts])

    @app.get("/items/per-item")
    def items_per_item():
        return jsonify([http.get(f"{items_url}/items/{i}").json() for i in range(1, 11)])

    @app.get("/items/batch")
    def items_batch():
        return jsonify(http.get(f"{items_url}/items/1").json())

    @app.get("/log/sync")
    def log_sync():
        for step in ("started", "reserved", "done"):
            sync_log.info("checkout %s", step)
        return jsonify(ok=True)

    @app.get("/log/queued")
    def log_queued():
        for step in ("started", "reserved", "done"):
            queued_log.info("checkout %s", step)
        return jsonify(ok=True)

    @app.get("/django/lazy")
    def django_lazy():
        return jsonify([{"title": p.title, "author": p.author.name} for p in DjangoPost.objects.order_by("id")[:30]])

    @app.get("/django/eager")
    def django_eager():
        posts = DjangoPost.objects.select_related("author").order_by("id")[:30]
        return jsonify([{"title": p.title, "author": p.author.name} for p in posts])

    catalogue = [{"id": i, "name": f"item {i}", "tags": ["a", "b", "c"], "price": {"cents": i * 7, "currency": "EUR"}}
                 for i in range(20_000)]

    @app.get("/json/encode")
    def json_encode():
        body = json.dumps(catalogue)  # encoded to hash it: the response itself is small
        return jsonify(size=len(body), digest=hash(body) & 0xFFFF)

    @app.get("/json/small")
    def json_small():
        body = json.dumps([{"id": i, "name": f"item {i}"} for i in range(50)])
        return jsonify(size=len(body))

    @app.get("/query/slow")
    def query_slow():
        with pool.connection() as connection:
            connection.execute("SELECT pg_sleep(0.08)")
        return jsonify(ok=True)

    @app.get("/query/fast")
    def query_fast():
        with pool.connection() as connection:
            connection.execute("SELECT count(*) FROM items WHERE code = %s", ("c42",))
        return jsonify(ok=True)

    @app.get("/saturate")
    def saturate():
        time.sleep(0.05)  # a remote call's wait: many requests fit in the workers at once...
        return jsonify(checksum=checksum(180_000))  # ...until their CPU work (about 30 ms each) competes for the GIL

    @app.get("/gil/victim")
    def gil_victim():
        for _ in range(20):  # short waits (a cache, a sensor): each one ends by taking the GIL back
            time.sleep(0.002)
        return jsonify(ok=True)

    contended = threading.Lock()

    @app.get("/lock/contended")
    def lock_contended():
        with contended:  # every request waits for the one before it
            time.sleep(0.02)
        return jsonify(ok=True)

    @app.get("/lock/uncontended")
    def lock_uncontended():
        mine = threading.Lock()
        with mine:
            time.sleep(0.02)
        return jsonify(ok=True)

    @app.get("/cpu/hot")
    def cpu_hot():
        return jsonify(checksum=checksum(300_000))

    @app.get("/cpu/light")
    def cpu_light():
        return jsonify(checksum=checksum(1_500))

    closers = [listener.stop, items_service.stop, log_sink.stop, pool.close, tiny_pool.close, engine.dispose, http.close]
    return app, closers


def main() -> None:
    store, dsn = sys.argv[1], sys.argv[2]
    create_schema(dsn)
    app, closers = create_app(store, dsn)
    with waitress_in_thread(app, threads=THREADS) as server:
        print(json.dumps({"url": f"http://127.0.0.1:{server.effective_port}"}), flush=True)
        sys.stdin.read()
    app.extensions["profviz"].close()  # flush every request, profile and span into the store
    for close in closers:
        close()


if __name__ == "__main__":
    main()
