"""The Firefox Profiler's processed profile format (profiler.firefox.com, "Load a profile from file"):
what Python 3.15's sampling profiler writes too.

Writing: one thread per sampled thread with its samples (time in ms since ``meta.startTime``,
and ``weightType`` ``"tracing-ms"`` with each sample's duration, so the call tree shows time, not
counts), its stack, frame, function and resource tables, and a category per sample from its
state: a stack node exists per (stack, state), its category the state's (``On CPU``,
``Waiting``, ``Runnable``, ``GIL``, ``Other``), which the profiler draws in the activity graph
and offers as a filter. Spans become interval markers (category ``Span``) with their attributes,
and runs of waiting samples with one reason ``Waiting`` markers naming it. Strings are shared
(``shared.stringArray``). Kept: every thread's total and its time in each state, functions with
their files and lines, spans. Dropped: nothing the profiler can show; wait reasons are markers.

Reading: processed profiles (this module's, Python 3.15's ``-m profiling.sampling`` output, the
profiler's own "download" files) with shared or per-thread strings: each thread's samples with
their stacks, times and durations (``weight`` in ms for ``tracing-ms``, else one ``meta.interval``
each), and states from profviz's categories (others are UNKNOWN); wait reasons come back from
``Waiting`` markers.
"""

from __future__ import annotations

import re

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, State, TableLists
from .base import (FormatError, StringTable, add_note, dumps_json, expect_dict, expect_list, head_text, parse_json, portable_meta,
                   read_meta)

NAME = "firefox"
DESCRIPTION = "Firefox Profiler processed profile JSON (profiler.firefox.com)"
EXTENSION = ".firefox.json"
DROPS = "nothing the Firefox Profiler shows: wait reasons become markers"
PROCESSED_VERSION = 57  # the processed profile format version the Firefox Profiler reads without upgrading
GECKO_VERSION = 32
CATEGORIES = [  # index: State value, then the span category
    {"name": "Other", "color": "grey", "subcategories": ["Other"]},
    {"name": "On CPU", "color": "yellow", "subcategories": ["Other"]},
    {"name": "Waiting", "color": "blue", "subcategories": ["Other"]},
    {"name": "Runnable", "color": "orange", "subcategories": ["Other"]},
    {"name": "GIL", "color": "red", "subcategories": ["Other"]},
    {"name": "Span", "color": "green", "subcategories": ["Other"]},
]
SPAN_CATEGORY = 5
NO_FRAME = "(no frame)"
MARKER_SCHEMA = [
    {"name": "Span", "display": ["marker-chart", "marker-table", "timeline-overview"], "chartLabel": "{marker.name}",
     "tooltipLabel": "{marker.name}", "tableLabel": "{marker.name}",
     "fields": [{"key": "kind", "label": "Kind", "format": "string"}, {"key": "status", "label": "Status", "format": "string"},
                {"key": "traceId", "label": "Trace", "format": "string"}]},
    {"name": "Waiting", "display": ["marker-chart", "marker-table"], "chartLabel": "{marker.data.reason}",
     "tooltipLabel": "waiting: {marker.data.reason}", "tableLabel": "waiting: {marker.data.reason}",
     "fields": [{"key": "reason", "label": "Reason", "format": "string"}]},
]


def _table(**columns: list) -> dict:
    lengths = {len(values) for values in columns.values()}
    assert len(lengths) <= 1
    return {**columns, "length": lengths.pop() if lengths else 0}


def dump(profile: Profile, **_: object) -> bytes:
    strings = StringTable()
    cols = profile.columns()
    first, _ = profile.time_range_ns if profile.sample_count else (int(profile.meta.get("start_ns") or 0), 0)
    origin = int(profile.meta.get("start_ns") or first)
    rate = profile.meta.get("rate_hz") or 100.0
    threads = [_thread(profile, cols, index, strings, origin) for index in range(len(profile.threads))]
    meta = {
        "interval": 1000.0 / float(rate), "startTime": origin / 1e6, "processType": 0, "product": "profviz",
        "importedFrom": "profviz", "categories": CATEGORIES, "markerSchema": MARKER_SCHEMA, "stackwalk": 0, "toolkit": "",
        "version": GECKO_VERSION, "preprocessedProfileVersion": PROCESSED_VERSION, "symbolicated": True, "misc": "",
        "oscpu": "", "platform": "", "abi": "", "appBuildID": "", "physicalCPUs": 0, "logicalCPUs": 0, "CPUName": "",
        "extensions": {"id": [], "name": [], "baseURL": [], "length": 0}, "profviz": portable_meta(profile),
        "profvizOriginNs": origin,  # startTime in float ms loses the ns; this keeps them
    }
    doc = {"meta": meta, "libs": [], "pages": [], "threads": threads,
           "shared": {"stringArray": strings.strings, "sources": {"length": 0, "uuid": [], "filename": []}}}
    return dumps_json(doc)


def _thread(profile: Profile, cols: dict, index: int, strings: StringTable, origin: int) -> dict:
    info = profile.threads[index]
    mine = np.flatnonzero(cols["thread"] == index)
    mine = mine[np.argsort(cols["time_ns"][mine], kind="stable")]
    funcs: dict[tuple[int, int], int] = {}
    resources: dict[int, int] = {}
    func_name, func_file, func_line, func_resource = [], [], [], []
    resource_name = []
    frame_func, frame_line = [], []
    frame_of: dict[int, int] = {}
    stack_frame, stack_prefix, stack_category = [], [], []
    stack_of: dict[tuple[int, int], int] = {}  # (profviz stack node, state) -> this thread's stack index

    def frame(node_frame: int) -> int:
        found = frame_of.get(node_frame)
        if found is None:
            fn, fl = profile.frame_function[node_frame], profile.frame_file[node_frame]
            func = funcs.get((fn, fl))
            if func is None:
                file = profile.strings[fl]
                resource = resources.get(fl)
                if resource is None:
                    resource = resources[fl] = len(resource_name)
                    resource_name.append(strings(file.rsplit("/", 1)[-1] or file))
                func = funcs[(fn, fl)] = len(func_name)
                func_name.append(strings(profile.strings[fn]))
                func_file.append(strings(file) if file else None)
                func_line.append(None)
                func_resource.append(resource)
            found = frame_of[node_frame] = len(frame_func)
            frame_func.append(func)
            frame_line.append(int(profile.frame_line[node_frame]) or None)
        return found

    def stack(node: int, state: int) -> int | None:
        if node == NO_STACK:
            return None
        found = stack_of.get((node, state))
        if found is None:
            prefix = stack(profile.stack_prefix[node], state)
            found = stack_of[(node, state)] = len(stack_frame)
            stack_frame.append(frame(profile.stack_frame[node]))
            stack_prefix.append(prefix)
            stack_category.append(state)
        return found

    marker_name, marker_start, marker_end, marker_data, marker_category = [], [], [], [], []
    times, nodes = cols["time_ns"][mine], cols["stack"][mine].astype(np.int64)
    weights, states, reasons = cols["weight_ns"][mine], cols["state"][mine].astype(np.int64), cols["reason"][mine]
    # each distinct (stack node, state) pair once, its sample stack made through the tables' helpers
    pairs, which = np.unique((nodes + 1) * len(State) + states, return_inverse=True)
    made = [stack(pair // len(State) - 1, pair % len(State)) if pair >= len(State)
            else _idle(stack_frame, stack_prefix, stack_category, stack_of, frame_func, frame_line, func_name, func_file,
                       func_line, func_resource, strings, pair % len(State))
            for pair in pairs.tolist()]
    sample_stack = np.asarray(made, dtype=np.int64)[which.reshape(-1)].tolist() if len(times) else []
    sample_time = ((times - origin) / 1e6).tolist()
    sample_weight = (weights / 1e6).tolist()
    waiting = strings("Waiting")
    why = np.where(states == int(State.WAITING), reasons, NO_REASON)  # runs of waiting with one reason become markers
    ends = times + weights
    if len(times):
        new_run = np.ones(len(times), dtype=bool)
        new_run[1:] = (why[1:] != why[:-1]) | (times[1:] > ends[:-1])
        firsts = np.flatnonzero(new_run)
        lasts = np.append(firsts[1:], len(times)) - 1
        for first, last in zip(firsts.tolist(), lasts.tolist()):
            if why[first] != NO_REASON:
                _marker(marker_name, marker_start, marker_end, marker_data, marker_category, waiting,
                        (int(why[first]), int(times[first]), int(ends[last])), origin, profile)
    for span in profile.spans:
        if span.thread == index:
            marker_name.append(strings(span.name))
            marker_start.append((span.start_ns - origin) / 1e6)
            marker_end.append((span.end_ns - origin) / 1e6)
            marker_category.append(SPAN_CATEGORY)
            marker_data.append({"type": "Span", "kind": span.kind, "status": span.status, "traceId": span.trace_id,
                                **{f"attr.{k}": v for k, v in span.attributes.items()}})
    n_frames = len(frame_func)
    return {
        "name": info.name or f"thread {info.tid}", "tid": info.tid, "pid": str(info.pid), "processType": "default",
        "processName": str(profile.meta.get("cmdline") or f"process {info.pid}"), "isMainThread": index == 0,
        "processStartupTime": 0, "processShutdownTime": None, "registerTime": 0, "unregisterTime": None, "pausedRanges": [],
        "samples": {**_table(stack=sample_stack, time=sample_time, weight=sample_weight), "weightType": "tracing-ms"},
        "stackTable": _table(frame=stack_frame, prefix=stack_prefix, category=stack_category, subcategory=[0] * len(stack_frame)),
        "frameTable": _table(address=[-1] * n_frames, inlineDepth=[0] * n_frames, category=[None] * n_frames,
                             subcategory=[None] * n_frames, func=frame_func, nativeSymbol=[None] * n_frames,
                             innerWindowID=[None] * n_frames, implementation=[None] * n_frames, line=frame_line,
                             column=[None] * n_frames, optimizations=[None] * n_frames),
        "funcTable": _table(name=func_name, isJS=[True] * len(func_name), relevantForJS=[False] * len(func_name),
                            resource=func_resource, fileName=func_file, lineNumber=func_line, columnNumber=[None] * len(func_name)),
        "resourceTable": _table(lib=[None] * len(resource_name), name=resource_name, host=[None] * len(resource_name),
                                type=[0] * len(resource_name)),
        "nativeSymbols": _table(libIndex=[], address=[], name=[], functionSize=[]),
        "markers": _table(data=marker_data, name=marker_name, startTime=marker_start, endTime=marker_end,
                          phase=[1] * len(marker_name), category=marker_category),
    }


def _idle(stack_frame, stack_prefix, stack_category, stack_of, frame_func, frame_line, func_name, func_file, func_line,
          func_resource, strings, state: int) -> int:
    """The stack of a sample that caught no frame: one ``(no frame)`` node per state (the profiler needs a stack)."""
    key = (NO_STACK, state)
    found = stack_of.get(key)
    if found is None:
        func = len(func_name)
        func_name.append(strings(NO_FRAME))
        func_file.append(None)
        func_line.append(None)
        func_resource.append(-1)
        frame_func.append(func)
        frame_line.append(None)
        found = stack_of[key] = len(stack_frame)
        stack_frame.append(len(frame_func) - 1)
        stack_prefix.append(None)
        stack_category.append(state)
    return found


def _marker(names, starts, ends, data, categories, waiting: int, run: tuple, origin: int, profile: Profile) -> None:
    reason, start, end = run
    names.append(waiting)
    starts.append((start - origin) / 1e6)
    ends.append((end - origin) / 1e6)
    categories.append(int(State.WAITING))
    data.append({"type": "Waiting", "reason": profile.strings[reason]})


# -- reading ------------------------------------------------------------------------------------

_DETECT = re.compile(r'"preprocessedProfileVersion"\s*:')
_STATE_OF_CATEGORY = {"On CPU": int(State.ON_CPU), "Waiting": int(State.WAITING), "Runnable": int(State.RUNNABLE),
                      "GIL": int(State.GIL)}


def detect(data: bytes) -> bool:
    head = head_text(data, 1 << 16).lstrip()
    return head.startswith("{") and '"threads"' in head_text(data, 1 << 22) and _DETECT.search(head_text(data, 1 << 22)) is not None


def _column(table: dict, key: str, length: int, where: str) -> list:
    values = table.get(key)
    if values is None:
        return [None] * length
    values = expect_list(values, f"{where}.{key}")
    if len(values) != length:
        raise FormatError(f"{where}.{key} has {len(values)} entries, its table {length}")
    return values


def _index(value, limit: int, where: str) -> int:
    if type(value) is not int or not 0 <= value < limit:
        raise FormatError(f"{where} is {str(value)[:30]!r}, not an index below {limit}")
    return value


def load(data: bytes, *, start_ns: int = 0, **_: object) -> Profile:
    doc = expect_dict(parse_json(data), "the profile")
    meta = expect_dict(doc.get("meta"), "meta")
    shared = doc.get("shared") if isinstance(doc.get("shared"), dict) else {}
    shared_strings = shared.get("stringArray")
    start_ms = meta.get("startTime") if isinstance(meta.get("startTime"), (int, float)) else 0
    origin = int(round(start_ms * 1e6)) if start_ms and start_ms > 1e11 else start_ns  # epoch ms, else a relative clock
    if type(meta.get("profvizOriginNs")) is int and 0 <= meta["profvizOriginNs"] < 2**62:
        origin = meta["profvizOriginNs"]
    interval_ms = meta.get("interval") if isinstance(meta.get("interval"), (int, float)) and meta["interval"] > 0 else 1.0
    categories = [c.get("name") if isinstance(c, dict) else None for c in meta.get("categories") or []]
    state_of = [_STATE_OF_CATEGORY.get(name, int(State.UNKNOWN)) for name in categories]
    kept = read_meta(meta["profviz"], "meta.profviz") if isinstance(meta.get("profviz"), dict) else {}
    profile = Profile({"kind": "import", **kept, "labels": {**(kept.get("labels") or {}), "imported_from": "firefox"}})
    tables = TableLists()
    parts: list[tuple] = []
    reasons: dict[str, int] = {}
    for t_index, raw in enumerate(expect_list(doc.get("threads"), "threads")):
        where = f"threads[{t_index}]"
        thread = expect_dict(raw, where)
        strings = thread.get("stringArray", thread.get("stringTable", shared_strings))
        strings = expect_list(strings, f"{where}.stringArray")
        text = lambda i, w: str(strings[_index(i, len(strings), w)])  # noqa: E731
        funcs = expect_dict(thread.get("funcTable"), f"{where}.funcTable")
        n_funcs = len(expect_list(funcs.get("name"), f"{where}.funcTable.name"))
        func_names = [text(i, f"{where}.funcTable.name[{n}]") for n, i in enumerate(funcs["name"])]
        func_files = [("" if i is None else text(i, f"{where}.funcTable.fileName[{n}]"))
                      for n, i in enumerate(_column(funcs, "fileName", n_funcs, f"{where}.funcTable"))]
        frames = expect_dict(thread.get("frameTable"), f"{where}.frameTable")
        frame_funcs = expect_list(frames.get("func"), f"{where}.frameTable.func")
        frame_lines = _column(frames, "line", len(frame_funcs), f"{where}.frameTable")
        frame_ids = []
        for n, (func, line) in enumerate(zip(frame_funcs, frame_lines)):
            func = _index(func, n_funcs, f"{where}.frameTable.func[{n}]")
            frame_ids.append(tables.frame(func_names[func], func_files[func], line if type(line) is int and 0 <= line < 2**31 else 0))
        stacks = expect_dict(thread.get("stackTable"), f"{where}.stackTable")
        stack_frames = expect_list(stacks.get("frame"), f"{where}.stackTable.frame")
        stack_prefixes = _column(stacks, "prefix", len(stack_frames), f"{where}.stackTable")
        stack_categories = _column(stacks, "category", len(stack_frames), f"{where}.stackTable")
        stack_ids: list[int] = []
        for n, (frame, prefix) in enumerate(zip(stack_frames, stack_prefixes)):
            frame = _index(frame, len(frame_ids), f"{where}.stackTable.frame[{n}]")
            if prefix is None and func_names[frame_funcs[frame]] == NO_FRAME and not func_files[frame_funcs[frame]]:
                stack_ids.append(NO_STACK)  # profviz's stand-in for a sample that caught no frame
                continue
            parent = NO_STACK if prefix is None else stack_ids[_index(prefix, n, f"{where}.stackTable.prefix[{n}]")]
            stack_ids.append(tables.stack(parent, frame_ids[frame]))
        samples = expect_dict(thread.get("samples"), f"{where}.samples")
        sample_stacks = expect_list(samples.get("stack"), f"{where}.samples.stack")
        times = _column(samples, "time", len(sample_stacks), f"{where}.samples")
        weights = _column(samples, "weight", len(sample_stacks), f"{where}.samples") if samples.get("weight") is not None else None
        tracing = samples.get("weightType") == "tracing-ms"
        markers = thread.get("markers") if isinstance(thread.get("markers"), dict) else {}
        waits = sorted((m_start, m_end, item.get("reason")) for m_start, m_end, item in zip(markers.get("startTime") or [],
                       markers.get("endTime") or [], markers.get("data") or [])
                       if isinstance(item, dict) and item.get("type") == "Waiting" and isinstance(item.get("reason"), str)
                       and isinstance(m_start, (int, float)) and isinstance(m_end, (int, float)))
        index = profile.add_thread(int(thread["pid"]) if str(thread.get("pid", "")).isdecimal() and len(str(thread["pid"])) < 19 else 0,
                                   thread["tid"] if type(thread.get("tid")) is int else t_index, str(thread.get("name") or f"thread {t_index}"))
        parts.append(_thread_columns(sample_stacks, times, weights, tracing, interval_ms, stack_ids, stack_categories, state_of,
                                     waits, reasons, index, origin, where))
        del sample_stacks, times, weights
        samples.clear()  # this thread's parsed columns, now arrays: not held beside every later thread's arrays
    tables.fill(profile)
    ids = np.asarray([profile.intern_string(text_) for text_ in reasons] + [NO_REASON], dtype=np.int64)
    names = ("time_ns", "thread", "stack", "weight_ns", "state", "reason")
    arrays = {name: np.concatenate([part[n] for part in parts]) if parts else np.zeros(0, dtype=np.int64) for n, name in enumerate(names)}
    arrays["reason"] = ids[arrays["reason"]]  # -1 (none) picks the NO_REASON at the end
    if len(arrays["time_ns"]) and arrays["time_ns"].min() < 0:  # a profile whose times start before its origin: moved to 0
        arrays["time_ns"] = arrays["time_ns"] - arrays["time_ns"].min()
    profile.set_sample_columns(arrays)
    add_note(profile, "imported from the Firefox Profiler's format")
    return profile


def _numbers(values: list, where: str) -> np.ndarray:
    """A column of JSON numbers as float64; FormatError naming the first that is not one."""
    try:
        column = np.asarray(values, dtype=np.float64) if values else np.zeros(0)
    except (TypeError, ValueError):
        column = None
    if column is None or any(type(v) is bool for v in values[:1]) or not np.isfinite(column).all():
        bad = next(n for n, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v
                   or abs(v) == float("inf"))
        raise FormatError(f"{where}[{bad}] is {str(values[bad])[:30]!r}, not a number")
    return column


def _thread_columns(sample_stacks: list, times: list, weights: list | None, tracing: bool, interval_ms: float, stack_ids: list,
                    stack_categories: list, state_of: list, waits: list, reasons: dict, thread: int, origin: int,
                    where: str) -> tuple:
    """One thread's samples as columns (time, thread, stack, weight, state, reason index or -1),
    whole arrays at once; samples of no duration are left out."""
    nodes = [-1 if node is None else node for node in sample_stacks]
    bad = next((n for n, node in enumerate(nodes) if type(node) is not int or not -1 <= node < len(stack_ids)), None)
    if bad is not None:
        raise FormatError(f"{where}.samples.stack[{bad}] is {str(sample_stacks[bad])[:30]!r}, not a stack index")
    node = np.asarray(nodes, dtype=np.int64)
    ms = _numbers(times, f"{where}.samples.time")
    stack = np.asarray(stack_ids + [NO_STACK], dtype=np.int64)[node]
    state_of_stack = np.asarray([state_of[c] if type(c) is int and 0 <= c < len(state_of) else int(State.UNKNOWN)
                                 for c in stack_categories] + [int(State.UNKNOWN)], dtype=np.int64)
    state = state_of_stack[node]
    if weights is None:
        weight_ms = np.full(len(nodes), interval_ms)
    else:
        weight_ms = _numbers(weights, f"{where}.samples.weight") * (1.0 if tracing else interval_ms)
    weight = np.rint(weight_ms * 1e6).astype(np.int64)
    reason = np.full(len(nodes), -1, dtype=np.int64)
    if waits:
        starts = np.asarray([w[0] for w in waits], dtype=np.float64)
        ends = np.asarray([w[1] for w in waits], dtype=np.float64)
        which = np.asarray([reasons.setdefault(w[2], len(reasons)) for w in waits], dtype=np.int64)
        at = np.searchsorted(starts, ms, side="right") - 1
        inside = (at >= 0) & (state == int(State.WAITING))
        inside[inside] &= ms[inside] < ends[at[inside]]
        reason[inside] = which[at[inside]]
    keep = weight > 0
    times_ns = origin + np.rint(ms * 1e6).astype(np.int64)
    return (times_ns[keep], np.full(int(keep.sum()), thread, dtype=np.int64), stack[keep], weight[keep], state[keep], reason[keep])
