"""Merged call trees over any subset of a profile's samples.

:func:`build_call_tree` is the one function every view and summary uses to aggregate samples:
the flame graph, the sandwich view, the top-functions table, ``profviz show`` and the diffs.
Functions here are pure: they read a :class:`~profviz.model.Profile` and return new objects.

Frames are merged by function identity (function name and file); line numbers stay available
on the frames for tooltips but do not split nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, State

ROOT = 0
STATES = (State.UNKNOWN, State.ON_CPU, State.WAITING, State.RUNNABLE, State.GIL)


@dataclass
class SampleFilter:
    """Which samples to aggregate. ``None`` means no restriction.

    ``threads``: thread indices. ``start_ns``/``end_ns``: absolute window [start, end).
    ``states``: the states to keep. ``stacks``: a boolean mask over the profile's stacks.
    """

    threads: list[int] | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    states: list[State] | None = None

    def mask(self, profile: Profile) -> np.ndarray:
        cols = profile.columns()
        keep = np.ones(len(cols["time_ns"]), dtype=bool)
        if self.threads is not None:
            keep &= np.isin(cols["thread"], np.asarray(self.threads, dtype=np.int32))
        if self.start_ns is not None:
            keep &= cols["time_ns"] >= self.start_ns
        if self.end_ns is not None:
            keep &= cols["time_ns"] < self.end_ns
        if self.states is not None:
            keep &= np.isin(cols["state"], np.asarray([int(s) for s in self.states], dtype=np.int8))
        return keep


@dataclass
class FunctionTable:
    """Per-function identity (function name, file) derived from a profile's frames."""

    function_of_frame: np.ndarray  # frame index -> function id
    names: list[str]
    files: list[str]
    lines: list[int]  # smallest line seen for the function


@dataclass
class NodeTable:
    """Merged call-tree nodes of a profile: node 0 is the virtual root.

    ``node_of_stack[s]`` is the node of stack ``s``; ``parent[n]`` and ``function[n]`` describe
    node ``n`` (root: parent -1, function -1); ``depth[n]`` is 0 for the root.
    """

    functions: FunctionTable
    node_of_stack: np.ndarray
    parent: np.ndarray
    function: np.ndarray
    depth: np.ndarray

    @property
    def size(self) -> int:
        return len(self.parent)


def function_table(profile: Profile) -> FunctionTable:
    """Group the profile's frames by (function name, file)."""
    ids: dict[tuple[int, int], int] = {}
    names: list[str] = []
    files: list[str] = []
    lines: list[int] = []
    of_frame = np.empty(len(profile.frame_function), dtype=np.int32)
    for frame, (fn, fl, line) in enumerate(zip(profile.frame_function, profile.frame_file, profile.frame_line)):
        key = (fn, fl)
        fid = ids.get(key)
        if fid is None:
            fid = ids[key] = len(names)
            names.append(profile.strings[fn])
            files.append(profile.strings[fl])
            lines.append(line)
        elif 0 < line < lines[fid] or lines[fid] == 0:
            lines[fid] = line or lines[fid]
        of_frame[frame] = fid
    return FunctionTable(of_frame, names, files, lines)


def node_table(profile: Profile) -> NodeTable:
    """The merged node table for a profile, cached on the profile until its stacks change."""
    cached = getattr(profile, "_node_table_cache", None)
    if cached is not None and cached[0] == (len(profile.stack_prefix), len(profile.frame_function)):
        return cached[1]
    functions = function_table(profile)
    fn_of_frame = functions.function_of_frame
    node_of_stack = np.empty(len(profile.stack_prefix), dtype=np.int32)
    parent = [-1]
    function = [-1]
    depth = [0]
    index: dict[tuple[int, int], int] = {}
    for stack, (prefix, frame) in enumerate(zip(profile.stack_prefix, profile.stack_frame)):
        parent_node = ROOT if prefix == NO_STACK else int(node_of_stack[prefix])
        key = (parent_node, int(fn_of_frame[frame]))
        node = index.get(key)
        if node is None:
            node = index[key] = len(parent)
            parent.append(parent_node)
            function.append(key[1])
            depth.append(depth[parent_node] + 1)
        node_of_stack[stack] = node
    table = NodeTable(
        functions,
        node_of_stack,
        np.asarray(parent, dtype=np.int32),
        np.asarray(function, dtype=np.int32),
        np.asarray(depth, dtype=np.int32),
    )
    profile._node_table_cache = ((len(profile.stack_prefix), len(profile.frame_function)), table)
    return table


@dataclass
class CallTree:
    """A merged call tree over a subset of samples.

    Arrays are indexed by node (see :class:`NodeTable`); ``self_by_state[state, node]`` and
    ``total_by_state[state, node]`` hold weights in ns; ``total_ns``/``self_ns`` sum the states.
    ``sample_count[node]`` counts samples at or below the node. ``mask`` is the sample mask used.
    """

    profile: Profile
    nodes: NodeTable
    self_by_state: np.ndarray
    total_by_state: np.ndarray
    total_samples: np.ndarray
    mask: np.ndarray

    @property
    def total_ns(self) -> np.ndarray:
        return self.total_by_state.sum(axis=0)

    @property
    def self_ns(self) -> np.ndarray:
        return self.self_by_state.sum(axis=0)

    @property
    def root_total_ns(self) -> int:
        return int(self.total_by_state[:, ROOT].sum())

    def children(self) -> list[list[int]]:
        """Children of every node with non-zero total, heaviest first."""
        total = self.total_ns
        kids: list[list[int]] = [[] for _ in range(self.nodes.size)]
        for node in np.flatnonzero(total[1:] > 0) + 1:
            kids[self.nodes.parent[node]].append(int(node))
        for lst in kids:
            if len(lst) > 1:
                lst.sort(key=lambda n: -total[n])
        return kids

    def function_name(self, node: int) -> str:
        return "(root)" if node == ROOT else self.nodes.functions.names[self.nodes.function[node]]

    def waits_by_reason(self, node: int = ROOT) -> dict[str, int]:
        """Waiting ns at or below ``node`` split by wait reason ("unknown" when none was known)."""
        cols = self.profile.columns()
        keep = self.mask & (cols["state"] == int(State.WAITING))
        if node != ROOT:
            keep &= self._under(node)[self._sample_nodes()]
        reasons = cols["reason"][keep]
        weights = cols["weight_ns"][keep]
        out: dict[str, int] = {}
        for reason, weight in zip(*_grouped_sum(reasons, weights)):
            label = "unknown" if reason == NO_REASON else self.profile.strings[reason]
            out[label] = out.get(label, 0) + int(weight)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def _sample_nodes(self) -> np.ndarray:
        stacks = self.profile.columns()["stack"]
        nodes = np.zeros(len(stacks), dtype=np.int32)
        has = stacks != NO_STACK
        nodes[has] = self.nodes.node_of_stack[stacks[has]]
        return nodes

    def _under(self, node: int) -> np.ndarray:
        """Boolean mask over nodes: node itself and all its descendants."""
        inside = np.zeros(self.nodes.size, dtype=bool)
        inside[node] = True
        depth = self.nodes.depth
        for level in range(int(depth[node]) + 1, int(depth.max()) + 1):
            at_level = np.flatnonzero(depth == level)
            inside[at_level] = inside[self.nodes.parent[at_level]]
        return inside


def _grouped_sum(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(keys):
        return np.zeros(0, dtype=keys.dtype), np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=weights, minlength=len(unique)).astype(np.int64)


def build_call_tree(profile: Profile, selection: SampleFilter | None = None, *, mask: np.ndarray | None = None) -> CallTree:
    """Aggregate the selected samples into a merged call tree.

    Samples are selected by ``selection`` (threads, time window, states) and, if given, also by
    an explicit boolean ``mask`` over samples. Weights are summed per node and per state, then
    propagated to ancestors, so ``total_by_state[:, 0]`` is the selected wall time.
    """
    nodes = node_table(profile)
    cols = profile.columns()
    keep = (selection or SampleFilter()).mask(profile)
    if mask is not None:
        keep &= mask
    stacks = cols["stack"][keep]
    sample_nodes = np.zeros(len(stacks), dtype=np.int64)
    has_stack = stacks != NO_STACK
    sample_nodes[has_stack] = nodes.node_of_stack[stacks[has_stack]]
    states = cols["state"][keep].astype(np.int64)
    weights = cols["weight_ns"][keep]
    n_nodes, n_states = nodes.size, len(STATES)
    flat = np.bincount(states * n_nodes + sample_nodes, weights=weights, minlength=n_states * n_nodes)
    self_by_state = flat.reshape(n_states, n_nodes).astype(np.int64)
    total_by_state = self_by_state.copy()
    total_samples = np.bincount(sample_nodes, minlength=n_nodes).astype(np.int64)
    for depth in range(int(nodes.depth.max()) if n_nodes else 0, 0, -1):
        at_depth = np.flatnonzero(nodes.depth == depth)
        parents = nodes.parent[at_depth]
        for state in range(n_states):
            np.add.at(total_by_state[state], parents, total_by_state[state, at_depth])
        np.add.at(total_samples, parents, total_samples[at_depth])
    return CallTree(profile, nodes, self_by_state, total_by_state, total_samples, keep)


@dataclass
class FunctionStats:
    function: str
    file: str
    line: int
    total_ns: int
    self_ns: int
    cpu_ns: int
    wait_ns: int
    runnable_ns: int
    samples: int
    gil_ns: int = 0


def function_stats(tree: CallTree) -> list[FunctionStats]:
    """Per-function totals over a call tree, heaviest total first.

    ``total_ns`` counts a sample once even when the function recurses (only the outermost
    occurrence on each path counts); ``cpu_ns``/``wait_ns``/``runnable_ns``/``gil_ns`` split that total by
    state; ``self_ns`` is time with the function as the innermost frame.
    """
    nodes = tree.nodes
    fn = nodes.function
    outermost = np.ones(nodes.size, dtype=bool)
    outermost[ROOT] = False
    ancestor = nodes.parent.copy()
    while True:
        live = ancestor > 0
        if not live.any():
            break
        same = np.zeros(nodes.size, dtype=bool)
        same[live] = fn[ancestor[live]] == fn[live]
        outermost &= ~same
        nxt = np.full(nodes.size, -1, dtype=np.int32)
        nxt[live] = nodes.parent[ancestor[live]]
        ancestor = nxt
    n_functions = len(nodes.functions.names)
    fn_index = np.where(fn >= 0, fn, 0)

    def per_function(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        return np.bincount(fn_index[where], weights=values[where], minlength=n_functions).astype(np.int64)

    out_mask = outermost
    node_mask = np.arange(nodes.size) > 0
    total = per_function(tree.total_ns, out_mask)
    cpu = per_function(tree.total_by_state[State.ON_CPU], out_mask)
    wait = per_function(tree.total_by_state[State.WAITING], out_mask)
    runnable = per_function(tree.total_by_state[State.RUNNABLE], out_mask)
    gil = per_function(tree.total_by_state[State.GIL], out_mask)
    samples = per_function(tree.total_samples, out_mask)
    self_ns = per_function(tree.self_ns, node_mask)
    stats = [
        FunctionStats(
            nodes.functions.names[f], nodes.functions.files[f], nodes.functions.lines[f],
            int(total[f]), int(self_ns[f]), int(cpu[f]), int(wait[f]), int(runnable[f]), int(samples[f]), int(gil[f]),
        )
        for f in np.flatnonzero(total > 0)
    ]
    stats.sort(key=lambda s: (-s.total_ns, s.function))
    return stats


@dataclass
class ThreadStats:
    thread: int
    tid: int
    name: str
    wall_ns: int
    cpu_ns: int
    wait_ns: int
    runnable_ns: int
    unknown_ns: int
    samples: int
    waits: dict[str, int]
    gil_ns: int = 0


def thread_stats(profile: Profile, selection: SampleFilter | None = None) -> list[ThreadStats]:
    """Per thread: wall time split into CPU, waiting (by reason), runnable, GIL and unknown."""
    out = []
    threads = (selection.threads if selection and selection.threads is not None else range(len(profile.threads)))
    for thread in threads:
        sel = SampleFilter([thread], *(selection.start_ns, selection.end_ns, selection.states) if selection else (None, None, None))
        tree = build_call_tree(profile, sel)
        by_state = tree.total_by_state[:, ROOT]
        info = profile.threads[thread]
        out.append(ThreadStats(
            thread, info.tid, info.name, int(by_state.sum()), int(by_state[State.ON_CPU]),
            int(by_state[State.WAITING]), int(by_state[State.RUNNABLE]), int(by_state[State.UNKNOWN]),
            int(tree.total_samples[ROOT]), tree.waits_by_reason(), int(by_state[State.GIL]),
        ))
    out.sort(key=lambda t: -t.wall_ns)
    return out
