"""Task-aware sampling (profviz/collect/tasks.py) on real event loops in this process: what a
suspended request awaits, requests' spawned tasks, ready tasks, and loop stalls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from profviz.collect.sampler import StackSampler
from profviz.collect.tasks import TaskSampling
from profviz.model import State


class Info:
    """What the sampler keeps of a request (the engine's RequestInfo, reduced)."""

    def __init__(self, name: str):
        self.id, self.method, self.path, self.route, self.finished = name, "GET", "/" + name, None, False


@pytest.fixture
def sampler():
    made = StackSampler(200)
    yield made
    made.stop()


def run_requests(sampler: StackSampler, requests: dict, stalls: list | None = None) -> dict[str, list]:
    """Run each ``name -> coroutine function`` as a request task on a new loop, sampled; their samples by name."""
    samples: dict[str, list] = {}

    async def request(name, work):
        slot = sampler.begin_task(Info(name), time.perf_counter_ns(), 100_000_000, None if stalls is None else stalls.append)
        try:
            await work()
        finally:
            samples[name] = sampler.end_task(slot)

    async def main():
        sampler.ensure_running()
        await asyncio.gather(*(request(name, work) for name, work in requests.items()))

    asyncio.run(main())
    return samples


def shares(sampler: StackSampler, samples: list) -> Counter:
    """ms by (state name, reason) of one request's samples."""
    total = Counter()
    for _, _, state, weight, reason in samples:
        total[(State(state).name, reason)] += weight / 1e6
    return total


def functions(sampler: StackSampler, samples: list, state: State) -> set[str]:
    """The functions (their last name, ``<locals>`` and classes aside) on the stacks of the samples in ``state``."""
    return {name.rsplit(".", 1)[-1] for _, stack, sample_state, _, _ in samples if sample_state == int(state)
            for name, _, _ in sampler.table.frames(stack)}


def main_share(found: Counter) -> tuple[tuple, float]:
    (key, ms), = found.most_common(1)
    return key, ms / sum(found.values())


def test_what_a_suspended_request_awaits(sampler):
    """sleep, a socket read with its peer, an asyncio Lock held elsewhere, an empty Queue, an Event,
    a thread pool (to_thread and run_in_executor: what the pool thread does, time.sleep): each
    request waits >= 80% on its own reason."""
    lock, queue, event = asyncio.Lock(), None, None

    async def peer_server():
        async def answer(reader, writer):
            await asyncio.sleep(0.3)
            writer.write(b"late")
            await writer.drain()
            writer.close()
        return await asyncio.start_server(answer, "127.0.0.1", 0)

    state = {}

    async def sleeping():
        await asyncio.sleep(0.3)

    async def reading():
        reader, writer = await asyncio.open_connection("127.0.0.1", state["port"])
        await reader.read(4)
        writer.close()

    async def locked():
        await asyncio.sleep(0.01)
        async with lock:
            pass

    async def holder():
        async with lock:
            await asyncio.sleep(0.3)

    async def queued():
        await state["queue"].get()

    async def evented():
        await state["event"].wait()

    async def threaded():
        await asyncio.to_thread(time.sleep, 0.3)

    async def executed():
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.3)

    async def releaser():
        await asyncio.sleep(0.3)
        state["queue"].put_nowait(1)
        state["event"].set()

    async def setup():
        server = await peer_server()
        state["port"] = server.sockets[0].getsockname()[1]
        state["queue"], state["event"] = asyncio.Queue(), asyncio.Event()
        return server

    samples: dict[str, list] = {}

    async def main():
        server = await setup()
        sampler.ensure_running()

        async def request(name, work):
            slot = sampler.begin_task(Info(name), time.perf_counter_ns(), 100_000_000, None)
            await work()
            samples[name] = sampler.end_task(slot)

        jobs = {"sleeping": sleeping, "reading": reading, "holder": holder, "locked": locked, "queued": queued,
                "evented": evented, "threaded": threaded, "executed": executed, "releaser": releaser}
        await asyncio.gather(*(request(name, work) for name, work in jobs.items()))
        server.close()

    asyncio.run(main())
    expected = {
        "sleeping": "sleep", "reading": f"socket recv 127.0.0.1:{state['port']}", "locked": "lock (asyncio.Lock)",
        "queued": "asyncio.Queue get", "evented": "asyncio.Event wait",
        "threaded": "sleep", "executed": "sleep",  # what the pool thread running the call does (time.sleep)
    }
    for name, reason in expected.items():
        key, share = main_share(shares(sampler, samples[name]))
        assert key == ("WAITING", reason) and share >= 0.8, (name, shares(sampler, samples[name]))
    assert "holder" in functions(sampler, samples["holder"], State.WAITING)


def test_gather_and_task_groups_are_followed_into_their_tasks(sampler):
    """A request waiting on gather() or a TaskGroup shows its pending tasks' waits under its own frame."""

    async def leaf_wait():
        await asyncio.sleep(0.3)

    async def gathering():
        await asyncio.gather(leaf_wait(), leaf_wait())

    async def grouping():
        async with asyncio.TaskGroup() as group:
            group.create_task(leaf_wait())

    async def awaiting_a_task():
        await asyncio.create_task(leaf_wait())

    samples = run_requests(sampler, {"gathering": gathering, "grouping": grouping, "awaiting": awaiting_a_task})
    for name, outer in (("gathering", "gathering"), ("grouping", "grouping"), ("awaiting", "awaiting_a_task")):
        key, share = main_share(shares(sampler, samples[name]))
        assert key == ("WAITING", "sleep") and share >= 0.8, (name, shares(sampler, samples[name]))
        assert {outer, "leaf_wait"} <= functions(sampler, samples[name], State.WAITING), name


def test_a_spawned_task_computing_counts_for_its_request_and_others_wait_their_turn(sampler):
    """A task a request creates runs on the loop for 0.3 s: its request's samples are computing in
    the child's frames under the parent's; another request, ready meanwhile, is RUNNABLE."""

    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    async def computing_child():
        spin(0.3)

    async def parent():
        await asyncio.create_task(computing_child())

    async def patient():
        await asyncio.sleep(0.02)  # ready from here on, behind the child's computing
        await asyncio.sleep(0)

    samples = run_requests(sampler, {"parent": parent, "patient": patient})
    found = shares(sampler, samples["parent"])
    computing = found[("ON_CPU", None)] + found[("GIL", None)] + found[("RUNNABLE", None)]
    # computing: on a CPU, or (when other processes take the CPUs) waiting for one or for the GIL,
    # which the sampler holds while it reads the loop thread's state
    assert found[("ON_CPU", None)] > 0 and computing >= 0.8 * sum(found.values()), found
    assert {"parent", "computing_child", "spin"} <= functions(sampler, samples["parent"], State.ON_CPU)
    key, share = main_share(shares(sampler, samples["patient"]))
    assert key == ("RUNNABLE", None) and share >= 0.8, shares(sampler, samples["patient"])


def test_a_blocking_call_is_a_stall_with_its_stack_and_the_requests_it_delayed(sampler):
    """time.sleep(0.25) inside a request holds the loop: one stall of ~250 ms, run by that request,
    its samples in the blocking function, 20 other requests delayed (and RUNNABLE meanwhile);
    awaiting the same time is no stall."""
    stalls: list = []

    async def blocking_call():
        await asyncio.sleep(0.05)
        time.sleep(0.25)

    async def waiting():
        await asyncio.sleep(0.4)

    requests = {"blocker": blocking_call, **{f"other{n}": waiting for n in range(20)}}
    samples = run_requests(sampler, requests, stalls)
    [stall] = stalls
    assert 0.2e9 <= stall.duration_ns <= 0.35e9 and stall.blocker.id == "blocker"
    assert sorted(info.id for info in stall.delayed) == sorted(f"other{n}" for n in range(20))
    assert "blocking_call" in functions(sampler, stall.samples, State.WAITING)
    sleeping = sum(weight for _, _, _, weight, reason in stall.samples if reason == "sleep")
    # the loop thread's state: in time.sleep (a tick may also catch the step's own code around it)
    assert sleeping >= 0.8 * sum(weight for _, _, _, weight, _ in stall.samples), stall.samples
    assert shares(sampler, samples["other0"])[("RUNNABLE", None)] >= 150
    assert shares(sampler, samples["blocker"])[("WAITING", "sleep")] >= 200

    stalls.clear()

    async def awaiting():
        await asyncio.sleep(0.05)
        await asyncio.sleep(0.25)

    run_requests(sampler, {"awaiting": awaiting, **{f"other{n}": waiting for n in range(20)}}, stalls)
    assert stalls == []


def test_spawned_tasks_are_attributed_through_an_apps_own_task_factory(sampler):
    """An app's own task factory keeps working: profviz's wraps it, and the tasks it makes still count."""
    made = []

    def app_factory(loop, coro, **kwargs):
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def child():
        await asyncio.sleep(0.2)

    async def request_work():
        await asyncio.create_task(child())

    samples: dict = {}

    async def main():
        asyncio.get_running_loop().set_task_factory(app_factory)
        sampler.ensure_running()
        slot = sampler.begin_task(Info("r"), time.perf_counter_ns(), 100_000_000, None)
        await request_work()
        samples["r"] = sampler.end_task(slot)

    asyncio.run(main())
    assert made and {"request_work", "child"} <= functions(sampler, samples["r"], State.WAITING)


def test_a_request_outside_any_task_is_not_sampled(sampler):
    async def plain():
        return sampler.begin_task(Info("x"), time.perf_counter_ns(), 100_000_000, None)

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(plain()) is not None  # run_until_complete wraps it in a task
        assert threading.current_thread() is threading.main_thread()
    finally:
        loop.close()
    assert asyncio.run(_no_task(sampler)) is None


async def _no_task(sampler):
    result = []
    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: result.append(sampler.begin_task(Info("cb"), time.perf_counter_ns(), 100_000_000, None)))
    await asyncio.sleep(0.01)
    return result[0]


def test_a_thread_pool_call_shows_what_its_thread_runs(sampler):
    """asyncio.to_thread and run_in_executor of a function that computes 0.25 s then sleeps 0.25 s:
    the request's samples are the worker's frames under the request's own, on a CPU, then in
    ``sleep``, not a bare "thread pool" wait."""

    def work():
        end = time.thread_time() + 0.25
        while time.thread_time() < end:
            pass
        time.sleep(0.25)

    async def via_to_thread():
        await asyncio.to_thread(work)

    async def via_executor():
        await asyncio.get_running_loop().run_in_executor(None, work)

    samples = run_requests(sampler, {"to_thread": via_to_thread, "executor": via_executor})
    for name, outer in (("to_thread", "via_to_thread"), ("executor", "via_executor")):
        found = shares(sampler, samples[name])
        computing = found[("ON_CPU", None)] + found[("GIL", None)] + found[("RUNNABLE", None)]
        assert computing >= 150 and found[("WAITING", "sleep")] >= 150, (name, found)
        assert found[("WAITING", "thread pool")] <= 30, (name, found)
        assert {outer, "work"} <= functions(sampler, samples[name], State.WAITING), name


@pytest.mark.parametrize("budget", ["walks", "ticks", None])
def test_past_its_budget_a_tick_reads_some_chains_later_and_every_request_s_samples_still_tile_its_time(budget):
    """40 requests each awaiting a new future every millisecond. ``walks``: a budget of 1 us a tick
    for the task sampling alone (one chain walked again per tick): the other requests' last samples
    go on. ``ticks``: the same budget for the whole sampler, whose ticks then come less often (4x
    the interval at most), walks deferred as well. Each
    request's samples still add up to its time, and what they await is still what they await;
    without a budget nothing is deferred and ticks come at the rate."""
    sampler = StackSampler(200, task_budget=1e-4 if budget == "ticks" else None)
    if budget == "walks":
        sampler.tasks = TaskSampling(sampler.table, 5_000_000, 1e-4)
    results, intervals = {}, []

    async def request(index):
        began = time.perf_counter_ns()
        slot = sampler.begin_task(Info(f"r{index}"), began, 100_000_000, None)
        deadline = time.perf_counter() + 0.4
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.001)
            intervals.append(sampler.interval_ns)
        ending = time.perf_counter_ns()
        samples = sampler.end_task(slot)
        results[index] = (samples, (ending - began, time.perf_counter_ns() - began), slot.watch.deferred)

    async def main():
        sampler.ensure_running()
        await asyncio.gather(*(request(index) for index in range(40)))

    try:
        asyncio.run(main())
    finally:
        sampler.stop()
    deferred = max(entry[2] for entry in results.values())
    assert (deferred > 40) if budget else (deferred == 0), deferred  # "ticks": its task sampling has the budget too
    assert max(intervals) == (4 * 5_000_000 if budget == "ticks" else 5_000_000), max(intervals)  # stretched 4x at most
    everyone = Counter()
    for samples, (until_end, after_end), _ in results.values():
        sampled = sum(weight for _, _, _, weight, _ in samples)
        # from the request's start to its end_task() (the last sample goes on to it), to the two clocks' reading apart
        assert until_end - 10_000 <= sampled <= after_end + 10_000, (sampled, until_end, after_end)
        gaps = [b[0] - a[0] - a[3] for a, b in zip(samples, samples[1:])]
        assert all(abs(gap) < 100_000 for gap in gaps), sorted(gaps, key=abs)[-3:]  # back to back, to the clocks' reading apart
        everyone.update(shares(sampler, samples))
    # a chain read every ~40 ticks: a request's own shares rest on a few readings, all of them together on ~100
    assert set(everyone) <= {("WAITING", "sleep"), ("RUNNABLE", None), ("ON_CPU", None)}, everyone
    assert everyone[("WAITING", "sleep")] >= 0.5 * sum(everyone.values()), everyone


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_an_idle_loop_is_not_woken_for_beats_and_a_busy_one_is(loop_kind):
    """A loop idle in its selector would run a beat at once: its tick counts a lag of 0 without
    posting one (a wake-up costs the loop CPU). A loop kept busy gets beats posted."""
    sampler = StackSampler(200)
    watches = {}

    async def request(name, work):
        slot = sampler.begin_task(Info(name), time.perf_counter_ns(), 100_000_000, None)
        watches[name] = slot.watch
        before = (slot.watch.beats, slot.watch.posted)
        await work()
        watches[name + " counts"] = (slot.watch.beats - before[0], slot.watch.posted - before[1])
        sampler.end_task(slot)

    async def idle():
        await asyncio.sleep(0.5)

    async def busy():
        deadline = time.perf_counter() + 0.5
        while time.perf_counter() < deadline:
            time.sleep(0.002)  # the loop runs this step, then the next one at once
            await asyncio.sleep(0)

    async def main():
        sampler.ensure_running()
        await request("idle", idle)
        await request("busy", busy)

    runner = asyncio.run if loop_kind == "asyncio" else pytest.importorskip("uvloop").run
    try:
        runner(main())
    finally:
        sampler.stop()
    idle_beats, idle_posted = watches["idle counts"]
    busy_beats, busy_posted = watches["busy counts"]
    assert idle_beats >= 30 and idle_posted <= 2, watches["idle counts"]
    assert busy_posted >= 10, watches["busy counts"]
