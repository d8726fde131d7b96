"""`profviz list`, `show` and `delete` through the real console script."""

import json
import subprocess

import pytest

from profviz.store import open_store
from tests.test_calltree import profile_with_recursion

SHOW_KEYS = {"id", "kind", "pid", "start", "duration_s", "sample_count", "rate_hz", "errors", "threads", "functions"}
THREAD_KEYS = {"tid", "name", "wall_s", "cpu_s", "wait_s", "runnable_s", "waits"}
FUNCTION_KEYS = {"function", "file", "line", "total_s", "self_s", "cpu_s", "wait_s"}


def profviz(*args, store, check=True):
    result = subprocess.run(["profviz", *args, "--store", str(store)], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def store_with_two(tmp_path):
    path = tmp_path / "s.db"
    store = open_store(path)
    first = profile_with_recursion()
    first.meta.update(kind="attach", pid=7, start_ns=1_000, duration_ns=65_000_000, rate_hz=100.0)
    second = profile_with_recursion()
    second.meta.update(kind="record", pid=8, start_ns=2_000, duration_ns=65_000_000)
    return path, store.save_profile(first), store.save_profile(second)


def test_list_json_newest_first(store_with_two):
    path, first, second = store_with_two
    entries = json.loads(profviz("list", "--json", store=path).stdout)
    assert [e["id"] for e in entries] == [second, first]
    assert entries[1]["kind"] == "attach" and entries[1]["sample_count"] == 4
    assert entries[1]["cpu_ns"] == 10_000_000 and entries[1]["wait_ns"] == 50_000_000, "the same entry as GET /api/profiles"
    text = profviz("list", store=path).stdout
    assert "attach" in text and "record" in text


def test_show_json_contract_and_thread_filter(store_with_two):
    path, first, _ = store_with_two
    summary = json.loads(profviz("show", str(first), "--json", store=path).stdout)
    assert SHOW_KEYS <= set(summary)
    assert all(THREAD_KEYS <= set(t) for t in summary["threads"])
    assert all(FUNCTION_KEYS <= set(f) for f in summary["functions"])
    wait = next(f for f in summary["functions"] if f["function"] == "wait")
    assert (wait["total_s"], wait["wait_s"], wait["cpu_s"]) == (0.05, 0.05, 0.0)
    only = json.loads(profviz("show", str(first), "--json", "--thread", "worker", store=path).stdout)
    assert [t["name"] for t in only["threads"]] == ["worker"]
    assert only["threads"][0]["waits"] == {"socket recv 127.0.0.1:80": 0.02}
    assert next(f for f in only["functions"] if f["function"] == "wait")["total_s"] == 0.02
    text = profviz("show", str(first), store=path).stdout
    assert "top functions by total time" in text and "socket recv 127.0.0.1:80" in text


def test_show_lists_the_busiest_threads_and_folds_idle_and_own_ones(tmp_path):
    """44 threads: 20 that work, 20 idle pool threads, profviz's sampler and writer, two stale names."""
    from profviz.model import Profile, State

    profile = Profile({"kind": "attach", "pid": 1, "start_ns": 0, "duration_ns": 1_000_000_000, "rate_hz": 100.0})
    stack = profile.intern_frames([("main", "app.py", 1), ("work", "app.py", 5)])
    names = [f"worker-{i}" for i in range(20)] + [f"pool-{i}" for i in range(20)] + ["profviz-sampler", "profviz-writer"]
    names += ["a-very-long-thread-name-that-would-hide-its-mark (stale name?)", "short (stale name?)"]
    for index, name in enumerate(names):
        thread = profile.add_thread(1, 100 + index, name)
        busy = name.startswith(("worker", "a-very", "short", "profviz"))
        for k in range(100):
            state = State.ON_CPU if busy and k < 10 + index else State.WAITING
            profile.append_sample(k * 10_000_000, thread, stack, 10_000_000, state)
    path = tmp_path / "s.db"
    profile_id = open_store(path).save_profile(profile)
    text = profviz("show", str(profile_id), store=path).stdout
    listed = [line.split(" (1")[0] for line in text.splitlines() if line.startswith(("worker-", "pool-", "profviz-", "a-very", "short"))]
    assert len(listed) == 15 and not any(n.startswith(("pool-", "profviz-")) for n in listed)
    assert listed[0].startswith("short"), "the busiest first"
    assert "(+ 20 idle threads (under 1% CPU), 20.00s of wall time: --all lists them)" in text
    assert "(+ 2 of profviz's own threads" in text and "(+ 7 more threads" in text
    long_line = next(line for line in text.splitlines() if line.startswith("a-very"))
    assert "~ (stale name?) (1" in long_line, "a shortened name keeps its mark"
    assert text.index("top functions by self time") < text.index("top functions by total time")
    every = profviz("show", str(profile_id), "--all", store=path).stdout
    missing = [name for name in names if name.split(" (stale")[0][:15] not in every]
    assert not missing and "--all lists them" not in every, missing


def test_errors_are_one_line_with_a_fix(store_with_two, tmp_path):
    path, first, _ = store_with_two
    missing = profviz("show", "999", store=path, check=False)
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == [f"profviz: no profile with id 999 in {path}: run 'profviz list' to see the ids"]
    bad_thread = profviz("show", str(first), "--thread", "nope", store=path, check=False)
    assert bad_thread.returncode != 0 and bad_thread.stderr.startswith("profviz: no thread matches 'nope'")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\x00garbage" * 512)
    result = profviz("list", store=corrupt, check=False)
    assert result.returncode != 0 and "is corrupt" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_delete(store_with_two):
    path, first, second = store_with_two
    assert f"deleted profile {first}" in profviz("delete", str(first), store=path).stdout
    assert [e["id"] for e in json.loads(profviz("list", "--json", store=path).stdout)] == [second]
    assert profviz("delete", str(first), store=path, check=False).returncode != 0


def old_and_new_requests(path) -> None:
    import time

    from profviz.model import RequestRow

    now, day = time.time_ns(), 86_400 * 10**9
    store = open_store(path)
    store.insert_requests([RequestRow(1, 2, "/a", "GET", "/a", 200, now - (10 if i < 5 else 0) * day - i * 10**9, 1000)
                           for i in range(8)])
    store.close()


def test_retain_deletes_what_is_older_than_the_duration(tmp_path):
    path = tmp_path / "r.db"
    old_and_new_requests(path)
    answer = json.loads(profviz("retain", "7d", "--json", store=path).stdout)
    assert answer["deleted"] == {"requests": 5, "spans": 0, "profiles": 0}
    assert len(open_store(path).query_requests()) == 3
    assert "deleted 0 requests" in profviz("retain", "7d", store=path).stdout
    bad = profviz("retain", "soon", store=path, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("profviz: ")


def test_serve_with_retain_deletes_old_data_when_it_starts(tmp_path):
    import socket
    import time

    path = tmp_path / "r.db"
    old_and_new_requests(path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["profviz", "serve", "--store", str(path), "--port", str(port), "--retain", "7d"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(open_store(path).query_requests()) != 3:
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.1)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "retention: deleted 5 requests, 0 spans and 0 profiles older than 7 days" in err
