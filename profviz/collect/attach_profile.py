"""The attach profile: py-spy's parsed trace joined, thread by thread, with the recorded thread
states (:func:`build_profile`). The method and its limits: docs/attach.md."""

from __future__ import annotations

import os

from dataclasses import dataclass, field

import numpy as np

from ..formats.pyspy_chrometrace import ChromeTrace, name_is_stale, thread_label, thread_name
from ..model import NO_STACK, Profile, State
from .join import StateTimeline, join_thread, mostly_running
from .states import StateLog

START_LIMIT_PERIODS = 5.0
LAG_MIN_CHANGES = 20
MAIN_THREAD_NAME = "MainThread"


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
    """How many ns py-spy's clock runs behind ``origin_ns`` (docs/attach.md, "Clock").

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
        yield start, end, mostly_running(timeline, start, end)
        first = position


def started_at(first_sample_ns: int, first_reading_ns: int, trace_start_ns: int, period_ns: float) -> int:
    """When a thread began, as far as the profile is concerned (docs/attach.md, step 5): its
    first state reading when that came before py-spy's first sample of it (by at most
    ``START_LIMIT_PERIODS`` intervals) and after py-spy's first sample of anything."""
    if trace_start_ns < first_reading_ns < first_sample_ns and first_sample_ns - first_reading_ns <= START_LIMIT_PERIODS * period_ns:
        return first_reading_ns
    return first_sample_ns


def own_kernel_names(names: dict[tuple[int, int], str]) -> dict[tuple[int, int], str]:
    """The kernel thread names (comm) that say something: those that differ from their process's
    main thread (Python < 3.14 leaves every thread's comm as the process name)."""
    return {key: name for key, name in names.items() if name and (key[0] == key[1] or name != names.get((key[0], key[0])))}


def fallback_name(key: tuple[int, int] | None, kernel_names: dict[tuple[int, int], str]) -> str:
    """A thread's name when py-spy gave none (its name lookup, which reads the target's
    ``threading._active`` while the target changes it, can fail for a whole recording on a busy
    host): "MainThread" for the main thread (native tid = pid, which Python names so), else the
    kernel's name when it says something."""
    if key is None:
        return ""
    if key[0] == key[1]:
        return MAIN_THREAD_NAME
    return kernel_names.get(key, "")


LOOP_IDLE_REASON = "event loop idle"
"""The wait reason of an event loop thread blocked in its selector with nothing to run."""
_SELECTOR_FILE = "selectors.py"
_RUNNERS_FILE = os.path.join("asyncio", "runners.py")
_LOOP_FILE = os.path.join("asyncio", "base_events.py")


def loop_idle_stack(frames) -> bool:
    """Whether py-spy frames (root first) are an asyncio event loop in its selector: asyncio's
    ``_run_once`` calling a selector's ``select``, or, for uvloop (whose loop is C, below Python),
    ``asyncio.run``'s runner as the leaf (any callback the loop ran would be above it)."""
    if not frames:
        return False
    name, file = frames[-1][0], frames[-1][1]
    if file.endswith(_SELECTOR_FILE) and name.endswith("select"):
        return len(frames) > 1 and frames[-2][0].endswith("_run_once") and frames[-2][1].endswith(_LOOP_FILE)
    return file.endswith(_RUNNERS_FILE) and name.rsplit(".", 1)[-1] == "run"


def build_profile(
    trace: ChromeTrace,
    origin_ns: int,
    log: StateLog | None,
    rate_hz: float,
    meta: dict,
    *,
    end_ns: int | None = None,
) -> tuple[Profile, BuildStats]:
    """Join a parsed py-spy trace with the recorded thread states into a profile."""
    profile = Profile(dict(meta))
    stats = BuildStats()
    period_ns = 1e9 / rate_hz
    states_of = log.states if log is not None else {}
    names_of = log.names if log is not None else {}
    reason_text = log.reasons.text if log is not None else (lambda _: None)
    last_reading_ns = log.last_ns if log is not None else None
    kernel_names = own_kernel_names(names_of)
    lag_ns = estimate_pyspy_lag(trace, origin_ns, states_of, period_ns)
    origin_ns += lag_ns
    stats.pyspy_lag_ns = lag_ns
    for thread in trace.threads:
        key = (thread.pid, thread.native_tid) if thread.native_tid is not None else None
        states = states_of.get(key) if key is not None else None
        name = thread_name(thread) or fallback_name(key, kernel_names)
        stats.stale_names += name_is_stale(thread)
        index = profile.add_thread(thread.pid, thread_label(thread), name)
        limit = end_ns
        if states is not None and log is not None:
            seen = log.last_seen_ns.get(key)
            if seen is not None and last_reading_ns is not None and seen < last_reading_ns:
                cut = log.gone_by(seen, period_ns)
                limit = cut if limit is None else min(limit, cut)
        segments = [(origin_ns + s.start_us * 1000, origin_ns + s.end_us * 1000) for s in thread.segments]
        if states is not None and len(states) and segments:
            segments[0] = (started_at(segments[0][0], states.time_ns[0], origin_ns + trace.first_us * 1000, period_ns), segments[0][1])
        keys = [tuple((name, file) for name, file, _ in s.frames) for s in thread.segments]
        joined = join_thread(segments, keys, states, period_ns, limit)
        if states is None and joined.time_ns:
            stats.threads_without_states.append(profile.thread_label(index))
        stacks = [profile.intern_frames(s.frames) if s.frames else NO_STACK for s in thread.segments]
        idle = [loop_idle_stack(s.frames) for s in thread.segments]
        for k in range(len(joined.time_ns)):
            state = joined.state[k]
            reason = reason_text(joined.reason[k]) if state == int(State.WAITING) else None
            if reason is not None and idle[joined.segment[k]]:
                reason = LOOP_IDLE_REASON  # what the selector waits on is any request's: the loop has nothing to run
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


def inference_note(stats: BuildStats) -> str:
    """The profile note saying how many samples took an inferred stack (docs/attach.md, step 1)."""
    share = 100.0 * stats.inferred_ns / max(stats.sampled_ns, 1)
    return (
        f"inferred stacks for {stats.inferred_samples} samples ({share:.1f}% of the sampled time): phases py-spy's"
        " sampling missed (CPU inside a stack it saw blocked, or a repeated blocking call inside a stack it saw"
        " running) took the stack of the nearest function it saw in that state"
    )
