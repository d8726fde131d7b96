"""The SQLite file under the store: connections, transactions with lock retries, errors with a fix."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from ..base import StoreError, StoreValueError
from .schema import check_version, create_or_migrate, stored_version

T = TypeVar("T")


class Database:
    """One SQLite file: per-thread connections, transactions retried while another process holds
    the write lock, driver errors turned into StoreError with a fix, the schema created or migrated
    on open. A store the user may read but not write (the file or its directory) opens
    ``read_only``: reads work, writes fail with what to do, nothing is migrated."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 30.0):
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        self.busy_timeout_s = busy_timeout_s
        self.read_only = self.path.exists() and not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK | os.X_OK))
        self._immutable = False
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._open_schema()
        self._identity = self._file_identity()

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
                # The class, not sqlite3.connect: tracing instrumentations wrap connect, and the
                # store's own statements must not become spans of the profiled app.
                if self.read_only:
                    conn = sqlite3.Connection(self._read_only_uri(), uri=True, timeout=self.busy_timeout_s, check_same_thread=False)
                    self._show_pending(conn)
                else:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
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

    @staticmethod
    def _show_pending(conn: sqlite3.Connection) -> None:
        """Requests still in the log are read too (they cannot be moved into their table here)."""
        from .requests import show_pending

        try:
            show_pending(conn)
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):  # a store too old to have a log: nothing pending
                raise

    def _read_only_uri(self) -> str:
        """``mode=ro``; ``immutable=1`` when a WAL store's ``-shm`` file cannot be made (its directory is read-only)."""
        from urllib.parse import quote

        return f"file:{quote(str(self.path.resolve()))}?mode=ro" + ("&immutable=1" if self._immutable else "")

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
            except (OverflowError, UnicodeError) as exc:  # a value SQLite cannot hold: the same write would fail again
                raise StoreValueError(f"cannot {action} store {self.path}: a value it cannot hold ({type(exc).__name__}: "
                                      f"{str(exc)[:200]})") from None

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Run one query and return all its rows."""
        return self.transaction("read", lambda c: c.execute(sql, tuple(params)).fetchall())

    def _open_schema(self) -> None:
        if self.path.exists() and not os.access(self.path, os.R_OK):
            raise StoreError(f"cannot read store {self.path} (permission denied): fix its permissions, or pass --store PATH")
        if self.read_only:
            self._open_read_only()
            return
        conn = self.connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.DatabaseError as exc:
            raise self.fail("open", exc) from None
        self.transaction("create the schema of", lambda c: create_or_migrate(c, self.location))

    def _open_read_only(self) -> None:
        """Check the schema without writing; a WAL store in a directory we cannot write opens immutable."""
        for immutable in (False, True):
            self._immutable = immutable
            try:
                found = stored_version(self.connect(), self.location)
                break
            except StoreError as exc:
                self.close()
                if immutable or "unable to open" not in str(exc):
                    raise
            except sqlite3.DatabaseError as exc:
                self.close()
                if immutable or "unable to open" not in str(exc):
                    raise self.fail("open", exc) from None
        check_version(found, self.location, read_only=True)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def moved_away(self) -> bool:
        return self._file_identity() != self._identity

    def check_writable(self) -> None:
        self.transaction("write to", lambda conn: conn.execute("DELETE FROM store_info WHERE 0"))

    def relax_durability(self) -> None:
        """In WAL mode ``synchronous = NORMAL`` cannot corrupt the store, and each commit costs a third of the CPU."""
        try:
            self.connect().execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self.fail("tune", exc) from None
