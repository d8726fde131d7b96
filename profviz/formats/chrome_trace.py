"""Chrome's trace event JSON, which Perfetto (ui.perfetto.dev) and chrome://tracing open.

Writing, per sampled thread, three tracks of complete (``X``) events, times in µs with ns kept
as decimals: the thread's stacks, a slice per frame as long as it stays on the stack (runs of
samples with the same frame at the same depth merge; each slice's ``args`` hold its file and
line); the thread's states beside it (a thread named ``<name> · state``: a slice per run of
samples in one state, named ``on-cpu``, ``waiting: <reason>``...); and its spans (``<name> ·
spans``). Thread names and the process's command line come as ``M`` metadata events; the
recording's metadata goes in ``otherData``. Samples that overlap an earlier one are moved to
its end. Kept: every thread's total and its time in each state, frames with files and lines,
spans; dropped: sample boundaries inside runs (a run is one slice).

Reading any trace: ``X`` events and ``B``/``E`` pairs per (pid, tid), nested by time, and sample
events (``P`` with ``sf``, or Chrome's top-level ``samples``) over ``stackFrames``, each lasting
until its thread's next sample; every
stretch of a thread's timeline under at least one slice becomes a sample whose stack is the open
slices, root first (a frame is the slice's name, and ``args.file``/``args.filename`` and
``args.line`` when present). A profviz trace's state tracks give those samples their states (and
the stretches with no frame on the stack); otherwise samples are UNKNOWN. A slice the trace cut
(``B`` with no ``E``: it ends with the trace; ``E`` with no ``B``: left out) is counted in a note;
an ``X`` without a numeric ``dur`` is refused with where it is.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, State, TableLists
from .base import (STATE_LABELS, STATE_OF_LABEL, FormatError, add_note, dumps_json, expect_dict, expect_list, head_text,
                   parse_json, portable_meta, read_meta)

NAME = "perfetto"
DESCRIPTION = "Chrome trace event JSON (Perfetto, chrome://tracing): X, B/E and M events"
EXTENSION = ".trace.json"
DROPS = "the boundaries of samples inside runs of one stack (each run is one slice)"
STATE_SUFFIX = " · state"
SPANS_SUFFIX = " · spans"

_TRACK_TID = 1 << 62  # the state and span tracks' tids (beyond thread ids), named as tracks by their metadata:
TRACK_KEY, OWNER_KEY = "profviz_track", "profviz_of_tid"  # in a track's thread_name args: its kind and its thread's tid


def detect(data: bytes) -> bool:
    """A JSON object with ``traceEvents``, or a JSON list whose first event has ``ph`` (not py-spy's: its own module reads those)."""
    head = head_text(data, 4096).lstrip()
    if head.startswith("{"):
        return '"traceEvents"' in head_text(data, 1 << 20)
    return head.startswith("[") and '"ph"' in head and '"cat":"py-spy"' not in head.replace(" ", "")


# -- writing ------------------------------------------------------------------------------------


def dump(profile: Profile, **_: object) -> bytes:
    events: list[dict] = []
    first, _ = profile.time_range_ns
    origin = int(profile.meta.get("start_ns") or first) if profile.sample_count else int(profile.meta.get("start_ns") or 0)

    def _us(ns: int) -> float:  # µs since the origin: epoch µs as doubles would lose the ns
        return (ns - origin) / 1000

    cmdline = str(profile.meta.get("cmdline") or "")
    for pid in sorted({t.pid for t in profile.threads}):
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": cmdline or f"process {pid}"}})
    cols = profile.columns()
    order = np.lexsort((cols["time_ns"], cols["thread"]))
    threads = cols["thread"][order]
    edges = np.flatnonzero(np.diff(threads)) + 1
    frames = [profile.frame(i) for i in range(len(profile.frame_function))]
    for part in np.split(order, edges) if len(order) else []:
        thread = int(cols["thread"][part[0]])
        info = profile.threads[thread]
        state_tid, span_tid = _TRACK_TID + 2 * thread, _TRACK_TID + 2 * thread + 1
        events.append({"ph": "M", "name": "thread_name", "pid": info.pid, "tid": info.tid, "args": {"name": info.name or f"thread {info.tid}"}})
        events.append({"ph": "M", "name": "thread_name", "pid": info.pid, "tid": state_tid,
                       "args": {"name": f"{info.name}{STATE_SUFFIX}", TRACK_KEY: "state", OWNER_KEY: info.tid}})
        _thread_events(profile, cols, part, info.pid, info.tid, state_tid, frames, events, _us)
    for span in profile.spans:
        if 0 <= span.thread < len(profile.threads):
            info = profile.threads[span.thread]
            events.append({"ph": "X", "name": span.name, "cat": "span", "pid": info.pid, "tid": _TRACK_TID + 2 * span.thread + 1,
                           "ts": _us(span.start_ns), "dur": (span.end_ns - span.start_ns) / 1000,
                           "args": {"trace_id": span.trace_id, "span_id": span.span_id, "kind": span.kind, "status": span.status,
                                    **{str(k): v for k, v in span.attributes.items()}}})
    for thread in sorted({span.thread for span in profile.spans if 0 <= span.thread < len(profile.threads)}):
        info = profile.threads[thread]
        events.append({"ph": "M", "name": "thread_name", "pid": info.pid, "tid": _TRACK_TID + 2 * thread + 1,
                       "args": {"name": f"{info.name}{SPANS_SUFFIX}", TRACK_KEY: "spans", OWNER_KEY: info.tid}})
    doc = {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {"profviz": portable_meta(profile), "origin_ns": origin}}
    return dumps_json(doc)


def _thread_events(profile: Profile, cols: dict, part: np.ndarray, pid: int, tid: int, state_tid: int, frames: list,
                   events: list[dict], _us) -> None:
    """The stack and state slices of one thread's samples ``part`` (in time order)."""
    prefixes, stack_frames = profile.stack_prefix, profile.stack_frame
    paths: dict[int, list[int]] = {NO_STACK: []}
    open_frames: list[tuple[int, int]] = []  # (frame, start ns), root first
    state_run: tuple[int, int, int] | None = None  # (state, reason, start ns)
    end = None

    def close_frames(keep: int, at: int) -> None:
        """Close the frames deeper than ``keep`` at ``at``: emitted root first, so that a parent and a
        child of the same extent come in that order (how trace readers tell which holds which)."""
        for frame, start in open_frames[keep:]:
            function, file, line = frames[frame].function, frames[frame].file, frames[frame].line
            events.append({"ph": "X", "name": function, "pid": pid, "tid": tid, "ts": _us(start), "dur": (at - start) / 1000,
                           "args": {"file": file, "line": line}})
        del open_frames[keep:]

    def close_state(at: int) -> None:
        state, reason, start = state_run
        label = STATE_LABELS[State(state)] + ("" if reason == NO_REASON else f": {profile.strings[reason]}")
        events.append({"ph": "X", "name": label, "pid": pid, "tid": state_tid, "ts": _us(start), "dur": (at - start) / 1000})

    for time, stack, weight, state, reason in zip(cols["time_ns"][part].tolist(), cols["stack"][part].tolist(),
                                                  cols["weight_ns"][part].tolist(), cols["state"][part].tolist(),
                                                  cols["reason"][part].tolist()):
        if end is not None and time > end:  # a gap: everything closes where the last sample ended
            close_frames(0, end)
            close_state(end)
            state_run = None
        elif end is not None:
            time = end  # an overlapping sample starts where the last one ended
        path = paths.get(stack)
        if path is None:
            path, node = [], stack
            while node != NO_STACK:
                path.append(stack_frames[node])
                node = prefixes[node]
            path.reverse()
            paths[stack] = path
        keep = 0
        while keep < len(open_frames) and keep < len(path) and open_frames[keep][0] == path[keep]:
            keep += 1
        close_frames(keep, time)
        open_frames.extend((frame, time) for frame in path[keep:])
        if state_run is None or state_run[:2] != (state, reason):
            if state_run is not None:
                close_state(time)
            state_run = (state, reason, time)
        end = time + weight
    if end is not None:
        close_frames(0, end)
        close_state(end)


# -- reading ------------------------------------------------------------------------------------


def load(data: bytes, *, start_ns: int = 0, **_: object) -> Profile:
    doc = parse_json(data)
    origin = start_ns
    if isinstance(doc, dict):
        raw_events = expect_list(doc.get("traceEvents"), "traceEvents")
        other = doc.get("otherData") if isinstance(doc.get("otherData"), dict) else {}
        meta = read_meta(other.get("profviz", {}), "otherData.profviz") if isinstance(other.get("profviz"), dict) else {}
        if type(other.get("origin_ns")) is int and 0 <= other["origin_ns"] < 2**62:
            origin = other["origin_ns"]  # a profviz trace: its times are µs since this
    else:
        raw_events, meta = expect_list(doc, "the trace"), {}
    names: dict[tuple[int, int], str] = {}
    tracks: dict[tuple[int, int], tuple[str, int]] = {}  # a profviz track's (pid, tid) -> (kind, its thread's tid)
    slices: dict[tuple[int, int], list[tuple[int, int, str, str, int]]] = defaultdict(list)  # (start ns, end ns, name, file, line)
    open_b: dict[tuple[int, int], list[tuple[int, str, str, int]]] = defaultdict(list)
    unmatched = 0
    last = None
    sampled: dict[tuple[int, int], list[tuple[int, object]]] = defaultdict(list)  # sample events: (ts ns, stack frame id)
    for index, raw in enumerate(raw_events):
        event = expect_dict(raw, f"traceEvents[{index}]")
        phase = event.get("ph")
        if phase == "P" and "sf" in event:
            key = (_int(event.get("pid", 0), index, "pid"), _int(event.get("tid", 0), index, "tid"))
            sampled[key].append((origin + _ns(event.get("ts"), index, "ts"), event["sf"]))
            continue
        if phase not in ("X", "B", "E", "M"):
            continue
        key = (_int(event.get("pid", 0), index, "pid"), _int(event.get("tid", 0), index, "tid"))
        if phase == "M":
            args = event.get("args") if isinstance(event.get("args"), dict) else {}
            if event.get("name") == "thread_name" and isinstance(args.get("name"), str):
                names[key] = args["name"]
                if args.get(TRACK_KEY) in ("state", "spans") and type(args.get(OWNER_KEY)) is int:
                    tracks[key] = (args[TRACK_KEY], args[OWNER_KEY])
            continue
        ts = origin + _ns(event.get("ts"), index, "ts")
        last = ts if last is None else max(last, ts)
        args = event.get("args") if isinstance(event.get("args"), dict) else {}
        name = str(event.get("name", ""))
        file = str(args.get("file", args.get("filename", "")) or "")
        line = args.get("line")
        line = line if type(line) is int and 0 <= line < 2**31 else 0
        if phase == "X":
            end = ts + _ns(event.get("dur"), index, "dur")
            last = max(last, end)
            slices[key].append((ts, end, name, file, line))
        elif phase == "B":
            open_b[key].append((ts, name, file, line))
        else:
            if not open_b[key]:  # begun before the trace started
                unmatched += 1
                continue
            begun, begun_name, begun_file, begun_line = open_b[key].pop()
            slices[key].append((begun, ts, begun_name, begun_file, begun_line))
    if isinstance(doc, dict):
        for index, raw in enumerate(doc.get("samples") or [] if isinstance(doc.get("samples"), list) else []):
            sample = expect_dict(raw, f"samples[{index}]")  # Chrome's legacy CPU profile samples beside the events
            key = (_int(sample.get("pid", 0), index, "pid"), _int(sample.get("tid", 0), index, "tid"))
            sampled[key].append((origin + _ns(sample.get("ts"), index, "ts"), sample.get("sf")))
    if sampled:
        _sample_slices(sampled, doc.get("stackFrames") if isinstance(doc, dict) else None, slices)
    for key, still_open in open_b.items():  # still running when the trace ended: they end with it
        unmatched += len(still_open)
        for begun, begun_name, begun_file, begun_line in still_open:
            slices[key].append((begun, max(begun, last), begun_name, begun_file, begun_line))
    profile = Profile({"kind": "import", **meta, "labels": {**(meta.get("labels") or {}), "imported_from": "trace"}})
    tables = TableLists()
    states_of = {(pid, owner): key for key, (kind, owner) in tracks.items() if kind == "state" for pid in (key[0],)}
    columns: list[tuple] = []
    reasons: dict[str, int] = {}
    for key in sorted(set(slices) | set(states_of)):
        if key in tracks:
            continue
        thread = profile.add_thread(key[0], key[1], names.get(key, f"thread {key[1]}"))
        states = sorted(slices.get(states_of[key], [])) if key in states_of else []
        columns.append(_samples(slices.get(key, []), states, thread, tables, reasons))
    tables.fill(profile)
    if unmatched:
        add_note(profile, f"{unmatched} slices were cut by the trace's start or end (an E without its B, or a B without its E): "
                          "those begun end with the trace, the others are left out")
    ids = np.asarray([NO_REASON] + [profile.intern_string(text) for text in reasons], dtype=np.int64)
    names_ = ("time_ns", "thread", "stack", "weight_ns", "state", "reason")
    merged = {name: np.concatenate([c[n] for c in columns]) if columns else np.zeros(0, dtype=np.int64) for n, name in enumerate(names_)}
    if len(merged["time_ns"]) and merged["time_ns"].min() < 0:  # a trace whose times start before its origin: moved to start at 0
        merged["time_ns"] = merged["time_ns"] - merged["time_ns"].min()
    merged["reason"] = ids[merged["reason"] + 1] if len(merged["reason"]) else merged["reason"]
    profile.set_sample_columns(merged)
    return profile


def _samples(thread_slices: list, states: list, thread: int, tables: TableLists, reasons: dict) -> tuple:
    """One thread's samples as columns (time, thread, stack, weight, state, reason index or -1): a
    sweep over its slices in start order with the open ones on a stack (a slice that outlives its
    parent is cut at the parent's end), each stretch under a slice one sample of the open slices'
    stack, split where its state track (``states``, in time order) changes state."""
    thread_slices.sort(key=lambda s: (s[0], -s[1]))
    pieces: list[tuple[int, int, int]] = []  # (start, end, stack node), in time order
    open_stack: list[tuple[int, int]] = []  # (end ns, stack node)
    at = None
    position, count = 0, len(thread_slices)
    while position < count or open_stack:
        next_start = thread_slices[position][0] if position < count else None
        if open_stack and (next_start is None or open_stack[-1][0] <= next_start):
            end, node = open_stack.pop()
            if end > at:
                pieces.append((at, end, node))
                at = end
            continue
        start, end, function, file, line = thread_slices[position]
        position += 1
        if open_stack:
            if start > at:
                pieces.append((at, start, open_stack[-1][1]))
            end = min(end, open_stack[-1][0])
            parent = open_stack[-1][1]
        else:
            parent = NO_STACK
        at = start
        if end > start:
            open_stack.append((end, tables.stack(parent, tables.frame(function, file, line))))
    times, stacks, weights, state_col, reason_col = [], [], [], [], []
    state_at = 0

    def emit(start: int, end: int, node: int) -> None:
        nonlocal state_at
        while start < end:
            while state_at < len(states) and states[state_at][1] <= start:
                state_at += 1
            state, reason, cut = int(State.UNKNOWN), -1, end
            if state_at < len(states):
                s_start, s_end, label = states[state_at][:3]
                if s_start > start:
                    cut = min(end, s_start)
                else:
                    cut = min(end, s_end)
                    name, _, text = label.partition(": ")
                    state = STATE_OF_LABEL.get(name, int(State.UNKNOWN))
                    if state == State.WAITING and text:
                        reason = reasons.setdefault(text, len(reasons))
            times.append(start)
            stacks.append(node)
            weights.append(cut - start)
            state_col.append(state)
            reason_col.append(reason)
            start = cut

    state_ends = [state[1] for state in states]
    cursor = None
    for start, end, node in pieces:  # stretches the state track covers but no slice does: samples with no stack
        if states and (cursor is None or start > cursor):
            _uncovered(states, state_ends, cursor, start, emit)
        emit(start, end, node)
        cursor = end
    if states:
        _uncovered(states, state_ends, cursor, states[-1][1], emit)
    return (np.asarray(times, dtype=np.int64), np.full(len(times), thread, dtype=np.int64), np.asarray(stacks, dtype=np.int64),
            np.asarray(weights, dtype=np.int64), np.asarray(state_col, dtype=np.int64), np.asarray(reason_col, dtype=np.int64))


def _uncovered(states: list, state_ends: list, after: int | None, before: int, emit) -> None:
    """Emit, with no stack, the parts of the state slices between ``after`` (None: the start) and ``before``."""
    for s_start, s_end, *_ in states[0 if after is None else bisect_right(state_ends, after):]:
        if s_start >= before:
            break
        start = s_start if after is None else max(s_start, after)
        end = min(s_end, before)
        if end > start:
            emit(start, end, NO_STACK)


MAX_FRAME_DEPTH = 10_000


def _sample_slices(sampled: dict, stack_frames: object, slices: dict) -> None:
    """Sample events (``P`` events with ``sf``, and Chrome's ``samples``) as slices: each sample's
    stack (``stackFrames``, followed through ``parent``) from its time to its thread's next sample
    (the last one lasts the thread's median interval)."""
    frames = stack_frames if isinstance(stack_frames, dict) else {}
    paths: dict[str, list[tuple[str, str, int]]] = {}

    def path(frame_id: object) -> list[tuple[str, str, int]]:
        key = str(frame_id)
        found = paths.get(key)
        if found is None:
            chain, at = [], key
            while at in frames:
                if len(chain) >= MAX_FRAME_DEPTH:
                    raise FormatError(f"stackFrames[{key[:30]!r}] has parents {MAX_FRAME_DEPTH} deep or in a cycle")
                frame = frames[at] if isinstance(frames[at], dict) else {}
                chain.append((str(frame.get("name", at)), str(frame.get("category", "") or ""), 0))
                at = str(frame["parent"]) if "parent" in frame and frame["parent"] is not None else None
            if not chain and frame_id is not None:
                raise FormatError(f"a sample names stack frame {key[:30]!r}, which stackFrames does not have")
            found = paths[key] = chain[::-1]
        return found

    for key, items in sampled.items():
        items.sort(key=lambda item: item[0])
        gaps = [later[0] - earlier[0] for earlier, later in zip(items, items[1:]) if later[0] > earlier[0]]
        last = sorted(gaps)[len(gaps) // 2] if gaps else 0
        for (ts, frame_id), nxt in zip(items, items[1:] + [(items[-1][0] + last, None)]):
            if nxt[0] > ts:
                slices[key].extend((ts, nxt[0], name, file, line) for name, file, line in path(frame_id))


def _ns(value: object, index: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) > 9e15:
        raise FormatError(f"traceEvents[{index}].{what} is {str(value)[:30]!r}; expected microseconds as a number")
    return int(round(value * 1000))


def _int(value: object, index: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.lstrip("-").isdecimal() and len(value) < 20:
            return int(value)
        raise FormatError(f"traceEvents[{index}].{what} is {str(value)[:30]!r}; expected an integer")
    return value
