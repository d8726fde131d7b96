"""The SQLite backend beyond the contract: where it lives, WAL, its error messages, the append-only
request_log and its materialization by readers (also across real processes), schema migration."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from http import HTTPStatus
from pathlib import Path

import pytest

from profviz.model import RequestBatch, RequestRow
from profviz.store import StoreError, default_store_path, open_store
from profviz.store.sqlite import SQLiteStore
from profviz.store.sqlite import requests as sqlite_requests
from profviz.store.sqlite.schema import SCHEMA, SCHEMA_VERSION
from tests.test_store_contract import make_profile, request_row, sampled_stacks, save_shared, shared

T0 = 1_700_000_000_000_000_000


def batch(first: int, count: int, **fields) -> RequestBatch:
    out = RequestBatch()
    for i in range(first, first + count):
        out.add_row(request_row(i, **fields))
    return out


def table_count(store: SQLiteStore, table: str) -> int:
    return store.read(f"SELECT count(*) FROM {table}")[0][0]


# -- where it lives -------------------------------------------------------------------------------


def test_paths_and_urls_open_sqlite_stores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_store(tmp_path / "a.db"), SQLiteStore) and (tmp_path / "a.db").exists()
    assert open_store(f"sqlite://{tmp_path}/b.db").location == str(tmp_path / "b.db")
    assert open_store(f"sqlite:///{tmp_path}/c.db").location == str(tmp_path / "c.db")
    assert Path(open_store("sqlite:rel/d.db").location) == Path("rel/d.db") and (tmp_path / "rel" / "d.db").exists()
    assert open_store("data:v2.db").location == "data:v2.db" and (tmp_path / "data:v2.db").exists(), "a colon alone is a path"
    for bad, message in (("mysql://me@db/profviz", "scheme 'mysql' is not supported"),
                         ("sqlite://", "names no file")):
        with pytest.raises(StoreError, match=message):
            open_store(bad)


def test_the_default_store_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROFVIZ_STORE", str(tmp_path / "env.db"))
    assert open_store().location == open_store("").location == str(tmp_path / "env.db")
    assert default_store_path() == tmp_path / "env.db"
    monkeypatch.delenv("PROFVIZ_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "profviz" / "profviz.db"
    assert open_store().location == str(tmp_path / "xdg" / "profviz" / "profviz.db")


def test_the_store_is_in_wal_mode(tmp_path):
    assert open_store(tmp_path / "s.db").read("PRAGMA journal_mode")[0][0] == "wal"


def test_a_corrupt_store_file_gives_a_fix(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="is corrupt .*move it aside, or use another store with --store PATH"):
        open_store(path)


@pytest.mark.parametrize("where", ["/proc/self/profviz.db", "under-a-file", "a directory"])
def test_an_unwritable_store_gives_a_fix(tmp_path, where):
    if where == "under-a-file":
        (tmp_path / "plain").write_text("x")
        where = str(tmp_path / "plain" / "s.db")
    elif where == "a directory":
        where = str(tmp_path)
    with pytest.raises(StoreError, match="cannot open store .*make it writable, or pass --store PATH"):
        open_store(where)


def test_damaged_profile_data_is_reported_not_crashed(tmp_path):
    store = open_store(tmp_path / "s.db")
    profile_id = store.save_profile(make_profile(1_000))
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE profile_data SET samples = ? WHERE profile_id = ?", (b"PVZ1garbage", profile_id))
    with pytest.raises(StoreError, match=f"profile {profile_id} .* is damaged .*profviz delete {profile_id}"):
        store.load_profile(profile_id)


@pytest.mark.parametrize("damage, message", [
    ("samples", "not a whole number of 40-byte samples"),
    ("head", "head is damaged"),
    ("cycle", "not a stored node before it"),
])
def test_a_damaged_shared_stack_profile_is_refused_with_a_fix(tmp_path, damage, message):
    sampler, stack_ids = sampled_stacks()
    store = open_store(tmp_path / "s.db")
    profile_id = save_shared(store, shared(sampler, stack_ids), sampler)
    sql = {
        "samples": "UPDATE profile_data SET samples = substr(samples, 2)",
        "head": "UPDATE profile_data SET tables = X'50565a537b'",  # MAGIC + '{'
        "cycle": "UPDATE stack_nodes SET prefix = node + 1 WHERE node = 0",
    }[damage]
    store.transaction("test", lambda c: c.execute(sql))
    with pytest.raises(StoreError, match=f"profile {profile_id} .* is damaged .*{message}.*: delete it with 'profviz delete {profile_id}'"):
        store.load_profile(profile_id)


# -- the request log ------------------------------------------------------------------------------


def test_a_batch_is_one_log_row_until_a_reader_materializes_it(tmp_path):
    store = open_store(tmp_path / "s.db")
    store.write_batch(batch(0, 300))
    store.write_batch(batch(300, 5))
    assert [tuple(r) for r in store.read("SELECT rows FROM request_log ORDER BY id")] == [(300,), (5,)]
    assert table_count(store, "requests") == 0
    rows = store.query_requests()
    assert table_count(store, "request_log") == 0 and len(rows) == 305
    assert [r.path for r in rows] == [f"/posts/{i}" for i in range(305)]
    assert store.read("SELECT count(*) FROM requests WHERE error IS NULL AND profile_id IS NULL")[0][0] == 305
    assert sqlite_requests.materialize_requests(store) == 0


def test_every_reader_sees_pending_rows(tmp_path):
    store = open_store(tmp_path / "s.db")
    profile_id = store.save_profile(make_profile(T0))
    store.write_batch(batch(0, 1, error="boom", profile_id=profile_id))
    assert store.request_by_id(1).error == "boom"
    store.write_batch(batch(1, 1))
    assert store.latest_request_ns() == T0 + 1_000_000 + 2_000_001
    store.write_batch(batch(2, 1))
    assert store.request_columns()["id"] == [1, 2, 3]
    open_store(tmp_path / "s.db").write_batch(batch(3, 1, profile_id=profile_id))
    assert store.request_for_profile(profile_id) == 1
    assert table_count(store, "request_log") == 0 and table_count(store, "requests") == 4


def test_unreadable_or_hostile_batches_are_dropped_without_running_code(tmp_path, capsys):
    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    store = open_store(tmp_path / "s.db")
    store.write_batch(batch(0, 1))
    width = len(batch(0, 1).values)
    bad = [(1, b"not a pickle"), (1, pickle.dumps([RunsCode()])), (1, pickle.dumps([HTTPStatus.OK] * width)),
           (2, pickle.dumps(batch(0, 1).values)), (1, pickle.dumps({"a": 1}))]
    store.transaction("test", lambda c: c.executemany("INSERT INTO request_log (rows, data) VALUES (?, ?)", bad))
    store.write_batch(batch(1, 1))
    assert [r.path for r in store.query_requests()] == ["/posts/0", "/posts/1"]
    assert not (tmp_path / "ran").exists()
    err = capsys.readouterr().err
    assert err.count("is unreadable") == 5 and "names posix.system" in err
    # an enum member pickles by its class (3.11.7 here) or through getattr (Debian's 3.11.2): refused either way
    assert "names http.HTTPStatus" in err or "names builtins.getattr" in err


def test_materialization_moves_bounded_chunks_in_order(tmp_path, monkeypatch):
    store = open_store(tmp_path / "s.db")
    for first in range(0, 300, 30):
        store.write_batch(batch(first, 30))
    monkeypatch.setattr(sqlite_requests, "MATERIALIZE_CHUNK_ROWS", 50)
    transactions = []
    real = store.transaction
    monkeypatch.setattr(store, "transaction", lambda action, work: transactions.append(action) or real(action, work))
    assert sqlite_requests.materialize_requests(store) == 300
    assert transactions.count("move logged requests into") == 5, "two 30-row batches (>= 50 rows) a transaction"
    assert [r.path for r in store.query_requests()] == [f"/posts/{i}" for i in range(300)]


def test_no_pending_rows_means_no_write_lock(tmp_path):
    path = tmp_path / "s.db"
    open_store(path)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        reader = SQLiteStore(path, busy_timeout_s=0.3)
        assert reader.query_requests() == []
        locker.execute("INSERT INTO request_log (rows, data) VALUES (1, ?)", (pickle.dumps(batch(0, 1).values),))
        locker.execute("COMMIT")
        locker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="stayed locked"):
            reader.query_requests()
    finally:
        locker.execute("ROLLBACK")
    assert len(reader.query_requests()) == 1


WORKER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from profviz.store import open_store
    from profviz.store.sqlite import requests as r
    from tests.test_store_sqlite import batch
    role, index, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = open_store(path)
    if role == "writer":
        for seq in range(40):
            first = index * 10_000 + seq * 25
            rows = batch(first, 25)
            rows.values[4::len(rows.values) // 25] = [f"w{{index}}/{{first + i}}" for i in range(25)]
            store.write_batch(rows)
    else:
        r.MATERIALIZE_CHUNK_ROWS = 30
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not store.read("SELECT 1 FROM store_info WHERE key = 'test_done'"):
            store.query_requests(limit=5)
    """)


def test_concurrent_writers_and_readers_in_other_processes_lose_and_duplicate_nothing(tmp_path):
    path = str(tmp_path / "s.db")
    store = open_store(path)
    code = WORKER.format(root=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    readers = [subprocess.Popen([sys.executable, "-c", code, "reader", str(i), path]) for i in range(2)]
    writers = [subprocess.Popen([sys.executable, "-c", code, "writer", str(i), path]) for i in range(3)]
    try:
        assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    finally:
        store.transaction("test", lambda c: c.execute("INSERT INTO store_info VALUES ('test_done', '1')"))
        assert [r.wait(timeout=120) for r in readers] == [0, 0]
    rows = store.query_requests()
    paths = [r.path for r in rows]
    expected = {f"w{w}/{w * 10_000 + i}" for w in range(3) for i in range(40 * 25)}
    assert len(paths) == len(expected) == 3000 and set(paths) == expected
    assert table_count(store, "request_log") == 0
    for w in range(3):
        ids = [r.id for r in sorted((r for r in rows if r.path.startswith(f"w{w}/")), key=lambda r: r.start_ns)]
        assert ids == sorted(ids), "each writer's rows keep its commit order"


# -- schema versions ------------------------------------------------------------------------------


def v1_store(path) -> None:
    """A schema-1 store as profviz 1 wrote it: no request_log nor stack_nodes, rows inserted straight into requests."""
    schema = SCHEMA[:SCHEMA.index("CREATE TABLE IF NOT EXISTS stack_nodes")]
    head, rest = schema.split("CREATE TABLE IF NOT EXISTS request_log")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(head + rest[rest.index(";") + 1:])
    conn.execute("INSERT INTO store_info VALUES ('schema_version', '1')")
    conn.execute(sqlite_requests._multi_row_insert(2), batch(0, 2).values)
    conn.commit()
    conn.close()


def test_a_schema_1_store_is_migrated_in_place_on_open(tmp_path):
    path = tmp_path / "v1.db"
    v1_store(path)
    assert not {"request_log", "stack_nodes"} & {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    store = open_store(path)
    assert store.read("SELECT value FROM store_info WHERE key = 'schema_version'")[0][0] == str(SCHEMA_VERSION) == "7"
    assert table_count(store, "stack_nodes") == 0
    store.write_batch(batch(2, 1))
    assert [(r.id, r.path) for r in store.query_requests()] == [(1, "/posts/0"), (2, "/posts/1"), (3, "/posts/2")]
    store.close()
    assert len(open_store(path).query_requests()) == 3, "a migrated store opens again"


def test_a_store_from_a_newer_profviz_is_refused(tmp_path):
    path = tmp_path / "newer.db"
    newer = SCHEMA_VERSION + 1
    open_store(path).transaction("test", lambda c: c.execute("UPDATE store_info SET value = ? WHERE key = 'schema_version'", (str(newer),)))
    with pytest.raises(StoreError, match=f"schema version {newer}, this profviz uses {SCHEMA_VERSION}: upgrade profviz"):
        open_store(path)


def test_a_store_from_before_span_facts_gets_them_from_its_spans(tmp_path):
    """Schema 3 had no span_log: opening such a store fills it from the spans already stored."""
    from profviz.model import Span

    path = tmp_path / "old.db"
    store = open_store(path)
    statement = {"db.system": "postgresql", "db.statement": "SELECT * FROM t WHERE id = 1"}
    store.insert_spans([Span("ab" * 16, f"{i:016x}", None, "SELECT", "client", "ok", 10**18 + i, 10**18 + i + 5,
                             pid=3, tid=4, attributes=statement) for i in range(1, 4)])
    store.close()
    with sqlite3.connect(path) as conn:  # as a schema-3 store was: no span facts
        conn.execute("DELETE FROM span_log")
        conn.execute("DELETE FROM span_keys")
        conn.execute("UPDATE store_info SET value = '3' WHERE key = 'schema_version'")
    conn.close()
    store = open_store(path)
    facts = store.span_facts(pids=[3], start_ns=0, end_ns=2 * 10**18)
    assert len(facts) == 3 and {facts.keys[k].text for k in facts.key.tolist()} == {"SELECT * FROM t WHERE id = ?"}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    conn.close()
    store.close()


def test_a_schema_4_store_gets_the_gil_and_queue_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v4.db"
    store = open_store(path)
    store.write_batch(batch(0, 2))
    store.close()
    with sqlite3.connect(path) as conn:  # as a schema-4 store was: no profiles.gil_ns, no requests.queue_ns
        conn.execute("ALTER TABLE profiles DROP COLUMN gil_ns")
        conn.execute("ALTER TABLE requests DROP COLUMN queue_ns")
        conn.execute("UPDATE store_info SET value = '4' WHERE key = 'schema_version'")
    conn.close()
    store = open_store(path)
    assert [(r.path, r.queue_ns) for r in store.query_requests()] == [("/posts/0", None), ("/posts/1", None)]
    assert all(meta["gil_ns"] == 0 for meta in store.list_profiles())
    assert store.read("SELECT value FROM store_info WHERE key = 'schema_version'")[0][0] == str(SCHEMA_VERSION)
    store.close()


def test_a_schema_5_store_gets_latency_sketches_of_its_stored_and_logged_requests(tmp_path):
    path = tmp_path / "v5.db"
    store = open_store(path)
    store.write_batch(batch(0, 30))
    assert len(store.query_requests()) == 30  # moved into requests (and sketched)
    store.write_batch(batch(30, 20))  # left in request_log
    store.close()
    with sqlite3.connect(path) as conn:  # as a schema-5 store was: no sketches
        conn.execute("DROP TABLE latency_sketches")
        conn.execute("UPDATE store_info SET value = '5' WHERE key = 'schema_version'")
    conn.close()
    store = open_store(path)
    (sketch,) = store.route_sketches()
    assert sketch.count == 50 and len(store.query_requests()) == 50
    assert store.read("SELECT value FROM store_info WHERE key = 'schema_version'")[0][0] == str(SCHEMA_VERSION)
    store.close()


def test_a_damaged_span_log_row_is_left_out_not_fatal(tmp_path):
    from profviz.model import Span

    store = open_store(tmp_path / "s.db")
    statement = {"db.system": "postgresql", "db.statement": "SELECT 1"}
    for batch in range(2):
        store.insert_spans([Span("ab" * 16, f"{batch * 10 + i:016x}", None, "SELECT", "client", "ok", 10**18 + i, 10**18 + i + 5,
                                 pid=3, tid=4, attributes=statement) for i in range(1, 4)])
    store.transaction("damage", lambda c: c.execute("UPDATE span_log SET data = X'00ff' WHERE id = 1"))
    assert len(store.span_facts(pids=[3], start_ns=0, end_ns=2 * 10**18)) == 3
    store.close()


def test_a_batch_logged_before_queue_times_and_one_with_them_both_read(tmp_path):
    """A request_log row of schema 4 (13 values a row) is read with unknown queue times; a new one keeps them."""
    from profviz.model.requests import OLD_FIELD_COUNT

    store = open_store(tmp_path / "s.db")
    old = batch(0, 2).values
    old_values = [v for start in range(0, len(old), OLD_FIELD_COUNT + 1) for v in old[start:start + OLD_FIELD_COUNT]]
    store.transaction("test", lambda c: c.execute("INSERT INTO request_log (rows, data) VALUES (?, ?)",
                                                  (2, pickle.dumps(old_values, protocol=4))))
    queued = batch(2, 1)
    queued.values[-1] = 7_000_000
    store.write_batch(queued)
    rows = store.query_requests()
    assert [(r.path, r.queue_ns, r.total_ns - r.duration_ns) for r in rows] == [
        ("/posts/0", None, 0), ("/posts/1", None, 0), ("/posts/2", 7_000_000, 7_000_000)]
    assert store.request_columns()["queue_ns"] == [None, None, 7_000_000]
    store.close()


def test_a_schema_version_that_is_not_a_number_is_a_one_line_error(tmp_path):
    path = tmp_path / "odd.db"
    open_store(path).transaction("test", lambda c: c.execute("UPDATE store_info SET value = 'v2-beta' WHERE key = 'schema_version'"))
    with pytest.raises(StoreError, match="schema version 'v2-beta', which is not a number"):
        open_store(path)
    result = subprocess.run([sys.executable, "-m", "profviz", "list", "--store", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and result.stderr.startswith("profviz: store ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a profviz store"):
        open_store(foreign)


def test_a_read_only_store_reads_and_a_write_says_what_to_do():
    """A store on a read-only filesystem (a tmpfs remounted ro): list, routes and show work; a write
    fails with one line naming the fix; nothing was changed."""
    from tests.mounts import remount, tmpfs

    with tmpfs() as where:
        path = where / "store.db"
        store = open_store(path)
        store.write_batch(batch(0, 3))
        profile_id = store.save_profile(make_profile(1_764_000_000 * 10**9))
        store.close()
        remount(where, "ro")
        try:
            def cli(*args):
                return subprocess.run([sys.executable, "-m", "profviz", *args, "--store", str(path)], capture_output=True, text=True, timeout=60)

            listed = cli("list", "--json")
            assert listed.returncode == 0 and [p["id"] for p in json.loads(listed.stdout)] == [profile_id], listed.stderr
            routes = cli("routes", "--json")
            assert routes.returncode == 0 and json.loads(routes.stdout)[0]["count"] == 3, routes.stderr
            assert cli("show", str(profile_id)).returncode == 0
            reader = open_store(path)
            assert reader.read_only and len(reader.query_requests()) == 3
            with pytest.raises(StoreError, match="make it writable"):
                reader.write_batch(batch(3, 1))
            reader.close()
        finally:
            remount(where, "rw")


def test_a_schema_6_store_gets_the_ingested_batches_table(tmp_path):
    path = tmp_path / "v6.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE ingested_batches")
        conn.execute("UPDATE store_info SET value = '6' WHERE key = 'schema_version'")
    conn.close()
    store = open_store(path)
    batch = RequestBatch()
    batch.add_row(RequestRow(pid=1, tid=1, route="/", method="GET", path="/", status=200, start_ns=10**18, duration_ns=5))
    store.write_batch(batch, batch_id="b1")
    store.write_batch(batch, batch_id="b1")
    assert len(store.query_requests()) == 1
    assert store.read("SELECT value FROM store_info WHERE key = 'schema_version'")[0][0] == "7"
    store.close()
