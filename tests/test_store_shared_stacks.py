"""Shared-stack profiles: samples over a stored stack table, loaded as whole profiles."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from profviz.collect.sampler import StackSampler, samples_to_profile
from profviz.model import State
from profviz.store import Store, StoreError
from profviz.store.shared_stacks import SharedStackProfile, insert_stack_nodes


def sampled_stacks() -> tuple[StackSampler, list[int]]:
    """A sampler's table with real stacks of this thread, some sharing prefixes, one hostile name."""
    sampler = StackSampler(100)
    ident = threading.get_ident()
    stack_ids = []

    def leaf():
        stack_ids.append(sampler._stack_of(ident, sys._getframe()))

    def branch(depth):
        if depth:
            return branch(depth - 1)
        leaf()

    hostile = {}
    exec("def hostile(leaf):\n    leaf()\n", hostile)
    hostile["hostile"].__code__ = hostile["hostile"].__code__.replace(
        co_name="<img src=x onerror=alert(1)>", co_qualname="<img src=x onerror=alert(1)>", co_filename="</script>'\"&.py"
    )
    for n in range(6):
        branch(n % 3)
        leaf()
    hostile["hostile"](leaf)
    return sampler, stack_ids


def shared(sampler: StackSampler, stack_ids: list[int], source: str = "proc-a") -> SharedStackProfile:
    times = [1_000_000 * i for i in range(len(stack_ids))]
    return SharedStackProfile(
        {"kind": "request", "pid": 7, "cmdline": "GET /x", "labels": {"route": "/x"}}, source, (7, 8, "worker-1"),
        times, stack_ids, [1_000_000] * len(stack_ids), [int(State.ON_CPU if i % 3 else State.WAITING) for i in range(len(stack_ids))],
    )


def save(store: Store, profile: SharedStackProfile, sampler: StackSampler, nodes: bool = True) -> int:
    table = sampler.table
    return store.save_profiles(
        [profile], also=lambda conn, ids: insert_stack_nodes(conn, profile.source, table.nodes(0, len(table))) if nodes else None,
    )[0]


def frames_per_sample(profile) -> list[list[tuple[str, str, int]]]:
    out = []
    for node in profile.columns()["stack"]:
        frames, node = [], int(node)
        while node >= 0:
            frame = profile.frame(int(profile.stack_frame[node]))
            frames.append((frame.function, frame.file, frame.line))
            node = profile.stack_prefix[node]
        out.append(frames[::-1])
    return out


def test_a_shared_stack_profile_loads_as_the_profile_its_samples_make(tmp_path):
    sampler, stack_ids = sampled_stacks()
    store = Store(tmp_path / "s.db")
    pending = shared(sampler, stack_ids)
    profile_id = save(store, pending, sampler)
    assert pending.meta["id"] == profile_id
    loaded = store.load_profile(profile_id)
    built = samples_to_profile(
        sampler.table, list(zip(pending.times, pending.stacks, pending.states, pending.weights)),
        pid=7, tid=8, thread_name="worker-1", meta={},
    )
    assert frames_per_sample(loaded) == frames_per_sample(built) == [sampler.table.frames(s) for s in stack_ids]
    assert any(function == "<img src=x onerror=alert(1)>" for frames in frames_per_sample(loaded) for function, _, _ in frames)
    for column in ("time_ns", "weight_ns", "state"):
        assert list(loaded.columns()[column]) == list(built.columns()[column])
    assert [(t.pid, t.tid, t.name) for t in loaded.threads] == [(7, 8, "worker-1")]
    assert len(loaded.stack_prefix) == len(built.stack_prefix)  # each stack once
    meta = store.profile_meta(profile_id)
    waiting = sum(w for w, s in zip(pending.weights, pending.states) if s == int(State.WAITING))
    assert (meta["sample_count"], meta["thread_count"], meta["wait_ns"]) == (len(stack_ids), 1, waiting)
    assert meta["cpu_ns"] == sum(pending.weights) - waiting and meta["labels"] == {"route": "/x"}


def test_two_sources_with_the_same_node_ids_do_not_mix(tmp_path):
    store = Store(tmp_path / "s.db")
    first, first_ids = sampled_stacks()
    save(store, shared(first, first_ids, "proc-a"), first)
    other = StackSampler(100)
    ident = threading.get_ident()

    def elsewhere():
        return other._stack_of(ident, sys._getframe())

    other_ids = [elsewhere()]
    other_id = save(store, shared(other, other_ids, "proc-b"), other)
    assert frames_per_sample(store.load_profile(other_id)) == [other.table.frames(other_ids[0])]
    assert other_ids[0] in first_ids or other_ids[0] < len(first.table)  # the same ids exist under proc-a


def test_show_prints_a_shared_stack_profile(tmp_path):
    sampler, stack_ids = sampled_stacks()
    store = Store(tmp_path / "s.db")
    profile_id = save(store, shared(sampler, stack_ids), sampler)
    out = subprocess.run(
        [sys.executable, "-m", "profviz", "show", str(profile_id), "--json", "--store", str(tmp_path / "s.db")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert (shown["id"], shown["kind"], shown["sample_count"]) == (profile_id, "request", len(stack_ids))
    assert [(t["tid"], t["name"], t["samples"]) for t in shown["threads"]] == [(8, "worker-1", len(stack_ids))]
    functions = {f["function"]: f for f in shown["functions"]}
    assert functions["sampled_stacks.<locals>.leaf"]["samples"] == len(stack_ids)
    assert functions["<img src=x onerror=alert(1)>"]["file"] == "</script>'\"&.py"


@pytest.mark.parametrize("damage, message", [
    ("samples", "not a whole number of 32-byte samples"),
    ("head", "head is damaged"),
    ("nodes", "missing from the store"),
    ("cycle", "not a stored node before it"),
])
def test_a_damaged_shared_stack_profile_is_refused_with_a_fix(tmp_path, damage, message):
    sampler, stack_ids = sampled_stacks()
    store = Store(tmp_path / "s.db")
    profile_id = save(store, shared(sampler, stack_ids), sampler, nodes=damage != "nodes")
    if damage == "samples":
        store.transaction("test", lambda c: c.execute("UPDATE profile_data SET samples = substr(samples, 2)"))
    elif damage == "head":
        store.transaction("test", lambda c: c.execute("UPDATE profile_data SET tables = X'50565a537b'"))  # MAGIC + '{'
    elif damage == "cycle":
        store.transaction("test", lambda c: c.execute("UPDATE stack_nodes SET prefix = node + 1 WHERE node = 0"))
    with pytest.raises(StoreError, match=f"profile {profile_id} .* is damaged .*{message}.*: delete it with 'profviz delete {profile_id}'"):
        store.load_profile(profile_id)
