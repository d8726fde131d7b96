"""The shop's database server: its SQLite database served over TCP on 127.0.0.1, in its own process.

``python -m profviz_shop.dbserver --db PATH [--latency-ms 1] [--connect-latency-ms 5]`` prints
``dbserver listening on 127.0.0.1:PORT`` and serves until its stdin closes (its parent exited)
or it gets SIGTERM. Each client connection gets a thread and its own SQLite connection (see
:mod:`profviz_shop.netdb` for the protocol).

The latencies are those of a database on the network, documented here because they make the
shop's lessons: every statement waits ``latency_ms`` (a round trip across a data centre network
plus the server's own work, 1 ms by default; same-host PostgreSQL is ~0.1 ms, another zone 1-2
ms) before it runs, and every new connection waits ``connect_latency_ms`` (TCP, TLS and
authentication, 5 ms by default) before the server greets it, which ends the client's connect(). So 50 queries cost 50 round trips
(the N+1 route), and a connection per query a handshake per query (the report route).

:class:`DatabaseServer` starts and stops it from the shop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

LOOPBACK_HOST = "127.0.0.1"
DEFAULT_LATENCY_MS = 1.0
DEFAULT_CONNECT_LATENCY_MS = 5.0
START_TIMEOUT_S = 30.0
GREETING = b'{"ready": true}\n'


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: QueryServer = self.server  # type: ignore[assignment]
        time.sleep(server.connect_latency_s)
        connection = sqlite3.connect(server.db_path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA busy_timeout = 10000")
            self.wfile.write(GREETING)  # the handshake's end: the client's connect() returns now
            self.wfile.flush()
            for line in self.rfile:
                time.sleep(server.latency_s)
                self.wfile.write(json.dumps(_run(connection, line)).encode() + b"\n")
                self.wfile.flush()
        except (ConnectionError, OSError):
            pass  # the client went away
        finally:
            connection.close()


def _run(connection: sqlite3.Connection, line: bytes) -> dict:
    try:
        request = json.loads(line)
        cursor = connection.execute(request["sql"], request.get("params") or [])
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return {"columns": columns, "rows": cursor.fetchall(), "lastrowid": cursor.lastrowid, "rowcount": cursor.rowcount}
    except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


class QueryServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, db_path: str, latency_s: float, connect_latency_s: float):
        super().__init__((LOOPBACK_HOST, 0), _Handler)
        self.db_path, self.latency_s, self.connect_latency_s = db_path, latency_s, connect_latency_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m profviz_shop.dbserver", description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="the shop's SQLite database")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="wait before each statement")
    parser.add_argument("--connect-latency-ms", type=float, default=DEFAULT_CONNECT_LATENCY_MS, help="wait for each new connection")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = QueryServer(str(args.db), args.latency_ms / 1000, args.connect_latency_ms / 1000)

    def stop_when_the_parent_goes() -> None:
        sys.stdin.buffer.read()
        server.shutdown()

    threading.Thread(target=stop_when_the_parent_goes, daemon=True).start()
    print(f"dbserver listening on {LOOPBACK_HOST}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


class DatabaseServer:
    """The database server as a child process: ``start()`` returns its address, ``stop()`` ends it."""

    def __init__(self, db_path: str | os.PathLike, *, latency_ms: float = DEFAULT_LATENCY_MS,
                 connect_latency_ms: float = DEFAULT_CONNECT_LATENCY_MS):
        self.command = [sys.executable, "-m", "profviz_shop.dbserver", "--db", os.fspath(db_path),
                        "--latency-ms", str(latency_ms), "--connect-latency-ms", str(connect_latency_ms)]
        self.process: subprocess.Popen | None = None
        self.address: str | None = None

    def start(self) -> str:
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        start_new_session=True)
        ready = threading.Event()
        lines: list[str] = []

        def read_first_line() -> None:
            lines.append(self.process.stdout.readline())
            ready.set()

        threading.Thread(target=read_first_line, daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or not lines[0].startswith("dbserver listening on "):
            self.stop()
            raise RuntimeError(f"the shop's database server did not start ({lines[0].strip() if lines else 'no output'})")
        self.address = lines[0].split("listening on ", 1)[1].strip()
        return self.address

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.stdin.close()
            process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        finally:
            process.stdout.close()

    def __enter__(self) -> "DatabaseServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
