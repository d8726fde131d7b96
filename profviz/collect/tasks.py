"""Task-aware sampling of the requests an asyncio event loop serves, for the in-process sampler
(:meth:`~.sampler.StackSampler.tick` calls :meth:`TaskSampling.sample`), and the loop's health:
its lag and the stretches it was blocked. Design notes: docs/asgi.md ("Task-aware sampling").

At each tick every request in flight on a loop gets one sample, so its samples tile its lifetime
as a thread's do. When the request's task, or a task it spawned, is the one the loop runs, the
sample is the loop thread's stack from the task's outermost coroutine up, in the loop thread's
state (on CPU, or a blocking call's wait reason). Otherwise it is the request's await chain
(its coroutine, ``cr_await`` down to the innermost one, on into the pending children of a
``gather``, an awaited task or a task group, or the pool thread running the call it awaits),
WAITING with what the innermost await waits on (:mod:`.await_reasons`), or RUNNABLE when the
task is ready and waits for its turn on the loop (as a thread waits for a CPU), or when the loop
has not run the sampler's beat for BLOCKED_NS: held by one step, it serves no one, whatever they
await. While a suspended task waits on the same future its samples are one run, so a thousand
suspended requests cost one attribute read and two compares each per tick.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
import weakref
from collections import Counter
from typing import Any, Callable

from ..model import State
from ..model.state import GIL_REASON
from .await_chains import awaited_task, walk_chain
from .await_reasons import THREAD_POOL, await_reason
from .task_threads import PoolWorkers
from .waits import RUNNABLE as RUNNABLE_REASON
from .waits import RUNNING as RUNNING_REASON

ON_CPU = int(State.ON_CPU)
WAITING = int(State.WAITING)
GIL = int(State.GIL)
RUNNABLE = int(State.RUNNABLE)
MAX_DEPTH = 200  # frames of the running loop thread's stack
MAX_NESTING = 8  # tasks followed into (gather, awaited tasks, task groups)
STALL_STACKS_KEPT = 500  # loop stacks kept for one stall
ONE_STEP_SHARE = 0.8  # of a stall's ticks (by time) with one task running: one long step, not a busy loop
BLOCKED_NS = 20_000_000  # a beat pending this long: the loop is held, the suspended requests wait for it

_request_slot: contextvars.ContextVar["weakref.ref[TaskSlot] | None"] = contextvars.ContextVar("profviz_task_slot", default=None)

TASK_LANE_BASE = 1 << 31  # above any Linux tid (pid_max <= 2**22): the "thread ids" of requests on an event loop
TASK_LANE_NAME = "asyncio task"
task_lane: contextvars.ContextVar["int | None"] = contextvars.ContextVar("profviz_task_lane", default=None)
"""The lane of the request whose task (or a task it spawned) runs: a per-request id in the place
of a thread id, on its request row, its samples and the spans it starts (:mod:`profviz.otel`),
so that spans are joined to the request they belong to and not to every request on the loop."""
lanes_wanted = False  # set once profviz's span processor exists: only then do requests set task_lane


def lane_of(seq: int) -> int:
    """The task lane of request number ``seq`` of this process (its own in [2**31, 2**32))."""
    return TASK_LANE_BASE + (seq & 0x7FFF_FFFF)


class TaskSlot:
    """One request in flight on an event loop, as the sampler sees it. While its task waits on the
    same future, its samples are one run (``waited`` from ``run_start`` for ``run_weight`` ns),
    stored as one sample when the wait ends or the request does."""

    __slots__ = ("task", "watch", "begun_mono_ns", "last_mono_ns", "samples", "closed", "children", "waiter", "waited", "info",
                 "run_start", "run_weight", "chains", "in_thread", "deferred_ns", "__weakref__")

    def __init__(self, task: asyncio.Task, watch: "LoopWatch", mono_ns: int, info: Any):
        self.task = task
        self.watch = watch
        self.begun_mono_ns = mono_ns
        self.last_mono_ns = mono_ns
        self.samples: list = []
        self.closed = False
        self.children: list = []  # tasks created while this request's task ran (or its children did)
        self.waiter = None  # the future the task waited on at its last WAITING sample
        self.waited = None  # (stack, state, reason) of that sample
        self.info = info  # the engine's RequestInfo (for stalls: which requests waited)
        self.run_start = 0
        self.run_weight = 0
        self.chains: dict = {}  # task -> its AwaitChain as last walked (the sampling thread's)
        self.in_thread = False  # its last sample was a pool thread's: read at every tick, as threads are
        self.deferred_ns = 0  # the time its last sample was extended by since its chain was last walked

    def flush_run(self) -> None:
        """Store the current run of unchanged samples as one sample."""
        weight, waited = self.run_weight, self.waited
        self.run_weight = 0
        if weight and waited is not None:
            self.samples.append((self.run_start, waited[0], waited[1], weight, waited[2]))


class LoopStall:
    """The loop ran one stretch without returning to its selector for ``duration_ns`` (a beat
    posted at ``start_mono_ns`` ran that late): what it ran meanwhile (``samples``, as the
    sampler's, over its stack table), the request running (``blocker``, a RequestInfo or None),
    the requests in flight that had to wait (``delayed``), and whether one task ran at its ticks
    (ONE_STEP_SHARE of them by time: ``one_callback``, one long step; else the loop was busy with
    many steps)."""

    __slots__ = ("start_ns", "duration_ns", "samples", "blocker", "delayed", "thread_name", "native_id", "one_callback")

    def __init__(self, start_ns: int, duration_ns: int, samples: list, blocker: Any, delayed: list, thread_name: str,
                 native_id: int, one_callback: bool = True):
        self.one_callback = one_callback
        self.start_ns = start_ns
        self.duration_ns = duration_ns
        self.samples = samples
        self.blocker = blocker
        self.delayed = delayed
        self.thread_name = thread_name
        self.native_id = native_id


class LoopWatch:
    """One event loop whose requests are sampled, and its health (lag, stalls)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stall_ns: int, on_stall: Callable[[LoopStall], None] | None):
        self.loop = loop
        self.ident = threading.get_ident()
        self.native_id = threading.get_native_id()
        self.thread_name = threading.current_thread().name
        self.slots: dict = {}  # request task -> TaskSlot
        self.children: dict = {}  # spawned task -> the TaskSlot of its request
        self.stall_ns = stall_ns
        self.on_stall = on_stall
        self.posted_mono_ns = 0  # the pending beat's posting time; 0: none pending
        self.posted_wall_ns = 0
        self.restarted_mono_ns = 0  # when begin() last found the loop's watch again after the loop had stopped
        self.pending: list = []  # (wall ns, stack, weight, request slot, state, reason, id of the running task or 0) at the ticks while a beat is pending
        self.waiting: set = set()  # the requests in flight at those ticks
        self.beats = 0
        self.posted = 0  # beats posted (the others found the loop idle: a lag of 0)
        self.lag_total_ns = 0
        self.lag_max_ns = 0
        self.stalls = 0
        self.resume_at = None  # the slot whose chain the next tick walks first (the first one the last tick deferred)
        self.deferred = 0  # walks deferred to a later tick by the CPU budget
        self.cpu_ns = 0  # the loop thread's CPU clock at the last tick
        self.tick_mono_ns = 0
        self.busy_ns = 0  # CPU time of the loop thread while requests were in flight
        self.watched_ns = 0  # wall time of the ticks that measured it
        self.clock_id: int | None
        try:
            self.clock_id = time.pthread_getcpuclockid(self.ident)
        except (AttributeError, OSError):
            self.clock_id = None
        self.factory = None
        self.base_frame = None  # uvloop: the Python frame its C loop runs below (the leaf while it idles)

    def beat(self, posted_mono_ns: int) -> None:
        """On the loop: the beat the sampler posted has run; its lateness is the loop's lag."""
        lag = time.perf_counter_ns() - posted_mono_ns
        posted_wall = self.posted_wall_ns
        self.posted_mono_ns = 0  # first: the sampler stops adding to what is taken below
        pending, self.pending = self.pending, []
        waiting, self.waiting = self.waiting, set()
        if posted_mono_ns < self.restarted_mono_ns:
            return  # posted before the loop stopped and ran again: its lateness is the pause, not a stall
        self.beats += 1
        self.lag_total_ns += lag
        if lag > self.lag_max_ns:
            self.lag_max_ns = lag
        if lag < self.stall_ns or self.on_stall is None or not pending:
            return
        self.stalls += 1
        blockers = Counter(entry[3] for entry in pending if entry[3] is not None)
        blocker = blockers.most_common(1)[0][0] if blockers else None
        delayed = [slot.info for slot in waiting if slot is not blocker]
        samples = [(wall, stack, state, weight, reason) for wall, stack, weight, _, state, reason, _ in pending]
        ran: dict[int, int] = {}
        for entry in pending:
            ran[entry[6]] = ran.get(entry[6], 0) + entry[2]
        top = max(ran, key=ran.__getitem__)
        one = top != 0 and ran[top] >= ONE_STEP_SHARE * sum(ran.values())  # one task's step held the loop
        self.on_stall(LoopStall(posted_wall, lag, samples, None if blocker is None else blocker.info, delayed,
                                self.thread_name, self.native_id, one_callback=one))

    def forget_child(self, task) -> None:
        """On the loop, as a spawned task ends: its request no longer holds it."""
        slot = self.children.pop(task, None)
        if slot is not None:
            slot.chains.pop(task, None)
            try:
                slot.children.remove(task)
            except ValueError:
                pass

    @property
    def health(self) -> dict:
        return {
            "thread": self.thread_name, "requests_in_flight": len(self.slots), "beats": self.beats,
            "lag_mean_ms": round(self.lag_total_ns / self.beats / 1e6, 3) if self.beats else None,
            "lag_max_ms": round(self.lag_max_ns / 1e6, 3), "stalls": self.stalls, "beats_posted": self.posted,
            "walks_deferred": self.deferred,
            "busy_share": round(self.busy_ns / self.watched_ns, 3) if self.watched_ns else None,
        }


class TaskSampling:
    """The async half of the process's sampler (see the module docstring). :meth:`begin` and
    :meth:`end` run on the loop's thread; :meth:`sample` on the sampling thread."""

    def __init__(self, table, interval_ns: int = 10_000_000, budget: float | None = None):
        self.table = table
        self.loops: dict[int, LoopWatch] = {}  # id(loop) -> its watch
        self.turn = 0  # counts samples: which of a gather's pending tasks a chain goes on into
        # the CPU budget (docs/asgi.md, "Task-aware sampling"): ns of its thread's CPU a tick may spend, saved up for two ticks
        self.budget_ns = int(budget * interval_ns) if budget else None
        self.interval_ns = interval_ns
        self.tokens = 0
        self._last_tick_ns = 0
        self._spend_until = 0  # during sample(): chains are walked again while the thread's CPU clock is below this
        self._workers: PoolWorkers | None = None  # during sample(): the pool threads of this tick
        self._reason_of: Callable[[int], str | None] | None = None

    # -- the loop's thread --------------------------------------------------------------------

    def begin(self, info: Any, mono_ns: int, stall_ns: int, on_stall: Callable[[LoopStall], None] | None) -> TaskSlot | None:
        """Sample the calling task as a request from now on; None outside a task."""
        task = asyncio.current_task()
        if task is None:
            return None
        loop = task.get_loop()
        watch = self.loops.get(id(loop))
        if watch is None or watch.loop is not loop:
            watch = self.loops[id(loop)] = LoopWatch(loop, stall_ns, on_stall)
            watch.base_frame = _loop_base_frame(task)
            self._adopt_spawned_tasks(watch)
        elif not watch.slots and watch.posted_mono_ns:  # (run_until_complete per call) a beat left from before a pause
            watch.restarted_mono_ns = time.perf_counter_ns()
        slot = TaskSlot(task, watch, mono_ns, info)
        watch.slots[task] = slot
        _request_slot.set(weakref.ref(slot))  # weak: tasks the request spawns keep its context, maybe for long
        return slot

    def end(self, slot: TaskSlot) -> list:
        """Stop sampling the slot's request; returns its samples, the last one going on to now:
        the time since the last tick is the request's too."""
        slot.closed = True
        last_mono_ns = slot.last_mono_ns  # before the samples are taken: a tick racing this call adds to them, not to the tail
        if slot.run_weight:
            slot.flush_run()
        watch = slot.watch
        if watch.slots.get(slot.task) is slot:
            del watch.slots[slot.task]
        for child in slot.children:
            if watch.children.get(child) is slot:
                del watch.children[child]
        slot.children = []
        slot.waiter = slot.waited = None
        slot.chains = {}
        if not watch.slots and not watch.loop.is_running():
            self.loops.pop(id(watch.loop), None)
        samples, slot.samples = slot.samples, []
        if samples:  # on the monotonic clock the weights are measured on (a sample's wall start is read apart from it)
            now_mono = time.perf_counter_ns()
            untiled = now_mono - slot.begun_mono_ns - sum(sample[3] for sample in samples)
            tail = min(now_mono - last_mono_ns, untiled)  # untiled: a tick that ran between the two reads is not counted twice
            if tail > 0:
                start, stack, state, weight, reason = samples[-1]
                samples[-1] = (start, stack, state, weight + tail, reason)
        return samples

    def _adopt_spawned_tasks(self, watch: LoopWatch) -> None:
        """Wrap the loop's task factory: a task created inside a request belongs to it."""
        loop = watch.loop
        previous = loop.get_task_factory()
        previous = getattr(previous, "profviz_wraps", previous)  # ours, from a watch of this loop before: rewrap what it wrapped

        def factory(loop, coro, **kwargs):
            task = previous(loop, coro, **kwargs) if previous is not None else asyncio.Task(coro, loop=loop, **kwargs)
            ref = _request_slot.get()
            slot = ref() if ref is not None else None
            if slot is not None and not slot.closed:
                slot.children.append(task)
                watch.children[task] = slot
                task.add_done_callback(watch.forget_child)
            return task

        factory.profviz_wraps = previous

        try:
            loop.set_task_factory(factory)
            watch.factory = factory
        except Exception:
            pass  # a loop without task factories: spawned tasks are not followed

    # -- the sampling thread ------------------------------------------------------------------

    def sample(self, frames: dict, now_wall: int, now_mono: int, reason_of: Callable[[int], str | None]) -> int:
        """One sample of every request in flight on every watched loop; returns how many were kept."""
        kept = 0
        self.turn += 1
        self._workers = PoolWorkers(frames)
        self._reason_of = reason_of
        failure = None
        budget = self.budget_ns
        if budget is not None:  # refilled by the time since the last tick (ticks may be stretched), for two ticks at most
            elapsed = now_mono - self._last_tick_ns if self._last_tick_ns else self.interval_ns
            self._last_tick_ns = now_mono
            self.tokens = min(max(self.tokens, 0) + budget * elapsed // self.interval_ns, 2 * budget)
            cpu_began = time.thread_time_ns()
            self._spend_until = cpu_began + self.tokens
        try:
            for key, watch in list(self.loops.items()):
                if not watch.slots and not watch.pending:
                    if not watch.loop.is_running() or watch.loop.is_closed():
                        self.loops.pop(key, None)
                    continue
                try:
                    kept += self._sample_loop(watch, frames, now_wall, now_mono)
                except Exception as exc:  # the other loops are still sampled; the first failure is reported
                    watch.posted_mono_ns = 0  # its beats go on at the next tick
                    failure = failure or exc
        finally:
            self._workers = None  # holds this tick's frames
            if budget is not None:
                self.tokens -= time.thread_time_ns() - cpu_began
        if failure is not None:
            raise failure
        return kept

    @property
    def busy(self) -> bool:
        """Whether any watched loop has a request in flight or a beat pending (else a tick has nothing to do)."""
        return any(watch.slots or watch.pending or watch.posted_mono_ns for watch in list(self.loops.values()))

    def _sample_loop(self, watch: LoopWatch, frames: dict, now_wall: int, now_mono: int) -> int:
        loop = watch.loop
        cpu = None
        if watch.clock_id is not None:
            try:
                cpu = time.clock_gettime_ns(watch.clock_id)
            except OSError:
                watch.clock_id = None
        running = asyncio.current_task(loop)
        run_slot = None
        if running is not None:
            run_slot = watch.slots.get(running) or watch.children.get(running)
        leaf = frames.get(watch.ident)
        running_sample = None
        stack = None
        if leaf is not None and (run_slot is not None or watch.posted_mono_ns):
            stack = self._running_stack(leaf, running, run_slot)
        if stack is not None:
            since = now_mono - watch.tick_mono_ns if watch.tick_mono_ns else 0
            computing = cpu is not None and since > 0 and 2 * (cpu - watch.cpu_ns) >= since
            reason = None if computing else self._reason_of(watch.native_id)  # as for threads: the clock first
            running_sample = (stack, *_state_of(reason))
        kept = 0
        slots = list(watch.slots.values())
        blocked = bool(watch.posted_mono_ns) and now_mono - watch.posted_mono_ns >= BLOCKED_NS
        if watch.posted_mono_ns:
            watch.waiting.update(slots)
        if cpu is not None:
            if watch.cpu_ns and watch.tick_mono_ns and slots:
                watch.busy_ns += max(cpu - watch.cpu_ns, 0)
                watch.watched_ns += now_mono - watch.tick_mono_ns
            watch.cpu_ns, watch.tick_mono_ns = cpu, now_mono
        first_deferred, walked_again = None, False
        start = _index_of(slots, watch.resume_at)
        for slot in slots[start:] + slots[:start] if start else slots:
            wall = now_mono - slot.last_mono_ns
            if wall <= 0 or slot.closed or slot.task.done():  # done: its response is being closed elsewhere
                continue
            waiter = getattr(slot.task, "_fut_waiter", None)
            if waiter is not None and waiter is slot.waiter and not blocked and slot is not run_slot and not waiter.done():
                slot.run_weight += wall  # still waiting on the same future: its run of one sample grows (most slots)
                slot.last_mono_ns = now_mono
                kept += 1
                continue
            again = ((slot is not run_slot or running_sample is None) and self.budget_ns is not None and not slot.in_thread
                     and (slot.samples or slot.run_weight))
            if again and walked_again and time.thread_time_ns() >= self._spend_until:  # walked before, and the budget is spent
                watch.deferred += 1
                if first_deferred is None:
                    first_deferred = slot
                _extend_last(slot, blocked, now_wall, now_mono, wall)
                kept += 1
                continue
            walked_again = walked_again or again  # one a tick at least, whatever the budget: every chain is read again in turn
            if slot.deferred_ns:
                wall += _take_back(slot)
            if slot.run_weight:
                slot.flush_run()
            if slot is run_slot and running_sample is not None:
                stack, state, reason = running_sample
                slot.waiter = slot.waited = None
                slot.in_thread = False
            else:
                stack, state, reason = self._suspended(slot, waiter)
                if blocked and state == WAITING and not slot.in_thread:  # it cannot go on before the loop does
                    state, reason = RUNNABLE, None
                    slot.waiter = slot.waited = None  # no run starts here
                elif slot.waited is not None:  # the start of a run: stored when it ends
                    slot.run_start, slot.run_weight = now_wall - wall, wall
                    slot.last_mono_ns = now_mono
                    kept += 1
                    continue
            slot.samples.append((now_wall - wall, stack, state, wall, reason))
            slot.last_mono_ns = now_mono
            kept += 1
        watch.resume_at = first_deferred  # the next tick walks the deferred ones first
        self._watch_beat(watch, now_wall, now_mono, running_sample, run_slot, running, leaf)
        return kept

    def _watch_beat(self, watch: LoopWatch, now_wall: int, now_mono: int, running_sample, run_slot, running, leaf) -> None:
        """Post a beat when none is pending and the loop is not idle in its selector (it would run
        the beat at once: a lag of 0, counted so, without waking it); while one is pending, keep
        what the loop runs (a stall's evidence)."""
        if watch.posted_mono_ns:
            pending = watch.pending
            if running_sample is not None and len(pending) < STALL_STACKS_KEPT:
                start = pending[-1][0] + pending[-1][2] if pending else watch.posted_wall_ns
                stack, state, reason = running_sample
                pending.append((start, stack, max(now_wall - start, 0), run_slot, state, reason, id(running) if running is not None else 0))
            return
        if not watch.slots or watch.loop.is_closed():
            return
        if leaf is not None and (leaf is watch.base_frame or _in_selector(leaf)):
            watch.beats += 1  # waking an idle loop costs it ~50 us of CPU a time here, for a lag known to be 0
            return
        watch.posted += 1
        posted = time.perf_counter_ns()  # not the tick's start: the lag would hold the sampler's own pass
        watch.posted_mono_ns, watch.posted_wall_ns = posted, time.time_ns()
        try:
            watch.loop.call_soon_threadsafe(watch.beat, posted)
        except RuntimeError:  # the loop closed meanwhile
            watch.posted_mono_ns = 0

    def _running_stack(self, leaf, running, run_slot: TaskSlot | None) -> int:
        """The loop thread's stack: from the running task's outermost coroutine up, on top of its
        request's await chain when it is a spawned task; the whole stack when no request's task runs."""
        stop = None
        prefix = -1
        if running is not None and run_slot is not None:
            coro = running.get_coro()
            stop = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if running is not run_slot.task:
                prefix = self._chain_stack(run_slot, run_slot.task, -1, 0, until=running)[0]
        codes, offsets = [], []
        frame = leaf
        while frame is not None and len(codes) < MAX_DEPTH:
            codes.append(frame.f_code)
            offsets.append(frame.f_lasti)
            if frame is stop:
                break
            frame = frame.f_back
        if stop is not None and frame is not stop:
            return None  # the loop moved on to another step since the frames were read
        codes.reverse()
        offsets.reverse()
        return self.table.intern_run(prefix, codes, offsets)[-1] if codes else prefix

    def _suspended(self, slot: TaskSlot, waiter) -> tuple[int, int, str | None]:
        """The sample of a request whose task is not the one running (``waiter``: its ``_fut_waiter``):
        its await chain and what it waits on, kept for reuse while the task waits on the same
        future, unless the chain went on into other tasks (they move on while it waits)."""
        stack, reason, ready, nested = self._chain_stack(slot, slot.task, -1, 0)
        slot.in_thread = isinstance(reason, _InThread)
        if slot.in_thread:
            slot.waiter = slot.waited = None  # the thread moves on while the task waits: not reused
            return (stack, *self._thread_state(reason.native_id))
        sample = (stack, RUNNABLE, None) if ready else (stack, WAITING, reason)
        if waiter is not None and not ready and not nested and reason != THREAD_POOL:  # its thread may start later
            slot.waiter, slot.waited = waiter, sample
        else:
            slot.waiter = slot.waited = None
        return sample

    def _thread_state(self, native_id: int | None) -> tuple[int, str | None]:
        """(state, reason) of a worker thread now, as the running loop thread's are read."""
        return _state_of(self._reason_of(native_id) if native_id is not None and self._reason_of is not None else None)

    def _chain_stack(self, slot: TaskSlot, task, prefix: int, nesting: int, until=None) -> tuple[int, "str | _InThread | None", bool, bool]:
        """(stack, wait reason, ready, whether it went into other tasks or a thread) of ``task``'s
        await chain on top of ``prefix`` (walked from its last walk, kept in ``slot.chains``),
        followed into the task it waits for (of several, a different one at each tick), or into
        the frames of the pool thread running the call it awaits (the reason is then that thread:
        :class:`_InThread`); ``until``: stop before that task (the one running)."""
        chains = slot.chains
        chain = chains[task] = walk_chain(task, chains.get(task), self.table, prefix)
        if nesting == 0 and len(chains) > 1:  # tasks it went into that have ended (their frames hold their locals)
            for other in list(chains):  # a copy: the loop's thread pops ended children too
                if other.done():
                    chains.pop(other, None)
        stack = chain.stack
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is None or waiter.done():
            return stack, None, True, nesting > 0
        if nesting < MAX_NESTING:
            inner = awaited_task(waiter, chain, until, self.turn)
            if inner is not None and inner is not until:
                return self._chain_stack(slot, inner, stack, nesting + 1, until)
        reason = await_reason(chain.frames, chain.kinds, waiter)
        workers = self._workers
        worker = workers.find(waiter) if reason == THREAD_POOL and workers is not None and until is None else None
        if worker is not None:  # a thread-pool call: what that thread runs, as this request's time
            _, native_id, above = worker
            if above:
                stack = self.table.intern_run(stack, [f.f_code for f in above], [f.f_lasti for f in above])[-1]
            return stack, _InThread(native_id), False, True
        return stack, reason, False, nesting > 0


def _index_of(slots: list, slot) -> int:
    """Where ``slot`` stands in ``slots`` (0 when it is not there any more)."""
    if slot is None:
        return 0
    for index, other in enumerate(slots):
        if other is slot:
            return index
    return 0


def _extend_last(slot: TaskSlot, blocked: bool, now_wall: int, now_mono: int, wall: int) -> None:
    """The sample of a slot whose chain a tick does not walk (the budget is spent): its last
    sample (or run) goes on over this interval, so its samples still tile its time, until the
    walk that :func:`_take_back` gives the interval to (as a sample stands for the interval before
    it); while the loop is held, the interval is RUNNABLE on that sample's stack. Its chain is
    walked at a later tick (``slot.waiter`` is not the future it awaits now)."""
    # end() on the loop's thread may hand the samples over meanwhile. Read once, so one list is extended;
    # a hand-over between this read and the edit below counts this interval twice (in end()'s tail too): one tick at most.
    samples = slot.samples
    if blocked:
        if slot.run_weight:
            slot.flush_run()
        slot.waiter = slot.waited = None
        slot.deferred_ns = 0
        if samples:
            samples.append((now_wall - wall, samples[-1][1], RUNNABLE, wall, None))
    elif slot.run_weight:
        slot.deferred_ns += wall
        slot.run_weight += wall
    elif samples:
        slot.deferred_ns += wall
        start, stack, state, weight, reason = samples[-1]
        samples[-1] = (start, stack, state, weight + wall, reason)
    slot.last_mono_ns = now_mono


def _take_back(slot: TaskSlot) -> int:
    """The time :func:`_extend_last` added to a slot's last sample (or run) since its chain was
    last walked, taken back from it for the sample of the walk now."""
    taken, slot.deferred_ns = slot.deferred_ns, 0
    samples = slot.samples
    if slot.run_weight >= taken:
        slot.run_weight -= taken
    elif samples and samples[-1][3] > taken:
        start, stack, state, weight, reason = samples[-1]
        samples[-1] = (start, stack, state, weight - taken, reason)
    else:
        return 0  # handed over by end() meanwhile
    return taken


def _in_selector(leaf) -> bool:
    """Whether the loop thread's leaf frame is asyncio's loop waiting in its selector."""
    code = leaf.f_code
    return code.co_name == "select" and code.co_filename.endswith(_SELECTORS) and leaf.f_back is not None \
        and leaf.f_back.f_code.co_name == "_run_once"


def _loop_base_frame(task):
    """The frame a C event loop (uvloop) runs below, the caller of ``task``'s coroutine frame as it
    runs; None for asyncio's own loop, whose callbacks run from ``Handle._run`` (a frame a call)."""
    frame = getattr(task.get_coro(), "cr_frame", None)
    base = frame.f_back if frame is not None else None
    if base is None or base.f_code.co_filename.endswith(_ASYNCIO_EVENTS):
        return None
    return base


_SELECTORS = "selectors.py"
_ASYNCIO_EVENTS = os.path.join("asyncio", "events.py")


def _state_of(reason: str | None) -> tuple[int, str | None]:
    """(state, wait reason) of a running thread whose :meth:`~.waits.OwnThreadWaits.reason` is
    ``reason`` (None: unread or unknown, taken as running)."""
    if reason is None or reason == RUNNING_REASON:
        return ON_CPU, None
    if reason == GIL_REASON:
        return GIL, None
    if reason == RUNNABLE_REASON:
        return RUNNABLE, None
    return WAITING, reason


class _InThread:
    """A chain's wait reason when a pool thread runs the call it awaits: that thread's native id."""

    __slots__ = ("native_id",)

    def __init__(self, native_id: int | None):
        self.native_id = native_id
