"""Differential flame graphs: merging by function path, normalisation, windows, the changes table."""

from __future__ import annotations

import numpy as np
import pytest

from profviz.analysis.calltree import SampleFilter, build_call_tree
from profviz.analysis import diff as views
from profviz.model import Profile, State
from profviz.shapes.diff import diff_json
from tests.test_flamegraph import random_profile


def diff(*args, **kwargs) -> dict:
    """The diff as the API sends it."""
    return diff_json(views.diff(*args, **kwargs))

MS = 1_000_000


def program(db_ms: int, render_ms: int, *, reverse_interning: bool = False, scale: int = 1, extra: str | None = None) -> Profile:
    """main -> handle -> (query | render); optionally an extra function; weights x scale."""
    profile = Profile()
    thread = profile.add_thread(1, 1, "main")
    paths = {
        "query": [("main", "m.py", 1), ("handle", "h.py", 2), ("query", "db.py", 3)],
        "render": [("main", "m.py", 1), ("handle", "h.py", 2), ("render", "r.py", 4)],
    }
    order = ["render", "query"] if reverse_interning else ["query", "render"]
    stacks = {name: profile.intern_frames(paths[name]) for name in order}
    time_ns = 0
    for name, ms, state in (("query", db_ms, State.WAITING), ("render", render_ms, State.ON_CPU)):
        for _ in range(ms // 10):
            profile.append_sample(time_ns, thread, stacks[name], 10 * MS * scale, state, "socket recv" if state == State.WAITING else None)
            time_ns += 10 * MS * scale
    if extra:
        stack = profile.intern_frames([("main", "m.py", 1), (extra, "x.py", 9)])
        profile.append_sample(time_ns, thread, stack, 100 * MS * scale, State.ON_CPU)
    return profile


def node_by_path(body, *names):
    functions = body["functions"]
    current = body["nodes"][0]
    for name in names:
        current = next(n for n in body["nodes"] if n["parent"] == current["id"] and n["fn"] >= 0 and functions[n["fn"]]["name"] == name)
    return current


def test_profile_against_itself_has_no_differences():
    profile = random_profile(seed=9, samples=1500)
    body = diff(profile, None, profile, None, min_fraction=0.0)
    assert all(n["delta_fraction"] == 0 and n["a_total_ns"] == n["b_total_ns"] for n in body["nodes"])
    assert body["changes"] == []
    assert len(body["nodes"]) == int((build_call_tree(profile).total_ns > 0).sum())


def test_normalised_difference_ignores_duration_and_table_order():
    a = program(300, 700)
    b = program(300, 700, reverse_interning=True, scale=3)
    body = diff(a, None, b, None, min_fraction=0.0)
    assert body["b"]["root_total_ns"] == 3 * body["a"]["root_total_ns"]
    assert all(n["delta_fraction"] == pytest.approx(0) for n in body["nodes"]), "same shape, different durations"
    assert node_by_path(body, "main", "handle", "query")["b_total_ns"] == 900 * MS


def test_growth_shows_as_positive_delta_and_in_changes():
    a = program(200, 800)
    b = program(600, 400, extra="new_thing")
    body = diff(a, None, b, None, min_fraction=0.0)
    query = node_by_path(body, "main", "handle", "query")
    b_total = 1100 * MS
    assert query["a_fraction"] == pytest.approx(0.2) and query["b_fraction"] == pytest.approx(600 / 1100)
    assert query["delta_fraction"] == pytest.approx(600 / 1100 - 0.2)
    assert query["a_wait_ns"] == 200 * MS and query["b_wait_ns"] == 600 * MS and query["a_cpu_ns"] == 0
    new = node_by_path(body, "main", "new_thing")
    assert new["a_total_ns"] == 0 and new["b_total_ns"] == 100 * MS and new["delta_fraction"] == pytest.approx(100 * MS / b_total)
    changes = {c["name"]: c for c in body["changes"]}
    assert changes["query"]["delta_total_fraction"] == pytest.approx(600 / 1100 - 0.2)
    assert changes["render"]["delta_self_fraction"] == pytest.approx(400 / 1100 - 0.8)
    deltas = [c["delta_total_fraction"] for c in body["changes"]]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0 > deltas[-1]


def test_two_windows_of_one_profile():
    profile = random_profile(seed=11, samples=1500)
    first = SampleFilter(end_ns=6_000 * MS)
    second = SampleFilter(start_ns=6_000 * MS, threads=[1, 2])
    body = diff(profile, first, profile, second, min_fraction=0.0, base="b")
    tree_a, tree_b = build_call_tree(profile, first), build_call_tree(profile, second)
    assert body["a"]["root_total_ns"] == tree_a.root_total_ns and body["b"]["root_total_ns"] == tree_b.root_total_ns
    names = tree_a.nodes.functions.names
    nodes_of_path = {}
    for n in range(1, tree_a.nodes.size):
        nodes_of_path.setdefault(tuple(_path(tree_a, n, names)), []).append(n)
    for node in body["nodes"][1:]:
        path = []
        current = node
        while current["parent"] is not None:
            path.append(body["functions"][current["fn"]]["name"])
            current = next(n for n in body["nodes"] if n["id"] == current["parent"])
        path.reverse()
        matches = nodes_of_path[tuple(path)]
        assert node["a_total_ns"] == sum(int(tree_a.total_ns[n]) for n in matches)
        assert node["b_total_ns"] == sum(int(tree_b.total_ns[n]) for n in matches)


def _path(tree, node, names):
    out = []
    while node > 0:
        out.append(names[tree.nodes.function[node]])
        node = int(tree.nodes.parent[node])
    return out[::-1]


def test_threshold_keeps_nodes_heavy_on_either_side_and_folds_the_rest():
    a = program(20, 980)
    b = program(900, 100)
    body = diff(a, None, b, None, min_fraction=0.5)
    kept = {body["functions"][n["fn"]]["name"] for n in body["nodes"] if n["kind"] == "frame"}
    assert {"query", "render"} <= kept, "query is heavy in b, render in a"
    folded = diff(random_profile(seed=2, samples=800), None, random_profile(seed=4, samples=800), None, min_fraction=0.05)
    others = [n for n in folded["nodes"] if n["kind"] == "other"]
    assert others
    for node in folded["nodes"]:
        if node["kind"] == "other":
            continue
        kids = [c for c in folded["nodes"] if c["parent"] == node["id"]]
        for side in ("a", "b"):
            assert node[f"{side}_total_ns"] == node[f"{side}_self_ns"] + sum(c[f"{side}_total_ns"] for c in kids)
    with pytest.raises(ValueError, match="base"):
        diff(a, None, b, None, base="c")


def test_empty_side_gives_zero_fractions():
    profile = random_profile(seed=1, samples=300)
    body = diff(profile, None, profile, SampleFilter(start_ns=10**15), min_fraction=0.0)
    assert body["b"]["root_total_ns"] == 0
    assert all(n["b_fraction"] == 0 for n in body["nodes"])
    assert np.isclose(body["nodes"][0]["a_fraction"], 1.0)
