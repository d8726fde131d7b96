"""The SQLite store: round trips, metadata, ordering, deletion, and its error messages."""

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from profviz.model import Profile, State
from profviz.store import ProfileNotFound, Store, StoreError, default_store_path


def make_profile(start_ns: int, hostile: bool = False) -> Profile:
    profile = Profile({"kind": "attach", "pid": 42, "cmdline": "python app.py", "rate_hz": 100.0,
                       "start_ns": start_ns, "duration_ns": 2_000_000_000, "error_count": 3,
                       "labels": {"env": "test"}, "notes": ["partial: target exited"]})
    name = '<script>alert(1)</script>\u202e' + "x" * 10_000 if hostile else "handler"
    thread = profile.add_thread(42, 4242, "worker")
    stack = profile.intern_frames([("main", "app.py", 1), (name, "app.py", 7)])
    for i in range(500):
        state = State.ON_CPU if i % 3 else State.WAITING
        profile.append_sample(start_ns + i * 10_000_000, thread, stack, 10_000_000, state,
                              "socket recv 127.0.0.1:5432" if state == State.WAITING else None)
    return profile


def test_round_trip_keeps_tables_samples_and_metadata(tmp_path):
    store = Store(tmp_path / "s.db")
    original = make_profile(1_700_000_000_000_000_000, hostile=True)
    pid = store.save_profile(original)
    loaded = store.load_profile(pid)
    assert loaded.strings == original.strings
    assert list(loaded.stack_prefix) == list(original.stack_prefix)
    for name, column in original.columns().items():
        assert np.array_equal(loaded.columns()[name], column), name
    meta = store.profile_meta(pid)
    assert meta["kind"] == "attach" and meta["sample_count"] == 500 and meta["error_count"] == 3
    assert meta["labels"] == {"env": "test"} and meta["notes"] == ["partial: target exited"]
    assert meta["cpu_ns"] + meta["wait_ns"] == 500 * 10_000_000
    assert meta["thread_count"] == 1 and meta["format_version"] == 1


def test_list_is_newest_first_and_delete_removes(tmp_path):
    store = Store(tmp_path / "s.db")
    old = store.save_profile(make_profile(1_000))
    new = store.save_profile(make_profile(5_000))
    assert [m["id"] for m in store.list_profiles()] == [new, old]
    store.delete_profile(old)
    assert [m["id"] for m in store.list_profiles()] == [new]
    with pytest.raises(ProfileNotFound, match=f"no profile with id {old}"):
        store.load_profile(old)


def test_wal_mode_and_default_path_honours_env(tmp_path, monkeypatch):
    store = Store(tmp_path / "s.db")
    assert store.execute("PRAGMA journal_mode")[0][0] == "wal"
    monkeypatch.setenv("PROFVIZ_STORE", str(tmp_path / "env.db"))
    assert default_store_path() == tmp_path / "env.db"
    monkeypatch.delenv("PROFVIZ_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "profviz" / "profviz.db"


def test_corrupt_store_file_gives_a_fix(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="is corrupt .*move it aside, or use another store with --store PATH"):
        Store(path)


@pytest.mark.parametrize("where", ["/proc/self/profviz.db", "under-a-file"])
def test_unwritable_store_gives_a_fix(tmp_path, where):
    if where == "under-a-file":
        (tmp_path / "plain").write_text("x")
        where = str(tmp_path / "plain" / "s.db")
    with pytest.raises(StoreError, match="cannot open store .*make it writable, or pass --store PATH"):
        Store(where)


def test_damaged_profile_data_is_reported_not_crashed(tmp_path):
    store = Store(tmp_path / "s.db")
    pid = store.save_profile(make_profile(1_000))
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE profile_data SET samples = ? WHERE profile_id = ?", (b"PVZ1garbage", pid))
    with pytest.raises(StoreError, match=f"profile {pid} .* is damaged .*profviz delete {pid}"):
        store.load_profile(pid)


def test_two_processes_write_concurrently(tmp_path):
    path = tmp_path / "shared.db"
    Store(path)
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from tests.test_store import make_profile\nfrom profviz.store import Store\n"
        "s = Store(%r)\nfor i in range(15): s.save_profile(make_profile(i))\n" % (os.getcwd(), str(path))
    )
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    assert len(Store(path).list_profiles()) == 45


def test_save_profiles_round_trips_a_batch_in_one_transaction(tmp_path):
    store = Store(tmp_path / "s.db")
    before = store.save_profile(make_profile(1))
    store.delete_profile(before)  # AUTOINCREMENT: a deleted id is never handed out again
    profiles = [make_profile(1_000 + i, hostile=(i == 3)) for i in range(57)]  # more than one multi-row statement
    seen = []
    ids = store.save_profiles(profiles, also=lambda conn, new_ids: seen.append(
        conn.execute("SELECT count(*) FROM profiles").fetchone()[0]))
    assert len(set(ids)) == 57 and min(ids) > before and seen == [57]
    assert [p.meta["id"] for p in profiles] == ids
    for profile, profile_id in zip(profiles, ids):
        loaded = store.load_profile(profile_id)
        assert loaded.meta["start_ns"] == profile.meta["start_ns"]
        assert loaded.strings == profile.strings
        for name, column in profile.columns().items():
            assert np.array_equal(loaded.columns()[name], column), name
    assert store.profile_meta(ids[5]) | {"id": 0, "created_ns": 0} == \
        store.profile_meta(store.save_profile(make_profile(1_005))) | {"id": 0, "created_ns": 0}
    assert store.save_profile(make_profile(7)) > max(ids)
    assert store.save_profiles([]) == []


@pytest.mark.parametrize("failure", ["bad row", "also raises"])
def test_save_profiles_writes_nothing_when_one_insert_fails(tmp_path, failure):
    store = Store(tmp_path / "s.db")
    profiles = [make_profile(1), make_profile(2), make_profile(3)]
    also = None
    if failure == "bad row":
        profiles[1].meta["pid"] = object()  # cannot be bound: the second row's insert fails
    else:
        def also(conn, ids):
            conn.execute("INSERT INTO requests (pid) VALUES (1)")  # violates NOT NULL columns
    with pytest.raises(StoreError):
        store.save_profiles(profiles, also=also)
    assert store.list_profiles() == []
    assert store.execute("SELECT count(*) FROM profile_data")[0][0] == 0
    assert all("id" not in p.meta for p in profiles)
    assert store.save_profiles([make_profile(4)]) and len(store.list_profiles()) == 1
