"""Flame-graph views over a call tree: thresholded node lists, top functions and search.

Everything here aggregates through :func:`~profviz.analysis.calltree.build_call_tree` and
returns plain JSON-ready dicts (the shapes are documented in ``docs/api.md``). Times are ns.
The shared pieces used by the sandwich, diff and timeline views also live here:
:func:`prune_tree` (width threshold with per-parent "other" folding), :class:`FunctionIndex`
(the per-response functions table) and :func:`classify_file` (package/origin for colouring).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, State
from .calltree import ROOT, CallTree, FunctionTable, NodeTable, SampleFilter, build_call_tree, function_stats

DEFAULT_MIN_FRACTION = 0.001
DEFAULT_MAX_NODES = 20_000
MAX_QUERY_CHARS = 200
MAX_SEARCH_FUNCTIONS = 1000
TOP_WAITS = 3
STATE_NAMES = {State.ON_CPU: "cpu", State.WAITING: "waiting", State.RUNNABLE: "runnable", State.UNKNOWN: "unknown"}
FUNCTION_SORTS = ("self", "total", "cpu", "wait", "runnable", "samples")


class NodeNotFound(LookupError):
    """A node id that the profile's call tree does not have."""


class FunctionNotFound(LookupError):
    """No function of that name (and file) has samples in the profile."""


class AmbiguousFunction(ValueError):
    """Several files define a function of that name; the caller must say which."""


# -- functions table ---------------------------------------------------------------------------

_SITE_DIRS = ("site-packages", "dist-packages")


def classify_file(file: str) -> tuple[str, str]:
    """(package, origin) of a source file, for colouring.

    origin is ``site-packages`` (third-party), ``stdlib``, ``native`` (no Python file, e.g. a
    py-spy native frame), ``app`` (anything else with a path) or ``unknown`` (empty).
    """
    if not file:
        return "", "unknown"
    if file.startswith("<frozen "):
        module = file[len("<frozen "):].rstrip(">")
        return module.split(".")[0], "stdlib"
    if file.startswith("<") or "/" not in file and "\\" not in file and not file.endswith(".py"):
        return file, "native"
    parts = [p for p in re.split(r"[\\/]+", file) if p]
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in _SITE_DIRS and index + 1 < len(parts):
            return _strip_py(parts[index + 1]), "site-packages"
    for index, part in enumerate(parts):
        if re.fullmatch(r"python\d+(\.\d+)?", part) and index > 0 and parts[index - 1] in ("lib", "lib64", "Lib") \
                and index + 1 < len(parts):
            return _strip_py(parts[index + 1]), "stdlib"
    if len(parts) >= 2:
        return parts[-2], "app"
    return _strip_py(parts[-1]), "app"


def _strip_py(name: str) -> str:
    return name[:-3] if name.endswith(".py") else name


class FunctionIndex:
    """The ``functions`` table of one response: global function ids -> local indices, in first-use order."""

    def __init__(self, functions: FunctionTable):
        self._functions = functions
        self._local: dict[int, int] = {}
        self.rows: list[dict] = []

    def local(self, function_id: int) -> int:
        """Local index of a global function id; -1 stays -1 (root and "other" nodes)."""
        if function_id < 0:
            return -1
        index = self._local.get(function_id)
        if index is None:
            index = self._local[function_id] = len(self.rows)
            self.rows.append(function_row(self._functions, function_id))
        return index


def function_row(functions: FunctionTable, function_id: int) -> dict:
    file = functions.files[function_id]
    package, origin = classify_file(file)
    return {"name": functions.names[function_id], "file": file, "line": int(functions.lines[function_id]),
            "package": package, "origin": origin}


# -- tree helpers ------------------------------------------------------------------------------

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


def tree_node_rows(
    pruned: PrunedTree,
    fn_of_node: np.ndarray,
    total_by_state: np.ndarray,
    self_by_state: np.ndarray,
    samples: np.ndarray,
    functions: FunctionIndex,
    *,
    root_parent_is_null: bool,
    waits: list[list[list]] | None = None,
) -> list[dict]:
    """The JSON node objects of ``docs/api.md`` for a pruned tree."""
    by_state = np.stack([pruned.values(total_by_state[s]) for s in range(len(STATE_NAMES))])
    self_total = pruned.values(self_by_state.sum(axis=0))
    self_total[pruned.ids < 0] = 0
    sample_values = pruned.values(samples)
    folded = pruned.folded_counts()
    rows = []
    for i, node in enumerate(pruned.ids.tolist()):
        if i == 0:
            kind = "root"
        elif node < 0:
            kind = "other"
        else:
            kind = "frame"
        par = int(pruned.parents[i])
        rows.append({
            "id": node,
            "parent": None if (i == 0 and (root_parent_is_null or par < 0)) else par,
            "fn": functions.local(int(fn_of_node[node])) if node >= 0 else -1,
            "kind": kind,
            "depth": int(pruned.depths[i]),
            "total_ns": int(by_state[:, i].sum()),
            "self_ns": int(self_total[i]),
            "cpu_ns": int(by_state[State.ON_CPU, i]),
            "wait_ns": int(by_state[State.WAITING, i]),
            "runnable_ns": int(by_state[State.RUNNABLE, i]),
            "unknown_ns": int(by_state[State.UNKNOWN, i]),
            "samples": int(sample_values[i]),
            "folded": int(folded[i]),
            "waits": waits[i] if waits is not None else [],
        })
    return rows


def _node_waits(tree: CallTree, pruned: PrunedTree, levels: list[np.ndarray]) -> list[list[list]]:
    """Per pruned entry: up to TOP_WAITS [reason, ns] pairs of waiting time at or below it."""
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
        out.append([[labels[r], int(below[i, r])] for r in top[i].tolist() if below[i, r] > 0])
    return out


def _ancestor_path(tree: CallTree, node: int, functions: FunctionIndex, total: np.ndarray) -> list[dict]:
    path = []
    current = int(tree.nodes.parent[node]) if node != ROOT else -1
    while current >= 0:
        path.append({"id": current, "fn": functions.local(int(tree.nodes.function[current])), "total_ns": int(total[current])})
        current = int(tree.nodes.parent[current])
    path.reverse()
    return path


# -- views -------------------------------------------------------------------------------------

def flamegraph(
    profile: Profile,
    selection: SampleFilter | None = None,
    *,
    root: int = ROOT,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> dict:
    """The flame graph of the selected samples below node ``root``, thresholded (see docs/api.md).

    Returns root, root_total_ns, total_samples, min_fraction, effective_min_fraction, path,
    nodes and functions. Raises NodeNotFound for a root id the profile does not have.
    """
    tree = build_call_tree(profile, selection)
    nodes = tree.nodes
    if not 0 <= root < nodes.size:
        raise NodeNotFound(f"no node {root} in this profile's call tree (it has nodes 0..{nodes.size - 1})")
    levels = node_levels(nodes)
    total = tree.total_ns
    pruned = prune_tree(nodes.parent, levels, total, root=root, min_fraction=min_fraction, max_nodes=max_nodes)
    functions = FunctionIndex(nodes.functions)
    path = _ancestor_path(tree, root, functions, total)
    rows = tree_node_rows(
        pruned, nodes.function, tree.total_by_state, tree.self_by_state, tree.total_samples, functions,
        root_parent_is_null=(root == ROOT), waits=_node_waits(tree, pruned, levels),
    )
    root_total = int(total[root])
    return {
        "root": root,
        "root_total_ns": root_total,
        "total_samples": int(tree.total_samples[root]),
        "min_fraction": min_fraction,
        "effective_min_fraction": _fraction(pruned.threshold, root_total) if root_total else min_fraction,
        "path": path,
        "nodes": rows,
        "functions": functions.rows,
    }


def _fraction(part: float, whole: float) -> float:
    return round(float(part) / float(whole), 9) if whole else 0.0


def top_functions(profile: Profile, selection: SampleFilter | None = None, *, sort: str = "self", limit: int = 200) -> dict:
    """Per-function totals of the selected samples, sorted descending by ``sort`` (see FUNCTION_SORTS)."""
    if sort not in FUNCTION_SORTS:
        raise ValueError(f"sort must be one of {', '.join(FUNCTION_SORTS)}, got {sort!r}")
    tree = build_call_tree(profile, selection)
    stats = function_stats(tree)
    key = {"self": "self_ns", "total": "total_ns", "cpu": "cpu_ns", "wait": "wait_ns", "runnable": "runnable_ns",
           "samples": "samples"}[sort]
    stats.sort(key=lambda s: (-getattr(s, key), s.function, s.file))
    rows = []
    for s in stats[:limit]:
        package, origin = classify_file(s.file)
        rows.append({
            "name": s.function, "file": s.file, "line": int(s.line), "package": package, "origin": origin,
            "total_ns": s.total_ns, "self_ns": s.self_ns, "cpu_ns": s.cpu_ns, "wait_ns": s.wait_ns,
            "runnable_ns": s.runnable_ns, "samples": s.samples,
        })
    return {"root_total_ns": tree.root_total_ns, "total_functions": len(stats), "sort": sort, "functions": rows}


def compile_query(query: str, regex: bool) -> "re.Pattern[str]":
    """The pattern a search uses. Raises ValueError (with the reason) for an empty, long or invalid query."""
    if not query:
        raise ValueError("q must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"q is {len(query)} characters; at most {MAX_QUERY_CHARS} are allowed")
    if not regex:
        return re.compile(re.escape(query), re.IGNORECASE)
    try:
        return re.compile(query, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {query!r}: {exc}") from None


def search(
    profile: Profile,
    selection: SampleFilter | None = None,
    *,
    query: str,
    regex: bool = False,
    root: int = ROOT,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> dict:
    """Functions whose name or file matches ``query``, and the share of time under them.

    ``matched_ns`` counts each selected sample once when any of its frames matches.
    ``node_ids`` are the matching nodes a :func:`flamegraph` with the same arguments shows;
    ``hidden_node_count`` the matching nodes it folds away.
    """
    pattern = compile_query(query, regex)
    tree = build_call_tree(profile, selection)
    nodes = tree.nodes
    if not 0 <= root < nodes.size:
        raise NodeNotFound(f"no node {root} in this profile's call tree (it has nodes 0..{nodes.size - 1})")
    table = nodes.functions
    function_matches = np.fromiter(
        (bool(pattern.search(name) or pattern.search(file)) for name, file in zip(table.names, table.files)),
        dtype=bool, count=len(table.names),
    )
    node_matches = np.zeros(nodes.size, dtype=bool)
    node_matches[1:] = function_matches[nodes.function[1:]]
    levels = node_levels(nodes)
    matched_above = np.zeros(nodes.size, dtype=bool)
    for level in levels[1:]:
        parents = nodes.parent[level]
        matched_above[level] = matched_above[parents] | node_matches[parents]
    total = tree.total_ns
    outermost = node_matches & ~matched_above & (total > 0)
    matched_ns = int(total[outermost].sum())
    pruned = prune_tree(nodes.parent, levels, total, root=root, min_fraction=min_fraction, max_nodes=max_nodes)
    shown = np.zeros(nodes.size, dtype=bool)
    shown[pruned.ids[pruned.ids >= 0]] = True
    live = node_matches & (total > 0)
    if root != ROOT:
        seed = np.zeros(nodes.size, dtype=bool)
        seed[root] = True
        live &= inherit_down(levels, nodes.parent, seed)
    matched_functions = np.unique(nodes.function[node_matches & (total > 0)])
    return {
        "q": query,
        "regex": regex,
        "matched_ns": matched_ns,
        "root_total_ns": tree.root_total_ns,
        "matched_fraction": _fraction(matched_ns, tree.root_total_ns),
        "functions": [{"name": table.names[f], "file": table.files[f]} for f in matched_functions[:MAX_SEARCH_FUNCTIONS].tolist()],
        "node_ids": np.flatnonzero(live & shown).tolist(),
        "hidden_node_count": int((live & ~shown).sum()),
    }
