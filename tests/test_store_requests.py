"""The store's requests: the append-only request_log, materialization by readers (also across real
processes), rows SQLite refuses, deleted profiles, and the migration of schema-1 stores."""

import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from http import HTTPStatus

import pytest

from profviz.model import Profile, State
from profviz.store import SCHEMA, SCHEMA_VERSION, Store, StoreError
from profviz.store.shared_stacks import STACK_NODES_SCHEMA
from profviz.store import requests as store_requests
from profviz.store.requests import (
    ROW_WIDTH, RequestRow, _multi_row_insert, insert_request_params, insert_requests, latest_request_ns,
    materialize_requests, query_requests, request_by_id, request_columns,
)
from profviz.store.spans import request_for_profile

T0 = 1_700_000_000_000_000_000


def row_params(i: int, *, error: str = "", profile_id: int = 0, route: str = "/posts/<id>") -> list:
    """One row's parameters as the middleware's writer lays them out."""
    return [4000 + i % 3, 7, route, "GET", f"/posts/{i}", 200, T0 + i * 1_000_000, 2_000_000 + i, 1_000_000,
            512, error, profile_id, '{"request_id": "r%d"}' % i]


def batch(first: int, count: int, **kwargs) -> list:
    return [value for i in range(first, first + count) for value in row_params(i, **kwargs)]


def table_count(store: Store, table: str) -> int:
    return store.execute(f"SELECT count(*) FROM {table}")[0][0]


def saved_profile(store: Store) -> int:
    profile = Profile({"kind": "request", "pid": 1, "start_ns": T0, "duration_ns": 1_000_000})
    thread = profile.add_thread(1, 7, "worker")
    profile.append_sample(T0, thread, profile.intern_frames([("handler", "app.py", 3)]), 1_000_000, State.ON_CPU, None)
    return store.save_profile(profile)


def test_a_batch_is_one_log_row_until_a_reader_materializes_it(tmp_path):
    store = Store(tmp_path / "s.db")
    assert insert_request_params(store, batch(0, 300)) == 300
    assert insert_request_params(store, batch(300, 5)) == 5
    assert [tuple(r) for r in store.execute("SELECT rows FROM request_log ORDER BY id")] == [(300,), (5,)]
    assert table_count(store, "requests") == 0
    rows = query_requests(store)
    assert table_count(store, "request_log") == 0 and len(rows) == 305
    assert [r.path for r in rows] == [f"/posts/{i}" for i in range(305)]
    assert [r.id for r in rows] == sorted(r.id for r in rows), "ids follow commit order"
    first = rows[0]
    assert (first.pid, first.tid, first.route, first.status, first.start_ns, first.duration_ns, first.cpu_ns) == (
        4000, 7, "/posts/<id>", 200, T0, 2_000_000, 1_000_000)
    assert first.response_bytes == 512 and first.labels == {"request_id": "r0"}
    assert first.error is None and first.profile_id is None, "'' and 0 are stored as NULL"
    assert store.execute("SELECT count(*) FROM requests WHERE error IS NULL AND profile_id IS NULL")[0][0] == 305
    assert materialize_requests(store) == 0


def test_every_reader_sees_pending_rows(tmp_path):
    store = Store(tmp_path / "s.db")
    profile_id = saved_profile(store)
    insert_request_params(store, batch(0, 1, error="boom", profile_id=profile_id))
    assert request_by_id(store, 1).error == "boom"
    insert_request_params(store, batch(1, 1))
    assert latest_request_ns(store) == T0 + 1_000_000 + 2_000_001
    insert_request_params(store, batch(2, 1))
    assert request_columns(store)["id"] == [1, 2, 3]
    other = Store(tmp_path / "s.db")
    insert_request_params(other, batch(3, 1, profile_id=profile_id))
    assert request_for_profile(store, profile_id) == 1
    assert table_count(store, "request_log") == 0 and table_count(store, "requests") == 4


def test_rows_commit_with_the_callers_transaction(tmp_path):
    store = Store(tmp_path / "s.db")
    profile = Profile({"kind": "request", "pid": 1, "start_ns": T0, "duration_ns": 1})

    def rows_then_fail(conn, ids):
        insert_request_params(store, batch(0, 3, profile_id=ids[0]), conn=conn)
        raise RuntimeError("the caller's transaction fails after the rows")

    with pytest.raises(RuntimeError):
        store.save_profiles([profile], also=rows_then_fail)
    assert table_count(store, "request_log") == 0 and not store.list_profiles()
    (profile_id,) = store.save_profiles([profile], also=lambda conn, ids: insert_request_params(
        store, batch(0, 3, profile_id=ids[0]), conn=conn))
    assert [r.profile_id for r in query_requests(store)] == [profile_id] * 3


def test_a_profile_deleted_before_materialization_leaves_a_null_profile_id(tmp_path):
    store = Store(tmp_path / "s.db")
    kept, deleted = saved_profile(store), saved_profile(store)
    insert_request_params(store, batch(0, 1, profile_id=kept) + batch(1, 1, profile_id=deleted))
    store.delete_profile(deleted)
    assert [r.profile_id for r in query_requests(store)] == [kept, None]


def test_rows_sqlite_refuses_are_dropped_alone_with_a_notice(tmp_path, capsys):
    store = Store(tmp_path / "s.db")
    params = batch(0, 2) + batch(2, 1, route="/bad\udc80") + batch(3, 1)
    params[ROW_WIDTH + 6] = 2 ** 70  # row 1: a start_ns over 64 bits
    insert_request_params(store, params)
    assert [r.path for r in query_requests(store)] == ["/posts/0", "/posts/3"]
    err = capsys.readouterr().err
    assert err.startswith("profviz: dropped logged requests") and err.count("SQLite refuses") == 2
    assert table_count(store, "request_log") == 0


def test_unreadable_or_hostile_batches_are_dropped_without_running_code(tmp_path, capsys):
    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    store = Store(tmp_path / "s.db")
    insert_request_params(store, batch(0, 1))
    bad = [(1, b"not a pickle"), (1, pickle.dumps([RunsCode()])), (1, pickle.dumps([HTTPStatus.OK] * ROW_WIDTH)),
           (2, pickle.dumps(batch(0, 1))), (1, pickle.dumps({"a": 1}))]
    store.transaction("test", lambda c: c.executemany("INSERT INTO request_log (rows, data) VALUES (?, ?)", bad))
    insert_request_params(store, batch(1, 1))
    assert [r.path for r in query_requests(store)] == ["/posts/0", "/posts/1"]
    assert not (tmp_path / "ran").exists()
    err = capsys.readouterr().err
    assert err.count("is unreadable") == 5 and "names posix.system" in err and "names http.HTTPStatus" in err


def test_insert_requests_stores_int_and_str_subclasses_as_plain_values(tmp_path):
    store = Store(tmp_path / "s.db")
    row = RequestRow(pid=1, tid=2, route="/r", method="GET", path="/r", status=HTTPStatus.NOT_FOUND,
                     start_ns=T0, duration_ns=5, labels={"capacity": 4})
    assert insert_requests(store, [row]) == 1
    (stored,) = query_requests(store)
    assert stored.status == 404 and type(stored.status) is int and stored.labels == {"capacity": 4}
    assert request_columns(store)["capacity"] == [4]


def test_materialization_moves_bounded_chunks_in_order(tmp_path, monkeypatch):
    store = Store(tmp_path / "s.db")
    for first in range(0, 300, 30):
        insert_request_params(store, batch(first, 30))
    monkeypatch.setattr(store_requests, "MATERIALIZE_CHUNK_ROWS", 50)
    transactions = []
    real = store.transaction
    monkeypatch.setattr(store, "transaction", lambda action, work: transactions.append(action) or real(action, work))
    assert materialize_requests(store) == 300
    assert len(transactions) == 5, "two 30-row batches (>= 50 rows) a transaction"
    assert [r.path for r in query_requests(store)] == [f"/posts/{i}" for i in range(300)]


def test_no_pending_rows_means_no_write_lock(tmp_path):
    path = tmp_path / "s.db"
    Store(path)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        reader = Store(path, busy_timeout_s=0.3)
        assert query_requests(reader) == []
        locker.execute("INSERT INTO request_log (rows, data) VALUES (1, ?)", (pickle.dumps(batch(0, 1)),))
        locker.execute("COMMIT")
        locker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="stayed locked"):
            query_requests(reader)
    finally:
        locker.execute("ROLLBACK")
    assert len(query_requests(reader)) == 1


WORKER = textwrap.dedent("""
    import sys, time
    from profviz.store import Store
    from profviz.store import requests as r
    sys.path.insert(0, {tests!r})
    from test_store_requests import batch
    role, index, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = Store(path)
    if role == "writer":
        for seq in range(40):
            params = batch(index * 10_000 + seq * 25, 25)
            for at in range(4, len(params), r.ROW_WIDTH):
                params[at] = f"w{{index}}/{{params[at].rsplit('/', 1)[1]}}"
            r.insert_request_params(store, params)
    else:
        r.MATERIALIZE_CHUNK_ROWS = 30
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not store.execute("SELECT 1 FROM store_info WHERE key = 'test_done'"):
            r.query_requests(store, limit=5)
    """)


def test_concurrent_writers_and_readers_in_other_processes_lose_and_duplicate_nothing(tmp_path):
    path = str(tmp_path / "s.db")
    store = Store(path)
    code = WORKER.format(tests=os.path.dirname(__file__))
    readers = [subprocess.Popen([sys.executable, "-c", code, "reader", str(i), path]) for i in range(2)]
    writers = [subprocess.Popen([sys.executable, "-c", code, "writer", str(i), path]) for i in range(3)]
    try:
        assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    finally:
        store.transaction("test", lambda c: c.execute("INSERT INTO store_info VALUES ('test_done', '1')"))
        assert [r.wait(timeout=120) for r in readers] == [0, 0]
    rows = query_requests(store)
    paths = [r.path for r in rows]
    expected = {f"w{w}/{w * 10_000 + i}" for w in range(3) for i in range(40 * 25)}
    assert len(paths) == len(expected) == 3000 and set(paths) == expected
    assert table_count(store, "request_log") == 0
    for w in range(3):
        ids = [r.id for r in sorted((r for r in rows if r.path.startswith(f"w{w}/")), key=lambda r: r.start_ns)]
        assert ids == sorted(ids), "each writer's rows keep its commit order"


def v1_store(path) -> None:
    """A schema-1 store as profviz 1 wrote it: no request_log, rows inserted straight into requests."""
    head, rest = SCHEMA.replace(STACK_NODES_SCHEMA, "").split("CREATE TABLE IF NOT EXISTS request_log")
    schema = head + rest[rest.index(";") + 1:]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(schema)
    conn.execute("INSERT INTO store_info VALUES ('schema_version', '1')")
    conn.execute(_multi_row_insert(2), batch(0, 2))
    conn.commit()
    conn.close()


def test_a_schema_1_store_is_migrated_in_place_on_open(tmp_path):
    path = tmp_path / "v1.db"
    v1_store(path)
    assert not {"request_log", "stack_nodes"} & {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    store = Store(path)
    assert store.execute("SELECT value FROM store_info WHERE key = 'schema_version'")[0][0] == str(SCHEMA_VERSION) == "3"
    assert store.execute("SELECT count(*) FROM stack_nodes")[0][0] == 0
    insert_request_params(store, batch(2, 1))
    assert [(r.id, r.path) for r in query_requests(store)] == [(1, "/posts/0"), (2, "/posts/1"), (3, "/posts/2")]
    store.close()
    assert len(query_requests(Store(path))) == 3, "a migrated store opens again"


def test_a_store_from_a_newer_profviz_is_refused(tmp_path):
    path = tmp_path / "v4.db"
    Store(path).transaction("test", lambda c: c.execute("UPDATE store_info SET value = '4' WHERE key = 'schema_version'"))
    with pytest.raises(StoreError, match="schema version 4, this profviz uses 3: upgrade profviz"):
        Store(path)
