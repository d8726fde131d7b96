"""Deep profiles: pyinstrument sessions converted into the profile model."""

from __future__ import annotations

import time

from profviz.collect.deep import DeepProfiler, parse_frame_identifier, session_to_profile
from profviz.model import State


def _branch(depth: int) -> None:
    if depth:
        return _branch(depth - 1)
    end = time.perf_counter() + 0.004
    while time.perf_counter() < end:
        pass
    time.sleep(0.004)


def _work() -> None:
    for depth in (0, 3, 6, 3, 0):
        _branch(depth)


def _frames_of(profile, stack: int) -> list[tuple[str, str, int]]:
    out = []
    while stack >= 0:
        frame = profile.frame(int(profile.stack_frame[stack]))
        out.append((frame.function, frame.file, frame.line))
        stack = profile.stack_prefix[stack]
    return out[::-1]


def test_every_sample_keeps_its_call_stack_and_shared_prefixes_are_stored_once():
    profiler = DeepProfiler(0.001)
    profiler.begin()
    _work()
    session = profiler.stop()
    records = session.frame_records
    assert len(records) >= 20
    profile = session_to_profile(
        session, profiler.cpu_ns_at_sample, profiler.start_cpu_ns, pid=1, tid=2, thread_name="t", meta={"kind": "request"},
    )
    columns = profile.columns()
    kept = [(call_stack, delta) for call_stack, delta in records if int(round(delta * 1e9)) > 0]
    assert len(columns["stack"]) == len(kept)
    for (call_stack, _), stack in zip(kept, columns["stack"]):
        frames = call_stack[1:] if "\x00<thread>\x00" in call_stack[0] else call_stack
        assert _frames_of(profile, int(stack)) == [parse_frame_identifier(f) for f in frames]
    nodes = set()
    for call_stack, _ in kept:
        frames = call_stack[1:] if "\x00<thread>\x00" in call_stack[0] else call_stack
        parsed = [parse_frame_identifier(f) for f in frames]
        nodes.update(tuple(parsed[: i + 1]) for i in range(len(parsed)))
    assert len(profile.stack_prefix) == len(nodes)  # one stored stack per distinct prefix, none twice
    states = {int(s) for s in columns["state"]}
    assert states <= {int(State.ON_CPU), int(State.WAITING)} and len(states) == 2
    assert "_branch" in {profile.frame(i).function for i in range(len(profile.frame_function))}
