"""Deep per-request profiles: pyinstrument's C sampling hook, converted into the profile model.

:class:`DeepProfiler` installs pyinstrument's ``setstatprofile`` hook on the calling thread. The
hook runs in C on every Python call and return and calls back into Python at most once per
``interval`` (1 ms, wall clock); that callback is the sample. It keeps only what the profile
needs and defers the rest to :func:`session_to_profile` (run off the request path):

* the call stack as its code objects, leaf first (an event ``call`` is attributed to the caller;
  after a C function returned or raised, that function is the leaf, as a ``<built-in>`` frame);
* the monotonic clock (``perf_counter_ns``), so each sample's weight is the wall time since the
  previous sample (the first one since :meth:`DeepProfiler.begin`);
* the thread's CPU clock (``thread_time_ns``), so a sample's state is known: ``ON_CPU`` when the
  thread's CPU time grew by at least half the sample's wall interval, ``WAITING`` otherwise (the
  same rule as the always-on sampler). If the CPU readings passed to :func:`session_to_profile`
  do not match the samples, states are UNKNOWN (and a note says so).

Frames are ``(code name, file, first line of the function)``, as pyinstrument identifies them
(its class-name and current-line attributes are not kept). pyinstrument's ``Profiler`` is not
used: it would render every frame of every sample as an identifier string (reading the locals of
every method frame to find its class), walk the caller's stack at start, check a context
variable on every hook event and build a ``Session`` at stop, none of which the profile uses.

Timeline: the session starts at ``start_ns`` (epoch ns, read at :meth:`DeepProfiler.begin`);
sample *i* starts where sample *i - 1* ended and lasts its weight, so samples are laid end to end
with absolute times and can be lined up against spans. The time after the last sample (less than
one interval) is not recorded.
"""

from __future__ import annotations

import sys
import threading
import time
import types

from pyinstrument.low_level.stat_profile import setstatprofile

from ..model import NO_STACK, Profile, State

BUILTIN_FILE = "<built-in>"


class DeepSession:
    """What one :class:`DeepProfiler` run recorded: per sample, the stack's code objects (leaf
    first), the name of the C function at the leaf (or None) and the monotonic clock at the
    sample; ``start_ns`` (epoch) and ``start_perf_ns`` (monotonic) at the start."""

    __slots__ = ("start_ns", "start_perf_ns", "stacks", "c_leaves", "perf_ns_at_sample")

    def __init__(self, start_ns: int, start_perf_ns: int, stacks: list, c_leaves: list, perf_ns: list):
        self.start_ns = start_ns
        self.start_perf_ns = start_perf_ns
        self.stacks = stacks
        self.c_leaves = c_leaves
        self.perf_ns_at_sample = perf_ns

    @property
    def sample_count(self) -> int:
        return len(self.stacks)

    def frames(self, index: int) -> list[tuple[str, str, int]]:
        """Sample ``index``'s call stack as ``(function, file, line)``, root first."""
        frames = [(code.co_name, code.co_filename, code.co_firstlineno) for code in reversed(self.stacks[index])]
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
    """

    def __init__(self, interval: float = 0.001):
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self.start_cpu_ns = 0
        self.cpu_ns_at_sample: list[int] = []
        self._stacks: list[list[types.CodeType]] = []
        self._c_leaves: list[str | None] = []
        self._perf_ns: list[int] = []
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
        lists it fills, so that a sample reads one attribute (whether the profiler still runs)."""
        stacks, c_leaves = self._stacks, self._c_leaves
        perf_ns, cpu_ns = self._perf_ns, self.cpu_ns_at_sample
        perf_counter_ns, thread_time_ns = time.perf_counter_ns, time.thread_time_ns
        profiler = self

        def sample(frame, event, arg):
            if not profiler._running:  # stopped from another thread: unhook here
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
            codes = []
            append = codes.append
            while frame is not None:
                append(frame.f_code)
                frame = frame.f_back
            stacks.append(codes)
            c_leaves.append(c_leaf)
            perf_ns.append(now)
            cpu_ns.append(cpu)

        return sample

    def stop(self) -> DeepSession:
        """Stop sampling; the recorded :class:`DeepSession`."""
        if not self._running:
            raise RuntimeError("this DeepProfiler is not running")
        self._running = False
        stacks, c_leaves, perf_ns = self._stacks, self._c_leaves, self._perf_ns
        if threading.get_ident() == self._thread:
            if sys.getprofile() is self._hook_state:
                setstatprofile(None)
        else:  # the profiled thread may be half-way through a sample: keep the complete ones
            complete = min(len(stacks), len(c_leaves), len(perf_ns), len(self.cpu_ns_at_sample))
            stacks, c_leaves, perf_ns = stacks[:complete], c_leaves[:complete], perf_ns[:complete]
            self.cpu_ns_at_sample = self.cpu_ns_at_sample[:complete]
        return DeepSession(self._start_ns, self._start_perf_ns, stacks, c_leaves, perf_ns)


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
    attributes of the same names)."""
    profile = Profile(meta)
    thread = profile.add_thread(pid, tid, thread_name)
    stacks, c_leaves, perf_ns = session.stacks, session.c_leaves, session.perf_ns_at_sample
    count = len(stacks)
    cpu = cpu_ns_at_sample if cpu_ns_at_sample is not None and len(cpu_ns_at_sample) == count else None
    if cpu is None:
        profile.meta.setdefault("notes", []).append("deep profile CPU readings did not match its samples: states unknown")
    intern_stack, intern_frame, append_sample = profile.intern_stack, profile.intern_frame, profile.append_sample
    nodes: dict[tuple[int, int], int] = {}  # (prefix stack, id(code)) -> stack: shared prefixes converted once
    builtin_nodes: dict[tuple[int, str], int] = {}
    clock_ns = session.start_ns
    previous_perf, previous_cpu = session.start_perf_ns, start_cpu_ns
    for index in range(count):
        stack = NO_STACK
        for code in reversed(stacks[index]):
            key = (stack, id(code))  # the session holds the code objects: ids are stable while converting
            node = nodes.get(key)
            if node is None:
                node = nodes[key] = intern_stack(stack, intern_frame(code.co_name, code.co_filename, code.co_firstlineno))
            stack = node
        c_leaf = c_leaves[index]
        if c_leaf is not None:
            key = (stack, c_leaf)
            node = builtin_nodes.get(key)
            if node is None:
                node = builtin_nodes[key] = intern_stack(stack, intern_frame(str(c_leaf), BUILTIN_FILE, 0))
            stack = node
        now = perf_ns[index]
        weight = now - previous_perf
        previous_perf = now
        if cpu is not None:
            state = State.ON_CPU if 2 * (cpu[index] - previous_cpu) >= weight else State.WAITING
            previous_cpu = cpu[index]
        else:
            state = State.UNKNOWN
        if weight > 0:
            append_sample(clock_ns, thread, stack, weight, state)
            clock_ns += weight
    return profile
