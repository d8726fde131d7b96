"""The bulk passes between samples and nested slices, against plain one-at-a-time references on
random profiles: stacks that share prefixes, overlapping and gapped samples, partial overlaps."""

from __future__ import annotations

import numpy as np
import pytest

from profviz.formats import chrome_trace
from profviz.formats.trace_slices import common_depth, frame_slices, nest, nested_samples, stack_depths, tiled_times
from profviz.model import NO_STACK, State, TableLists


def random_stacks(rng, count: int = 300) -> np.ndarray:
    """Prefixes of ``count`` stack nodes, each one's prefix an earlier node or none."""
    prefixes = [NO_STACK]
    for node in range(1, count):
        prefixes.append(int(rng.integers(-1, node)) if rng.random() < 0.9 else NO_STACK)
    return np.asarray(prefixes, dtype=np.int64)


def path(prefixes: np.ndarray, node: int) -> list[int]:
    nodes = []
    while node != NO_STACK:
        nodes.append(node)
        node = int(prefixes[node])
    return nodes[::-1]


def reference_slices(stacks, start, end, gap, prefixes):
    """Slices as the sequential writer made them: frames stay open while the next sample keeps them."""
    slices, open_nodes, last_end = [], [], None  # open_nodes: (node, start)
    for stack, a, b, cut in zip(stacks.tolist(), start.tolist(), end.tolist(), gap.tolist()):
        nodes = path(prefixes, stack)
        keep = 0
        if not cut:
            while keep < len(open_nodes) and keep < len(nodes) and open_nodes[keep][0] == nodes[keep]:
                keep += 1
        closing = open_nodes[keep:]
        slices += [(node, began, last_end, depth) for depth, (node, began) in enumerate(closing, start=keep)]
        del open_nodes[keep:]
        open_nodes += [(node, a) for node in nodes[keep:]]
        last_end = b
    slices += [(node, began, last_end, depth) for depth, (node, began) in enumerate(open_nodes)]
    return sorted(slices, key=lambda s: (s[1], s[3]))


@pytest.mark.parametrize("seed", range(5))
def test_frame_slices_match_the_sequential_writer(seed):
    rng = np.random.default_rng(seed)
    prefixes = random_stacks(rng)
    depth = stack_depths(prefixes)
    assert [depth[node] for node in range(len(prefixes))] == [len(path(prefixes, node)) for node in range(len(prefixes))]
    count = 2000
    runs = rng.random(count) < 0.3
    stacks = np.where(rng.random(count) < 0.05, NO_STACK, rng.integers(0, len(prefixes), count))
    stacks = stacks[np.maximum.accumulate(np.where(runs, np.arange(count), 0))]
    weights = rng.integers(1, 50, count)
    times = np.cumsum(rng.integers(-20, 60, count)) + 10_000  # some overlap the sample before, some leave a gap
    times.sort()
    start, end, gap = tiled_times(times, weights)
    expected_end = []
    for t, w in zip(times.tolist(), weights.tolist()):
        expected_end.append(max(t, expected_end[-1] if expected_end else t) + w)
    assert end.tolist() == expected_end and gap[1:].tolist() == (times[1:] > end[:-1]).tolist()
    node, a, b, level = frame_slices(stacks, start, end, gap, prefixes, depth)
    assert list(zip(node.tolist(), a.tolist(), b.tolist(), level.tolist())) == reference_slices(stacks, start, end, gap, prefixes)


def test_common_depth_is_the_shared_prefix():
    rng = np.random.default_rng(7)
    prefixes = random_stacks(rng)
    depth = stack_depths(prefixes)
    a, b = rng.integers(-1, len(prefixes), 500), rng.integers(-1, len(prefixes), 500)
    expected = []
    for x, y in zip(a.tolist(), b.tolist()):
        px, py = path(prefixes, x), path(prefixes, y)
        shared = 0
        while shared < min(len(px), len(py)) and px[shared] == py[shared]:
            shared += 1
        expected.append(shared)
    assert common_depth(a, b, prefixes, depth).tolist() == expected


def test_nest_refuses_partial_overlaps_and_finds_parents():
    start, end = np.array([0, 2, 3, 7]), np.array([10, 6, 4, 9])  # [0,10) holds [2,6) holding [3,4), and [7,9)
    parent, depth = nest(start, end)
    assert parent.tolist() == [-1, 0, 1, 0] and depth.tolist() == [0, 1, 2, 1]
    assert nest(np.array([0, 5]), np.array([10, 15])) is None  # [5,15) outlives [0,10)
    assert nest(np.array([0, 2, 3]), np.array([10, 4, 6])) is None  # [3,6) outlives [2,4)


@pytest.mark.parametrize("seed", range(4))
def test_nested_slices_give_the_samples_of_the_sequential_sweep(seed):
    """Random properly nested slices and a state track: the bulk path and the sweep it replaces agree."""
    rng = np.random.default_rng(seed)
    slices = []

    def grow(a: int, b: int, depth: int) -> None:
        at = a
        while at < b and depth < 12:
            s = int(rng.integers(at, b))
            e = int(rng.integers(s + 1, b + 1))
            slices.append((s, e, f"f{rng.integers(0, 6)}", "file.py", int(rng.integers(0, 3))))
            if rng.random() < 0.7:
                grow(s, e, depth + 1)
            at = e + int(rng.integers(0, 5))

    grow(0, 5000, 0)
    cuts = np.unique(rng.integers(0, 5200, 40))
    labels = ["on-cpu", "waiting: lock", "waiting: socket recv", "runnable"]
    states = [(int(a), int(b), labels[int(rng.integers(0, 4))]) for a, b in zip(cuts, cuts[1:]) if rng.random() < 0.8]
    slices.sort(key=lambda s: (s[0], -s[1]))

    sweep_tables, sweep_reasons = TableLists(), {}
    times, _, stacks, weights, state_col, reason_col = chrome_trace._samples(list(slices), states, 0, sweep_tables, sweep_reasons)

    tables, reasons = TableLists(), {}
    start, end = np.array([s[0] for s in slices]), np.array([s[1] for s in slices])
    parent, depth = nest(start, end)
    frames = np.array([tables.frame(name, file, line) for _, _, name, file, line in slices])
    node = chrome_trace._intern_nodes(parent, depth, frames, tables)
    s_start, s_end = np.array([s[0] for s in states]), np.array([s[1] for s in states])
    at, stack, weight, state_at = nested_samples(start, end, parent, node, s_start, s_end)
    codes = np.array([chrome_trace._state_code(label, reasons) for _, _, label in states] + [(int(State.UNKNOWN), -1)])[state_at]

    sweep = list(zip(times.tolist(), stacks.tolist(), weights.tolist(), state_col.tolist(), reason_col.tolist()))
    bulk = list(zip(at.tolist(), stack.tolist(), weight.tolist(), codes[:, 0].tolist(), codes[:, 1].tolist()))
    assert sum(w for _, _, w, _, _ in bulk) == sum(w for _, _, w, _, _ in sweep)
    assert timeline(sweep_tables, sweep_reasons, sweep) == timeline(tables, reasons, bulk)


def timeline(tables: TableLists, reasons: dict, rows: list) -> list:
    """Per ns stretch: (start, end, frames root first as (function, file, line), state, reason text), adjacent equal ones merged."""
    names = {index: key for key, index in reasons.items()}
    merged: list = []
    for t, stack, w, state, reason in sorted(rows):
        frames = []
        while stack != NO_STACK:
            frame = tables.stack_frames[stack]
            frames.append((tables.strings[tables.functions[frame]], tables.strings[tables.files[frame]], tables.lines[frame]))
            stack = tables.prefixes[stack]
        item = (tuple(frames[::-1]), state, names.get(reason))
        if merged and merged[-1][1] == t and merged[-1][2:] == item:
            merged[-1] = (merged[-1][0], t + w, *item)
        else:
            merged.append((t, t + w, *item))
    return merged
