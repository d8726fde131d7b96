"""The SQLite file under the store: connections, transactions with lock retries, errors with a fix."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from ..base import StoreError
from .schema import create_or_migrate

T = TypeVar("T")


class Database:
    """One SQLite file: per-thread connections, transactions retried while another process holds
    the write lock, driver errors turned into StoreError with a fix, the schema created or migrated
    on open."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 30.0):
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._open_schema()

    # -- connections ----------------------------------------------------------------------

    def fail(self, action: str, exc: BaseException) -> StoreError:
        """The StoreError (with what to do) for a driver or OS error raised while trying to ``action`` the store."""
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
            return StoreError(
                f"store file {self.path} is corrupt ({text}): move it aside, or use another store with --store PATH"
            )
        if isinstance(exc, OSError) or "readonly" in text or "unable to open" in text or "read-only" in text:
            return StoreError(
                f"cannot {action} store {self.path} ({text}): make it writable, or pass --store PATH / set PROFVIZ_STORE"
            )
        if "locked" in text or "busy" in text:
            return StoreError(f"store {self.path} stayed locked for {self.busy_timeout_s:.0f} s while trying to {action}: another profviz process holds it; retry")
        return StoreError(f"cannot {action} store {self.path}: {text}")

    def connect(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # The class, not sqlite3.connect: tracing instrumentations wrap connect, and the
                # store's own statements must not become spans of the profiled app.
                conn = sqlite3.Connection(self.path, timeout=self.busy_timeout_s, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            except (OSError, sqlite3.Error) as exc:
                raise self.fail("open", exc) from None
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def transaction(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(conn)`` in one transaction, retrying while SQLite reports a lock; ``action`` names it in errors."""
        conn = self.connect()
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.005
        while True:
            try:
                with conn:
                    return work(conn)
            except sqlite3.OperationalError as exc:
                if ("locked" in str(exc) or "busy" in str(exc)) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
                    continue
                raise self.fail(action, exc) from None
            except sqlite3.DatabaseError as exc:
                raise self.fail(action, exc) from None

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Run one query and return all its rows."""
        return self.transaction("read", lambda c: c.execute(sql, tuple(params)).fetchall())

    def _open_schema(self) -> None:
        if self.path.exists() and not os.access(self.path, os.R_OK):
            raise StoreError(f"cannot read store {self.path} (permission denied): fix its permissions, or pass --store PATH")
        conn = self.connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.DatabaseError as exc:
            raise self.fail("open", exc) from None
        self.transaction("create the schema of", lambda c: create_or_migrate(c, self.location))

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    def check_writable(self) -> None:
        self.transaction("write to", lambda conn: conn.execute("DELETE FROM store_info WHERE 0"))

    def relax_durability(self) -> None:
        """In WAL mode ``synchronous = NORMAL`` cannot corrupt the store, and each commit costs a third of the CPU."""
        try:
            self.connect().execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self.fail("tune", exc) from None
