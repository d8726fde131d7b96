"""Deep profiles: pyinstrument's sampling hook, recorded by DeepProfiler and converted into the profile model."""

from __future__ import annotations

import cProfile
import sys
import threading
import time

import pytest
from pyinstrument.stack_sampler import build_call_stack

from profviz.collect.deep import DeepProfiler, session_to_profile
from profviz.model import State


def _pyinstrument_frames(frame, event: str, arg) -> list[tuple[str, str, int]]:
    """pyinstrument's own call stack for this hook event, as (function, file, first line), root
    first, without its synthetic thread root: what a deep profile's stack must match."""
    frames = []
    for identifier in build_call_stack(frame, event, arg)[1:]:
        function, file, line = identifier.split("\x01", 1)[0].split("\x00")
        frames.append((function, file, int(line)))
    return frames


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _branch(depth: int, expected: list) -> None:
    if depth:
        return _branch(depth - 1, expected)
    _spin(0.004)
    # the sample at the return from sleep() (pyinstrument adds sleep as a <built-in> leaf under this frame)
    expected.append(_pyinstrument_frames(sys._getframe(), "c_return", time.sleep))
    time.sleep(0.004)


def _work(expected: list) -> None:
    for depth in (0, 3, 6, 3, 0):
        _branch(depth, expected)


def _frames_of(profile, stack: int) -> list[tuple[str, str, int]]:
    out = []
    while stack >= 0:
        frame = profile.frame(int(profile.stack_frame[stack]))
        out.append((frame.function, frame.file, frame.line))
        stack = profile.stack_prefix[stack]
    return out[::-1]


@pytest.fixture(scope="module")
def recorded():
    """One real 40 ms recording of _work: (profiler, session, expected sleep stacks, epoch before/after)."""
    expected: list = []
    before = time.time_ns()
    profiler = DeepProfiler(0.001)
    profiler.begin()
    _work(expected)
    session = profiler.stop()
    after = time.time_ns()
    assert sys.getprofile() is None  # the hook is gone
    return profiler, session, expected, before, after


def _convert(profiler, session, cpu=None):
    return session_to_profile(
        session, profiler.cpu_ns_at_sample if cpu is None else cpu, profiler.start_cpu_ns,
        pid=1, tid=2, thread_name="t", meta={"kind": "request"},
    )


def test_each_sleep_is_sampled_with_exactly_the_stack_pyinstrument_would_give(recorded):
    profiler, session, expected, _, _ = recorded
    profile = _convert(profiler, session)
    stacks = [_frames_of(profile, int(stack)) for stack in profile.columns()["stack"]]
    sleep_samples = [frames for frames in stacks if frames[-1] == ("sleep", "<built-in>", 0)]
    assert len(sleep_samples) == len(expected) == 5
    for frames, pyinstrument_frames in zip(sleep_samples, expected):
        assert frames == pyinstrument_frames and frames[-2][0] == "_branch"
    assert [sum(f[0] == "_branch" for f in frames) for frames in sleep_samples] == [1, 4, 7, 4, 1]
    assert all(frames == session.frames(i) for i, frames in enumerate(stacks))  # every weight > 0: one sample each


def test_shared_prefixes_are_stored_once(recorded):
    profiler, session, _, _, _ = recorded
    profile = _convert(profiler, session)
    prefixes = set()
    for index in range(session.sample_count):
        frames = session.frames(index)
        prefixes.update(tuple(frames[: i + 1]) for i in range(len(frames)))
    assert len(profile.stack_prefix) == len(prefixes)


def test_samples_are_laid_end_to_end_in_absolute_time_with_cpu_or_waiting_states(recorded):
    profiler, session, _, before, after = recorded
    profile = _convert(profiler, session)
    columns = profile.columns()
    times, weights = columns["time_ns"].tolist(), columns["weight_ns"].tolist()
    assert len(times) >= 10  # 5 sleeps and about 20 ms of spinning, sampled every 1 ms
    assert times[0] == session.start_ns and before <= session.start_ns
    assert all(t + w == t_next for t, w, t_next in zip(times, weights, times[1:]))
    assert times[-1] + weights[-1] <= after
    assert min(weights) > 0
    assert sum(weights) == session.perf_ns_at_sample[-1] - session.start_perf_ns
    # the spinning samples ran, the sleeping ones waited (a descheduled spin on a loaded box may count as waiting)
    states = columns["state"].tolist()
    leaves = [_frames_of(profile, int(stack))[-1][0] for stack in columns["stack"]]
    assert all(state == int(State.WAITING) for leaf, state in zip(leaves, states) if leaf == "sleep")
    spinning = [state for leaf, state in zip(leaves, states) if leaf in ("_spin", "perf_counter")]
    assert spinning.count(int(State.ON_CPU)) > 0.5 * len(spinning)


def test_cpu_readings_that_do_not_match_the_samples_give_unknown_states_and_a_note(recorded):
    profiler, session, _, _, _ = recorded
    profile = _convert(profiler, session, cpu=profiler.cpu_ns_at_sample[:-1])
    assert set(profile.columns()["state"].tolist()) == {int(State.UNKNOWN)}
    assert "did not match" in profile.meta["notes"][0]


def test_another_profiler_on_the_thread_is_left_alone():
    other = cProfile.Profile()
    other.enable()
    try:
        with pytest.raises(RuntimeError, match="another profiler"):
            DeepProfiler().begin()
        assert sys.getprofile() is other
    finally:
        other.disable()


def test_stopped_from_another_thread_the_hook_removes_itself():
    started, stop_spinning = threading.Event(), threading.Event()
    hooks_after: list = []
    profiler = DeepProfiler(0.001)

    def target():
        profiler.begin()
        started.set()
        while not stop_spinning.is_set():
            _spin(0.001)
        hooks_after.append(sys.getprofile())

    worker = threading.Thread(target=target)
    worker.start()
    started.wait(5)
    time.sleep(0.02)
    session = profiler.stop()
    time.sleep(0.005)
    stop_spinning.set()
    worker.join(5)
    assert hooks_after == [None]
    assert session.sample_count >= 5 and len(profiler.cpu_ns_at_sample) == session.sample_count
    profile = _convert(profiler, session)
    assert profile.sample_count >= 5 and "notes" not in profile.meta
    with pytest.raises(RuntimeError, match="not running"):
        profiler.stop()


def test_every_hook_event_is_attributed_as_pyinstrument_attributes_it():
    """A call counts for the caller, a returning C function is a <built-in> leaf, a return or line stays in its frame."""
    profiler = DeepProfiler(60.0)  # the installed hook never samples on its own here
    profiler.begin()
    sample = profiler._make_hook()  # the same callback the C hook calls, filling the same session
    frame = sys._getframe()
    events = [("call", None), ("return", None), ("line", None), ("c_return", len), ("c_exception", time.sleep)]
    for event, arg in events:
        sample(frame, event, arg)
    session = profiler.stop()
    assert session.sample_count == len(events)
    for index, (event, arg) in enumerate(events):
        assert session.frames(index) == _pyinstrument_frames(frame, event, arg), event
    assert session.frames(0)[-1][0] != "test_every_hook_event_is_attributed_as_pyinstrument_attributes_it"
    assert session.frames(3)[-1] == ("len", "<built-in>", 0)
