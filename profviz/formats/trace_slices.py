"""Samples to nested slices and back, in bulk (numpy passes, a few per stack depth), for
:mod:`.chrome_trace`: one thread's samples become a slice per frame for as long as it stays on
the stack, and properly nested slices become the samples of the stretches under them."""

from __future__ import annotations

import numpy as np

from ..model import NO_STACK

MAX_DEPTH = 2_000  # slices nested deeper are left to the caller's sweep (CPython's recursion limit is 1,000 frames)


def stack_depths(prefixes: np.ndarray) -> np.ndarray:
    """Each stack node's depth (a root frame's node is 1), plus a last entry 0 for NO_STACK (index -1)."""
    depth = np.zeros(len(prefixes) + 1, dtype=np.int64)
    level = np.flatnonzero(prefixes == NO_STACK)
    current = 1
    children = _children(prefixes)
    while level.size:
        depth[level] = current
        level = children(level)
        current += 1
    return depth


def _children(prefixes: np.ndarray):
    """A function from a set of nodes to all their children (prefixes precede their nodes)."""
    order = np.argsort(prefixes, kind="stable")
    sorted_prefix = prefixes[order]

    def children(nodes: np.ndarray) -> np.ndarray:
        lo = np.searchsorted(sorted_prefix, nodes, "left")
        hi = np.searchsorted(sorted_prefix, nodes, "right")
        counts = hi - lo
        if not counts.sum():
            return np.zeros(0, dtype=np.int64)
        starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
        return order[starts + np.arange(counts.sum())]
    return children


def common_depth(a: np.ndarray, b: np.ndarray, prefixes: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Per pair, the depth of the deepest node the stacks ``a`` and ``b`` share (0: none)."""
    parent = np.append(prefixes.astype(np.int64), NO_STACK)  # index -1 (NO_STACK) is its own parent
    a, b = a.astype(np.int64), b.astype(np.int64)
    da, db = depth[a], depth[b]
    active = np.flatnonzero(a != b)
    while active.size:
        up_a = active[da[active] >= db[active]]
        up_b = active[db[active] >= da[active]]
        a[up_a] = parent[a[up_a]]
        da[up_a] -= 1
        b[up_b] = parent[b[up_b]]
        db[up_b] -= 1
        active = active[a[active] != b[active]]
    return da


def tiled_times(times: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, gap before) per sample of one thread in time order, a sample that overlaps the
    one before moved to start where it ends: start_i = max(time_i, end_{i-1})."""
    total = np.cumsum(weights)
    end = total + np.maximum.accumulate(times - (total - weights))
    start = end - weights
    gap = np.zeros(len(times), dtype=bool)
    gap[1:] = times[1:] > end[:-1]
    return start, end, gap


def frame_slices(stacks: np.ndarray, start: np.ndarray, end: np.ndarray, gap: np.ndarray, prefixes: np.ndarray,
                 depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The slices of one thread's samples (tiled, in time order): a slice per stack node for as long
    as consecutive samples keep it on their stacks. Returns (node, start, end, depth) per slice,
    ordered by start, then depth (a parent before a child that starts with it)."""
    count = len(stacks)
    if not count:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    first = np.flatnonzero(np.concatenate(([True], gap[1:] | (stacks[1:] != stacks[:-1]))))
    run_stack = stacks[first].astype(np.int64)
    run_start = start[first]
    run_end = end[np.append(first[1:], count) - 1]
    keep = np.zeros(len(first), dtype=np.int64)
    joined = np.flatnonzero(~gap[first[1:]]) + 1
    keep[joined] = common_depth(run_stack[joined - 1], run_stack[joined], prefixes, depth)
    opened = depth[run_stack] - keep  # frames each run opens
    total = int(opened.sum())
    run_of = np.repeat(np.arange(len(first)), opened)
    level = np.repeat(keep, opened) + (np.arange(total) - np.repeat(np.cumsum(opened) - opened, opened))  # 0-based depth
    node = run_stack[run_of]
    steps = depth[node] - 1 - level
    active = np.flatnonzero(steps > 0)
    parent = prefixes.astype(np.int64)
    while active.size:
        node[active] = parent[node[active]]
        steps[active] -= 1
        active = active[steps[active] > 0]
    closes = np.empty(total, dtype=np.int64)
    by_level = np.argsort(level, kind="stable")
    for at in np.split(by_level, np.flatnonzero(np.diff(level[by_level])) + 1):
        closers = np.flatnonzero(keep <= level[at[0]])  # runs that close every frame at this depth still open
        nxt = np.searchsorted(closers, run_of[at], "right")
        closes[at] = np.append(closers, len(first))[nxt]
    slice_end = run_end[closes - 1]
    slice_start = run_start[run_of]
    order = np.lexsort((level, slice_start))
    return node[order], slice_start[order], slice_end[order], level[order]


def value_runs(values: tuple[np.ndarray, ...], gap: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first sample, start, end) of each run of consecutive samples with the same values and no gap."""
    count = len(gap)
    change = gap[1:].copy()
    for column in values:
        change |= column[1:] != column[:-1]
    first = np.flatnonzero(np.concatenate(([True], change))) if count else np.zeros(0, dtype=np.int64)
    return first, start[first], end[np.append(first[1:], count) - 1] if count else np.zeros(0, dtype=np.int64)


def nest(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Slices sorted by start, then longest first, each with end > start: (parent index or -1,
    depth from 0) of each, or None when they are not properly nested (a slice that outlives the
    one open around it) or nest deeper than MAX_DEPTH (the passes here go level by level)."""
    count = len(start)
    depth = np.arange(count) - np.searchsorted(np.sort(end), start, "right")
    parent = np.full(count, -1, dtype=np.int64)
    if not count:
        return parent, depth
    if depth.max() >= MAX_DEPTH:
        return None
    order = np.argsort(depth, kind="stable")
    levels = np.split(order, np.flatnonzero(np.diff(depth[order])) + 1)
    if depth[order[0]] != 0 or len(levels) != depth.max() + 1:
        return None
    for above, level in zip(levels, levels[1:]):
        at = np.searchsorted(above, level) - 1
        if (at < 0).any():
            return None
        parent[level] = above[at]
    inner = np.flatnonzero(parent >= 0)
    if ((end[parent[inner]] < end[inner]) | (end[parent[inner]] <= start[inner])).any():
        return None
    return parent, depth


def nested_samples(start: np.ndarray, end: np.ndarray, parent: np.ndarray, node: np.ndarray, state_start: np.ndarray,
                   state_end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Samples of one thread's nested slices (as :func:`nest` gave) and its state slices (sorted, not
    overlapping): a sample per stretch between consecutive slice or state boundaries under a slice
    or a state, its stack the innermost open slice's ``node`` (or NO_STACK). Returns (time, stack,
    weight, state slice index or -1)."""
    bounds = np.unique(np.concatenate([start, end, state_start, state_end]))
    at, weight = bounds[:-1], np.diff(bounds)
    inner = np.searchsorted(start, at, "right") - 1
    active = np.flatnonzero(inner >= 0)
    while active.size:
        active = active[end[inner[active]] <= at[active]]
        inner[active] = parent[inner[active]]
        active = active[inner[active] >= 0]
    stack = np.where(inner >= 0, node[np.maximum(inner, 0)] if len(node) else NO_STACK, NO_STACK)
    state = np.searchsorted(state_start, at, "right") - 1
    if len(state_end):
        state[(state >= 0) & (state_end[np.maximum(state, 0)] <= at)] = -1
    else:
        state[:] = -1
    keep = (inner >= 0) | (state >= 0)
    return at[keep], stack[keep], weight[keep], state[keep]
