"""pprof (``profile.proto``, gzip-compressed): Go's, Pyroscope's, Parca's and ddtrace's format.

Writing: samples aggregated by (stack, thread, state, wait reason), each with three values,
``samples/count``, ``wall/nanoseconds`` and ``cpu/nanoseconds`` (the wall time on CPU, 0 when
waiting), so both CPU and waiting survive; labels ``thread`` (name), ``thread_id``, ``pid``,
``state`` and ``wait_reason``, and for a request profile ``route`` and ``request_id``;
functions with their files and lines; ``time_nanos``, ``duration_nanos`` and ``period`` (from
the sampling rate). pprof has no sample times: they are dropped, and so are spans.

Reading: the wall-clock values when the profile has them (``wall``, ``wall-time`` or ``time`` in
a time unit; with ``cpu``/``cpu-time`` beside it, each sample splits into its CPU part and the
rest waiting), else the CPU values (on CPU), else sample counts priced at ``period`` (state
unknown); a profile of no time (heap, allocations) is refused. Threads come from the labels
``thread_id``/``thread id`` and ``thread``/``thread_name``/``thread name``, states and wait
reasons from ``state`` and ``wait_reason`` (profviz's own), inlined frames from each location's
lines. Samples are placed by ddtrace's ``end_timestamp_ns`` label, else laid end to end from
``time_nanos``; samples with no time (ddtrace's allocation and lock events beside its time
samples) are left out and counted in a note. zstd files (ddtrace's) are read as gzip ones are.
"""

from __future__ import annotations

import gzip
import re

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, State, TableLists
from .base import STATE_LABELS, STATE_OF_LABEL, FormatError, StringTable, add_note, interval_ns, portable_meta
from .pprof_messages import Label, Line, Profile as PprofProfile, ValueType

NAME = "pprof"
DESCRIPTION = "pprof protocol buffers (Go, Pyroscope, Parca, ddtrace; profile.proto, gzip or zstd)"
EXTENSION = ".pb.gz"
_SURROGATES = re.compile("[\ud800-\udfff]")
_TIME_UNITS = {"nanoseconds": 1, "microseconds": 10**3, "milliseconds": 10**6, "seconds": 10**9}
_WALL_TYPES = ("wall", "wall-time", "wall_time", "time")
_CPU_TYPES = ("cpu", "cpu-time", "cpu_time")
_THREAD_ID_KEYS = ("thread_id", "thread native id", "thread id", "tid")  # ddtrace: "thread native id" is the OS's, "thread id" Python's
_END_TIME_KEY = "end_timestamp_ns"  # ddtrace: when the sample was taken
_THREAD_NAME_KEYS = ("thread", "thread_name", "thread name")
DROPS = "sample times and spans (pprof has neither)"


def detect(data: bytes) -> bool:
    """True for a serialized Profile message: it parses, with a string table that starts empty and sample types."""
    if not data or data[0] not in (0x0A, 0x12, 0x1A, 0x22, 0x2A, 0x32):
        return False
    try:
        parsed = PprofProfile.FromString(data)
    except Exception:  # noqa: BLE001 - any parse failure means "not this format"
        return False
    return bool(parsed.string_table) and parsed.string_table[0] == "" and len(parsed.sample_type) > 0


# -- writing ------------------------------------------------------------------------------------


class _Strings(StringTable):
    """pprof's string table: "" first, and text a protobuf string can hold (a lone surrogate, which
    a file name read with surrogateescape may carry, as U+FFFD)."""

    def __init__(self) -> None:
        super().__init__(("",))

    def __call__(self, text: str) -> int:
        return super().__call__(_SURROGATES.sub("\ufffd", text) if not text.isascii() else text)


def dump(profile: Profile, **_: object) -> bytes:
    """The profile as a gzip-compressed pprof ``Profile`` (see the module's docstring)."""
    out = PprofProfile()
    strings = _Strings()
    out.sample_type.extend([ValueType(type=strings("samples"), unit=strings("count")),
                            ValueType(type=strings("wall"), unit=strings("nanoseconds")),
                            ValueType(type=strings("cpu"), unit=strings("nanoseconds"))])
    out.default_sample_type = strings("wall")
    columns = profile.columns()
    n_frames = len(profile.frame_function)
    function_ids: dict[tuple[int, int], int] = {}
    for frame in range(n_frames):
        key = (profile.frame_function[frame], profile.frame_file[frame])
        if key not in function_ids:
            function_ids[key] = len(function_ids) + 1
            out.function.add(id=function_ids[key], name=strings(profile.strings[key[0]]), system_name=strings(profile.strings[key[0]]),
                             filename=strings(profile.strings[key[1]]))
        out.location.add(id=frame + 1, line=[Line(function_id=function_ids[key], line=profile.frame_line[frame])])
    meta = profile.meta
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    request_labels = [Label(key=strings(key), str=strings(str(labels[key]))) for key in ("route", "request_id") if labels.get(key)]
    threads = [[Label(key=strings("thread"), str=strings(t.name or f"thread {t.tid}")), _number_label(strings, "thread_id", t.tid),
                _number_label(strings, "pid", t.pid)] for t in profile.threads]
    states = {state: Label(key=strings("state"), str=strings(name)) for state, name in STATE_LABELS.items()}
    if len(columns["time_ns"]):
        unique, group = _aggregate(profile, columns)
        counts = np.bincount(group, minlength=len(unique))
        wall = np.bincount(group, weights=columns["weight_ns"], minlength=len(unique))
        prefixes, stack_frames = profile.stack_prefix, profile.stack_frame
        chains: dict[int, list[int]] = {NO_STACK: []}
        for (stack, thread, state, reason), count, ns in zip(unique.tolist(), counts.tolist(), wall.tolist()):
            chain = chains.get(stack)
            if chain is None:
                chain, node = [], stack
                while node != NO_STACK:  # leaf first, as pprof wants
                    chain.append(stack_frames[node] + 1)
                    node = prefixes[node]
                chains[stack] = chain
            sample_labels = threads[thread] + [states[State(state)]] + request_labels
            if reason != NO_REASON:
                sample_labels = sample_labels + [Label(key=strings("wait_reason"), str=strings(profile.strings[reason]))]
            ns = int(ns)
            out.sample.add(location_id=chain, value=[count, ns, ns if state == State.ON_CPU else 0], label=sample_labels)
        first, end = profile.time_range_ns
        out.time_nanos = int(meta.get("start_ns") or first)
        out.duration_nanos = int(meta.get("duration_ns") or (end - first))
    rate = meta.get("rate_hz")
    out.period_type.CopyFrom(ValueType(type=strings("wall"), unit=strings("nanoseconds")))
    out.period = int(interval_ns(rate)) if rate else 0
    portable = portable_meta(profile)
    out.comment.extend([strings(f"profviz {portable.get('kind', 'profile')}"), strings(f"dropped: {DROPS}")]
                       + [strings(f"{key}={value}") for key, value in portable.items() if key in ("cmdline", "pid")])
    out.string_table.extend(strings.strings)
    return gzip.compress(out.SerializeToString(), compresslevel=6, mtime=0)


def _aggregate(profile: Profile, columns: dict) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (stack, thread, state, reason) rows of the samples, and each sample's row: one
    int64 key per sample (a 1-D unique is ~10x faster than a unique over rows) when the key fits."""
    reasons, reason_rank = np.unique(columns["reason"], return_inverse=True)
    n_threads, n_states, n_reasons = max(1, len(profile.threads)), len(State), max(1, len(reasons))
    if (len(profile.stack_prefix) + 1) * n_threads * n_states * n_reasons < 2**62:
        key = (((columns["stack"].astype(np.int64) + 1) * n_threads + columns["thread"]) * n_states + columns["state"]) * n_reasons \
            + reason_rank.reshape(-1)
        distinct, group = np.unique(key, return_inverse=True)
        reason_of, rest = distinct % n_reasons, distinct // n_reasons
        state_of, rest = rest % n_states, rest // n_states
        thread_of, stack_of = rest % n_threads, rest // n_threads - 1
        return np.stack([stack_of, thread_of, state_of, reasons[reason_of].astype(np.int64)], axis=1), group.reshape(-1)
    rows = np.stack([columns["stack"].astype(np.int64), columns["thread"].astype(np.int64), columns["state"].astype(np.int64),
                     columns["reason"].astype(np.int64)], axis=1)
    unique, group = np.unique(rows, axis=0, return_inverse=True)
    return unique, group.reshape(-1)


def _number_label(strings: _Strings, key: str, value: int) -> Label:
    """A numeric label, as text when int64 cannot hold it (a pthread id read from a file, say)."""
    return Label(key=strings(key), num=value) if -(2**63) <= value < 2**63 else Label(key=strings(key), str=strings(str(value)))


# -- reading ------------------------------------------------------------------------------------


def _time_type(parsed: PprofProfile, names: tuple[str, ...]) -> tuple[int, int] | None:
    """(index, ns per unit) of the first sample type named one of ``names`` in a time unit."""
    strings = parsed.string_table
    for index, value_type in enumerate(parsed.sample_type):
        name, unit = strings[value_type.type].lower(), strings[value_type.unit].lower()
        if name in names and unit in _TIME_UNITS:
            return index, _TIME_UNITS[unit]
    return None


def load(data: bytes, *, rate_hz: float | None = None, start_ns: int = 0, pid: int = 0, **_: object) -> Profile:
    try:
        parsed = PprofProfile.FromString(data)
    except Exception as exc:  # noqa: BLE001 - the runtime's DecodeError and friends
        raise FormatError(f"not a pprof profile ({type(exc).__name__}: {str(exc)[:120]})") from None
    strings = list(parsed.string_table)
    n_strings = len(strings)
    if not strings or strings[0] != "":
        raise FormatError("string_table must start with the empty string")

    def text(index: int, where: str) -> str:
        if not 0 <= index < n_strings:
            raise FormatError(f"{where} names string {index}, outside the {n_strings} strings")
        return strings[index]

    wall, cpu = _time_type(parsed, _WALL_TYPES), _time_type(parsed, _CPU_TYPES)
    period_ns = 0
    if parsed.period > 0 and parsed.period_type.unit < n_strings and strings[parsed.period_type.unit].lower() in _TIME_UNITS:
        period_ns = parsed.period * _TIME_UNITS[strings[parsed.period_type.unit].lower()]
    count_type = next((i for i, t in enumerate(parsed.sample_type) if text(t.unit, "sample_type").lower() == "count"), None)
    period_kind = text(parsed.period_type.type, "period_type").lower() if parsed.HasField("period_type") else ""
    priced = ""
    if wall is None and cpu is None and count_type is not None and period_ns <= 0 and period_kind in _CPU_TYPES + _WALL_TYPES:
        period_ns = int(interval_ns(rate_hz))  # counts of a known kind of time, without their period (parca-agent writes these)
        priced = f"; its period is not given: each sample counted as {period_ns / 1e6:g} ms ({1e9 / period_ns:g} Hz; --rate sets it)"
    if wall is None and cpu is None and (count_type is None or period_ns <= 0):
        kinds = ", ".join(f"{text(t.type, 'sample_type')}/{text(t.unit, 'sample_type')}" for t in parsed.sample_type)
        raise FormatError(f"its sample types ({kinds[:120]}) hold no time: profviz reads CPU and wall-clock profiles, "
                          "not heap or allocation ones")
    functions = {}
    for function in parsed.function:
        name = text(function.name, "a function") or text(function.system_name, "a function")
        functions[function.id] = (name or f"function {function.id}", text(function.filename, "a function"))
    mappings = {mapping.id: text(mapping.filename, "a mapping") for mapping in parsed.mapping}
    tables = TableLists()
    locations: dict[int, list[int]] = {}  # location id -> its frames, caller first
    for location in parsed.location:
        frames = []
        for line in reversed(location.line):  # the last line is the caller of the others (inlining)
            name, file = functions.get(line.function_id, (f"function {line.function_id}", ""))
            frames.append(tables.frame(name, file, max(0, int(line.line))))
        if not frames:
            frames.append(tables.frame(f"0x{location.address:x}", mappings.get(location.mapping_id, ""), 0))
        locations[location.id] = frames
    profile = Profile({"kind": "import", "labels": {"imported_from": "pprof"}})
    threads: dict[tuple[int, int, str], int] = {}
    stacks: dict[tuple[int, ...], int] = {}
    time_col, thread_col, stack_col, weight_col, state_col, reason_col = [], [], [], [], [], []
    reasons: dict[str, int] = {}
    reason_strings: list[str] = []
    at = int(parsed.time_nanos) or start_ns
    n_values = len(parsed.sample_type)
    timeless = timed = 0
    for number, sample in enumerate(parsed.sample):
        values = sample.value
        if len(values) != n_values:
            raise FormatError(f"sample {number} has {len(values)} values for {n_values} sample types")
        key = tuple(sample.location_id)
        stack = stacks.get(key)
        if stack is None:
            stack = NO_STACK
            for location_id in reversed(key):
                frames = locations.get(location_id)
                if frames is None:
                    raise FormatError(f"sample {number} names location {location_id}, which the profile does not have")
                for frame in frames:
                    stack = tables.stack(stack, frame)
            stacks[key] = stack
        found = {}
        for label in sample.label:
            found[text(label.key, f"sample {number}'s label").lower()] = (text(label.str, f"sample {number}'s label") if label.str
                                                                           else label.num)
        state_label = found.get("state")
        state = STATE_OF_LABEL.get(state_label) if isinstance(state_label, str) else None
        if state is None and wall is None and cpu is None and period_kind in _CPU_TYPES:
            state = int(State.ON_CPU)
        parts = [(weight, state) for weight, state in _parts(values, wall, cpu, count_type, period_ns, state) if weight > 0]
        if not parts:  # no time: an event of another kind beside the time samples (ddtrace's allocations, lock events)
            timeless += 1
            continue
        tid = next((found[k] for k in _THREAD_ID_KEYS if k in found), 0)
        name = next((found[k] for k in _THREAD_NAME_KEYS if k in found and isinstance(found[k], str)), "")
        tid = int(tid) if isinstance(tid, int) or (str(tid).isdecimal() and len(str(tid)) < 20) else 0
        thread_pid = found.get("pid") if isinstance(found.get("pid"), int) and found["pid"] >= 0 else pid
        thread_key = (int(thread_pid), tid, str(name) or ("all" if not tid else f"thread {tid}"))
        thread = threads.get(thread_key)
        if thread is None:
            thread = threads[thread_key] = profile.add_thread(*thread_key)
        reason = found.get("wait_reason")
        taken = found.get(_END_TIME_KEY)
        sample_at = taken - sum(weight for weight, _ in parts) if type(taken) is int and 0 < taken < 2**62 else None
        timed += sample_at is not None
        for weight, state in parts:
            if sample_at is not None:
                time_col.append(max(0, sample_at))
                sample_at += weight
            else:
                time_col.append(at)
                at += weight
            thread_col.append(thread)
            stack_col.append(stack)
            weight_col.append(weight)
            state_col.append(state)
            if state == State.WAITING and isinstance(reason, str) and reason:
                if reason not in reasons:
                    reasons[reason] = len(reason_strings)
                    reason_strings.append(reason)
                reason_col.append(reasons[reason])
            else:
                reason_col.append(NO_REASON)
    tables.fill(profile)
    reason_ids = [profile.intern_string(reason) for reason in reason_strings]
    profile.set_sample_columns({
        "time_ns": np.asarray(time_col, dtype=np.int64), "thread": np.asarray(thread_col, dtype=np.int32),
        "stack": np.asarray(stack_col, dtype=np.int32), "weight_ns": np.asarray(weight_col, dtype=np.int64),
        "state": np.asarray(state_col, dtype=np.int8),
        "reason": np.asarray([reason_ids[r] if r != NO_REASON else NO_REASON for r in reason_col], dtype=np.int32),
    })
    profile.meta.update(start_ns=int(parsed.time_nanos) or start_ns, duration_ns=int(parsed.duration_nanos) or (at - (int(parsed.time_nanos) or start_ns)))
    if period_ns:
        profile.meta["rate_hz"] = round(1e9 / period_ns, 6)
    counted = len(parsed.sample) - timeless
    placed = ("samples placed by their end_timestamp_ns labels" if timed == counted else
              f"{timed} of {counted} samples placed by their end_timestamp_ns labels, the others laid end to end" if timed else
              "samples laid end to end")
    left_out = f"; {timeless} samples of no time (allocation or lock events) left out" if timeless else ""
    add_note(profile, f"imported from pprof (which has no spans): {placed}{priced}{left_out}")
    return profile


def _parts(values, wall, cpu, count_type, period_ns: int, state: int | None) -> list[tuple[int, int]]:
    """A pprof sample's (weight ns, state) parts: its CPU part and the rest waiting, or one part."""
    if wall is not None:
        wall_ns = max(0, int(values[wall[0]]) * wall[1])
        if state is not None:
            return [(wall_ns, state)]
        if cpu is not None:
            cpu_ns = max(0, min(wall_ns, int(values[cpu[0]]) * cpu[1]))
            return [(cpu_ns, int(State.ON_CPU)), (wall_ns - cpu_ns, int(State.WAITING))]
        return [(wall_ns, int(State.UNKNOWN))]
    if cpu is not None:
        return [(int(values[cpu[0]]) * cpu[1], int(State.ON_CPU) if state is None else state)]
    return [(int(values[count_type]) * period_ns, int(State.UNKNOWN) if state is None else state)]
