"""Folded stacks (py-spy --format raw) import/export on real py-spy files."""

import pytest

from profviz.analysis.calltree import SampleFilter, build_call_tree, function_stats
from profviz.formats import collapsed
from profviz.model import NO_STACK, Profile, State
from tests.formats_support import (
    HOSTILE,
    assert_format_error,
    data,
    files_not_of,
    files_of,
    function_names,
    function_totals,
    rich_profile,
    thread_totals,
)

MS = 1_000_000


@pytest.mark.parametrize("name", files_of("collapsed"))
def test_detects_its_own_files(name):
    assert collapsed.detect(data(name))


@pytest.mark.parametrize("name", files_not_of("collapsed"))
def test_rejects_other_formats(name):
    assert not collapsed.detect(data(name))


def _counts(text: bytes) -> int:
    return sum(int(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines() if line.strip())


def test_plain_raw_file_is_one_thread_with_count_weights():
    raw = data("pyspy_raw.txt")
    profile = collapsed.load(raw)
    assert [(t.tid, t.name) for t in profile.threads] == [(0, collapsed.ALL_THREADS)]
    assert profile.sample_count == len([line for line in raw.decode().splitlines() if line.strip()])
    assert int(profile.columns()["weight_ns"].sum()) == _counts(raw) * 10 * MS
    assert {"crunch_numbers", "count_primes", "main"} <= function_names(profile)
    stats = {f.function: f for f in function_stats(build_call_tree(profile))}
    assert stats["count_primes"].file == "workload.py" and stats["count_primes"].line > 0
    assert NO_STACK in profile.columns()["stack"].tolist(), "py-spy's frameless ' 1' line is a stackless sample"


def test_thread_prefixes_give_threads():
    raw = data("pyspy_raw_idle_threads.txt")
    profile = collapsed.load(raw, rate_hz=50)
    assert {t.name for t in profile.threads} == {"MainThread", "io-waiter", "lock-waiter"}
    assert all(t.tid > 0 for t in profile.threads)
    assert int(profile.columns()["weight_ns"].sum()) == _counts(raw) * 20 * MS
    for name, expected in (("io-waiter", "wait_for_io"), ("lock-waiter", "wait_on_lock"), ("MainThread", "count_primes")):
        tree = build_call_tree(profile, SampleFilter(threads=profile.find_threads(name)))
        assert expected in {f.function for f in function_stats(tree)}
    assert not any(f.startswith("thread (") for f in function_names(profile))


def test_process_prefixes_give_pids_and_the_root_command():
    profile = collapsed.load(data("pyspy_raw_subprocesses.txt"))
    pids = {t.pid for t in profile.threads}
    assert len(pids) == 2 and profile.meta["pid"] in pids
    assert profile.meta["cmdline"] == "python spawn_workload.py"
    child = [t for t in profile.threads if t.pid != profile.meta["pid"]]
    assert child and all(t.name for t in child)
    assert "count_primes" in function_names(profile) and not any(f.startswith("process ") for f in function_names(profile))


@pytest.mark.parametrize("name", ["pyspy_raw.txt", "pyspy_raw_idle_threads.txt"])
def test_real_file_export_reproduces_the_file(name):
    raw = data(name)
    assert sorted(collapsed.dump(collapsed.load(raw)).decode().splitlines()) == sorted(raw.decode().splitlines())


@pytest.mark.parametrize("name", files_of("collapsed"))
def test_real_files_round_trip(name):
    first = collapsed.load(data(name))
    again = collapsed.load(collapsed.dump(first))
    assert {(t.pid, t.tid, t.name) for t in again.threads} == {(t.pid, t.tid, t.name) for t in first.threads}
    assert thread_totals(again) == thread_totals(first)
    assert function_totals(again) == function_totals(first)


def test_rich_profile_round_trip_keeps_threads_totals_and_names():
    profile = rich_profile()
    text = collapsed.dump(profile)
    again = collapsed.load(text, rate_hz=100)
    assert thread_totals(again) == thread_totals(profile)
    assert {(t.pid, t.tid) for t in again.threads} == {(t.pid, t.tid) for t in profile.threads}
    assert function_totals(again) == function_totals(profile)
    assert set(again.columns()["state"].tolist()) == {int(State.UNKNOWN)}, "folded stacks carry no states"
    for text_ in HOSTILE:
        assert any(text_ in s for s in list(again.strings) + [t.name for t in again.threads]), text_[:40]


def test_names_with_separators_are_rewritten_not_broken():
    profile = Profile({"rate_hz": 100.0})
    thread = profile.add_thread(1, 2, "bad;thread\nname")
    profile.append_sample(0, thread, profile.intern_frames([("a;b", "x\ny.py", 3), ("c (d:1)", "e.py", 4)]), 10 * MS)
    text = collapsed.dump(profile).decode()
    assert text.count("\n") == 1
    again = collapsed.load(text.encode())
    assert again.threads[0].name == "bad:thread name"
    stats = {(f.function, f.file) for f in function_stats(build_call_tree(again))}
    assert stats == {("a:b", "x y.py"), ("c (d:1)", "e.py")}


def test_frame_syntax_variants():
    assert collapsed.parse_frame("f (a.py:12)") == ("f", "a.py", 12)
    assert collapsed.parse_frame("f (a.py)") == ("f", "a.py", 0)
    assert collapsed.parse_frame("bare") == ("bare", "", 0)
    assert collapsed.parse_frame("g (x:1) (C:\\m.py:7)") == ("g (x:1)", "C:\\m.py", 7)


@pytest.mark.parametrize("text, fragments", [
    (b"a;b 3\na;c -2\n", ["line 2", ">= 0"]),
    (b"a;b 3\na;c many\nx 1\n", ["line 2"]),
    (b"a;b 3\na;c\n", ["line 2"]),
    (b"a;b 0\n", ["no 'stack count' lines"]),
    (b"a;b 1e300\n", ["line 1", "too large"]),
    (b"a;b 400000000000\n" * 4, ["beyond 64 bits"]),  # each line in range, their running time past 2**63
    (b"a;b 3\n\xff\xfe;c 2\n", ["not UTF-8"]),
])
def test_corrupt_lines_are_named(text, fragments):
    assert_format_error(text, *fragments, format_name="collapsed")


def test_hostile_names_keep_messages_short():
    line = ("x" * 10_000 + ";y").encode() + b" bad\n"
    message = assert_format_error(b"a 1\n" + line, "line 2", format_name="collapsed")
    assert len(message) < 300
