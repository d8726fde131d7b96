"""Await chains walked from their last walk (profviz/collect/await_chains.py) are the chains a
fresh walk reads: observed from another task on the same loop while the walked one moves on,
returns from calls, starts others and iterates an async generator."""

from __future__ import annotations

import asyncio

from profviz.collect.await_chains import walk_chain
from profviz.collect.stack_table import StackTable


async def leaf(event: asyncio.Event, rounds: int) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)
    await event.wait()


async def middle(event: asyncio.Event, depth: int) -> None:
    if depth:
        await middle(event, depth - 1)
    else:
        await leaf(event, depth + 3)


async def numbers(count: int):
    for number in range(count):
        await asyncio.sleep(0)
        yield number


async def body(number: int) -> None:
    for _ in range(number % 3):
        await asyncio.sleep(0)


async def request() -> None:
    for round_index in range(12):
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(0.001 * (round_index % 4), event.set)
        await middle(event, round_index % 5)
        async for number in numbers(3):
            await body(number)


def _levels(chain) -> list:
    return [(code.co_name, offset) for code, offset in zip(chain.codes, chain.offsets)]


def test_a_chain_walked_from_its_last_walk_is_the_chain_walked_afresh():
    table = StackTable()
    seen: list[tuple] = []

    async def main():
        task = asyncio.create_task(request())
        last = None
        while True:
            await asyncio.sleep(0)
            if task.done():
                break
            fresh = walk_chain(task, None, table, -1)
            reused = walk_chain(task, last, table, -1)
            assert _levels(reused) == _levels(fresh)
            assert reused.stacks == fresh.stacks and reused.stack == fresh.stack
            assert all(a is b for a, b in zip(reused.frames, fresh.frames)) and len(reused.frames) == len(fresh.frames)
            seen.append((len(fresh.codes), fresh.loose is not None, last is not None and last.root is fresh.root))
            last = reused
        await task

    asyncio.run(main())
    depths = {depth for depth, _, _ in seen}
    assert len(depths) >= 5, depths  # deeper and shallower chains, one after another
    assert any(loose for _, loose, _ in seen)  # and chains through an async generator's asend


def test_a_chain_on_another_prefix_is_interned_on_it():
    table = StackTable()

    async def main():
        task = asyncio.create_task(request())
        await asyncio.sleep(0)
        first = walk_chain(task, None, table, -1)
        base = table.intern(-1, main.__code__, 1)
        moved = walk_chain(task, first, table, base)
        assert moved.prefix == base and table.prefix[moved.stacks[0]] == base
        assert moved.stacks == walk_chain(task, None, table, base).stacks
        await task

    asyncio.run(main())
