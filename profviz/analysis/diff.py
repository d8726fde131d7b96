"""Differential flame graph: two selections (two profiles, or two windows/thread sets of one).

Each side is aggregated with :func:`~profviz.analysis.calltree.build_call_tree`; the two trees
are merged by function path (function name + file at every level), so profiles with different
tables line up. Differences are *normalised*: each side's time is divided by that side's own
total, so a 10 s and a 60 s profile compare fairly. :func:`group_diff` merges any number of trees
per side with a divisor per side (the tail diff of a route: ms per request).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..model import Profile, State
from .calltree import CallTree, FunctionTable, SampleFilter, build_call_tree, function_stats
from .common import fraction
from .pruning import DEFAULT_MAX_NODES, DEFAULT_MIN_FRACTION, FRAME_ENTRY, OTHER_ENTRY, ROOT_ENTRY, levels_of, node_levels, prune_tree

SIDES = ("a", "b")


@dataclass
class DiffTree:
    """The merged tree of two sides, thresholded; per entry (preorder) as in :class:`~.pruning.TreeView`
    (``functions`` index ``function_table``), and per side (index 0 for a, 1 for b) the entry's
    ``total``, ``self``, ``cpu``, ``wait`` and ``gil`` ns (per divisor unit when ``per_unit``).
    ``root_totals`` are the sides' whole times; ``threshold`` is in shares of the larger side."""

    ids: list[int]
    parents: list[int | None]
    depths: list[int]
    kinds: list[str]
    functions: list[int]
    folded: list[int]
    total: tuple[list[int], list[int]]
    self: tuple[list[int], list[int]]
    cpu: tuple[list[int], list[int]]
    wait: tuple[list[int], list[int]]
    gil: tuple[list[int], list[int]]
    root_totals: tuple[int, int]
    base: str
    min_fraction: float
    threshold: float
    root_weight: float
    per_unit: bool
    function_table: FunctionTable


@dataclass
class FunctionChange:
    """One function on both sides: totals and self times, and the change of their shares of each side."""

    name: str
    file: str
    line: int
    a_total_ns: int = 0
    b_total_ns: int = 0
    a_self_ns: int = 0
    b_self_ns: int = 0
    delta_total_fraction: float = 0.0
    delta_self_fraction: float = 0.0


@dataclass
class Diff:
    tree: DiffTree
    changes: list[FunctionChange]


def diff(
    profile_a: Profile,
    selection_a: SampleFilter | None,
    profile_b: Profile,
    selection_b: SampleFilter | None,
    *,
    base: str = "a",
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_nodes: int = DEFAULT_MAX_NODES,
    limit: int = 50,
) -> Diff:
    """The merged, thresholded tree of both sides and the per-function changes.

    A node is kept when its share of either side's total reaches ``min_fraction``. Children are
    ordered by the ``base`` side's total, then the other side's.
    """
    trees = (build_call_tree(profile_a, selection_a), build_call_tree(profile_b, selection_b))
    tree = group_diff([trees[0]], [trees[1]], base=base, min_fraction=min_fraction, max_nodes=max_nodes)
    return Diff(tree, function_changes(trees[0], trees[1], limit=limit))


def group_diff(
    trees_a: Sequence[CallTree],
    trees_b: Sequence[CallTree],
    *,
    divisors: tuple[float, float] = (1.0, 1.0),
    base: str = "a",
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> DiffTree:
    """The merged diff tree of two groups of call trees (each side the sum of its trees).

    Each side's times are summed over its trees and divided by its divisor (1 for ``diff``; the
    number of requests for a per-request comparison, then ``per_unit``), then rounded to ns.
    """
    if base not in SIDES:
        raise ValueError(f"base must be 'a' or 'b', got {base!r}")
    if not trees_a or not trees_b:
        raise ValueError(f"a diff needs call trees on both sides; have {len(trees_a)} and {len(trees_b)}")
    if min(divisors) <= 0:
        raise ValueError(f"divisors must be positive, got {divisors}")
    groups = (list(trees_a), list(trees_b))
    merged_parent, merged_gid, node_maps, table = _merge(groups[0] + groups[1])
    map_groups = (node_maps[: len(groups[0])], node_maps[len(groups[0]):])
    size = len(merged_parent)
    scaled = tuple(divisors) != (1, 1)

    def side_values(side: int, values_of) -> np.ndarray:
        summed = np.zeros(size, dtype=np.float64)
        for mapped, tree in zip(map_groups[side], groups[side]):
            values = values_of(tree)
            inside = mapped >= 0
            summed += np.bincount(mapped[inside], weights=values[inside], minlength=size)
        if scaled:
            return np.rint(summed / divisors[side]).astype(np.int64)
        return summed.astype(np.int64)

    n_states = groups[0][0].total_by_state.shape[0]
    totals = [np.stack([side_values(i, lambda t, s=s: t.total_by_state[s]) for s in range(n_states)]) for i in range(2)]
    selfs = [side_values(i, lambda t: t.self_ns) for i in range(2)]
    roots = [
        int(round(sum(int(t.root_total_ns) for t in groups[i]) / divisors[i])) if scaled else sum(int(t.root_total_ns) for t in groups[i])
        for i in range(2)
    ]
    fractions = [totals[i].sum(axis=0) / roots[i] if roots[i] else np.zeros(size) for i in range(2)]
    weight = np.maximum(fractions[0], fractions[1])
    weight[0] = 1.0 if any(roots) else 0.0
    base_index = SIDES.index(base)
    parent = np.asarray(merged_parent, dtype=np.int64)
    _, levels = levels_of(parent)
    pruned = prune_tree(
        parent, levels, weight, min_fraction=min_fraction, max_nodes=max_nodes,
        sort_keys=(totals[base_index].sum(axis=0), totals[1 - base_index].sum(axis=0)),
    )
    folded = pruned.folded_counts().tolist()
    ids = pruned.ids.tolist()
    sides = [{"total": pruned.values(totals[i].sum(axis=0)).tolist(), "self": pruned.values(selfs[i]).tolist(),
              "cpu": pruned.values(totals[i][State.ON_CPU]).tolist(), "wait": pruned.values(totals[i][State.WAITING]).tolist(),
              "gil": pruned.values(totals[i][State.GIL]).tolist()}
             for i in range(2)]
    for side in sides:
        side["self"] = [0 if node < 0 else value for node, value in zip(ids, side["self"])]
    return DiffTree(
        ids, [None] + pruned.parents[1:].tolist(), pruned.depths.tolist(),
        [ROOT_ENTRY if j == 0 else (OTHER_ENTRY if node < 0 else FRAME_ENTRY) for j, node in enumerate(ids)],
        [int(merged_gid[node]) if node >= 0 else -1 for node in ids], folded,
        *(tuple(side[key] for side in sides) for key in ("total", "self", "cpu", "wait", "gil")),
        (roots[0], roots[1]), base, min_fraction, float(pruned.threshold), float(weight[0]), scaled, table,
    )


def _merge(trees: Sequence[CallTree]) -> tuple[list[int], np.ndarray, list[np.ndarray], FunctionTable]:
    """Merge the trees' non-empty nodes by function path; return parents, function ids, node maps (one per tree), functions."""
    keys: dict[tuple[str, str], int] = {}
    names: list[str] = []
    files: list[str] = []
    lines: list[int] = []
    gid_of = []
    for tree in trees:
        table = tree.nodes.functions
        gids = np.empty(len(table.names), dtype=np.int64)
        for f, key in enumerate(zip(table.names, table.files)):
            gid = keys.get(key)
            if gid is None:
                gid = keys[key] = len(names)
                names.append(key[0])
                files.append(key[1])
                lines.append(int(table.lines[f]))
            elif 0 < table.lines[f] < lines[gid]:
                lines[gid] = int(table.lines[f])
            gids[f] = gid
        gid_of.append(gids)
    n_functions = max(len(names), 1)
    node_maps = [np.full(t.nodes.size, -1, dtype=np.int64) for t in trees]
    for node_map in node_maps:
        node_map[0] = 0
    merged_parent = [-1]
    merged_gid = [-1]
    all_levels = [node_levels(t.nodes) for t in trees]
    for depth in range(1, max(len(lv) for lv in all_levels)):
        level_keys = []
        level_nodes = []
        for i, tree in enumerate(trees):
            if depth >= len(all_levels[i]):
                level_keys.append(np.zeros(0, dtype=np.int64))
                level_nodes.append(np.zeros(0, dtype=np.int64))
                continue
            level = all_levels[i][depth]
            level = level[tree.total_ns[level] > 0]
            parents = node_maps[i][tree.nodes.parent[level]]
            level_keys.append(parents * n_functions + gid_of[i][tree.nodes.function[level]])
            level_nodes.append(level)
        combined = np.concatenate(level_keys)
        if not len(combined):
            continue
        unique, inverse = np.unique(combined, return_inverse=True)
        first_id = len(merged_parent)
        merged_parent.extend((unique // n_functions).tolist())
        merged_gid.extend((unique % n_functions).tolist())
        offset = 0
        for node_map, nodes in zip(node_maps, level_nodes):
            node_map[nodes] = first_id + inverse[offset:offset + len(nodes)]
            offset += len(nodes)
    table = FunctionTable(np.zeros(0, dtype=np.int32), names, files, lines)
    return merged_parent, np.asarray(merged_gid, dtype=np.int64), node_maps, table


def function_changes(tree_a: CallTree, tree_b: CallTree, *, limit: int = 50) -> list[FunctionChange]:
    """Per function: normalised total and self on both sides; the biggest increases and decreases
    (``limit`` of each, by total and by self), largest increase first."""
    root_a, root_b = tree_a.root_total_ns, tree_b.root_total_ns
    rows: dict[tuple[str, str], FunctionChange] = {}
    for side, tree in (("a", tree_a), ("b", tree_b)):
        for s in function_stats(tree):
            row = rows.setdefault((s.function, s.file), FunctionChange(s.function, s.file, int(s.line)))
            setattr(row, f"{side}_total_ns", s.total_ns)
            setattr(row, f"{side}_self_ns", s.self_ns)
    for row in rows.values():
        row.delta_total_fraction = round(fraction(row.b_total_ns, root_b) - fraction(row.a_total_ns, root_a), 9)
        row.delta_self_fraction = round(fraction(row.b_self_ns, root_b) - fraction(row.a_self_ns, root_a), 9)
    chosen: dict[tuple[str, str], FunctionChange] = {}
    every = list(rows.items())
    for field in ("delta_total_fraction", "delta_self_fraction"):
        ordered = sorted(every, key=lambda kv: (getattr(kv[1], field), kv[0]))
        for key, row in ordered[:limit] + ordered[::-1][:limit]:
            if getattr(row, field) != 0:
                chosen[key] = row
    return [row for _, row in sorted(chosen.items(), key=lambda kv: (-kv[1].delta_total_fraction, kv[0]))]
