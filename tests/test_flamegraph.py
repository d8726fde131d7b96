"""Flame-graph pruning, zoom, waits, top functions and search, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from profviz.analysis.calltree import SampleFilter, build_call_tree, function_stats
from profviz.analysis import flamegraph as views
from profviz.analysis.common import classify_file
from profviz.analysis.flamegraph import compile_query
from profviz.model import NO_STACK, Profile, State
from profviz.shapes.flame import flamegraph_json, search_json, top_functions_json


def flamegraph(profile, *args, **kwargs) -> dict:
    """The flame graph as the API sends it."""
    return flamegraph_json(views.flamegraph(profile, *args, **kwargs))


def search(profile, *args, **kwargs) -> dict:
    return search_json(views.search(profile, *args, **kwargs))


def top_functions(profile, *args, **kwargs) -> dict:
    return top_functions_json(views.top_functions(profile, *args, **kwargs))

MS = 1_000_000
REASONS = ("socket recv", "lock", "sleep", "disk read", "futex")


def random_profile(seed: int = 3, samples: int = 3000) -> Profile:
    """Stacks over 40 functions in 6 files (with recursion), 3 threads, mixed states and reasons."""
    rng = np.random.default_rng(seed)
    profile = Profile({"start_ns": 0})
    threads = [profile.add_thread(1, 10 + i, f"t{i}") for i in range(3)]
    stacks = []
    for _ in range(300):
        depth = int(rng.integers(1, 9))
        frames = [("main", "/app/main.py", 1)]
        for _ in range(depth):
            fn = int(rng.zipf(1.6)) % 40
            frames.append((f"f{fn}", f"/app/mod{fn % 6}.py", int(rng.integers(1, 50))))
        stacks.append(profile.intern_frames(frames))
    stacks.append(NO_STACK)
    for i in range(samples):
        state = State(int(rng.choice([0, 1, 2, 3], p=[0.05, 0.5, 0.35, 0.1])))
        reason = REASONS[int(rng.integers(len(REASONS)))] if state == State.WAITING and rng.random() < 0.9 else None
        profile.append_sample(i * 10 * MS, threads[i % 3], stacks[int(rng.integers(len(stacks)))],
                              int(rng.integers(1, 4)) * 10 * MS, state, reason)
    return profile


@pytest.fixture(scope="module")
def profile():
    return random_profile()


def children_of(nodes):
    out = {}
    for node in nodes[1:]:
        out.setdefault(node["parent"], []).append(node)
    return out


def check_tree_invariants(body, tree, root=0):
    nodes = body["nodes"]
    assert nodes[0]["kind"] == "root" and nodes[0]["id"] == root and nodes[0]["depth"] == 0
    kids = children_of(nodes)
    position = {n["id"]: i for i, n in enumerate(nodes)}
    threshold = body["effective_min_fraction"] * body["root_total_ns"]
    for i, node in enumerate(nodes):
        states = node["cpu_ns"] + node["wait_ns"] + node["runnable_ns"] + node["unknown_ns"]
        assert states == node["total_ns"]
        if node["kind"] == "other":
            assert node["folded"] >= 1 and node["self_ns"] == 0 and node["id"] == -1 - node["parent"]
            folded = [c for c in range(tree.nodes.size) if tree.nodes.parent[c] == node["parent"]
                      and tree.total_ns[c] > 0 and c not in position]
            assert len(folded) == node["folded"]
            assert node["total_ns"] == sum(int(tree.total_ns[c]) for c in folded), "other = sum of the folded children"
            assert all(tree.total_ns[c] < threshold for c in folded)
            continue
        if i > 0:
            assert position[node["parent"]] < i, "preorder: parent first"
            assert node["depth"] == nodes[position[node["parent"]]]["depth"] + 1
            assert node["total_ns"] >= threshold
        children = kids.get(node["id"], [])
        assert node["total_ns"] == node["self_ns"] + sum(c["total_ns"] for c in children), "total = self + children"
        assert node["total_ns"] == int(tree.total_ns[node["id"]]) and node["samples"] == int(tree.total_samples[node["id"]])
        frames = [c for c in children if c["kind"] == "frame"]
        assert [c["total_ns"] for c in frames] == sorted((c["total_ns"] for c in frames), reverse=True)
        assert all(c["kind"] == "frame" for c in children[:-1]), "the other node comes last"


@pytest.mark.parametrize("min_fraction", [0.0, 0.002, 0.02, 0.1, 1.0])
def test_threshold_and_other_nodes_add_up(profile, min_fraction):
    tree = build_call_tree(profile)
    body = flamegraph(profile, min_fraction=min_fraction)
    assert body["root_total_ns"] == tree.root_total_ns
    check_tree_invariants(body, tree)
    if min_fraction >= 0.02:
        assert any(n["kind"] == "other" for n in body["nodes"])
    if min_fraction == 0.0:
        assert not any(n["kind"] == "other" for n in body["nodes"])
        assert len(body["nodes"]) == int((tree.total_ns > 0).sum())


def test_higher_threshold_sends_fewer_nodes(profile):
    counts = [len(flamegraph(profile, min_fraction=f)["nodes"]) for f in (0.0, 0.005, 0.05, 0.3)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_max_nodes_raises_the_threshold(profile):
    tree = build_call_tree(profile)
    body = flamegraph(profile, min_fraction=0.0, max_nodes=25)
    frames = [n for n in body["nodes"] if n["kind"] != "other"]
    assert len(frames) <= 25
    assert body["effective_min_fraction"] > 0.0
    check_tree_invariants(body, tree)


@pytest.mark.parametrize("selection", [
    SampleFilter(threads=[1]),
    SampleFilter(states=[State.WAITING]),
    SampleFilter(start_ns=5_000 * MS, end_ns=12_000 * MS),
    SampleFilter(threads=[0, 2], states=[State.ON_CPU, State.RUNNABLE], start_ns=1_000 * MS),
])
def test_filters_change_totals_like_build_call_tree(profile, selection):
    tree = build_call_tree(profile, selection)
    body = flamegraph(profile, selection, min_fraction=0.01)
    assert body["root_total_ns"] == tree.root_total_ns < build_call_tree(profile).root_total_ns
    check_tree_invariants(body, tree)


def test_zoom_rethresholds_under_the_node_with_its_path(profile):
    tree = build_call_tree(profile)
    coarse = flamegraph(profile, min_fraction=0.2)
    shown = {n["id"] for n in coarse["nodes"]}
    hidden = next(int(n) for n in np.argsort(-tree.total_ns) if n not in shown and tree.nodes.depth[n] >= 2)
    body = flamegraph(profile, root=hidden, min_fraction=0.2)
    assert body["root_total_ns"] == int(tree.total_ns[hidden])
    check_tree_invariants(body, tree, root=hidden)
    ancestors = []
    node = int(tree.nodes.parent[hidden])
    while node >= 0:
        ancestors.append(node)
        node = int(tree.nodes.parent[node])
    assert [p["id"] for p in body["path"]] == ancestors[::-1]
    descendants = {hidden}
    for n in range(tree.nodes.size):
        if tree.nodes.parent[n] in descendants:
            descendants.add(n)
    assert {n["id"] for n in body["nodes"] if n["kind"] != "other"} <= descendants


def test_waits_are_the_top_reasons_below_each_node(profile):
    tree = build_call_tree(profile)
    body = flamegraph(profile, min_fraction=0.01)
    for node in body["nodes"]:
        if node["kind"] == "other":
            continue
        expected = tree.waits_by_reason(node["id"])
        assert [ns for _, ns in node["waits"]] == sorted(expected.values(), reverse=True)[:3]
        assert all(expected[reason] == ns for reason, ns in node["waits"])
    other = [n for n in body["nodes"] if n["kind"] == "other" and n["wait_ns"] > 0]
    assert other and all(sum(ns for _, ns in n["waits"]) <= n["wait_ns"] and n["waits"] for n in other)


def test_functions_table_and_fn_indices(profile):
    body = flamegraph(profile, min_fraction=0.0)
    tree = build_call_tree(profile)
    table = tree.nodes.functions
    for node in body["nodes"][1:]:
        fn = body["functions"][node["fn"]]
        assert (fn["name"], fn["file"]) == (table.names[tree.nodes.function[node["id"]]], table.files[tree.nodes.function[node["id"]]])
    assert len({(f["name"], f["file"]) for f in body["functions"]}) == len(body["functions"])


def test_top_functions_sorts_and_matches_function_stats(profile):
    stats = {(s.function, s.file): s for s in function_stats(build_call_tree(profile))}
    body = top_functions(profile, sort="wait", limit=10)
    assert len(body["functions"]) == 10 and body["total_functions"] == len(stats)
    waits = [r["wait_ns"] for r in body["functions"]]
    assert waits == sorted(waits, reverse=True)
    for row in body["functions"]:
        assert row["total_ns"] == stats[(row["name"], row["file"])].total_ns
    with pytest.raises(ValueError, match="sort must be"):
        top_functions(profile, sort="name")


def brute_force_matched_ns(profile, predicate, selection=None):
    cols = profile.columns()
    keep = (selection or SampleFilter()).mask(profile)
    total = 0
    for i in np.flatnonzero(keep):
        frames = [profile.frame(f) for f in profile.stack_frames(int(cols["stack"][i]))]
        if any(predicate(f.function, f.file) for f in frames):
            total += int(cols["weight_ns"][i])
    return total


@pytest.mark.parametrize("query, regex, predicate", [
    ("f1", False, lambda fn, fl: "f1" in fn.lower() or "f1" in fl.lower()),
    ("MOD3", False, lambda fn, fl: "mod3" in fl),
    (r"^f(2|7)$", True, lambda fn, fl: fn in ("f2", "f7")),
])
def test_search_counts_each_sample_once(profile, query, regex, predicate):
    selection = SampleFilter(threads=[0, 1])
    body = search(profile, selection, query=query, regex=regex, min_fraction=0.01)
    expected = brute_force_matched_ns(profile, predicate, selection)
    assert body["matched_ns"] == expected > 0
    assert body["matched_fraction"] == pytest.approx(expected / build_call_tree(profile, selection).root_total_ns)
    shown = {n["id"] for n in flamegraph(profile, selection, min_fraction=0.01)["nodes"]}
    assert set(body["node_ids"]) <= shown and body["node_ids"]
    tree = build_call_tree(profile, selection)
    for node in body["node_ids"]:
        function = tree.nodes.function[node]
        assert predicate(tree.nodes.functions.names[function], tree.nodes.functions.files[function])
    assert body["hidden_node_count"] >= 0


def test_search_rejects_bad_queries():
    with pytest.raises(ValueError, match="invalid regular expression"):
        compile_query("(", True)
    with pytest.raises(ValueError, match="at most"):
        compile_query("x" * 201, False)
    assert compile_query("a.b", False).search("a.b") and not compile_query("a.b", False).search("axb")


@pytest.mark.parametrize("file, expected", [
    ("/usr/lib/python3.11/site-packages/requests/sessions.py", ("requests", "site-packages")),
    ("/venv/lib/python3.12/site-packages/django/db/models/query.py", ("django", "site-packages")),
    ("/usr/lib/python3/dist-packages/six.py", ("six", "site-packages")),
    ("/usr/lib/python3.11/json/decoder.py", ("json", "stdlib")),
    ("/usr/lib/python3.11/socket.py", ("socket", "stdlib")),
    ("<frozen importlib._bootstrap>", ("importlib", "stdlib")),
    ("/srv/app/shop/views.py", ("shop", "app")),
    ("main.py", ("main", "app")),
    ("libc.so.6", ("libc.so.6", "native")),
    ("", ("", "unknown")),
])
def test_classify_file(file, expected):
    assert classify_file(file) == expected
