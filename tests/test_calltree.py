"""build_call_tree, function_stats and thread_stats against hand-computed truths."""

import numpy as np

from profviz.analysis.calltree import ROOT, SampleFilter, build_call_tree, function_stats, thread_stats
from profviz.model import Profile, State

MS = 1_000_000


def profile_with_recursion() -> Profile:
    profile = Profile()
    t0 = profile.add_thread(1, 10, "main")
    t1 = profile.add_thread(1, 11, "worker")
    cpu = profile.intern_frames([("main", "a.py", 1), ("work", "a.py", 10), ("work", "a.py", 12)])
    sleep = profile.intern_frames([("main", "a.py", 1), ("wait", "a.py", 20)])
    other_line = profile.intern_frames([("main", "a.py", 2), ("wait", "a.py", 21)])
    profile.append_sample(0, t0, cpu, 10 * MS, State.ON_CPU)
    profile.append_sample(10 * MS, t0, sleep, 30 * MS, State.WAITING, "sleep")
    profile.append_sample(40 * MS, t1, other_line, 20 * MS, State.WAITING, "socket recv 127.0.0.1:80")
    profile.append_sample(60 * MS, t1, cpu, 5 * MS, State.RUNNABLE)
    return profile


def node_named(tree, *path):
    node = ROOT
    for name in path:
        node = next(n for n in range(tree.nodes.size) if tree.nodes.parent[n] == node and tree.function_name(n) == name)
    return node


def test_totals_self_and_states_propagate():
    tree = build_call_tree(profile_with_recursion())
    assert tree.root_total_ns == 65 * MS
    main = node_named(tree, "main")
    wait = node_named(tree, "main", "wait")
    inner = node_named(tree, "main", "work", "work")
    assert tree.total_ns[main] == 65 * MS
    assert tree.total_ns[wait] == 50 * MS, "frames at different lines merge by function"
    assert tree.self_ns[inner] == 15 * MS and tree.self_ns[main] == 0
    assert tree.total_by_state[State.ON_CPU, main] == 10 * MS
    assert tree.total_by_state[State.RUNNABLE, main] == 5 * MS
    assert tree.total_samples[ROOT] == 4
    assert tree.waits_by_reason(wait) == {"sleep": 30 * MS, "socket recv 127.0.0.1:80": 20 * MS}
    assert tree.waits_by_reason(inner) == {}


def test_filters_select_threads_windows_and_states():
    profile = profile_with_recursion()
    assert build_call_tree(profile, SampleFilter(threads=[1])).root_total_ns == 25 * MS
    assert build_call_tree(profile, SampleFilter(start_ns=10 * MS, end_ns=60 * MS)).root_total_ns == 50 * MS
    assert build_call_tree(profile, SampleFilter(states=[State.WAITING])).root_total_ns == 50 * MS
    mask = np.array([True, False, False, False])
    assert build_call_tree(profile, mask=mask).root_total_ns == 10 * MS


def test_function_stats_count_recursion_once():
    stats = {f.function: f for f in function_stats(build_call_tree(profile_with_recursion()))}
    assert stats["work"].total_ns == 15 * MS, "recursive work counted once per sample"
    assert stats["work"].self_ns == 15 * MS
    assert (stats["work"].cpu_ns, stats["work"].runnable_ns) == (10 * MS, 5 * MS)
    assert stats["wait"].wait_ns == 50 * MS and stats["wait"].line == 20
    assert stats["main"].total_ns == 65 * MS and stats["main"].self_ns == 0
    assert [f.function for f in function_stats(build_call_tree(profile_with_recursion()))][0] == "main"


def test_thread_stats_split_wall_time():
    by_tid = {t.tid: t for t in thread_stats(profile_with_recursion())}
    main, worker = by_tid[10], by_tid[11]
    assert (main.wall_ns, main.cpu_ns, main.wait_ns) == (40 * MS, 10 * MS, 30 * MS)
    assert (worker.wait_ns, worker.runnable_ns) == (20 * MS, 5 * MS)
    assert worker.waits == {"socket recv 127.0.0.1:80": 20 * MS}
