"""The always-on in-process sampler behind the middleware: one thread per process samples the
stacks of the threads serving requests (:class:`StackSampler`). How it stays cheap and safe:
docs/middleware.md.

A sample is ``(time_ns, stack_id, state, weight_ns, reason)``: the start of the interval it stands
for (epoch ns), an id in the process-wide :class:`~.stack_table.StackTable`, ON_CPU or WAITING (from
the thread's CPU clock; GIL when the wait read is for the interpreter's GIL, RUNNABLE when the
thread sat in the run queue: :meth:`~.waits.OwnThreadWaits.reason`), the interval's length,
so a request's samples tile its lifetime, and for a WAITING sample what the thread waits on now
(:class:`~.waits.OwnThreadWaits`; None if unknown).
"""

from __future__ import annotations

import gc
import inspect
import operator
import os
import sys
import threading
import time
from typing import Callable

from ..model import State
from ..model.state import GIL_REASON
from . import forks
from .stack_table import StackTable
from .tasks import LoopStall, TaskSampling, TaskSlot
from .waits import RUNNABLE as RUNNABLE_REASON
from .waits import RUNNING as RUNNING_REASON
from .waits import OwnThreadWaits

ON_CPU = int(State.ON_CPU)
_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
WAITING = int(State.WAITING)
GIL = int(State.GIL)
RUNNABLE = int(State.RUNNABLE)
_UNKNOWN = object()
_NO_FLOOR = 1 << 30



STRETCH_MAX = 4  # the task budget stretches the interval between ticks to this many times the rate's at most

class RequestSlot:
    """What the sampler knows about one in-flight request on one thread."""

    __slots__ = ("ident", "native_id", "thread_name", "clock_id", "last_mono_ns", "last_cpu_ns", "samples", "closed", "gil_stack")

    def __init__(self, ident: int, native_id: int, thread_name: str, clock_id: int | None, last_mono_ns: int, last_cpu_ns: int):
        self.ident = ident
        self.native_id = native_id
        self.thread_name = thread_name
        self.clock_id = clock_id
        self.last_mono_ns = last_mono_ns
        self.last_cpu_ns = last_cpu_ns
        self.samples: list = []
        self.closed = False
        self.gil_stack = None  # the stack of the request's last sample read waiting for the GIL, while it stays the last wait


class StackSampler:
    """The process's sampling thread (see the module docstring). Start it with :meth:`ensure_running`."""

    def __init__(self, rate_hz: float = 100.0, *, on_error: Callable[[str, BaseException], None] | None = None,
                 task_budget: float | None = None):
        if not 0 < rate_hz <= 1000:
            raise ValueError(f"sampler rate must be in (0, 1000] Hz, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self.table = StackTable()
        self.active: dict[int, RequestSlot] = {}
        self.on_error = on_error
        self.ticks = 0
        self.samples_taken = 0
        self.cpu_ns = 0  # the sampling thread's CPU time so far (ticks and the sleeps between them)
        self._thread: threading.Thread | None = None
        self._stopping = False  # set by stop(); the thread sees it within one interval
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._frame_cache: dict[int, _ThreadStack] = {}  # ident -> its last stack, see _stack_of
        self._retired: list = []  # held frames that left their stack this tick, released after the walks
        self._clock_ids: dict[int, int | None] = {}  # native thread id -> its CPU clock (which names only the tid)
        self._live = False  # the sampling thread is running (cleared by the thread as it ends)
        self._forks_seen = forks.count
        self._waits: OwnThreadWaits | None = None  # made and used by the sampling thread only
        self.task_budget = task_budget
        self._tasks_ticked = False  # the last tick sampled requests on event loops
        self.interval_ns = int(1e9 / rate_hz)  # between the last two ticks (longer than the rate's when the task budget stretched it)
        self.tasks = self._new_task_sampling()

    def _new_task_sampling(self) -> TaskSampling:
        return TaskSampling(self.table, int(1e9 / self.rate_hz), self.task_budget)

    # -- request threads ------------------------------------------------------------------

    def begin(
        self, mono_ns: int, cpu_ns: int | None = None, ident: int | None = None, native_id: int | None = None,
        thread_name: str | None = None,
    ) -> RequestSlot:
        """Register the calling thread as serving a request from now on; returns its slot.

        ``cpu_ns``: the thread's CPU time (``time.thread_time_ns()``) at ``mono_ns``; ``ident``,
        ``native_id``, ``thread_name``: the calling thread's ``threading.get_ident()``, native id
        and name; each is read here when the caller has not read it already.
        """
        if ident is None:
            ident = threading.get_ident()
        if native_id is None:
            native_id = threading.get_native_id()
        clock_id = self._clock_ids.get(native_id, _UNKNOWN)
        if clock_id is _UNKNOWN:
            try:
                clock_id = time.pthread_getcpuclockid(ident)
            except (AttributeError, OSError):
                clock_id = None
            if len(self._clock_ids) >= 10_000:
                self._clock_ids.clear()
            self._clock_ids[native_id] = clock_id
        if cpu_ns is None:
            cpu_ns = time.thread_time_ns()
        if thread_name is None:
            thread_name = threading.current_thread().name
        slot = RequestSlot(ident, native_id, thread_name, clock_id, mono_ns, cpu_ns)
        self.active[ident] = slot
        return slot

    def end(self, slot: RequestSlot, previous: RequestSlot | None = None) -> list:
        """Stop sampling the slot's thread for this request; returns its samples.

        ``previous`` is the slot the thread served before (nested requests), restored as active.
        """
        slot.closed = True
        if previous is not None and not previous.closed:
            self.active[slot.ident] = previous
        elif self.active.get(slot.ident) is slot:
            del self.active[slot.ident]
        return list(slot.samples)

    def begin_task(self, info, mono_ns: int, stall_ns: int, on_stall: Callable[[LoopStall], None] | None) -> TaskSlot | None:
        """Register the calling asyncio task as serving a request from now on (see :mod:`.tasks`);
        None outside a task. ``on_stall`` gets the loop's stalls of ``stall_ns`` or longer."""
        return self.tasks.begin(info, mono_ns, stall_ns, on_stall)

    def end_task(self, slot: TaskSlot) -> list:
        """Stop sampling the slot's request; returns its samples."""
        return self.tasks.end(slot)

    # -- the sampling thread --------------------------------------------------------------

    def ensure_running(self) -> None:
        """Start the sampling thread if it is not running in this process (also after fork)."""
        if self._live and self._forks_seen == forks.count:
            return
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self.active.clear()
                self._frame_cache.clear()
                self._retired.clear()
                self._clock_ids.clear()
                self.tasks = self._new_task_sampling()  # the parent's loops are not this process's
                self._thread = None
                if self._waits is not None:  # its files name the parent's threads
                    self._waits.close()
                    self._waits = None
            self._forks_seen = forks.count
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._live = True
                self._thread = threading.Thread(target=self._run, name="profviz-sampler", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping = True
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._frame_cache.clear()  # no frame stays held by a stopped sampler
            self._retired.clear()
            if self._waits is not None:
                self._waits.close()
                self._waits = None
            self._live = False

    def _loop(self) -> None:
        interval_ns = int(1e9 / self.rate_hz)
        next_tick = time.perf_counter_ns() + interval_ns
        cpu_base = time.thread_time_ns() - self.cpu_ns  # cpu_ns: this thread's whole CPU time, sleeps' syscalls included
        budget = self.task_budget
        while True:
            delay = (next_tick - time.perf_counter_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)  # one syscall; Event.wait costs a Condition, a new lock and more per tick
            if self._stopping:
                return
            try:
                self.tick()
            except Exception as exc:  # the sampler never dies of one bad tick
                if self.on_error is not None:
                    self.on_error("sampler", exc)
            spent = time.thread_time_ns() - cpu_base - self.cpu_ns  # since the last tick ended: its sleep's wake-up and it
            self.cpu_ns += spent
            step = interval_ns
            if budget and self._tasks_ticked and spent > budget * interval_ns:
                # over the task budget even with walks deferred: the next tick comes later, at most STRETCH_MAX ticks
                # later (one costly tick, a first one interning many stacks or a collection, delays no more)
                step = min(int(spent / budget), STRETCH_MAX * interval_ns)
            self.interval_ns = step
            now = time.perf_counter_ns()
            next_tick += step
            if next_tick < now:  # fell behind (GIL, suspend): skip missed ticks rather than burst
                next_tick = now + step

    def tick(self) -> int:
        """Take one sample of every thread serving a request; returns how many samples were kept."""
        self.ticks += 1
        slots = list(self.active.values())
        tasks = self.tasks
        tasks_busy = self._tasks_ticked = tasks.busy
        if not slots:
            if self._frame_cache:
                self._frame_cache.clear()  # drops held frames here, outside any walk
            if not tasks_busy:
                return 0
        collecting = gc.isenabled()
        if collecting:  # see the module docstring: no collection, so no finalizer, while frames are walked
            gc.disable()
        try:
            frames = sys._current_frames()
            del frames[threading.get_ident()]  # this very frame: kept, the dict and it would form a cycle
            now_wall = time.time_ns()
            now_mono = time.perf_counter_ns()
            kept = self._sample(slots, frames, now_wall, now_mono) if slots else 0
            if tasks_busy:
                kept += tasks.sample(frames, now_wall, now_mono, self._reason_of)
            del frames
        finally:
            if collecting:
                gc.enable()
        if self._retired:
            self._retired.clear()  # frames that left their stack: freed only now, after the walks
        self.samples_taken += kept
        return kept

    def _own_waits(self) -> OwnThreadWaits:
        """The sampling thread's reader of this process's threads' waits (made on first use)."""
        if self._waits is None:
            self._waits = OwnThreadWaits()
        return self._waits

    def _reason_of(self, native_id: int) -> str | None:
        """What thread ``native_id`` waits on now (:meth:`OwnThreadWaits.reason`)."""
        return self._own_waits().reason(native_id)

    def _sample(self, slots: list[RequestSlot], frames: dict, now_wall: int, now_mono: int) -> int:
        """One sample of each slot's thread; returns how many were kept."""
        get_frame = frames.get
        waiting = []  # (slot, sample index) of WAITING samples: their reasons are read after the walks
        cpu_clock = time.clock_gettime_ns
        stack_of = self._stack_of
        last_stack_of = self._frame_cache.get
        kept = 0
        for slot in slots:
            ident = slot.ident
            frame = get_frame(ident)
            if frame is None or slot.closed:
                if frame is None and ident in self._frame_cache:  # the thread is gone: release its frames
                    self._retired.append(self._frame_cache.pop(ident))
                continue
            wall_delta = now_mono - slot.last_mono_ns
            if wall_delta <= 0:
                continue
            last_cpu = slot.last_cpu_ns
            if slot.clock_id is not None:
                try:
                    cpu = cpu_clock(slot.clock_id)
                except OSError:
                    continue
                if cpu == last_cpu and slot.samples:
                    stack = slot.samples[-1][1]  # the thread has not run since its last sample: same stack
                else:
                    last = last_stack_of(ident)
                    if last is not None and last.leaf is frame and frame.f_lasti == last.leaf_offset:
                        stack = last.leaf_id  # the same call at the same instruction: the same stack
                    else:
                        stack = stack_of(ident, frame, bool(slot.samples))
            else:
                cpu = last_cpu
                stack = stack_of(ident, frame, bool(slot.samples))
            if slot.closed:
                continue
            if 2 * (cpu - last_cpu) >= wall_delta:
                slot.samples.append((now_wall - wall_delta, stack, ON_CPU, wall_delta, None))
            else:
                waiting.append((slot, len(slot.samples)))
                slot.samples.append((now_wall - wall_delta, stack, WAITING, wall_delta, None))
            slot.last_mono_ns = now_mono
            slot.last_cpu_ns = cpu
            kept += 1
        if len(self._frame_cache) > len(slots):
            self._forget_idle(frames)
        if waiting:
            self._add_wait_reasons(waiting, slots)
        return kept

    def _add_wait_reasons(self, waiting: list, slots: list[RequestSlot]) -> None:
        """Give each WAITING sample just taken what its thread waits on (:class:`OwnThreadWaits`),
        or its state when that says GIL or RUNNABLE, unless its request ended meanwhile."""
        waits = self._own_waits()
        if waits.kept > len(slots) + len(self.tasks.loops) + 16:
            waits.keep_only({slot.native_id for slot in slots} | {watch.native_id for watch in list(self.tasks.loops.values())})
        for slot, index in waiting:
            if slot.closed:
                continue
            reason = waits.reason(slot.native_id)
            if reason is None or slot.closed:
                continue
            time_ns, stack, _, weight, _ = slot.samples[index]
            if reason == GIL_REASON:
                slot.samples[index] = (time_ns, stack, GIL, weight, None)
                slot.gil_stack = stack
            elif reason == RUNNABLE_REASON:
                slot.samples[index] = (time_ns, stack, RUNNABLE, weight, None)
            elif reason == RUNNING_REASON:
                if stack == slot.gil_stack:  # running again where it last waited for the GIL: taking turns with it
                    slot.samples[index] = (time_ns, stack, GIL, weight, None)
            else:
                slot.samples[index] = (time_ns, stack, WAITING, weight, reason)
                slot.gil_stack = None

    def _forget_idle(self, frames: dict) -> None:
        """Threads not serving a request now keep the held frames that are still on their stack (a
        server thread's loop, where its next request's first walk stops) and let go of the rest,
        whose lowest depth is the thread's ``floor``: once it is known, no walk is needed to
        tell them apart. A thread that has ended is forgotten. Released frames go to ``_retired``."""
        active, cache, retired = self.active, self._frame_cache, self._retired
        for ident in [i for i in cache if i not in active]:
            cached = cache[ident]
            frame = frames.get(ident)
            if frame is not None and cached.floor == _NO_FLOOR:  # find the highest held frame still on the stack
                held = cached.held
                while frame is not None and frame not in held:
                    frame = frame.f_back
                if frame is not None:
                    order, depth = cached.order, held[frame]
                    above = [held[f] for f in order if held[f] > depth]
                    if above:
                        cached.floor = above[0]
            if frame is None:
                retired.extend(cached.order)
                del cache[ident]
            else:
                cached.release_from(cached.floor, retired)

    def _stack_of(self, ident: int, leaf, same_request: bool = True) -> int:
        """Intern the stack ending at ``leaf``, walking only the part that may differ from this thread's last stack.

        Per thread the cache keeps the last stack's ids root first and holds a reference to some
        of its *settled* frames: plain function frames (not generators or coroutines) that sat
        at the same depth with the same stack id (same code, same line, same callers) in two
        consecutive walks. A walk of a request sampled before (``same_request``) holds at most
        two more, the lowest and the highest settled frame it found (one held frame vouches for
        all below it; holding and releasing every settled frame cost ~2k instructions a frame
        when each tick finds a new request above the server's frames). The first walk of a
        request holds at most the one frame above the lowest held one: its own frames usually
        end before the next tick, and a held frame that ends keeps its callers' frames too (each
        copied out as it returns, released a tick later). Holding the lowest climbs one frame a
        walk until a held frame leaves the stack; its depth (``floor``) is where frames stop
        outliving requests (a server thread's loop is below it), and no walk holds from there up
        but the highest settled frame of a request sampled before.
        The walk goes from the leaf down only until it meets a held frame.
        Holding it makes its identity safe (no other frame can reuse its address) and a plain
        frame still on the stack has run without a break since it was held, so everything below
        it is unchanged; only it (its offset may have moved) and the frames above are read, and
        interned as one run (:meth:`StackTable.intern_run`) on the cached id below it.
        Frames that leave the stack are released by :meth:`tick` after the walks, so a call that
        returned lives at most one tick longer; most calls that come and go between ticks (the
        changing top of a stack) are never held (a fresh call of the same function at the same
        place as in the last walk is).
        When the last stack's leaf is held and is the leaf again at the same offset,
        :meth:`_sample` reuses the stack id without calling this.
        """
        cached = self._frame_cache.get(ident)
        if cached is None:
            cached = self._frame_cache[ident] = _ThreadStack()
        held = cached.held
        fresh, new_codes, new_offsets = [], [], []
        frame = _walk_fresh(leaf, held, fresh, new_codes, new_offsets)
        ids, order = cached.ids, cached.order
        if frame is None:
            base = 0
            cached.floor = _NO_FLOOR  # nothing held is on the stack (a new thread under this ident?): learn again
            if order:
                self._retired.extend(order)
                order.clear()
                held.clear()
        else:
            base = held[frame]
            fresh.append(frame)
            new_codes.append(frame.f_code)
            new_offsets.append(frame.f_lasti)
            retired = self._retired
            while held[order[-1]] > base:  # held frames above it have left the stack
                gone = order.pop()
                if held[gone] < cached.floor:
                    cached.floor = held[gone]
                del held[gone]
                retired.append(gone)
        fresh.reverse()
        new_codes.reverse()
        new_offsets.reverse()
        run = self.table.intern_run(ids[base - 1] if base else -1, new_codes, new_offsets)
        lowest = 1 if frame is not None else 0
        if same_request:
            self._hold_settled(cached, base, fresh, new_codes, run, lowest)
        elif base + lowest < cached.floor and lowest < len(fresh) and not new_codes[lowest].co_flags & _RESUMABLE:
            held[fresh[lowest]] = base + lowest  # climb towards the frames that outlive requests
            order.append(fresh[lowest])
        del ids[base:]
        ids.extend(run)
        stack = run[-1]
        if held.get(leaf) == len(ids) - 1:
            cached.leaf, cached.leaf_offset, cached.leaf_id = leaf, new_offsets[-1], stack
        else:
            cached.leaf = None
        return stack

    @staticmethod
    def _hold_settled(cached: "_ThreadStack", base: int, fresh: list, codes: list, run: tuple, lowest: int) -> None:
        """Hold the lowest and the highest settled frame of a walk (see :meth:`_stack_of`).

        ``fresh``, ``codes`` and ``run``: the walked frames root first from depth ``base``, their
        code objects and stack ids. The highest vouches for every frame below it while its call
        lasts; the lowest, one frame up from the last held one each walk and only below the
        thread's ``floor``, ends up on the frames that outlive every request (a server thread's loop).
        """
        ids, held, order = cached.ids, cached.held, cached.order
        # how many frames from the base have the stack ids of the last walk (same code, same line,
        # same callers), compared element by element in C (a Python loop cost ~800 instructions a frame)
        same_ids = list(map(operator.eq, run, ids[base:]))
        same = same_ids.index(False) if False in same_ids else len(same_ids)
        top = same - 1
        while top >= lowest and codes[top].co_flags & _RESUMABLE:
            top -= 1
        if top >= lowest:
            bottom = lowest
            while codes[bottom].co_flags & _RESUMABLE:
                bottom += 1
            if base + bottom < cached.floor or bottom == top:
                held[fresh[bottom]] = base + bottom
                order.append(fresh[bottom])
            if bottom < top:
                held[fresh[top]] = base + top
                order.append(fresh[top])


def _walk_fresh(leaf, held: dict, fresh: list, codes: list, offsets: list):
    """From ``leaf`` down through ``f_back`` until a frame in ``held`` (or the stack's end):
    appends each frame, its ``f_code`` and its ``f_lasti`` to the three lists, leaf first;
    returns the held frame met, or None."""
    push, add_code, add_offset = fresh.append, codes.append, offsets.append
    frame = leaf
    while frame is not None and frame not in held:
        push(frame)
        add_code(frame.f_code)
        add_offset(frame.f_lasti)
        frame = frame.f_back
    return frame



class _ThreadStack:
    """One thread's last sampled stack (see :meth:`StackSampler._stack_of`): root-first stack
    ids, and the held settled frames by depth."""

    __slots__ = ("ids", "held", "order", "leaf", "leaf_offset", "leaf_id", "floor")

    def __init__(self):
        self.ids: list[int] = []
        self.floor = _NO_FLOOR  # the lowest depth at which a held frame left the stack: climbing stops below it
        self.held: dict = {}  # frame -> depth; a reference, so identity comparisons are safe
        self.order: list = []  # the held frames, root first
        self.leaf = None  # the last stack's leaf frame when it is held, with its offset and stack id
        self.leaf_offset = -1
        self.leaf_id = -1

    def release_from(self, depth: int, retired: list) -> None:
        """Let go of the held frames at ``depth`` and above (appended to ``retired``)."""
        order, held = self.order, self.held
        while order and held[order[-1]] >= depth:
            gone = order.pop()
            del held[gone]
            retired.append(gone)
        self.leaf = None


_process_sampler: StackSampler | None = None
_process_lock = threading.Lock()


def process_sampler(rate_hz: float = 100.0, on_error: Callable[[str, BaseException], None] | None = None,
                    task_budget: float | None = None) -> StackSampler:
    """The one sampler of this process, created at the first call's rate and task budget (later ones are ignored)."""
    global _process_sampler
    with _process_lock:
        if _process_sampler is None:
            _process_sampler = StackSampler(rate_hz, on_error=on_error, task_budget=task_budget)
        return _process_sampler
