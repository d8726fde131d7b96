"""Deep per-request profiles with pyinstrument, converted into the profile model.

pyinstrument samples the thread that started it at ``interval`` (1 ms) through a C profile hook,
recording each sample as ``(call stack, seconds since the previous sample)``. :class:`DeepProfiler`
also reads the thread's CPU clock (``time.thread_time_ns``) at every sample, so a sample's state
is known: ``ON_CPU`` when the thread's CPU time grew by at least half the sample's wall interval,
``WAITING`` otherwise (the same rule as the always-on sampler). pyinstrument's ``[await]`` and
``[out-of-context]`` markers (async modes only) are also WAITING. If the CPU readings cannot be
matched to the records (a pyinstrument that changed its internals), states fall back to UNKNOWN.

Timeline: the session starts at ``session.start_time`` (epoch seconds, taken just before the
first interval starts); sample *i* stands for the interval ending at start plus the sum of the
first *i + 1* deltas, so samples are laid end to end with absolute times and can be lined up
against spans. The synthetic thread root pyinstrument puts at the base of each stack is dropped;
C functions pyinstrument saw returning appear as ``<built-in>`` frames.
"""

from __future__ import annotations

import time

from pyinstrument import Profiler

from ..model import NO_STACK, Profile, State

SYNTHETIC_WAITING = {"[await]", "[out-of-context]"}


class DeepProfiler(Profiler):
    """A pyinstrument Profiler that also records the thread CPU clock at every sample."""

    def __init__(self, interval: float = 0.001):
        super().__init__(interval=interval, async_mode="disabled")
        self.cpu_ns_at_sample: list[int] = []
        self.start_cpu_ns = 0

    def begin(self) -> None:
        self.start_cpu_ns = time.thread_time_ns()
        self.start()

    def _sampler_saw_call_stack(self, call_stack, time_since_last_sample, async_state):
        super()._sampler_saw_call_stack(call_stack, time_since_last_sample, async_state)
        self.cpu_ns_at_sample.append(time.thread_time_ns())


_PARSED_LIMIT = 50_000
_parsed: dict[str, tuple[str, str, int]] = {}  # frame identifier -> (function, file, line), across profiles


def _parsed_frame(identifier: str) -> tuple[str, str, int]:
    """:func:`parse_frame_identifier` (synthetic markers as ``<pyinstrument>`` frames), remembered:
    the same identifiers come back in every deep profile of a process."""
    found = _parsed.get(identifier)
    if found is None:
        if len(_parsed) >= _PARSED_LIMIT:
            _parsed.clear()
        if identifier in SYNTHETIC_WAITING:
            found = (identifier, "<pyinstrument>", 0)
        else:
            found = parse_frame_identifier(identifier)
        _parsed[identifier] = found
    return found


def parse_frame_identifier(frame_info: str) -> tuple[str, str, int]:
    """(function, file, line) of a pyinstrument frame info string ("function\\0file\\0line[\\1attrs]")."""
    identifier = frame_info.split("\x01", 1)[0]
    parts = identifier.split("\x00")
    if len(parts) < 3:
        return identifier, "<pyinstrument>", 0
    function, file, line = parts[0], parts[1], parts[2]
    try:
        line_number = max(0, int(line))
    except ValueError:
        line_number = 0
    return function, file, line_number


def session_to_profile(
    session,
    cpu_ns_at_sample: list[int] | None,
    start_cpu_ns: int,
    *,
    pid: int,
    tid: int,
    thread_name: str,
    meta: dict,
) -> Profile:
    """Convert a pyinstrument Session of one thread into a Profile (see the module docstring)."""
    profile = Profile(meta)
    thread = profile.add_thread(pid, tid, thread_name)
    records = session.frame_records
    cpu = cpu_ns_at_sample if cpu_ns_at_sample is not None and len(cpu_ns_at_sample) == len(records) else None
    if cpu is None:
        profile.meta.setdefault("notes", []).append("pyinstrument CPU readings did not match its samples: states unknown")
    clock_ns = int(session.start_time * 1e9)
    previous_cpu = start_cpu_ns
    nodes: dict[tuple[int, str], int] = {}  # (prefix stack, frame identifier) -> stack: shared prefixes converted once
    for index, (call_stack, delta_s) in enumerate(records):
        weight = int(round(delta_s * 1e9))
        frames = call_stack[1:] if call_stack and "\x00<thread>\x00" in call_stack[0] else call_stack
        leaf_marker = frames[-1] if frames and frames[-1] in SYNTHETIC_WAITING else None
        stack = NO_STACK
        for identifier in frames:
            key = (stack, identifier)
            node = nodes.get(key)
            if node is None:
                node = nodes[key] = profile.intern_stack(stack, profile.intern_frame(*_parsed_frame(identifier)))
            stack = node
        if cpu is not None:
            state = State.ON_CPU if 2 * (cpu[index] - previous_cpu) >= weight else State.WAITING
            previous_cpu = cpu[index]
        else:
            state = State.UNKNOWN
        if leaf_marker is not None:
            state = State.WAITING
        if weight > 0:
            profile.append_sample(clock_ns, thread, stack, weight, state)
        clock_ns += max(weight, 0)
    return profile
