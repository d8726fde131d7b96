"""The time-ordered flame chart: exact intervals, gaps, pixel reduction, state lanes, node ids."""

from __future__ import annotations

import pytest

from profviz.analysis.calltree import node_table
from profviz.analysis import timeline as views
from profviz.model import Profile, State
from profviz.shapes.flame import timeline_json
from tests.test_flamegraph import flamegraph, random_profile


def timeline(profile, **kwargs) -> dict:
    """The flame chart as the API sends it."""
    return timeline_json(views.timeline(profile, **kwargs))

MS = 1_000_000
ORIGIN = 1_000 * MS


def hand_profile() -> Profile:
    """Thread 0: A A B C C A at 0..50 ms, then nothing until A A at 200 ms. Thread 1: one sample."""
    profile = Profile({"start_ns": ORIGIN})
    main = profile.add_thread(1, 1, "main")
    other = profile.add_thread(1, 2, "other")
    a = profile.intern_frames([("main", "m.py", 1), ("a", "m.py", 2)])
    b = profile.intern_frames([("main", "m.py", 1), ("b", "m.py", 3)])
    c = profile.intern_frames([("main", "m.py", 1), ("b", "m.py", 3), ("c", "m.py", 4)])
    plan = [(0, a, State.ON_CPU, None), (10, a, State.ON_CPU, None), (20, b, State.WAITING, "lock"),
            (30, c, State.WAITING, "lock"), (40, c, State.WAITING, "sleep"), (50, a, State.RUNNABLE, None),
            (200, a, State.ON_CPU, None), (210, a, State.ON_CPU, None)]
    for ms, stack, state, reason in plan:
        profile.append_sample(ORIGIN + ms * MS, main, stack, 10 * MS, state, reason)
    profile.append_sample(ORIGIN + 5 * MS, other, c, 10 * MS, State.ON_CPU)
    return profile


def named(body, thread=0):
    """Per depth: [(function name, start ms, end ms)] of a thread."""
    fn_of = dict(zip(body["nodes"]["id"], body["nodes"]["fn"]))
    out = []
    for level in body["threads"][thread]["depths"]:
        out.append([(body["functions"][fn_of[n]]["name"], s // MS, e // MS)
                    for n, s, e in zip(level["node"], level["start_ns"], level["end_ns"])])
    return out


def test_one_sample_per_pixel_gives_exact_runs_and_gaps():
    profile = hand_profile()
    body = timeline(profile, threads=[0], start_ns=ORIGIN, end_ns=ORIGIN + 220 * MS, width=22, origin_ns=ORIGIN)
    assert body["pixel_ns"] == 10 * MS and body["start_ns"] == 0 and body["end_ns"] == 220 * MS
    assert named(body) == [
        [("main", 0, 60), ("main", 200, 220)],
        [("a", 0, 20), ("b", 20, 50), ("a", 50, 60), ("a", 200, 220)],
        [("c", 30, 50)],
    ]
    lane = body["threads"][0]["states"]
    assert list(zip(lane["state"], lane["reason"], [s // MS for s in lane["start_ns"]], [e // MS for e in lane["end_ns"]])) == [
        ("cpu", None, 0, 20), ("waiting", "lock", 20, 40), ("waiting", "sleep", 40, 50), ("runnable", None, 50, 60),
        ("cpu", None, 200, 220),
    ]
    assert body["threads"][0]["samples"] == 8 and body["threads"][0]["max_depth"] == 3


def test_narrow_width_shows_the_first_sample_of_each_pixel():
    profile = hand_profile()
    body = timeline(profile, threads=[0], start_ns=ORIGIN, end_ns=ORIGIN + 60 * MS, width=3, origin_ns=ORIGIN)
    assert body["pixel_ns"] == 20 * MS
    assert named(body) == [[("main", 0, 60)], [("a", 0, 20), ("b", 20, 60)], [("c", 40, 60)]]


def test_window_clips_and_threads_select():
    profile = hand_profile()
    body = timeline(profile, start_ns=ORIGIN + 25 * MS, end_ns=ORIGIN + 45 * MS, width=100, origin_ns=ORIGIN)
    assert [t["name"] for t in body["threads"]] == ["main", "other"]
    assert named(body, 0)[1] == [("b", 30, 45)], "samples at 30 and 40 ms, clipped at the window end"
    assert body["threads"][1]["samples"] == 0 and body["threads"][1]["depths"] == []


def test_node_ids_are_the_flame_graph_ids():
    profile = random_profile(seed=4, samples=2000)
    body = timeline(profile, width=200, origin_ns=0)
    nodes = node_table(profile)
    for node_id, parent, depth in zip(body["nodes"]["id"], body["nodes"]["parent"], body["nodes"]["depth"]):
        assert nodes.parent[node_id] == parent and nodes.depth[node_id] == depth
    flame_ids = {n["id"] for n in flamegraph(profile, min_fraction=0.0)["nodes"]}
    assert set(body["nodes"]["id"]) <= flame_ids
    ids = set(body["nodes"]["id"])
    assert all(p in ids or p == 0 for p in body["nodes"]["parent"]), "every ancestor is described"


def test_response_is_bounded_by_the_pixel_width():
    profile = random_profile(seed=4, samples=3000)
    for width in (10, 100):
        body = timeline(profile, width=width, origin_ns=0)
        for thread in body["threads"]:
            assert thread["samples"] == 1000
            for level in thread["depths"]:
                assert len(level["node"]) <= width
                starts, ends = level["start_ns"], level["end_ns"]
                assert all(s < e for s, e in zip(starts, ends))
                assert all(e <= s for e, s in zip(ends, starts[1:])), "intervals of a depth do not overlap"
            assert len(thread["states"]["state"]) <= width


def test_width_is_checked():
    with pytest.raises(ValueError, match="width"):
        timeline(hand_profile(), width=0)
