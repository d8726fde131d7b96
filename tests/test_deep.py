"""Deep profiles: pyinstrument's sampling hook, recorded by DeepProfiler and converted into the profile model."""

from __future__ import annotations

import cProfile
import sys
import threading
import time
import weakref

import pytest
from pyinstrument.stack_sampler import build_call_stack

from profviz.collect.deep import DeepProfiler, DeepSession, session_to_profile
from profviz.model import Profile, State


def _pyinstrument_frames(frame, event: str, arg) -> list[tuple[str, str, int]]:
    """pyinstrument's own call stack for this hook event, as (function, file, first line), root
    first, without its synthetic thread root: what a deep profile's stack must match."""
    frames = []
    for identifier in build_call_stack(frame, event, arg)[1:]:
        function, file, line = identifier.split("\x01", 1)[0].split("\x00")
        frames.append((function, file, int(line)))
    return frames


def _plain(frames: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Frames with pyinstrument's plain function names: ``Class.method`` -> ``method``."""
    return [(name.rpartition(".")[2], file, line) for name, file, line in frames]


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
        assert _plain(frames) == pyinstrument_frames and frames[-2][0] == "_branch"
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
        assert _plain(session.frames(index)) == _pyinstrument_frames(frame, event, arg), event
    assert session.frames(0)[-1][0] != "test_every_hook_event_is_attributed_as_pyinstrument_attributes_it"
    assert session.frames(3)[-1] == ("len", "<built-in>", 0)


# -- the changed-part walk and the direct conversion --------------------------------------------


def _countdown(n: int):
    while n:
        _spin(0.0002)
        yield n
        n -= 1


def _delegating(n: int):
    yield from _countdown(n)


async def _awaited() -> int:
    _spin(0.0002)
    return 1


async def _coroutine(rounds: int) -> int:
    total = 0
    for _ in range(rounds):
        total += await _awaited()
    return total


def _advance(generator) -> int:
    return next(generator)


def _advance_elsewhere(generator) -> int:
    return _advance(generator) + 0


def _recurse(depth: int, generator) -> int:
    if depth:
        return _recurse(depth - 1, generator) + 1
    return _advance(generator) if depth % 2 == 0 else _advance_elsewhere(generator)


def _raise_through(depth: int) -> None:
    if depth:
        _raise_through(depth - 1)
    _spin(0.0002)
    raise KeyError(depth)


def _mixed_work() -> None:
    """Recursion, generators resumed from different callers (and depths), yield from, a coroutine
    driven by hand, an exception unwinding several frames."""
    generator = _delegating(40)
    for round_number in range(12):
        _recurse(round_number % 5, generator)
        _advance_elsewhere(generator)
        try:
            _raise_through(3)
        except KeyError:
            pass
    coroutine = _coroutine(6)
    try:
        coroutine.send(None)
    except StopIteration:
        pass


def _checked_profiler(interval: float) -> tuple[DeepProfiler, list]:
    """A DeepProfiler whose callback also records, at every sample, the whole stack walked from the
    leaf to the root (code objects, root first): the reference the changed-part walk must match."""
    profiler = DeepProfiler(interval)
    full_walks: list = []

    def make_hook():
        sample = DeepProfiler._make_hook(profiler)

        def checked(frame, event, arg):
            if profiler._running:
                walked = frame.f_back if event == "call" else frame
                codes = []
                while walked is not None:
                    codes.append(walked.f_code)
                    walked = walked.f_back
                full_walks.append(codes[::-1])
            return sample(frame, event, arg)

        return checked

    profiler._make_hook = make_hook
    return profiler, full_walks


@pytest.mark.parametrize("interval", [1e-7, 1e-4])  # about every hook event; a few samples inside each generator step
def test_the_changed_part_walk_gives_exactly_the_stacks_a_full_walk_gives(interval):
    profiler, full_walks = _checked_profiler(interval)
    profiler.begin()
    _mixed_work()
    session = profiler.stop()
    assert session.sample_count == len(full_walks) > 40
    assert session.code_stacks() == full_walks
    assert max(session.shared) > 20 and 0 < sum(map(len, session.changed)) < sum(map(len, full_walks)) / 4
    # the generator was sampled resumed under different callers, the coroutine and the recursion at depth
    resumed = {
        (stack.index(_countdown.__code__), stack[stack.index(_advance.__code__) - 1].co_name)
        for stack in full_walks if _countdown.__code__ in stack and _advance.__code__ in stack
    }
    assert {caller for _, caller in resumed} == {"_recurse", "_advance_elsewhere"} and len({depth for depth, _ in resumed}) >= 4
    assert any(_awaited.__code__ in stack for stack in full_walks)
    assert max(stack.count(_recurse.__code__) for stack in full_walks) == 5
    assert max(stack.count(_raise_through.__code__) for stack in full_walks) == 4
    assert not profiler._last_frames and not profiler._last_frame_set  # stop() let every held frame go


def _reference_profile(session: DeepSession, cpu: list[int], start_cpu: int):
    """The profile the public builder makes of the session's samples: intern_frames + append_sample."""
    profile = Profile({"kind": "request"})
    thread = profile.add_thread(1, 2, "t")
    clock, previous_perf, previous_cpu = session.start_ns, session.start_perf_ns, start_cpu
    for index in range(session.sample_count):
        stack = profile.intern_frames(session.frames(index))
        weight = session.perf_ns_at_sample[index] - previous_perf
        previous_perf = session.perf_ns_at_sample[index]
        state = State.ON_CPU if 2 * (cpu[index] - previous_cpu) >= weight else State.WAITING
        previous_cpu = cpu[index]
        if weight > 0:
            profile.append_sample(clock, thread, stack, weight, state)
            clock += weight
    return profile


def _tables(profile) -> tuple:
    columns = profile.columns()
    return (
        profile.strings, list(profile.frame_function), list(profile.frame_file), list(profile.frame_line),
        list(profile.stack_prefix), list(profile.stack_frame), [(t.pid, t.tid, t.name) for t in profile.threads],
        {name: values.tolist() for name, values in columns.items()},
    )


def test_the_profile_is_the_one_the_public_builder_makes(recorded):
    profiler, full_walks = _checked_profiler(1e-5)
    profiler.begin()
    _mixed_work()
    session = profiler.stop()
    for profiler, session in ((profiler, session), recorded[:2]):
        profile = _convert(profiler, session)
        assert _tables(profile) == _tables(_reference_profile(session, profiler.cpu_ns_at_sample, profiler.start_cpu_ns))
        profile.check()
        assert profile.sample_count > 10
        stacks = len(profile.stack_prefix)  # interning more finds what the conversion wrote (indexes rebuilt)
        assert profile.intern_frames(session.frames(0)) == int(profile.columns()["stack"][0]) and len(profile.stack_prefix) == stacks


def test_a_held_frame_is_let_go_at_the_next_sample_or_at_stop():
    class Token:
        pass

    profiler = DeepProfiler(60.0)  # only the samples taken by hand below
    profiler.begin()
    sample = profiler._make_hook()
    tokens: list = []

    def holder() -> None:
        token = Token()  # noqa: F841  (lives as long as this frame)
        tokens.append(weakref.ref(token))
        sample(sys._getframe(), "line", None)

    holder()
    assert tokens[0]() is not None  # its frame was held by the sample taken inside it
    sample(sys._getframe(), "line", None)  # holder has left the stack: the next sample lets it go
    assert tokens[0]() is None
    holder()
    assert tokens[1]() is not None
    session = profiler.stop()
    assert tokens[1]() is None and session.sample_count == 3
    assert session.shared[1] == len(session.code_stacks()[1]) and session.changed[1] == []  # nothing new above the caller


class _Handler:
    def handle(self) -> None:
        _spin(0.003)


def test_frames_carry_qualified_names_as_the_sampler_and_py_spy_give_them():
    """``_Handler.handle``, not pyinstrument's ``handle``: profiles of every collector line up in a diff."""
    profiler = DeepProfiler(0.001)
    profiler.begin()
    _Handler().handle()
    session = profiler.stop()
    profile = session_to_profile(session, profiler.cpu_ns_at_sample, profiler.start_cpu_ns, pid=1, tid=2,
                                 thread_name="t", meta={"kind": "request"})
    names = {frame[0] for stack in profile.columns()["stack"] for frame in _frames_of(profile, int(stack))}
    assert "_Handler.handle" in names and "handle" not in names
    assert "test_frames_carry_qualified_names_as_the_sampler_and_py_spy_give_them" in names
