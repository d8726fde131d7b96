"""What an asyncio await chain waits on (:func:`await_reason`), for the task sampler
(:mod:`.tasks`): named from the chain's frames, each code object classified once, and for a
stream's read or write the peer of its transport."""

from __future__ import annotations

import os

THREAD_POOL = "thread pool"  # a call handed to a pool thread that is not running it (yet)


_LOCKS = {"Lock.acquire": "lock (asyncio.Lock)", "Semaphore.acquire": "lock (asyncio.Semaphore)",
          "BoundedSemaphore.acquire": "lock (asyncio.Semaphore)", "Condition.wait": "lock (asyncio.Condition)",
          "Event.wait": "asyncio.Event wait", "Barrier.wait": "asyncio.Barrier wait",
          "Queue.get": "asyncio.Queue get", "Queue.put": "asyncio.Queue put", "Queue.join": "asyncio.Queue join"}
_SOCKET_VERBS = (("recv", "recv"), ("read", "recv"), ("receive", "recv"), ("send", "send"), ("write", "send"),
                 ("drain", "send"), ("connect", "connect"))


def await_reason(frames: list, kinds: list, waiter) -> str:
    """What an await chain waits on, from its frames (root first), their :func:`kind_of` and the
    future it waits on: ``socket recv HOST:PORT`` (an asyncio stream or anyio socket below, with its peer), ``sleep``,
    an asyncio or anyio lock, event or queue, ``thread pool`` (a future a worker thread completes),
    else ``await`` and the innermost coroutine's name. Each code object is classified once
    (:func:`kind_of`); only a socket method's frame is read further (its transport's peer)."""
    for index in range(len(frames) - 1, -1, -1):  # first: a socket read waits on an Event in anyio
        kind = kinds[index]
        if kind is not None and kind[0] is _SOCKET:
            described = _socket_wait(frames[index], kind[1])
            if described is not None:
                return described
    for kind in reversed(kinds):
        if kind is not None and kind[0] is _FIXED:
            return kind[1]
    if _from_a_thread(waiter):
        return THREAD_POOL
    innermost = frames[-1].f_code if frames else None
    return f"await {getattr(innermost, 'co_qualname', innermost.co_name)}" if innermost is not None else "await"


_SOCKET, _FIXED = object(), object()
TASK_GROUP_EXIT = (object(), None)  # the kind of asyncio's TaskGroup.__aexit__ (waits for the group's tasks)
_KINDS: dict = {}  # code object -> (_SOCKET, verb) | (_FIXED, reason) | TASK_GROUP_EXIT | None
_KINDS_KEPT = 50_000


def kind_of(code) -> tuple | None:
    """How a frame of ``code`` tells what its chain awaits (cached per code object)."""
    try:
        return _KINDS[code]
    except KeyError:
        pass
    name = getattr(code, "co_qualname", code.co_name)
    path = code.co_filename
    kind = None
    if path.endswith(_ASYNCIO_TASK_GROUPS) and name == "TaskGroup.__aexit__":
        kind = TASK_GROUP_EXIT
    elif path.endswith(_ASYNCIO_TASKS) and name == "sleep":
        kind = (_FIXED, "sleep")
    elif name in _LOCKS and path.endswith(_ASYNCIO_PRIMITIVES):
        kind = (_FIXED, _LOCKS[name])
    elif name in _LOCKS and _ANYIO in path:
        kind = (_FIXED, _LOCKS[name].replace("asyncio.", "anyio."))
    elif name in _THREAD_HANDOFFS or path.endswith(_ANYIO_TO_THREAD):
        kind = (_FIXED, THREAD_POOL)
    elif "." in name:
        leaf = name.rsplit(".", 1)[-1].lstrip("_").lower()
        verb = "recv" if leaf == "wait_for_data" else next((v for prefix, v in _SOCKET_VERBS if leaf.startswith(prefix)), None)
        if verb is not None:
            kind = (_SOCKET, verb)
    if len(_KINDS) >= _KINDS_KEPT:
        _KINDS.clear()
    _KINDS[code] = kind
    return kind


_ASYNCIO_TASKS = os.path.join("asyncio", "tasks.py")
_ASYNCIO_TASK_GROUPS = os.path.join("asyncio", "taskgroups.py")
_ASYNCIO_PRIMITIVES = (os.path.join("asyncio", "locks.py"), os.path.join("asyncio", "queues.py"))
_ANYIO_TO_THREAD = os.path.join("anyio", "to_thread.py")
_ANYIO = os.sep + "anyio" + os.sep
_THREAD_HANDOFFS = ("to_thread", "run_sync_in_worker_thread", "BaseEventLoop.run_in_executor")


def _socket_wait(frame, verb: str) -> str | None:
    """``socket <verb> <peer>`` when ``frame`` (a method named like a read, write or connect) waits
    through its ``_transport`` (asyncio's StreamReader, anyio's SocketStream)."""
    transport = getattr(frame.f_locals.get("self"), "_transport", None)
    get_extra_info = getattr(transport, "get_extra_info", None)
    if not callable(get_extra_info):
        return None
    try:
        peer = get_extra_info("peername")
    except Exception:
        peer = None
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"socket {verb} [{host}]:{peer[1]}" if ":" in host else f"socket {verb} {host}:{peer[1]}"
    if isinstance(peer, str) and peer:
        return f"unix socket {verb} {peer}"
    return f"socket {verb}"


def _from_a_thread(waiter) -> bool:
    """Whether an asyncio future is completed by a concurrent.futures future (``run_in_executor``)."""
    for callback in list(getattr(waiter, "_callbacks", None) or ()):
        function = callback[0] if isinstance(callback, tuple) else callback
        if getattr(function, "__name__", "") == "_call_check_cancel":
            return True
    return False
