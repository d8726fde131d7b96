"""Thresholded trees as views send them: which nodes to keep (:func:`prune_tree`, with per-parent
"other" folding) and their values per entry (:class:`TreeView`), shared by the flame graph, the
sandwich, the diff and the span views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, State
from .calltree import ROOT, CallTree, FunctionTable, NodeTable

DEFAULT_MIN_FRACTION = 0.001
DEFAULT_MAX_NODES = 20_000
TOP_WAITS = 3
ROOT_ENTRY, FRAME_ENTRY, OTHER_ENTRY = "root", "frame", "other"


def node_levels(nodes: NodeTable) -> list[np.ndarray]:
    """Node ids grouped by depth (index = depth), cached on the node table."""
    cached = getattr(nodes, "_levels_cache", None)
    if cached is None:
        order = np.argsort(nodes.depth, kind="stable")
        bounds = np.searchsorted(nodes.depth[order], np.arange(int(nodes.depth.max(initial=0)) + 2))
        cached = [order[bounds[d]:bounds[d + 1]] for d in range(len(bounds) - 1)]
        nodes._levels_cache = cached
    return cached


def levels_of(parent: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Depths and per-depth node groups of any parent array where parents precede children."""
    depth = np.zeros(len(parent), dtype=np.int32)
    for node in range(1, len(parent)):
        depth[node] = depth[parent[node]] + 1
    order = np.argsort(depth, kind="stable")
    bounds = np.searchsorted(depth[order], np.arange(int(depth.max(initial=0)) + 2))
    return depth, [order[bounds[d]:bounds[d + 1]] for d in range(len(bounds) - 1)]


def inherit_down(levels: list[np.ndarray], parent: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Boolean per node: ``seed`` at the node or at any ancestor."""
    out = seed.copy()
    for level in levels[1:]:
        out[level] |= out[parent[level]]
    return out


def sample_nodes(profile: Profile, nodes: NodeTable) -> np.ndarray:
    """The merged node of every sample (the root for samples without a stack)."""
    stacks = profile.columns()["stack"]
    out = np.zeros(len(stacks), dtype=np.int32)
    has = stacks != NO_STACK
    out[has] = nodes.node_of_stack[stacks[has]]
    return out


@dataclass
class PrunedTree:
    """The nodes a view sends, in preorder.

    ``ids``: node ids; an "other" entry has id ``-1 - parent``. ``parents``: parent id per entry
    (the first entry, the view root, has its real parent). ``depths``: depth below the view
    root. ``subtree_end[i]``: index after the last entry of entry ``i``'s subtree.
    ``folded_parent``/``folded_nodes``: for every folded subtree top, its (kept) parent.
    ``threshold``: the effective threshold in ``weight`` units.
    """

    ids: np.ndarray
    parents: np.ndarray
    depths: np.ndarray
    subtree_end: np.ndarray
    folded_nodes: np.ndarray
    folded_parent: np.ndarray
    threshold: float
    size: int

    @property
    def is_other(self) -> np.ndarray:
        return self.ids < 0

    def values(self, column: np.ndarray) -> np.ndarray:
        """Per entry: ``column[id]`` for nodes, the sum over the folded children for "other" entries."""
        column = np.asarray(column)
        out = np.zeros(len(self.ids), dtype=np.float64 if column.dtype.kind == "f" else np.int64)
        real = self.ids >= 0
        out[real] = column[self.ids[real]]
        if (~real).any():
            sums = np.bincount(self.folded_parent, weights=column[self.folded_nodes], minlength=self.size)
            out[~real] = sums[self.parents[~real]]
        return out

    def folded_counts(self) -> np.ndarray:
        out = np.zeros(len(self.ids), dtype=np.int64)
        other = self.ids < 0
        if other.any():
            counts = np.bincount(self.folded_parent, minlength=self.size)
            out[other] = counts[self.parents[other]]
        return out


def prune_tree(
    parent: np.ndarray,
    levels: list[np.ndarray],
    weight: np.ndarray,
    *,
    root: int = ROOT,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_nodes: int = DEFAULT_MAX_NODES,
    sort_keys: tuple[np.ndarray, ...] | None = None,
) -> PrunedTree:
    """Choose the nodes of ``root``'s subtree to send, folding the rest per parent into "other".

    A node is kept when its ``weight`` is > 0 and >= ``min_fraction`` x the root's weight; if
    more than ``max_nodes`` pass, the threshold rises to the ``max_nodes``-th largest weight.
    ``weight`` must not grow from parent to child (a total does not), so kept nodes form a
    connected tree. Children are ordered by ``sort_keys`` (default: ``weight``) descending,
    then by id; an "other" entry comes after its siblings.
    """
    size = len(parent)
    if root == ROOT:
        under = np.ones(size, dtype=bool)
    else:
        seed = np.zeros(size, dtype=bool)
        seed[root] = True
        under = inherit_down(levels, parent, seed)
    present = under & (weight > 0)
    present[root] = True
    threshold = float(min_fraction) * float(weight[root])
    kept = present & (weight >= threshold)
    kept[root] = True
    if int(kept.sum()) > max_nodes:
        candidates = weight[kept]
        candidates = np.sort(candidates)[::-1]
        threshold = max(threshold, float(candidates[max(max_nodes - 1, 0)]))
        kept = present & (weight >= threshold)
        if int(kept.sum()) > max_nodes:
            kept = present & (weight > threshold)
        kept[root] = True
    safe_parent = np.where(parent >= 0, parent, 0)
    folded = present & ~kept & kept[safe_parent]
    folded[root] = False
    folded_nodes = np.flatnonzero(folded)
    folded_parent = parent[folded_nodes].astype(np.int64)
    other_parents = set(np.unique(folded_parent).tolist())

    children_ids = np.flatnonzero(kept)
    children_ids = children_ids[children_ids != root]
    keys = sort_keys if sort_keys is not None else (weight,)
    order = np.lexsort((children_ids,) + tuple(-np.asarray(k)[children_ids] for k in reversed(keys)) + (parent[children_ids],))
    children: dict[int, list[int]] = {}
    for node, par in zip(children_ids[order].tolist(), parent[children_ids[order]].tolist()):
        children.setdefault(par, []).append(node)

    ids: list[int] = []
    parents: list[int] = []
    depths: list[int] = []
    stack = [(root, int(parent[root]), 0)]
    while stack:
        node, par, depth = stack.pop()
        ids.append(node)
        parents.append(par)
        depths.append(depth)
        if node < 0:
            continue
        if node in other_parents:
            stack.append((-1 - node, node, depth + 1))
        for child in reversed(children.get(node, ())):
            stack.append((child, node, depth + 1))
    depth_arr = np.asarray(depths, dtype=np.int64)
    return PrunedTree(
        np.asarray(ids, dtype=np.int64), np.asarray(parents, dtype=np.int64), depth_arr,
        _subtree_ends(depth_arr), folded_nodes, folded_parent, threshold, size,
    )


def _subtree_ends(depths: np.ndarray) -> np.ndarray:
    """For a preorder depth sequence: per entry, the index after its subtree."""
    ends = np.full(len(depths), len(depths), dtype=np.int64)
    open_entries: list[int] = []
    for index, depth in enumerate(depths.tolist()):
        while open_entries and depths[open_entries[-1]] >= depth:
            ends[open_entries.pop()] = index
        open_entries.append(index)
    return ends


@dataclass
class TreeView:
    """The entries of a pruned tree (preorder) with their values, for one view.

    Per entry: ``ids`` (node id; an "other" entry has ``-1 - parent``), ``parents`` (the first
    entry's is None when it is the view's root), ``depths``, ``kinds`` (root, frame, other),
    ``functions`` (id in ``function_table``, -1 for the root and "other"), ``total_by_state``
    (states x entries, ns), ``self_ns``, ``samples``, ``folded`` (nodes an "other" entry stands
    for) and ``waits`` (the largest ``(reason, ns)`` of waiting time at or below it).
    ``threshold`` is the pruning threshold in the tree's weight units.
    """

    ids: list[int]
    parents: list[int | None]
    depths: list[int]
    kinds: list[str]
    functions: list[int]
    total_by_state: np.ndarray
    self_ns: np.ndarray
    samples: np.ndarray
    folded: np.ndarray
    waits: list[list[tuple[str, int]]]
    function_table: FunctionTable
    threshold: float


def tree_view(
    pruned: PrunedTree,
    fn_of_node: np.ndarray,
    total_by_state: np.ndarray,
    self_by_state: np.ndarray,
    samples: np.ndarray,
    function_table: FunctionTable,
    *,
    root_parent_is_null: bool,
    waits: list[list[tuple[str, int]]] | None = None,
) -> TreeView:
    """The values of a pruned tree's entries from per-node arrays (sums over folded nodes for "other")."""
    by_state = np.stack([pruned.values(total_by_state[s]) for s in range(total_by_state.shape[0])])
    self_total = pruned.values(self_by_state.sum(axis=0))
    self_total[pruned.ids < 0] = 0
    ids = pruned.ids.tolist()
    parents: list[int | None] = pruned.parents.tolist()
    if ids and (root_parent_is_null or parents[0] < 0):
        parents[0] = None
    kinds = [ROOT_ENTRY if i == 0 else (OTHER_ENTRY if node < 0 else FRAME_ENTRY) for i, node in enumerate(ids)]
    return TreeView(
        ids, parents, pruned.depths.tolist(), kinds, [int(fn_of_node[node]) if node >= 0 else -1 for node in ids],
        by_state, self_total, pruned.values(samples), pruned.folded_counts(),
        waits if waits is not None else [[] for _ in ids], function_table, pruned.threshold,
    )


def node_waits(tree: CallTree, pruned: PrunedTree, levels: list[np.ndarray]) -> list[list[tuple[str, int]]]:
    """Per pruned entry: up to ``TOP_WAITS`` (reason, ns) of waiting time at or below it, largest first."""
    profile, nodes = tree.profile, tree.nodes
    cols = profile.columns()
    waiting = tree.mask & (cols["state"] == int(State.WAITING))
    if not waiting.any():
        return [[] for _ in range(len(pruned.ids))]
    size = nodes.size
    entry_of_node = np.full(size, -1, dtype=np.int64)
    entry_of_other = np.full(size, -1, dtype=np.int64)
    real = pruned.ids >= 0
    entry_of_node[pruned.ids[real]] = np.flatnonzero(real)
    entry_of_other[pruned.parents[~real]] = np.flatnonzero(~real)
    entry_of_other_top = np.full(size, -1, dtype=np.int64)
    entry_of_other_top[pruned.folded_nodes] = entry_of_other[pruned.folded_parent]
    display = np.where(entry_of_node >= 0, entry_of_node, entry_of_other_top)
    for level in levels[1:]:
        missing = level[display[level] < 0]
        display[missing] = display[nodes.parent[missing]]
    entry = display[sample_nodes(profile, nodes)[waiting]]
    reasons = cols["reason"][waiting]
    weights = cols["weight_ns"][waiting]
    inside = entry >= 0
    entry, reasons, weights = entry[inside], reasons[inside], weights[inside]
    unique_reasons, reason_index = np.unique(reasons, return_inverse=True)
    n_entries = len(pruned.ids)
    own = np.bincount(entry * len(unique_reasons) + reason_index, weights=weights,
                      minlength=n_entries * len(unique_reasons)).reshape(n_entries, len(unique_reasons))
    cumulative = np.vstack([np.zeros((1, len(unique_reasons))), np.cumsum(own, axis=0)])
    below = cumulative[pruned.subtree_end] - cumulative[np.arange(n_entries)]
    labels = ["unknown" if r == NO_REASON else profile.strings[r] for r in unique_reasons.tolist()]
    top = np.argsort(-below, axis=1, kind="stable")[:, :TOP_WAITS]
    out = []
    for i in range(n_entries):
        out.append([(labels[r], int(below[i, r])) for r in top[i].tolist() if below[i, r] > 0])
    return out
