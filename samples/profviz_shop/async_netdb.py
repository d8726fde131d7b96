"""An asyncio client for the shop's database server (the protocol of :mod:`profviz_shop.netdb`):
one JSON line each way per statement, over asyncio streams, from a fixed-size :class:`Pool`.

Each statement is a round trip the event loop waits on, as with asyncpg or aiomysql; a request
that runs fifty of them one after another (the N+1 route) waits fifty round trips, however many
other requests the loop serves meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Sequence

LARGE_ANSWER = 1 << 20

from profviz_shop.netdb import Error, OperationalError, Row, _row_type


class Connection:
    """One connection to the database server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, address: str) -> "Connection":
        host, _, port = address.rpartition(":")
        try:
            reader, writer = await asyncio.open_connection(host, int(port), limit=2**24)
            greeting = await reader.readline()
        except OSError as error:
            raise OperationalError(f"cannot reach the database server at {address}: {error}") from error
        if not greeting.startswith(b'{"ready"'):
            writer.close()
            raise OperationalError(f"the database server at {address} did not greet: {greeting[:80]!r}")
        return cls(reader, writer)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; its rows (by index or column name)."""
        self.writer.write(json.dumps({"sql": sql, "params": list(params)}).encode() + b"\n")
        line = await self.reader.readline()
        if not line:
            raise OperationalError("the database server closed the connection")
        # a large result is parsed in a worker thread, as a driver that decodes rows in C releases the loop
        answer = json.loads(line) if len(line) < LARGE_ANSWER else await asyncio.to_thread(json.loads, line)
        if "error" in answer:
            raise Error(answer["error"])
        row_type = _row_type(answer.get("columns") or [])
        return [row_type(values) for values in answer.get("rows") or []]

    def close(self) -> None:
        self.writer.close()


class Pool:
    """``size`` connections opened once; :meth:`fetch` borrows one for a statement (waiting in an
    ``asyncio.Queue`` when all are busy)."""

    def __init__(self, address: str, size: int = 10):
        self.address, self.size = address, size
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        self._opened = 0

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        connection = await self._checkout()
        try:
            return await connection.fetch(sql, params)
        except BaseException:
            connection.close()  # its state is unknown: open a new one next time
            self._opened -= 1
            raise
        finally:
            if not connection.writer.is_closing():
                self._idle.put_nowait(connection)

    async def _checkout(self) -> Connection:
        if self._idle.empty() and self._opened < self.size:
            self._opened += 1
            try:
                return await Connection.open(self.address)
            except BaseException:
                self._opened -= 1
                raise
        return await self._idle.get()

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()
