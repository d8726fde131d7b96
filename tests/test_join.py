"""The join of one thread's py-spy segments with its /proc state readings, on constructed readings (no processes)."""

from __future__ import annotations

from profviz.collect.join import INFER_MAX_BURST_PERIODS, join_thread
from profviz.collect.states import ReasonTable, ThreadReading, ThreadStates
from profviz.model import State


def constructed_states(phases, period_ms=10, offset_ms=5):
    """ThreadStates for a thread following ``phases`` [(until_ms, "run"|"sleep")], read every period."""
    states, reasons = ThreadStates(), ReasonTable()
    cpu_ms, previous_ms, now = 0.0, 0.0, offset_ms
    while now < phases[-1][0]:
        for until, kind in phases:
            if now < until:
                break
        # CPU accrued since the previous reading: the running parts of (previous_ms, now].
        edges = [0] + [u for u, _ in phases]
        for (lo, hi), (_, k) in zip(zip(edges, edges[1:]), phases):
            if k == "run":
                cpu_ms += max(0.0, min(hi, now) - max(lo, previous_ms))
        letter, reason = ("R", None) if kind == "run" else ("S", "sleep")
        states.add(ThreadReading(int(now * 1e6), 7, letter, int(cpu_ms * 1e6), 0, reason), reasons)
        previous_ms, now = now, now + period_ms
    return states, reasons


def test_join_moves_late_boundaries_to_the_state_switches():
    states, reasons = constructed_states([(30, "run"), (100, "sleep"), (130, "run"), (200, "sleep")])
    ms = 1_000_000
    # py-spy saw each change 8 ms late; "work" has a line-only change inside it.
    segments = [(0, 20 * ms), (20 * ms, 38 * ms), (38 * ms, 108 * ms), (108 * ms, 138 * ms), (138 * ms, 200 * ms)]
    keys = ["work", "work", "nap", "work", "nap"]
    joined = join_thread(segments, keys, states, 10 * ms, None)
    assert joined.moved_boundaries == 3
    time_in = {}
    for t, w, seg, state in zip(joined.time_ns, joined.weight_ns, joined.segment, joined.state):
        time_in.setdefault((keys[seg], State(state)), 0)
        time_in[(keys[seg], State(state))] += w
    assert time_in == {("work", State.ON_CPU): 60 * ms, ("nap", State.WAITING): 140 * ms}
    assert {reasons.text(r) for r, s in zip(joined.reason, joined.state) if s == State.WAITING} == {"sleep"}


def test_join_leaves_boundaries_alone_when_the_state_does_not_change():
    states, _ = constructed_states([(200, "sleep")])
    ms = 1_000_000
    joined = join_thread([(0, 50 * ms), (50 * ms, 200 * ms)], ["a", "b"], states, 10 * ms, None)
    assert joined.moved_boundaries == 0
    assert sum(w for w, s in zip(joined.weight_ns, joined.segment) if s == 0) == 50 * ms


def state_time(joined, keys):
    """{(function key, State): ns} over a joined thread."""
    totals = {}
    for weight, segment, state in zip(joined.weight_ns, joined.segment, joined.state):
        key = (keys[segment], State(state))
        totals[key] = totals.get(key, 0) + weight
    return totals


def test_join_gives_a_missed_cpu_phase_the_stack_of_the_nearest_running_sample():
    ms = 1_000_000
    states, _ = constructed_states([(30, "run"), (100, "sleep"), (130, "run"), (200, "sleep"), (230, "run"), (300, "sleep")])
    # py-spy saw the first and third "work" phases (8 ms late) and missed the second entirely.
    segments = [(0, 38 * ms), (38 * ms, 208 * ms), (208 * ms, 238 * ms), (238 * ms, 300 * ms)]
    keys = ["work", "nap", "work", "nap"]
    joined = join_thread(segments, keys, states, 10 * ms, None)
    assert state_time(joined, keys) == {("work", State.ON_CPU): 90 * ms, ("nap", State.WAITING): 210 * ms}
    assert joined.inferred_samples == 3 and joined.inferred_ns == 30 * ms
    # Equally near on both sides: the earlier running sample's segment.
    assert {seg for seg, t in zip(joined.segment, joined.time_ns) if 100 * ms <= t < 130 * ms} == {0}


def test_join_gives_a_missed_blocking_call_the_stack_of_the_nearest_wait_for_the_same_reason():
    """py-spy saw no sample during the second sleep: its time goes to "nap", not to the CPU function."""
    ms = 1_000_000
    states, _ = constructed_states([(30, "run"), (100, "sleep"), (130, "run"), (200, "sleep"), (230, "run"), (300, "sleep")])
    segments = [(0, 38 * ms), (38 * ms, 108 * ms), (108 * ms, 238 * ms), (238 * ms, 300 * ms)]
    keys = ["work", "nap", "work", "nap"]
    joined = join_thread(segments, keys, states, 10 * ms, None)
    assert state_time(joined, keys) == {("work", State.ON_CPU): 90 * ms, ("nap", State.WAITING): 210 * ms}
    assert joined.inferred_ns == 70 * ms


def test_join_leaves_a_long_burst_inside_a_blocked_stack_alone():
    """Running for 8 intervals: py-spy would have seen another stack, so the work is the blocked call's own."""
    ms = 1_000_000
    assert INFER_MAX_BURST_PERIODS < 8
    states, _ = constructed_states([(30, "run"), (100, "sleep"), (180, "run"), (300, "sleep")])
    segments = [(0, 38 * ms), (38 * ms, 300 * ms)]
    keys = ["work", "ssl_read"]
    joined = join_thread(segments, keys, states, 10 * ms, None)
    assert joined.inferred_samples == 0
    assert state_time(joined, keys) == {("work", State.ON_CPU): 30 * ms, ("ssl_read", State.WAITING): 190 * ms,
                                        ("ssl_read", State.ON_CPU): 80 * ms}


def test_join_counts_a_wakeup_without_work_as_waiting():
    """A blocked thread woken by py-spy's ptrace stop reads R for a moment but runs none of its code."""
    ms, us = 1_000_000, 1_000

    def readings(cpu_during_wakeup_ns):
        states, reasons = ThreadStates(), ReasonTable()
        cpu = runqueue = 0
        for k in range(10):
            letter, reason = ("R", None) if k == 5 else ("S", "socket recv 127.0.0.1:80")
            if k == 5:
                cpu, runqueue = cpu + cpu_during_wakeup_ns, runqueue + 6 * ms
            states.add(ThreadReading(k * 10 * ms + 5 * ms, 7, letter, cpu, runqueue, reason), reasons)
        return states, reasons

    states, reasons = readings(30 * us)
    joined = join_thread([(0, 100 * ms)], ["wait_reply"], states, 10 * ms, None)
    assert joined.wakeups_without_work == 1
    assert set(joined.state) == {int(State.WAITING)}
    assert {reasons.text(r) for r in joined.reason} == {"socket recv 127.0.0.1:80"}
    # The same reading with 6 ms of real CPU is a burst of work.
    states, _ = readings(6 * ms)
    joined = join_thread([(0, 100 * ms)], ["wait_reply"], states, 10 * ms, None)
    assert joined.wakeups_without_work == 0 and int(State.ON_CPU) in joined.state


def test_join_moves_a_boundary_back_when_no_reading_falls_between_the_run_start_and_the_switch():
    """A short run ("work", 56-70 ms) whose switch to waiting (60 ms) comes before any reading of it:
    judged by the state over its time, not by its readings (there are none), so the boundary moves."""
    ms = 1_000_000
    states, _ = constructed_states([(40, "sleep"), (60, "run"), (140, "sleep")])
    segments = [(0, 42 * ms), (42 * ms, 56 * ms), (56 * ms, 70 * ms), (70 * ms, 140 * ms)]
    keys = ["wait", "prep", "work", "wait"]
    joined = join_thread(segments, keys, states, 10 * ms, None)
    totals = state_time(joined, keys)
    assert totals.get(("work", State.WAITING), 0) == 0, totals
    assert totals[("work", State.ON_CPU)] == 4 * ms and totals[("wait", State.WAITING)] == 120 * ms


def test_join_gives_a_late_stamped_stack_inside_a_wait_to_the_blocking_call_after_it():
    """py-spy missed the second "work" phase (100-120 ms) and stamped its one sample of it 1 ms after the
    wait began: that stack belongs before the wait, and the wait's time to the blocking call after it."""
    ms = 1_000_000
    states, _ = constructed_states([(20, "run"), (100, "sleep"), (120, "run"), (200, "sleep")])
    segments = [(0, 22 * ms), (22 * ms, 121 * ms), (121 * ms, 135 * ms), (135 * ms, 200 * ms)]
    keys = ["work", "wait", "work", "wait"]
    joined = join_thread(segments, keys, states, 10 * ms, None)
    totals = state_time(joined, keys)
    assert totals.get(("work", State.WAITING), 0) == 0, totals
    assert totals[("work", State.ON_CPU)] == 40 * ms and totals[("wait", State.WAITING)] == 160 * ms


def test_back_to_back_waits_for_one_reason_keep_their_own_time():
    """Two blocking calls on one socket from different places (headers, then body): after the first
    boundary moves onto the switch, the second run starts exactly at it and is not a late stamp."""
    ms = 1_000_000
    states, _ = constructed_states([(30, "run"), (200, "sleep")])
    segments = [(0, 38 * ms), (38 * ms, 108 * ms), (108 * ms, 200 * ms)]
    keys = ["work", "recv_headers", "recv_body"]
    joined = join_thread(segments, keys, states, 10 * ms, None)
    totals = state_time(joined, keys)
    assert totals == {("work", State.ON_CPU): 30 * ms, ("recv_headers", State.WAITING): 78 * ms,
                      ("recv_body", State.WAITING): 92 * ms}
