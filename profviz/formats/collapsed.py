"""Brendan Gregg's folded ("collapsed") stacks: one ``frame;frame;frame count`` line per stack.

This is what ``py-spy record --format raw`` writes, with frames as ``function (file:line)``
(``function (file)`` with ``--nolineno``, a bare name when there is no file), root first. py-spy's
``--threads`` adds a root pseudo-frame ``thread (<tid>): <name>`` (``thread (0x7F...)`` when no
native id is known) and ``--subprocesses`` the chain ``process <pid>:"<command line>"`` from the
outermost parent to the sampled process before it; the innermost process and the thread give the
thread's ids, the outermost process the profile's pid and command line. Without them every line belongs to one thread "all threads".

A line with no frames (py-spy writes `` 1`` for a sample that caught no Python frame) becomes a
sample without a stack. A line's count becomes one sample weighing count x 1/rate (``rate_hz``, default 100 Hz, py-spy's
default). Folded stacks carry no times, states or order: samples are laid end to end per thread
from ``start_ns`` in state UNKNOWN.

Writing aggregates samples by thread and stack, always with the thread prefix (and the process
prefix when threads come from several processes; none for the "all threads" thread of an
unprefixed file, whose samples without frames are written as py-spy does, `` <count>``), counts = weight / (1/rate) rounded (at least 1),
rate from the profile's ``rate_hz``. The format cannot hold ``;`` or line breaks inside names:
they are written as ``:`` and spaces.
"""

from __future__ import annotations

import re
from collections import defaultdict

from ..model import NO_STACK, Profile, State
from .base import FormatError, add_note, decode_utf8, head_text, interval_ns, short

NAME = "collapsed"
DESCRIPTION = "folded stacks 'a;b;c 42' (py-spy --format raw, flamegraph.pl stackcollapse output)"
EXTENSION = ".txt"
DROPS = "sample times, CPU/waiting states, wait reasons and spans; weights are rounded to whole samples of 1/rate"
ALL_THREADS = "all threads"
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$", re.S)
_THREAD = re.compile(r"^thread \((?P<tid>\d+|0[xX][0-9A-Fa-f]+)\)(?:: (?P<name>.*))?$", re.S)
_PROCESS = re.compile(r'^process (?P<pid>\d+):"(?P<cmd>.*)"$', re.S)
_LINE = re.compile(r"^(?P<stack>.*\S)?\s+(?P<count>\S+)$")


def detect(data: bytes) -> bool:
    """True when the first non-empty lines all look like ``stack count`` (and it is not JSON)."""
    head = head_text(data, 16384)
    if not head or head[0] in "{[":
        return False
    lines = [line for line in head.splitlines()[:20] if line.strip()]
    if len(head) == 16384 and len(lines) > 1:
        lines = lines[:-1]
    if not lines:
        return False
    with_stack = 0
    for line in lines:
        found = _LINE.match(line.rstrip("\r"))
        if found is None or not _is_count(found.group("count")):
            return False
        with_stack += found.group("stack") is not None
    return with_stack > 0


def _is_count(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_frame(text: str) -> tuple[str, str, int]:
    """``name (file:line)`` / ``name (file)`` / ``name`` -> (function, file, line)."""
    found = _FRAME.match(text)
    if found is not None:
        return found.group("name"), found.group("file"), int(found.group("line") or 0)
    return text, "", 0


def format_frame(function: str, file: str, line: int) -> str:
    if not file:
        return _clean(function)
    return f"{_clean(function)} ({_clean(file)}:{line})" if line else f"{_clean(function)} ({_clean(file)})"


def _clean(text: str) -> str:
    return text.replace(";", ":").replace("\r", " ").replace("\n", " ")


def load(data: bytes, *, rate_hz: float | None = None, start_ns: int = 0, pid: int = 0, **_: object) -> Profile:
    """Read folded stacks; ``rate_hz`` prices a count (default 100 Hz)."""
    text = decode_utf8(data)
    interval = interval_ns(rate_hz)
    profile = Profile({"kind": "import", "pid": pid or None, "rate_hz": float(rate_hz) if rate_hz else None})
    next_time: dict[int, int] = defaultdict(lambda: start_ns)
    by_thread: dict[int, tuple[list, list, list]] = {}  # thread index -> (times, stacks, weights) of its lines
    stack_memo: dict[str, int] = {}
    frame_memo: dict[str, tuple[str, str, int]] = {}
    roots: set[tuple[int, str]] = set()
    lines = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        found = _LINE.match(raw)
        if found is None:
            raise FormatError(f"line {number}: expected 'frame;frame;... count', got {short(raw)}")
        try:
            count = float(found.group("count"))
        except ValueError:
            raise FormatError(f"line {number}: the count {short(found.group('count'))} is not a number") from None
        if not count >= 0 or count == float("inf"):
            raise FormatError(f"line {number}: the count is {found.group('count')}; counts must be >= 0")
        if count == 0:
            continue
        parts = found.group("stack").split(";") if found.group("stack") is not None else []
        thread_pid, tid, name = pid, 0, ALL_THREADS
        process = _PROCESS.match(parts[0]) if parts else None
        if process is not None:
            roots.add((int(process.group("pid")), process.group("cmd")))
        while parts and process is not None:
            thread_pid = int(process.group("pid"))
            parts = parts[1:]
            process = _PROCESS.match(parts[0]) if parts else None
        thread = _THREAD.match(parts[0]) if parts else None
        if thread is not None:
            tid, name = int(thread.group("tid"), 0), thread.group("name") or ""
            parts = parts[1:]
        thread_index = profile.add_thread(thread_pid, tid, name)
        key = ";".join(parts)
        stack = stack_memo.get(key)
        if stack is None:
            frames = []
            for part in parts:
                frame = frame_memo.get(part)
                if frame is None:
                    frame = frame_memo[part] = parse_frame(part)
                frames.append(frame)
            stack = stack_memo[key] = profile.intern_frames(frames) if parts else NO_STACK
        weight = int(round(count * interval))
        if weight >= 2**62:
            raise FormatError(f"line {number}: the count {found.group('count')} is too large")
        when = next_time[thread_index]
        columns = by_thread.setdefault(thread_index, ([], [], []))
        columns[0].append(when)
        columns[1].append(stack)
        columns[2].append(max(weight, 1))
        next_time[thread_index] = when + max(weight, 1)
        lines += 1
    for thread_index, (times, stacks, weights) in by_thread.items():
        profile.extend_samples(times, thread_index, stacks, weights, [int(State.UNKNOWN)] * len(times))
    if lines == 0:
        raise FormatError("no 'stack count' lines with a count above 0")
    if len(roots) == 1 and not pid:
        profile.meta["pid"], profile.meta["cmdline"] = next(iter(roots))
    add_note(profile, "imported from folded stacks: no times, thread states or sample order")
    return profile


def dump(profile: Profile, *, rate_hz: float | None = None, **_: object) -> bytes:
    """Folded stacks per thread, heaviest first within a thread; see the module docstring."""
    interval = interval_ns(rate_hz or profile.meta.get("rate_hz"))
    cols = profile.columns()
    totals: dict[tuple[int, int], int] = defaultdict(int)
    for thread, stack, weight in zip(cols["thread"].tolist(), cols["stack"].tolist(), cols["weight_ns"].tolist()):
        totals[(thread, stack)] += weight
    pids = {t.pid for t in profile.threads}
    prefixes = {}
    for index, info in enumerate(profile.threads):
        if (info.tid, info.name) == (0, ALL_THREADS) and len(pids) == 1:
            prefixes[index] = None
            continue
        prefix = f"thread ({info.tid})" + (f": {_clean(info.name)}" if info.name else "")
        if len(pids) > 1:
            command = str(profile.meta.get("cmdline") or "") if info.pid == profile.meta.get("pid") else ""
            prefix = f'process {info.pid}:"{_clean(command)}";{prefix}'
        prefixes[index] = prefix
    frame_text: dict[int, str] = {}
    lines = []
    for (thread, stack), weight in sorted(totals.items(), key=lambda kv: (kv[0][0], -kv[1])):
        parts = [prefixes[thread]] if prefixes[thread] is not None else []
        if stack != NO_STACK:
            for frame in profile.stack_frames(stack):
                text = frame_text.get(frame)
                if text is None:
                    f = profile.frame(frame)
                    text = frame_text[frame] = format_frame(f.function, f.file, f.line)
                parts.append(text)
        lines.append(f"{';'.join(parts)} {max(1, int(round(weight / interval)))}")
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
