"""What the span views show of a :class:`~.correlate.SpanJoin`: per-span sample statistics with their
top functions, the "(no span)" gap, state lanes, span depths, and the samples of a span's flame graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import NO_STACK, Profile, Span, State
from .calltree import CallTree, build_call_tree, node_table
from .correlate import STATE_COUNT, SpanJoin, Unspanned, merge_intervals


@dataclass
class FunctionShare:
    """A function's self time inside a span (``self_ns``, scaled to the span's time) and its share of the span's samples."""

    function: str
    file: str
    line: int
    self_ns: float
    share: float


def top_self_functions(profile: Profile, group_of_sample: np.ndarray, groups: int, top: int = 5,
                       group_time_ns: np.ndarray | None = None) -> list[list[FunctionShare]]:
    """For each group 0..groups-1, its ``top`` functions by self time (samples with group -1 ignored).

    A function is identified by name and file, as in the call tree; self time is the weight of
    the samples whose innermost frame it is. With ``group_time_ns``, each group's figures are
    scaled so that all its functions add up to that time (a sample's weight can reach outside
    the span it was taken in; the time-weighted span figures cannot). ``share`` is the function's
    fraction of the group's sample weight.
    """
    cols = profile.columns()
    table = node_table(profile).functions
    stacks = cols["stack"]
    keep = (group_of_sample >= 0) & (stacks != NO_STACK)
    out: list[list[FunctionShare]] = [[] for _ in range(groups)]
    if not keep.any():
        return out
    leaf_frame = np.asarray(profile.stack_frame, dtype=np.int64)[stacks[keep]]
    leaf_fn = table.function_of_frame[leaf_frame].astype(np.int64)
    group = group_of_sample[keep].astype(np.int64)
    n_fn = max(len(table.names), 1)
    pair, inverse = np.unique(group * n_fn + leaf_fn, return_inverse=True)
    weight = np.bincount(inverse, weights=cols["weight_ns"][keep]).astype(np.int64)
    pair_group, pair_fn = pair // n_fn, pair % n_fn
    group_weight = np.bincount(pair_group, weights=weight, minlength=groups)
    scale = np.ones(groups) if group_time_ns is None else np.asarray(group_time_ns, dtype=float) / np.maximum(group_weight, 1)
    order = np.lexsort((-weight, pair_group))
    sorted_group = pair_group[order]
    first_of_group = np.searchsorted(sorted_group, sorted_group, side="left")
    keep = order[(np.arange(len(order)) - first_of_group) < top]
    names, files, lines = table.names, table.files, table.lines
    shares = weight[keep] / group_weight[pair_group[keep]]
    scaled = weight[keep] * scale[pair_group[keep]]
    for g, f, self_ns, share in zip(pair_group[keep].tolist(), pair_fn[keep].tolist(), scaled.tolist(), shares.tolist()):
        out[g].append(FunctionShare(names[f], files[f], lines[f], self_ns, share))
    return out


@dataclass
class SpanSummary:
    """One joined span: its window (on the samples' clock), the samples inside it, sample time by
    state inside it (child spans included), the time it owns itself (no child span open), the
    time no sample covered, and its top functions by self time among the samples it owns."""

    span: Span
    start_ns: int
    duration_ns: int
    samples: int
    by_state_ns: np.ndarray
    self_ns: int
    uncovered_ns: int
    top_functions: list[FunctionShare]

    @property
    def approximate(self) -> bool:
        return bool(self.span.approximate or self.span.thread < 0)


def span_summaries(join: SpanJoin, *, top: int = 5) -> list[SpanSummary]:
    """Every joined span, in start order."""
    self_ns = join.self_by_state_ns.sum(axis=0)
    tops = top_self_functions(join.profile, join.owner, len(join.spans), top, self_ns)
    duration, uncovered = join.duration_ns, join.uncovered_ns
    return [
        SpanSummary(join.spans[i], int(join.start_ns[i]), int(duration[i]), int(join.samples[i]), join.by_state_ns[:, i],
                    int(self_ns[i]), int(uncovered[i]), tops[i])
        for i in np.argsort(join.start_ns, kind="stable").tolist()
    ]


@dataclass
class GapSummary:
    """The "(no span)" part of a request's window on its thread (see :func:`~.correlate.unspanned`)."""

    gap: Unspanned
    samples: int
    top_functions: list[FunctionShare]


def gap_summary(join: SpanJoin, gap: Unspanned, *, top: int = 5) -> GapSummary:
    group = np.where(gap.mask, 0, -1)
    tops = top_self_functions(join.profile, group, 1, top, np.array([gap.by_state_ns.sum()]))[0]
    return GapSummary(gap, int(gap.mask.sum()), tops)


def span_depths(spans: list[Span]) -> list[int]:
    """Depth of each span in its trace tree (0 when its parent is not among ``spans``)."""
    index = {(s.trace_id, s.span_id): i for i, s in enumerate(spans)}
    depth = [-1] * len(spans)
    for i in range(len(spans)):
        chain = []
        j = i
        while j is not None and depth[j] < 0 and j not in chain:
            chain.append(j)
            parent = spans[j].parent_id
            j = index.get((spans[j].trace_id, parent)) if parent else None
        base = depth[j] + 1 if j is not None and depth[j] >= 0 else 0
        for k in reversed(chain):
            depth[k] = base
            base += 1
    return depth


@dataclass
class StateLane:
    """One thread's runs of equal state over a window; ``truncated`` when runs were cut."""

    thread: int
    tid: int
    name: str
    start_ns: list[int]
    end_ns: list[int]
    states: list[State]
    truncated: bool


def state_lanes(profile: Profile, threads: list[int], start_ns: int, end_ns: int, *, max_runs: int = 20_000) -> list[StateLane]:
    """Per thread, the runs of equal state over [start_ns, end_ns): the state lane under a waterfall.

    A run is consecutive samples of one state with no gap longer than a sample between them.
    """
    cols = profile.columns()
    lanes = []
    for thread in threads:
        keep = (cols["thread"] == thread) & (cols["time_ns"] < end_ns) & (cols["time_ns"] + cols["weight_ns"] > start_ns)
        order = np.argsort(cols["time_ns"][keep], kind="stable")
        t0 = cols["time_ns"][keep][order]
        t1 = t0 + cols["weight_ns"][keep][order]
        state = cols["state"][keep][order].astype(np.int64)
        if len(t0):
            new = np.ones(len(t0), dtype=bool)
            new[1:] = (state[1:] != state[:-1]) | (t0[1:] > t1[:-1] + (t1[:-1] - t0[:-1]))
            first = np.flatnonzero(new)
            last = np.concatenate((first[1:], [len(t0)])) - 1
            run_start, run_end, run_state = t0[first], t1[last], state[first]
        else:
            run_start = run_end = run_state = np.zeros(0, dtype=np.int64)
        info = profile.threads[thread]
        lanes.append(StateLane(
            thread, info.tid, info.name, np.maximum(run_start[:max_runs], start_ns).tolist(),
            np.minimum(run_end[:max_runs], end_ns).tolist(), [State(s) for s in run_state[:max_runs].tolist()],
            bool(len(run_start) > max_runs),
        ))
    return lanes


def span_flame_mask(join: SpanJoin, *, index: int | None = None, name: str | None = None,
                    include_children: bool = False) -> np.ndarray:
    """Samples of one span (``index``) or of every span called ``name``.

    Self-only (default): the samples those spans own. ``include_children``: every sample inside
    their windows on their threads, so time in child spans counts too.
    """
    if (index is None) == (name is None):
        raise ValueError("give exactly one of index and name")
    chosen = [index] if index is not None else [i for i, s in enumerate(join.spans) if s.name == name]
    if not include_children:
        return np.isin(join.owner, np.asarray(chosen, dtype=np.int64))
    mask = np.zeros(len(join.owner), dtype=bool)
    if not chosen:
        return mask
    cols = join.profile.columns()
    chosen_arr = np.asarray(chosen, dtype=np.int64)
    threads = join.thread[chosen_arr]
    t = join.sample_instant_ns
    approximate = chosen_arr[threads < 0]
    if approximate.size:
        a, b = merge_intervals(join.start_ns[approximate], join.end_ns[approximate])
        k = np.searchsorted(a, t, side="right") - 1
        mask |= (k >= 0) & (t < b[np.maximum(k, 0)])
    for thread in np.unique(threads[threads >= 0]).tolist():
        picked = chosen_arr[threads == thread]
        a, b = merge_intervals(join.start_ns[picked], join.end_ns[picked])
        on = cols["thread"] == thread
        k = np.searchsorted(a, t[on], side="right") - 1
        mask[on] |= (k >= 0) & (t[on] < b[np.maximum(k, 0)])
    return mask


def span_flame_tree(join: SpanJoin, *, index: int | None = None, name: str | None = None,
                    include_children: bool = False) -> CallTree:
    """The call tree of a span's samples (see :func:`span_flame_mask`), via ``build_call_tree``."""
    return build_call_tree(join.profile, mask=span_flame_mask(join, index=index, name=name, include_children=include_children))


__all__ = [
    "STATE_COUNT", "FunctionShare", "GapSummary", "SpanSummary", "StateLane", "gap_summary", "span_depths", "span_flame_mask",
    "span_flame_tree", "span_summaries", "state_lanes", "top_self_functions",
]
