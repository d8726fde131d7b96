"""The SQLite store's schema and its migrations.

Versions: 1 profiles, requests, spans; 2 adds ``request_log`` (see :mod:`.requests`); 3 adds
``stack_nodes`` (see :mod:`profviz.store.shared_stacks`); 4 adds ``span_keys`` and ``span_log``
(see :mod:`.span_facts`), filled from the spans already stored; 5 adds ``profiles.gil_ns`` and
``requests.queue_ns``. A store of an older version is migrated on open by creating the tables and
adding the columns it lacks.
"""

from __future__ import annotations

import sqlite3

from ..base import StoreError

SCHEMA_VERSION = 5
MIGRATES_FROM = (1, 2, 3, 4)
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
) WITHOUT ROWID
"""


def create_or_migrate(conn: sqlite3.Connection, location: str) -> None:
    """Create the schema (inside the caller's transaction), or migrate an older store; raises
    StoreError for a store written by a newer profviz."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    found = conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'").fetchone()
    if found is None:
        conn.execute("INSERT INTO store_info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(found[0]) in MIGRATES_FROM:
        from .span_facts import backfill

        for table, column in ADDED_COLUMNS:
            if column.split()[0] not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        if int(found[0]) < 4:
            backfill(conn)
        conn.execute("UPDATE store_info SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    elif int(found[0]) != SCHEMA_VERSION:
        raise StoreError(
            f"store {location} has schema version {found[0]}, this profviz uses {SCHEMA_VERSION}: "
            "upgrade profviz, or use another store with --store PATH"
        )
