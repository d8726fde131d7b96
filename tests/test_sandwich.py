"""Sandwich view: callers and callees of a function, recursion counted once, against brute force."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from profviz.analysis.calltree import SampleFilter, build_call_tree, function_stats
from profviz.analysis.flamegraph import AmbiguousFunction, FunctionNotFound
from profviz.analysis import sandwich as views
from profviz.model import Profile, State
from profviz.shapes.flame import sandwich_json
from tests.test_flamegraph import random_profile


def sandwich(profile, *args, **kwargs) -> dict:
    """The sandwich view as the API sends it."""
    return sandwich_json(views.sandwich(profile, *args, **kwargs))

MS = 1_000_000


def sample_paths(profile: Profile, selection: SampleFilter | None = None):
    """(function names root first, weight) per selected sample."""
    cols = profile.columns()
    keep = (selection or SampleFilter()).mask(profile)
    for i in np.flatnonzero(keep):
        names = [profile.frame(f).function for f in profile.stack_frames(int(cols["stack"][i]))]
        yield names, int(cols["weight_ns"][i])


def brute_force(profile, function, selection=None):
    """Totals per direct caller and per direct callee of the outermost occurrence, and the total."""
    callers, callees, total = defaultdict(int), defaultdict(int), 0
    for names, weight in sample_paths(profile, selection):
        if function not in names:
            continue
        at = names.index(function)
        total += weight
        if at > 0:
            callers[names[at - 1]] += weight
        if at + 1 < len(names):
            callees[names[at + 1]] += weight
    return dict(callers), dict(callees), total


def level_one(tree_body, functions):
    return {functions[n["fn"]]["name"]: n["total_ns"] for n in tree_body["nodes"] if n["depth"] == 1 and n["kind"] == "frame"}


@pytest.mark.parametrize("function", ["f1", "f3", "f0"])
def test_callers_and_callees_match_brute_force(function):
    profile = random_profile(seed=5, samples=1200)
    selection = SampleFilter(threads=[0, 2], states=[State.ON_CPU, State.WAITING])
    body = sandwich(profile, selection, function=function, min_fraction=0.0)
    callers, callees, total = brute_force(profile, function, selection)
    assert body["total_ns"] == total > 0
    assert body["callers"]["nodes"][0]["total_ns"] == body["callees"]["nodes"][0]["total_ns"] == total
    assert level_one(body["callers"], body["functions"]) == callers
    assert level_one(body["callees"], body["functions"]) == callees
    stats = next(s for s in function_stats(build_call_tree(profile, selection)) if s.function == function)
    assert body["total_ns"] == stats.total_ns and body["self_ns"] == stats.self_ns


def test_recursion_is_counted_once_and_callers_stop_at_the_thread_root():
    profile = Profile()
    thread = profile.add_thread(1, 1, "main")
    recursive = profile.intern_frames([("main", "a.py", 1), ("walk", "a.py", 5), ("visit", "a.py", 9), ("walk", "a.py", 5), ("leaf", "a.py", 20)])
    direct = profile.intern_frames([("walk", "a.py", 5), ("leaf", "a.py", 20)])
    profile.append_sample(0, thread, recursive, 30 * MS, State.ON_CPU)
    profile.append_sample(30 * MS, thread, direct, 10 * MS, State.WAITING, "sleep")
    body = sandwich(profile, function="walk", min_fraction=0.0)
    assert body["total_ns"] == 40 * MS, "the inner walk is not counted again"
    names = body["functions"]
    callers = body["callers"]["nodes"]
    assert callers[0]["total_ns"] == 40 * MS and callers[0]["self_ns"] == 10 * MS, "10 ms where walk is outermost"
    assert [(names[n["fn"]]["name"], n["total_ns"]) for n in callers[1:]] == [("main", 30 * MS)]
    callees = body["callees"]["nodes"]
    path = [(names[n["fn"]]["name"], n["depth"], n["total_ns"]) for n in callees]
    assert path == [("walk", 0, 40 * MS), ("visit", 1, 30 * MS), ("walk", 2, 30 * MS), ("leaf", 3, 30 * MS), ("leaf", 1, 10 * MS)]
    assert callees[0]["wait_ns"] == 10 * MS and callees[0]["cpu_ns"] == 30 * MS


def test_thresholds_fold_sandwich_branches_into_other():
    profile = random_profile(seed=5, samples=1200)
    body = sandwich(profile, function="f1", min_fraction=0.2)
    for side in ("callers", "callees"):
        nodes = body[side]["nodes"]
        for node in nodes:
            children = [c for c in nodes if c["parent"] == node["id"] and c is not nodes[0]]
            if node["kind"] != "other":
                assert node["total_ns"] == node["self_ns"] + sum(c["total_ns"] for c in children)
        assert any(n["kind"] == "other" for n in nodes), side


def test_unknown_and_ambiguous_functions():
    profile = Profile()
    thread = profile.add_thread(1, 1, "main")
    profile.append_sample(0, thread, profile.intern_frames([("run", "a.py", 1)]), MS)
    profile.append_sample(MS, thread, profile.intern_frames([("run", "b.py", 1)]), MS)
    with pytest.raises(FunctionNotFound):
        sandwich(profile, function="nope")
    with pytest.raises(AmbiguousFunction, match="a.py"):
        sandwich(profile, function="run")
    assert sandwich(profile, function="run", file="b.py")["total_ns"] == MS
