"""The profile store: one SQLite file (stdlib sqlite3, WAL) holding profiles, requests and spans.

The path is, in order: an explicit path, ``$PROFVIZ_STORE``, or ``profviz/profviz.db`` under
the per-user data directory (``$XDG_DATA_HOME`` or ``~/.local/share``). Profile metadata lives in
queryable columns; a profile's tables and samples live in two compressed blobs (see
:mod:`profviz.store.encoding`). Every save is one transaction, so a failed save leaves nothing
half-written. Connections are per thread; several processes may write at once (WAL, busy
timeout, retry on "database is locked").
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from ..errors import ProfvizError
from ..model import FORMAT_VERSION, Profile, State
from .encoding import SMALL_COLUMN_LIMIT, EncodingError, decode_profile, encode_samples, encode_tables
from .shared_stacks import STACK_NODES_SCHEMA, SharedStackProfile, decode_shared, encode_shared, is_shared

# 2: request_log (see profviz.store.requests); 3: stack_nodes (see profviz.store.shared_stacks).
# Older stores are migrated on open: each version only added tables, which SCHEMA creates.
SCHEMA_VERSION = 3
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    pid INTEGER,
    cmdline TEXT NOT NULL DEFAULT '',
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    rate_hz REAL,
    sample_count INTEGER NOT NULL,
    error_count INTEGER NOT NULL DEFAULT 0,
    thread_count INTEGER NOT NULL DEFAULT 0,
    cpu_ns INTEGER NOT NULL DEFAULT 0,
    wait_ns INTEGER NOT NULL DEFAULT 0,
    runnable_ns INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    notes TEXT NOT NULL DEFAULT '[]',
    format_version INTEGER NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS profiles_start ON profiles (start_ns);
CREATE TABLE IF NOT EXISTS profile_data (
    profile_id INTEGER PRIMARY KEY REFERENCES profiles (id) ON DELETE CASCADE,
    tables BLOB NOT NULL,
    samples BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    route TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    cpu_ns INTEGER NOT NULL DEFAULT 0,
    response_bytes INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    profile_id INTEGER REFERENCES profiles (id) ON DELETE SET NULL,
    labels TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS requests_route_start ON requests (route, method, start_ns);
CREATE INDEX IF NOT EXISTS requests_start ON requests (start_ns);
CREATE TABLE IF NOT EXISTS request_log (
    id INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'internal',
    status TEXT NOT NULL DEFAULT 'unset',
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    pid INTEGER,
    tid INTEGER,
    thread_name TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    approximate INTEGER NOT NULL DEFAULT 0,
    request_id INTEGER REFERENCES requests (id) ON DELETE SET NULL,
    source TEXT NOT NULL DEFAULT 'processor',
    UNIQUE (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_pid_start ON spans (pid, start_ns);
CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id);
""" + STACK_NODES_SCHEMA

PROFILE_COLUMNS = (
    "id", "kind", "pid", "cmdline", "start_ns", "duration_ns", "rate_hz", "sample_count", "error_count",
    "thread_count", "cpu_ns", "wait_ns", "runnable_ns", "labels", "notes", "format_version", "created_ns",
)


class StoreError(ProfvizError):
    """The store could not be opened, read or written. The message says what to do."""


class ProfileNotFound(StoreError):
    """No profile with the requested id exists."""


def default_store_path() -> Path:
    """``$PROFVIZ_STORE``, else ``profviz/profviz.db`` under ``$XDG_DATA_HOME`` or ``~/.local/share``."""
    explicit = os.environ.get("PROFVIZ_STORE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "profviz" / "profviz.db"


_PROFILE_FIELDS = (
    "kind, pid, cmdline, start_ns, duration_ns, rate_hz, sample_count, error_count,"
    " thread_count, cpu_ns, wait_ns, runnable_ns, labels, notes, format_version, created_ns"
)
_INSERT_PROFILE = f"INSERT INTO profiles ({_PROFILE_FIELDS})"
_INSERT_PROFILE_WITH_ID = f"INSERT INTO profiles (id, {_PROFILE_FIELDS}) VALUES "
_PROFILE_VALUES = " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_PROFILE_ROW_WITH_ID = "(" + ", ".join(["?"] * 17) + ")"
_PROFILES_PER_STATEMENT = 50  # 17 parameters a profile row: 850, under every SQLite's variable limit


def _sums(times: list[int], weights: list[int], states: list[int]) -> tuple[list[int], int, int]:
    """Weight by state (indexed by state value, 0..len(State)-1), first sample start, last sample end."""
    by_state = [0] * len(State)
    for state, weight in zip(states, weights):
        by_state[state] += weight
    first, end = (min(times), max(map(operator.add, times, weights))) if times else (0, 0)
    return by_state, first, end


def _encode_for_insert(profile: Profile | SharedStackProfile) -> tuple[tuple, bytes, bytes]:
    """A profile's ``profiles`` row values (without id) and its two data blobs."""
    meta = profile.meta
    thread_count = 1
    if type(profile) is SharedStackProfile:
        by_state, first, end = _sums(profile.times, profile.weights, profile.states)
        tables, samples = encode_shared(profile)
    elif profile.sample_count < SMALL_COLUMN_LIMIT:
        # Plain Python lists: numpy's per-call cost (the columns' copies included) dominates on the
        # many small per-request profiles.
        cols = profile.column_lists()
        by_state, first, end = _sums(cols["time_ns"], cols["weight_ns"], cols["state"])
    else:
        cols = profile.columns()
        by_state = {s: int(cols["weight_ns"][cols["state"] == int(s)].sum()) for s in State}
        first, end = profile.time_range_ns
    if type(profile) is not SharedStackProfile:
        tables, samples = encode_tables(profile), encode_samples(cols)
        thread_count = len(profile.threads)
    start_ns = int(meta.get("start_ns") or first or time.time_ns())
    duration_ns = int(meta.get("duration_ns") if meta.get("duration_ns") is not None else max(0, end - first))
    notes = meta.get("notes", [])
    row = (
        str(meta.get("kind", "unknown")), meta.get("pid"), str(meta.get("cmdline", "")), start_ns, duration_ns,
        meta.get("rate_hz"), profile.sample_count, int(meta.get("error_count", 0)), thread_count,
        by_state[State.ON_CPU], by_state[State.WAITING], by_state[State.RUNNABLE],
        json.dumps(meta.get("labels", {})), "[]" if type(notes) is list and not notes else json.dumps(notes), FORMAT_VERSION, time.time_ns(),
    )
    return row, tables, samples


def _row_to_meta(row: sqlite3.Row) -> dict[str, Any]:
    meta = dict(row)
    meta["labels"] = json.loads(meta.get("labels") or "{}")
    meta["notes"] = json.loads(meta.get("notes") or "[]")
    return meta


class Store:
    """A profviz store at ``path`` (see the module docstring for the default).

    Opening creates the file and schema if needed. Raises StoreError with a fix when the
    location is not writable or the file is not a profviz store.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, busy_timeout_s: float = 30.0):
        self.path = Path(path).expanduser() if path else default_store_path()
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._open_schema()

    # -- connections ----------------------------------------------------------------------

    def _fail(self, action: str, exc: BaseException) -> StoreError:
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

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            except (OSError, sqlite3.Error) as exc:
                raise self._fail("open", exc) from None
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _retry(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one transaction, retrying while SQLite reports a lock."""
        conn = self._connect()
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
                raise self._fail(action, exc) from None
            except sqlite3.DatabaseError as exc:
                raise self._fail(action, exc) from None

    def _open_schema(self) -> None:
        if self.path.exists() and not os.access(self.path, os.R_OK):
            raise StoreError(f"cannot read store {self.path} (permission denied): fix its permissions, or pass --store PATH")
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.DatabaseError as exc:
            raise self._fail("open", exc) from None

        def create(c: sqlite3.Connection) -> None:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            found = c.execute("SELECT value FROM store_info WHERE key = 'schema_version'").fetchone()
            if found is None:
                c.execute("INSERT INTO store_info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) in (1, 2):  # older versions lack only tables SCHEMA just created
                c.execute("UPDATE store_info SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            elif int(found[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {found[0]}, this profviz uses {SCHEMA_VERSION}: "
                    "upgrade profviz, or use another store with --store PATH"
                )

        self._retry("create the schema of", create)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Run one read-only query and return all rows (for analysis modules and the server)."""
        def work(c: sqlite3.Connection) -> list[sqlite3.Row]:
            return c.execute(sql, tuple(params)).fetchall()

        return self._retry("read", work)

    def transaction(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(conn)`` in one write transaction with lock retries; ``action`` names it in errors."""
        return self._retry(action, work)

    # -- profiles -------------------------------------------------------------------------

    def save_profile(self, profile: Profile) -> int:
        """Store a profile in one transaction and return its new id (also set as ``profile.meta['id']``).

        Summary columns (sample count, thread count, CPU/wait/runnable ns) come from the samples;
        the rest from ``profile.meta``: kind, pid, cmdline, start_ns, duration_ns, rate_hz,
        error_count, labels, notes.
        """
        row, tables, samples = _encode_for_insert(profile)

        def work(c: sqlite3.Connection) -> int:
            cur = c.execute(_INSERT_PROFILE + _PROFILE_VALUES, row)
            profile_id = int(cur.lastrowid)
            c.execute("INSERT INTO profile_data VALUES (?, ?, ?)", (profile_id, tables, samples))
            return profile_id

        profile_id = self._retry("write to", work)
        profile.meta["id"] = profile_id
        return profile_id

    def save_profiles(
        self, profiles: list[Profile | SharedStackProfile], also: Callable[[sqlite3.Connection, list[int]], None] | None = None
    ) -> list[int]:
        """Store several profiles in one transaction; their new ids, in order (also set as ``meta['id']``).
        A :class:`~profviz.store.shared_stacks.SharedStackProfile` is stored as its samples over
        its source's ``stack_nodes`` (which ``also`` may insert) and loads as a Profile.

        Stored exactly as :meth:`save_profile` stores each. All profiles are encoded before the
        transaction starts, and inserted with a few multi-row statements (one commit, a few GIL
        releases, whatever the count). ``also(conn, ids)``, when given, runs inside the same
        transaction (e.g. to insert rows referring to the new ids). If anything fails, nothing of
        the batch is written and no ``meta['id']`` is set.
        """
        encoded = [_encode_for_insert(profile) for profile in profiles]

        def work(c: sqlite3.Connection) -> list[int]:
            ids: list[int] = []
            if encoded:
                first = int(c.execute(_INSERT_PROFILE + _PROFILE_VALUES, encoded[0][0]).lastrowid)
                # the insert holds the write lock, and AUTOINCREMENT gave ``first`` above every id ever used:
                # the next ids are free, and explicit ids keep AUTOINCREMENT's sequence past them
                ids = list(range(first, first + len(encoded)))
                for start in range(1, len(encoded), _PROFILES_PER_STATEMENT):
                    chunk = encoded[start:start + _PROFILES_PER_STATEMENT]
                    c.execute(
                        _INSERT_PROFILE_WITH_ID + ", ".join([_PROFILE_ROW_WITH_ID] * len(chunk)),
                        [value for offset, (row, _, _) in enumerate(chunk) for value in (first + start + offset, *row)],
                    )
                for start in range(0, len(encoded), _PROFILES_PER_STATEMENT):
                    chunk = encoded[start:start + _PROFILES_PER_STATEMENT]
                    c.execute(
                        "INSERT INTO profile_data VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk)),
                        [value for offset, (_, tables, samples) in enumerate(chunk) for value in (ids[start + offset], tables, samples)],
                    )
            if also is not None:
                also(c, ids)
            return ids

        ids = self.transaction("write to", work)
        for profile, profile_id in zip(profiles, ids):
            profile.meta["id"] = profile_id
        return ids

    def profile_meta(self, profile_id: int) -> dict[str, Any]:
        rows = self.execute(f"SELECT {', '.join(PROFILE_COLUMNS)} FROM profiles WHERE id = ?", (int(profile_id),))
        if not rows:
            raise ProfileNotFound(f"no profile with id {profile_id} in {self.path}: run 'profviz list' to see the ids")
        return _row_to_meta(rows[0])

    def load_profile(self, profile_id: int) -> Profile:
        """Load a whole profile. Raises ProfileNotFound, or StoreError when its data is damaged."""
        meta = self.profile_meta(profile_id)
        rows = self.execute("SELECT tables, samples FROM profile_data WHERE profile_id = ?", (int(profile_id),))
        if not rows:
            raise StoreError(f"profile {profile_id} has no data in {self.path}: delete it with 'profviz delete {profile_id}'")
        tables, samples = rows[0]["tables"], rows[0]["samples"]
        try:
            if is_shared(tables):
                return decode_shared(meta, tables, samples, self._connect())
            return decode_profile(meta, tables, samples)
        except EncodingError as exc:
            raise StoreError(f"profile {profile_id} in {self.path} is damaged ({exc}): delete it with 'profviz delete {profile_id}'") from None

    def list_profiles(self, *, kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Profile metadata, newest first."""
        sql = f"SELECT {', '.join(PROFILE_COLUMNS)} FROM profiles"
        params: list[Any] = []
        if kind:
            sql += " WHERE kind = ?"
            params.append(kind)
        sql += " ORDER BY start_ns DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_row_to_meta(r) for r in self.execute(sql, params)]

    def delete_profile(self, profile_id: int) -> None:
        self.profile_meta(profile_id)

        def work(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM profile_data WHERE profile_id = ?", (int(profile_id),))
            c.execute("DELETE FROM profiles WHERE id = ?", (int(profile_id),))

        self._retry("delete from", work)

    def set_labels(self, profile_id: int, labels: dict[str, Any]) -> None:
        self.profile_meta(profile_id)
        self._retry("write to", lambda c: c.execute("UPDATE profiles SET labels = ? WHERE id = ?", (json.dumps(labels), int(profile_id))))

    def profile_bytes(self, profile_id: int) -> int:
        """Stored size of a profile's tables and samples in bytes."""
        rows = self.execute("SELECT length(tables) + length(samples) FROM profile_data WHERE profile_id = ?", (int(profile_id),))
        return int(rows[0][0]) if rows else 0


def open_store(store: "Store | str | os.PathLike | None" = None) -> Store:
    """A Store from a Store (returned as is), a path, or None (the default path)."""
    return store if isinstance(store, Store) else Store(store)
