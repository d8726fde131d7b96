"""Flame graph, top functions and search responses (``/api/profiles/<id>/...``)."""

from __future__ import annotations

from ..analysis.common import classify_file, fraction
from ..analysis.flamegraph import FlameGraph, Search, TopFunctions
from ..analysis.pruning import TreeView
from ..analysis.sandwich import Sandwich
from ..analysis.timeline import Timeline
from ..model import STATE_NAMES, State
from .functions import FunctionRows, function_row


def tree_nodes(view: TreeView, functions: FunctionRows) -> list[dict]:
    """The node objects of docs/api.md for a tree view (function indexes taken from ``functions``)."""
    by_state = view.total_by_state
    totals = by_state.sum(axis=0)
    rows = []
    for i, node in enumerate(view.ids):
        rows.append({
            "id": node,
            "parent": view.parents[i],
            "fn": functions.local(view.functions[i]),
            "kind": view.kinds[i],
            "depth": view.depths[i],
            "total_ns": int(totals[i]),
            "self_ns": int(view.self_ns[i]),
            "cpu_ns": int(by_state[State.ON_CPU, i]),
            "wait_ns": int(by_state[State.WAITING, i]),
            "runnable_ns": int(by_state[State.RUNNABLE, i]),
            "gil_ns": int(by_state[State.GIL, i]),
            "unknown_ns": int(by_state[State.UNKNOWN, i]),
            "samples": int(view.samples[i]),
            "folded": int(view.folded[i]),
            "waits": [[reason, ns] for reason, ns in view.waits[i]],
        })
    return rows


def effective_min_fraction(view: TreeView, root_total: float, min_fraction: float) -> float:
    """The threshold a view was pruned at, as a share of its root (``min_fraction`` for an empty root)."""
    return fraction(view.threshold, root_total) if root_total else min_fraction


def flamegraph_json(graph: FlameGraph) -> dict:
    functions = FunctionRows(graph.view.function_table)
    local = {function: functions.local(function) for _, function, _ in reversed(graph.path)}  # innermost first, as before
    path = [{"id": node, "fn": local[function], "total_ns": total} for node, function, total in graph.path]
    return {
        "root": graph.root,
        "root_total_ns": graph.root_total_ns,
        "total_samples": graph.total_samples,
        "min_fraction": graph.min_fraction,
        "effective_min_fraction": effective_min_fraction(graph.view, graph.root_total_ns, graph.min_fraction),
        "path": path,
        "nodes": tree_nodes(graph.view, functions),
        "functions": functions.rows,
    }


def top_functions_json(top: TopFunctions) -> dict:
    rows = []
    for s in top.functions:
        package, origin = classify_file(s.file)
        rows.append({
            "name": s.function, "file": s.file, "line": int(s.line), "package": package, "origin": origin,
            "total_ns": s.total_ns, "self_ns": s.self_ns, "cpu_ns": s.cpu_ns, "wait_ns": s.wait_ns,
            "runnable_ns": s.runnable_ns, "gil_ns": s.gil_ns, "samples": s.samples,
        })
    return {"root_total_ns": top.root_total_ns, "total_functions": top.total_functions, "sort": top.sort, "functions": rows}


def search_json(found: Search) -> dict:
    return {
        "q": found.query,
        "regex": found.regex,
        "matched_ns": found.matched_ns,
        "root_total_ns": found.root_total_ns,
        "matched_fraction": fraction(found.matched_ns, found.root_total_ns),
        "functions": [{"name": name, "file": file} for name, file in found.functions],
        "node_ids": found.node_ids,
        "hidden_node_count": found.hidden_node_count,
    }


def sandwich_json(view: Sandwich) -> dict:
    functions = FunctionRows(view.functions)
    target = function_row(view.functions, view.function) | {"fn": functions.local(view.function)}
    sides = {}
    for name in ("callees", "callers"):
        tree = getattr(view, name)
        root_total = float(tree.total_by_state[:, 0].sum()) if tree.ids else 0.0
        sides[name] = {"nodes": tree_nodes(tree, functions),
                       "effective_min_fraction": effective_min_fraction(tree, root_total, view.min_fraction)}
    return {
        "function": target,
        "total_ns": view.total_ns,
        "self_ns": view.self_ns,
        "root_total_ns": view.root_total_ns,
        "fraction": fraction(view.total_ns, view.root_total_ns),
        "min_fraction": view.min_fraction,
        "callers": sides["callers"],
        "callees": sides["callees"],
        "functions": functions.rows,
    }


def timeline_json(timeline: Timeline) -> dict:
    nodes, ids = timeline.nodes, timeline.node_ids
    functions = FunctionRows(nodes.functions)
    threads = [
        {
            "index": lanes.index, "tid": lanes.tid, "name": lanes.name, "samples": lanes.samples, "max_depth": lanes.max_depth,
            "depths": [{"depth": d.depth, "start_ns": d.start_ns, "end_ns": d.end_ns, "node": d.node} for d in lanes.depths],
            "states": {"start_ns": lanes.states.start_ns, "end_ns": lanes.states.end_ns,
                       "state": [STATE_NAMES[s] for s in lanes.states.state], "reason": lanes.states.reason},
        }
        for lanes in timeline.threads
    ]
    return {
        "start_ns": timeline.start_ns,
        "end_ns": timeline.end_ns,
        "width": timeline.width,
        "pixel_ns": timeline.pixel_ns,
        "threads": threads,
        "nodes": {
            "id": ids,
            "parent": [int(nodes.parent[i]) for i in ids],
            "fn": [functions.local(int(nodes.function[i])) for i in ids],
            "depth": [int(nodes.depth[i]) for i in ids],
        },
        "functions": functions.rows,
    }
