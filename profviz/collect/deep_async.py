"""Deep profiles of requests served by asyncio tasks: pyinstrument's ``Profiler`` in
``async_mode="enabled"``, which follows one task's context on a shared loop thread and records
the time the task spent awaiting as ``[await]`` under the awaiting frames. (The threaded deep
profiler, :mod:`.deep`, hooks the whole thread, which on an event loop is every request's.)

:func:`async_session_to_profile` turns the session into a profile: one sample per pyinstrument
frame record, WAITING (reason ``await``) when it ends in ``[await]``, else UNKNOWN (pyinstrument
reads wall time only, not whether a call was on a CPU); pyinstrument's own frames and the frames
below the request's (the server's, up to where profiling started) are left out.
"""

from __future__ import annotations

import time

from ..formats.pyinstrument_json import AWAIT_FRAME, parse_frame_info
from ..model import NO_STACK, Profile, State

AWAIT_REASON = "await"


class AsyncDeepProfiler:
    """pyinstrument for the calling task only; :meth:`begin` and :meth:`stop` in that task."""

    def __init__(self, interval: float = 0.001):
        from pyinstrument import Profiler

        self.profiler = Profiler(interval=interval, async_mode="enabled")
        self.start_ns = 0

    def begin(self) -> None:
        self.start_ns = time.time_ns()
        self.profiler.start()

    def stop(self):
        """The pyinstrument Session recorded."""
        return self.profiler.stop()


def async_session_to_profile(session, start_ns: int, *, pid: int, tid: int, thread_name: str, meta: dict) -> Profile:
    """A profile of one task's pyinstrument session (see the module docstring)."""
    profile = Profile(meta)
    thread = profile.add_thread(pid, tid, thread_name)
    below = _start_prefix(session.start_call_stack)
    stacks: dict[tuple, int] = {}
    now = start_ns
    for infos, seconds in session.frame_records:
        frames = [parse_frame_info(info, "deep profile frame") for info in infos]
        frames = [frame[:3] for frame in frames if not frame[3]]
        cut = 0
        while cut < len(below) and cut < len(frames) and frames[cut] == below[cut]:
            cut += 1
        frames = frames[cut:]
        weight = int(round(seconds * 1e9))
        if weight <= 0:
            continue
        key = tuple(frames)
        stack = stacks.get(key)
        if stack is None:
            stack = stacks[key] = profile.intern_frames(frames) if frames else NO_STACK
        waiting = bool(frames) and frames[-1][0] == AWAIT_FRAME
        profile.append_sample(now, thread, stack, weight, State.WAITING if waiting else State.UNKNOWN,
                              AWAIT_REASON if waiting else None)
        now += weight
    return profile


def _start_prefix(start_call_stack: list[str]) -> list[tuple]:
    """The frames below where profiling started (the server's, and the middleware's own frames
    that called ``begin``, which pyinstrument records as the start stack), to trim from each record."""
    frames = [parse_frame_info(info, "deep profile start frame") for info in start_call_stack]
    frames = [frame[:3] for frame in frames if not frame[3]]
    while frames and ("/pyinstrument/" in frames[-1][1] or "/profviz/" in frames[-1][1]):
        frames.pop()
    return frames
