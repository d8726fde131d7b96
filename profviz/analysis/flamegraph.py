"""Flame-graph views over a call tree: the thresholded tree, top functions and search.

Everything aggregates through :func:`~profviz.analysis.calltree.build_call_tree` and returns
model-level results (times in ns); :mod:`profviz.shapes` turns them into the JSON of docs/api.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..model import Profile
from .calltree import ROOT, CallTree, FunctionStats, SampleFilter, build_call_tree, function_stats
from .pruning import DEFAULT_MAX_NODES, DEFAULT_MIN_FRACTION, TreeView, inherit_down, node_levels, node_waits, prune_tree, tree_view

MAX_QUERY_CHARS = 200
MAX_SEARCH_FUNCTIONS = 1000
FUNCTION_SORTS = ("self", "total", "cpu", "wait", "runnable", "gil", "samples")


class NodeNotFound(LookupError):
    """A node id that the profile's call tree does not have."""


class FunctionNotFound(LookupError):
    """No function of that name (and file) has samples in the profile."""


class AmbiguousFunction(ValueError):
    """Several files define a function of that name; the caller must say which."""


@dataclass
class FlameGraph:
    """The flame graph of the selected samples below node ``root``: ``view`` its thresholded
    nodes, ``path`` the (node, function id, total ns) of the root's ancestors, outermost first."""

    root: int
    root_total_ns: int
    total_samples: int
    min_fraction: float
    view: TreeView
    path: list[tuple[int, int, int]]


def _check_root(tree: CallTree, root: int) -> None:
    if not 0 <= root < tree.nodes.size:
        raise NodeNotFound(f"no node {root} in this profile's call tree (it has nodes 0..{tree.nodes.size - 1})")


def flamegraph(
    profile: Profile,
    selection: SampleFilter | None = None,
    *,
    root: int = ROOT,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> FlameGraph:
    """The flame graph of the selected samples below node ``root``, thresholded (see :func:`prune_tree`).

    Raises NodeNotFound for a root id the profile does not have.
    """
    tree = build_call_tree(profile, selection)
    _check_root(tree, root)
    nodes = tree.nodes
    levels = node_levels(nodes)
    total = tree.total_ns
    pruned = prune_tree(nodes.parent, levels, total, root=root, min_fraction=min_fraction, max_nodes=max_nodes)
    view = tree_view(
        pruned, nodes.function, tree.total_by_state, tree.self_by_state, tree.total_samples, nodes.functions,
        root_parent_is_null=(root == ROOT), waits=node_waits(tree, pruned, levels),
    )
    path = []
    current = int(nodes.parent[root]) if root != ROOT else -1
    while current >= 0:
        path.append((current, int(nodes.function[current]), int(total[current])))
        current = int(nodes.parent[current])
    path.reverse()
    return FlameGraph(root, int(total[root]), int(tree.total_samples[root]), min_fraction, view, path)


@dataclass
class TopFunctions:
    """Per-function totals of the selected samples, sorted by ``sort`` (at most the limit asked)."""

    root_total_ns: int
    total_functions: int
    sort: str
    functions: list[FunctionStats]


_SORT_KEYS = {"self": "self_ns", "total": "total_ns", "cpu": "cpu_ns", "wait": "wait_ns", "runnable": "runnable_ns", "gil": "gil_ns",
              "samples": "samples"}


def top_functions(profile: Profile, selection: SampleFilter | None = None, *, sort: str = "self", limit: int = 200) -> TopFunctions:
    """Per-function totals of the selected samples, sorted descending by ``sort`` (see FUNCTION_SORTS)."""
    if sort not in FUNCTION_SORTS:
        raise ValueError(f"sort must be one of {', '.join(FUNCTION_SORTS)}, got {sort!r}")
    tree = build_call_tree(profile, selection)
    stats = function_stats(tree)
    key = _SORT_KEYS[sort]
    stats.sort(key=lambda s: (-getattr(s, key), s.function, s.file))
    return TopFunctions(tree.root_total_ns, len(stats), sort, stats[:limit])


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


@dataclass
class Search:
    """Functions whose name or file matches a query and the time under them.

    ``matched_ns`` counts each selected sample once when any of its frames matches;
    ``functions`` are (name, file) of the matching functions; ``node_ids`` the matching nodes
    a :func:`flamegraph` with the same arguments shows, ``hidden_node_count`` those it folds away.
    """

    query: str
    regex: bool
    matched_ns: int
    root_total_ns: int
    functions: list[tuple[str, str]]
    node_ids: list[int]
    hidden_node_count: int


def search(
    profile: Profile,
    selection: SampleFilter | None = None,
    *,
    query: str,
    regex: bool = False,
    root: int = ROOT,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> Search:
    """Functions whose name or file matches ``query`` (see :class:`Search`)."""
    pattern = compile_query(query, regex)
    tree = build_call_tree(profile, selection)
    _check_root(tree, root)
    nodes = tree.nodes
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
    return Search(
        query, regex, matched_ns, tree.root_total_ns,
        [(table.names[f], table.files[f]) for f in matched_functions[:MAX_SEARCH_FUNCTIONS].tolist()],
        np.flatnonzero(live & shown).tolist(), int((live & ~shown).sum()),
    )
