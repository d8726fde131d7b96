"""Joining one thread's py-spy stack segments with its /proc state readings, so that every sample
carries a state: the state timeline, boundary refinement, stale-stack inference and sampling.
The method and its limits: docs/attach.md."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..formats.pyspy_chrometrace import segment_sample_times
from ..model import State
from .states import ThreadStates

REFINE_WINDOW_PERIODS = 6.0
REFINE_MATCHED_WINDOW_PERIODS = 20.0
LATE_STAMP_PERIODS = 1.0
INFER_WINDOW_PERIODS = 20.0
INFER_MAX_BURST_PERIODS = 6.0
INFER_MIN_WAIT_PERIODS = 2.0
WORK_CPU_SHARE = 0.05
NEAREST_LIMIT_PERIODS = 2.0
NEAREST_LIMIT_MIN_NS = 25_000_000
RUNNING_STATES = (int(State.ON_CPU), int(State.RUNNABLE))


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
                    if self.states[i - 1] == int(State.GIL):  # a blip while taking the GIL back: still the GIL
                        self.states[i:end], self.reasons[i:end] = int(State.GIL), -1
                    else:
                        self.states[i:end] = int(State.WAITING)
                        self.reasons[i:end] = self.reasons[i - 1] if self.reasons[i - 1] >= 0 else self.reasons[end]
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
    """Move segment boundaries back to where the thread's state changed (docs/attach.md, step 2).

    ``bounds`` holds the edges of contiguous segments (len = segments + 1), changed in place;
    ``keys[i]`` identifies segment i's functions (lines aside): a boundary between equal keys is
    only a line change and is not refined itself, but is pulled back with a refined boundary it
    would otherwise pass. A boundary moves to the latest running/waiting switch within
    ``REFINE_WINDOW_PERIODS`` intervals before it and after the start of the previous function
    run, provided that run spent most of its time before the switch in the state the thread
    switched away from and the thread is still in the new state at the boundary. A
    running -> waiting switch up to ``REFINE_MATCHED_WINDOW_PERIODS`` intervals back also counts
    when the wait has the reason of the next function run's waiting: it is that run's blocking
    call, which py-spy saw late (provided py-spy saw that run waiting). A function run that lies
    wholly inside a wait that began at most ``LATE_STAMP_PERIODS`` intervals before it, while the
    next run waits for the same reason, is a stack py-spy read just before the wait began and
    stamped a little late: its boundary moves back to its start (its time is the next run's
    blocking call). Returns how many boundaries moved.
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
        if at is not None and from_running[k] and run_start - LATE_STAMP_PERIODS * period_ns <= at < run_start < boundary \
                and _stamped_late(timeline, keys, bounds, i, at, period_ns):
            for j in range(i, 0, -1):
                if bounds[j] <= run_start:
                    break
                bounds[j] = run_start
            moved += 1
            continue
        if at is None or not run_start < at < boundary or timeline.running_at(boundary) == bool(from_running[k]):
            run_start = bounds[i]
            continue
        near = at > boundary - window
        if not near and from_running[k] and at > boundary - matched_window:
            run_end = _run_end(bounds, keys, i)
            seen = _seen_running((boundary, run_end, -1), timeline, period_ns)
            near = seen is False and 0 <= _wait_reason(timeline, at, boundary) == _wait_reason(timeline, boundary, run_end)
        if near:
            if mostly_running(timeline, run_start, at) == bool(from_running[k]):
                bounds[i] = at
                moved += 1
                for j in range(i - 1, 0, -1):
                    if bounds[j] <= at:
                        break
                    bounds[j] = at
        run_start = bounds[i]
    return moved


def _run_end(bounds: list[int], keys: list, i: int) -> int:
    """Where the function run starting at boundary ``i`` ends."""
    return next((bounds[j + 1] for j in range(i, len(keys)) if j + 1 == len(keys) or keys[j + 1] != keys[i]), bounds[-1])


def _stamped_late(timeline: StateTimeline, keys: list, bounds: list[int], i: int, wait_start: int, period_ns: float) -> bool:
    """Whether the function run ending at ``bounds[i]`` lies wholly inside the wait that began at
    ``wait_start``, and the next run waits for the same reason (see :func:`refine_boundaries`)."""
    run_start, boundary = wait_start, bounds[i]
    if any(running for _, _, running, _ in timeline.stretches_within(run_start, boundary)):
        return False
    run_end = _run_end(bounds, keys, i)
    if _seen_running((boundary, run_end, -1), timeline, period_ns) is not False:
        return False
    reason = _wait_reason(timeline, run_start, boundary)
    return reason >= 0 and reason == _wait_reason(timeline, boundary, run_end)


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
    """Samples with states for one thread (docs/attach.md). ``segments`` are (start_ns, end_ns)
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
    return mostly_running(timeline, piece[0], min(piece[1], piece[0] + int(period_ns)))


def mostly_running(timeline: StateTimeline, start: int, end: int) -> bool | None:
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
    in their state (docs/attach.md, step 1). Returns the new pieces and which were inferred."""
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
