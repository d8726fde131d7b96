"""The span/sample join: innermost-span attribution, inclusive sums, coverage, "(no span)", masks."""

from __future__ import annotations

import numpy as np
import pytest

from profviz.analysis.calltree import function_stats
from profviz.analysis.correlate import innermost_interval, join_spans, merge_intervals, root_spans, sample_instants, unspanned
from profviz.analysis.span_views import gap_summary, span_depths, span_flame_mask, span_flame_tree, span_summaries, state_lanes
from profviz.model import Profile, Span, State
from profviz.shapes.spans import listing_rows


def span_rows(join, top: int = 5) -> list[dict]:
    """The rows of ``profviz spans --json``."""
    return listing_rows(span_summaries(join, top=top), None, join.profile)


def span_listing_rows(join, window, top: int = 5) -> list[dict]:
    """The rows of ``profviz spans --request --json``: the spans, then the "(no span)" row."""
    return listing_rows(span_summaries(join, top=top), gap_summary(join, unspanned(join, *window), top=top), join.profile)

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def span(name, start_ms, end_ms, thread=0, *, span_id=None, parent=None, kind="internal"):
    span_id = span_id or f"{abs(hash(name)) % 16**15:016x}"
    return Span("ab" * 16, span_id, parent, name, kind, "unset", T0 + int(start_ms * MS), T0 + int(end_ms * MS), thread=thread,
                approximate=thread < 0)


def profile_with(samples, threads=1, kind="attach"):
    """samples: (start_ms, thread, function, state) with 1 ms weight; stacks are main -> function."""
    profile = Profile({"kind": kind, "pid": 1})
    for t in range(threads):
        profile.add_thread(1, 100 + t, f"t{t}")
    for start_ms, thread, function, state in samples:
        stack = profile.intern_frames([("main", "app.py", 1), (function, "app.py", 10)])
        profile.append_sample(T0 + int(start_ms * MS), thread, stack, MS, state)
    return profile


def test_innermost_interval_picks_latest_started_open_interval():
    starts = np.array([0, 10, 20, 60])
    ends = np.array([100, 50, 30, 80])
    points = np.array([5, 15, 25, 30, 45, 55, 65, 99, 100, -1])
    assert innermost_interval(points, starts, ends).tolist() == [0, 1, 2, 1, 1, 0, 3, 0, -1, -1]


def test_innermost_interval_with_overlapping_unnested_intervals():
    # [0, 50) and [10, 60) overlap without nesting: the later start wins while open, then the other.
    starts, ends = np.array([0, 10, 70]), np.array([50, 60, 75])
    assert innermost_interval(np.array([5, 20, 55, 65, 72]), starts, ends).tolist() == [0, 1, 1, -1, 2]


def test_innermost_interval_matches_brute_force_on_random_intervals():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        starts = np.sort(rng.integers(0, 1000, n))
        ends = starts + rng.integers(0, 300, n)
        points = rng.integers(-10, 1400, 60)
        got = innermost_interval(points, starts, ends)
        for p, g in zip(points, got):
            covering = [i for i in range(n) if starts[i] <= p < ends[i]]
            expected = max(covering) if covering else -1
            if expected >= 0 and g >= 0:
                assert starts[g] == starts[expected] and ends[g] > p
            else:
                assert g == expected


def test_join_matches_brute_force_for_owner_inclusive_sums_and_coverage():
    rng = np.random.default_rng(3)
    for _ in range(60):
        threads = int(rng.integers(1, 4))
        profile = Profile({"kind": "attach"})
        for t in range(threads):
            profile.add_thread(1, 10 + t)
        stack = profile.intern_frames([("f", "a.py", 1)])
        for t in np.sort(rng.integers(0, 1000, int(rng.integers(0, 80)))):
            profile.append_sample(T0 + int(t), int(rng.integers(0, threads)), stack, int(rng.integers(1, 30)),
                                  State(int(rng.integers(1, 4))))
        spans = []
        for k in range(int(rng.integers(0, 30))):
            start = int(rng.integers(-100, 1100))
            spans.append(Span("cd" * 16, f"{k + 1:016x}", None, f"s{k}", "internal", "unset", T0 + start,
                              T0 + start + int(rng.integers(0, 400)), thread=int(rng.integers(0, threads))))
        join = join_spans(profile, spans, sample_instant="start")
        cols = profile.columns()
        self_time = np.zeros((len(State), len(spans)), dtype=np.int64)
        for t, w, th, st in zip(cols["time_ns"], cols["weight_ns"], cols["thread"], cols["state"]):
            for ns in range(t, t + w):  # each ns of sample time goes to the innermost span open then
                open_spans = [(s.start_ns, i) for i, s in enumerate(spans) if s.thread == th and s.start_ns <= ns < s.end_ns]
                if open_spans:
                    self_time[st, max(open_spans)[1]] += 1
        assert (join.self_by_state_ns == self_time).all()
        for i, s in enumerate(spans):
            inside = (cols["thread"] == s.thread) & (cols["time_ns"] >= s.start_ns) & (cols["time_ns"] < s.end_ns)
            assert join.samples[i] == inside.sum()
            on_thread = cols["thread"] == s.thread
            overlap = np.clip(np.minimum(cols["time_ns"] + cols["weight_ns"], s.end_ns) - np.maximum(cols["time_ns"], s.start_ns), 0, None)
            for state in State:
                assert join.by_state_ns[state, i] == overlap[on_thread & (cols["state"] == state)].sum()
            covered = set()
            for t, w, th in zip(cols["time_ns"], cols["weight_ns"], cols["thread"]):
                if th == s.thread:
                    covered.update(range(max(t, s.start_ns), min(t + w, s.end_ns)))
            assert join.covered_ns[i] == len(covered)
        for k, (t, th) in enumerate(zip(cols["time_ns"], cols["thread"])):
            open_spans = [i for i, s in enumerate(spans) if s.thread == th and s.start_ns <= t < s.end_ns]
            if not open_spans:
                assert join.owner[k] == -1
            else:
                latest = max(spans[i].start_ns for i in open_spans)
                assert join.owner[k] in open_spans and spans[join.owner[k]].start_ns == latest


def test_nested_spans_attribute_samples_to_the_innermost_and_sum_inclusively():
    samples = [(ms, 0, "handler" if ms < 10 or ms >= 60 else "query", State.WAITING if 10 <= ms < 60 else State.ON_CPU)
               for ms in range(0, 100)]
    profile = profile_with(samples)
    request = span("request", 0, 100, span_id="1" * 16, kind="server")
    query = span("query", 10, 60, span_id="2" * 16, parent="1" * 16, kind="client")
    join = join_spans(profile, [request, query], sample_instant="start")
    assert join.self_samples.tolist() == [50, 50]
    assert join.samples.tolist() == [100, 50]
    assert join.by_state_ns[State.WAITING].tolist() == [50 * MS, 50 * MS]
    assert join.by_state_ns[State.ON_CPU].tolist() == [50 * MS, 0]
    assert join.uncovered_ns.tolist() == [0, 0]
    rows = {r["name"]: r for r in span_rows(join)}
    assert rows["query"]["top_functions"][0]["function"] == "query"
    assert rows["query"]["self_s"] == pytest.approx(0.05)
    assert rows["request"]["top_functions"][0]["function"] == "handler"
    assert rows["request"]["wait_s"] == pytest.approx(0.05) and rows["request"]["cpu_s"] == pytest.approx(0.05)


def test_spans_only_claim_samples_of_their_own_thread():
    samples = [(ms, t, f"work{t}", State.ON_CPU) for ms in range(20) for t in (0, 1)]
    profile = profile_with(samples, threads=2)
    join = join_spans(profile, [span("on-1", 0, 20, thread=1)], sample_instant="start")
    owned = join.owner >= 0
    assert (profile.columns()["thread"][owned] == 1).all() and owned.sum() == 20


def test_uncovered_time_is_span_time_without_samples_on_its_thread():
    # Samples on thread 0 stop between 30 and 70 ms (profiler paused); thread 1 keeps sampling.
    samples = [(ms, 0, "f", State.ON_CPU) for ms in range(100) if not 30 <= ms < 70]
    samples += [(ms, 1, "g", State.ON_CPU) for ms in range(100)]
    profile = profile_with(samples, threads=2)
    join = join_spans(profile, [span("a", 0, 100), span("b", 40, 60, span_id="3" * 16)], sample_instant="start")
    assert join.uncovered_ns.tolist() == [40 * MS, 20 * MS]


def test_approximate_spans_use_every_thread_and_only_free_samples():
    samples = [(ms, t, f"w{t}", State.ON_CPU) for ms in range(10) for t in (0, 1)]
    profile = profile_with(samples, threads=2)
    exact = span("exact", 0, 10, thread=0, span_id="4" * 16)
    loose = span("loose", 0, 10, thread=-1, span_id="5" * 16)
    join = join_spans(profile, [exact, loose], sample_instant="start")
    assert join.self_samples.tolist() == [10, 10]
    assert join.samples.tolist() == [10, 20]
    row = [r for r in span_rows(join) if r["name"] == "loose"][0]
    assert row["approximate"] and row["tid"] is None


def test_offset_moves_spans_onto_the_sample_clock():
    profile = profile_with([(ms, 0, "f", State.ON_CPU) for ms in range(100)])
    shifted = span("s", 1000, 1010)  # recorded on a clock 980 ms ahead
    assert join_spans(profile, [shifted], sample_instant="start").samples.tolist() == [0]
    join = join_spans(profile, [shifted], offset_ns=-980 * MS, sample_instant="start")
    assert join.samples.tolist() == [10] and join.start_ns[0] == T0 + 20 * MS


def test_sample_instant_follows_the_collector_kind():
    request_profile = profile_with([(0, 0, "f", State.ON_CPU)], kind="request")
    attach_profile = profile_with([(0, 0, "f", State.ON_CPU)], kind="attach")
    assert sample_instants(request_profile).tolist() == [T0 + MS]
    assert sample_instants(attach_profile).tolist() == [T0 + MS // 2]
    assert sample_instants(attach_profile, "start").tolist() == [T0]
    with pytest.raises(ValueError, match="sample_instant"):
        sample_instants(attach_profile, "later")


def test_unspanned_time_of_a_request_is_outside_every_child_span():
    samples = [(ms, 0, "log_wait" if 50 <= ms < 80 else ("query" if 10 <= ms < 40 else "handler"), State.WAITING)
               for ms in range(100)]
    profile = profile_with(samples)
    root = span("GET /", 0, 100, span_id="6" * 16, kind="server")
    query = span("SELECT", 10, 40, span_id="7" * 16, parent="6" * 16, kind="client")
    spans = [root, query]
    join = join_spans(profile, spans, sample_instant="start")
    assert root_spans(spans) == [0]
    gap = unspanned(join, 0, T0, T0 + 100 * MS)
    assert gap.duration_ns == 70 * MS and gap.uncovered_ns == 0
    assert gap.intervals == [(T0, T0 + 10 * MS), (T0 + 40 * MS, T0 + 100 * MS)]
    assert gap.mask.sum() == 70
    rows = span_listing_rows(join, (0, T0, T0 + 100 * MS))
    no_span = rows[-1]
    assert no_span["name"] == "(no span)" and no_span["duration_s"] == pytest.approx(0.07)
    assert no_span["wait_s"] == pytest.approx(0.07) and no_span["cpu_s"] == 0 and no_span["samples"] == 70
    assert no_span["top_functions"][0]["function"] == "handler"
    assert {f["function"] for f in no_span["top_functions"]} == {"handler", "log_wait"}


def test_unspanned_without_a_root_span_counts_uncovered_window_time():
    samples = [(ms, 0, "f", State.ON_CPU) for ms in range(0, 50)]  # nothing sampled in 50..100
    profile = profile_with(samples)
    join = join_spans(profile, [span("child", 20, 30)], sample_instant="start")
    gap = unspanned(join, 0, T0, T0 + 100 * MS)
    assert gap.duration_ns == 90 * MS and gap.uncovered_ns == 50 * MS and gap.mask.sum() == 40


def test_flame_masks_self_children_and_by_name():
    samples = [(ms, 0, "inner" if 20 <= ms < 30 else "outer", State.ON_CPU) for ms in range(100)]
    profile = profile_with(samples)
    outer1 = span("outer", 0, 50, span_id="8" * 16)
    inner = span("inner", 20, 30, span_id="9" * 16, parent="8" * 16)
    outer2 = span("outer", 60, 70, span_id="a" * 16)
    join = join_spans(profile, [outer1, inner, outer2], sample_instant="start")
    assert span_flame_mask(join, index=0).sum() == 40
    assert span_flame_mask(join, index=0, include_children=True).sum() == 50
    assert span_flame_mask(join, name="outer").sum() == 50
    assert span_flame_mask(join, name="outer", include_children=True).sum() == 60
    tree = span_flame_tree(join, index=1)
    assert [f.function for f in function_stats(tree) if f.self_ns] == ["inner"]
    with pytest.raises(ValueError):
        span_flame_mask(join)


def test_state_lanes_merge_runs_and_split_on_gaps():
    states = [State.ON_CPU] * 5 + [State.WAITING] * 5
    profile = profile_with([(ms, 0, "f", s) for ms, s in enumerate(states)] + [(20, 0, "f", State.WAITING)])
    lane = state_lanes(profile, [0], T0, T0 + 30 * MS)[0]
    assert lane.states == [State.ON_CPU, State.WAITING, State.WAITING]
    assert lane.start_ns == [T0, T0 + 5 * MS, T0 + 20 * MS]
    assert lane.end_ns == [T0 + 5 * MS, T0 + 10 * MS, T0 + 21 * MS]


def test_span_depths_follow_parents_within_the_set():
    spans = [span("a", 0, 10, span_id="1" * 16), span("b", 1, 9, span_id="2" * 16, parent="1" * 16),
             span("c", 2, 3, span_id="3" * 16, parent="2" * 16), span("d", 4, 5, span_id="4" * 16, parent="f" * 16)]
    assert span_depths(spans) == [0, 1, 2, 0]


def test_merge_intervals():
    a, b = merge_intervals(np.array([5, 0, 20, 8, 30]), np.array([10, 6, 25, 9, 30]))
    assert a.tolist() == [0, 20] and b.tolist() == [10, 25]


def test_join_rejects_a_span_thread_outside_the_profile():
    profile = profile_with([(0, 0, "f", State.ON_CPU)])
    with pytest.raises(ValueError, match="thread 5"):
        join_spans(profile, [span("x", 0, 1, thread=5)])


def test_empty_inputs():
    profile = profile_with([])
    join = join_spans(profile, [span("x", 0, 1)])
    assert join.samples.tolist() == [0] and join.uncovered_ns.tolist() == [MS]
    join = join_spans(profile_with([(0, 0, "f", State.ON_CPU)]), [])
    assert join.owner.tolist() == [-1]


def test_a_request_with_no_spans_is_all_unspanned_time():
    """A request whose thread recorded no span at all (no OpenTelemetry): its whole window is "(no span)"."""
    profile = profile_with([(ms, 0, "handler", State.ON_CPU) for ms in range(20)])
    join = join_spans(profile, [], sample_instant="start")
    gap = unspanned(join, 0, T0, T0 + 20 * MS)
    assert gap.duration_ns == 20 * MS and gap.mask.sum() == 20
    rows = span_listing_rows(join, (0, T0, T0 + 20 * MS))
    assert [row["name"] for row in rows] == ["(no span)"] and rows[0]["cpu_s"] == pytest.approx(0.02)
