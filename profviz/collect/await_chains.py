"""A task's await chain as the task sampler (:mod:`.tasks`) reads it: its coroutine, ``cr_await``
down to the innermost one, each level's frame, code, offset and stack id. :func:`walk_chain`
reads only what changed since the chain's last walk (design notes: docs/asgi.md, "Task-aware
sampling"); the helpers below find the tasks a chain waits for (an awaited task, a ``gather``, a
task group)."""

from __future__ import annotations

import asyncio
import gc
import types

from .await_reasons import TASK_GROUP_EXIT, kind_of

MAX_DEPTH = 200  # frames of one await chain


class AwaitChain:
    """One walk of a task's chain: per level (root first) the awaitable, its frame, code, offset,
    :func:`~.await_reasons.kind_of` and stack id (on ``prefix``). ``loose``: the first level reached
    through an ``async for`` wrapper (its awaiter may have moved on while it stays unfinished)."""

    __slots__ = ("root", "objects", "frames", "codes", "offsets", "kinds", "stacks", "prefix", "loose")

    def __init__(self, root):
        self.root = root
        self.objects: list = []
        self.frames: list = []
        self.codes: list = []
        self.offsets: list[int] = []
        self.kinds: list = []
        self.stacks: list[int] = []
        self.prefix = -1
        self.loose: int | None = None

    @property
    def stack(self) -> int:
        return self.stacks[-1] if self.stacks else self.prefix


def walk_chain(task, last: AwaitChain | None, table, prefix: int) -> AwaitChain:
    """``task``'s await chain now, on top of stack ``prefix`` of ``table``, reusing ``last`` (its
    walk before): a coroutine that has not finished is still awaited by the one below it (it can
    go on only when the awaited one returns), so the levels below the deepest unfinished one of
    ``last`` are unchanged; only that one's offset and what it awaits now are read."""
    root = task.get_coro()
    chain = AwaitChain(root)
    keep = -1
    if last is not None and last.root is root and last.objects:
        keep = len(last.objects) - 1 if last.loose is None else last.loose - 1
        objects = last.objects
        while keep >= 0 and _frame_of(objects[keep]) is None:
            keep -= 1
    if keep >= 0:
        end = keep + 1
        chain.objects, chain.frames = last.objects[:end], last.frames[:end]
        chain.codes, chain.kinds = last.codes[:end], last.kinds[:end]
        chain.offsets = last.offsets[:keep]
        chain.offsets.append(chain.frames[keep].f_lasti)
        awaitable = _awaited_by(chain.objects[keep])
    else:
        awaitable = root
    _walk_on(chain, awaitable)
    same = 0
    if keep >= 0 and last.prefix == prefix:
        same = keep
        limit = min(len(chain.objects), len(last.objects))
        while same < limit and chain.objects[same] is last.objects[same] and chain.offsets[same] == last.offsets[same]:
            same += 1
    chain.prefix = prefix
    chain.stacks = last.stacks[:same] if same else []
    if same < len(chain.codes):
        chain.stacks.extend(table.intern_run(chain.stacks[-1] if same else prefix, chain.codes[same:], chain.offsets[same:]))
    return chain


def _walk_on(chain: AwaitChain, awaitable) -> None:
    """Append the levels from ``awaitable`` inwards."""
    objects, frames, codes, offsets, kinds = chain.objects, chain.frames, chain.codes, chain.offsets, chain.kinds
    while awaitable is not None and len(frames) < MAX_DEPTH:
        frame = _frame_of(awaitable)
        if frame is None:
            awaitable = _inside(awaitable)
            if awaitable is None:
                break
            if chain.loose is None:
                chain.loose = len(frames)
            continue
        code = frame.f_code
        objects.append(awaitable)
        frames.append(frame)
        codes.append(code)
        offsets.append(frame.f_lasti)
        kinds.append(kind_of(code))
        awaitable = _awaited_by(awaitable)


def _frame_of(awaitable):
    """The frame of a coroutine, generator or async generator (None once it has finished, or for
    other awaitables)."""
    return getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None) or getattr(awaitable, "ag_frame", None)


def _awaited_by(awaitable):
    return getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None) or getattr(awaitable, "ag_await", None)


_RESUMABLE_TYPES = (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)
_WRAPPERS = ("async_generator_asend", "async_generator_athrow", "coroutine_wrapper")


def _inside(awaitable):
    """The coroutine or async generator an ``__anext__()``/``asend()``/``__await__()`` wrapper
    drives (what an ``async for`` awaits), which only the wrapper's references lead to; else None."""
    if type(awaitable).__name__ not in _WRAPPERS:
        return None
    return next((ref for ref in gc.get_referents(awaitable) if isinstance(ref, _RESUMABLE_TYPES)), None)


def awaited_task(waiter, chain: AwaitChain, until, turn: int):
    """The task a chain waits for through ``waiter``, when it waits for one: the future is a task
    itself, a ``gather`` or a task group (one of their pending tasks, by ``turn``); ``until``: only
    that task (the running one), or None."""
    if until is not None:
        return until if _waits_for(waiter, chain, until) else None
    if isinstance(waiter, asyncio.Task):
        return waiter
    children = getattr(waiter, "_children", None)  # gather's future
    if not children:
        group = _task_group(chain)
        children = list(getattr(group, "_tasks", ()) or ()) if group is not None else ()
    pending = [child for child in children if isinstance(child, asyncio.Task) and not child.done()]
    return pending[turn % len(pending)] if pending else None


def _task_group(chain: AwaitChain):
    """The TaskGroup whose ``__aexit__`` the chain waits in, or None."""
    kinds = chain.kinds
    for index in range(len(kinds) - 1, -1, -1):
        if kinds[index] is TASK_GROUP_EXIT:
            return chain.frames[index].f_locals.get("self")
    return None


def _waits_for(waiter, chain: AwaitChain, target) -> bool:
    if waiter is target:
        return True
    children = getattr(waiter, "_children", None)
    if children and target in children:
        return True
    group = _task_group(chain) if not children else None
    return group is not None and target in (getattr(group, "_tasks", ()) or ())
