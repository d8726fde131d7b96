"""Trace spans lined up against samples: which span was each sample taken in?

Rule: a sample belongs to the **innermost** span open on the same thread at the instant its
stack was seen. Innermost means the latest-started span that is still open, which for properly
nested spans is the deepest one. A sample's ``time_ns`` is the start of the interval
``[time_ns, time_ns + weight_ns)`` it stands for; which instant of that interval the stack was
seen at depends on the collector (``sample_instant``): ``"end"`` for the in-process samplers of
per-request profiles (kind ``request``: the stack is read at the end of the interval), ``"mid"``
for everything else (``profviz attach`` splits each observed stack segment into samples, so the
stack holds over the whole interval and its middle is the fairest point), ``"start"`` on
request. ``"auto"`` (default) picks by the profile's kind.

Spans without a thread (``Span.thread == -1``, plain OpenTelemetry apps that lack the
``thread.id`` attribute) are approximate: they are joined by time window over every thread of
the profile, and only claim samples no exact span claims.

Clocks: span times and sample times are both CLOCK_REALTIME epoch nanoseconds taken on one
host, so the default ``offset_ns`` is 0. For spans recorded on a host whose clock differs,
pass the offset to add to span times to bring them onto the samples' clock.

Everything is vectorised with numpy: spans are sorted per thread (a composite key of thread and
time), each sample finds the last span started before it with ``searchsorted`` and walks up
"previous span that ends later" pointers by binary lifting until it reaches an open one;
time per state inside any window comes from prefix sums over the samples' intervals
(:class:`StateTime`), and a span's own ("self") time from the elementary segments between span
boundaries, each owned by the innermost span open over it. Functions here
are pure: they read a profile and spans and return new objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import Profile, Span, State

NO_SPAN = -1
STATE_COUNT = len(State)


# -- interval primitives ----------------------------------------------------------------------


def _previous_longer(ends: np.ndarray) -> np.ndarray:
    """For each position k, the nearest j < k with ``ends[j] > ends[k]`` (or -1), by pointer jumping."""
    n = len(ends)
    jump = np.arange(-1, n - 1, dtype=np.int64)
    active = np.flatnonzero(jump >= 0)
    while active.size:
        target = jump[active]
        move = ends[target] <= ends[active]
        active = active[move]
        jump[active] = jump[target[move]]
        active = active[jump[active] >= 0]
    return jump


def innermost_interval(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each point, the index of the latest-starting interval [start, end) containing it, or -1.

    ``starts`` must be sorted ascending (ties allowed); ``points`` may be in any order. Cost is
    O((n + m) log n) for n intervals and m points, whatever the nesting.
    """
    points = np.asarray(points, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if not len(starts) or not len(points):
        return np.full(len(points), NO_SPAN, dtype=np.int64)
    last_started = np.searchsorted(starts, points, side="right") - 1
    owner = np.full(len(points), NO_SPAN, dtype=np.int64)
    candidate = last_started >= 0
    open_now = np.zeros(len(points), dtype=bool)
    open_now[candidate] = ends[last_started[candidate]] > points[candidate]
    owner[open_now] = last_started[open_now]
    walk = np.flatnonzero(candidate & ~open_now)
    if not walk.size:
        return owner
    jump = _previous_longer(ends)
    levels = [jump]
    while True:
        up = levels[-1]
        nxt = np.where(up >= 0, up[np.maximum(up, 0)], -1)
        if not (nxt >= 0).any():
            break
        levels.append(nxt)
    at = last_started[walk]
    t = points[walk]
    for level in reversed(levels):
        target = level[at]
        step = (target >= 0) & (ends[np.maximum(target, 0)] <= t)
        at = np.where(step, target, at)
    parent = jump[at]
    found = (parent >= 0) & (ends[np.maximum(parent, 0)] > t)
    owner[walk[found]] = parent[found]
    return owner


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals [start, end) as sorted disjoint intervals (empty ones dropped)."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] > reach[:-1]
    group = np.cumsum(new) - 1
    merged_ends = np.zeros(int(group[-1]) + 1, dtype=np.int64)
    np.maximum.at(merged_ends, group, ends)
    return starts[new], merged_ends


def covered_before(union_starts: np.ndarray, union_ends: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Length of the union (disjoint sorted intervals) lying before each x."""
    x = np.asarray(x, dtype=np.int64)
    if not len(union_starts):
        return np.zeros(len(x), dtype=np.int64)
    lengths = union_ends - union_starts
    before = np.concatenate(([0], np.cumsum(lengths)))
    k = np.searchsorted(union_starts, x, side="right") - 1
    inside = k >= 0
    out = np.zeros(len(x), dtype=np.int64)
    kk = k[inside]
    out[inside] = before[kk] + np.clip(x[inside] - union_starts[kk], 0, lengths[kk])
    return out


class StateTime:
    """Sample time per state lying before any point: ``at(x)[state, i]`` = sum over samples of that
    state of the length of ``[start, start + weight) ∩ (-inf, x[i])``.

    Exact for overlapping intervals too (samples of several threads). Built from prefix sums over
    the samples sorted by start and by end; int64 sums may wrap, but every result is a small
    difference of them and modular arithmetic keeps it exact.
    """

    def __init__(self, starts: np.ndarray, weights: np.ndarray, states: np.ndarray):
        starts = np.asarray(starts, dtype=np.int64)
        ends = starts + np.asarray(weights, dtype=np.int64)
        states = np.asarray(states, dtype=np.int64)
        by_start = np.argsort(starts, kind="stable")
        by_end = np.argsort(ends, kind="stable")
        self.starts, self.ends = starts[by_start], ends[by_end]
        one_hot_start = states[by_start][None, :] == np.arange(STATE_COUNT)[:, None]
        one_hot_end = states[by_end][None, :] == np.arange(STATE_COUNT)[:, None]
        zero = np.zeros((STATE_COUNT, 1), dtype=np.int64)
        with np.errstate(over="ignore"):
            self.started = np.hstack((zero, np.cumsum(one_hot_start, axis=1, dtype=np.int64)))
            self.started_t = np.hstack((zero, np.cumsum(one_hot_start * self.starts, axis=1, dtype=np.int64)))
            self.ended = np.hstack((zero, np.cumsum(one_hot_end, axis=1, dtype=np.int64)))
            self.ended_t = np.hstack((zero, np.cumsum(one_hot_end * starts[by_end], axis=1, dtype=np.int64)))
            self.ended_w = np.hstack((zero, np.cumsum(one_hot_end * (self.ends - starts[by_end]), axis=1, dtype=np.int64)))

    def at(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        i = np.searchsorted(self.starts, x, side="left")
        k = np.searchsorted(self.ends, x, side="right")
        with np.errstate(over="ignore"):
            open_count = self.started[:, i] - self.ended[:, k]
            open_t = self.started_t[:, i] - self.ended_t[:, k]
            return self.ended_w[:, k] + open_count * x[None, :] - open_t

    def between(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """[state, i] sample time inside [a[i], b[i])."""
        with np.errstate(over="ignore"):
            return self.at(b) - self.at(a)


class _Keys:
    """Composite keys ``group * stride + (time - base)`` so one sorted array serves every thread.

    Times are clipped to [low, high], the range that matters for the samples at hand, which
    changes no answer about those samples but keeps keys inside 63 bits.
    """

    def __init__(self, low: int, high: int, groups: int):
        self.base = low
        self.low, self.high = low, high
        self.stride = high - low + 1
        if self.stride * max(groups, 1) >= 2**62:
            raise OverflowError(f"{groups} threads over {self.stride} ns do not fit composite 63-bit keys")

    def __call__(self, group: np.ndarray, time: np.ndarray) -> np.ndarray:
        clipped = np.clip(np.asarray(time, dtype=np.int64), self.low, self.high)
        return np.asarray(group, dtype=np.int64) * self.stride + (clipped - self.base)


# -- the join ---------------------------------------------------------------------------------


@dataclass
class SpanJoin:
    """Spans joined to a profile's samples.

    Per sample: ``owner`` (index into ``spans`` of the innermost span, -1 for none). Per span
    (arrays indexed like ``spans``; times already shifted by ``offset_ns``): ``start_ns``,
    ``end_ns``; ``samples`` (samples taken inside the span's window on its thread, every thread
    for approximate spans); ``by_state_ns[state, span]``, the sample time of each state inside the
    window (each sample counts the part of its interval that overlaps the window, so the states
    add up to ``covered_ns`` and never exceed the duration); ``covered_ns``, the window time
    covered by sample intervals; ``self_by_state_ns``, the same time-weighted sums over the parts
    of the window where the span is the innermost open span; ``self_samples``, the samples it owns.
    """

    profile: Profile
    spans: list[Span]
    offset_ns: int
    sample_instant_ns: np.ndarray
    owner: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray
    samples: np.ndarray
    by_state_ns: np.ndarray
    covered_ns: np.ndarray
    self_samples: np.ndarray
    self_by_state_ns: np.ndarray

    @property
    def duration_ns(self) -> np.ndarray:
        return self.end_ns - self.start_ns

    @property
    def uncovered_ns(self) -> np.ndarray:
        """Span time that no sample on its thread covers (the profiler was not looking)."""
        return np.maximum(self.duration_ns - self.covered_ns, 0)

    @property
    def thread(self) -> np.ndarray:
        return np.fromiter((s.thread for s in self.spans), dtype=np.int64, count=len(self.spans))

    def window_mask(self, index: int) -> np.ndarray:
        """Samples inside span ``index``'s window on its thread (every thread if approximate)."""
        cols = self.profile.columns()
        t = self.sample_instant_ns
        keep = (t >= self.start_ns[index]) & (t < self.end_ns[index])
        thread = self.spans[index].thread
        if thread >= 0:
            keep &= cols["thread"] == thread
        return keep

    def self_mask(self, index: int) -> np.ndarray:
        """Samples owned by span ``index`` (it is the innermost span open when they were taken)."""
        return self.owner == index


END_INSTANT_KINDS = ("request",)


def sample_instants(profile: Profile, sample_instant: str = "auto") -> np.ndarray:
    """Per sample, the instant its stack was seen (see the module docstring for the choices)."""
    cols = profile.columns()
    if sample_instant == "auto":
        sample_instant = "end" if profile.meta.get("kind") in END_INSTANT_KINDS else "mid"
    if sample_instant == "end":
        return cols["time_ns"] + cols["weight_ns"]
    if sample_instant == "mid":
        return cols["time_ns"] + cols["weight_ns"] // 2
    if sample_instant == "start":
        return cols["time_ns"].copy()
    raise ValueError(f"sample_instant must be 'auto', 'start', 'mid' or 'end', got {sample_instant!r}")


def join_spans(profile: Profile, spans: list[Span], *, offset_ns: int = 0, sample_instant: str = "auto") -> SpanJoin:
    """Join spans to the profile's samples (see the module docstring for the rules)."""
    cols = profile.columns()
    n_spans = len(spans)
    instants = sample_instants(profile, sample_instant)
    sample_thread = cols["thread"].astype(np.int64)
    weights = cols["weight_ns"]
    states = cols["state"].astype(np.int64)
    span_thread = np.fromiter((s.thread for s in spans), dtype=np.int64, count=n_spans)
    if n_spans and int(span_thread.max()) >= len(profile.threads):
        bad = int(np.flatnonzero(span_thread >= len(profile.threads))[0])
        raise ValueError(f"span {spans[bad].span_id} has thread {spans[bad].thread}, but the profile has {len(profile.threads)} threads")
    start = np.fromiter((s.start_ns for s in spans), dtype=np.int64, count=n_spans) + offset_ns
    end = np.fromiter((s.end_ns for s in spans), dtype=np.int64, count=n_spans) + offset_ns
    owner = np.full(len(instants), NO_SPAN, dtype=np.int64)
    samples = np.zeros(n_spans, dtype=np.int64)
    by_state = np.zeros((STATE_COUNT, n_spans), dtype=np.int64)
    covered = np.zeros(n_spans, dtype=np.int64)
    self_by_state = np.zeros((STATE_COUNT, n_spans), dtype=np.int64)
    if len(instants) and n_spans:
        low = int(min(instants.min(), cols["time_ns"].min())) - 1
        high = int(max(instants.max(), (cols["time_ns"] + weights).max())) + 1
        exact = np.flatnonzero(span_thread >= 0)
        approximate = np.flatnonzero(span_thread < 0)
        groups = len(profile.threads)
        for chosen, sample_group, span_group in (
            (exact, sample_thread, span_thread),
            (approximate, np.zeros_like(sample_thread), np.zeros_like(span_thread)),
        ):
            if not chosen.size:
                continue
            keys = _Keys(low, high, groups if chosen is exact else 1)
            _join_group(
                keys, chosen, sample_group, span_group, instants, cols["time_ns"], weights, states, start, end,
                owner, samples, by_state, covered, self_by_state, claim_only_free=chosen is approximate,
            )
    self_samples = np.bincount(owner[owner >= 0], minlength=n_spans).astype(np.int64)
    return SpanJoin(profile, list(spans), int(offset_ns), instants, owner, start, end, samples, by_state, covered,
                    self_samples, self_by_state)


def _join_group(
    keys: _Keys, chosen: np.ndarray, sample_group: np.ndarray, span_group: np.ndarray, instants: np.ndarray,
    sample_start: np.ndarray, weights: np.ndarray, states: np.ndarray, start: np.ndarray, end: np.ndarray,
    owner: np.ndarray, samples: np.ndarray, by_state: np.ndarray, covered: np.ndarray, self_by_state: np.ndarray,
    *, claim_only_free: bool,
) -> None:
    """Join the spans ``chosen`` (all exact, or all approximate in group 0), filling the outputs in place."""
    order = chosen[np.lexsort((start[chosen], span_group[chosen]))]
    span_start_key = keys(span_group[order], start[order])
    span_end_key = keys(span_group[order], end[order])
    sample_key = keys(sample_group, instants)
    local = innermost_interval(sample_key, span_start_key, span_end_key)
    found = local >= 0
    if claim_only_free:
        found &= owner < 0
    owner[found] = order[local[found]]

    sorted_keys = np.sort(sample_key)
    samples[order] = np.searchsorted(sorted_keys, span_end_key, side="left") - np.searchsorted(sorted_keys, span_start_key, side="left")

    interval_start = keys(sample_group, sample_start)
    state_time = StateTime(interval_start, weights, states)
    by_state[:, order] = state_time.between(span_start_key, span_end_key)
    union_starts, union_ends = merge_intervals(interval_start, interval_start + weights)
    covered[order] = (
        covered_before(union_starts, union_ends, span_end_key) - covered_before(union_starts, union_ends, span_start_key)
    )

    boundaries = np.unique(np.concatenate((span_start_key, span_end_key)))
    if len(boundaries) > 1:
        segment_owner = innermost_interval(boundaries[:-1], span_start_key, span_end_key)
        owned = segment_owner >= 0
        segment_time = state_time.between(boundaries[:-1][owned], boundaries[1:][owned])
        target = order[segment_owner[owned]]
        for state in range(STATE_COUNT):
            self_by_state[state] += np.bincount(target, weights=segment_time[state], minlength=len(start)).astype(np.int64)


# -- time outside child spans -----------------------------------------------------------------


@dataclass
class Unspanned:
    """The part of a window on one thread that no (non-root) span covers: the "(no span)" lane.

    ``mask`` selects the window's samples on the thread that no such span owns;
    ``duration_ns`` is the window time outside those spans (``intervals``), ``covered_ns`` how
    much of it the samples cover and ``by_state_ns[state]`` their time there per state.
    """

    thread: int
    start_ns: int
    end_ns: int
    duration_ns: int
    covered_ns: int
    by_state_ns: np.ndarray
    mask: np.ndarray
    intervals: list[tuple[int, int]]

    @property
    def uncovered_ns(self) -> int:
        return max(self.duration_ns - self.covered_ns, 0)


def root_spans(spans: list[Span]) -> list[int]:
    """Indices of top-level server spans: kind ``server`` with no parent among ``spans``.

    Such a span stands for the request itself, so time in it outside its children is time
    "not covered by any span".
    """
    ids = {s.span_id for s in spans}
    return [i for i, s in enumerate(spans) if s.kind == "server" and (s.parent_id is None or s.parent_id not in ids)]


def unspanned(join: SpanJoin, thread: int, start_ns: int, end_ns: int, roots: list[int] | None = None) -> Unspanned:
    """Window [start_ns, end_ns) on ``thread`` outside every span except ``roots`` (default :func:`root_spans`).

    Approximate spans count as covering their window. Times are on the samples' clock.
    """
    if roots is None:
        roots = root_spans(join.spans)
    thread_of = join.thread
    is_root = np.zeros(len(join.spans), dtype=bool)
    is_root[list(roots)] = True
    blocking = ~is_root & ((thread_of == thread) | (thread_of < 0))
    span_starts = np.clip(join.start_ns[blocking], start_ns, end_ns)
    span_ends = np.clip(join.end_ns[blocking], start_ns, end_ns)
    union_starts, union_ends = merge_intervals(span_starts, span_ends)
    in_spans = int((union_ends - union_starts).sum())
    cols = join.profile.columns()
    on_thread = cols["thread"] == thread
    t = join.sample_instant_ns
    owner = join.owner
    free = (owner < 0) | (is_root[np.maximum(owner, 0)] if len(is_root) else False)
    mask = on_thread & (t >= start_ns) & (t < end_ns) & free
    sample_starts = cols["time_ns"][on_thread]
    cover_starts, cover_ends = merge_intervals(sample_starts, sample_starts + cols["weight_ns"][on_thread])
    edges = np.array([start_ns, end_ns], dtype=np.int64)
    covered_window = np.diff(covered_before(cover_starts, cover_ends, edges))[0]
    covered_in_spans = int(
        (covered_before(cover_starts, cover_ends, union_ends) - covered_before(cover_starts, cover_ends, union_starts)).sum()
    )
    gaps: list[tuple[int, int]] = []
    cursor = start_ns
    for a, b in zip(union_starts.tolist(), union_ends.tolist()):
        if a > cursor:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < end_ns:
        gaps.append((cursor, end_ns))
    by_state = np.zeros(STATE_COUNT, dtype=np.int64)
    if gaps:
        state_time = StateTime(sample_starts, cols["weight_ns"][on_thread], cols["state"][on_thread])
        gap_array = np.asarray(gaps, dtype=np.int64)
        by_state = state_time.between(gap_array[:, 0], gap_array[:, 1]).sum(axis=1)
    return Unspanned(thread, start_ns, end_ns, (end_ns - start_ns) - in_spans, int(covered_window) - covered_in_spans,
                     by_state, mask, gaps)
