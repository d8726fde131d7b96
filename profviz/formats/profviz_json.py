"""profviz's own portable JSON format: a stored profile exported and re-imported losslessly.

Layout (``format_version`` 1; the interned tables of :mod:`profviz.model` as columns)::

    {"format": "profviz", "format_version": 1,
     "meta": {"kind", "pid", "cmdline", "start_ns", "duration_ns", "rate_hz", "error_count", "labels", "notes"},
     "strings": ["...", ...],
     "frames": {"function": [string index...], "file": [string index...], "line": [int...]},
     "stacks": {"prefix": [stack index or -1...], "frame": [frame index...]},
     "threads": [[pid, tid, name], ...],
     "samples": {"time_delta_ns": [first time, then differences...], "thread": [...], "stack": [... or -1],
                 "weight_ns": [...], "state": [State value...], "reason": [string index or -1...]},
     "spans": [{"trace_id", "span_id", "parent_id", "name", "kind", "status", "start_ns", "end_ns",
                "thread", "attributes", "approximate"}, ...]}

Everything the store keeps round-trips: tables, sample order, times, weights, states, reasons,
threads and the recording metadata (not the store's id). Loading re-interns through the model's
builders, so a file that breaks an invariant is refused with the field that breaks it.
"""

from __future__ import annotations

import re

import numpy as np

from ..model import NO_REASON, NO_STACK, Profile, Span, State
from .base import (
    FormatError,
    dumps_json,
    expect_dict,
    expect_int,
    expect_list,
    expect_str,
    head_text,
    parse_json,
    portable_meta,
    read_meta,
    short,
)

NAME = "profviz"
DESCRIPTION = "profviz portable JSON (profviz export --format profviz)"
EXTENSION = ".profviz.json"
FORMAT_VERSION = 1
SPAN_KEYS = ("trace_id", "span_id", "parent_id", "name", "kind", "status", "start_ns", "end_ns", "thread", "attributes",
             "approximate")
_DETECT = re.compile(r'^\{\s*"format"\s*:\s*"profviz"')
SAMPLE_FIELDS = ("time_delta_ns", "thread", "stack", "weight_ns", "state", "reason")


def detect(data: bytes) -> bool:
    """True for JSON whose first key is ``"format": "profviz"`` (as :func:`dump` writes it)."""
    return _DETECT.match(head_text(data, 256)) is not None


def dump(profile: Profile, **_: object) -> bytes:
    return dumps_json(to_doc(profile))


def to_doc(profile: Profile) -> dict:
    """The format's document of a profile, before JSON encoding."""
    cols = profile.columns()
    times = cols["time_ns"]
    doc = {
        "format": "profviz",
        "format_version": FORMAT_VERSION,
        "meta": portable_meta(profile),
        "strings": profile.strings,
        "frames": {
            "function": list(profile.frame_function),
            "file": list(profile.frame_file),
            "line": list(profile.frame_line),
        },
        "stacks": {"prefix": list(profile.stack_prefix), "frame": list(profile.stack_frame)},
        "threads": [[t.pid, t.tid, t.name] for t in profile.threads],
        "samples": {
            "time_delta_ns": np.diff(times, prepend=np.int64(0)).tolist() if len(times) else [],
            "thread": cols["thread"].tolist(),
            "stack": cols["stack"].tolist(),
            "weight_ns": cols["weight_ns"].tolist(),
            "state": cols["state"].tolist(),
            "reason": cols["reason"].tolist(),
        },
        "spans": [{key: getattr(span, key) for key in SPAN_KEYS} for span in profile.spans],
    }
    return doc


def _int_column(values: list, where: str, low: int, high: int | None) -> np.ndarray:
    """A list of ints checked to lie in [low, high); the error names the first bad entry."""
    if not values:
        return np.zeros(0, dtype=np.int64)
    try:
        column = np.asarray(values)
    except (ValueError, OverflowError):
        column = np.asarray(values, dtype=object)
    if column.dtype.kind not in "iu" or column.ndim != 1:
        for i, value in enumerate(values):
            expect_int(value, f"{where}[{i}]")
        raise FormatError(f"{where} must be a list of integers")
    column = column.astype(np.int64)
    bad = np.flatnonzero((column < low) | (column >= high if high is not None else False))
    if bad.size:
        i = int(bad[0])
        limit = f"[{low}, {high})" if high is not None else f">= {low}"
        raise FormatError(f"{where}[{i}] is {column[i]}, outside {limit}")
    return column


def _table(doc: dict, key: str, columns: tuple[str, ...]) -> dict[str, list]:
    table = expect_dict(doc.get(key), key)
    out = {name: expect_list(table.get(name), f"{key}.{name}") for name in columns}
    lengths = {name: len(values) for name, values in out.items()}
    if len(set(lengths.values())) > 1:
        raise FormatError(f"{key} columns differ in length: {lengths}")
    return out


def _span(raw: object, where: str, n_threads: int) -> Span:
    raw = expect_dict(raw, where)
    text = {k: expect_str(raw.get(k), f"{where}.{k}") for k in ("trace_id", "span_id", "name", "kind", "status")}
    parent = raw.get("parent_id")
    start = expect_int(raw.get("start_ns"), f"{where}.start_ns", minimum=0)
    end = expect_int(raw.get("end_ns"), f"{where}.end_ns", minimum=start)
    return Span(
        parent_id=None if parent is None else expect_str(parent, f"{where}.parent_id"),
        start_ns=start,
        end_ns=end,
        thread=expect_int(raw.get("thread", -1), f"{where}.thread", minimum=-1, below=n_threads),
        attributes=expect_dict(raw.get("attributes", {}), f"{where}.attributes"),
        approximate=bool(raw.get("approximate", False)),
        **text,
    )


def load(data: bytes, **_: object) -> Profile:
    return from_doc(parse_json(data))


def from_doc(value: object) -> Profile:
    """The profile of a parsed document; FormatError naming the field that breaks a rule."""
    doc = expect_dict(value, "the file")
    if doc.get("format") != "profviz":
        raise FormatError(f"format is {short(doc.get('format'))}, expected \"profviz\"")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(f"format_version is {short(version)}; this profviz reads version {FORMAT_VERSION}: upgrade profviz")
    profile = Profile(read_meta(doc.get("meta", {}), "meta"))
    strings = [expect_str(s, f"strings[{i}]") for i, s in enumerate(expect_list(doc.get("strings"), "strings"))]
    n_strings = len(strings)

    frames = _table(doc, "frames", ("function", "file", "line"))
    function = _int_column(frames["function"], "frames.function", 0, n_strings).tolist()
    file = _int_column(frames["file"], "frames.file", 0, n_strings).tolist()
    line = _int_column(frames["line"], "frames.line", 0, 2**31).tolist()
    frame_map = [profile.intern_frame(strings[fn], strings[fl], ln) for fn, fl, ln in zip(function, file, line)]

    stacks = _table(doc, "stacks", ("prefix", "frame"))
    prefix = _int_column(stacks["prefix"], "stacks.prefix", -1, None).tolist()
    frame = _int_column(stacks["frame"], "stacks.frame", 0, len(frame_map)).tolist()
    stack_map: list[int] = []
    for i, (p, f) in enumerate(zip(prefix, frame)):
        if p >= i:
            raise FormatError(f"stacks.prefix[{i}] is {p}; a prefix must be -1 or an earlier stack")
        stack_map.append(profile.intern_stack(stack_map[p] if p != NO_STACK else NO_STACK, frame_map[f]))

    thread_map = []
    for i, raw in enumerate(expect_list(doc.get("threads"), "threads")):
        if not isinstance(raw, list) or len(raw) != 3:
            raise FormatError(f"threads[{i}] must be [pid, tid, name], got {short(raw)}")
        pid = expect_int(raw[0], f"threads[{i}][0] (pid)", minimum=0)
        tid = expect_int(raw[1], f"threads[{i}][1] (tid)")
        thread_map.append(profile.add_thread(pid, tid, expect_str(raw[2], f"threads[{i}][2] (name)")))

    samples = _table(doc, "samples", SAMPLE_FIELDS)
    times = np.cumsum(_int_column(samples["time_delta_ns"], "samples.time_delta_ns", -(2**62), 2**62))
    bad = np.flatnonzero(times < 0)
    if bad.size:
        raise FormatError(f"samples.time_delta_ns[{bad[0]}] makes the sample time negative")
    thread = _int_column(samples["thread"], "samples.thread", 0, len(thread_map))
    stack = _int_column(samples["stack"], "samples.stack", -1, len(stack_map))
    weight = _int_column(samples["weight_ns"], "samples.weight_ns", 1, 2**62)
    state = _int_column(samples["state"], "samples.state", 0, len(State))
    reason = _int_column(samples["reason"], "samples.reason", -1, n_strings)
    bad = np.flatnonzero((reason != NO_REASON) & (state != int(State.WAITING)))
    if bad.size:
        raise FormatError(f"samples.reason[{bad[0]}] gives a wait reason to a sample that is not WAITING")
    stack_lookup = np.asarray(stack_map + [NO_STACK], dtype=np.int64)
    stack = stack_lookup[stack]
    thread = np.asarray(thread_map, dtype=np.int64)[thread] if len(thread_map) else thread
    reason_lookup = np.full(n_strings + 1, NO_REASON, dtype=np.int64)  # the file's string index -> the profile's (-1 stays -1)
    for used in np.unique(reason[reason != NO_REASON]).tolist():
        reason_lookup[used] = profile.intern_string(strings[used])
    profile.set_sample_columns({"time_ns": times, "thread": thread, "stack": stack, "weight_ns": weight, "state": state,
                                "reason": reason_lookup[reason]})

    n_threads = len(thread_map)
    profile.spans = [_span(raw, f"spans[{i}]", n_threads) for i, raw in enumerate(expect_list(doc.get("spans", []), "spans"))]
    for span in profile.spans:
        if span.thread >= 0:
            span.thread = thread_map[span.thread]
    return profile
