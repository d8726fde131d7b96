"""Chrome trace event JSON (Perfetto, chrome://tracing): profviz -> trace -> profviz keeping every
thread's time in each state exactly, slices that nest as Perfetto requires, and Chromium's own
trace read: each thread's time is the union of its slices."""

from __future__ import annotations

import gzip
import json

import pytest

from profviz.formats import chrome_trace, load_any
from tests.formats_support import HOSTILE, assert_format_error, data, files_not_of, files_of, function_names, rich_profile, state_totals, unpacked


@pytest.mark.parametrize("name", files_of("perfetto"))
def test_detects_its_own_files(name):
    assert chrome_trace.detect(unpacked(name))


@pytest.mark.parametrize("name", files_not_of("perfetto"))
def test_rejects_other_formats(name):
    assert not chrome_trace.detect(unpacked(name))


def frames_of(profile) -> set:
    return {(f.function, f.file, f.line) for f in map(profile.frame, range(len(profile.frame_function)))}


def test_profviz_to_trace_to_profviz_keeps_states_reasons_threads_and_frames():
    original = rich_profile()
    loaded = load_any(chrome_trace.dump(original), "out.trace.json")
    assert state_totals(loaded) == state_totals(original)
    assert {(t.pid, t.tid, t.name) for t in loaded.threads} == {(t.pid, t.tid, t.name) for t in original.threads}
    assert function_names(loaded) == function_names(original) and frames_of(loaded) == frames_of(original)
    assert loaded.meta["cmdline"] == original.meta["cmdline"] and loaded.time_range_ns[0] == original.time_range_ns[0]


def test_the_slices_of_each_track_nest_and_hostile_names_are_data():
    doc = json.loads(chrome_trace.dump(rich_profile()))
    tracks: dict = {}
    for event in doc["traceEvents"]:
        if event["ph"] == "X":
            tracks.setdefault((event["pid"], event["tid"]), []).append((event["ts"], event["ts"] + event["dur"]))
    assert len(tracks) >= 6  # stacks, states and one spans track
    for slices in tracks.values():
        stack: list = []
        for start, end in sorted(slices, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= start + 1e-9:
                stack.pop()
            assert not stack or end <= stack[-1] + 1e-9, "a slice that overlaps its parent's end"
            stack.append(end)
    names = {event["name"] for event in doc["traceEvents"]} | {event["args"].get("name") for event in doc["traceEvents"] if event["ph"] == "M"}
    assert HOSTILE[0] in names and any(HOSTILE[1] in (name or "") for name in names)


def union_ns(intervals: list[tuple[int, int]]) -> int:
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def test_chromiums_own_trace_is_each_threads_slices():
    raw = json.loads(gzip.decompress(data("chromium.trace.json.gz")))
    profile = load_any(data("chromium.trace.json.gz"), "chromium.trace.json.gz")
    expected: dict = {}
    for event in raw["traceEvents"]:
        if event.get("ph") == "X":
            start = round(event["ts"] * 1000)
            expected.setdefault((event["pid"], event["tid"]), []).append((start, start + round(event["dur"] * 1000)))
    cols = profile.columns()
    got: dict = {}
    for thread, weight in zip(cols["thread"].tolist(), cols["weight_ns"].tolist()):
        info = profile.threads[thread]
        got[(info.pid, info.tid)] = got.get((info.pid, info.tid), 0) + weight
    assert got == {key: union_ns(slices) for key, slices in expected.items()}
    assert "CrRendererMain" in {t.name for t in profile.threads} and "V8.StackGuard" in function_names(profile)


def test_begin_end_pairs_and_cut_slices_and_bad_events():
    trace = {"traceEvents": [
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 2, "args": {"name": "main"}},
        {"ph": "E", "pid": 1, "tid": 2, "ts": 1},
        {"ph": "B", "name": "outer", "pid": 1, "tid": 2, "ts": 10, "args": {"file": "app.py", "line": 3}},
        {"ph": "B", "name": "inner", "pid": 1, "tid": 2, "ts": 12},
        {"ph": "E", "pid": 1, "tid": 2, "ts": 15},
        {"ph": "X", "name": "late", "pid": 1, "tid": 2, "ts": 16, "dur": 4},
    ]}
    profile = load_any(json.dumps(trace).encode(), "be.json")
    assert [t.name for t in profile.threads] == ["main"]
    assert sum(profile.columns()["weight_ns"].tolist()) == 10_000  # outer from 10 runs to the trace's end at 20 µs
    assert ("outer", "app.py", 3) in frames_of(profile) and "2 slices were cut" in profile.meta["notes"][-1]
    trace["traceEvents"].append({"ph": "X", "name": "x", "pid": 1, "tid": 2, "ts": 30})
    assert_format_error(json.dumps(trace).encode(), "traceEvents[6].dur", format_name="perfetto")


def test_times_beyond_what_ns_hold_are_refused_and_mixed_int_and_float_times_stay_exact():
    def trace(*events):
        return json.dumps({"traceEvents": [{"ph": "X", "name": "f", "pid": 1, "tid": 2, **event} for event in events]}).encode()

    assert_format_error(trace({"ts": 9e15, "dur": 9e15}), "beyond", "X event", format_name="perfetto")
    assert_format_error(trace({"ts": 1, "dur": 1, "tid": "99999999999999999999"}), "traceEvents[0].tid", format_name="perfetto")
    exact = load_any(trace({"ts": 1700000000000001, "dur": 3}, {"ts": 10.5, "dur": 2}), "mixed.json")  # an epoch-µs int, a float
    assert sorted(exact.columns()["time_ns"].tolist()) == [10500, 1700000000000001000]


def test_a_begin_end_slice_and_a_complete_one_of_one_extent_nest_in_file_order():
    """Two slices with the same start and end: the one earlier in the file holds the other, as before the bulk reader."""
    events = [{"ph": "B", "name": "x", "pid": 1, "tid": 2, "ts": 39}, {"ph": "E", "pid": 1, "tid": 2, "ts": 40},
              {"ph": "X", "name": "a", "pid": 1, "tid": 2, "ts": 39, "dur": 1}]
    profile = load_any(json.dumps({"traceEvents": events}).encode(), "ties.json")
    [stack] = set(profile.columns()["stack"].tolist())
    assert [profile.frame(f).function for f in profile.stack_frames(stack)] == ["x", "a"]  # x closed (index 1) before a (index 2)
    events.insert(0, events.pop())  # the X first in the file: it holds x
    profile = load_any(json.dumps({"traceEvents": events}).encode(), "ties.json")
    [stack] = set(profile.columns()["stack"].tolist())
    assert [profile.frame(f).function for f in profile.stack_frames(stack)] == ["a", "x"]


def test_threads_without_names_or_sharing_one_and_huge_tids_keep_their_own_states():
    from profviz.model import Profile, State

    profile = Profile({"kind": "attach", "pid": 1, "rate_hz": 100.0})
    threads = [profile.add_thread(1, 5, "w"), profile.add_thread(1, 6, "w"), profile.add_thread(1, 0x7F8B4C5D6700, ""),
               profile.add_thread(1, 7, "")]
    stack = profile.intern_frames([("main", "a.py", 1), ("leaf", "a.py", 2)])
    start = 1_700_000_000_000_000_000
    for n, (thread, state) in enumerate([(0, State.ON_CPU), (1, State.WAITING), (2, State.RUNNABLE), (3, State.GIL), (0, State.WAITING)]):
        profile.append_sample(start + n * 10_000_000, threads[thread], stack, 10_000_000, state, "lock" if state == State.WAITING else None)
    loaded = load_any(chrome_trace.dump(profile), "t.json")
    assert state_totals(loaded) == state_totals(profile)


def test_deep_nesting_reads_in_time_and_memory_linear_in_the_slices():
    events = [{"ph": "X", "name": f"f{n}", "pid": 1, "tid": 1, "ts": n, "dur": 2 * (5000 - n)} for n in range(5000)]
    profile = load_any(json.dumps({"traceEvents": events}).encode(), "deep.json")
    assert sum(profile.columns()["weight_ns"].tolist()) == 10_000 * 1000 and len(profile.stack_prefix) == 5000
    overlapping = [{"ph": "X", "name": "parent", "pid": 1, "tid": 1, "ts": 0, "dur": 10},
                   {"ph": "X", "name": "child", "pid": 1, "tid": 1, "ts": 5, "dur": 20}]  # outlives its parent: cut at its end
    cut = load_any(json.dumps({"traceEvents": overlapping}).encode(), "cut.json")
    assert sum(cut.columns()["weight_ns"].tolist()) == 10_000


def test_sample_events_over_stack_frames_are_read():
    """The trace event format's sample events: each sample's stack (stackFrames through their
    parents) lasts until its thread's next sample; the last one lasts the median interval."""
    trace = {
        "traceEvents": [
            {"ph": "M", "name": "thread_name", "pid": 1, "tid": 9, "args": {"name": "main"}},
            {"ph": "P", "name": "sample", "pid": 1, "tid": 9, "ts": 0, "sf": 3},
            {"ph": "P", "name": "sample", "pid": 1, "tid": 9, "ts": 10, "sf": 3},
            {"ph": "P", "name": "sample", "pid": 1, "tid": 9, "ts": 20, "sf": 2},
        ],
        "stackFrames": {"1": {"name": "main", "category": "app"}, "2": {"name": "serve", "parent": 1},
                        "3": {"name": "<script>query</script>", "parent": 2}},
    }
    profile = load_any(json.dumps(trace).encode(), "sampled.json")
    cols = profile.columns()
    assert [t.name for t in profile.threads] == ["main"] and sum(cols["weight_ns"].tolist()) == 30_000
    leaf: dict = {}
    for stack, weight in zip(cols["stack"].tolist(), cols["weight_ns"].tolist()):
        name = profile.frame(int(profile.stack_frame[stack])).function
        leaf[name] = leaf.get(name, 0) + weight
    assert leaf == {"<script>query</script>": 20_000, "serve": 10_000}
    trace["traceEvents"].append({"ph": "P", "pid": 1, "tid": 9, "ts": 30, "sf": 99})
    assert_format_error(json.dumps(trace).encode(), "stack frame '99'", format_name="perfetto")
