"""py-spy's ``--format chrometrace`` output: detection, parsing into per-thread stack segments, and
loading as a profile.

What py-spy (0.4.3, checked against its source) writes with ``record --idle --threads --format
chrometrace``: one JSON list of ``{"name", "cat": "py-spy", "ph": "B"|"E", "pid", "tid", "ts",
"args": {"filename", "line"}}`` events. ``ts`` is in µs since py-spy created its trace writer (right
after it started, before it attached), taken when py-spy's main loop handles a sample. A thread's
events appear only when its stack changes: at such an instant py-spy emits ``E`` for the frames
that left (leaf first) and ``B`` for the frames that came (root first), so a run of identical
samples is one segment whose start and end are both sampling instants. At the end every open frame
gets an ``E`` at the time the file is written. ``--threads`` puts a pseudo root frame
``thread (<native tid>): <thread name>`` (the tid in hex ``0x...`` when py-spy does not know the
native id), ``--subprocesses`` puts ``process <pid>:"<command line>"`` frames above it. ``tid`` is
the pthread id in 0.4.x (newer py-spy renumbers it and adds ``"ph": "M"`` ``thread_name`` events
whose ``args.name`` is ``"<native tid>: <name>"``; both are understood).

Thread identity: glibc gives an ended thread's pthread id to the next thread it creates, so one
``tid`` can carry many threads in turn (a server with a thread per request). A thread is therefore
the native tid of the root frame: when it changes under the same ``tid``, the open segment ends
there and a new :class:`TraceThread` begins. py-spy emits nothing when a thread ends, so its last
segment runs until py-spy's first sample of the next thread with that ``tid`` (or the end of the
file); the live collector cuts it with the thread's state readings, an imported file cannot. py-spy
also caches thread names by pthread id (on Python >= 3.11 it never drops that cache), so a thread
that reuses an id can carry its predecessor's name: :func:`thread_name` marks those. It cannot
mark the first thread of an id in the trace whose predecessor ended before py-spy's first recorded
sample (py-spy reads the names once while attaching).

:func:`parse_events` turns the events into :class:`TraceThread` objects holding
:class:`StackSegment` runs (times still in µs since py-spy's origin, Python frames only);
:func:`segment_sample_times` splits a segment into evenly spaced samples whose weights add up to
its length; :func:`load` builds a profile whose states are all UNKNOWN (no thread states are in
the file). The live collector (:mod:`profviz.collect.attach`) reuses the parsing and the sample
splitting and adds the states.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model import NO_STACK, Profile, State
from .base import FormatError, expect_dict, expect_list, head_text, parse_json, short

THREAD_FRAME = re.compile(r"thread \((0x[0-9A-Fa-f]+|\d+)\)(?:: (.*))?", re.S)
PROCESS_FRAME = re.compile(r'process (\d+):"(.*)"', re.S)
METADATA_THREAD_NAME = re.compile(r"(\d+): (.*)", re.S)

STALE_NAME_MARK = "(stale name?)"

Frame = tuple[str, str, int]


@dataclass
class StackSegment:
    """A run of identical samples of one thread: [start_us, end_us) and its Python frames, root first."""

    start_us: int
    end_us: int
    frames: tuple[Frame, ...]


@dataclass
class TraceThread:
    """One thread of a chrome trace. ``native_tid`` is None when py-spy did not know it.

    ``predecessor_name`` is the name of the thread that had the same pthread id before this one
    (None if there was none); see :func:`thread_name`.
    """

    pid: int
    trace_tid: int
    native_tid: int | None = None
    name: str = ""
    segments: list[StackSegment] = field(default_factory=list)
    process_command: str = ""
    predecessor_name: str | None = None


@dataclass
class ChromeTrace:
    """Parsed trace: threads in order of first appearance, and the first/last event times (µs)."""

    threads: list[TraceThread]
    first_us: int
    last_us: int
    event_count: int

    @property
    def segment_count(self) -> int:
        return sum(len(t.segments) for t in self.threads)


def detect(data: bytes) -> bool:
    """True when ``data`` looks like py-spy's chrometrace output (a JSON list of py-spy events)."""
    head = head_text(data, 4096)
    return head.startswith("[") and '"cat":"py-spy"' in head.replace(" ", "")


def _thread_identity(frame_name: str) -> tuple[int | None, str] | None:
    match = THREAD_FRAME.fullmatch(frame_name)
    if match is None:
        return None
    tid_text, name = match.group(1), match.group(2) or ""
    native = None if tid_text.lower().startswith("0x") else int(tid_text)
    return native, name


class _OpenThread:
    """The frames currently open under one chrometrace ``tid``, and the thread they belong to.

    ``tid`` is a pthread id, which glibc hands to the next thread once one has ended; the root
    frame ``thread (<native tid>): <name>`` tells them apart, so a stack with another native tid
    than the current thread's starts a new :class:`TraceThread` (appended to ``order``).
    """

    __slots__ = ("thread", "order", "stack", "pending_us", "open_start_us", "open_frames")

    def __init__(self, thread: TraceThread, order: list[TraceThread]):
        self.thread = thread
        self.order = order
        self.stack: list[tuple[str, str, int]] = []
        self.pending_us: int | None = None
        self.open_start_us: int | None = None
        self.open_frames: tuple[Frame, ...] | None = None

    def commit(self) -> None:
        """The stack after all events at ``pending_us`` is known: close/open segments if it changed."""
        at = self.pending_us
        if at is None:
            return
        self.pending_us = None
        native, name, command, frames = _split_stack(self.stack, self.thread.pid)
        if native == self.thread.pid and self.thread.native_tid not in (None, native):
            # The main thread (native tid = pid) keeps its pthread id for the process's life, so
            # another thread's pthread id reporting it is a misread (CPython 3.11 starts a new
            # thread's state with its creator's ids until it runs): the stack stays with the thread.
            native = None
        if native is not None and self.thread.native_tid is not None and native != self.thread.native_tid:
            self.close(at)
            predecessor = self.thread.name
            self.thread = TraceThread(pid=self.thread.pid, trace_tid=self.thread.trace_tid, predecessor_name=predecessor)
            self.order.append(self.thread)
        if native is not None:
            self.thread.native_tid = native
        if name:
            self.thread.name = name
        if command:
            self.thread.process_command = command
        if frames == self.open_frames and self.open_start_us is not None:
            return
        self.close(at)
        if self.stack:
            self.open_start_us, self.open_frames = at, frames
        else:
            self.open_start_us, self.open_frames = None, None

    def close(self, at: int) -> None:
        """End the open segment at ``at``."""
        if self.open_start_us is not None and at > self.open_start_us:
            self.thread.segments.append(StackSegment(self.open_start_us, at, self.open_frames or ()))
        self.open_start_us, self.open_frames = None, None


def _split_stack(stack: list[Frame], pid: int) -> tuple[int | None, str, str, tuple[Frame, ...]]:
    """(native tid, thread name, command line of process ``pid``, Python frames) of a py-spy
    stack, root first: the ``process`` and ``thread`` pseudo frames at its root (no file, no line)
    are taken off."""
    native, thread_name, command = None, "", ""
    start = 0
    for i, (name, file, line) in enumerate(stack):
        if file or line:
            break
        identity = _thread_identity(name)
        if identity is not None:
            native, thread_name = identity
            start = i + 1
            continue
        process = PROCESS_FRAME.fullmatch(name)
        if process is not None:
            if int(process.group(1)) == pid:
                command = process.group(2)
            start = i + 1
            continue
        break
    return native, thread_name, command, tuple(stack[start:])


def parse_events(events: Any) -> ChromeTrace:
    """Rebuild per-thread stack segments from py-spy's B/E events (see the module docstring).

    Raises FormatError naming the offending event when the list is not py-spy's shape.
    """
    events = expect_list(events, "the chrome trace")
    open_threads: dict[tuple[int, int], _OpenThread] = {}
    order: list[TraceThread] = []
    metadata_names: dict[tuple[int, int], tuple[int, str]] = {}
    first_us: int | None = None
    last_us = 0
    count = 0
    indexed = []
    for index, event in enumerate(events):
        where = f"event {index}"
        event = expect_dict(event, where)
        phase = event.get("ph")
        try:
            key = (int(event.get("pid", 0)), int(event["tid"]))
            ts = int(event.get("ts", 0))
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{where} needs integer pid, tid and ts, got {short(event)}") from None
        if ts < 0:
            raise FormatError(f"{where} has a negative ts {ts}")
        if phase == "M":
            name_arg = (event.get("args") or {}).get("name") if isinstance(event.get("args"), dict) else None
            match = METADATA_THREAD_NAME.fullmatch(name_arg) if isinstance(name_arg, str) else None
            if event.get("name") == "thread_name" and match:
                metadata_names[key] = (int(match.group(1)), match.group(2))
            continue
        if phase not in ("B", "E"):
            continue
        indexed.append((ts, index, key, phase, event))
    indexed.sort(key=lambda item: (item[0], item[1]))
    for ts, index, key, phase, event in indexed:
        state = open_threads.get(key)
        if state is None:
            thread = TraceThread(pid=key[0], trace_tid=key[1])
            order.append(thread)
            state = open_threads[key] = _OpenThread(thread, order)
        if state.pending_us is not None and state.pending_us != ts:
            state.commit()
        state.pending_us = ts
        if phase == "B":
            args = event.get("args") if isinstance(event.get("args"), dict) else {}
            name, file, line = event.get("name"), args.get("filename", ""), args.get("line") or 0
            if not isinstance(name, str) or not isinstance(file, str) or not isinstance(line, int) or line < 0:
                raise FormatError(f"event {index} (B) needs a string name, string args.filename and int args.line >= 0, got {short(event)}")
            state.stack.append((name, file, line))
        elif state.stack:
            state.stack.pop()
        count += 1
        first_us = ts if first_us is None else first_us
        last_us = max(last_us, ts)
    for state in open_threads.values():
        state.commit()
        state.close(last_us)
    order = [thread for thread in order if thread.segments]
    for thread in order:
        named = metadata_names.get((thread.pid, thread.trace_tid))
        if named is not None:
            if thread.native_tid is None:
                thread.native_tid = named[0]
            if not thread.name:
                thread.name = named[1]
    return ChromeTrace(threads=order, first_us=first_us or 0, last_us=last_us, event_count=count)


def segment_sample_times(start_ns: int, end_ns: int, period_ns: float) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced sample times over [start_ns, end_ns) and their weights.

    The count is the segment length in periods, rounded, at least 1; the weights are whole ns,
    each > 0, and add up exactly to the segment length (the sampled wall time is kept exactly).
    """
    length = int(end_ns) - int(start_ns)
    if length <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    count = max(1, min(length, int(round(length / period_ns))))
    edges = int(start_ns) + (np.arange(count + 1, dtype=np.int64) * length) // count
    return edges[:-1], np.diff(edges)


def name_is_stale(thread: TraceThread) -> bool:
    """True when py-spy gave ``thread`` the name of the thread that had its pthread id before it.

    py-spy caches thread names by pthread id and (on Python >= 3.11, where it reads the native id
    from the thread state) does not drop the cache when glibc reuses the id for a new thread, so
    the new thread carries the old name until py-spy next refreshes its name table.
    """
    return bool(thread.name) and thread.name == thread.predecessor_name


def thread_name(thread: TraceThread) -> str:
    """The name to store: py-spy's, marked ``(stale name?)`` when :func:`name_is_stale`."""
    return f"{thread.name} {STALE_NAME_MARK}" if name_is_stale(thread) else thread.name


def thread_label(thread: TraceThread) -> int:
    """The tid to store: the native one when known, else py-spy's own id."""
    return thread.native_tid if thread.native_tid is not None else thread.trace_tid


def load(
    data: bytes,
    *,
    origin_ns: int | None = None,
    rate_hz: float = 100.0,
    meta: dict | None = None,
    file_mtime_ns: int | None = None,
) -> Profile:
    """A profile from py-spy chrometrace bytes; every sample is UNKNOWN (the file has no thread states).

    Absolute times: ``origin_ns`` (epoch ns of py-spy's ts 0) when known; otherwise the file's
    modification time is taken as the time of its last event (py-spy writes it when it stops).
    ``rate_hz`` is the rate py-spy sampled at (the file does not say); segments are split into
    samples of about 1/rate_hz each.
    """
    trace = parse_events(parse_json(data))
    if rate_hz <= 0:
        raise FormatError(f"the sampling rate must be > 0 Hz, got {rate_hz}")
    if origin_ns is None:
        end_ns = file_mtime_ns if file_mtime_ns is not None else 0
        origin_ns = max(0, end_ns - trace.last_us * 1000)
    profile = Profile({"kind": "import", "rate_hz": float(rate_hz), **(meta or {})})
    add_trace_samples(profile, trace, origin_ns, rate_hz)
    first, end = profile.time_range_ns
    profile.meta.setdefault("start_ns", first)
    profile.meta.setdefault("duration_ns", max(0, end - first))
    pids = {t.pid for t in trace.threads}
    if len(pids) == 1:
        profile.meta.setdefault("pid", pids.pop())
    return profile


def add_trace_samples(profile: Profile, trace: ChromeTrace, origin_ns: int, rate_hz: float) -> int:
    """Append every segment of ``trace`` as UNKNOWN samples; return the number appended."""
    period_ns = 1e9 / rate_hz
    appended = 0
    stacks: dict[tuple, int] = {}
    for thread in trace.threads:
        index = profile.add_thread(thread.pid, thread_label(thread), thread_name(thread))
        times, weights, stack_col = [], [], []
        for segment in thread.segments:
            stack = stacks.get(segment.frames)
            if stack is None:
                stack = stacks[segment.frames] = profile.intern_frames(segment.frames) if segment.frames else NO_STACK
            segment_times, segment_weights = segment_sample_times(
                origin_ns + segment.start_us * 1000, origin_ns + segment.end_us * 1000, period_ns
            )
            times += segment_times.tolist()
            weights += segment_weights.tolist()
            stack_col += [stack] * len(segment_times)
        profile.extend_samples(times, index, stack_col, weights, [int(State.UNKNOWN)] * len(times))
        appended += len(times)
    return appended


def load_path(path: str | os.PathLike, *, rate_hz: float = 100.0, origin_ns: int | None = None) -> Profile:
    """:func:`load` on a file, using its modification time when ``origin_ns`` is not given."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        mtime_ns = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror}") from None
    return load(data, origin_ns=origin_ns, rate_hz=rate_hz, file_mtime_ns=mtime_ns)

