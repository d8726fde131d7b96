"""The SQLite store: one file (stdlib sqlite3, WAL) holding profiles, requests and spans.

Profile metadata lives in queryable columns; a profile's tables and samples in two compressed
blobs (:mod:`profviz.store.encoding`). Connections are per thread; several processes may write at
once (WAL, busy timeout, retry on "database is locked").
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from ...model import Profile, RequestBatch, RequestRow, SharedStackProfile, Span
from ..base import PROFILE_META_KEYS, ProfileNotFound, Store, StoreError
from ..encoding import EncodingError, decode_profile
from ..shared_stacks import decode_shared, is_shared
from ..summary import SUMMARY_FIELDS, decode_meta, encode_profile
from . import requests, spans, stack_nodes
from .schema import create_or_migrate

T = TypeVar("T")

_INSERT_PROFILE = f"INSERT INTO profiles ({', '.join(SUMMARY_FIELDS)}) VALUES ({', '.join('?' * len(SUMMARY_FIELDS))})"
_INSERT_PROFILE_WITH_ID = f"INSERT INTO profiles (id, {', '.join(SUMMARY_FIELDS)}) VALUES "
_PROFILE_ROW_WITH_ID = "(" + ", ".join(["?"] * (len(SUMMARY_FIELDS) + 1)) + ")"
_PROFILES_PER_STATEMENT = 50  # 17 parameters a profile row: 850, under every SQLite's variable limit
_SELECT_META = f"SELECT {', '.join(PROFILE_META_KEYS)} FROM profiles"


class SQLiteStore(Store):
    """A store in the SQLite file at ``path``, created with its schema if needed.

    Raises StoreError with a fix when the location is not writable or the file is not a profviz store.
    """

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
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False)
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

    # -- profiles -------------------------------------------------------------------------

    def save_profiles(self, profiles: Sequence[Profile | SharedStackProfile]) -> list[int]:
        encoded = [encode_profile(profile) for profile in profiles]  # before the transaction: the lock is held briefly
        ids = self.transaction("write to", lambda c: self.insert_encoded(c, encoded))
        for profile, profile_id in zip(profiles, ids):
            profile.meta["id"] = profile_id
        return ids

    @staticmethod
    def insert_encoded(c: sqlite3.Connection, encoded: list) -> list[int]:
        """Insert encoded profiles with a few multi-row statements (one commit, a few GIL releases,
        whatever the count); their new ids."""
        if not encoded:
            return []
        first = int(c.execute(_INSERT_PROFILE, encoded[0].summary).lastrowid)
        # the insert holds the write lock, and AUTOINCREMENT gave ``first`` above every id ever used:
        # the next ids are free, and explicit ids keep AUTOINCREMENT's sequence past them
        ids = list(range(first, first + len(encoded)))
        for start in range(1, len(encoded), _PROFILES_PER_STATEMENT):
            chunk = encoded[start:start + _PROFILES_PER_STATEMENT]
            c.execute(
                _INSERT_PROFILE_WITH_ID + ", ".join([_PROFILE_ROW_WITH_ID] * len(chunk)),
                [value for offset, item in enumerate(chunk) for value in (first + start + offset, *item.summary)],
            )
        for start in range(0, len(encoded), _PROFILES_PER_STATEMENT):
            chunk = encoded[start:start + _PROFILES_PER_STATEMENT]
            c.execute(
                "INSERT INTO profile_data VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk)),
                [value for offset, item in enumerate(chunk) for value in (ids[start + offset], item.tables, item.samples)],
            )
        return ids

    def profile_meta(self, profile_id: int) -> dict[str, Any]:
        rows = self.read(_SELECT_META + " WHERE id = ?", (int(profile_id),))
        if not rows:
            raise ProfileNotFound(f"no profile with id {profile_id} in {self.path}: run 'profviz list' to see the ids")
        return decode_meta(rows[0])

    def load_profile(self, profile_id: int) -> Profile:
        meta = self.profile_meta(profile_id)
        rows = self.read("SELECT tables, samples FROM profile_data WHERE profile_id = ?", (int(profile_id),))
        if not rows:
            raise StoreError(f"profile {profile_id} has no data in {self.path}: delete it with 'profviz delete {profile_id}'")
        tables, samples = rows[0]["tables"], rows[0]["samples"]
        try:
            if is_shared(tables):
                return decode_shared(meta, tables, samples, lambda source, ids: stack_nodes.reaching(self, source, ids))
            return decode_profile(meta, tables, samples)
        except EncodingError as exc:
            raise StoreError(f"profile {profile_id} in {self.path} is damaged ({exc}): delete it with 'profviz delete {profile_id}'") from None

    def list_profiles(self, *, kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        sql, params = _SELECT_META, []
        if kind:
            sql += " WHERE kind = ?"
            params.append(kind)
        sql += " ORDER BY start_ns DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [decode_meta(r) for r in self.read(sql, params)]

    def delete_profile(self, profile_id: int) -> None:
        self.profile_meta(profile_id)

        def work(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM profile_data WHERE profile_id = ?", (int(profile_id),))
            c.execute("DELETE FROM profiles WHERE id = ?", (int(profile_id),))

        self.transaction("delete from", work)

    def set_labels(self, profile_id: int, labels: dict[str, Any]) -> None:
        self.profile_meta(profile_id)
        self.transaction("write to", lambda c: c.execute("UPDATE profiles SET labels = ? WHERE id = ?", (json.dumps(labels), int(profile_id))))

    def profile_bytes(self, profile_id: int) -> int:
        rows = self.read("SELECT length(tables) + length(samples) FROM profile_data WHERE profile_id = ?", (int(profile_id),))
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    # -- requests -------------------------------------------------------------------------

    def write_batch(self, batch: RequestBatch) -> list[int]:
        return requests.write_batch(self, batch)

    def query_requests(self, **window: Any) -> list[RequestRow]:
        return requests.query_requests(self, **window)

    def request_by_id(self, request_id: int) -> RequestRow:
        return requests.request_by_id(self, request_id)

    def request_columns(self, **window: Any) -> dict[str, list[Any]]:
        return requests.request_columns(self, **window)

    def latest_request_ns(self) -> int | None:
        return requests.latest_request_ns(self)

    def request_for_profile(self, profile_id: int) -> int | None:
        return requests.request_for_profile(self, profile_id)

    # -- spans ----------------------------------------------------------------------------

    def insert_spans(self, items: Iterable[Span], *, checked: bool = False) -> int:
        return spans.insert_spans(self, items, checked=checked)

    def query_spans(self, **where: Any) -> list[Span]:
        return spans.query_spans(self, **where)

    def count_spans(self) -> int:
        return int(self.read("SELECT count(*) FROM spans")[0][0])

    def newest_span_id(self) -> int | None:
        return self.read("SELECT max(id) FROM spans")[0][0]
