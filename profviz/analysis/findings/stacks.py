"""Sample-side evidence for detectors: time a profile spent under frames that match a rule, and the
application's call site of that time (the innermost frame of the app's own code above it)."""

from __future__ import annotations

import re
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...model import Frame, Profile, State

_LIBRARY_PATH = re.compile(r"/(site|dist)-packages/|/lib/python3\.\d+/|^<|/profviz/(collect|middleware|otel)")

FrameRule = Callable[[Frame], bool]


def is_app_frame(frame: Frame) -> bool:
    """Code of the application itself: not the standard library, an installed package or a pseudo-file."""
    return not _LIBRARY_PATH.search(frame.file)


def call_site(frame: Frame | None) -> dict | None:
    """A call site as evidence: ``{"function", "file", "line"}``, or None."""
    return {"function": frame.function, "file": frame.file, "line": frame.line} if frame is not None else None


@dataclass
class Under:
    """Per stack node of a profile: whether a frame matching a rule is on it, and the app's call
    site of the outermost match (the innermost app frame below it), as a frame index or -1."""

    matched: np.ndarray
    site: np.ndarray


def under(profile: Profile, rule: FrameRule) -> Under:
    """Mark every stack of ``profile`` under a frame matching ``rule`` (prefixes come before their stacks)."""
    count = len(profile.stack_prefix)
    matched = np.zeros(count, dtype=bool)
    site = np.full(count, -1, dtype=np.int64)
    app_below = innermost_app_frames(profile)
    frame_match: dict[int, bool] = {}
    for node in range(count):
        prefix = int(profile.stack_prefix[node])
        frame_index = int(profile.stack_frame[node])
        if frame_index not in frame_match:
            frame_match[frame_index] = bool(rule(profile.frame(frame_index)))
        if prefix >= 0 and matched[prefix]:
            matched[node], site[node] = True, site[prefix]
        elif frame_match[frame_index]:
            matched[node], site[node] = True, app_below[prefix] if prefix >= 0 else -1
    return Under(matched, site)


def time_under(profile: Profile, rule: FrameRule, states: tuple[State, ...] = (State.ON_CPU, State.WAITING, State.RUNNABLE, State.GIL),
               ) -> tuple[float, Counter]:
    """(ns of ``profile``'s samples in ``states`` under a frame matching ``rule``, ns by call site :class:`Frame`)."""
    if not profile.sample_count or not len(profile.stack_prefix):
        return 0.0, Counter()
    marks = under(profile, rule)
    columns = profile.columns()
    stacks, weights, sample_states = columns["stack"], columns["weight_ns"], columns["state"]
    chosen = (stacks >= 0) & np.isin(sample_states, [int(s) for s in states])
    chosen[chosen] = marks.matched[stacks[chosen]]
    sites: Counter = Counter()
    for frame_index, weight in zip(marks.site[stacks[chosen]].tolist(), weights[chosen].tolist()):
        sites[frame_index] += weight
    return float(weights[chosen].sum()), frames_of(profile, sites)


def computing_under(profile: Profile, rule: FrameRule) -> tuple[float, Counter]:
    """(ns ``profile`` computed under a frame matching ``rule``: on a CPU, runnable, or waiting for
    the GIL while other threads compute (state GIL, or a futex or no reason where the GIL could not
    be told apart); by call site)."""
    if not profile.sample_count or not len(profile.stack_prefix):
        return 0.0, Counter()
    marks = under(profile, rule)
    columns = profile.columns()
    futex = [i for i, text in enumerate(profile.strings) if text == "lock (futex)"]
    state, reason, stacks, weights = columns["state"], columns["reason"], columns["stack"], columns["weight_ns"]
    computing = ((state == int(State.ON_CPU)) | (state == int(State.RUNNABLE)) | (state == int(State.GIL))
                 | ((state == int(State.WAITING)) & ((reason < 0) | np.isin(reason, futex))))
    chosen = computing & (stacks >= 0)
    chosen[chosen] = marks.matched[stacks[chosen]]
    sites: Counter = Counter()
    for frame_index, weight in zip(marks.site[stacks[chosen]].tolist(), weights[chosen].tolist()):
        sites[frame_index] += weight
    return float(weights[chosen].sum()), frames_of(profile, sites)


def sites_in_windows(profile: Profile, windows: list[tuple[int, int]]) -> Counter:
    """ns of ``profile``'s samples whose time falls in one of ``windows`` ([start, end) epoch ns),
    by the innermost app frame of their stack (a :class:`Frame`; None when there is none)."""
    if not profile.sample_count or not windows:
        return Counter()
    columns = profile.columns()
    times, stacks, weights = columns["time_ns"], columns["stack"], columns["weight_ns"]
    middle = times + weights // 2
    inside = np.zeros(len(times), dtype=bool)
    for start, end in windows:
        inside |= (middle >= start) & (middle < end)
    innermost = innermost_app_frames(profile)
    sites: Counter = Counter()
    for stack, weight in zip(stacks[inside].tolist(), weights[inside].tolist()):
        sites[innermost[stack] if stack >= 0 else -1] += weight
    return frames_of(profile, sites)


def frames_of(profile: Profile, by_index: Counter) -> Counter:
    """A Counter by frame index of ``profile`` as a Counter by :class:`Frame` (None for -1), to add across profiles."""
    by_frame: Counter = Counter()
    for frame_index, weight in by_index.items():
        by_frame[profile.frame(frame_index) if frame_index >= 0 else None] += weight
    return by_frame


_INNERMOST: "weakref.WeakKeyDictionary[Profile, np.ndarray]" = weakref.WeakKeyDictionary()


def innermost_app_frames(profile: Profile) -> np.ndarray:
    """Per stack node: the frame index of the innermost app frame at or below it that is not the
    app's own data-access plumbing (:func:`is_plumbing`), else of the innermost app frame, or -1
    (made once per profile: every detector asks)."""
    found = _INNERMOST.get(profile)
    if found is None or len(found) != len(profile.stack_prefix):
        found = _INNERMOST[profile] = _innermost_app_frames(profile)
    return found


def _innermost_app_frames(profile: Profile) -> np.ndarray:
    count = len(profile.stack_prefix)
    strict = np.full(count, -1, dtype=np.int64)
    loose = np.full(count, -1, dtype=np.int64)
    kinds: dict[int, tuple[bool, bool]] = {}
    for node in range(count):
        prefix = int(profile.stack_prefix[node])
        frame_index = int(profile.stack_frame[node])
        if frame_index not in kinds:
            frame = profile.frame(frame_index)
            app = is_app_frame(frame)
            kinds[frame_index] = (app, app and not is_plumbing(frame))
        app, caller = kinds[frame_index]
        loose[node] = frame_index if app else (loose[prefix] if prefix >= 0 else -1)
        strict[node] = frame_index if caller else (strict[prefix] if prefix >= 0 else -1)
    return np.where(strict >= 0, strict, loose)


_PLUMBING_FUNCTIONS = re.compile(
    r"^_*(query|run_query|execute|executemany|fetch\w*|cursor|connect|open_connection|get_connection|get_db|db|round_trip|"
    r"request|get|post|put|delete|send)$", re.IGNORECASE)
_PLUMBING_FILES = re.compile(r"(db|sql|database|dbapi)\.py$|^(db|sql|database)_", re.IGNORECASE)


def is_plumbing(frame: Frame) -> bool:
    """App code that only passes a query or a call on (a ``query()`` helper, the app's own driver
    module): a call site names the code above it, which decides to make the call."""
    return bool(_PLUMBING_FUNCTIONS.match(frame.function.rsplit(".", 1)[-1])
                or _PLUMBING_FILES.search(frame.file.rsplit("/", 1)[-1]))


def top_site(sites: Counter) -> Frame | None:
    """The call site with the most time, or None when no app frame was found."""
    for frame, _ in sites.most_common():
        if frame is not None:
            return frame
    return None


_FRAMEWORK_MARKERS = (("django", "/django/db/"), ("sqlalchemy", "/sqlalchemy/orm/"), ("psycopg", "/psycopg/"))


def frameworks_in(profiles) -> set[str]:
    """Which data libraries the code of ``profiles`` ran ("django", "sqlalchemy", "psycopg"), from their frames' files."""
    seen = set()
    for profile in profiles:
        files = {profile.strings[i] for i in set(profile.frame_file.tolist())} if len(profile.frame_file) else set()
        for name, marker in _FRAMEWORK_MARKERS:
            if any(marker in file for file in files):
                seen.add(name)
    return seen


def site_during(kept: list, windows_of, most: int = 10) -> Frame | None:
    """The app's call site of the time inside the problem's spans, over up to ``most`` of the
    ``kept`` (request, profile) pairs; ``windows_of(request id)`` gives a request's span windows
    ([start, end) epoch ns; none for a request the problem did not affect)."""
    sites: Counter = Counter()
    used = 0
    for row, profile in kept:
        if used >= most:
            break
        windows = windows_of(row.id)
        if windows:
            sites.update(sites_in_windows(profile, windows))
            used += 1
    return top_site(sites)


def share_under(kept: list, windows_of, rule: FrameRule, most: int = 10) -> float:
    """Of the sampled time inside the problem's span windows (``windows_of(request id)``, over up
    to ``most`` kept profiles), the fraction under a frame matching ``rule``; 0.0 when none was sampled."""
    inside = matched = 0.0
    used = 0
    for row, profile in kept:
        windows = windows_of(row.id)
        if not windows or used >= most or not profile.sample_count:
            continue
        used += 1
        columns = profile.columns()
        middle = columns["time_ns"] + columns["weight_ns"] // 2
        chosen = np.zeros(len(middle), dtype=bool)
        for start, end in windows:
            chosen |= (middle >= start) & (middle < end)
        stacks, weights = columns["stack"][chosen], columns["weight_ns"][chosen]
        marks = under(profile, rule).matched
        inside += float(weights.sum())
        matched += float(weights[(stacks >= 0) & marks[np.maximum(stacks, 0)]].sum())
    return matched / inside if inside else 0.0
