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

Reading any trace: ``X`` events and ``B``/``E`` pairs per (pid, tid), nested by time; every
stretch of a thread's timeline under at least one slice becomes a sample whose stack is the open
slices, root first (a frame is the slice's name, and ``args.file``/``args.filename`` and
``args.line`` when present). A profviz trace's state tracks give those samples their states (and
the stretches with no frame on the stack); otherwise samples are UNKNOWN. A slice the trace cut
(``B`` with no ``E``: it ends with the trace; ``E`` with no ``B``: left out) is counted in a note;
an ``X`` without a numeric ``dur`` is refused with where it is.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import defaultdict

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, State, TableLists
from .base import FormatError, add_note, expect_dict, expect_list, head_text, parse_json, portable_meta, read_meta

NAME = "perfetto"
DESCRIPTION = "Chrome trace event JSON (Perfetto, chrome://tracing): X, B/E and M events"
EXTENSION = ".trace.json"
DROPS = "the boundaries of samples inside runs of one stack (each run is one slice)"
STATE_SUFFIX = " · state"
SPANS_SUFFIX = " · spans"
STATE_LABELS = {State.ON_CPU: "on-cpu", State.WAITING: "waiting", State.RUNNABLE: "runnable", State.GIL: "gil",
                State.UNKNOWN: "unknown"}
_STATE_OF_LABEL = {label: int(state) for state, label in STATE_LABELS.items()}
_TRACK_TID = 1 << 40  # the state and span tracks' tids: beyond any real thread id, one per thread and kind


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
        events.append({"ph": "M", "name": "thread_name", "pid": info.pid, "tid": state_tid, "args": {"name": f"{info.name}{STATE_SUFFIX}"}})
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
                       "args": {"name": f"{info.name}{SPANS_SUFFIX}"}})
    doc = {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {"profviz": portable_meta(profile), "origin_ns": origin}}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "surrogatepass")


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
    slices: dict[tuple[int, int], list[tuple[int, int, str, str, int]]] = defaultdict(list)  # (start ns, end ns, name, file, line)
    open_b: dict[tuple[int, int], list[tuple[int, str, str, int]]] = defaultdict(list)
    unmatched = 0
    last = None
    for index, raw in enumerate(raw_events):
        event = expect_dict(raw, f"traceEvents[{index}]")
        phase = event.get("ph")
        if phase not in ("X", "B", "E", "M"):
            continue
        key = (_int(event.get("pid", 0), index, "pid"), _int(event.get("tid", 0), index, "tid"))
        if phase == "M":
            if event.get("name") == "thread_name" and isinstance(event.get("args"), dict) and isinstance(event["args"].get("name"), str):
                names[key] = event["args"]["name"]
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
    for key, still_open in open_b.items():  # still running when the trace ended: they end with it
        unmatched += len(still_open)
        for begun, begun_name, begun_file, begun_line in still_open:
            slices[key].append((begun, max(begun, last), begun_name, begun_file, begun_line))
    profile = Profile({"kind": "import", **meta, "labels": {**(meta.get("labels") or {}), "imported_from": "trace"}})
    tables = TableLists()
    states_of = {}
    for (pid, tid), name in names.items():
        if name.endswith(STATE_SUFFIX):
            owner = next((k for k, n in names.items() if k[0] == pid and n == name[:-len(STATE_SUFFIX)] and k[1] < _TRACK_TID), None)
            if owner is not None:
                states_of[owner] = (pid, tid)
    columns = {key: [] for key in ("time_ns", "thread", "stack", "weight_ns", "state", "reason")}
    reasons: dict[str, int] = {}
    for key in sorted(set(slices) | set(states_of)):
        if key[1] >= _TRACK_TID or names.get(key, "").endswith((STATE_SUFFIX, SPANS_SUFFIX)):
            continue
        thread = profile.add_thread(key[0], key[1], names.get(key, f"thread {key[1]}"))
        states = sorted(slices.get(states_of[key], [])) if key in states_of else []
        _samples(slices.get(key, []), states, thread, tables, columns, reasons, profile)
    if columns["time_ns"] and min(columns["time_ns"]) < 0:  # a trace whose times start before its origin: moved to start at 0
        shift = -min(columns["time_ns"])
        columns["time_ns"] = [t + shift for t in columns["time_ns"]]
    tables.fill(profile)
    if unmatched:
        add_note(profile, f"{unmatched} slices were cut by the trace's start or end (an E without its B, or a B without its E): "
                          "those begun end with the trace, the others are left out")
    ids = {text: profile.intern_string(text) for text in reasons}
    columns["reason"] = [NO_REASON if r is None else ids[r] for r in columns["reason"]]
    profile.set_sample_columns({name: np.asarray(values) for name, values in columns.items()})
    return profile


def _samples(thread_slices: list, states: list, thread: int, tables: TableLists, columns: dict, reasons: dict, profile: Profile) -> None:
    """Sweep one thread's slices (and state slices): each stretch between two boundaries under some
    slice becomes a sample of the open slices' stack."""
    thread_slices.sort(key=lambda s: (s[0], -s[1]))
    bounds = sorted({t for s in thread_slices for t in s[:2]} | {t for s in states for t in s[:2]})
    state_starts = [s[0] for s in states]
    stack_of: dict[tuple, int] = {}
    active: list[tuple] = []
    next_slice = 0
    for start, end in zip(bounds, bounds[1:]):
        active = [s for s in active if s[1] > start]
        while next_slice < len(thread_slices) and thread_slices[next_slice][0] <= start:
            if thread_slices[next_slice][1] > start:
                active.append(thread_slices[next_slice])
            next_slice += 1
        at = bisect_right(state_starts, start) - 1
        state_slice = states[at] if at >= 0 and states[at][1] > start else None
        if not active and state_slice is None:
            continue
        path = tuple((s[2], s[3], s[4]) for s in sorted(active, key=lambda s: (s[0], -s[1])))
        stack = stack_of.get(path)
        if stack is None:
            stack = NO_STACK
            for function, file, line in path:
                stack = tables.stack(stack, tables.frame(function, file, line))
            stack_of[path] = stack
        state, reason = int(State.UNKNOWN), None
        if state_slice is not None:
            label, _, text = state_slice[2].partition(": ")
            state = _STATE_OF_LABEL.get(label, int(State.UNKNOWN))
            reason = text or None if state == State.WAITING else None
        if reason is not None:
            reasons.setdefault(reason, len(reasons))
        columns["time_ns"].append(start)
        columns["thread"].append(thread)
        columns["stack"].append(stack)
        columns["weight_ns"].append(end - start)
        columns["state"].append(state)
        columns["reason"].append(reason)


def _ns(value: object, index: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) > 9e15:
        raise FormatError(f"traceEvents[{index}].{what} is {str(value)[:30]!r}; expected microseconds as a number")
    return int(round(value * 1000))


def _int(value: object, index: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        raise FormatError(f"traceEvents[{index}].{what} is {str(value)[:30]!r}; expected an integer")
    return value
