"""The always-on in-process sampler behind the WSGI middleware.

One daemon thread per process wakes ``rate_hz`` times a second, reads every thread's Python stack
with ``sys._current_frames()`` and keeps a sample for each thread that is serving a request at
that instant (the middleware registers a :class:`RequestSlot` per request under the thread's
``threading.get_ident()``). Threads not serving a request cost one dict lookup, so the sampler's
cost grows with the number of busy threads and the stack depth, never with the request rate.

CPU or waiting: each slot remembers the thread's CPU clock (``time.pthread_getcpuclockid`` +
``time.clock_gettime_ns``) and a monotonic clock at the previous sample (at request start for
the first). A sample stands for the interval since then; it is ``ON_CPU`` when the thread's CPU
time grew by at least half of that wall interval, ``WAITING`` otherwise. A thread waiting for
the GIL burns no CPU, so it counts as WAITING. Wait reasons are not visible in-process: the
reason stays None.

Cost: a tick walks a thread's stack only when its CPU clock moved since its last sample, and then
only down to the first frame it already knows: the sampler holds references to frames that stayed
put between two samples (see :meth:`StackSampler._stack_of`), so a thread still inside the same
call at the same instruction costs a few attribute reads, whatever its depth.

Safety: reading another thread's frames is memory-safe only while that thread cannot run, i.e.
while the sampling thread holds the GIL; anything that lets it go mid-walk (a garbage collection
running a finalizer that does I/O) gives the other thread the chance to pop frames the walk is
about to read. CPython 3.11 has crash reports from samplers built this way (Sentry's and
ddtrace's profilers), so a tick runs with the cyclic garbage collector paused (re-enabled at
once, and only if it was enabled), and the held frames that left their stack (whose release can
run finalizers) are let go only after the walks. Holding a frame that is still running reads
nothing; a held call that returns keeps its locals at most one tick longer. The interpreter can
still switch threads mid-walk after its switch interval (5 ms, far longer than a tick);
``sampler=False`` turns the sampler off where that risk is not acceptable (timing and
pyinstrument deep profiles do not read other threads).

A sample is ``(time_ns, stack_id, state, weight_ns)``: ``time_ns`` is the start of the interval it
stands for (epoch ns), ``weight_ns`` its length, so a request's samples tile its lifetime up to the
last tick. ``stack_id`` indexes the process-wide :class:`StackTable`, turned into model frames
only off the request path (by the writer thread).
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

from ..model import Profile, State, TableLists
from . import forks

ON_CPU = int(State.ON_CPU)
_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
WAITING = int(State.WAITING)
RUNS_KEPT = 8192  # StackTable.intern_run's remembered runs (each ~1 KB at 25 frames)
TABLE_FULL_FRAME = ("(profviz stack table full)", "<profviz>", 0)
_UNKNOWN = object()
_NO_FLOOR = 1 << 30


class StackTable:
    """Interned stacks as (prefix stack id, code object, line); id -1 is the empty stack.

    Only the sampler thread appends; other threads may read ids it has handed out (list reads
    are safe under the GIL). Past ``limit`` entries new stacks map to one placeholder stack.
    """

    def __init__(self, limit: int = 1_000_000):
        self.limit = limit
        self.prefix: list[int] = []
        self.code: list = []
        self.line: list[int] = []
        self._index: dict[tuple, int] = {}
        self._by_instruction: dict[tuple, int] = {}
        self._runs: dict[tuple, tuple] = {}  # see intern_run
        self.full_stack = -1
        # stack id -> the tables a new profile gets from that stack alone (see _new_profile_tables)
        self.profile_prefixes: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.prefix)

    def intern(self, prefix: int, code, line: int) -> int:
        """The id of stack ``prefix`` + ``code`` at ``line``. Keyed by the code object's identity:
        code objects compare equal by content, file name aside, so two functions alike in two
        files would share a stack (and the hash is recomputed from the content at each lookup).
        The table holds every code object it has interned, so no id in a key can be reused."""
        key = (prefix, id(code), line)
        found = self._index.get(key)
        if found is not None:
            return found
        if len(self.prefix) >= self.limit:
            if self.full_stack < 0:
                self.full_stack = len(self.prefix)
                self.prefix.append(-1)
                self.code.append(None)
                self.line.append(0)
            return self.full_stack
        index = len(self.prefix)
        self.prefix.append(prefix)
        self.code.append(code)
        self.line.append(line)
        self._index[key] = index
        return index

    def intern_instruction(self, prefix: int, code, offset: int) -> int:
        """:meth:`intern` of a frame of ``code`` stopped at instruction byte offset ``offset`` (``f_lasti``).

        Keyed first by offset: the line is looked up in the code's line table only the first
        time an instruction is seen under a prefix. The key holds ``id(code)``, not the code
        object, whose hash is recomputed from its contents at every lookup; the entry keeps the
        code object alive and is used only for that very object, so a reused id cannot match.
        """
        key = (prefix, id(code), offset)
        found = self._by_instruction.get(key)
        if found is None or found[1] is not code:
            if len(self._by_instruction) >= 2 * self.limit:
                self._by_instruction.clear()
            found = self._by_instruction[key] = (self.intern(prefix, code, _line_at(code, offset)), code)
        return found[0]

    def intern_run(self, prefix: int, codes: list, offsets: list[int]) -> tuple[int, ...]:
        """The stack ids of a run of frames on top of stack ``prefix``: ``codes[i]`` stopped at byte
        offset ``offsets[i]``, root first (each :meth:`intern_instruction` on the one before).

        Whole runs are remembered (up to ``RUNS_KEPT``, then forgotten all at once): a walk's
        frames usually repeat a run seen before (another request to the same endpoint), and one
        lookup keyed by the whole run costs far less than one per frame. The key
        holds ``id()`` of each code object (see :meth:`intern_instruction`); the entry keeps the
        code objects alive, so no id in a key can be reused while the key exists.
        """
        key = (prefix, *map(id, codes), *offsets)
        found = self._runs.get(key)
        if found is not None:
            return found[0]
        by_instruction, intern_instruction = self._by_instruction, self.intern_instruction
        stack, run = prefix, []
        for code, offset in zip(codes, offsets):
            found = by_instruction.get((stack, id(code), offset))  # intern_instruction's lookup, inlined
            stack = found[0] if found is not None and found[1] is code else intern_instruction(stack, code, offset)
            run.append(stack)
        if len(self._runs) >= RUNS_KEPT:
            self._runs.clear()
        run = tuple(run)
        self._runs[key] = (run, tuple(codes))
        return run

    def frame(self, stack_id: int) -> tuple[str, str, int]:
        """(function, file, line) of the innermost frame of a stack."""
        code = self.code[stack_id]
        if code is None:
            return TABLE_FULL_FRAME
        return getattr(code, "co_qualname", code.co_name), code.co_filename, int(self.line[stack_id] or 0)

    def nodes(self, start: int, end: int) -> list[tuple[int, int, str, str, int]]:
        """Stacks ``start`` .. ``end - 1`` as ``(id, prefix id, function, file, line)`` (a prefix id is
        always lower than its stack's)."""
        prefix, frame = self.prefix, self.frame
        return [(node, prefix[node], *frame(node)) for node in range(start, end)]

    def frames(self, stack_id: int) -> list[tuple[str, str, int]]:
        """(function, file, line) triples of a stack, root first."""
        out = []
        while stack_id >= 0:
            out.append(self.frame(stack_id))
            stack_id = self.prefix[stack_id]
        out.reverse()
        return out


def _line_at(code, offset: int) -> int:
    """The line of the instruction at byte ``offset`` of ``code`` (what ``frame.f_lineno`` reports)."""
    if offset < 0:
        return code.co_firstlineno
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line or 0
    return 0


class RequestSlot:
    """What the sampler knows about one in-flight request on one thread."""

    __slots__ = ("ident", "native_id", "thread_name", "clock_id", "last_mono_ns", "last_cpu_ns", "samples", "closed")

    def __init__(self, ident: int, native_id: int, thread_name: str, clock_id: int | None, last_mono_ns: int, last_cpu_ns: int):
        self.ident = ident
        self.native_id = native_id
        self.thread_name = thread_name
        self.clock_id = clock_id
        self.last_mono_ns = last_mono_ns
        self.last_cpu_ns = last_cpu_ns
        self.samples: list = []
        self.closed = False


class StackSampler:
    """The process's sampling thread (see the module docstring). Start it with :meth:`ensure_running`."""

    def __init__(self, rate_hz: float = 100.0, *, on_error: Callable[[str, BaseException], None] | None = None):
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
                self._thread = None
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
            self._live = False

    def _loop(self) -> None:
        interval_ns = int(1e9 / self.rate_hz)
        next_tick = time.perf_counter_ns() + interval_ns
        cpu_base = time.thread_time_ns() - self.cpu_ns  # cpu_ns: this thread's whole CPU time, sleeps' syscalls included
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
            self.cpu_ns = time.thread_time_ns() - cpu_base
            now = time.perf_counter_ns()
            next_tick += interval_ns
            if next_tick < now:  # fell behind (GIL, suspend): skip missed ticks rather than burst
                next_tick = now + interval_ns

    def tick(self) -> int:
        """Take one sample of every thread serving a request; returns how many samples were kept."""
        self.ticks += 1
        slots = list(self.active.values())
        if not slots:
            if self._frame_cache:
                self._frame_cache.clear()  # drops held frames here, outside any walk
            return 0
        collecting = gc.isenabled()
        if collecting:  # see the module docstring: no collection, so no finalizer, while frames are walked
            gc.disable()
        try:
            kept = self._sample(slots)
        finally:
            if collecting:
                gc.enable()
        if self._retired:
            self._retired.clear()  # frames that left their stack: freed only now, after the walks
        self.samples_taken += kept
        return kept

    def _sample(self, slots: list[RequestSlot]) -> int:
        """One sample of each slot's thread; returns how many were kept."""
        frames = sys._current_frames()
        del frames[threading.get_ident()]  # this very frame: kept, the dict and it would form a cycle
        now_wall = time.time_ns()
        now_mono = time.perf_counter_ns()
        get_frame = frames.get
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
            slot.samples.append((now_wall - wall_delta, stack, ON_CPU if 2 * (cpu - last_cpu) >= wall_delta else WAITING, wall_delta))
            slot.last_mono_ns = now_mono
            slot.last_cpu_ns = cpu
            kept += 1
        if len(self._frame_cache) > len(slots):
            self._forget_idle(frames)
        return kept

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


class StackConverter:
    """Turns :class:`StackTable` stack ids into one profile's stack indexes.

    Each table node (prefix, code, line) becomes one ``intern_stack(prefix, intern_frame(...))``
    the first time it is met, and is remembered: stacks sharing a prefix (all of a request's
    stacks share the server's and the framework's frames) convert that prefix once per profile.
    """

    def __init__(self, table: StackTable, profile: Profile):
        self.table = table
        self.profile = profile
        self._stacks: dict[int, int] = {-1: -1}

    def stack(self, stack_id: int) -> int:
        converted = self._stacks.get(stack_id)
        if converted is not None:
            return converted
        pending = []
        node = stack_id
        while node not in self._stacks:
            pending.append(node)
            node = self.table.prefix[node]
        stack = self._stacks[node]
        table, profile = self.table, self.profile
        for node in reversed(pending):
            stack = self._stacks[node] = profile.intern_stack(stack, profile.intern_frame(*table.frame(node)))
        return stack


PREFIX_EVERY = 8  # _new_profile_tables remembers a first stack's tables at every 8th depth and at its leaf
PREFIXES_KEPT = 4096  # at most this many remembered, then forgotten all at once


def _new_profile_tables(table: StackTable, profile: Profile, stack_ids: list[int]) -> dict[int, int]:
    """Fill the empty tables of a new ``profile`` with the stacks ``stack_ids`` use; table id -> profile stack.

    The tables come out exactly as :class:`StackConverter` builds them through the interning
    methods (same strings, frames and stacks in the same order), built in a :class:`TableLists`
    and handed to the profile at once (per node, the interning methods' checks and the arrays'
    appends cost more than the conversion itself; ``set_tables`` checks the whole tables once).

    The first stack is converted into empty tables, so what its root-first frames add is a pure
    function of the table's nodes: the table remembers it (``profile_prefixes``) at every
    ``PREFIX_EVERY``-th depth and at the leaf, and a later profile whose first stack passes
    through a remembered node starts from a copy (C-level list and dict building) and converts
    only the nodes above it: the server's and the framework's frames, below every request's
    stacks, are converted once per process, not once per stored profile.
    """
    table_prefix, frame_of, prefixes_kept = table.prefix, table.frame, table.profile_prefixes
    first = stack_ids[0] if stack_ids else -1
    node = first
    while node >= 0 and node not in prefixes_kept:
        node = table_prefix[node]
    if node >= 0:
        nodes, strings, functions, files, lines, stack_frames = prefixes_kept[node]
        nodes = list(nodes)
        tables = TableLists(strings, functions, files, lines, range(-1, len(nodes) - 1), stack_frames)
    else:
        nodes, tables = [], TableLists()
    converted = dict(zip(nodes, range(len(nodes))))
    converted[-1] = -1
    intern_frame, intern_stack = tables.frame, tables.stack
    remembered = []  # (node, string count, frame count, depth) of the first stack's nodes to remember
    for stack_id in stack_ids:
        if stack_id in converted:
            continue
        pending = []
        node = stack_id
        while node not in converted:
            pending.append(node)
            node = table_prefix[node]
        stack = converted[node]
        pending.reverse()
        if stack_id == first:
            nodes.extend(pending)  # the first stack's chain, root first: its nodes are stacks 0, 1, ...
        for node in pending:
            stack = converted[node] = intern_stack(stack, intern_frame(*frame_of(node)))
            if stack_id == first and ((stack + 1) % PREFIX_EVERY == 0 or node == first):
                remembered.append((node, len(tables.strings), len(tables.functions), stack + 1))
    if remembered:
        if len(prefixes_kept) + len(remembered) > PREFIXES_KEPT:
            prefixes_kept.clear()
        for node, string_count, frame_count, depth in remembered:
            prefixes_kept[node] = (
                tuple(nodes[:depth]), tuple(tables.strings[:string_count]), tuple(tables.functions[:frame_count]),
                tuple(tables.files[:frame_count]), tuple(tables.lines[:frame_count]), tuple(tables.stack_frames[:depth]),
            )
    tables.fill(profile)
    return converted


def samples_to_profile(
    table: StackTable,
    samples: list,
    *,
    pid: int,
    tid: int,
    thread_name: str,
    meta: dict,
    profile: Profile | None = None,
) -> Profile:
    """Add sampler samples of one thread to ``profile`` (a new one with ``meta`` if None).

    A new profile is filled in bulk (see :func:`_new_profile_tables`): the same profile as
    through ``intern_frames`` and ``append_sample``, built with :meth:`Profile.set_tables` and
    :meth:`Profile.extend_samples`, which check what those check.
    """
    if profile is not None:
        thread = profile.add_thread(pid, tid, thread_name)
        stack_of = StackConverter(table, profile).stack
        for time_ns, stack_id, state, weight_ns in samples:
            profile.append_sample(time_ns, thread, stack_of(stack_id), weight_ns, state)
        return profile
    profile = Profile(meta)
    thread = profile.add_thread(pid, tid, thread_name)
    converted = _new_profile_tables(table, profile, [sample[1] for sample in samples])
    profile.extend_samples(
        [sample[0] for sample in samples], thread, [converted[sample[1]] for sample in samples],
        [sample[3] for sample in samples], [sample[2] for sample in samples],
    )
    return profile


_process_sampler: StackSampler | None = None
_process_lock = threading.Lock()


def process_sampler(rate_hz: float = 100.0, on_error: Callable[[str, BaseException], None] | None = None) -> StackSampler:
    """The one sampler of this process, created at the first call's rate (later rates are ignored)."""
    global _process_sampler
    with _process_lock:
        if _process_sampler is None:
            _process_sampler = StackSampler(rate_hz, on_error=on_error)
        return _process_sampler
