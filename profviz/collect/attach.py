"""The attach collector: py-spy's wall-clock stacks of every thread, joined with each thread's
scheduler state read from /proc at the same rate, into one profile where every sample carries a
state (ON_CPU / WAITING with its reason / RUNNABLE, UNKNOWN only when nothing was readable).

Streams. py-spy (:mod:`profviz.collect.pyspy`) samples at ``rate_hz`` with exponentially
distributed gaps and only reports when a thread's stack changes, so its output is, per thread, a
list of stack segments whose boundaries are sampling instants (:mod:`profviz.formats.pyspy_chrometrace`).
Beside it a :class:`StateRecorder` thread reads every thread's state with
:class:`~profviz.collect.procstate.ProcStateReader` ``rate_hz`` times a second and classifies each
reading against the previous one of the same thread (``procstate.classify``).

Join (:func:`join_thread`), per thread (matched by native tid, which py-spy's ``--threads`` frame
carries):

1. Boundary refinement. py-spy sees a stack change at the first sample after it, on average one
   sampling interval late, so the end of every segment really belongs to the next one. Where the
   thread switched between running and waiting shortly before a boundary (within
   ``REFINE_WINDOW_PERIODS`` intervals), the old segment was mostly in the state it switched away
   from, and the thread is in the new state at the boundary, the boundary moves back to the
   switch, placed exactly with the thread's cumulative CPU + run-queue time from schedstat (a
   thread that ran for 4 ms after a reading and then slept switched 4 ms after that reading).
   Both directions move (running -> waiting and waiting -> running). Line-only stack changes are
   carried along.
2. Samples. Each segment is split into evenly spaced samples of about 1/rate_hz whose weights add
   up to the segment's length (:func:`~profviz.formats.pyspy_chrometrace.segment_sample_times`).
3. States. Each sample takes the state of the reading that describes its midpoint
   (:class:`StateTimeline`): between two readings of the same class the nearer one, across a
   running/waiting switch the one on the midpoint's side of the switch (placed with schedstat as
   above), so a CPU -> sleep change is not smeared across functions. Two waiting readings with
   more than half the time between them spent busy, at least ``WORK_CPU_SHARE`` of it on a CPU,
   mean a burst the readings missed: ON_CPU. Conversely, running readings between two waiting
   readings while the thread spent less than ``WORK_CPU_SHARE`` of that time on a CPU are a
   wake-up without work, and count as waiting (with the wait's reason): py-spy's ptrace stop
   wakes a blocked thread, which on a busy machine then sits in the run queue for milliseconds
   (state R) without running any of its code. Readings of a thread stopped by py-spy (``t``) that
   ``classify`` cannot place are not usable (their neighbours decide). A midpoint farther than
   ``NEAREST_LIMIT_PERIODS`` intervals (at least ``NEAREST_LIMIT_MIN_NS``) from any usable
   reading, outside a pair of readings at most twice that far apart, has no state: UNKNOWN,
   counted and noted in the profile.
4. Stale stacks (:func:`infer_burst_stacks`). py-spy samples at exponentially distributed
   intervals, so it misses a phase of length L entirely with probability exp(-L x rate) (13.5%
   for 20 ms at 100 Hz). A missed CPU phase between two blocking calls shows up as a running
   burst inside a run of a function py-spy saw blocked (waiting for most of its time); but a
   thread that is on a CPU or in the run queue is not inside a blocking call, so that stack is
   stale for the burst. The burst's samples take the stack of the nearest sample of the same
   thread in a running function run (running for most of its time), searching at most
   ``INFER_WINDOW_PERIODS`` intervals to each side and preferring the nearer (the earlier on a
   tie); with none in reach the blocked stack stays. In a loop this is exactly the function
   py-spy missed, which makes the per-function shares unbiased; without it every missed phase
   would go to the blocking neighbour (-2.7 percentage points for a 20 ms phase of a 100 ms loop
   at 100 Hz). Bursts longer than ``INFER_MAX_BURST_PERIODS`` intervals are left alone: py-spy
   would have sampled them (miss probability < 0.25%), so they are the blocked stack's own work
   (C code that both computes and blocks, such as an SSL read). A waiting burst inside a running
   run keeps its stack: a thread can block briefly inside the code py-spy saw running (a page
   fault, a short lock). The inferred samples and their time are counted and noted in the
   profile. Limit: a missed phase that is not a repetition of its running neighbour (say a parse
   between two different blocking calls) is credited to that neighbour.
5. Ends. A thread that disappears from the readings before the end has its last segment cut one
   interval after its last reading; when the target exits everything is cut there.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import psutil

from ..formats.pyspy_chrometrace import ChromeTrace, parse_events, segment_sample_times, thread_label
from ..formats.base import FormatError, parse_json
from ..model import NO_STACK, Profile, State
from .procstate import ProcessGone, ProcStateReader, ThreadReading, classify
from .pyspy import (
    PySpyError,
    PySpyInfo,
    PySpyOptions,
    PySpyRun,
    TargetNotFound,
    TargetPermissionDenied,
    check_pyspy,
    permission_message,
)

REFINE_WINDOW_PERIODS = 6.0
INFER_WINDOW_PERIODS = 20.0
INFER_MAX_BURST_PERIODS = 6.0
WORK_CPU_SHARE = 0.05
NEAREST_LIMIT_PERIODS = 2.0
NEAREST_LIMIT_MIN_NS = 25_000_000
CHILD_SCAN_S = 0.5
PROGRESS_EVERY_S = 0.25
START_TIMEOUT_S = 30.0
READER_NICE = -10
RUNNING_STATES = (int(State.ON_CPU), int(State.RUNNABLE))


# -- thread states ------------------------------------------------------------------------------


class ThreadStates:
    """Classified readings of one thread, in time order (append-only while recording)."""

    __slots__ = ("time_ns", "state", "reason", "busy_ns", "cpu_ns", "previous")

    def __init__(self) -> None:
        self.time_ns = array("q")
        self.state = array("b")
        self.reason = array("i")
        self.busy_ns = array("q")
        self.cpu_ns = array("q")
        self.previous: ThreadReading | None = None

    def add(self, reading: ThreadReading, reasons: "ReasonTable") -> None:
        state, reason = classify(self.previous, reading)
        self.previous = reading
        self.time_ns.append(reading.time_ns)
        self.state.append(int(state))
        self.reason.append(reasons.index(reason))
        self.busy_ns.append(reading.cpu_ns + reading.runqueue_ns)
        self.cpu_ns.append(reading.cpu_ns)

    def __len__(self) -> int:
        return len(self.time_ns)


class ReasonTable:
    """Wait reasons interned to small ints (-1 for none)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def index(self, reason: str | None) -> int:
        if reason is None:
            return -1
        found = self._index.get(reason)
        if found is None:
            found = self._index[reason] = len(self.texts)
            self.texts.append(reason)
        return found

    def text(self, index: int) -> str | None:
        return None if index < 0 else self.texts[index]


class StateRecorder:
    """A daemon thread reading every thread of ``pid`` (and, optionally, of its child processes)
    ``rate_hz`` times a second. ``states[(pid, tid)]`` holds the classified readings."""

    def __init__(self, reader: ProcStateReader, rate_hz: float, *, follow_children: bool = False):
        self.pid = reader.pid
        self.period_s = 1.0 / rate_hz
        self.follow_children = follow_children
        self.readers: dict[int, ProcStateReader] = {reader.pid: reader}
        self.states: dict[tuple[int, int], ThreadStates] = {}
        self.names: dict[tuple[int, int], str] = {}
        self.reasons = ReasonTable()
        self.last_seen_ns: dict[tuple[int, int], int] = {}
        self.ticks = 0
        self.live_threads = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.gone = threading.Event()
        self.gone_after_ns: int | None = None
        self.cpu_ns = 0
        self.read_errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="profviz-state-reader", daemon=True)
        self._next_child_scan = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for reader in self.readers.values():
            reader.close()

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICE)
        except OSError:
            pass
        cpu_started = time.thread_time_ns()
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                self._tick()
                if self.gone.is_set():
                    break
                next_at += self.period_s
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -self.period_s:
                    next_at = time.monotonic()
        finally:
            self.cpu_ns = time.thread_time_ns() - cpu_started

    def _tick(self) -> None:
        if self.follow_children and time.monotonic() >= self._next_child_scan:
            self._next_child_scan = time.monotonic() + CHILD_SCAN_S
            self._add_children()
        live = 0
        for pid, reader in list(self.readers.items()):
            try:
                readings = reader.read()
            except ProcessGone:
                reader.close()
                del self.readers[pid]
                if pid == self.pid:
                    self.gone_after_ns = self.last_ns
                    self.gone.set()
                continue
            except OSError as exc:
                if len(self.read_errors) < 5:
                    self.read_errors.append(f"reading /proc/{pid}: {exc}")
                continue
            names = reader.thread_names()
            with self._lock:
                for reading in readings:
                    key = (pid, reading.tid)
                    states = self.states.get(key)
                    if states is None:
                        states = self.states[key] = ThreadStates()
                        self.names[key] = names.get(reading.tid, "")
                    states.add(reading, self.reasons)
                    self.last_seen_ns[key] = reading.time_ns
                    if self.first_ns is None:
                        self.first_ns = reading.time_ns
                    self.last_ns = reading.time_ns
            live += len(readings)
        self.live_threads = live
        self.ticks += 1

    def _add_children(self) -> None:
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            if child.pid in self.readers:
                continue
            try:
                self.readers[child.pid] = ProcStateReader(child.pid)
            except (ProcessLookupError, PermissionError, OSError):
                continue


# -- the join -----------------------------------------------------------------------------------


@dataclass
class JoinedSamples:
    """Samples of one thread: parallel lists, ``stack_keys`` index the thread's segment frames."""

    time_ns: list[int] = field(default_factory=list)
    weight_ns: list[int] = field(default_factory=list)
    segment: list[int] = field(default_factory=list)
    state: list[int] = field(default_factory=list)
    reason: list[int] = field(default_factory=list)
    moved_boundaries: int = 0
    inferred_samples: int = 0
    inferred_ns: int = 0
    wakeups_without_work: int = 0


def _majority(running: np.ndarray) -> bool | None:
    """True if most readings are running, False if most are waiting, None on a tie or no readings."""
    count = int(running.sum())
    if not len(running) or 2 * count == len(running):
        return None
    return 2 * count > len(running)


class StateTimeline:
    """The usable readings of one thread, with the instant of every running <-> waiting switch.

    A switch lies between two consecutive readings of different class (running = ON_CPU or
    RUNNABLE); the cumulative CPU + run-queue time places it: a thread running at the earlier
    reading and busy for d ns until the later one stopped d ns after the earlier reading; one that
    was waiting started d ns before the later reading.
    """

    def __init__(self, states: ThreadStates | None):
        if states is not None and len(states):
            all_states = np.frombuffer(states.state, dtype=np.int8)
            usable = all_states != int(State.UNKNOWN)
            self.times = np.frombuffer(states.time_ns, dtype=np.int64)[usable]
            self.states = all_states[usable].copy()
            self.reasons = np.frombuffer(states.reason, dtype=np.int32)[usable].copy()
            busy = np.frombuffer(states.busy_ns, dtype=np.int64)[usable]
            cpu = np.frombuffer(states.cpu_ns, dtype=np.int64)[usable]
        else:
            self.times = np.zeros(0, np.int64)
            self.states = np.zeros(0, np.int8)
            self.reasons = np.zeros(0, np.int32)
            busy = np.zeros(0, np.int64)
            cpu = np.zeros(0, np.int64)
        self.running = np.isin(self.states, RUNNING_STATES)
        self.wakeups_without_work = self._drop_wakeups_without_work(cpu)
        # pair_switch[j]: switch instant between readings j and j+1 (meaningful where classes differ).
        if len(self.times) >= 2:
            before, after = self.times[:-1], self.times[1:]
            ran = busy[1:] - busy[:-1]
            at = np.where(self.running[:-1], before + ran, after - ran)
            self.pair_switch = np.clip(at, before, after)
            changed = np.flatnonzero(self.running[1:] != self.running[:-1])
        else:
            self.pair_switch = np.zeros(0, np.int64)
            changed = np.zeros(0, np.int64)
        self.switch_at = self.pair_switch[changed]
        self.switch_from_running = self.running[changed]
        # ran_between[j]: readings j and j+1 both say waiting, yet the thread was busy (CPU or run
        # queue) for at least half the time between them, and ran code (CPU) for at least
        # WORK_CPU_SHARE of it: a short burst the readings missed.
        if len(self.times) >= 2:
            gap = np.maximum(self.times[1:] - self.times[:-1], 1)
            waiting_pair = ~self.running[:-1] & ~self.running[1:]
            worked = (cpu[1:] - cpu[:-1]) >= WORK_CPU_SHARE * gap
            self.ran_between = waiting_pair & worked & (2 * (busy[1:] - busy[:-1]) >= gap)
        else:
            self.ran_between = np.zeros(0, bool)

    def _drop_wakeups_without_work(self, cpu: np.ndarray) -> int:
        """Re-class as waiting every run of running readings between two waiting readings during
        which the thread used less than ``WORK_CPU_SHARE`` of the time on a CPU: it was woken
        without running code (a ptrace stop by py-spy wakes a blocked thread, which then sits in
        the run queue on a busy machine). Returns how many readings changed."""
        running = self.running
        count = len(running)
        changed = 0
        i = 1
        while i < count - 1:
            if not running[i] or running[i - 1]:
                i += 1
                continue
            end = i
            while end < count and running[end]:
                end += 1
            if end < count:
                span = int(self.times[end] - self.times[i - 1])
                if int(cpu[end] - cpu[i - 1]) < WORK_CPU_SHARE * span:
                    reason = self.reasons[i - 1] if self.reasons[i - 1] >= 0 else self.reasons[end]
                    self.states[i:end] = int(State.WAITING)
                    self.reasons[i:end] = reason
                    running[i:end] = False
                    changed += end - i
            i = end + 1
        return changed

    def __len__(self) -> int:
        return len(self.times)

    def running_at(self, instant: int) -> bool | None:
        """Whether the thread was running (CPU or run queue) at ``instant``; None if unknown."""
        chosen, found, burst = self.pick(np.asarray([instant], dtype=np.int64), 1 << 62)
        if not found[0]:
            return None
        return bool(burst[0] or self.running[chosen[0]])

    def pick(self, points: np.ndarray, limit_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each instant: the reading that describes it, whether there is one, and whether it
        falls in a burst of running between two waiting readings (see ``ran_between``).

        Between two readings of the same class the nearer one; across a switch, the one on the
        instant's side of the switch. Before the first or after the last reading, or in a gap of
        the readings, only a reading at most ``limit_ns`` away counts.
        """
        count = len(self.times)
        if not count:
            empty = np.zeros(len(points), bool)
            return np.zeros(len(points), np.int64), empty, empty
        right = np.searchsorted(self.times, points, side="right")
        left = np.clip(right - 1, 0, count - 1)
        right = np.clip(right, 0, count - 1)
        nearer_left = np.abs(points - self.times[left]) <= np.abs(self.times[right] - points)
        chosen = np.where(nearer_left, left, right)
        between = (left != right) & (self.running[left] != self.running[right])
        if between.any():
            switch = self.pair_switch[np.minimum(left, len(self.pair_switch) - 1)]
            chosen = np.where(between, np.where(points < switch, left, right), chosen)
        gap = self.times[right] - self.times[left]
        inside = (left != right) & (gap <= 2 * limit_ns)
        found = inside | (np.abs(self.times[chosen] - points) <= limit_ns)
        burst = (left != right) & self.ran_between[np.minimum(left, max(len(self.ran_between) - 1, 0))] if len(self.ran_between) else np.zeros(len(points), bool)
        return chosen, found, burst & found


def refine_boundaries(bounds: list[int], keys: list, timeline: StateTimeline, period_ns: float) -> int:
    """Move segment boundaries back to where the thread's state changed (module docstring, step 1).

    ``bounds`` holds the edges of contiguous segments (len = segments + 1), changed in place;
    ``keys[i]`` identifies segment i's functions (lines aside): a boundary between equal keys is
    only a line change and is not refined itself, but is pulled back with a refined boundary it
    would otherwise pass. A boundary moves to the latest running/waiting switch within
    ``REFINE_WINDOW_PERIODS`` intervals before it and after the start of the previous function
    run, provided that run was mostly in the state the thread switched away from (judged on its
    readings before the switch) and the thread is still in the new state at the boundary. Returns
    how many boundaries moved.
    """
    change_at, from_running = timeline.switch_at, timeline.switch_from_running
    if not len(change_at):
        return 0
    window = int(REFINE_WINDOW_PERIODS * period_ns)
    moved = 0
    run_start = bounds[0]
    for i in range(1, len(bounds) - 1):
        if keys[i] == keys[i - 1]:
            continue
        boundary = bounds[i]
        k = int(np.searchsorted(change_at, boundary, side="right")) - 1
        at = int(change_at[k]) if k >= 0 else None
        if at is not None and run_start < at < boundary and at > boundary - window and timeline.running_at(boundary) != bool(from_running[k]):
            lo, hi = np.searchsorted(timeline.times, [run_start, at])
            if _majority(timeline.running[lo:hi]) == bool(from_running[k]):
                bounds[i] = at
                moved += 1
                for j in range(i - 1, 0, -1):
                    if bounds[j] <= at:
                        break
                    bounds[j] = at
        run_start = bounds[i]
    return moved


def join_thread(
    segments: list[tuple[int, int]],
    keys: list,
    states: ThreadStates | None,
    period_ns: float,
    limit_ns: int | None,
) -> JoinedSamples:
    """Samples with states for one thread (module docstring). ``segments`` are (start_ns, end_ns)
    in time order, contiguous or not; ``keys`` identify each segment's functions (see
    :func:`refine_boundaries`); ``limit_ns`` cuts everything after it."""
    out = JoinedSamples()
    timeline = StateTimeline(states)
    out.wakeups_without_work = timeline.wakeups_without_work
    nearest_limit = int(max(NEAREST_LIMIT_PERIODS * period_ns, NEAREST_LIMIT_MIN_NS))
    runs: list[list[int]] = []
    for index, (start, end) in enumerate(segments):
        if limit_ns is not None:
            end = min(end, limit_ns)
        if end <= start:
            continue
        if runs and segments[runs[-1][-1]][1] == start:
            runs[-1].append(index)
        else:
            runs.append([index])
    for run in runs:
        bounds = [segments[run[0]][0]] + [segments[k][1] for k in run]
        if limit_ns is not None:
            bounds = [min(b, limit_ns) for b in bounds]
        if len(timeline):
            out.moved_boundaries += refine_boundaries(bounds, [keys[k] for k in run], timeline, period_ns)
        run_first_sample = len(out.time_ns)
        for position, index in enumerate(run):
            sample_times, weights = segment_sample_times(bounds[position], bounds[position + 1], period_ns)
            if not len(sample_times):
                continue
            chosen, found, burst = timeline.pick(sample_times + weights // 2, nearest_limit)
            for k in range(len(sample_times)):
                out.time_ns.append(int(sample_times[k]))
                out.weight_ns.append(int(weights[k]))
                out.segment.append(index)
                if burst[k]:
                    out.state.append(int(State.ON_CPU))
                    out.reason.append(-1)
                elif found[k]:
                    reading = int(chosen[k])
                    state = int(timeline.states[reading])
                    out.state.append(state)
                    out.reason.append(int(timeline.reasons[reading]) if state == int(State.WAITING) else -1)
                else:
                    out.state.append(int(State.UNKNOWN))
                    out.reason.append(-1)
        if len(timeline):
            infer_burst_stacks(out, run_first_sample, keys, period_ns)
    return out


def infer_burst_stacks(out: JoinedSamples, first: int, keys: list, period_ns: float) -> None:
    """Give running bursts inside blocked function runs the stack py-spy saw running nearest to
    them (module docstring, step 4). Works on ``out``'s samples from ``first`` on (one contiguous
    run of segments), changing ``out.segment`` in place and counting what it changed."""
    count = len(out.time_ns) - first
    if count <= 0:
        return
    running = [s in RUNNING_STATES for s in out.state[first:]]
    waiting = [s == int(State.WAITING) for s in out.state[first:]]
    # Function runs: consecutive samples whose segments have the same functions (lines aside).
    run_of = [0] * count
    run_bounds: list[list[int]] = [[0, 0]]
    for k in range(1, count):
        if keys[out.segment[first + k]] != keys[out.segment[first + k - 1]]:
            run_bounds[-1][1] = k
            run_bounds.append([k, k])
        run_of[k] = len(run_bounds) - 1
    run_bounds[-1][1] = count
    majority: list[bool | None] = []
    for lo, hi in run_bounds:
        ran = sum(out.weight_ns[first + k] for k in range(lo, hi) if running[k])
        waited = sum(out.weight_ns[first + k] for k in range(lo, hi) if waiting[k])
        majority.append(None if ran == waited else ran > waited)
    window = INFER_WINDOW_PERIODS * period_ns
    longest = INFER_MAX_BURST_PERIODS * period_ns
    for g, (lo, hi) in enumerate(run_bounds):
        if majority[g] is not False:
            continue
        k = lo
        while k < hi:
            if not running[k]:
                k += 1
                continue
            end = k
            while end < hi and running[end]:
                end += 1
            start_ns = out.time_ns[first + k]
            end_ns = out.time_ns[first + end - 1] + out.weight_ns[first + end - 1]
            if end_ns - start_ns <= longest:
                source = _nearest_running_sample(out, first, run_bounds, majority, g, start_ns, end_ns, window)
                if source is not None:
                    for j in range(first + k, first + end):
                        out.segment[j] = out.segment[source]
                        out.inferred_samples += 1
                        out.inferred_ns += out.weight_ns[j]
            k = end


def _nearest_running_sample(out: JoinedSamples, first: int, run_bounds: list[list[int]], majority: list,
                            g: int, start_ns: int, end_ns: int, window: float) -> int | None:
    """Index (in ``out``) of the sample nearest to [start_ns, end_ns) in a running function run
    other than run ``g``, at most ``window`` ns away; the earlier one on a tie; None if none."""
    before = after = None
    for h in range(g - 1, -1, -1):
        last = first + run_bounds[h][1] - 1
        gap = start_ns - (out.time_ns[last] + out.weight_ns[last])
        if gap > window:
            break
        if majority[h]:
            before = (gap, last)
            break
    for h in range(g + 1, len(run_bounds)):
        head = first + run_bounds[h][0]
        gap = out.time_ns[head] - end_ns
        if gap > window:
            break
        if majority[h]:
            after = (gap, head)
            break
    if before is None or after is None:
        chosen = before or after
    else:
        chosen = before if before[0] <= after[0] else after
    return None if chosen is None else chosen[1]


@dataclass
class BuildStats:
    samples: int = 0
    unknown_samples: int = 0
    moved_boundaries: int = 0
    inferred_samples: int = 0
    inferred_ns: int = 0
    sampled_ns: int = 0
    wakeups_without_work: int = 0
    threads_without_states: list[str] = field(default_factory=list)


def build_profile(
    trace: ChromeTrace,
    origin_ns: int,
    recorder: StateRecorder | None,
    rate_hz: float,
    meta: dict,
    *,
    end_ns: int | None = None,
) -> tuple[Profile, BuildStats]:
    """Join a parsed py-spy trace with recorded thread states into a profile (module docstring)."""
    profile = Profile(dict(meta))
    stats = BuildStats()
    period_ns = 1e9 / rate_hz
    states_of = recorder.states if recorder is not None else {}
    names_of = recorder.names if recorder is not None else {}
    reason_text = recorder.reasons.text if recorder is not None else (lambda _: None)
    last_reading_ns = recorder.last_ns if recorder is not None else None
    for thread in trace.threads:
        key = (thread.pid, thread.native_tid) if thread.native_tid is not None else None
        states = states_of.get(key) if key is not None else None
        name = thread.name or (names_of.get(key, "") if key is not None else "")
        index = profile.add_thread(thread.pid, thread_label(thread), name)
        limit = end_ns
        if states is not None and recorder is not None:
            seen = recorder.last_seen_ns.get(key)
            if seen is not None and last_reading_ns is not None and seen < last_reading_ns:
                cut = seen + int(period_ns)
                limit = cut if limit is None else min(limit, cut)
        segments = [(origin_ns + s.start_us * 1000, origin_ns + s.end_us * 1000) for s in thread.segments]
        keys = [tuple((name, file) for name, file, _ in s.frames) for s in thread.segments]
        joined = join_thread(segments, keys, states, period_ns, limit)
        if states is None and joined.time_ns:
            stats.threads_without_states.append(profile.thread_label(index))
        stacks = [profile.intern_frames(s.frames) if s.frames else NO_STACK for s in thread.segments]
        for k in range(len(joined.time_ns)):
            state = joined.state[k]
            reason = reason_text(joined.reason[k]) if state == int(State.WAITING) else None
            profile.append_sample(joined.time_ns[k], index, stacks[joined.segment[k]], joined.weight_ns[k], state, reason)
            if state == int(State.UNKNOWN):
                stats.unknown_samples += 1
        stats.samples += len(joined.time_ns)
        stats.moved_boundaries += joined.moved_boundaries
        stats.inferred_samples += joined.inferred_samples
        stats.inferred_ns += joined.inferred_ns
        stats.sampled_ns += sum(joined.weight_ns)
        stats.wakeups_without_work += joined.wakeups_without_work
    return profile, stats


# -- the collector ------------------------------------------------------------------------------


@dataclass
class AttachOptions:
    rate_hz: int = 100
    duration_s: float | None = None
    native: bool = False
    subprocesses: bool = False
    nonblocking: bool = False
    labels: dict = field(default_factory=dict)
    kind: str = "attach"


@dataclass
class Progress:
    elapsed_s: float
    estimated_samples: int
    live_threads: int
    pyspy_errors: int


@dataclass
class AttachResult:
    profile: Profile
    samples: int
    unknown_samples: int
    errors: int
    duration_s: float
    stopped_by: str  # "duration", "interrupt", "target-exit"
    target_exited_after_s: float | None
    notes: list[str]
    collector_cpu_s: float = 0.0
    pyspy_pid: int | None = None


def inference_note(stats: BuildStats) -> str:
    """The profile note saying how many samples took an inferred stack (module docstring, step 4)."""
    share = 100.0 * stats.inferred_ns / max(stats.sampled_ns, 1)
    return (
        f"inferred stacks for {stats.inferred_samples} samples ({share:.1f}% of the sampled time): CPU bursts"
        " py-spy did not sample inside a blocking call took the stack of the nearest running sample of the thread"
    )


def target_cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def open_target(pid: int) -> ProcStateReader:
    """A state reader on ``pid``; raises TargetNotFound / TargetPermissionDenied with a fix."""
    try:
        return ProcStateReader(pid)
    except ProcessLookupError as exc:
        raise TargetNotFound(f"no process with pid {pid} ({exc}): check the pid with 'ps'") from None
    except PermissionError as exc:
        raise TargetPermissionDenied(permission_message(pid, str(exc).split(";")[0])) from None


def collect(
    pid: int,
    options: AttachOptions,
    *,
    stop: threading.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    pyspy: PySpyInfo | None = None,
    target_alive: Callable[[], bool] | None = None,
) -> AttachResult:
    """Profile ``pid`` until ``options.duration_s`` passes, ``stop`` is set, or the target exits.

    Raises a PySpyError subclass (with a fix in its message) when py-spy cannot start; once
    sampling has begun everything collected is kept and returned.
    """
    stop = stop or threading.Event()
    info = pyspy or check_pyspy()
    reader = open_target(pid)
    cmdline = target_cmdline(pid)
    rate_hz = int(options.rate_hz)
    with tempfile.TemporaryDirectory(prefix="profviz-attach-") as scratch:
        output = os.path.join(scratch, "pyspy.json")
        run = PySpyRun(
            info, pid, output,
            PySpyOptions(rate_hz=rate_hz, native=options.native, subprocesses=options.subprocesses, nonblocking=options.nonblocking),
        )
        try:
            run.start()
            run.wait_until_sampling(START_TIMEOUT_S, stop)
        except BaseException:
            reader.close()
            run.kill()
            raise
        recorder = StateRecorder(reader, rate_hz, follow_children=options.subprocesses)
        recorder.start()
        started = time.monotonic()
        stopped_by = "duration"
        last_progress = 0.0
        try:
            while True:
                elapsed = time.monotonic() - started
                if stop.is_set():
                    stopped_by = "interrupt"
                    break
                if options.duration_s is not None and elapsed >= options.duration_s:
                    break
                if not run.running or recorder.gone.is_set() or (target_alive is not None and not target_alive()):
                    stopped_by = "target-exit"
                    break
                if on_progress is not None and elapsed - last_progress >= PROGRESS_EVERY_S:
                    last_progress = elapsed
                    on_progress(Progress(elapsed, recorder.ticks * max(recorder.live_threads, 1),
                                         recorder.live_threads, run.sample_error_count))
                stop.wait(0.02)
        finally:
            run.stop()
            result = run.wait()
            recorder.stop()
        if result.target_exited:
            stopped_by = "target-exit"
        if not result.wrote_output:
            tail = "; ".join(result.console[-3:]) or "no output"
            raise PySpyError(f"py-spy stopped without writing its samples (exit {result.returncode}: {tail}); nothing was saved")
        try:
            with open(output, "rb") as handle:
                trace = parse_events(parse_json(handle.read()))
        except FormatError as exc:
            raise PySpyError(f"py-spy wrote an unreadable trace ({exc}); nothing was saved") from None
    end_ns = None
    target_exited_after_s = None
    if stopped_by == "target-exit" and recorder.last_ns is not None:
        end_ns = recorder.last_ns + int(1e9 / rate_hz)
    errors = result.errors if result.errors is not None else run.sample_error_count
    meta = {
        "kind": options.kind,
        "pid": pid,
        "cmdline": cmdline,
        "rate_hz": float(rate_hz),
        "error_count": int(errors),
        "labels": dict(options.labels),
    }
    profile, stats = build_profile(trace, run.origin_ns, recorder, rate_hz, meta, end_ns=end_ns)
    first, end = profile.time_range_ns
    start_ns = run.sampling_ns or run.origin_ns
    if first:
        start_ns = min(start_ns, first)
    duration_ns = max(0, (end or start_ns) - start_ns)
    profile.meta["start_ns"] = start_ns
    profile.meta["duration_ns"] = duration_ns
    notes: list[str] = []
    if stopped_by == "target-exit":
        target_exited_after_s = duration_ns / 1e9
        notes.append(f"partial: the target exited after {target_exited_after_s:.1f} s")
    elif stopped_by == "interrupt":
        notes.append(f"stopped by a signal after {duration_ns / 1e9:.1f} s")
    if errors:
        detail = "; ".join(result.sample_errors[:3])
        notes.append(f"py-spy failed to read a stack {errors} times" + (f": {detail}" if detail else ""))
    notes.extend(result.behind)
    if stats.unknown_samples:
        share = 100.0 * stats.unknown_samples / max(stats.samples, 1)
        notes.append(f"{stats.unknown_samples} samples ({share:.1f}%) have no thread state reading (state UNKNOWN)")
    if stats.inferred_samples:
        notes.append(inference_note(stats))
    if stats.threads_without_states:
        notes.append("no /proc state for threads " + ", ".join(stats.threads_without_states[:5]))
    notes.extend(recorder.read_errors)
    profile.meta["notes"] = notes
    return AttachResult(
        profile=profile,
        samples=stats.samples,
        unknown_samples=stats.unknown_samples,
        errors=int(errors),
        duration_s=duration_ns / 1e9,
        stopped_by=stopped_by,
        target_exited_after_s=target_exited_after_s,
        notes=notes,
        collector_cpu_s=recorder.cpu_ns / 1e9,
        pyspy_pid=run.process.pid if run.process else None,
    )
