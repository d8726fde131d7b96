"""Serve the shop: ``python -m profviz_shop [--port 8000] [--db PATH] [--rows N] [--asgi]``.

Builds (or reuses) the database, starts the database server (the SQLite file served over TCP
with a network's latencies, see ``profviz_shop.dbserver``), the log sink and the external
service, then serves the app with waitress on 127.0.0.1 until interrupted (SIGINT or SIGTERM).
``--asgi`` serves the asyncio shop (``profviz_shop.async_app``, Starlette) with uvicorn instead.
With ``--profviz-store PATH`` every request goes through profviz's middleware
(``profviz.flask.init_app``, or ``profviz.asgi.ProfilerMiddleware``) and OpenTelemetry spans are
recorded in that store.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import waitress

from profviz_shop import netdb
from profviz_shop.app import create_app
from profviz_shop.data import DEFAULT_POST_ROWS, build_database
from profviz_shop.dbserver import DEFAULT_CONNECT_LATENCY_MS, DEFAULT_LATENCY_MS, DatabaseServer
from profviz_shop.services import ExternalService, SlowLogSink

HOST = "127.0.0.1"
SERVER_THREADS = 8


def default_database_path() -> Path:
    """``$XDG_CACHE_HOME/profviz/shop.sqlite3`` (``~/.cache`` by default), or the temp dir if that is unwritable."""
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    candidate = cache_root / "profviz"
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        if os.access(candidate, os.W_OK):
            return candidate / "shop.sqlite3"
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / "profviz-shop.sqlite3"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m profviz_shop", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--db", type=Path, default=None, help="database path (default: user cache dir)")
    parser.add_argument("--rows", type=int, default=DEFAULT_POST_ROWS, help="number of posts to generate")
    parser.add_argument("--log-delay", type=float, default=0.05, help="remote log sink delay in seconds")
    parser.add_argument("--external-delay", type=float, default=0.01, help="external service delay in seconds")
    parser.add_argument("--db-latency-ms", type=float, default=DEFAULT_LATENCY_MS,
                        help="the database server's wait per statement (a network round trip)")
    parser.add_argument("--db-connect-latency-ms", type=float, default=DEFAULT_CONNECT_LATENCY_MS,
                        help="the database server's wait per new connection (TCP, TLS, authentication)")
    parser.add_argument("--local-db", action="store_true", help="open the SQLite file in process instead of through the database server")
    parser.add_argument("--profviz-store", type=Path, default=None, help="profile every request into this profviz store")
    parser.add_argument("--deep-fraction", type=float, default=0.05, help="with --profviz-store: share of requests profiled with pyinstrument")
    parser.add_argument("--asgi", action="store_true", help="serve the asyncio shop (Starlette) with uvicorn")
    args = parser.parse_args(argv)
    if args.asgi and args.local_db:
        parser.error("--asgi needs the database server (no --local-db)")
    # Stop cleanly on SIGTERM, and on SIGINT even when it was inherited ignored (a background job).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    db_path = args.db or default_database_path()
    started = time.perf_counter()
    build_database(db_path, rows=args.rows)
    size_mb = db_path.stat().st_size / 1e6
    print(f"database ready at {db_path} ({size_mb:.0f} MB, {time.perf_counter() - started:.1f}s; built once, reused by later runs)", flush=True)

    with contextlib.ExitStack() as services:
        log_sink = services.enter_context(SlowLogSink(delay_s=args.log_delay))
        external = services.enter_context(ExternalService(delay_s=args.external_delay))
        db_address = None
        if not args.local_db:
            database = services.enter_context(
                DatabaseServer(db_path, latency_ms=args.db_latency_ms, connect_latency_ms=args.db_connect_latency_ms))
            db_address = database.address
            print(f"database server on {db_address} ({args.db_latency_ms:g} ms a statement,"
                  f" {args.db_connect_latency_ms:g} ms a new connection)", flush=True)
        if args.asgi:
            return _serve_asgi(args, db_address, external.url)
        app = create_app(db_path, log_sink_url=log_sink.url, external_url=external.url, db_address=db_address)
        middleware = None
        if args.profviz_store is not None:
            middleware = _profile_with_profviz(app, args.profviz_store, args.deep_fraction)
        server = waitress.create_server(app, host=HOST, port=args.port, threads=SERVER_THREADS)
        print(f"shop serving on http://{HOST}:{server.effective_port}", flush=True)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
            if middleware is not None:
                middleware.flush()
    return 0


def _serve_asgi(args, db_address: str, external_url: str) -> int:
    """The asyncio shop under uvicorn (one event loop), profiled into ``--profviz-store`` when given."""
    import uvicorn

    from profviz_shop.async_app import create_async_app

    traced = args.profviz_store is not None
    app = create_async_app(db_address=db_address, external_url=external_url, trace=traced)
    middleware = None
    if traced:
        from profviz.asgi import ProfilerMiddleware

        app = middleware = ProfilerMiddleware(app, store=args.profviz_store, labels={"demo": "shop-asgi"}, otel="auto")
    config = uvicorn.Config(app, host=HOST, port=args.port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)

    async def serve() -> None:
        import asyncio

        task = asyncio.ensure_future(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"shop serving on http://{HOST}:{port}", flush=True)
        await task

    import asyncio

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    finally:
        if middleware is not None:
            middleware.flush()
    return 0


def _profile_with_profviz(app, store_path: Path, deep_fraction: float):
    """Wrap the app in profviz's middleware, recording OpenTelemetry spans in the same store."""
    import profviz.flask

    middleware = profviz.flask.init_app(
        app, store=store_path, deep_fraction=deep_fraction, worker_threads=SERVER_THREADS, labels={"demo": "shop"},
        otel="auto",
    )
    _trace_database_driver()
    return middleware


def _trace_database_driver() -> None:
    """Make every statement through the shop's database driver an OpenTelemetry span with its SQL
    (what an app does for a DB-API driver that has no instrumentation of its own)."""
    try:
        from opentelemetry.instrumentation.dbapi import trace_integration
    except ImportError:
        return
    trace_integration(netdb, "connect", "sqlite", connection_attributes={"database": "database", "host": "host", "port": "port"})


if __name__ == "__main__":
    sys.exit(main())
