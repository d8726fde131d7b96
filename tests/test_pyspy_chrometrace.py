"""py-spy chrometrace parsing: segments from B/E events, thread identity, sample splitting, loading,
and one real file written by py-spy itself."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from profviz.formats import detect_format
from profviz.formats.base import FormatError
from profviz.formats.pyspy_chrometrace import detect, load, parse_events, segment_sample_times
from profviz.model import NO_STACK, State

TARGETS = Path(__file__).parent / "targets"


def ev(ph, name, ts, tid=7, pid=100, filename="app.py", line=1):
    return {"args": {"filename": filename, "line": line}, "cat": "py-spy", "name": name, "ph": ph, "pid": pid, "tid": tid, "ts": ts}


def thread_frame(ph, ts, native=4085, name="w1", tid=7, pid=100):
    return ev(ph, f"thread ({native}): {name}", ts, tid=tid, pid=pid, filename="", line=0)


def one_call(start, end, native, name, function, line):
    """py-spy's events for thread ``native`` (named ``name``) in one ``function`` from ``start`` to ``end``."""
    return [thread_frame("B", start, native=native, name=name), ev("B", function, start, line=line),
            ev("E", function, end, line=line), thread_frame("E", end, native=native, name=name)]


def stack_change(ts, leave, enter, tid=7):
    """py-spy's events for one stack change: E for frames that left (leaf first), B for new ones (root first)."""
    return [ev("E", name, ts, tid=tid, line=line) for name, line in leave] + [
        ev("B", name, ts, tid=tid, line=line) for name, line in enter
    ]


def worker_trace():
    """A thread going main -> work (CPU) -> main -> wait, and a second thread idle in one frame."""
    events = [thread_frame("B", 1000), ev("B", "main", 1000, line=3), ev("B", "work", 1000, line=10)]
    events += stack_change(31000, [("work", 10)], [("wait", 20)])
    events += stack_change(41000, [("wait", 20)], [])  # back in main only
    events += [thread_frame("B", 1000, native=4084, name="MainThread", tid=9), ev("B", "<module>", 1000, tid=9, line=5)]
    events += stack_change(51000, [], [("work", 10)])
    end = 61000
    events += [ev("E", "work", end, line=10), ev("E", "main", end, line=3), thread_frame("E", end)]
    events += [ev("E", "<module>", end, tid=9, line=5), thread_frame("E", end, native=4084, name="MainThread", tid=9)]
    return events


def test_segments_follow_stack_changes_and_drop_pseudo_frames():
    trace = parse_events(worker_trace())
    worker, main = trace.threads
    assert (worker.native_tid, worker.name, worker.pid, worker.trace_tid) == (4085, "w1", 100, 7)
    assert (main.native_tid, main.name) == (4084, "MainThread")
    assert [(s.start_us, s.end_us, [f[0] for f in s.frames]) for s in worker.segments] == [
        (1000, 31000, ["main", "work"]),
        (31000, 41000, ["main", "wait"]),
        (41000, 51000, ["main"]),
        (51000, 61000, ["main", "work"]),
    ]
    assert [(s.start_us, s.end_us) for s in main.segments] == [(1000, 61000)]
    assert (trace.first_us, trace.last_us) == (1000, 61000)


def test_line_change_of_the_leaf_starts_a_new_segment_with_that_line():
    events = [thread_frame("B", 0), ev("B", "f", 0, line=1)]
    events += stack_change(5000, [("f", 1)], [("f", 2)])
    events += [ev("E", "f", 9000, line=2), thread_frame("E", 9000)]
    segments = parse_events(events).threads[0].segments
    assert [(s.start_us, s.end_us, s.frames[-1]) for s in segments] == [(0, 5000, ("f", "app.py", 1)), (5000, 9000, ("f", "app.py", 2))]


def test_hex_thread_id_process_frames_and_metadata_names():
    process = ev("B", 'process 100:"python app.py --port 8000"', 0, filename="", line=0)
    events = [process, ev("B", "thread (0x7F00AA): worker", 0, filename="", line=0), ev("B", "serve", 0, line=4)]
    events += [ev("E", "serve", 2000, line=4)]
    thread = parse_events(events).threads[0]
    assert thread.native_tid is None and thread.name == "worker"
    assert thread.process_command == "python app.py --port 8000"
    assert [s.frames for s in thread.segments] == [(("serve", "app.py", 4),)]
    # Newer py-spy: renumbered tids, thread names in "M" events, no --threads frame.
    meta = {"args": {"filename": "", "name": "4321: poller"}, "cat": "py-spy", "name": "thread_name", "ph": "M", "pid": 100, "tid": 0, "ts": 0}
    thread = parse_events([meta, ev("B", "poll", 10, tid=0), ev("E", "poll", 20, tid=0)]).threads[0]
    assert (thread.native_tid, thread.name, thread.trace_tid) == (4321, "poller", 0)


def test_truncated_trace_keeps_open_segments_until_the_last_event():
    events = [thread_frame("B", 0), ev("B", "f", 0), ev("B", "g", 0)]
    events += stack_change(7000, [("g", 1)], [])
    thread = parse_events(events).threads[0]
    assert [(s.start_us, s.end_us) for s in thread.segments] == [(0, 7000)]


@pytest.mark.parametrize(
    "events, message",
    [
        ({"not": "a list"}, "must be a list"),
        ([["B"]], "event 0 must be an object"),
        ([{"ph": "B", "name": "f", "pid": 1, "ts": 0}], "event 0 needs integer pid, tid and ts"),
        ([{"ph": "B", "name": "f", "pid": 1, "tid": 1, "ts": -5}], "negative ts"),
        ([{"ph": "B", "name": 3, "pid": 1, "tid": 1, "ts": 0, "args": {"filename": "x", "line": 1}}], "event 0 \\(B\\) needs a string name"),
    ],
)
def test_malformed_events_are_named(events, message):
    with pytest.raises(FormatError, match=message):
        parse_events(events)


@pytest.mark.parametrize("start, end, period", [(0, 1, 10.0), (5, 1_000_005, 10_000_000.0), (0, 35_000_001, 10_000_000.0), (100, 100 + 7 * 999, 1_000.0)])
def test_sample_splitting_keeps_the_segment_length_exactly(start, end, period):
    times, weights = segment_sample_times(start, end, period)
    assert times[0] == start and int(weights.sum()) == end - start and (weights > 0).all()
    assert np.all(np.diff(times) == weights[:-1])
    assert len(times) == max(1, round((end - start) / period))


def test_load_builds_unknown_samples_at_absolute_times():
    data = json.dumps(worker_trace()).encode()
    assert detect(data) and not detect(b'[{"ph": "B", "cat": "other"}]') and not detect(b"{}")
    profile = load(data, origin_ns=1_700_000_000_000_000_000, rate_hz=100.0)
    cols = profile.columns()
    assert set(cols["state"].tolist()) == {int(State.UNKNOWN)}
    assert [(t.tid, t.name) for t in profile.threads] == [(4085, "w1"), (4084, "MainThread")]
    first, end = profile.time_range_ns
    assert first == 1_700_000_000_000_000_000 + 1_000_000 and end == 1_700_000_000_000_000_000 + 61_000_000
    worker = cols["thread"] == 0
    assert int(cols["weight_ns"][worker].sum()) == 60_000_000 and worker.sum() == 6
    stacks = {tuple(profile.frame(f).function for f in profile.stack_frames(s)) for s in cols["stack"][worker] if s != NO_STACK}
    assert stacks == {("main", "work"), ("main", "wait"), ("main",)}
    # Without an origin the file time marks the last event.
    profile = load(data, rate_hz=100.0, file_mtime_ns=2_000_000_000_000_000_000)
    assert profile.time_range_ns[1] == 2_000_000_000_000_000_000


def test_a_file_written_by_real_pyspy(tmp_path):
    target = subprocess.Popen(
        [sys.executable, str(TARGETS / "attach_truth.py"), str(tmp_path / "log.json"), "5"], stdout=subprocess.PIPE
    )
    try:
        target.stdout.readline()
        out = tmp_path / "trace.json"
        done = subprocess.run(
            ["py-spy", "record", "--pid", str(target.pid), "--idle", "--threads", "--format", "chrometrace",
             "--output", str(out), "--duration", "1", "--rate", "200", "--nonblocking"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr + done.stdout
    finally:
        target.kill()
        target.wait()
    data = out.read_bytes()
    assert detect_format(data).name == "chrometrace"
    trace = parse_events(json.loads(data))
    by_name = {t.name: t for t in trace.threads}
    assert {"MainThread", "cpu_sleeper", "cpu_recv", "late_server"} <= set(by_name)
    assert by_name["MainThread"].native_tid == target.pid
    functions = {s.frames[-1][0] for s in by_name["cpu_sleeper"].segments if s.frames}
    assert {"spin_until", "nap"} <= functions
    # A second of wall time per thread, give or take py-spy's start-up and stop.
    for thread in by_name.values():
        covered = sum(s.end_us - s.start_us for s in thread.segments)
        assert 0.8e6 < covered < 1.3e6, (thread.name, covered)


def test_a_reused_pthread_id_starts_a_new_thread_at_the_new_native_tid():
    """glibc gives an ended thread's pthread id (chrometrace tid) to the next thread; py-spy shows
    the old thread's last stack until its first sample of the new one, and (caching names by
    pthread id) may repeat the old name."""
    from profviz.formats.pyspy_chrometrace import name_is_stale, thread_name

    events = (one_call(0, 40000, 501, "req-1", "handle", 3) + one_call(40000, 90000, 502, "req-1", "handle", 3)
              + one_call(90000, 120000, 503, "req-3", "handle", 9))
    first, second, third = parse_events(events).threads
    assert [(t.native_tid, t.trace_tid) for t in (first, second, third)] == [(501, 7), (502, 7), (503, 7)]
    assert [[(s.start_us, s.end_us) for s in t.segments] for t in (first, second, third)] == [
        [(0, 40000)], [(40000, 90000)], [(90000, 120000)]
    ]
    assert [name_is_stale(t) for t in (first, second, third)] == [False, True, False]
    assert [thread_name(t) for t in (first, second, third)] == ["req-1", "req-1 (stale name?)", "req-3"]
    profile = load(json.dumps(events).encode(), origin_ns=0, rate_hz=100)
    assert sorted((t.tid, t.name) for t in profile.threads) == [(501, "req-1"), (502, "req-1 (stale name?)"), (503, "req-3")]


def test_a_name_change_within_one_thread_keeps_one_thread():
    """py-spy renames the root frame when the program renames the thread: same native tid, one thread."""
    events = one_call(0, 20000, 501, "Thread-1", "run", 3) + one_call(20000, 30000, 501, "renamed", "run", 3)
    (thread,) = parse_events(events).threads
    assert thread.name == "renamed" and [(s.start_us, s.end_us) for s in thread.segments] == [(0, 30000)]


def test_another_threads_pthread_id_reporting_the_main_threads_native_id_stays_that_thread():
    """The main thread's native tid is the pid and its pthread id is never reused while the process
    lives: a stack under another pthread id that claims the pid is a misread, not the main thread."""
    events = (one_call(0, 30000, 501, "short-1", "work", 3) + one_call(30000, 40000, 100, "short-1", "start", 5)
              + one_call(40000, 70000, 502, "short-2", "work", 3))
    first, second = parse_events(events).threads
    assert [(t.native_tid, t.name) for t in (first, second)] == [(501, "short-1"), (502, "short-2")]
    assert [(s.start_us, s.end_us, s.frames[-1][0]) for s in first.segments] == [(0, 30000, "work"), (30000, 40000, "start")]
    profile = load(json.dumps(events).encode(), origin_ns=0, rate_hz=100)
    assert sorted(t.tid for t in profile.threads) == [501, 502]
