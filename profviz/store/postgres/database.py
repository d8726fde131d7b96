"""The PostgreSQL server under the store: a connection pool, transactions retried while the server
restarts, driver errors turned into StoreError with a fix, the schema created or migrated on open."""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Iterable, Sequence, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ..base import StoreError, StoreValueError
from .schema import create_or_migrate, ensure_days

T = TypeVar("T")


def _plain_connect() -> classmethod:
    """``psycopg.Connection.connect`` as psycopg defines it, under any tracing wrapper (wrapt keeps the
    original as ``__wrapped__``): the store's own statements must not become spans of the profiled app."""
    found: Any = psycopg.Connection.__dict__["connect"]
    while not isinstance(found, classmethod):
        found = found.__wrapped__
    return found


class PartitionMissing(StoreError):
    """A row's day partition is gone: dropped (by retention) since this process made or saw it."""


class StoreConnection(psycopg.Connection):
    """A psycopg connection that tracing instrumentations, which wrap ``Connection.connect``, leave alone."""

    connect = _plain_connect()


class _Pool(ConnectionPool):
    """A pool that, when collected without being closed, stops its worker without waiting for it:
    psycopg_pool's own ``__del__`` joins it, which fails when collection happens in that worker."""

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self._signal_stop_worker()


class Row:
    """A row readable by position and by column name, as ``sqlite3.Row`` is (``dict(row)`` works)."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]):
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key]] if isinstance(key, str) else self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self):
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: psycopg.Cursor) -> Callable[[Sequence[Any]], Row]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


_RETRIED = (pg_errors.AdminShutdown, pg_errors.CannotConnectNow, pg_errors.CrashShutdown, pg_errors.SerializationFailure,
            pg_errors.DeadlockDetected)
_translated: dict[str, str] = {}


def translated(sql: str) -> str:
    """Shared SQL (``?`` placeholders) in psycopg's style (``%s``, a literal ``%`` doubled)."""
    found = _translated.get(sql)
    if found is None:
        found = _translated[sql] = sql.replace("%", "%%").replace("?", "%s")
    return found


class Database:
    """One PostgreSQL database named by a ``postgresql://`` URL: a pool of connections (made as
    :class:`StoreConnection`), transactions retried while the server restarts or is unreachable, up
    to ``busy_timeout_s``, errors as StoreError saying what to do. ``location`` is the URL without
    its password."""

    read_only = False

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0, max_connections: int = 8):
        self.url = url
        self.location = redacted_url(url)
        self.busy_timeout_s = busy_timeout_s
        self.max_connections = max_connections
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._local = threading.local()
        self._days: set[tuple[str, int]] = set()
        try:
            with self._direct() as conn:  # the first error says what is wrong, not "no connection in 30 s"
                with conn.transaction():
                    create_or_migrate(conn, self.location)
        except psycopg.Error as exc:
            raise self.fail("open", exc) from None

    # -- connections ----------------------------------------------------------------------

    def _direct(self) -> psycopg.Connection:
        try:
            return StoreConnection.connect(self.url, application_name="profviz", connect_timeout=10, autocommit=True,
                                           row_factory=_row_factory)
        except psycopg.Error as exc:
            raise self.fail("connect to", exc) from None

    def _the_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = _Pool(
                    self.url, connection_class=StoreConnection, min_size=1, max_size=self.max_connections, num_workers=1,
                    open=True, timeout=min(10.0, self.busy_timeout_s), reconnect_timeout=max(60.0, self.busy_timeout_s),
                    kwargs={"application_name": "profviz", "connect_timeout": 10, "autocommit": True, "row_factory": _row_factory},
                    name="profviz-store")
            return self._pool

    def fail(self, action: str, exc: BaseException) -> StoreError:
        """The StoreError (with what to do) for a driver error raised while trying to ``action`` the store."""
        if isinstance(exc, StoreError):
            return exc
        text = " ".join(str(exc).replace(self.url, self.location).split())
        password = _password_of(self.url)
        if password:
            text = text.replace(password, "***")
        text = text[:300]
        where = self.location
        if isinstance(exc, pg_errors.DiskFull) or "No space left" in text:
            return StoreError(f"cannot {action} store {where}: the database server's disk is full ({text}): free space on it")
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return StoreError(f"cannot {action} store {where} ({text}): GRANT the user in the URL the rights it needs, "
                              "or use a database it owns")
        if "password authentication failed" in text or "no password supplied" in text:
            return StoreError(f"cannot {action} store {where}: the server refused the user or password in the URL ({text}): "
                              "check them (the password may come from the URL, PGPASSWORD or ~/.pgpass)")
        if isinstance(exc, pg_errors.InvalidCatalogName) or ("database" in text and "does not exist" in text):
            return StoreError(f"cannot {action} store {where} ({text}): create the database first (createdb), "
                              "or fix its name in the URL")
        if isinstance(exc, (psycopg.OperationalError, PoolTimeout)):
            return StoreError(f"cannot {action} store {where}: the PostgreSQL server did not answer ({text}): "
                              "is it running, and listening on the host and port in the URL?")
        return StoreError(f"cannot {action} store {where}: {text}")

    def transaction(self, action: str, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work(conn)`` in one transaction; a connection lost or a server restarting is
        retried (a new connection each time) until ``busy_timeout_s`` has passed."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.05
        while True:
            try:
                with self._the_pool().connection() as conn:
                    with conn.transaction():
                        if getattr(self._local, "relaxed", False):
                            conn.execute("SET LOCAL synchronous_commit = off")
                        return work(conn)
            except (psycopg.OperationalError, PoolTimeout, *_RETRIED) as exc:
                if isinstance(exc, pg_errors.DiskFull) or isinstance(exc, pg_errors.InsufficientPrivilege) or time.monotonic() >= deadline:
                    raise self.fail(action, exc) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except (psycopg.DataError, psycopg.IntegrityError, OverflowError, UnicodeError) as exc:
                if isinstance(exc, pg_errors.CheckViolation) and "no partition" in str(exc):
                    self.forget_days()  # dropped by retention elsewhere: made again by the next write
                    raise PartitionMissing(f"cannot {action} store {self.location}: a day partition it needs was dropped "
                                           "meanwhile (retention); write again") from None
                raise StoreValueError(f"cannot {action} store {self.location}: a value it cannot hold "
                                      f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
            except psycopg.Error as exc:
                raise self.fail(action, exc) from None

    def ensure_days(self, table: str, days: set[int]) -> None:
        """Make sure ``table`` has the partitions of ``days`` (made in a transaction of their own; the
        ones known to exist are remembered, :meth:`forget_days` forgets them)."""
        missing = {day for day in days if (table, day) not in self._days}
        if missing:
            self.transaction("make day partitions in", lambda c: ensure_days(c, table, missing))
            self._days.update((table, day) for day in missing)

    def forget_days(self) -> None:
        """Partitions were dropped (retention, perhaps by another process): check them again before writing."""
        self._days.clear()

    def write_in_days(self, table: str, days: set[int], action: str, work: Callable[[psycopg.Connection], T]) -> T:
        """:meth:`transaction` of a write into ``table``'s partitions of ``days``: made first, and made
        again (once) when retention elsewhere dropped one meanwhile."""
        self.ensure_days(table, days)
        try:
            return self.transaction(action, work)
        except PartitionMissing:
            self.forget_days()
            self.ensure_days(table, days)
            return self.transaction(action, work)

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Run one query written with ``?`` placeholders (:mod:`profviz.store.queries`) and return its rows."""
        return self.fetch(translated(sql), params)

    def fetch(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[Row]:
        """Run one query written with ``%s`` (or ``%(name)s``) placeholders and return its rows."""
        bound = params if isinstance(params, dict) else tuple(params)
        return self.transaction("read", lambda c: c.execute(sql, bound).fetchall())

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def check_writable(self) -> None:
        self.transaction("write to", lambda conn: conn.execute("DELETE FROM store_info WHERE false"))

    def relax_durability(self) -> None:
        """This thread's commits do not wait for the server's disk (``synchronous_commit = off``)."""
        self._local.relaxed = True


def redacted_url(url: str) -> str:
    """The URL without its password (``postgresql://user:***@host/db``), and without a ``password=``
    parameter (of a URL or of a ``key=value`` connection string)."""
    scheme, sep, rest = url.partition("://")
    if sep:
        head, at, tail = rest.rpartition("@")
        if at and ":" in head:
            rest = head.split(":", 1)[0] + ":***@" + tail
        url = f"{scheme}{sep}{rest}"
    return re.sub(r"password\s*=\s*('[^']*'|[^&\s]*)", "password=***", url)


def _password_of(url: str) -> str | None:
    """The password in a URL's user part or ``password=`` parameter, if any (to scrub from messages)."""
    scheme, sep, rest = url.partition("://")
    head, at, _ = rest.rpartition("@")
    if sep and at and ":" in head:
        return head.split(":", 1)[1] or None
    found = re.search(r"password\s*=\s*('[^']*'|[^&\s]*)", url)
    return found.group(1).strip("'") or None if found else None
