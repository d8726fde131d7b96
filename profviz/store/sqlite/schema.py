"""The SQLite store's schema and its migrations.

Versions: 1 profiles, requests, spans; 2 adds ``request_log`` (see :mod:`.requests`); 3 adds
``stack_nodes`` (see :mod:`profviz.store.shared_stacks`); 4 adds ``span_keys`` and ``span_log``
(see :mod:`.span_facts`), filled from the spans already stored; 5 adds ``profiles.gil_ns`` and
``requests.queue_ns``; 6 adds ``latency_sketches`` (see :mod:`.sketches`), filled from the requests
already stored; 7 adds ``ingested_batches`` (the batch ids of pushes a collector stored) and keeps
the sketches per origin label (service, host, version, env): they are made again from the requests. A store of an older version is migrated on open by creating the tables and
adding the columns it lacks.
"""

from __future__ import annotations

import sqlite3

from ..base import StoreError

SCHEMA_VERSION = 7
MIGRATES_FROM = (1, 2, 3, 4, 5, 6)
ADDED_COLUMNS = (("profiles", "gil_ns INTEGER NOT NULL DEFAULT 0"), ("requests", "queue_ns INTEGER"))

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
    gil_ns INTEGER NOT NULL DEFAULT 0,
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
    queue_ns INTEGER,
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
CREATE TABLE IF NOT EXISTS span_keys (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    system TEXT,
    database TEXT,
    source TEXT NOT NULL DEFAULT 'processor',
    UNIQUE (kind, text)
);
CREATE TABLE IF NOT EXISTS span_log (
    id INTEGER PRIMARY KEY,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS span_log_time ON span_log (first_ns);
CREATE TABLE IF NOT EXISTS stack_nodes (
    source TEXT NOT NULL,
    node INTEGER NOT NULL,
    prefix INTEGER NOT NULL,
    function TEXT NOT NULL,
    file TEXT NOT NULL,
    line INTEGER NOT NULL,
    PRIMARY KEY (source, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latency_sketches (
    route TEXT NOT NULL,
    method TEXT NOT NULL,
    service TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL DEFAULT '',
    env TEXT NOT NULL DEFAULT '',
    grain_ns INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    app BLOB NOT NULL,
    total BLOB,
    PRIMARY KEY (route, method, service, host, version, env, grain_ns, start_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS latency_sketches_time ON latency_sketches (grain_ns, start_ns);
CREATE TABLE IF NOT EXISTS ingested_batches (
    id TEXT PRIMARY KEY,
    received_ns INTEGER NOT NULL,
    profile_ids TEXT NOT NULL DEFAULT '[]'
) WITHOUT ROWID
"""


def create_or_migrate(conn: sqlite3.Connection, location: str) -> None:
    """Create the schema (inside the caller's transaction), or migrate an older store; raises
    StoreError for a store written by a newer profviz."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "store_info" not in tables:
        raise StoreError(f"{location} is an SQLite file but not a profviz store (it has no store_info table): "
                         "use another store with --store PATH")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    found = stored_version(conn, location)
    if found is None:
        conn.execute("INSERT INTO store_info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif found in MIGRATES_FROM:
        from .span_facts import backfill

        if found < 7:  # the sketches gain their origin columns: made again below
            conn.execute("DROP TABLE IF EXISTS latency_sketches")
            for statement in SCHEMA.split(";"):
                if "latency_sketches" in statement:
                    conn.execute(statement)
        for table, column in ADDED_COLUMNS:
            if column.split()[0] not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        if found < 4:
            backfill(conn)
        if found < 7:  # rows still in request_log are sketched as they move into requests
            from .sketches import backfill as sketch_backfill

            sketch_backfill(conn)
        conn.execute("UPDATE store_info SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    else:
        check_version(found, location)


def stored_version(conn: sqlite3.Connection, location: str) -> int | None:
    """The store's schema version (None for a new store); StoreError when it is not a number."""
    try:
        found = conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise StoreError(f"{location} is an SQLite file but not a profviz store (it has no store_info table): "
                             "use another store with --store PATH") from None
        raise
    if found is None:
        return None
    try:
        return int(found[0])
    except (TypeError, ValueError):
        raise StoreError(f"store {location} has schema version {str(found[0])[:40]!r}, which is not a number: it was not written "
                         "by profviz, or is damaged; move it aside, or use another store with --store PATH") from None


def check_version(found: int | None, location: str, *, read_only: bool = False) -> None:
    """StoreError unless a store of schema ``found`` can be used as it is (``read_only``: it cannot be migrated)."""
    if found == SCHEMA_VERSION:
        return
    if found is None or found in MIGRATES_FROM and read_only:
        raise StoreError(f"store {location} is read-only and {'empty' if found is None else f'from an older profviz (schema {found})'}: "
                         "open it once with write access to create or upgrade it, or use another store with --store PATH")
    raise StoreError(
        f"store {location} has schema version {found}, this profviz uses {SCHEMA_VERSION}: "
        "upgrade profviz, or use another store with --store PATH"
    )
