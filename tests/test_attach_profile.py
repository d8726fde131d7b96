"""Assembling the attach profile: py-spy's clock lag, measured from the recording itself."""

from __future__ import annotations

import numpy as np

from profviz.collect.attach_profile import build_profile, estimate_pyspy_lag
from profviz.formats.pyspy_chrometrace import ChromeTrace, StackSegment, TraceThread
from tests.test_join import constructed_states


def test_pyspy_lag_is_measured_from_the_changes_it_saw_late():
    """py-spy's times come out early by its start-up time; the lags behind the state switches show by how much."""
    ms = 1_000_000
    phases = []
    for cycle in range(60):
        phases += [(cycle * 100 + 30, "run"), (cycle * 100 + 100, "sleep")]
    states, _ = constructed_states(phases)
    rng = np.random.default_rng(7)
    early_ms = 4.0
    thread = TraceThread(pid=1, trace_tid=1, native_tid=7)
    change_us = [0]
    for cycle in range(60):
        for switch_ms in (cycle * 100 + 30, cycle * 100 + 100):
            change_us.append(int((switch_ms + rng.exponential(10.0) - early_ms) * 1000))
    change_us[-1] = 6000 * 1000
    for k, (start, end) in enumerate(zip(change_us, change_us[1:])):
        thread.segments.append(StackSegment(start, end, ((("work", "nap")[k % 2], "t.py", 1),)))
    trace = ChromeTrace([thread], 0, change_us[-1], 0)
    lag = estimate_pyspy_lag(trace, 0, {(1, 7): states}, 10 * ms)
    assert abs(lag / ms - early_ms) < 1.5, lag / ms
    assert estimate_pyspy_lag(trace, 0, {}, 10 * ms) == 0


def test_threads_py_spy_left_unnamed_get_the_main_thread_name_or_their_kernel_name():
    """py-spy can fail to read the names for a whole recording; the main thread is still "MainThread",
    another thread without a kernel name of its own stays unnamed."""
    threads = []
    for tid in (100, 101, 102):
        thread = TraceThread(pid=100, trace_tid=tid, native_tid=tid)
        thread.segments.append(StackSegment(0, 10_000, (("work", "t.py", 1),)))
        threads.append(thread)
    trace = ChromeTrace(threads, 0, 10_000, 0)
    profile, _ = build_profile(trace, 0, None, 100.0, {})
    assert [t.name for t in profile.threads] == ["MainThread", "", ""]
