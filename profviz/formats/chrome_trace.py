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
from .trace_slices import frame_slices, nest, nested_samples, stack_depths, tiled_times, value_runs
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
LIMIT_NS = 2**62  # times beyond this many ns either side of the epoch are refused: their sums would overflow


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
    prefixes = np.asarray(profile.stack_prefix, dtype=np.int64)
    depth = stack_depths(prefixes)
    frame_names = [profile.strings[f] for f in profile.frame_function]
    frame_args = [{"file": profile.strings[f], "line": line} for f, line in zip(profile.frame_file, profile.frame_line)]
    for part in np.split(order, edges) if len(order) else []:
        thread = int(cols["thread"][part[0]])
        info = profile.threads[thread]
        state_tid = _TRACK_TID + 2 * thread
        events.append({"ph": "M", "name": "thread_name", "pid": info.pid, "tid": info.tid, "args": {"name": info.name or f"thread {info.tid}"}})
        events.append({"ph": "M", "name": "thread_name", "pid": info.pid, "tid": state_tid,
                       "args": {"name": f"{info.name}{STATE_SUFFIX}", TRACK_KEY: "state", OWNER_KEY: info.tid}})
        start, end, gap = tiled_times(cols["time_ns"][part], cols["weight_ns"][part])
        stacks = cols["stack"][part]
        node, slice_start, slice_end, _ = frame_slices(stacks, start, end, gap, prefixes, depth)
        frame_of = np.asarray(profile.stack_frame, dtype=np.int64)[node] if len(node) else node
        pid, tid = info.pid, info.tid
        events.extend({"ph": "X", "name": frame_names[frame], "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": frame_args[frame]}
                      for frame, ts, dur in zip(frame_of.tolist(), ((slice_start - origin) / 1000).tolist(),
                                                ((slice_end - slice_start) / 1000).tolist()))
        states, reasons = cols["state"][part], cols["reason"][part]
        first, run_start, run_end = value_runs((states, reasons), gap, start, end)
        labels = {}
        for state, reason in set(zip(states[first].tolist(), reasons[first].tolist())):
            labels[state, reason] = STATE_LABELS[State(state)] + ("" if reason == NO_REASON else f": {profile.strings[reason]}")
        events.extend({"ph": "X", "name": labels[state, reason], "pid": pid, "tid": state_tid, "ts": ts, "dur": dur}
                      for state, reason, ts, dur in zip(states[first].tolist(), reasons[first].tolist(),
                                                        ((run_start - origin) / 1000).tolist(), ((run_end - run_start) / 1000).tolist()))
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
    if not all(type(event) is dict for event in raw_events):
        index = next(i for i, event in enumerate(raw_events) if type(event) is not dict)
        expect_dict(raw_events[index], f"traceEvents[{index}]")
    phases = [event.get("ph") for event in raw_events]
    complete = [i for i, phase in enumerate(phases) if phase == "X"]
    frames: dict[tuple[str, str, int], int] = {}
    columns = _complete_events([raw_events[i] for i in complete], complete, origin, frames)
    names: dict[tuple[int, int], str] = {}
    tracks: dict[tuple[int, int], tuple[str, int]] = {}  # a profviz track's (pid, tid) -> (kind, its thread's tid)
    slices: dict[tuple[int, int], list[tuple]] = defaultdict(list)  # B/E and sample slices: (start, end, name, file, line, order in the file)
    open_b: dict[tuple[int, int], list[tuple[int, str, str, int]]] = defaultdict(list)
    unmatched = 0
    last = int(max(columns[2].max(), columns[3].max())) if len(complete) else None  # the trace's last time (a dur may be negative)
    sampled: dict[tuple[int, int], list[tuple[int, object]]] = defaultdict(list)  # sample events: (ts ns, stack frame id)
    for index, phase in enumerate(phases):
        if phase not in ("B", "E", "M", "P"):
            continue
        event = raw_events[index]
        if phase == "P":
            if "sf" in event:
                key = (_int(event.get("pid", 0), index, "pid"), _int(event.get("tid", 0), index, "tid"))
                sampled[key].append((origin + _ns(event.get("ts"), index, "ts"), event["sf"]))
            continue
        key = (_int(event.get("pid", 0), index, "pid"), _int(event.get("tid", 0), index, "tid"))
        args = event.get("args") if isinstance(event.get("args"), dict) else {}
        if phase == "M":
            if event.get("name") == "thread_name" and isinstance(args.get("name"), str):
                names[key] = args["name"]
                if args.get(TRACK_KEY) in ("state", "spans") and type(args.get(OWNER_KEY)) is int:
                    tracks[key] = (args[TRACK_KEY], args[OWNER_KEY])
            continue
        ts = origin + _ns(event.get("ts"), index, "ts")
        last = ts if last is None else max(last, ts)
        if phase == "B":
            line = args.get("line")
            open_b[key].append((ts, str(event.get("name", "")), str(args.get("file", args.get("filename", "")) or ""),
                                line if type(line) is int and 0 <= line < 2**31 else 0))
        elif not open_b[key]:  # an E begun before the trace started
            unmatched += 1
        else:
            begun, begun_name, begun_file, begun_line = open_b[key].pop()
            slices[key].append((begun, ts, begun_name, begun_file, begun_line, index))
    if isinstance(doc, dict):
        for index, raw in enumerate(doc.get("samples") or [] if isinstance(doc.get("samples"), list) else []):
            sample = expect_dict(raw, f"samples[{index}]")  # Chrome's legacy CPU profile samples beside the events
            key = (_int(sample.get("pid", 0), index, "pid"), _int(sample.get("tid", 0), index, "tid"))
            sampled[key].append((origin + _ns(sample.get("ts"), index, "ts"), sample.get("sf")))
    if sampled:
        _sample_slices(sampled, doc.get("stackFrames") if isinstance(doc, dict) else None, slices, len(raw_events))
    for key, still_open in open_b.items():  # still running when the trace ended: they end with it
        unmatched += len(still_open)
        for begun, begun_name, begun_file, begun_line in still_open:
            slices[key].append((begun, max(begun, last), begun_name, begun_file, begun_line, len(raw_events) + 1))
    if slices:
        columns = _with_slices(columns, slices, frames)
    profile = Profile({"kind": "import", **meta, "labels": {**(meta.get("labels") or {}), "imported_from": "trace"}})
    if unmatched:
        add_note(profile, f"{unmatched} slices were cut by the trace's start or end (an E without its B, or a B without its E): "
                          "those begun end with the trace, the others are left out")
    _fill(profile, columns, frames, names, tracks)
    return profile


def _complete_events(events: list[dict], indexes: list[int], origin: int, frames: dict) -> tuple[np.ndarray, ...]:
    """X events as columns (pid, tid, start ns, end ns, frame key index, order: the event's index), frames interned in ``frames``."""
    pids = _int_column([event.get("pid", 0) for event in events], indexes, "pid")
    tids = _int_column([event.get("tid", 0) for event in events], indexes, "tid")
    ts = _ns_column([event.get("ts") for event in events], indexes, "ts")
    dur = _ns_column([event.get("dur") for event in events], indexes, "dur")
    if len(ts) and not (-LIMIT_NS <= origin + int(ts.min()) + min(0, int(dur.min()))
                        and origin + int(ts.max()) + max(0, int(dur.max())) <= LIMIT_NS):
        raise FormatError(f"an X event's time is beyond {LIMIT_NS / 1e18:g}e18 ns from the epoch (its ts plus dur, after the "
                          f"origin {origin} ns): not a time profviz can hold")
    start = origin + ts
    end = start + dur
    argses = [event.get("args") for event in events]
    argses = [args if type(args) is dict else {} for args in argses]
    lines = [args.get("line") for args in argses]
    keys = zip([str(event.get("name", "")) for event in events],
               [str(args.get("file", args.get("filename", "")) or "") for args in argses],
               [line if type(line) is int and 0 <= line < 2**31 else 0 for line in lines])
    frame = np.fromiter((frames.setdefault(key, len(frames)) for key in keys), dtype=np.int64, count=len(events))
    return pids, tids, start, end, frame, np.asarray(indexes, dtype=np.int64)


def _with_slices(columns: tuple, slices: dict, frames: dict) -> tuple:
    """The columns with the B/E and sample slices added."""
    rows = [(key[0], key[1], start, end, frames.setdefault((name, file, line), len(frames)), order)
            for key, items in slices.items() for start, end, name, file, line, order in items]
    extra = np.asarray(rows, dtype=np.int64).reshape(-1, 6).T
    return tuple(np.concatenate([column, added]) for column, added in zip(columns, extra))


def _fill(profile: Profile, columns: tuple, frames: dict, names: dict, tracks: dict) -> None:
    """The profile's threads, tables and samples from all slices (``columns``): per thread, its
    slices nested into samples, with its state track's states when the trace has one."""
    pids, tids, starts, ends, frame_of, file_order = columns
    by_thread = np.lexsort((tids, pids))
    first = np.flatnonzero(np.concatenate(([True], (pids[by_thread][1:] != pids[by_thread][:-1])
                                           | (tids[by_thread][1:] != tids[by_thread][:-1])))) if len(pids) else by_thread
    keys = np.stack([pids[by_thread[first]], tids[by_thread[first]]], axis=1)
    key_of = np.empty(len(pids), dtype=np.int64)
    key_of[by_thread] = np.cumsum(np.isin(np.arange(len(pids)), first)) - 1
    order = np.lexsort((file_order, starts - ends, starts, key_of))  # per thread: by start, longest first, file order
    groups = np.split(order, np.searchsorted(key_of[order], np.arange(1, len(keys))))
    by_key = {(int(k[0]), int(k[1])): group for k, group in zip(keys, groups)}
    frame_keys = list(frames)
    tables = TableLists()
    frame_ids = np.full(len(frame_keys), -1, dtype=np.int64)  # interned when a thread's slices use them (not the tracks')
    states_of = {(key[0], owner): key for key, (kind, owner) in tracks.items() if kind == "state"}
    reasons: dict[str, int] = {}
    parts: list[tuple] = []
    for key in sorted(set(by_key) | set(states_of)):
        if key in tracks:
            continue
        thread = profile.add_thread(key[0], key[1], names.get(key, f"thread {key[1]}"))
        group = by_key.get(key, np.zeros(0, dtype=np.int64))
        group = group[ends[group] > starts[group]]
        state_group = by_key.get(states_of.get(key), np.zeros(0, dtype=np.int64))
        state_group = state_group[ends[state_group] > starts[state_group]]
        labels = [frame_keys[f][0] for f in frame_of[state_group].tolist()]
        nested = nest(starts[group], ends[group])
        s_start, s_end = starts[state_group], ends[state_group]
        if nested is None or (s_start[1:] < s_end[:-1]).any():
            thread_slices = [(start, end, *frame_keys[f]) for start, end, f in
                             zip(starts[group].tolist(), ends[group].tolist(), frame_of[group].tolist())]
            parts.append(_samples(thread_slices, sorted(zip(s_start.tolist(), s_end.tolist(), labels)), thread, tables, reasons))
            continue
        parent, depth = nested
        used = np.unique(frame_of[group])
        used = used[frame_ids[used] < 0]
        frame_ids[used] = [tables.frame(*frame_keys[f]) for f in used.tolist()]
        node = _intern_nodes(parent, depth, frame_ids[frame_of[group]], tables)
        time, stack, weight, state_at = nested_samples(starts[group], ends[group], parent, node, s_start, s_end)
        codes = [_state_code(label, reasons) for label in labels] + [(int(State.UNKNOWN), -1)]
        code = np.asarray(codes, dtype=np.int64).reshape(-1, 2)[state_at]
        parts.append((time, np.full(len(time), thread, dtype=np.int64), stack, weight, code[:, 0], code[:, 1]))
    tables.fill(profile)
    ids = np.asarray([NO_REASON] + [profile.intern_string(text) for text in reasons], dtype=np.int64)
    names_ = ("time_ns", "thread", "stack", "weight_ns", "state", "reason")
    merged = {name: np.concatenate([c[n] for c in parts]) if parts else np.zeros(0, dtype=np.int64) for n, name in enumerate(names_)}
    if len(merged["time_ns"]) and merged["time_ns"].min() < 0:  # a trace whose times start before its origin: moved to start at 0
        merged["time_ns"] = merged["time_ns"] - merged["time_ns"].min()
    merged["reason"] = ids[merged["reason"] + 1] if len(merged["reason"]) else merged["reason"]
    profile.set_sample_columns(merged)


def _intern_nodes(parent: np.ndarray, depth: np.ndarray, frame: np.ndarray, tables: TableLists) -> np.ndarray:
    """The stack node of each nested slice: its parent's node and its frame, interned once per distinct pair, depth by depth."""
    node = np.full(len(parent), NO_STACK, dtype=np.int64)
    order = np.argsort(depth, kind="stable")
    for level in np.split(order, np.flatnonzero(np.diff(depth[order])) + 1) if len(order) else []:
        prefix = np.where(parent[level] >= 0, node[np.maximum(parent[level], 0)], NO_STACK)
        pairs, inverse = np.unique((prefix + 1) << 32 | frame[level], return_inverse=True)  # both below 2**31
        ids = np.asarray([tables.stack((pair >> 32) - 1, pair & 0xFFFF_FFFF) for pair in pairs.tolist()], dtype=np.int64)
        node[level] = ids[inverse.reshape(-1)]
    return node


def _state_code(label: str, reasons: dict) -> tuple[int, int]:
    """(state, reason index or -1) of a state track slice's name."""
    name, _, text = label.partition(": ")
    state = STATE_OF_LABEL.get(name, int(State.UNKNOWN))
    return state, (reasons.setdefault(text, len(reasons)) if state == State.WAITING and text else -1)


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
                    state, reason = _state_code(label, reasons)
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


def _sample_slices(sampled: dict, stack_frames: object, slices: dict, order: int) -> None:
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
                slices[key].extend((ts, nxt[0], name, file, line, order) for name, file, line in path(frame_id))


def _ns(value: object, index: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) > 9e15:
        raise FormatError(f"traceEvents[{index}].{what} is {str(value)[:30]!r}; expected microseconds as a number")
    return int(round(value * 1000))


def _int(value: object, index: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -2**63 <= value < 2**63:
        if isinstance(value, str) and value.lstrip("-").isdecimal() and len(value) < 20 and -2**63 <= int(value) < 2**63:
            return int(value)
        raise FormatError(f"traceEvents[{index}].{what} is {str(value)[:30]!r}; expected an integer")
    return value


def _ns_column(values: list, indexes: list[int], what: str) -> np.ndarray:
    """Times in µs (numbers, as :func:`_ns` checks one) as ns, in bulk when the column is all ints or
    all floats in range; else value by value, exactly, the first bad one refused with its event's index."""
    if not values:
        return np.zeros(0, dtype=np.int64)
    kinds = set(map(type, values))
    if kinds == {int} and -9e15 <= min(values) and max(values) <= 9e15:
        return np.asarray(values, dtype=np.int64) * 1000
    if kinds == {float}:
        column = np.asarray(values, dtype=np.float64)
        if np.isfinite(column).all() and np.abs(column).max() <= 9e15:
            return np.round(column * 1000).astype(np.int64)
    return np.asarray([_ns(value, index, what) for index, value in zip(indexes, values)], dtype=np.int64)


def _int_column(values: list, indexes: list[int], what: str) -> np.ndarray:
    """Integers (as :func:`_int` checks one) in bulk."""
    if set(map(type, values)) <= {int} and (not values or (-2**63 <= min(values) and max(values) < 2**63)):
        return np.asarray(values, dtype=np.int64) if values else np.zeros(0, dtype=np.int64)
    return np.asarray([_int(value, index, what) for index, value in zip(indexes, values)], dtype=np.int64)
