"""Deep per-request profiles: pyinstrument's C sampling hook, converted into the profile model.

:class:`DeepProfiler` installs pyinstrument's ``setstatprofile`` hook on the calling thread. The
hook runs in C on every Python call and return and calls back into Python at most once per
``interval`` (1 ms, wall clock); that callback is the sample. It keeps only what the profile
needs and defers the rest to :func:`session_to_profile` (run off the request path):

* the call stack as its code objects (an event ``call`` is attributed to the caller; after a C
  function returned or raised, that function is the leaf, as a ``<built-in>`` frame). A sample
  walks only the part of the stack that changed since the previous sample (see
  :meth:`DeepProfiler._make_hook`) and records how many root-side frames it shares with it;
* the monotonic clock (``perf_counter_ns``), so each sample's weight is the wall time since the
  previous sample (the first one since :meth:`DeepProfiler.begin`);
* the thread's CPU clock (``thread_time_ns``), so a sample's state is known: ``ON_CPU`` when the
  thread's CPU time grew by at least half the sample's wall interval, ``WAITING`` otherwise (the
  same rule as the always-on sampler). If the CPU readings passed to :func:`session_to_profile`
  do not match the samples, states are UNKNOWN (and a note says so).

Frames are ``(qualified name, file, first line of the function)``: the name as the always-on
sampler and py-spy give it (``Handler.acquire``, not pyinstrument's ``acquire``), so profiles of
every collector line up in a diff; the current line is not kept. pyinstrument's ``Profiler`` is not
used: it would render every frame of every sample as an identifier string (reading the locals of
every method frame to find its class), walk the caller's stack at start, check a context
variable on every hook event and build a ``Session`` at stop, none of which the profile uses.

Timeline: the session starts at ``start_ns`` (epoch ns, read at :meth:`DeepProfiler.begin`);
sample *i* starts where sample *i - 1* ended and lasts its weight, so samples are laid end to end
with absolute times and can be lined up against spans. The time after the last sample (less than
one interval) is not recorded.
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
import types

from pyinstrument.low_level.stat_profile import setstatprofile

from ..model import NO_STACK, Profile, ProfileError, State, TableLists
from .stack_table import qualified_name

BUILTIN_FILE = "<built-in>"
# Frames of these codes can be suspended and resumed under another caller: never a stopping point.
_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
_ON_CPU, _WAITING, _UNKNOWN = int(State.ON_CPU), int(State.WAITING), int(State.UNKNOWN)

class DeepSession:
    """What one :class:`DeepProfiler` run recorded, per sample: how many root-side frames its stack
    shares with the previous sample's (``shared``; 0 for the first), the code objects of the rest
    (``changed``, leaf first), the name of the C function at the leaf (or None) and the monotonic
    clock at the sample; ``start_ns`` (epoch) and ``start_perf_ns`` (monotonic) at the start."""

    __slots__ = ("start_ns", "start_perf_ns", "shared", "changed", "c_leaves", "perf_ns_at_sample")

    def __init__(self, start_ns: int, start_perf_ns: int, shared: list, changed: list, c_leaves: list, perf_ns: list):
        self.start_ns = start_ns
        self.start_perf_ns = start_perf_ns
        self.shared = shared
        self.changed = changed
        self.c_leaves = c_leaves
        self.perf_ns_at_sample = perf_ns

    @property
    def sample_count(self) -> int:
        return len(self.shared)

    def code_stacks(self) -> list[list[types.CodeType]]:
        """Every sample's whole stack as code objects, root first (without the C leaf)."""
        stacks, path = [], []
        for shared, changed in zip(self.shared, self.changed):
            del path[shared:]
            path.extend(reversed(changed))
            stacks.append(list(path))
        return stacks

    def frames(self, index: int) -> list[tuple[str, str, int]]:
        """Sample ``index``'s call stack as ``(function, file, line)``, root first."""
        path: list[types.CodeType] = []
        for shared, changed in zip(self.shared[: index + 1], self.changed[: index + 1]):
            del path[shared:]
            path.extend(reversed(changed))
        frames = [(qualified_name(code), code.co_filename, code.co_firstlineno) for code in path]
        c_leaf = self.c_leaves[index]
        if c_leaf is not None:
            frames.append((c_leaf, BUILTIN_FILE, 0))
        return frames


class DeepProfiler:
    """Samples the calling thread's stack every ``interval`` seconds (wall) with pyinstrument's hook.

    ``stop()`` normally runs on the thread that called ``begin()``. A thread has one profile hook:
    ``begin()`` raises RuntimeError when another profiler (cProfile, pyinstrument, a second
    DeepProfiler) is active on the thread, and ``stop()`` leaves a hook that replaced ours alone.
    ``stop()`` called on another thread ends the recording at once; the hook removes itself at the
    next event of the profiled thread.

    While running, the profiler holds references to the frames on the stack at the last sample
    (see :meth:`_make_hook`): a call that returned keeps its locals until the next sample or ``stop()``.
    """

    def __init__(self, interval: float = 0.001):
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self.start_cpu_ns = 0
        self.cpu_ns_at_sample: list[int] = []
        self._shared: list[int] = []
        self._changed: list[list[types.CodeType]] = []
        self._c_leaves: list[str | None] = []
        self._perf_ns: list[int] = []
        self._last_frames: list = []  # the last sample's frames, leaf first (see _make_hook)
        self._last_frame_set: set = set()  # the same frames
        self._start_ns = 0
        self._start_perf_ns = 0
        self._thread = 0
        self._hook_state = None
        self._running = False

    def begin(self) -> None:
        """Start sampling this thread."""
        if self._running or self._hook_state is not None:
            raise RuntimeError("this DeepProfiler was already started; use a new one per profile")
        if sys.getprofile() is not None:
            raise RuntimeError("another profiler is active on this thread; no deep profile for this request")
        self._thread = threading.get_ident()
        self._running = True
        self._start_ns = time.time_ns()
        self.start_cpu_ns = time.thread_time_ns()
        self._start_perf_ns = time.perf_counter_ns()
        try:
            setstatprofile(self._make_hook(), self.interval, timer_type="walltime")
        except BaseException:
            self._running = False
            raise
        self._hook_state = sys.getprofile()

    def _make_hook(self):
        """The Python half of a sample (the C hook calls it once per interval): a closure over the
        lists it fills, so that a sample reads one attribute (whether the profiler still runs).

        The profiler keeps the previous sample's frames (leaf first, and as a set): the walk goes
        from the leaf towards the root only until it meets one of them that is a plain function
        frame (not a generator or coroutine, which can be resumed from another caller: those are
        walked through). Holding the frame object keeps its identity safe (no new frame can reuse
        it), and a plain frame still on the stack has not returned since, so every frame below it
        is the one below it then. The sample records how many frames it shares with the previous
        one (up to and including that frame) and the code objects above it; the kept frames are
        updated with C-level list and set operations on the changed part only.
        """
        shared_counts, changed_codes, c_leaves = self._shared, self._changed, self._c_leaves
        perf_ns, cpu_ns = self._perf_ns, self.cpu_ns_at_sample
        frames, on_stack = self._last_frames, self._last_frame_set
        perf_counter_ns, thread_time_ns = time.perf_counter_ns, time.thread_time_ns
        profiler = self

        def sample(frame, event, arg):
            if not profiler._running:  # stopped from another thread: unhook here
                frames.clear()
                on_stack.clear()
                if sys.getprofile() is profiler._hook_state:
                    setstatprofile(None)
                return
            now = perf_counter_ns()
            cpu = thread_time_ns()
            if event == "call":
                frame = frame.f_back
                c_leaf = None
            elif event == "c_return" or event == "c_exception":
                c_leaf = getattr(arg, "__qualname__", None) or getattr(arg, "__name__", "?")
            else:
                c_leaf = None
            fresh, codes = [], []
            push, add_code = fresh.append, codes.append
            while frame is not None:
                if frame in on_stack and not frame.f_code.co_flags & _RESUMABLE:
                    break
                push(frame)
                add_code(frame.f_code)
                frame = frame.f_back
            if frame is None:
                shared = 0
                if frames:
                    frames.clear()
                    on_stack.clear()
            else:
                above = frames.index(frame)  # the last sample's frames above it: they left the stack
                shared = len(frames) - above
                if above:
                    on_stack.difference_update(frames[:above])
                    del frames[:above]
            if fresh:
                frames[:0] = fresh
                on_stack.update(fresh)
            shared_counts.append(shared)
            changed_codes.append(codes)
            c_leaves.append(c_leaf)
            perf_ns.append(now)
            cpu_ns.append(cpu)

        return sample

    def stop(self) -> DeepSession:
        """Stop sampling; the recorded :class:`DeepSession`."""
        if not self._running:
            raise RuntimeError("this DeepProfiler is not running")
        self._running = False
        shared, changed, c_leaves, perf_ns = self._shared, self._changed, self._c_leaves, self._perf_ns
        if threading.get_ident() == self._thread:
            if sys.getprofile() is self._hook_state:
                setstatprofile(None)
            self._last_frames.clear()
            self._last_frame_set.clear()
        else:  # the profiled thread may be half-way through a sample: keep the complete ones
            complete = min(len(shared), len(changed), len(c_leaves), len(perf_ns), len(self.cpu_ns_at_sample))
            shared, changed, c_leaves, perf_ns = shared[:complete], changed[:complete], c_leaves[:complete], perf_ns[:complete]
            self.cpu_ns_at_sample = self.cpu_ns_at_sample[:complete]
        return DeepSession(self._start_ns, self._start_perf_ns, shared, changed, c_leaves, perf_ns)


def session_to_profile(
    session: DeepSession,
    cpu_ns_at_sample: list[int] | None,
    start_cpu_ns: int,
    *,
    pid: int,
    tid: int,
    thread_name: str,
    meta: dict,
) -> Profile:
    """Convert one thread's :class:`DeepSession` into a Profile (see the module docstring).

    ``cpu_ns_at_sample`` and ``start_cpu_ns`` are the profiler's thread CPU clock readings (its
    attributes of the same names).

    The profile is the one ``intern_frames`` and ``append_sample`` would build from the samples'
    frames (same strings, frames and stacks in the same order; samples of zero weight are left
    out but their stacks interned), built in a :class:`TableLists` and handed over with
    :meth:`Profile.set_tables` and :meth:`Profile.extend_samples` (which check what the interning
    methods and ``append_sample`` check): each sample converts only the frames above those it
    shares with the previous sample, and each code object is turned into a frame once.
    """
    profile = Profile(meta)
    thread = profile.add_thread(pid, tid, thread_name)
    shared_counts, changed_codes, c_leaves, perf_ns = session.shared, session.changed, session.c_leaves, session.perf_ns_at_sample
    count = len(shared_counts)
    cpu = cpu_ns_at_sample if cpu_ns_at_sample is not None and len(cpu_ns_at_sample) == count else None
    if cpu is None:
        profile.meta.setdefault("notes", []).append("deep profile CPU readings did not match its samples: states unknown")
    tables = TableLists()
    intern_frame, intern_stack = tables.frame, tables.stack
    frame_of_code: dict[int, int] = {}  # id(code) -> frame (the session holds the codes: ids are stable meanwhile)
    builtin_frames: dict[str, int] = {}
    path: list[int] = []  # the previous sample's stacks, root first (without its C leaf)
    times, stacks, weights, states = [], [], [], []
    clock_ns = session.start_ns
    previous_perf, previous_cpu = session.start_perf_ns, start_cpu_ns
    for index in range(count):
        shared = shared_counts[index]
        if shared < len(path):
            del path[shared:]
        stack = path[-1] if path else NO_STACK
        changed = changed_codes[index]
        if changed:
            for code in reversed(changed):
                frame = frame_of_code.get(id(code))
                if frame is None:
                    frame = frame_of_code[id(code)] = intern_frame(qualified_name(code), code.co_filename, code.co_firstlineno)
                stack = intern_stack(stack, frame)
                path.append(stack)
        c_leaf = c_leaves[index]
        if c_leaf is not None:
            frame = builtin_frames.get(c_leaf)
            if frame is None:
                frame = builtin_frames[c_leaf] = intern_frame(str(c_leaf), BUILTIN_FILE, 0)
            stack = intern_stack(stack, frame)
        now = perf_ns[index]
        weight = now - previous_perf
        previous_perf = now
        if cpu is not None:
            state = _ON_CPU if 2 * (cpu[index] - previous_cpu) >= weight else _WAITING
            previous_cpu = cpu[index]
        else:
            state = _UNKNOWN
        if weight > 0:
            times.append(clock_ns)
            stacks.append(stack)
            weights.append(weight)
            states.append(state)
            clock_ns += weight
    if times and times[0] < 0:
        raise ProfileError(f"deep session starts at {times[0]} ns, before the epoch")
    tables.fill(profile)
    profile.extend_samples(times, thread, stacks, weights, states)
    return profile


