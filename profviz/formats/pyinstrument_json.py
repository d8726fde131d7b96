"""pyinstrument 5's JSON: its saved sessions (read and written) and its JSON renderer's tree (read).

* A **session** (``pyinstrument -r session -o x.pyisession``, ``Session.save``, loaded back by
  ``Session.load`` / ``pyinstrument --load``) lists ``frame_records``: one stack per sample with
  the seconds it stands for. Frames are pyinstrument frame-info strings
  ``function\\0file\\0first_line`` plus ``\\1``-separated attributes (``l<line>`` current line,
  ``c<class>`` class name); a ``name\\0<thread>\\0ident`` root frame names the thread. Samples get
  times from ``start_time`` plus the running sum, the frames of pyinstrument's own launcher
  (``start_call_stack``) are trimmed as pyinstrument's renderers do, and a stack ending in
  ``[await]`` is WAITING; everything else is UNKNOWN (pyinstrument records wall time only).
* The **JSON renderer** (``pyinstrument -r json``, ``pyinstrument.renderers.JSONRenderer``) writes
  an already aggregated call tree: each node's self time (its time minus its children's, with
  ``[self]`` nodes folded into their parent) becomes one sample; times are synthetic.

Writing produces a session that pyinstrument itself loads and renders, with every thread's
samples under its thread frame, plus the ``"$profviz"`` extension (see :mod:`profviz.formats.base`)
that ``Session.from_json`` ignores and that carries times, states, reasons, pids and metadata
back into profviz. ``\\0`` and ``\\1`` cannot occur inside pyinstrument frame strings and are
written as U+FFFD.
"""

from __future__ import annotations

import re

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, State, TableLists
from .base import (EXTENSION_KEY, EXTENSION_VERSION, FormatError, add_note, dumps_json, expect_dict, expect_int,
    expect_list, expect_number, expect_str, head_text, parse_json, portable_meta, read_meta, read_thread_columns, short,
    thread_extension, to_ns)

NAME = "pyinstrument"
DESCRIPTION = "pyinstrument session JSON (-r session / .pyisession) and JSON renderer tree (-r json)"
EXTENSION = ".pyisession"
DROPS = "spans (pyinstrument itself shows no CPU/waiting states: profviz keeps them in its \"$profviz\" key)"
IDENTIFIER_SEP = "\x00"
ATTRIBUTES_SEP = "\x01"
THREAD_FILE = "<thread>"
AWAIT_FRAME = "[await]"
SELF_FRAME = "[self]"
_KEY = r'"{}"\s*:'
_SESSION_KEYS = ("start_call_stack", "frame_records")
_TREE_KEYS = ("root_frame",)


def _has_key(head: str, key: str) -> bool:
    return re.search(_KEY.format(re.escape(key)), head) is not None


def detect(data: bytes) -> bool:
    """True for a JSON object with pyinstrument's ``target_description`` and a session or tree key."""
    head = head_text(data)
    if not head.startswith("{") or not _has_key(head, "target_description"):
        return False
    return any(_has_key(head, k) for k in _SESSION_KEYS + _TREE_KEYS)


# -- sessions --------------------------------------------------------------------------------


def parse_frame_info(info: str, where: str) -> tuple[str, str, int, bool]:
    """A frame-info string -> (function, file, line, is_thread_frame)."""
    identifier, _, attributes = info.partition(ATTRIBUTES_SEP)
    parts = identifier.split(IDENTIFIER_SEP)
    if len(parts) == 1:
        return parts[0], "", 0, False
    if len(parts) != 3:
        raise FormatError(f"{where} is {short(info)}, not a pyinstrument frame 'function\\0file\\0line'")
    function, file, first_line = parts
    if file == THREAD_FILE:
        return function, file, 0, True
    line = int(first_line) if first_line.isdigit() else 0
    for attribute in attributes.split(ATTRIBUTES_SEP) if attributes else ():
        if attribute[:1] == "l" and attribute[1:].isdigit():
            line = int(attribute[1:])
        elif attribute[:1] == "c" and attribute[1:]:
            function = f"{attribute[1:]}.{function}"
    return function, file, line, False


def _identifier(info: str) -> str:
    return info.partition(ATTRIBUTES_SEP)[0]


def _launcher_prefix(start_call_stack: list[str]) -> list[str]:
    """Identifiers of the leading frames to drop: the profiler's start stack (minus the thread
    frame), keeping the frame that started profiling unless it is pyinstrument's own."""
    stem = [_identifier(s) for s in start_call_stack[1:]]
    if stem:
        parts = stem[-1].split(IDENTIFIER_SEP)
        starter_file = parts[1] if len(parts) == 3 else ""
        if "pyinstrument" not in starter_file:
            stem = stem[:-1]
    return stem


def _is_launcher(frame: tuple[str, str, int]) -> bool:
    file = frame[1]
    return file in ("<string>", "<frozen runpy>") or file.endswith("runpy.py")


def _load_session(doc: dict, *, pid: int, **_: object) -> Profile:
    start_s = expect_number(doc.get("start_time"), "start_time", minimum=0)
    records = expect_list(doc.get("frame_records"), "frame_records")
    start_stack = [expect_str(s, f"start_call_stack[{i}]") for i, s in enumerate(expect_list(doc.get("start_call_stack", []), "start_call_stack"))]
    launcher = _launcher_prefix(start_stack)
    launched_by_cli = any("pyinstrument" in s for s in launcher)
    ext = doc.get(EXTENSION_KEY)
    meta: dict = {"kind": "import", "pid": pid or None, "start_ns": int(start_s * 1e9)}
    interval = doc.get("max_interval")
    if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval > 0:
        meta["rate_hz"] = round(1.0 / interval, 3)
    if isinstance(doc.get("target_description"), str):
        meta["cmdline"] = doc["target_description"]
    if ext is not None:
        ext = expect_dict(ext, EXTENSION_KEY)
        if ext.get("format_version") != EXTENSION_VERSION:
            raise FormatError(f"{EXTENSION_KEY}.format_version is {short(ext.get('format_version'))}; this profviz reads {EXTENSION_VERSION}")
        meta.update(read_meta(ext.get("meta", {}), f"{EXTENSION_KEY}.meta"))
    profile = Profile(meta)
    if not all(type(record) is list and len(record) == 2 for record in records):
        bad = next(i for i, record in enumerate(records) if not isinstance(record, list) or len(record) != 2)
        raise FormatError(f"frame_records[{bad}] must be a [frames, seconds] pair, got {short(records[bad])}")
    weights = _weights([record[1] for record in records])
    kinds: dict[tuple, int] = {}  # a record's frame infos -> its kind: (thread key, stack, state) in ``parsed_kinds``
    parsed_kinds: list[tuple[tuple[str, int], tuple, int]] = []
    frame_memo: dict[str, tuple[str, str, int, bool]] = {}
    kind_of = np.empty(len(records), dtype=np.int64)
    for i, record in enumerate(records):
        infos = record[0]
        key = tuple(infos) if type(infos) is list else None
        try:
            kind = kinds.get(key) if key is not None else None
        except TypeError:  # an info that is not a string (a list, an object): parsed below, which names it
            key, kind = None, None
        if kind is None:
            kind = kinds[key] = len(parsed_kinds)
            parsed_kinds.append(_record_kind(expect_list(infos, f"frame_records[{i}][0]"), f"frame_records[{i}]", frame_memo,
                                             launcher, launched_by_cli))
        kind_of[i] = kind
    keep = weights > 0
    skipped = int((~keep).sum())
    if not keep.any() and len(records):
        raise FormatError("frame_records holds no sample with a time above 0")
    kind_of, weights = kind_of[keep], weights[keep]
    threads: dict[tuple[str, int], int] = {}
    for kind in kind_of[np.sort(np.unique(kind_of, return_index=True)[1])].tolist():  # kinds in order of first use
        threads.setdefault(parsed_kinds[kind][0], len(threads))
    used = set(np.unique(kind_of).tolist())
    thread_of_kind = np.asarray([threads.get(k[0], -1) for k in parsed_kinds] or [0], dtype=np.int64)
    stack_of_kind = np.asarray([profile.intern_frames(list(k[1])) if k[1] and n in used else NO_STACK
                                for n, k in enumerate(parsed_kinds)] or [NO_STACK], dtype=np.int64)
    thread_col = thread_of_kind[kind_of]
    times = int(round(start_s * 1e9)) + np.cumsum(weights) - weights
    states = np.asarray([k[2] for k in parsed_kinds] or [0], dtype=np.int64)[kind_of]
    reasons = np.full(len(kind_of), NO_REASON, dtype=np.int64)
    if ext is not None:
        ext_threads = expect_list(ext.get("threads"), f"{EXTENSION_KEY}.threads")
        if len(ext_threads) != len(threads):
            raise FormatError(f"{EXTENSION_KEY}.threads has {len(ext_threads)} entries but the session has {len(threads)} threads")
        origin = expect_int(ext.get("origin_ns"), f"{EXTENSION_KEY}.origin_ns", minimum=0)
        added = []
        for n, entry in enumerate(ext_threads):
            rows = np.flatnonzero(thread_col == n)
            columns = read_thread_columns(entry, len(rows), origin, f"{EXTENSION_KEY}.threads[{n}]")
            added.append(profile.add_thread(columns["pid"], columns["tid"], columns["name"]))  # one (pid, tid) twice: one thread
            ids = np.asarray([NO_REASON if value is None else profile.intern_string(value) for value in columns["reason_values"]]
                             or [NO_REASON], dtype=np.int64)
            times[rows], states[rows] = columns["times"], columns["states"]
            reasons[rows] = ids[columns["reason_index"]] if len(rows) else reasons[rows]
    else:
        added = [profile.add_thread(pid, tid, name) for name, tid in threads]
    thread_col = np.asarray(added or [0], dtype=np.int64)[thread_col]
    profile.set_sample_columns({"time_ns": times, "thread": thread_col, "stack": stack_of_kind[kind_of], "weight_ns": weights,
                                "state": states, "reason": reasons})
    if ext is None:
        add_note(profile, "imported from a pyinstrument session: wall-clock samples without CPU/waiting states")
    if skipped:
        add_note(profile, f"{skipped} zero-time frame records were skipped")
    return profile


def _weights(seconds: list) -> np.ndarray:
    """Records' seconds as whole ns (> 0 stays > 0), in bulk; a bad value is named as :func:`expect_number` names it."""
    if set(map(type, seconds)) <= {int, float} and seconds:
        column = np.asarray(seconds, dtype=np.float64)
        if np.isfinite(column).all() and (column >= 0).all() and (column * 1e9 < 2**62).all():
            ns = np.rint(column * 1e9).astype(np.int64)
            ns[(ns == 0) & (column > 0)] = 1
            return ns
    for i, value in enumerate(seconds):
        to_ns(expect_number(value, f"frame_records[{i}][1]", minimum=0), 1e9, f"frame_records[{i}][1]")
    return np.zeros(len(seconds), dtype=np.int64)


def _record_kind(infos: list, where: str, frame_memo: dict, launcher: list[str], launched_by_cli: bool) -> tuple:
    """(thread key (name, ident), stack (function, file, line) root first, state) of a record's frame infos."""
    frames = []
    thread_key = ("", 0)
    for j, info in enumerate(infos):
        frame = frame_memo.get(expect_str(info, f"{where}[0][{j}]"))
        if frame is None:
            frame = frame_memo[info] = parse_frame_info(info, f"{where}[0][{j}]")
        if frame[3]:
            if j == 0:
                ident = _identifier(info).split(IDENTIFIER_SEP)[2]
                thread_key = (frame[0], int(ident) if ident.isdigit() else 0)
            continue
        frames.append((info, frame[:3]))
    if launcher and [_identifier(info) for info, _ in frames[: len(launcher)]] == launcher:
        frames = frames[len(launcher):]
        if launched_by_cli:
            while len(frames) > 1 and _is_launcher(frames[0][1]):
                frames = frames[1:]
    stack = tuple(f for _, f in frames)
    return thread_key, stack, int(State.WAITING if stack and stack[-1][0] == AWAIT_FRAME else State.UNKNOWN)


# -- JSON renderer trees ----------------------------------------------------------------------


def _load_tree(doc: dict, *, pid: int, **_: object) -> Profile:
    start_s = expect_number(doc.get("start_time"), "start_time", minimum=0)
    meta: dict = {"kind": "import", "pid": pid or None, "start_ns": int(start_s * 1e9)}
    if isinstance(doc.get("target_description"), str):
        meta["cmdline"] = doc["target_description"]
    profile = Profile(meta)
    thread = profile.add_thread(pid, 0, "pyinstrument")
    root = doc.get("root_frame")
    now = int(round(start_s * 1e9))
    if root is None:
        raise FormatError("root_frame is null: pyinstrument recorded no samples")
    tables = TableLists()
    times, stacks, weights, states = [], [], [], []
    todo = [(expect_dict(root, "root_frame"), "root_frame", NO_STACK)]
    while todo:
        node, where, parent = todo.pop()
        function = expect_str(node.get("function"), f"{where}.function")
        if node.get("class_name"):
            function = f"{expect_str(node['class_name'], f'{where}.class_name')}.{function}"
        file = expect_str(node.get("file_path") or "", f"{where}.file_path")
        line = expect_int(node.get("line_no") or 0, f"{where}.line_no", minimum=0)
        seconds = expect_number(node.get("time"), f"{where}.time", minimum=0)
        children = expect_list(node.get("children", []), f"{where}.children")
        stack = tables.stack(parent, tables.frame(function, file, line))
        self_s = seconds
        for i, child in enumerate(children):
            child = expect_dict(child, f"{where}.children[{i}]")
            child_s = expect_number(child.get("time"), f"{where}.children[{i}].time", minimum=0)
            if child.get("function") == SELF_FRAME:
                continue
            self_s -= child_s
            todo.append((child, f"{where}.children[{i}]", stack))
        weight = int(round(self_s * 1e9))
        if weight >= 1000:  # the renderer prints 6 decimals: below 1 us is rounding noise
            times.append(now)
            stacks.append(stack)
            weights.append(weight)
            states.append(int(State.WAITING if function == AWAIT_FRAME else State.UNKNOWN))
            now += weight
    tables.fill(profile)
    profile.extend_samples(times, thread, stacks, weights, states)
    add_note(profile, "imported from pyinstrument's JSON renderer: an aggregated tree, sample times are synthetic")
    return profile


def load(data: bytes, *, pid: int = 0, **options: object) -> Profile:
    doc = expect_dict(parse_json(data), "the file")
    if "frame_records" in doc:
        return _load_session(doc, pid=pid)
    if "root_frame" in doc:
        return _load_tree(doc, pid=pid)
    raise FormatError("neither frame_records (a session) nor root_frame (JSON renderer output) is present")


# -- writing ------------------------------------------------------------------------------------


def _safe(text: str) -> str:
    return text.replace(IDENTIFIER_SEP, "\ufffd").replace(ATTRIBUTES_SEP, "\ufffd")


def dump(profile: Profile, **_: object) -> bytes:
    """A pyinstrument session (see the module docstring) that ``Session.load`` reads."""
    cols = profile.columns()
    order = np.argsort(cols["time_ns"], kind="stable")
    first_line: dict[tuple[int, int], int] = {}
    for fn, fl, line in zip(profile.frame_function, profile.frame_file, profile.frame_line):
        key = (fn, fl)
        if line and (key not in first_line or line < first_line[key]):
            first_line[key] = line
    frame_info: dict[int, str] = {}

    def info(frame: int) -> str:
        text = frame_info.get(frame)
        if text is None:
            fn, fl, line = profile.frame_function[frame], profile.frame_file[frame], profile.frame_line[frame]
            function, file = _safe(profile.strings[fn]), _safe(profile.strings[fl])
            if not file and not line:
                text = function
            else:
                text = f"{function}{IDENTIFIER_SEP}{file}{IDENTIFIER_SEP}{first_line.get((fn, fl), 0)}{ATTRIBUTES_SEP}l{line}"
            frame_info[frame] = text
        return text

    thread_frames = [f"{_safe(t.name)}{IDENTIFIER_SEP}{THREAD_FILE}{IDENTIFIER_SEP}{n}" for n, t in enumerate(profile.threads)]
    ordered_threads, ordered_stacks = cols["thread"][order], cols["stack"][order]
    records_of: dict[tuple[int, int], list[str]] = {}  # (thread, stack) -> its frames, one list shared by its records
    for thread, stack in set(zip(ordered_threads.tolist(), ordered_stacks.tolist())):
        infos = [info(f) for f in profile.stack_frames(stack)] if stack != NO_STACK else []
        records_of[thread, stack] = [thread_frames[thread], *infos]
    records = [(records_of[key], seconds) for key, seconds in zip(zip(ordered_threads.tolist(), ordered_stacks.tolist()),
                                                                   (cols["weight_ns"][order] / 1e9).tolist())]
    firsts = np.unique(ordered_threads, return_index=True)[1]
    threads_in_file = ordered_threads[np.sort(firsts)].tolist()
    origin = int(cols["time_ns"].min()) if len(order) else int(profile.meta.get("start_ns") or 0)
    end = int((cols["time_ns"] + cols["weight_ns"]).max()) if len(order) else origin
    by_thread = {t: order[cols["thread"][order] == t] for t in threads_in_file}
    interval = 1.0 / float(profile.meta["rate_hz"]) if profile.meta.get("rate_hz") else 0.01
    doc = {
        "start_time": origin / 1e9,
        "duration": (end - origin) / 1e9,
        "min_interval": interval,
        "max_interval": interval,
        "sample_count": len(records),
        "start_call_stack": [thread_frames[threads_in_file[0]]] if threads_in_file else [],
        "target_description": _safe(str(profile.meta.get("cmdline") or f"profviz profile {profile.meta.get('id', '')}".strip())),
        "cpu_time": int(cols["weight_ns"][cols["state"] == int(State.ON_CPU)].sum()) / 1e9,
        "sys_path": [],
        "sys_prefixes": [],
        "frame_records": records,
        EXTENSION_KEY: {
            "format_version": EXTENSION_VERSION,
            "meta": portable_meta(profile),
            "origin_ns": origin,
            "threads": [thread_extension(profile, t, by_thread[t], origin) for t in threads_in_file],
        },
    }
    return dumps_json(doc)
