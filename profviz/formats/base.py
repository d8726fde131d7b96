"""Shared pieces of the format modules: the FormatError, JSON parsing with positions, field checks,
the portable subset of profile metadata, and the ``"$profviz"`` per-sample extension.

The ``"$profviz"`` extension is a top-level JSON key that speedscope and pyinstrument ignore. profviz
writes it into the speedscope and pyinstrument files it exports so that what those formats cannot
express (absolute sample times, CPU/WAITING/RUNNABLE states, wait reasons, pids and metadata)
survives an export -> import round trip. One entry per thread::

    "$profviz": {
      "format_version": 1,
      "meta": {"kind": ..., "pid": ..., "cmdline": ..., "rate_hz": ..., "labels": {...}, "notes": [...], ...},
      "origin_ns": <epoch ns that relative times count from>,
      "threads": [
        {"pid": 12, "tid": 34, "name": "MainThread",
         "time_delta_ns": [<first sample time - origin_ns>, <difference to the previous sample>, ...],
         "states": [[<State value>, <run length>], ...],
         "reasons": [[<wait reason or null>, <run length>], ...]}
      ]
    }

The per-thread lists cover that thread's samples in the order the host format lists them.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np
import orjson

from ..errors import ProfvizError
from ..model import NO_REASON, Profile, State

EXTENSION_KEY = "$profviz"
EXTENSION_VERSION = 1
PORTABLE_META = ("kind", "pid", "cmdline", "start_ns", "duration_ns", "rate_hz", "error_count", "labels", "notes")
DEFAULT_RATE_HZ = 100.0


class FormatError(ProfvizError):
    """A file could not be read or written in a profile format; the message names the place and the fix."""


def short(value: Any, limit: int = 60) -> str:
    """A repr of ``value`` cut to ``limit`` characters, for error messages about hostile input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def head_text(data: bytes, size: int = 65536) -> str:
    """The first ``size`` bytes decoded leniently, for cheap format detection."""
    return data[:size].decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")


def decode_utf8(data: bytes) -> str:
    """UTF-8 text; a character cut off at the very end (a truncated file) is dropped, so the
    parser reports the truncation instead of an encoding error."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.end == len(data):
            return data[: exc.start].decode("utf-8-sig")
        raise FormatError(f"the file is not UTF-8 text (bad byte at offset {exc.start})") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a valid JSON number")


def parse_json(data: bytes) -> Any:
    """Parse UTF-8 JSON, turning every failure into a FormatError naming line and column.

    orjson parses (4-5x the standard library's speed); what it refuses (lone surrogates, a
    truncated UTF-8 tail, anything malformed) goes to the standard library, which reads those or
    says where the file is broken."""
    try:
        return orjson.loads(data[3:] if data[:3] == b"\xef\xbb\xbf" else data)
    except (orjson.JSONDecodeError, TypeError):
        pass
    text = decode_utf8(data)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        at_end = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        truncated = " (the file looks truncated)" if at_end else ""
        raise FormatError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{truncated}") from None
    except ValueError as exc:
        raise FormatError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise FormatError("invalid JSON: nested too deeply") from None


def dumps_json(value: Any) -> bytes:
    """Compact UTF-8 JSON (orjson; the standard library for what orjson refuses: lone surrogates,
    ints beyond 64 bits). A non-finite float is written as null, as orjson does."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except (orjson.JSONEncodeError, TypeError):  # lone surrogates written as \udcxx escapes, which every reader takes back
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


STATE_LABELS = {State.ON_CPU: "on-cpu", State.WAITING: "waiting", State.RUNNABLE: "runnable", State.GIL: "gil",
                State.UNKNOWN: "unknown"}  # a sample's state as the pprof and trace formats name it
STATE_OF_LABEL = {label: int(state) for state, label in STATE_LABELS.items()}


class StringTable:
    """Strings interned in first-use order: ``table(text)`` is its index in ``table.strings``."""

    def __init__(self, first: tuple[str, ...] = ()) -> None:
        self.strings: list[str] = list(first)
        self.index: dict[str, int] = {text: n for n, text in enumerate(self.strings)}

    def __call__(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.strings)
            self.strings.append(text)
        return found


# -- field checks ---------------------------------------------------------------------------


def expect_dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise FormatError(f"{where} must be an object, got {type(value).__name__} {short(value)}")
    return value


def expect_list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise FormatError(f"{where} must be a list, got {type(value).__name__} {short(value)}")
    return value


def expect_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{where} must be a string, got {type(value).__name__} {short(value)}")
    return value


def expect_number(value: Any, where: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FormatError(f"{where} must be a number, got {type(value).__name__} {short(value)}")
    if minimum is not None and value < minimum:
        raise FormatError(f"{where} is {value}; it must be >= {minimum:g}")
    return value


def expect_int(value: Any, where: str, *, minimum: int | None = None, below: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"{where} must be an integer, got {type(value).__name__} {short(value)}")
    if minimum is not None and value < minimum:
        raise FormatError(f"{where} is {value}; it must be >= {minimum}")
    if below is not None and value >= below:
        raise FormatError(f"{where} is {value}; it must be below {below}")
    return value


def to_ns(value: float, factor: float, where: str) -> int:
    """A weight or time in the file's unit as whole ns (> 0 stays > 0)."""
    ns = int(round(value * factor))
    if ns == 0 and value > 0:
        ns = 1
    if ns >= 2**62:
        raise FormatError(f"{where} is {value}, too large for a time in ns")
    return ns


# -- metadata ----------------------------------------------------------------------------------


def portable_meta(profile: Profile) -> dict:
    """The JSON-safe part of ``profile.meta`` that describes the recording (not the store row)."""
    out = {}
    for key in PORTABLE_META:
        value = profile.meta.get(key)
        if value is not None:
            out[key] = value
    return out


def read_meta(value: Any, where: str) -> dict:
    """Check imported metadata field by field; unknown keys are dropped."""
    meta = expect_dict(value, where)
    out: dict[str, Any] = {}
    for key in ("kind", "cmdline"):
        if meta.get(key) is not None:
            out[key] = expect_str(meta[key], f"{where}.{key}")
    for key in ("pid", "start_ns", "duration_ns", "error_count"):
        if meta.get(key) is not None:
            out[key] = expect_int(meta[key], f"{where}.{key}", minimum=0)
    if meta.get("rate_hz") is not None:
        out["rate_hz"] = expect_number(meta["rate_hz"], f"{where}.rate_hz", minimum=0)
    if meta.get("labels") is not None:
        out["labels"] = expect_dict(meta["labels"], f"{where}.labels")
    if meta.get("notes") is not None:
        out["notes"] = [expect_str(n, f"{where}.notes[{i}]") for i, n in enumerate(expect_list(meta["notes"], f"{where}.notes"))]
    return out


def add_note(profile: Profile, note: str) -> None:
    notes = list(profile.meta.get("notes") or [])
    if note not in notes:
        notes.append(note)
    profile.meta["notes"] = notes


# -- run lengths and the per-thread extension -------------------------------------------------


def run_lengths(values: Sequence[Any]) -> list[list[Any]]:
    """[[value, count], ...] for consecutive equal values."""
    runs: list[list[Any]] = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return runs


def expand_runs(value: Any, count: int, where: str) -> list[Any]:
    """Inverse of :func:`run_lengths`, checking that the runs cover exactly ``count`` samples."""
    out: list[Any] = []
    for i, run in enumerate(expect_list(value, where)):
        if not isinstance(run, list) or len(run) != 2:
            raise FormatError(f"{where}[{i}] must be a [value, count] pair, got {short(run)}")
        length = expect_int(run[1], f"{where}[{i}][1]", minimum=1)
        if len(out) + length > count:
            raise FormatError(f"{where} covers more than the {count} samples of its thread")
        out.extend([run[0]] * length)
    if len(out) != count:
        raise FormatError(f"{where} covers {len(out)} samples but its thread has {count}")
    return out


def thread_extension(profile: Profile, thread: int, order: np.ndarray, origin_ns: int) -> dict:
    """The ``"$profviz"`` entry for one thread whose samples are ``order`` (indices, as written)."""
    cols = profile.columns()
    info = profile.threads[thread]
    times = cols["time_ns"][order]
    deltas = np.diff(times, prepend=np.int64(origin_ns)).tolist() if len(order) else []
    reasons = [None if r == NO_REASON else profile.strings[r] for r in cols["reason"][order].tolist()]
    return {
        "pid": info.pid,
        "tid": info.tid,
        "name": info.name,
        "time_delta_ns": deltas,
        "states": run_lengths(cols["state"][order].tolist()),
        "reasons": run_lengths(reasons),
    }


def read_thread_columns(entry: Any, count: int, origin_ns: int, where: str) -> dict:
    """Check one thread entry of the extension against the host's ``count`` samples: its pid, tid,
    name, ``times`` (absolute ns, int64), ``states`` (int8), and the reasons as ``reason_values``
    (str or None each) with each sample's ``reason_index`` into them. Whole columns at once; an
    entry that breaks a rule is read again value by value, which names the first bad one."""
    fast = _thread_extension_columns(entry, count, origin_ns)
    if fast is not None:
        return fast
    slow = _read_thread_extension_slowly(entry, count, origin_ns, where)
    values = list(dict.fromkeys(slow["reasons"]))
    position = {value: n for n, value in enumerate(values)}
    return {**slow, "times": np.asarray(slow["times"], dtype=np.int64), "states": np.asarray(slow["states"], dtype=np.int8),
            "reason_values": values, "reason_index": np.asarray([position[r] for r in slow["reasons"]], dtype=np.int64)}


def _thread_extension_columns(entry: Any, count: int, origin_ns: int) -> dict | None:
    """:func:`read_thread_columns` of a well-formed entry; None when anything is off."""
    if not isinstance(entry, dict) or type(entry.get("pid")) is not int or type(entry.get("tid")) is not int:
        return None
    if entry["pid"] < 0 or not isinstance(entry.get("name", ""), str) or not isinstance(entry.get("time_delta_ns"), list):
        return None
    deltas = entry["time_delta_ns"]
    if len(deltas) != count:
        return None
    try:
        column = np.asarray(deltas) if deltas else np.zeros(0, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        return None
    if column.dtype.kind != "i" or (count and (np.abs(column) > 2**62).any()):
        return None
    times = np.cumsum(column, dtype=np.int64) + origin_ns
    if count and times.min() < 0:
        return None
    state_runs, reason_runs = entry.get("states"), entry.get("reasons")
    if not isinstance(state_runs, list) or not isinstance(reason_runs, list) or not state_runs and count or not reason_runs and count:
        return None
    try:
        state_table = np.asarray(state_runs) if state_runs else np.zeros((0, 2), dtype=np.int64)
        reason_lengths = np.asarray([run[1] for run in reason_runs] if reason_runs else [], dtype=object)
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    if state_table.dtype.kind != "i" or state_table.ndim != 2 or state_table.shape[1] != 2:
        return None
    if len(reason_lengths) and (any(type(run) is not list or len(run) != 2 for run in reason_runs)
                                or not all(type(length) is int and 1 <= length <= count for length in reason_lengths)):
        return None
    reason_lengths = reason_lengths.astype(np.int64)
    state_lengths = state_table[:, 1]
    # each run at most ``count`` long before summing: int64 sums of hostile lengths would wrap
    if (state_lengths < 1).any() or (state_lengths > count).any() or int(state_lengths.sum()) != count or int(reason_lengths.sum()) != count:
        return None
    if (state_table[:, 0] < 0).any() or (state_table[:, 0] >= len(State)).any():
        return None
    reason_values = [value for value, _ in reason_runs]
    if not all(value is None or type(value) is str for value in reason_values):
        return None
    states = np.repeat(state_table[:, 0].astype(np.int8), state_table[:, 1])
    reason_index = np.repeat(np.arange(len(reason_runs)), reason_lengths)
    has_reason = np.asarray([value is not None for value in reason_values], dtype=bool)
    if count and (has_reason[reason_index] & (states != int(State.WAITING))).any():
        return None
    return {"pid": entry["pid"], "tid": entry["tid"], "name": entry.get("name", ""), "times": times, "states": states,
            "reason_values": reason_values, "reason_index": reason_index}


def _read_thread_extension_slowly(entry: Any, count: int, origin_ns: int, where: str) -> dict:
    entry = expect_dict(entry, where)
    pid = expect_int(entry.get("pid"), f"{where}.pid", minimum=0)
    tid = expect_int(entry.get("tid"), f"{where}.tid")
    name = expect_str(entry.get("name", ""), f"{where}.name")
    deltas = expect_list(entry.get("time_delta_ns"), f"{where}.time_delta_ns")
    if len(deltas) != count:
        raise FormatError(f"{where}.time_delta_ns has {len(deltas)} entries but its thread has {count} samples")
    times = []
    now = origin_ns
    for i, delta in enumerate(deltas):
        now += expect_int(delta, f"{where}.time_delta_ns[{i}]")
        if now < 0:
            raise FormatError(f"{where}.time_delta_ns[{i}] makes the sample time negative")
        times.append(now)
    states = []
    for i, value in enumerate(expand_runs(entry.get("states"), count, f"{where}.states")):
        try:
            states.append(int(State(expect_int(value, f"{where}.states value {i}"))))
        except ValueError:
            raise FormatError(f"{where}.states has {value}, not a state (0-{len(State) - 1})") from None
    reasons = expand_runs(entry.get("reasons"), count, f"{where}.reasons")
    for i, (reason, state) in enumerate(zip(reasons, states)):
        if reason is not None:
            expect_str(reason, f"{where}.reasons value {i}")
            if state != State.WAITING:
                raise FormatError(f"{where}.reasons gives a wait reason to sample {i}, which is {State(state).name}, not WAITING")
    return {"pid": pid, "tid": tid, "name": name, "times": times, "states": states, "reasons": reasons}


def samples_by_thread(profile: Profile) -> list[tuple[int, np.ndarray]]:
    """(thread, sample indices in time order) for every thread that has samples, in thread order."""
    cols = profile.columns()
    order = np.lexsort((cols["time_ns"], cols["thread"]))
    threads = cols["thread"][order]
    out = []
    bounds = np.flatnonzero(np.diff(threads)) + 1
    for chunk in np.split(order, bounds) if len(order) else []:
        out.append((int(cols["thread"][chunk[0]]), chunk))
    return out


def frame_triples(profile: Profile, stack: int) -> list[tuple[str, str, int]]:
    """(function, file, line) of a stack, root first."""
    out = []
    for frame in profile.stack_frames(stack):
        f = profile.frame(frame)
        out.append((f.function, f.file, f.line))
    return out


def interval_ns(rate_hz: float | None) -> float:
    """The ns one sample stands for at ``rate_hz`` (profviz's default rate when unknown)."""
    rate = float(rate_hz) if rate_hz else DEFAULT_RATE_HZ
    if not (rate > 0 and math.isfinite(rate)):
        raise FormatError(f"sampling rate {rate_hz!r} must be a positive number of Hz")
    return 1e9 / rate
