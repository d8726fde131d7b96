"""An ASGI request task's wait for its loop before the app began it (profviz/collect/loop_queue.py)."""

from __future__ import annotations

import asyncio
import time

from profviz.collect import loop_queue
from profviz.collect.sampler import StackSampler


def test_a_task_made_while_the_loop_is_held_waited_that_long_and_reads_it_once():
    found = {}

    async def request(name):
        found[name] = loop_queue.waited_ns(time.perf_counter_ns())
        found[name + " again"] = loop_queue.waited_ns(time.perf_counter_ns())  # a second request on the same task

    async def main():
        loop = asyncio.get_running_loop()
        loop_queue.stamp_new_tasks(loop)
        loop_queue.stamp_new_tasks(loop)  # once per loop
        queued = loop.create_task(request("queued"))
        time.sleep(0.05)  # the loop is held: the new task cannot start
        await queued
        await loop.create_task(request("prompt"))

    asyncio.run(main())
    assert 50e6 <= found["queued"] < 150e6, found
    assert found["prompt"] < 20e6, found
    assert found["queued again"] is None and found["prompt again"] is None


def test_the_app_s_own_task_factory_still_makes_the_tasks():
    made = []

    def apps_factory(loop, coro, **kwargs):
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def request():
        return loop_queue.waited_ns(time.perf_counter_ns())

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(apps_factory)
        loop_queue.stamp_new_tasks(loop)
        return await loop.create_task(request())

    waited = asyncio.run(main())
    assert made and made[0].__name__ == "request" and waited is not None and waited >= 0


def test_a_task_outside_any_stamped_loop_has_no_queue_time():
    async def request():
        return loop_queue.waited_ns(time.perf_counter_ns())

    async def main():
        return await asyncio.get_running_loop().create_task(request())

    assert asyncio.run(main()) is None


def test_the_task_sampler_s_factory_wraps_the_stamping_one_and_both_work():
    """As the middleware does: the loop is stamped first, then the sampler wraps the factory to
    follow the tasks a request spawns; a spawned task is both the request's and stamped."""
    sampler = StackSampler(100)
    found = {}

    class Info:
        id, method, path, route, finished = "r", "GET", "/r", None, False

    async def child():
        found["child waited"] = loop_queue.waited_ns(time.perf_counter_ns())

    async def request():
        loop_queue.stamp_new_tasks(asyncio.get_running_loop())
        slot = sampler.begin_task(Info(), time.perf_counter_ns(), 100_000_000, None)
        spawned = asyncio.get_running_loop().create_task(child())
        found["the request's"] = spawned in slot.children
        await spawned
        sampler.end_task(slot)

    asyncio.run(request())
    assert found["the request's"] is True
    assert found["child waited"] is not None and 0 <= found["child waited"] < 1e9
