"""How long an ASGI request's task waited for its event loop before the app began it.

An ASGI server makes a task per request as soon as it has parsed the request's head; the loop
runs it when its turn comes, after the callbacks and tasks ready before it. That wait is the
client's time and no app's: under load it is what the server-side P95 misses. The loop's task
factory is wrapped (:func:`stamp_new_tasks`) so that each task starts with its creation time in
its context, and the middleware reads it once as the request begins (:func:`waited_ns`).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref

MAX_WAIT_NS = 30 * 10**9  # a task made this long before its request began was not made for it (a connection's): no queue

_made_ns: contextvars.ContextVar[int | None] = contextvars.ContextVar("profviz_task_made_ns", default=None)
_stamped: "weakref.WeakSet[asyncio.AbstractEventLoop]" = weakref.WeakSet()


def stamp_new_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Wrap ``loop``'s task factory (once, chaining to the one it has) so that each new task's
    context holds its creation time."""
    try:
        if loop in _stamped:
            return
        _stamped.add(loop)
    except TypeError:
        return  # a loop that cannot be weakly referenced: its requests' queue times stay unknown
    previous = loop.get_task_factory()

    def factory(loop, coro, **kwargs):
        token = _made_ns.set(time.perf_counter_ns())
        try:
            return previous(loop, coro, **kwargs) if previous is not None else asyncio.Task(coro, loop=loop, **kwargs)
        finally:
            _made_ns.reset(token)

    try:
        loop.set_task_factory(factory)
    except Exception:
        pass  # a loop without task factories: its requests' queue times stay unknown


def waited_ns(began_mono_ns: int) -> int | None:
    """ns the calling task waited between its creation and ``began_mono_ns`` (perf_counter ns),
    read once: a task that serves a second request has no such wait for it. None when unknown."""
    made = _made_ns.get()
    if made is None:
        return None
    _made_ns.set(None)
    waited = began_mono_ns - made
    return waited if 0 <= waited <= MAX_WAIT_NS else None
