"""speedscope's JSON file format (https://www.speedscope.app/file-format-schema.json).

Reads "sampled" and "evented" profiles, any number per file, each becoming one profviz thread.
py-spy names its profiles ``Thread <tid> "<name>"`` (``Process <pid> Thread ...`` with
``--subprocesses``); those names give the thread ids, otherwise a profile's index is its tid.
py-spy's ``--threads`` pseudo-frames (``thread (123): name``, ``process 12:"cmd"``) at the root of
stacks repeat the thread and are dropped. Units: nanoseconds to seconds convert to ns; ``none``
counts samples, each worth 1/rate (``rate_hz``, default 100 Hz); ``bytes`` is refused.

speedscope files carry no absolute times or thread states: sampled profiles are laid end to end
from ``startValue``, evented profiles become one sample per interval between events, all
relative to ``start_ns`` (default 0) and in state UNKNOWN.

Writing produces one sampled profile per thread with weights in ns, and a top-level
``"$profviz"`` key (ignored by speedscope, see :mod:`profviz.formats.base`) holding sample
times, states, wait reasons, pids and metadata, so profviz -> speedscope -> profviz is lossless
for everything but spans.
"""

from __future__ import annotations

import re

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, State
from .base import (EXTENSION_KEY, EXTENSION_VERSION, FormatError, add_note, dumps_json, expect_dict, expect_int,
    expect_list, expect_number, expect_str, head_text, interval_ns, parse_json, portable_meta, read_meta,
    read_thread_columns, samples_by_thread, short, thread_extension, to_ns)

NAME = "speedscope"
DESCRIPTION = "speedscope JSON (py-spy --format speedscope, pyinstrument -r speedscope, speedscope's export)"
EXTENSION = ".speedscope.json"
DROPS = "spans (speedscope itself shows neither states nor wait reasons: profviz keeps them in its \"$profviz\" key)"
SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
UNIT_NS = {"nanoseconds": 1.0, "microseconds": 1e3, "milliseconds": 1e6, "seconds": 1e9}
_THREAD_NAME = re.compile(r'^(?:Process (\d+) )?Thread (\d+|0[xX][0-9A-Fa-f]+) "(.*)"$', re.S)
_PSEUDO_THREAD = re.compile(r"^thread \((\d+|0[xX][0-9A-Fa-f]+)\)(?:: .*)?$", re.S)
_PSEUDO_PROCESS = re.compile(r'^process \d+:".*"$', re.S)
_DETECT = re.compile(r'"\$schema"\s*:\s*"https?://(www\.)?speedscope\.app/file-format-schema\.json"')


def detect(data: bytes) -> bool:
    """True for JSON naming speedscope's schema (every speedscope writer does)."""
    head = head_text(data)
    return head.startswith("{") and _DETECT.search(head) is not None


def _read_frames(shared: dict) -> list[tuple[str, str, int]]:
    frames = []
    for i, raw in enumerate(expect_list(shared.get("frames"), "shared.frames")):
        where = f"shared.frames[{i}]"
        raw = expect_dict(raw, where)
        name = expect_str(raw.get("name"), f"{where}.name")
        file = raw.get("file")
        file = "" if file is None else expect_str(file, f"{where}.file")
        line = raw.get("line")
        line = 0 if line is None else expect_int(line, f"{where}.line", minimum=0)
        frames.append((name, file, line))
    return frames


def _is_pseudo_frame(frame: tuple[str, str, int]) -> bool:
    name, file, _ = frame
    return file == "" and (_PSEUDO_THREAD.match(name) is not None or _PSEUDO_PROCESS.match(name) is not None)


def _thread_identity(name: str, index: int, pid: int) -> tuple[int, int, str]:
    found = _THREAD_NAME.match(name)
    if found is None:
        return pid, index, name
    proc, tid, thread_name = found.groups()
    return (int(proc) if proc else pid), int(tid, 0), thread_name


class _NotLiftable(Exception):
    """The lifted arrays were not each one profile's samples, once, or not JSON numbers."""


_SAMPLES_KEY = re.compile(rb'"samples"[ \t\r\n]*:[ \t\r\n]*\[')
_EMPTY_ARRAY = re.compile(rb'\[[ \t\r\n]*\]')
_ARRAY_END = re.compile(rb'\][ \t\r\n]*\]')  # a stack's end, then the array's: a stack holds no "]"
_SPLIT_NUMBER = re.compile(rb'[0-9][ \t\r\n]+[0-9]')
_ROW = re.compile(rb'(?:(?:0|[1-9][0-9]{0,8})(?:,(?:0|[1-9][0-9]{0,8}))*)?')
_WHITESPACE = b" \t\r\n"
_LIFTED = "$profviz_lifted_samples"


def _lift_samples(data: bytes) -> tuple[bytes, list[bytes]]:
    """Take the ``samples`` arrays (lists of lists of frame indices) out of the raw file before
    parsing, each left as ``{"$profviz_lifted_samples": n}``: a million stacks as Python lists of
    ints cost more than the rest of the file together, and the few distinct ones are all that is
    needed (:func:`_lifted_stacks`). Lifted: ``[`` stacks ``]`` where a stack is ``[`` digits and
    commas ``]``, whitespace only between tokens, compacted. Anything else is left to the parser,
    and rows that are not JSON numbers make :func:`_lifted_stacks` undo the lift."""
    out, lifted, at = [], [], 0
    for found in _SAMPLES_KEY.finditer(data):
        start = found.end() - 1
        if start < at:
            continue
        if _EMPTY_ARRAY.match(data, start):
            continue  # nothing to gain
        end = _ARRAY_END.search(data, start)
        if end is None:
            continue
        blob = data[start:end.end()]
        compact = blob.translate(None, _WHITESPACE)
        if len(compact) != len(blob) and _SPLIT_NUMBER.search(blob):  # "1 0" must not become 10
            continue
        inner = compact[2:-2]  # [[ rows ]]
        if not (compact.startswith(b"[[") and compact.endswith(b"]]")) or inner.translate(None, b"0123456789,").replace(b"][", b""):
            continue  # something but digits, commas and row separators: the parser reads it
        out.append(data[at:start])
        out.append(b'{"%s":%d}' % (_LIFTED.encode(), len(lifted)))
        lifted.append(inner)
        at = end.end()
    if not lifted:
        return data, lifted
    out.append(data[at:])
    return b"".join(out), lifted


def _lifted_stacks(inner: bytes) -> tuple[list[tuple[int, ...]], list[int]]:
    """(distinct stacks, each sample's index into them) of one lifted array (its rows without the
    outer brackets: ``0,1],[0,2``); :class:`_NotLiftable` when a row is not JSON numbers."""
    rows = inner.split(b"],[")
    memo: dict[bytes, int] = {}
    index = [memo.setdefault(row, len(memo)) for row in rows]
    distinct = []
    for row in memo:
        if _ROW.fullmatch(row) is None:  # a leading zero, an empty number: JSON would refuse it
            raise _NotLiftable()
        distinct.append(tuple(map(int, row.split(b","))) if row else ())
    return distinct, index


def _sampled(raw: dict, where: str, frames: list, factor: float, lifted: list[bytes],
             used: set[int]) -> tuple[list[tuple[int, ...]], list[int], list[int], int]:
    """(distinct stacks as frame indices, each kept sample's index into them, its weight in ns,
    zero-weight samples dropped). Whole columns at once; a profile with a bad value is read again
    sample by sample, which names the first one."""
    if lifted and isinstance(raw.get("samples"), dict) and _LIFTED in raw["samples"]:
        number = raw["samples"][_LIFTED]
        if type(number) is not int or not 0 <= number < len(lifted) or number in used or len(raw["samples"]) != 1:
            raise _NotLiftable()
        used.add(number)
        distinct, index = _lifted_stacks(lifted[number])
        samples = None
    else:
        samples = expect_list(raw.get("samples"), f"{where}.samples")
        distinct = index = None
    weights = expect_list(raw.get("weights"), f"{where}.weights")
    count = len(index) if samples is None else len(samples)
    if count != len(weights):
        raise FormatError(f"{where} has {count} samples but {len(weights)} weights; they must match")
    n_frames = len(frames)
    try:
        raw_weights = np.asarray(weights) if weights else np.zeros(0)
        column = raw_weights.astype(np.float64)
        if samples is not None:
            memo: dict[tuple, int] = {}
            index = [memo.setdefault(tuple(stack), len(memo)) for stack in samples]
            distinct = list(memo)
    except (ValueError, TypeError):
        return _sampled_slowly(samples, weights, where, n_frames, factor)
    fine = (raw_weights.dtype.kind in "iuf" and bool not in set(map(type, weights)) and np.isfinite(column).all()
            and not (column < 0).any()
            and (samples is None or all(type(stack_list) is list for stack_list in samples))
            and all(type(f) is int and 0 <= f < n_frames for stack in distinct for f in stack))
    if not fine or (len(column) and float(column.sum()) * factor >= 2**62):  # the samples' times must fit too
        if samples is None:
            samples = [list(distinct[i]) for i in index]
        return _sampled_slowly(samples, weights, where, n_frames, factor)
    keep = column > 0
    ns = np.rint(column * factor).astype(np.int64)
    ns[keep & (ns == 0)] = 1  # a weight > 0 stays > 0
    chosen = np.asarray(index, dtype=np.int64)[keep]
    return distinct, chosen.tolist(), ns[keep].tolist(), int(len(column) - keep.sum())


def _sampled_slowly(samples: list, weights: list, where: str, n_frames: int, factor: float):
    """:func:`_sampled`, value by value: the error names the first bad one."""
    memo: dict[tuple, int] = {}
    index, out_weights, dropped = [], [], 0
    for i, (stack, weight) in enumerate(zip(samples, weights)):
        weight = expect_number(weight, f"{where}.weights[{i}]", minimum=0)
        stack = expect_list(stack, f"{where}.samples[{i}]")
        for j, frame in enumerate(stack):
            if isinstance(frame, bool) or not isinstance(frame, int) or not (0 <= frame < n_frames):
                raise FormatError(f"{where}.samples[{i}][{j}] is {short(frame)}, not one of the {n_frames} frame indices")
        if weight == 0:
            dropped += 1
            continue
        index.append(memo.setdefault(tuple(stack), len(memo)))
        out_weights.append(to_ns(weight, factor, f"{where}.weights[{i}]"))
    return list(memo), index, out_weights, dropped


def _evented(raw: dict, where: str, frames: list, factor: float, start: float, end: float) -> tuple[list[list[int]], list[int], list[int], bool]:
    """Replay open/close events into (stacks, weights ns, offsets ns from startValue, closed_at_end)."""
    events = expect_list(raw.get("events"), f"{where}.events")
    n_frames = len(frames)
    open_frames: list[int] = []
    stacks, weights, offsets = [], [], []
    previous = start
    for i, event in enumerate(events):
        ew = f"{where}.events[{i}]"
        event = expect_dict(event, ew)
        kind = event.get("type")
        if kind not in ("O", "C"):
            raise FormatError(f"{ew}.type is {short(kind)}; it must be \"O\" (open) or \"C\" (close)")
        at = expect_number(event.get("at"), f"{ew}.at")
        frame = expect_int(event.get("frame"), f"{ew}.frame", minimum=0, below=n_frames)
        if at < previous:
            raise FormatError(f"{ew}.at is {at}, before the previous event at {previous}; events must be in time order")
        if at > previous and open_frames:
            stacks.append(list(open_frames))
            weights.append(to_ns(at - previous, factor, f"{ew}.at"))
            offsets.append(to_ns(previous - start, factor, f"{ew}.at") if previous > start else 0)
        previous = at
        if kind == "O":
            open_frames.append(frame)
        elif not open_frames:
            raise FormatError(f"{ew} closes frame {frame} ({short(frames[frame][0])}) but no frame is open")
        elif open_frames[-1] != frame:
            top = open_frames[-1]
            raise FormatError(
                f"{ew} closes frame {frame} ({short(frames[frame][0])}) but the innermost open frame is {top} ({short(frames[top][0])})"
            )
        else:
            open_frames.pop()
    closed_at_end = bool(open_frames)
    if open_frames and end > previous:
        stacks.append(list(open_frames))
        weights.append(to_ns(end - previous, factor, f"{where}.endValue"))
        offsets.append(to_ns(previous - start, factor, f"{where}.endValue") if previous > start else 0)
    return stacks, weights, offsets, closed_at_end


def load(data: bytes, *, rate_hz: float | None = None, start_ns: int = 0, pid: int = 0, **_: object) -> Profile:
    """Read a speedscope file. ``rate_hz`` prices unit "none"; ``start_ns`` anchors relative times."""
    original = data
    data, lifted = _lift_samples(data)
    if lifted:
        try:
            return _load(data, lifted, rate_hz=rate_hz, start_ns=start_ns, pid=pid)
        except _NotLiftable:  # a "samples" key elsewhere, or a placeholder the file itself wrote: read it as it is
            pass
    return _load(original, [], rate_hz=rate_hz, start_ns=start_ns, pid=pid)


def _load(data: bytes, lifted: list[bytes], *, rate_hz: float | None, start_ns: int, pid: int) -> Profile:
    used: set[int] = set()
    doc = expect_dict(parse_json(data), "the file")
    if doc.get("$schema") != SCHEMA_URL:
        raise FormatError(f"$schema is {short(doc.get('$schema'))}, expected {SCHEMA_URL!r}")
    frames = _read_frames(expect_dict(doc.get("shared"), "shared"))
    raw_profiles = expect_list(doc.get("profiles"), "profiles")
    ext = doc.get(EXTENSION_KEY)
    ext_threads = None
    origin_ns = start_ns
    meta: dict = {"kind": "import", "pid": pid or None}
    if ext is not None:
        ext = expect_dict(ext, EXTENSION_KEY)
        version = ext.get("format_version")
        if version != EXTENSION_VERSION:
            raise FormatError(f"{EXTENSION_KEY}.format_version is {short(version)}; this profviz reads {EXTENSION_VERSION}")
        meta.update(read_meta(ext.get("meta", {}), f"{EXTENSION_KEY}.meta"))
        origin_ns = expect_int(ext.get("origin_ns"), f"{EXTENSION_KEY}.origin_ns", minimum=0)
        ext_threads = expect_list(ext.get("threads"), f"{EXTENSION_KEY}.threads")
        if len(ext_threads) != len(raw_profiles):
            raise FormatError(f"{EXTENSION_KEY}.threads has {len(ext_threads)} entries but the file has {len(raw_profiles)} profiles")
    profile = Profile(meta)
    stack_memo: dict[tuple[int, ...], int] = {}

    def intern(frame_indices: list[int]) -> int:
        key = tuple(frame_indices)
        stack = stack_memo.get(key)
        if stack is None:
            kept = [frames[f] for f in frame_indices]
            while kept and _is_pseudo_frame(kept[0]):
                kept.pop(0)
            stack = stack_memo[key] = profile.intern_frames(kept) if kept else NO_STACK
        return stack

    dropped = 0
    closed = []
    columns: list[tuple] = []  # per profile: times, thread, stack, weight, state, reason (numpy)
    for index, raw in enumerate(raw_profiles):
        where = f"profiles[{index}]"
        raw = expect_dict(raw, where)
        name = raw.get("name")
        name = f"profile {index}" if name is None else expect_str(name, f"{where}.name")
        unit = raw.get("unit", "none")
        if unit == "bytes":
            raise FormatError(f"{where} is a memory profile (unit \"bytes\"); profviz reads time profiles only")
        if unit == "none":
            factor = interval_ns(rate_hz)
        elif unit in UNIT_NS:
            factor = UNIT_NS[unit]
        else:
            raise FormatError(f"{where}.unit is {short(unit)}; expected one of none, {', '.join(UNIT_NS)}")
        start = expect_number(raw.get("startValue", 0), f"{where}.startValue")
        end = expect_number(raw.get("endValue", start), f"{where}.endValue")
        kind = raw.get("type")
        if kind == "sampled":
            distinct, chosen, weights, zero = _sampled(raw, where, frames, factor, lifted, used)
            dropped += zero
            offsets = (np.cumsum([0] + weights[:-1]) if weights else np.zeros(0, np.int64)).tolist()
        elif kind == "evented":
            stacks, weights, offsets, was_open = _evented(raw, where, frames, factor, start, end)
            memo: dict[tuple, int] = {}
            chosen = [memo.setdefault(tuple(stack), len(memo)) for stack in stacks]
            distinct = list(memo)
            if was_open:
                closed.append(name)
        else:
            raise FormatError(f"{where}.type is {short(kind)}; expected \"sampled\" or \"evented\"")
        base_ns = origin_ns + (to_ns(start, factor, f"{where}.startValue") if start > 0 else 0)
        count = len(chosen)
        weight_col = np.asarray(weights, dtype=np.int64)
        if ext_threads is not None:
            entry = read_thread_columns(ext_threads[index], count, origin_ns, f"{EXTENSION_KEY}.threads[{index}]")
            thread = profile.add_thread(entry["pid"], entry["tid"], entry["name"])
            times, states = entry["times"], entry["states"]
            ids = np.asarray([NO_REASON if value is None else profile.intern_string(value) for value in entry["reason_values"]]
                             or [NO_REASON], dtype=np.int64)
            reason_col = ids[entry["reason_index"]] if count else np.zeros(0, dtype=np.int64)
        else:
            thread = profile.add_thread(*_thread_identity(name, index, pid))
            times = base_ns + np.asarray(offsets, dtype=np.int64)
            states = np.full(count, int(State.UNKNOWN), dtype=np.int8)
            reason_col = np.full(count, NO_REASON, dtype=np.int64)
        interned = np.asarray([intern(list(stack)) for stack in distinct] or [NO_STACK], dtype=np.int64)
        columns.append((times, np.full(count, thread, dtype=np.int32), interned[np.asarray(chosen, dtype=np.int64)] if count
                        else np.zeros(0, dtype=np.int64), weight_col, states, reason_col))
    if used != set(range(len(lifted))):
        raise _NotLiftable()
    if columns:
        names = ("time_ns", "thread", "stack", "weight_ns", "state", "reason")
        profile.set_sample_columns({name: np.concatenate([c[n] for c in columns]) for n, name in enumerate(names)})
    if ext_threads is None:
        exporter = doc.get("exporter")
        made_by = f", written by {exporter}" if isinstance(exporter, str) and exporter else ""
        add_note(profile, f"imported from speedscope{made_by}: no thread states or absolute times")
    if dropped:
        add_note(profile, f"{dropped} zero-weight samples were skipped")
    if closed:
        add_note(profile, f"frames still open at the end of {len(closed)} evented profile(s) were closed at endValue")
    return profile


def dump(profile: Profile, **_: object) -> bytes:
    """Write one sampled speedscope profile per thread (unit ns) plus the ``"$profviz"`` extension."""
    cols = profile.columns()
    frames: list[dict] = []
    frame_index: dict[int, int] = {}
    stack_cache: dict[int, list[int]] = {}

    def stack_frames(stack: int) -> list[int]:
        out = stack_cache.get(stack)
        if out is None:
            out = []
            if stack != NO_STACK:
                for frame in profile.stack_frames(stack):
                    index = frame_index.get(frame)
                    if index is None:
                        f = profile.frame(frame)
                        entry: dict = {"name": f.function}
                        if f.file:
                            entry["file"] = f.file
                        if f.line:
                            entry["line"] = f.line
                        index = frame_index[frame] = len(frames)
                        frames.append(entry)
                    out.append(index)
            stack_cache[stack] = out
        return out

    by_thread = samples_by_thread(profile)
    origin_ns = int(cols["time_ns"].min()) if len(cols["time_ns"]) else int(profile.meta.get("start_ns") or 0)
    pids = {profile.threads[t].pid for t, _ in by_thread}
    profiles, ext_threads = [], []
    for thread, order in by_thread:
        info = profile.threads[thread]
        times = cols["time_ns"][order]
        weights = cols["weight_ns"][order]
        label = f'Thread {info.tid} "{info.name}"'
        if len(pids) > 1:
            label = f"Process {info.pid} {label}"
        profiles.append({
            "type": "sampled",
            "name": label,
            "unit": "nanoseconds",
            "startValue": int(times[0] - origin_ns),
            "endValue": int((times + weights).max() - origin_ns),
            "samples": [stack_frames(s) for s in cols["stack"][order].tolist()],
            "weights": weights.tolist(),
        })
        ext_threads.append(thread_extension(profile, thread, order, origin_ns))
    doc = {
        "$schema": SCHEMA_URL,
        "exporter": "profviz",
        "name": f"profviz profile {profile.meta.get('id', '')}".strip(),
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": profiles,
        EXTENSION_KEY: {
            "format_version": EXTENSION_VERSION,
            "meta": portable_meta(profile),
            "origin_ns": origin_ns,
            "threads": ext_threads,
        },
    }
    return dumps_json(doc)
