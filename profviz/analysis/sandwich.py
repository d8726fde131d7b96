"""The sandwich view of one function: who calls it (inverted tree) and what it calls.

Built on :func:`~profviz.analysis.calltree.build_call_tree`: the function's *outermost*
occurrences (nodes of that function with no ancestor of the same function) carry its time
exactly once per sample, so recursion is counted once. Both trees are merged by function and
thresholded like the flame graph (:func:`~profviz.analysis.pruning.prune_tree`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import Profile
from .calltree import ROOT, FunctionTable, SampleFilter, build_call_tree, function_stats, node_table
from .flamegraph import AmbiguousFunction, FunctionNotFound
from .pruning import DEFAULT_MAX_NODES, DEFAULT_MIN_FRACTION, TreeView, levels_of, node_levels, prune_tree, tree_view


@dataclass
class Sandwich:
    """One function's callers (inverted: the function at the root, its callers below) and callees.

    ``function`` is its id in ``functions``; ``total_ns`` counts its outermost occurrences only,
    so recursion counts once; both trees' roots carry that total.
    """

    function: int
    functions: FunctionTable
    total_ns: int
    self_ns: int
    root_total_ns: int
    min_fraction: float
    callers: TreeView
    callees: TreeView


def find_function(profile: Profile, name: str, file: str | None = None) -> int:
    """The function id of ``name`` (in ``file`` if given). Raises FunctionNotFound / AmbiguousFunction."""
    table = node_table(profile).functions
    matches = [f for f, (n, fl) in enumerate(zip(table.names, table.files)) if n == name and (file is None or fl == file)]
    if not matches:
        where = f" in file {file!r}" if file is not None else ""
        raise FunctionNotFound(f"no function named {name!r}{where} in this profile")
    if len(matches) > 1:
        files = ", ".join(repr(table.files[f]) for f in matches[:10])
        raise AmbiguousFunction(f"several files define {name!r} ({files}): pass file= to choose one")
    return matches[0]


def sandwich(
    profile: Profile,
    selection: SampleFilter | None = None,
    *,
    function: str,
    file: str | None = None,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> Sandwich:
    """Callers (inverted) and callees trees of a function over the selected samples."""
    target = find_function(profile, function, file)
    tree = build_call_tree(profile, selection)
    nodes = tree.nodes
    levels = node_levels(nodes)
    fn = nodes.function
    is_target = fn == target
    under_target = np.zeros(nodes.size, dtype=bool)
    for level in levels[1:]:
        parents = nodes.parent[level]
        under_target[level] = under_target[parents] | is_target[parents]
    total = tree.total_ns
    outermost = np.flatnonzero(is_target & ~under_target & (total > 0))

    callees = _callees(tree, levels, outermost, target, min_fraction, max_nodes)
    callers = _callers(tree, outermost, target, min_fraction, max_nodes)
    stats = next((s for s in function_stats(tree) if s.function == function and s.file == nodes.functions.files[target]), None)
    return Sandwich(
        target, nodes.functions, int(total[outermost].sum()), stats.self_ns if stats else 0, tree.root_total_ns,
        min_fraction, callers, callees,
    )


def _merged_tree(parent, fn, total_by_state, self_by_state, samples, functions, min_fraction, max_nodes) -> TreeView:
    parent = np.asarray(parent, dtype=np.int64)
    _, levels = levels_of(parent)
    total = total_by_state.sum(axis=0)
    pruned = prune_tree(parent, levels, total, root=0, min_fraction=min_fraction, max_nodes=max_nodes)
    return tree_view(pruned, np.asarray(fn), total_by_state, self_by_state, samples, functions, root_parent_is_null=True)


class _MergedNodes:
    """A tree merged by function path: node 0 is the sandwiched function; :meth:`child` interns
    the child of a merged node for a function."""

    def __init__(self, target: int):
        self.parent_of = [-1]
        self.fn_of = [target]
        self._index: dict[tuple[int, int], int] = {}

    def child(self, parent: int, function: int) -> int:
        key = (parent, function)
        merged = self._index.get(key)
        if merged is None:
            merged = self._index[key] = len(self.parent_of)
            self.parent_of.append(parent)
            self.fn_of.append(function)
        return merged


def _callees(tree, levels, outermost, target, min_fraction, max_nodes) -> TreeView:
    """The function's subtrees merged by function path below the outermost occurrences."""
    nodes = tree.nodes
    mapped = np.full(nodes.size, -1, dtype=np.int64)
    mapped[outermost] = 0
    merged = _MergedNodes(target)
    live = tree.total_ns > 0
    for level in levels[1:]:
        candidates = level[(mapped[nodes.parent[level]] >= 0) & (mapped[level] < 0) & live[level]]
        for node, par in zip(candidates.tolist(), mapped[nodes.parent[candidates]].tolist()):
            mapped[node] = merged.child(par, int(nodes.function[node]))
    inside = np.flatnonzero(mapped >= 0)
    count = len(merged.parent_of)
    target_map = mapped[inside]

    def gather(values: np.ndarray) -> np.ndarray:
        return np.bincount(target_map, weights=values[inside], minlength=count).astype(np.int64)

    total_by_state = np.stack([gather(tree.total_by_state[s]) for s in range(tree.total_by_state.shape[0])])
    self_by_state = np.stack([gather(tree.self_by_state[s]) for s in range(tree.self_by_state.shape[0])])
    samples = gather(tree.total_samples)
    return _merged_tree(merged.parent_of, merged.fn_of, total_by_state, self_by_state, samples, nodes.functions, min_fraction, max_nodes)


def _callers(tree, outermost, target, min_fraction, max_nodes) -> TreeView:
    """The inverted tree: root = the function, children = callers, and so on outwards."""
    nodes = tree.nodes
    merged_nodes = _MergedNodes(target)
    path_nodes: list[int] = []
    path_sources: list[int] = []
    for occurrence in outermost.tolist():
        merged = 0
        path_nodes.append(0)
        path_sources.append(occurrence)
        caller = int(nodes.parent[occurrence])
        while caller != ROOT:
            merged = merged_nodes.child(merged, int(nodes.function[caller]))
            path_nodes.append(merged)
            path_sources.append(occurrence)
            caller = int(nodes.parent[caller])
    parent_of = merged_nodes.parent_of
    count = len(parent_of)
    merged_ids = np.asarray(path_nodes, dtype=np.int64)
    sources = np.asarray(path_sources, dtype=np.int64)

    def gather(values: np.ndarray) -> np.ndarray:
        if not len(sources):
            return np.zeros(count, dtype=np.int64)
        return np.bincount(merged_ids, weights=values[sources], minlength=count).astype(np.int64)

    total_by_state = np.stack([gather(tree.total_by_state[s]) for s in range(tree.total_by_state.shape[0])])
    samples = gather(tree.total_samples)
    parent_arr = np.asarray(parent_of, dtype=np.int64)
    children_sum = np.zeros_like(total_by_state)
    if count > 1:
        for s in range(total_by_state.shape[0]):
            children_sum[s] = np.bincount(parent_arr[1:], weights=total_by_state[s, 1:], minlength=count).astype(np.int64)
    self_by_state = total_by_state - children_sum
    return _merged_tree(parent_of, merged_nodes.fn_of, total_by_state, self_by_state, samples, nodes.functions, min_fraction, max_nodes)
