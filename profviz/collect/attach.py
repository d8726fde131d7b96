"""The attach collector: py-spy's wall-clock stacks of every thread, joined with each thread's
scheduler state read from /proc at the same rate, into one profile where every sample carries a
state (ON_CPU / WAITING with its reason / RUNNABLE, UNKNOWN only when nothing was readable).

Streams. py-spy (:mod:`profviz.collect.pyspy`) samples at ``rate_hz`` with exponentially
distributed gaps and only reports when a thread's stack changes, so its output is, per thread, a
list of stack segments whose boundaries are sampling instants (:mod:`profviz.formats.pyspy_chrometrace`).
Beside it a :class:`StateRecorder` thread reads every thread's state with
:class:`~profviz.collect.procstate.ProcStateReader` ``rate_hz`` times a second and classifies each
reading against the previous one of the same thread (``procstate.classify``).

Clock. py-spy's times count from a moment a few ms after :attr:`PySpyRun.origin_ns` (its own
start-up, longer on a busy machine), so they come out early by that much, which would put its
stack changes before the state switches that caused them. :func:`estimate_pyspy_lag` measures the
shift from the recording itself and moves py-spy's origin by it.

Thread states over time (:class:`StateTimeline`). The readings of a thread cut its time into
running (ON_CPU or RUNNABLE) and waiting stretches. A switch between two readings of different
class is placed exactly with the thread's cumulative CPU + run-queue time from schedstat (a thread
that ran for 4 ms after a reading and then slept switched 4 ms after that reading). Two waiting
readings with more than half the time between them spent busy, at least ``WORK_CPU_SHARE`` of it
on a CPU, mean a burst the readings missed (a running stretch as long as the busy time, centred
between them). Conversely, running readings between two waiting readings while the thread spent
less than ``WORK_CPU_SHARE`` of that time on a CPU are a wake-up without work and count as waiting
(with the wait's reason): py-spy's ptrace stop wakes a blocked thread, which on a busy machine
then sits in the run queue for milliseconds (state R) without running any of its code. Readings
of a thread stopped by py-spy (``t``) that ``classify`` cannot place are not usable.

Join (:func:`join_thread`), per thread (matched by native tid, which py-spy's ``--threads`` frame
carries), on each contiguous run of segments. A function run is a stretch of consecutive segments
with the same functions (lines aside); py-spy saw it running or waiting by the state in the first
interval of each of its segments (each starts at a py-spy sample), by majority.

1. Stale stacks (:func:`infer_stale_stacks`). py-spy samples at exponentially distributed
   intervals, so it misses a phase of length L entirely with probability exp(-L x rate) (13.5%
   for 20 ms at 100 Hz, 0.1% for 70 ms). A missed CPU phase between two blocking calls shows up
   as a running stretch inside a function run py-spy saw waiting; but a thread that is on a CPU
   or in the run queue is not inside a blocking call, so that stack is stale there. The stretch
   takes the stack of the nearest function run py-spy saw running (its nearest segment), at most
   ``INFER_WINDOW_PERIODS`` intervals away, the earlier one on a tie; with none in reach the stack
   stays. In a loop this is exactly the function py-spy missed, which makes the per-function
   shares unbiased; without it every missed phase goes to the blocking neighbour (-2.7
   percentage points for a 20 ms phase of a 100 ms loop at 100 Hz). Running stretches longer than
   ``INFER_MAX_BURST_PERIODS`` intervals stay: py-spy would have sampled them (miss probability <
   0.25%), so they are the blocked stack's own work (C code that both computes and blocks, such as
   an SSL read). The symmetric case: a waiting stretch inside a function run py-spy saw running
   stays when it is short (under ``INFER_MIN_WAIT_PERIODS`` intervals: a page fault, a short lock,
   a GIL hand-over, legitimately that function); a longer one takes the stack of the nearest
   function run py-spy saw waiting *for the same reason* (the same sleep, the same socket): a
   repetition of that blocking call py-spy missed. Only stretches strictly inside a function run
   count (one that reaches its edge is a late boundary, step 2). Inferred samples are counted and
   noted in the profile. Limits: a missed phase that is not a repetition of its neighbour (say a
   parse between two different blocking calls) is credited to the neighbour; a CPU-bound function
   that py-spy mostly saw waiting for the GIL can lend its running stretches to a nearby function
   seen running.
2. Boundary refinement (:func:`refine_boundaries`). py-spy sees a stack change at the first
   sample after it, on average one sampling interval late, so the end of every segment really
   belongs to the next one. Where the thread switched between running and waiting shortly before
   a boundary (within ``REFINE_WINDOW_PERIODS`` intervals; ``REFINE_MATCHED_WINDOW_PERIODS`` for a
   wait with the reason of the next function run, which py-spy saw waiting), the old run was
   mostly in the state it switched away from, and the thread is in the new state at the boundary,
   the boundary moves back to the switch. Both directions move (running -> waiting and waiting ->
   running). Line-only stack changes are carried along. A waiting -> running switch is the
   wake-up, so on a busy machine the run-queue wait before a woken thread gets a CPU (still inside
   the blocking call, to Python) is charged to the code that runs next, as RUNNABLE: about 1.5
   percentage points of share moved from a 70 ms sleep to the 30 ms of CPU after it with two
   CPU hogs on two cores (tests/test_attach.py truth test).
3. Samples. Each segment is split into evenly spaced samples of about 1/rate_hz whose weights add
   up to the segment's length (:func:`~profviz.formats.pyspy_chrometrace.segment_sample_times`).
4. States. Each sample takes the state of the reading that describes its midpoint: between two
   readings of the same class the nearer one, across a running/waiting switch the one on the
   midpoint's side of the switch, inside a missed burst ON_CPU. A midpoint farther than
   ``NEAREST_LIMIT_PERIODS`` intervals (at least ``NEAREST_LIMIT_MIN_NS``) from any usable
   reading, outside a pair of readings at most twice that far apart, has no state: UNKNOWN,
   counted and noted in the profile.
5. Threads and their ends. Threads are told apart by the native tid in py-spy's root frame, not
   by the chrometrace ``tid`` (a pthread id, which glibc gives to the next thread once one has
   ended; :mod:`profviz.formats.pyspy_chrometrace`). A thread that starts during the recording
   begins at the earlier of py-spy's first sample of it and its first state reading (at most
   ``START_LIMIT_PERIODS`` intervals earlier): py-spy sees it one interval late on average, the
   reader about half an interval. A thread that disappears from the readings before the end has
   its last segment cut at the reading round that found it gone (a later thread with its pthread id
   would otherwise extend it up to py-spy's first sample of that thread, or to the end of the
   recording); when the target exits everything is cut there.
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

from ..formats.pyspy_chrometrace import ChromeTrace, name_is_stale, parse_events, segment_sample_times, thread_label, thread_name
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
REFINE_MATCHED_WINDOW_PERIODS = 20.0
INFER_WINDOW_PERIODS = 20.0
INFER_MAX_BURST_PERIODS = 6.0
INFER_MIN_WAIT_PERIODS = 2.0
WORK_CPU_SHARE = 0.05
START_LIMIT_PERIODS = 5.0
LAG_MIN_CHANGES = 20
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
        self.tick_ns = array("q")
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
        self.tick_ns.append(time.time_ns())
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

    def gone_by(self, last_seen_ns: int, period_ns: float) -> int:
        """When a thread last read at ``last_seen_ns`` was found gone: the start of the next reading
        round (one interval later if there was none)."""
        ticks = np.frombuffer(self.tick_ns, dtype=np.int64)
        after = int(np.searchsorted(ticks, last_seen_ns, side="right"))
        return int(ticks[after]) if after < len(ticks) else last_seen_ns + int(period_ns)

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
            self.busy_between = np.minimum(busy[1:] - busy[:-1], gap)
            self.ran_between = waiting_pair & worked & (2 * self.busy_between >= gap)
        else:
            self.busy_between = np.zeros(0, np.int64)
            self.ran_between = np.zeros(0, bool)
        self.stretch_start, self.stretch_end, self.stretch_running, self.stretch_reason = self._stretches()

    def _stretches(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The thread's time from its first to its last reading cut into alternating running and
        waiting stretches: (start, end, running, wait reason index) arrays, in time order.

        Stretches end at the switch instants; a burst between two waiting readings (``ran_between``)
        is a running stretch as long as the busy time, centred between the two readings. A waiting
        stretch takes the most common reason of its readings.
        """
        count = len(self.times)
        if count < 2:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int32)
        edges: list[tuple[int, int, bool]] = []  # (start, end, running)
        start = int(self.times[0])
        for j in range(count - 1):
            if self.running[j] != self.running[j + 1]:
                at = int(self.pair_switch[j])
                edges.append((start, at, bool(self.running[j])))
                start = at
            elif self.ran_between[j]:
                middle = (int(self.times[j]) + int(self.times[j + 1])) // 2
                half = int(self.busy_between[j]) // 2
                edges.append((start, middle - half, False))
                edges.append((middle - half, middle + half, True))
                start = middle + half
        edges.append((start, int(self.times[-1]), bool(self.running[-1])))
        edges = [edge for edge in edges if edge[1] > edge[0]]
        starts = np.array([e[0] for e in edges], np.int64)
        ends = np.array([e[1] for e in edges], np.int64)
        running = np.array([e[2] for e in edges], bool)
        reasons = np.full(len(edges), -1, np.int32)
        for k in np.flatnonzero(~running):
            lo, hi = np.searchsorted(self.times, [starts[k], ends[k]])
            inside = self.reasons[lo:hi][~self.running[lo:hi]]
            inside = inside[inside >= 0]
            if len(inside):
                values, counts = np.unique(inside, return_counts=True)
                reasons[k] = values[int(np.argmax(counts))]
        return starts, ends, running, reasons

    def stretches_within(self, start: int, end: int) -> list[tuple[int, int, bool, int]]:
        """The stretches overlapping [start, end), clipped to it: (start, end, running, reason)."""
        first = int(np.searchsorted(self.stretch_end, start, side="right"))
        last = int(np.searchsorted(self.stretch_start, end, side="left"))
        return [
            (max(int(self.stretch_start[k]), start), min(int(self.stretch_end[k]), end), bool(self.stretch_running[k]),
             int(self.stretch_reason[k]))
            for k in range(first, last)
        ]

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
    """Move segment boundaries back to where the thread's state changed (module docstring, step 2).

    ``bounds`` holds the edges of contiguous segments (len = segments + 1), changed in place;
    ``keys[i]`` identifies segment i's functions (lines aside): a boundary between equal keys is
    only a line change and is not refined itself, but is pulled back with a refined boundary it
    would otherwise pass. A boundary moves to the latest running/waiting switch within
    ``REFINE_WINDOW_PERIODS`` intervals before it and after the start of the previous function
    run, provided that run was mostly in the state the thread switched away from (judged on its
    readings before the switch) and the thread is still in the new state at the boundary. A
    running -> waiting switch up to ``REFINE_MATCHED_WINDOW_PERIODS`` intervals back also counts
    when the wait has the reason of the next function run's waiting: it is that run's blocking
    call, which py-spy saw late (provided py-spy saw that run waiting). Returns how many
    boundaries moved.
    """
    change_at, from_running = timeline.switch_at, timeline.switch_from_running
    if not len(change_at):
        return 0
    window = int(REFINE_WINDOW_PERIODS * period_ns)
    matched_window = int(REFINE_MATCHED_WINDOW_PERIODS * period_ns)
    moved = 0
    run_start = bounds[0]
    for i in range(1, len(bounds) - 1):
        if keys[i] == keys[i - 1]:
            continue
        boundary = bounds[i]
        k = int(np.searchsorted(change_at, boundary, side="right")) - 1
        at = int(change_at[k]) if k >= 0 else None
        if at is None or not run_start < at < boundary or timeline.running_at(boundary) == bool(from_running[k]):
            run_start = bounds[i]
            continue
        near = at > boundary - window
        if not near and from_running[k] and at > boundary - matched_window:
            run_end = next((bounds[j + 1] for j in range(i, len(keys)) if j + 1 == len(keys) or keys[j + 1] != keys[i]), bounds[-1])
            seen = _seen_running((boundary, run_end, -1), timeline, period_ns)
            near = seen is False and 0 <= _wait_reason(timeline, at, boundary) == _wait_reason(timeline, boundary, run_end)
        if near:
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


def _wait_reason(timeline: StateTimeline, start: int, end: int) -> int:
    """The wait reason the thread spent most of its waiting time in [start, end) on; -1 if none."""
    waited: dict[int, int] = {}
    for a, b, running, reason in timeline.stretches_within(start, end):
        if not running and reason >= 0:
            waited[reason] = waited.get(reason, 0) + b - a
    return max(waited, key=waited.get) if waited else -1


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
        pieces = [(segments[k][0], segments[k][1], k) for k in run]
        if limit_ns is not None:
            pieces = [(start, min(end, limit_ns), k) for start, end, k in pieces]
        inferred = [False] * len(pieces)
        if len(timeline):
            pieces, inferred = infer_stale_stacks(pieces, keys, timeline, period_ns)
        bounds = [pieces[0][0]] + [end for _, end, _ in pieces]
        if len(timeline):
            out.moved_boundaries += refine_boundaries(bounds, [keys[k] for _, _, k in pieces], timeline, period_ns)
        for position, (_, _, index) in enumerate(pieces):
            sample_times, weights = segment_sample_times(bounds[position], bounds[position + 1], period_ns)
            if not len(sample_times):
                continue
            if inferred[position]:
                out.inferred_samples += len(sample_times)
                out.inferred_ns += int(weights.sum())
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
    return out


@dataclass
class _FunctionRun:
    """Consecutive pieces with the same functions (lines aside): pieces[first:last], [start, end)."""

    first: int
    last: int
    start: int
    end: int
    running: bool | None  # seen by py-spy running (ON_CPU/RUNNABLE) rather than waiting; None on a tie
    reason: int  # most common wait reason of its waiting time, -1 if none


def _seen_running(piece: tuple[int, int, int], timeline: StateTimeline, period_ns: float) -> bool | None:
    """Whether py-spy saw a piece's stack while the thread ran: the state for most of the first
    interval of the piece (py-spy took the sample at its start; judging a whole interval rather
    than the instant absorbs the ms by which py-spy's clock and the readings disagree)."""
    return _mostly_running(timeline, piece[0], min(piece[1], piece[0] + int(period_ns)))


def _mostly_running(timeline: StateTimeline, start: int, end: int) -> bool | None:
    """Whether the thread ran for more of [start, end) than it waited; None on a tie."""
    ran = waited = 0
    for a, b, running, _ in timeline.stretches_within(start, end):
        if running:
            ran += b - a
        else:
            waited += b - a
    return None if ran == waited else ran > waited


def _function_runs(pieces: list[tuple[int, int, int]], keys: list, timeline: StateTimeline,
                   period_ns: float) -> list[_FunctionRun]:
    """Group pieces into function runs. A run counts as running or waiting by the state in which
    py-spy saw its stacks (each piece starts at a py-spy sample), by majority."""
    seen = [_seen_running(piece, timeline, period_ns) for piece in pieces]
    runs: list[_FunctionRun] = []
    first = 0
    for position in range(1, len(pieces) + 1):
        if position < len(pieces) and keys[pieces[position][2]] == keys[pieces[first][2]]:
            continue
        start, end = pieces[first][0], pieces[position - 1][1]
        running_views = sum(view is True for view in seen[first:position])
        waiting_views = sum(view is False for view in seen[first:position])
        runs.append(_FunctionRun(first, position, start, end,
                                 None if running_views == waiting_views else running_views > waiting_views,
                                 _wait_reason(timeline, start, end)))
        first = position
    return runs


def _nearest_run(runs: list[_FunctionRun], g: int, start: int, end: int, window: float, wanted) -> tuple[int, bool] | None:
    """The function run other than ``g`` nearest to [start, end) that ``wanted`` accepts, at most
    ``window`` ns away, as (run index, whether it comes before); the earlier one on a tie."""
    best: tuple[int, int, bool] | None = None
    for h in range(g - 1, -1, -1):
        gap = start - runs[h].end
        if gap > window:
            break
        if wanted(runs[h]):
            best = (gap, h, True)
            break
    for h in range(g + 1, len(runs)):
        gap = runs[h].start - end
        if gap > window or (best is not None and gap >= best[0]):
            break
        if wanted(runs[h]):
            best = (gap, h, False)
            break
    return None if best is None else (best[1], best[2])


def infer_stale_stacks(pieces: list[tuple[int, int, int]], keys: list, timeline: StateTimeline,
                       period_ns: float) -> tuple[list[tuple[int, int, int]], list[bool]]:
    """Cut the bursts py-spy's stacks cannot describe out of one contiguous run of pieces
    (start_ns, end_ns, segment index) and give them the segment of the nearest function run seen
    in their state (module docstring, step 1). Returns the new pieces and which were inferred."""
    runs = _function_runs(pieces, keys, timeline, period_ns)
    window = INFER_WINDOW_PERIODS * period_ns
    longest_running = INFER_MAX_BURST_PERIODS * period_ns
    shortest_waiting = INFER_MIN_WAIT_PERIODS * period_ns
    replacements: list[tuple[int, int, int]] = []  # (start, end, source segment)
    for g, run in enumerate(runs):
        if run.running is None:
            continue
        for start, end, running, reason in timeline.stretches_within(run.start, run.end):
            if running == run.running or start <= run.start or end >= run.end:
                continue  # the run's own state, or touching its edges (a late boundary: refinement's job)
            if running and end - start <= longest_running:
                found = _nearest_run(runs, g, start, end, window, lambda other: other.running is True)
            elif not running and end - start >= shortest_waiting and reason >= 0:
                found = _nearest_run(runs, g, start, end, window,
                                     lambda other, reason=reason: other.running is False and other.reason == reason)
            else:
                found = None
            if found is not None:
                h, before = found
                source = pieces[runs[h].last - 1][2] if before else pieces[runs[h].first][2]
                replacements.append((start, end, source))
    if not replacements:
        return pieces, [False] * len(pieces)
    result: list[tuple[int, int, int]] = []
    inferred: list[bool] = []
    replacements.sort()
    r = 0
    for start, end, index in pieces:
        cursor = start
        while r < len(replacements) and replacements[r][0] < end:
            cut_start, cut_end, source = replacements[r]
            if cut_start > cursor:
                result.append((cursor, cut_start, index))
                inferred.append(False)
            result.append((max(cut_start, cursor), min(cut_end, end), source))
            inferred.append(True)
            cursor = min(cut_end, end)
            if cut_end > end:
                replacements[r] = (end, cut_end, source)
                break
            r += 1
        if cursor < end:
            result.append((cursor, end, index))
            inferred.append(False)
    return result, inferred


@dataclass
class BuildStats:
    samples: int = 0
    unknown_samples: int = 0
    moved_boundaries: int = 0
    inferred_samples: int = 0
    inferred_ns: int = 0
    sampled_ns: int = 0
    wakeups_without_work: int = 0
    stale_names: int = 0
    pyspy_lag_ns: int = 0
    threads_without_states: list[str] = field(default_factory=list)


def estimate_pyspy_lag(trace: ChromeTrace, origin_ns: int, states_of: dict, period_ns: float) -> int:
    """How many ns py-spy's clock runs behind ``origin_ns`` (module docstring, "Clock").

    py-spy's ``ts`` counts from when it created its trace writer, a few ms after ``origin_ns``
    (its own start-up, longer on a busy machine), so its times come out early by that much. Every
    change py-spy saw between a function run that spent most of its time running and one that
    spent most of its time waiting lags the matching switch of the thread's state by one sampling
    delay, exponentially distributed, whose 10th percentile is 0.105 intervals: the 10th percentile
    of the observed lags, minus that, is how early py-spy's times are. 0 with fewer than
    ``LAG_MIN_CHANGES`` such changes; at most two intervals.
    """
    lags: list[int] = []
    for thread in trace.threads:
        states = states_of.get((thread.pid, thread.native_tid)) if thread.native_tid is not None else None
        if states is None or len(states) < 2:
            continue
        timeline = StateTimeline(states)
        if not len(timeline.switch_at):
            continue
        pieces = [(origin_ns + s.start_us * 1000, origin_ns + s.end_us * 1000, k) for k, s in enumerate(thread.segments)]
        keys = [tuple((name, file) for name, file, _ in s.frames) for s in thread.segments]
        previous = None
        for start, end, running in _majority_runs(pieces, keys, timeline):
            if previous is not None and previous[1] == start and previous[2] is not None and running is not None and previous[2] != running:
                direction = timeline.switch_from_running == previous[2]
                switches = timeline.switch_at[direction]
                k = int(np.searchsorted(switches, start))
                near = [int(switches[j]) for j in (k - 1, k) if 0 <= j < len(switches)]
                if near:
                    switch = min(near, key=lambda at: abs(start - at))
                    if -2 * period_ns <= start - switch <= 3 * period_ns:
                        lags.append(start - switch)
            previous = (start, end, running)
    if len(lags) < LAG_MIN_CHANGES:
        return 0
    early = 0.105 * period_ns - float(np.percentile(lags, 10))
    return int(min(max(early, 0.0), 2 * period_ns))


def _majority_runs(pieces: list[tuple[int, int, int]], keys: list, timeline: StateTimeline):
    """(start, end, running for most of the time or None) of each function run of ``pieces``."""
    first = 0
    for position in range(1, len(pieces) + 1):
        if position < len(pieces) and keys[pieces[position][2]] == keys[pieces[first][2]] and pieces[position][0] == pieces[position - 1][1]:
            continue
        start, end = pieces[first][0], pieces[position - 1][1]
        yield start, end, _mostly_running(timeline, start, end)
        first = position


def started_at(first_sample_ns: int, first_reading_ns: int, trace_start_ns: int, period_ns: float) -> int:
    """When a thread began, as far as the profile is concerned (module docstring, step 5): its
    first state reading when that came before py-spy's first sample of it (by at most
    ``START_LIMIT_PERIODS`` intervals) and after py-spy's first sample of anything."""
    if trace_start_ns < first_reading_ns < first_sample_ns and first_sample_ns - first_reading_ns <= START_LIMIT_PERIODS * period_ns:
        return first_reading_ns
    return first_sample_ns


def own_kernel_names(names: dict[tuple[int, int], str]) -> dict[tuple[int, int], str]:
    """The kernel thread names (comm) that say something: those that differ from their process's
    main thread (Python < 3.14 leaves every thread's comm as the process name)."""
    return {key: name for key, name in names.items() if name and (key[0] == key[1] or name != names.get((key[0], key[0])))}


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
    kernel_names = own_kernel_names(names_of)
    lag_ns = estimate_pyspy_lag(trace, origin_ns, states_of, period_ns)
    origin_ns += lag_ns
    stats.pyspy_lag_ns = lag_ns
    for thread in trace.threads:
        key = (thread.pid, thread.native_tid) if thread.native_tid is not None else None
        states = states_of.get(key) if key is not None else None
        name = thread_name(thread) or (kernel_names.get(key, "") if key is not None else "")
        stats.stale_names += name_is_stale(thread)
        index = profile.add_thread(thread.pid, thread_label(thread), name)
        limit = end_ns
        if states is not None and recorder is not None:
            seen = recorder.last_seen_ns.get(key)
            if seen is not None and last_reading_ns is not None and seen < last_reading_ns:
                cut = recorder.gone_by(seen, period_ns)
                limit = cut if limit is None else min(limit, cut)
        segments = [(origin_ns + s.start_us * 1000, origin_ns + s.end_us * 1000) for s in thread.segments]
        if states is not None and len(states) and segments:
            segments[0] = (started_at(segments[0][0], states.time_ns[0], origin_ns + trace.first_us * 1000, period_ns), segments[0][1])
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
    """The profile note saying how many samples took an inferred stack (module docstring, step 1)."""
    share = 100.0 * stats.inferred_ns / max(stats.sampled_ns, 1)
    return (
        f"inferred stacks for {stats.inferred_samples} samples ({share:.1f}% of the sampled time): phases py-spy's"
        " sampling missed (CPU inside a stack it saw blocked, or a repeated blocking call inside a stack it saw"
        " running) took the stack of the nearest function it saw in that state"
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
    if stats.stale_names:
        notes.append(
            f"{stats.stale_names} threads reused the pthread id of a thread that had ended, and py-spy reported that"
            " thread's name for them (it caches names by pthread id); their names end in '(stale name?)'"
        )
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
