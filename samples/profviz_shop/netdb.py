"""A DB-API 2.0 client for the shop's database server (:mod:`profviz_shop.dbserver`), over TCP.

The shop's database sits across a socket, as a production database does, so each query costs a
round trip and each new connection a handshake: the N+1 and connection-per-query routes are slow
for the reason they are in production, not by a few microseconds of in-process SQLite. The
protocol: the server greets a new connection with ``{"ready": true}`` once its handshake is done,
then one JSON line each way per statement: ``{"sql", "params"}``, then ``{"columns",
"rows", "lastrowid", "rowcount"}`` or ``{"error"}``.

``connect("127.0.0.1:PORT")`` gives a :class:`Connection` with ``cursor()``, the sqlite3-style
``execute()`` shortcut, ``commit()``/``rollback()`` (statements autocommit on the server) and
rows that read by index or by column name, like ``sqlite3.Row``.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Callable, Iterable, Sequence

apilevel = "2.0"
threadsafety = 1  # connections may not be shared between threads
paramstyle = "qmark"


class Error(Exception):
    """Any failure of the database or of the connection to it."""


class DatabaseError(Error):
    """The server refused or failed the statement."""


class OperationalError(DatabaseError):
    """The connection failed or was closed."""


class Row(tuple):
    """One result row: by index, by column name (``row["title"]``), and ``dict(row)``."""

    __slots__ = ()
    columns: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.columns[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.columns)


def _row_type(columns: Sequence[str]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "columns": {name: i for i, name in enumerate(columns)}})


class Cursor:
    """Runs statements on its connection and holds the last one's rows."""

    arraysize = 1

    def __init__(self, connection: "Connection"):
        self.connection = connection
        self.description: tuple | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Row] = []
        self._next = 0

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> "Cursor":
        answer = self.connection._round_trip(sql, list(parameters))
        columns = answer.get("columns") or []
        row_type = _row_type(columns)
        self._rows = [row_type(values) for values in answer.get("rows") or []]
        self._next = 0
        self.description = tuple((name, None, None, None, None, None, None) for name in columns) or None
        self.rowcount = answer.get("rowcount", -1)
        self.lastrowid = answer.get("lastrowid")
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]]) -> "Cursor":
        for parameters in seq_of_parameters:
            self.execute(sql, parameters)
        return self

    def fetchone(self) -> Row | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchmany(self, size: int | None = None) -> list[Row]:
        size = self.arraysize if size is None else size
        rows = self._rows[self._next : self._next + size]
        self._next += len(rows)
        return rows

    def fetchall(self) -> list[Row]:
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    def __iter__(self):
        return iter(self.fetchall())

    def close(self) -> None:
        self._rows = []


class Connection:
    """One TCP connection to the database server; ``on_statement`` (if set) sees each statement's SQL.
    ``database`` names what the server serves (the SQLite file's path, when the caller knows it)."""

    def __init__(self, host: str, port: int, timeout_s: float, database: str = "shop"):
        self.host, self.port, self.database = host, port, database
        self.on_statement: Callable[[str], None] | None = None
        try:
            self._socket = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise OperationalError(f"cannot connect to the shop's database server at {host}:{port}: {exc}") from None
        self._file = self._socket.makefile("rwb")
        try:
            greeting = self._file.readline()  # the server's handshake (TCP, TLS and authentication in a real database)
        except OSError as exc:
            self.close()
            raise OperationalError(f"the database server at {host}:{port} did not greet the connection: {exc}") from None
        if not greeting.startswith(b'{"ready"'):
            self.close()
            raise OperationalError(f"the database server at {host}:{port} closed the connection before its greeting")

    def _round_trip(self, sql: str, params: list) -> dict:
        if self._file is None:
            raise OperationalError("the connection is closed")
        if self.on_statement is not None:
            self.on_statement(sql)
        try:
            self._file.write(json.dumps({"sql": sql, "params": params}).encode() + b"\n")
            self._file.flush()
            line = self._file.readline()
        except OSError as exc:  # a timeout included: the stream is out of step now, so the connection is done
            self.close()
            raise OperationalError(f"the database server at {self.host}:{self.port} failed: {exc}") from None
        if not line:
            self.close()
            raise OperationalError(f"the database server at {self.host}:{self.port} closed the connection")
        answer = json.loads(line)
        if "error" in answer:
            raise DatabaseError(answer["error"])
        return answer

    def cursor(self) -> Cursor:
        return Cursor(self)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def commit(self) -> None:
        """Statements autocommit on the server."""

    def rollback(self) -> None:
        """Statements autocommit on the server: nothing to undo."""

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._socket.close()
            self._file = None

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc_info) -> None:
        self.commit()


def connect(address: str, timeout_s: float = 10.0, database: str = "shop") -> Connection:
    """Connect to the database server at ``address`` (``"127.0.0.1:PORT"``) serving ``database``."""
    host, _, port = address.rpartition(":")
    return Connection(host, int(port), timeout_s, database)
