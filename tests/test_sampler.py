"""The always-on sampler: CPU/waiting states, stack caching, tail capture and route aggregates."""

from __future__ import annotations

import hashlib
import sys
import threading
import time

import pytest
from werkzeug.test import Client

from profviz.collect.sampler import StackSampler
from profviz.collect.stack_table import samples_to_profile
from profviz.analysis.calltree import build_call_tree, function_stats
from profviz.model import Profile, ProfileError, State
from profviz.store import open_store
from profviz.wsgi import ProfilerMiddleware
from tests.targets.wsgi_apps import make_app



DATA = b"x" * 4_000_000


def test_samples_are_marked_cpu_or_waiting_by_the_thread_cpu_clock():
    sampler = StackSampler(200)
    slots = {}
    stop = threading.Event()

    def worker(kind):
        slots[kind] = sampler.begin(time.perf_counter_ns())
        while not stop.is_set():
            if kind == "cpu":  # hashing a large buffer burns CPU with the GIL released: no GIL convoy
                hashlib.sha256(DATA).digest()
            else:
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(k,)) for k in ("cpu", "sleep")]
    for t in threads:
        t.start()
    for _ in range(60):
        time.sleep(0.005)
        sampler.tick()
    stop.set()
    for t in threads:
        t.join()
    cpu, sleep = (sampler.end(slots[k]) for k in ("cpu", "sleep"))
    assert len(cpu) >= 40 and len(sleep) >= 40
    cpu_share = sum(1 for s in cpu if s[2] == State.ON_CPU) / len(cpu)
    sleep_cpu_share = sum(1 for s in sleep if s[2] == State.ON_CPU) / len(sleep)
    # the hashing thread only gets the CPU the box gives it (a loaded 2-core box gives it about half,
    # and descheduled time counts as waiting), so compare against the sleeping thread, not 100 %
    assert sleep_cpu_share < 0.1 and cpu_share > sleep_cpu_share + 0.2, (cpu_share, sleep_cpu_share)
    profile = samples_to_profile(sampler.table, sleep, pid=1, tid=2, thread_name="sleeper", meta={"kind": "request"})
    names = {f.function for f in function_stats(build_call_tree(profile))}
    assert "test_samples_are_marked_cpu_or_waiting_by_the_thread_cpu_clock.<locals>.worker" in names
    times = [s[0] for s in sleep]
    assert times == sorted(times) and all(s[3] > 0 for s in sleep)


def test_cached_stacks_match_a_full_walk():
    sampler = StackSampler(100)
    ready, stop = threading.Event(), threading.Event()
    slot = {}

    def level3(n):
        if n == 0:
            time.sleep(0.001)
            return
        level3(n - 1)

    def target():
        slot["s"] = sampler.begin(time.perf_counter_ns())
        ready.set()
        i = 0
        while not stop.is_set():
            level3(i % 4)
            i += 1

    thread = threading.Thread(target=target)
    thread.start()
    ready.wait()
    for _ in range(50):
        sampler.tick()
        frame = __import__("sys")._current_frames().get(thread.ident)
        time.sleep(0.002)
    stop.set()
    thread.join()
    samples = sampler.end(slot["s"])
    assert samples
    depths = set()
    for _, stack, _, _, _ in samples:
        frames = sampler.table.frames(stack)
        names = [f[0] for f in frames]
        assert names[-1] in ("target.<locals>.level3", "test_cached_stacks_match_a_full_walk.<locals>.level3", "sleep") or names
        recursion = names.count("test_cached_stacks_match_a_full_walk.<locals>.level3")
        depths.add(recursion)
        # the stack is a valid chain: every level3 call sits under target, and lines are real line numbers
        assert "test_cached_stacks_match_a_full_walk.<locals>.target" in names
        assert all(line > 0 for _, _, line in frames)
    assert len(depths) >= 2  # the cache follows the stack as it changes depth
    del frame


def _stack_recorder(sampler: StackSampler, seen: list):
    """A function named ``helper`` that appends (the sampler's stack of its own frame, as (function,
    line) pairs; the same stack as the traceback module reads it) to ``seen`` each time it is called."""
    import sys
    import traceback

    ident = threading.get_ident()

    def helper():
        frame = sys._getframe()
        stack, expected = sampler._stack_of(ident, frame), [(f.name, f.lineno) for f in traceback.extract_stack(frame)]
        got = [(name.rsplit(".", 1)[-1], line) for name, _, line in sampler.table.frames(stack)]
        seen.append((got, expected))

    return helper


def test_cached_stacks_follow_the_same_helper_called_from_different_callers():
    """The cache reuses only the common root part of consecutive stacks: a helper at the same
    instruction under another caller (or a new call of the same function) gets its real callers."""
    sampler = StackSampler(100)
    seen = []
    helper = _stack_recorder(sampler, seen)

    def caller_a():
        helper()

    def caller_b():
        helper()

    for _ in range(3):
        caller_a()
        caller_b()
        caller_b()
        helper()
    assert len(seen) == 12
    for got, expected in seen:
        assert got == expected
    assert {got[-2][0] for got, _ in seen} == {"caller_a", "caller_b", "test_cached_stacks_follow_the_same_helper_called_from_different_callers"}


def test_held_frames_never_lend_their_callers_to_a_generator_resumed_from_elsewhere():
    """A generator's frame sits at the same depth, code and instruction whoever resumes it: it must
    never be the known frame a walk stops at, or the first resumer's callers would be reused."""
    sampler = StackSampler(100)
    seen = []
    helper = _stack_recorder(sampler, seen)

    def generator():
        while True:
            helper()
            yield

    resumed = generator()

    def resume_a():
        next(resumed)

    def resume_b():
        next(resumed)

    for resume in (resume_a, resume_a, resume_a, resume_b, resume_b, resume_a, resume_b):
        resume()
    assert len(seen) == 7
    for got, expected in seen:
        assert got == expected
    assert [got[-3][0] for got, _ in seen] == ["resume_a"] * 3 + ["resume_b"] * 2 + ["resume_a", "resume_b"]
    assert sampler._frame_cache[threading.get_ident()].held  # the root part was known: the walks did stop early


def test_a_returned_call_is_released_by_the_next_tick_and_known_frames_give_the_right_stacks():
    import weakref

    sampler = StackSampler(100)
    refs, slot = [], {}
    started, leave_inner, returned, stop = (threading.Event() for _ in range(4))

    class Marker:
        pass

    def burn_until(event):  # runs between ticks, so every tick walks this thread's stack
        while not event.is_set():
            sum(range(300))
            time.sleep(0.0005)

    def inner():
        marker = Marker()
        refs.append(weakref.ref(marker))
        started.set()
        burn_until(leave_inner)

    def outer():
        inner()
        returned.set()
        burn_until(stop)

    def worker():
        slot["s"] = sampler.begin(time.perf_counter_ns())
        outer()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        started.wait()
        deadline = time.monotonic() + 10
        while not (sampler._frame_cache.get(thread.ident) and sampler._frame_cache[thread.ident].held):
            assert time.monotonic() < deadline, "the sampler never came to hold a frame of the busy thread"
            time.sleep(0.004)
            sampler.tick()
        for _ in range(5):
            time.sleep(0.004)
            sampler.tick()
        before = len(slot["s"].samples)
        leave_inner.set()
        returned.wait()
        while len(slot["s"].samples) == before:  # the first sample since inner() returned
            assert time.monotonic() < deadline
            time.sleep(0.004)
            sampler.tick()
        assert refs[0]() is None  # inner's frame (and its locals) let go by that very tick
        for _ in range(5):
            time.sleep(0.004)
            sampler.tick()
    finally:
        leave_inner.set()
        stop.set()
        thread.join()
    samples = sampler.end(slot["s"])
    stacks = [[name.rsplit(".", 1)[-1] for name, _, _ in sampler.table.frames(s[1])] for s in samples]
    in_inner = [names for names in stacks[:before]]
    after = [names for names in stacks[before:]]
    assert len(in_inner) >= 5 and len(after) >= 5
    for names in in_inner + after:
        assert names[-1] in ("burn_until", "is_set") and names[names.index("worker"):][:2] == ["worker", "outer"], names
    assert all(names[names.index("outer") + 1] == "inner" for names in in_inner)
    assert all(names[names.index("outer") + 1] == "burn_until" for names in after)  # not inner's stale callers


def test_profiles_from_samples_have_the_sampled_stacks_with_shared_prefixes_converted_once():
    import sys

    from profviz.model import Profile

    sampler = StackSampler(100)
    ident = threading.get_ident()
    stack_ids = []

    def leaf(n):
        stack_ids.append(sampler._stack_of(ident, sys._getframe()))

    def branch(depth, n):
        if depth:
            return branch(depth - 1, n)
        leaf(n)

    for n in range(6):
        branch(n % 3, n)
        leaf(n)
    samples = [(1_000 * i, stack, int(State.ON_CPU if i % 2 else State.WAITING), 1_000, None if i % 2 else f"socket recv db:{i % 4}")
               for i, stack in enumerate(stack_ids)]
    profile = samples_to_profile(sampler.table, samples, pid=1, tid=2, thread_name="t", meta={"kind": "request"})
    expected = Profile({})
    for stack in stack_ids:
        expected.intern_frames(sampler.table.frames(stack))
    for index, stack in enumerate(stack_ids):
        got, node = [], int(profile.columns()["stack"][index])
        while node >= 0:
            got.append(profile.frame(int(profile.stack_frame[node])))
            node = profile.stack_prefix[node]
        assert [(f.function, f.file, f.line) for f in reversed(got)] == sampler.table.frames(stack)
    assert len(profile.stack_prefix) == len(expected.stack_prefix)  # no stack node interned twice
    assert list(profile.columns()["state"]) == [s[2] for s in samples]
    assert [profile.strings[r] if r >= 0 else None for r in profile.columns()["reason"]] == [s[4] for s in samples]


def test_a_tick_pauses_the_garbage_collector_only_while_it_holds_frames_and_restores_its_state():
    import gc

    sampler = StackSampler(100)
    seen_enabled = []
    stop = threading.Event()
    ready = threading.Event()

    def worker():
        slot = sampler.begin(time.perf_counter_ns())
        ready.set()
        while not stop.is_set():
            sum(range(1000))
        sampler.end(slot)

    original_stack_of = sampler._stack_of

    def stack_of(ident, leaf, same_request=True):
        seen_enabled.append(gc.isenabled())
        return original_stack_of(ident, leaf, same_request)

    sampler._stack_of = stack_of
    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait()
    was_enabled = gc.isenabled()
    try:
        for enabled in (True, False, True):
            (gc.enable if enabled else gc.disable)()
            for _ in range(3):
                time.sleep(0.003)
                sampler.tick()
            assert gc.isenabled() is enabled
    finally:
        (gc.enable if was_enabled else gc.disable)()
        stop.set()
        thread.join()
    assert seen_enabled and not any(seen_enabled)


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "p.db") as s:
        yield s


def test_tail_capture_keeps_slow_requests_and_drops_typical_ones(store):
    middleware = ProfilerMiddleware(
        make_app(), store=store, tail_percentile=90, tail_min_requests=20, baseline_per_minute=0, tail_max_per_minute=600,
    )
    client = Client(middleware)
    try:
        # typical requests: one in ten a little longer, so the running P90 falls in a gap well above
        # the common duration (equal durations would put it within the box's timing noise)
        for i in range(60):
            path = "/sleep/120" if i >= 40 and i % 5 == 0 else ("/sleep/40" if i % 10 == 3 else "/sleep/30")
            client.get(path).close()
        assert middleware.flush()
        rows = store.query_requests()
        slow = [r for r in rows if r.path == "/sleep/120"]
        typical = [r for r in rows if r.path in ("/sleep/30", "/sleep/40")]
        assert len(slow) == 4 and len(typical) == 56
        assert all(r.profile_id is not None for r in slow)
        # after the route's first 20, typical requests are kept only when they land above the running
        # P90 themselves: about 10 % of them; before, only each new slowest one (a few records)
        warm = [r for r in typical if r.id > 20]
        assert sum(r.profile_id is not None for r in warm) <= 0.15 * len(warm)
        assert sum(r.profile_id is not None for r in typical if r.id <= 20) <= 8
        stats = middleware.stats
        assert stats["profiles_tail"] == sum(r.profile_id is not None for r in rows)
        assert stats["typical_dropped"] >= 45
        profile = store.load_profile(slow[0].profile_id)
        assert profile.meta["kind"] == "request" and profile.meta["labels"]["capture"] == "tail"
        assert profile.meta["labels"]["route"] == "/sleep/{int}" and profile.sample_count >= 8
        waits = build_call_tree(profile).total_by_state[State.WAITING, 0]
        assert waits > 0.8 * build_call_tree(profile).root_total_ns
        aggregates = store.list_profiles(kind="route-aggregate")
        assert len(aggregates) == 1 and aggregates[0]["labels"]["requests"] == 60
        assert aggregates[0]["labels"]["route"] == "/sleep/{int}"
    finally:
        middleware.close()


def test_fixed_threshold_and_baseline_capture(store):
    middleware = ProfilerMiddleware(
        make_app(), store=store, tail_threshold_ms=80, tail_percentile=None, tail_min_requests=5, baseline_per_minute=2,
    )
    client = Client(middleware)
    try:
        for i in range(36):
            client.get("/sleep/100" if i in (3, 9) else f"/sleep/{10 + i % 3}").close()
        assert middleware.flush()
        rows = store.query_requests()
        captures = {r.path: store.profile_meta(r.profile_id)["labels"]["capture"] for r in rows if r.profile_id}
        assert captures.get("/sleep/100") == "tail"
        kinds = {r.id: store.profile_meta(r.profile_id)["labels"]["capture"] for r in rows if r.profile_id}
        assert all(kinds.get(r.id) == "tail" for r in rows if r.path == "/sleep/100")
        assert all((kinds.get(r.id) == "tail") == (r.duration_ns >= 80e6) for r in rows)  # the fixed threshold decides
        assert 1 <= list(kinds.values()).count("baseline") <= 2  # the per-minute baseline budget
    finally:
        middleware.close()


def test_sampler_runs_once_per_process_and_its_cost_is_counted(store):
    first = ProfilerMiddleware(make_app(), store=store)
    second = ProfilerMiddleware(make_app(), store=store)
    try:
        Client(first).get("/sleep/30").close()
        Client(second).get("/sleep/30").close()
        assert first.recorder.sampler is second.recorder.sampler
        names = [t.name for t in threading.enumerate()]
        assert names.count("profviz-sampler") == 1
        assert first.stats["sampler"]["ticks"] > 0 and first.stats["sampler"]["cpu_s"] >= 0
    finally:
        first.close()
        second.close()


def test_a_new_profile_gets_the_tables_and_samples_the_interning_path_builds():
    """samples_to_profile fills a new profile directly; an existing profile goes through
    StackConverter and append_sample: both give the same tables, samples, and further interning."""
    sampler = StackSampler(100)
    ident = threading.get_ident()
    stack_ids = []

    def leaf():
        stack_ids.append(sampler._stack_of(ident, sys._getframe()))

    def recurse(depth):
        if depth:
            return recurse(depth - 1)
        leaf()

    for depth in (0, 2, 4, 2, 11, 9):  # deeper than PREFIX_EVERY: the table remembers prefixes of first stacks
        recurse(depth)
        leaf()
    samples = [(5_000 + 1_000 * i, stack, int(State.ON_CPU if i % 3 else State.WAITING), 700 + i, None if i % 3 else "sleep")
               for i, stack in enumerate(stack_ids)]
    for first in (8, 10, 0, 8, 11, 9):  # profiles starting from remembered stacks and prefixes, and from new ones
        reordered = samples[first:] + samples[:first]
        once = samples_to_profile(sampler.table, reordered, pid=7, tid=8, thread_name="t", meta={})
        interned = samples_to_profile(sampler.table, reordered, pid=7, tid=8, thread_name="t", meta={}, profile=Profile({}))
        assert once.strings == interned.strings and once.frame_line == interned.frame_line, first
        assert once.stack_prefix == interned.stack_prefix and once.stack_frame == interned.stack_frame, first
        assert once.columns()["stack"].tolist() == interned.columns()["stack"].tolist(), first
    assert sampler.table.profile_prefixes  # the prefix memory was used
    fast = samples_to_profile(sampler.table, samples, pid=7, tid=8, thread_name="t", meta={"kind": "request", "x": 1})
    slow = samples_to_profile(sampler.table, samples, pid=7, tid=8, thread_name="t", meta={}, profile=Profile({"kind": "request", "x": 1}))
    assert fast.meta == slow.meta and fast.threads == slow.threads
    assert fast.strings == slow.strings
    for name in ("frame_function", "frame_file", "frame_line", "stack_prefix", "stack_frame"):
        assert getattr(fast, name) == getattr(slow, name) and getattr(fast, name).typecode == "i", name
    for name, column in slow.columns().items():
        assert fast.columns()[name].tolist() == column.tolist() and fast.columns()[name].dtype == column.dtype, name
    assert len(slow.frame_function) < len(slow.stack_prefix)  # the recursion's frames are shared by several stacks
    for profile in (fast, slow):  # the interning indexes are in place: known frames are found, new ones appended
        assert profile.intern_frames(sampler.table.frames(stack_ids[-1])) == profile.columns()["stack"][-1]
        profile.append_sample(99_000, 0, profile.intern_frames([("extra", "x.py", 3)]), 10, State.ON_CPU)
    assert fast.strings == slow.strings and fast.stack_prefix == slow.stack_prefix


def test_samples_to_profile_rejects_samples_the_model_would_reject():
    sampler = StackSampler(100)
    stack = sampler._stack_of(threading.get_ident(), sys._getframe())
    for bad in ((1_000, stack, int(State.ON_CPU), 0, None), (-1, stack, int(State.ON_CPU), 10, None), (1_000, stack, 9, 10, None),
                (1_000, stack, int(State.ON_CPU), 10, "sleep")):
        with pytest.raises(ProfileError):
            samples_to_profile(sampler.table, [bad], pid=1, tid=2, thread_name="t", meta={})


def _parked_request(parked: threading.Semaphore, go: threading.Semaphore, on_leaf=None):
    """``request(depth)``: recurses ``depth`` calls deep, then calls ``on_leaf()`` (if given),
    releases ``parked`` and waits for ``go`` (a request the test can sample where it stands)."""

    def request(depth):
        if depth:
            return request(depth - 1)
        if on_leaf is not None:
            on_leaf()
        parked.release()
        go.acquire()

    return request

def test_a_new_request_each_tick_holds_a_few_frames_and_the_walk_stops_at_the_server_loop():
    """Each tick finds the thread in a new call chain (same code, same offsets, new frames) above a
    loop that outlives them: the sampler holds the loop's frame, and only two frames above it."""
    sampler = StackSampler(100)
    go, parked = threading.Semaphore(0), threading.Semaphore(0)

    request = _parked_request(parked, go)

    def server_loop():
        sampler.begin(time.perf_counter_ns(), 0)
        for _ in range(13):
            request(20)

    thread = threading.Thread(target=server_loop)
    thread.start()
    try:
        for _ in range(12):
            parked.acquire()
            sampler.tick()
            go.release()
        cached = sampler._frame_cache[thread.ident]
        loop_depth = next(i for i, stack in enumerate(cached.ids) if sampler.table.code[stack] is server_loop.__code__)
        held_depths = sorted(cached.held.values())
        assert loop_depth in held_depths and len(held_depths) <= loop_depth + 3, (loop_depth, held_depths)
        stacks = {sample[1] for sample in sampler.active[thread.ident].samples}
        assert len(stacks) == 1  # every request's stack is the same stack
    finally:
        for _ in range(14):  # lets every remaining request through, wherever the test stopped
            go.release()
        thread.join(10)



def test_the_first_sample_of_each_request_holds_nothing_above_the_server_loop():
    """Each tick finds a new request (its own slot) above a loop that outlives them: the first
    sample of a request holds none of its frames (they end before the next tick), the held
    frames climb once past the loop, learn where frames stop outliving requests, and stay there;
    every stack is still the real one."""
    import sys
    import traceback

    sampler = StackSampler(100)
    go, parked = threading.Semaphore(0), threading.Semaphore(0)
    expected = []

    request = _parked_request(parked, go, lambda: expected.append(
        [(f.name, f.lineno) for f in traceback.extract_stack(sys._getframe(1))]  # request's frame, at its on_leaf() call
    ))

    def server_loop():
        for _ in range(13):
            slot = sampler.begin(time.perf_counter_ns(), 0)
            request(20 + len(expected) % 3)
            sampler.end(slot)

    thread = threading.Thread(target=server_loop)
    thread.start()
    stacks = []
    try:
        for _ in range(12):
            parked.acquire()
            sampler.tick()
            stacks.append(sampler.active[thread.ident].samples[-1][1])
            go.release()
        cached = sampler._frame_cache[thread.ident]
        loop_depth = next(i for i, stack in enumerate(cached.ids) if sampler.table.code[stack] is server_loop.__code__)
        assert sorted(cached.held.values()) == list(range(loop_depth + 1))  # the loop and below, nothing above
        assert cached.floor == loop_depth + 1
    finally:
        for _ in range(14):
            go.release()
        thread.join(10)
    assert len(stacks) == 12 and len({len(frames) for frames in expected}) == 3
    for stack, frames in zip(stacks, expected):
        got = [(name.rsplit(".", 1)[-1], line) for name, _, line in sampler.table.frames(stack)]
        at = len(frames) - 1  # the innermost request call; above it, go.acquire()'s frames
        assert got[:at] == frames[:-1]
        assert got[at] == ("request", frames[-1][1] + 2)  # two lines below on_leaf(): go.acquire()
        assert got[at + 1][0] == "acquire"



def test_a_thread_between_requests_keeps_only_its_loop_frames_held_and_a_gone_thread_is_forgotten():
    """A tick that finds a server thread between requests lets go of its request's frames but keeps
    the loop's (its next request's walk stops there); a thread that has ended is forgotten."""
    sampler = StackSampler(100)
    go, parked, idle, resume = (threading.Semaphore(0) for _ in range(4))
    other_started, other_stop = threading.Event(), threading.Event()

    request = _parked_request(parked, go)

    def server_loop():
        for _ in range(8):
            slot = sampler.begin(time.perf_counter_ns(), 0)
            request(15)
            sampler.end(slot)
            idle.release()
            resume.acquire()

    def other_request():  # keeps one slot active, so ticks do sample
        slot = sampler.begin(time.perf_counter_ns(), 0)
        other_started.set()
        other_stop.wait()
        sampler.end(slot)

    other = threading.Thread(target=other_request)
    other.start()
    other_started.wait()
    thread = threading.Thread(target=server_loop)
    thread.start()
    try:
        for _ in range(8):
            parked.acquire()
            sampler.tick()  # in a request
            go.release()
            idle.acquire()
            sampler.tick()  # between requests
            cached = sampler._frame_cache[thread.ident]
            assert all(depth < cached.floor for depth in cached.held.values())
            resume.release()
        loop_depth = next(i for i, stack in enumerate(cached.ids) if sampler.table.code[stack] is server_loop.__code__)
        assert sorted(cached.held.values()) == list(range(loop_depth + 1)) and cached.floor == loop_depth + 1
        thread.join(10)
        sampler.tick()
        assert thread.ident not in sampler._frame_cache  # ended: forgotten
    finally:
        for _ in range(9):
            go.release()
            resume.release()
        other_stop.set()
        thread.join(10)
        other.join(10)
