"""The profile model: interned tables, in the manner of the Firefox Profiler's processed format.

A :class:`Profile` holds

* ``strings``: every function name, file name, thread name and wait reason once;
* ``frames``: (function, file, line), each an index into ``strings`` (line is an int);
* ``stacks``: (prefix, frame), where prefix is another stack index or -1 for a root frame.
  A stack's prefix always has a smaller index, so a stack table is already a call tree;
* ``threads``: (pid, tid, name);
* ``samples``: columns ``time_ns`` (absolute epoch ns), ``thread``, ``stack``, ``weight_ns``,
  ``state`` (:class:`~profviz.model.state.State`) and ``reason`` (string index or -1);
* ``spans``: a table beside the samples (see :class:`Span`), filled by the tracing work.

Every collector and importer fills a profile through :meth:`Profile.append_sample`, which checks
invariants and names the offending values in its errors. The model knows nothing of py-spy,
pyinstrument, SQLite or Flask.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .span import Span
from .state import State

FORMAT_VERSION = 1
NO_STACK = -1
NO_REASON = -1


class ProfileError(ValueError):
    """An invariant of the profile model was broken; the message names the values involved."""


@dataclass(frozen=True)
class Thread:
    pid: int
    tid: int
    name: str


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int


class Profile:
    """A profile under construction or loaded from the store. See the module docstring."""

    def __init__(self, meta: dict | None = None):
        self.meta: dict = dict(meta or {})
        self.strings: list[str] = []
        self._string_index: dict[str, int] = {}
        self.frame_function = array("i")
        self.frame_file = array("i")
        self.frame_line = array("i")
        self._frame_index: dict[tuple[int, int, int], int] | None = {}
        self.stack_prefix = array("i")
        self.stack_frame = array("i")
        self._stack_index: dict[tuple[int, int], int] | None = {}
        self.threads: list[Thread] = []
        self._thread_index: dict[tuple[int, int], int] = {}
        self._time = array("q")
        self._thread = array("i")
        self._stack = array("i")
        self._weight = array("q")
        self._state = array("b")
        self._reason = array("i")
        self._columns: dict[str, np.ndarray] | None = None
        self.spans: list[Span] = []

    # -- interning -------------------------------------------------------------------------

    def intern_string(self, text: str) -> int:
        index = self._string_index.get(text)
        if index is None:
            if not isinstance(text, str):
                raise ProfileError(f"strings must be str, got {type(text).__name__} {text!r:.80}")
            index = len(self.strings)
            self.strings.append(text)
            self._string_index[text] = index
        return index

    def intern_frame(self, function: str, file: str, line: int) -> int:
        if line is None:
            line = 0
        if not isinstance(line, int) or line < 0:
            raise ProfileError(f"frame line must be an int >= 0, got {line!r} for {function!r:.80} in {file!r:.80}")
        key = (self.intern_string(function), self.intern_string(file), line)
        if self._frame_index is None:
            self._frame_index = {k: i for i, k in enumerate(zip(self.frame_function, self.frame_file, self.frame_line))}
        index = self._frame_index.get(key)
        if index is None:
            index = len(self.frame_function)
            self.frame_function.append(key[0])
            self.frame_file.append(key[1])
            self.frame_line.append(line)
            self._frame_index[key] = index
        return index

    def intern_stack(self, prefix: int, frame: int) -> int:
        if not (-1 <= prefix < len(self.stack_prefix)):
            raise ProfileError(f"stack prefix {prefix} is not a stack index (have {len(self.stack_prefix)} stacks)")
        if not (0 <= frame < len(self.frame_function)):
            raise ProfileError(f"stack frame {frame} is not a frame index (have {len(self.frame_function)} frames)")
        key = (prefix, frame)
        if self._stack_index is None:
            self._stack_index = {k: i for i, k in enumerate(zip(self.stack_prefix, self.stack_frame))}
        index = self._stack_index.get(key)
        if index is None:
            index = len(self.stack_prefix)
            self.stack_prefix.append(prefix)
            self.stack_frame.append(frame)
            self._stack_index[key] = index
        return index

    def intern_frames(self, frames: Iterable[tuple[str, str, int]]) -> int:
        """Intern a call stack given root first as (function, file, line) triples; return its stack index.

        An empty stack gives :data:`NO_STACK`.
        """
        stack = NO_STACK
        for function, file, line in frames:
            stack = self.intern_stack(stack, self.intern_frame(function, file, line))
        return stack

    def add_thread(self, pid: int, tid: int, name: str = "") -> int:
        """Return the index of thread (pid, tid), adding it if new. A later non-empty name wins."""
        key = (int(pid), int(tid))
        index = self._thread_index.get(key)
        if index is None:
            index = len(self.threads)
            self.threads.append(Thread(key[0], key[1], name or ""))
            self._thread_index[key] = index
        elif name and self.threads[index].name != name:
            self.threads[index] = Thread(key[0], key[1], name)
        return index

    # -- the builder -----------------------------------------------------------------------

    def append_sample(
        self,
        time_ns: int,
        thread: int,
        stack: int,
        weight_ns: int,
        state: State | int = State.UNKNOWN,
        reason: str | None = None,
    ) -> None:
        """Add one sample. Every collector and importer goes through here.

        ``thread`` and ``stack`` are indices from :meth:`add_thread` and :meth:`intern_frames`
        (``stack`` may be :data:`NO_STACK` for a thread seen with no Python frames). ``weight_ns``
        is the wall time the sample stands for and must be positive. ``reason`` says what a
        WAITING sample waits on and is only allowed for WAITING samples.
        """
        if not (0 <= thread < len(self.threads)):
            raise ProfileError(f"sample thread {thread} is not a thread index (have {len(self.threads)} threads)")
        if not (NO_STACK <= stack < len(self.stack_prefix)):
            raise ProfileError(f"sample stack {stack} is not a stack index (have {len(self.stack_prefix)} stacks)")
        if weight_ns <= 0:
            raise ProfileError(f"sample weight must be > 0 ns, got {weight_ns} at time {time_ns}")
        if time_ns < 0:
            raise ProfileError(f"sample time must be >= 0 ns since the epoch, got {time_ns}")
        try:
            state = State(state)
        except ValueError:
            raise ProfileError(f"sample state {state!r} is not a State") from None
        if reason is not None and state != State.WAITING:
            raise ProfileError(f"wait reason {reason!r:.80} given for a {state.name} sample; only WAITING samples have reasons")
        self._time.append(time_ns)
        self._thread.append(thread)
        self._stack.append(stack)
        self._weight.append(weight_ns)
        self._state.append(int(state))
        self._reason.append(NO_REASON if reason is None else self.intern_string(reason))
        self._columns = None

    def set_tables(
        self, strings: list[str], functions: list[int], files: list[int], lines: list[int],
        prefixes: list[int], stack_frames: list[int],
    ) -> None:
        """Fill the string, frame and stack tables of a profile that has none yet, all at once (the
        bulk form of :meth:`intern_frames` for collectors that intern on their own). Checked like
        :func:`profile_from_tables`, with C-level passes over the lists: strings distinct, frames
        naming strings, lines >= 0, each stack's prefix -1 or an earlier stack, frames in range."""
        if self.strings or len(self.frame_function) or len(self.stack_prefix):
            raise ProfileError("set_tables fills a profile without strings, frames or stacks; this one has some")
        n_strings, n_frames, n_stacks = len(strings), len(functions), len(prefixes)
        if not (len(files) == len(lines) == n_frames) or len(stack_frames) != n_stacks:
            raise ProfileError(f"frame columns {n_frames}/{len(files)}/{len(lines)} or stack columns {n_stacks}/{len(stack_frames)} differ in length")
        string_index = dict(zip(strings, range(n_strings)))
        if len(string_index) != n_strings or not set(map(type, strings)) <= {str}:
            raise ProfileError("set_tables: strings must be distinct str values")
        if n_frames and (min(functions) < 0 or min(files) < 0 or max(functions) >= n_strings or max(files) >= n_strings):
            raise ProfileError(f"a frame names a string outside the {n_strings} strings")
        if n_frames and min(lines) < 0:
            raise ProfileError(f"a frame has line {min(lines)}; lines must be >= 0")
        if n_stacks and (min(prefixes) < NO_STACK or not all(map(int.__lt__, prefixes, range(n_stacks)))
                         or min(stack_frames) < 0 or max(stack_frames) >= n_frames):
            raise ProfileError(f"a stack's prefix is not -1 or an earlier stack, or its frame is not one of the {n_frames} frames")
        self.strings, self._string_index = list(strings), string_index
        self.frame_function, self.frame_file, self.frame_line = _int32_array(functions), _int32_array(files), _int32_array(lines)
        self.stack_prefix, self.stack_frame = _int32_array(prefixes), _int32_array(stack_frames)
        self._frame_index = self._stack_index = None  # rebuilt from the tables if anything interns more

    def extend_samples(self, times: list[int], thread: int, stacks: list[int], weights: list[int], states: list[int],
                       reasons: list[str | None] | None = None) -> None:
        """Add samples of one thread all at once (the bulk form of :meth:`append_sample`, checked
        like it with C-level passes over the lists). ``reasons``: each sample's wait reason or
        None (only WAITING samples may have one); None for no reasons at all."""
        count = len(times)
        if not (len(stacks) == len(weights) == len(states) == count) or (reasons is not None and len(reasons) != count):
            raise ProfileError(f"sample lists differ in length: {count}/{len(stacks)}/{len(weights)}/{len(states)}"
                               + (f"/{len(reasons)}" if reasons is not None else ""))
        if not count:
            return
        if not (0 <= thread < len(self.threads)):
            raise ProfileError(f"sample thread {thread} is not a thread index (have {len(self.threads)} threads)")
        if min(stacks) < NO_STACK or max(stacks) >= len(self.stack_prefix):
            raise ProfileError(f"a sample's stack is outside [{NO_STACK}, {len(self.stack_prefix)})")
        if min(weights) <= 0:
            raise ProfileError(f"sample weight must be > 0 ns, got {min(weights)}")
        if min(times) < 0:
            raise ProfileError(f"sample time must be >= 0 ns since the epoch, got {min(times)}")
        if max(times) >= 2**63 or max(weights) >= 2**63:
            raise ProfileError(f"a sample's time or weight is beyond 64 bits (up to {max(max(times), max(weights))} ns)")
        if not set(states) <= _STATE_VALUES:
            raise ProfileError(f"sample states {sorted(set(states) - _STATE_VALUES)} are not States")
        self._time.frombytes(_packer("q", count).pack(*times))
        self._weight.frombytes(_packer("q", count).pack(*weights))
        self._stack.frombytes(_packer("i", count).pack(*stacks))
        self._thread.frombytes(_packer("i", count).pack(*[thread] * count))
        if reasons is None or not any(reasons):
            self._reason.frombytes(_packer("i", count).pack(*[NO_REASON] * count))
        else:
            waiting = int(State.WAITING)
            stray = next((r for r, state in zip(reasons, states) if r is not None and state != waiting), None)
            if stray is not None:
                raise ProfileError(f"wait reason {stray!r:.80} given for a sample that is not WAITING; only WAITING samples have reasons")
            if not set(map(type, reasons)) <= {str, type(None)}:
                raise ProfileError("sample wait reasons must be str or None")
            index = {reason: self.intern_string(reason) for reason in dict.fromkeys(reasons) if reason is not None}
            index[None] = NO_REASON
            self._reason.frombytes(_packer("i", count).pack(*map(index.__getitem__, reasons)))
        self._state.frombytes(_packer("b", count).pack(*states))
        self._columns = None

    def set_sample_columns(self, columns: dict[str, np.ndarray]) -> None:
        """Replace all samples with whole columns (used by the store when loading). Checked like append_sample."""
        names = ("time_ns", "thread", "stack", "weight_ns", "state", "reason")
        lengths = {name: len(columns[name]) for name in names}
        if len(set(lengths.values())) != 1:
            raise ProfileError(f"sample columns differ in length: {lengths}")
        cols = {
            "time_ns": np.asarray(columns["time_ns"], dtype=np.int64),
            "thread": np.asarray(columns["thread"], dtype=np.int32),
            "stack": np.asarray(columns["stack"], dtype=np.int32),
            "weight_ns": np.asarray(columns["weight_ns"], dtype=np.int64),
            "state": np.asarray(columns["state"], dtype=np.int8),
            "reason": np.asarray(columns["reason"], dtype=np.int32),
        }
        n = lengths["time_ns"]
        if n:
            checks = [
                ("thread", cols["thread"], 0, len(self.threads)),
                ("stack", cols["stack"], NO_STACK, len(self.stack_prefix)),
                ("state", cols["state"], 0, len(State)),
                ("reason", cols["reason"], NO_REASON, len(self.strings)),
            ]
            for name, values, low, high in checks:
                bad = np.flatnonzero((values < low) | (values >= high))
                if bad.size:
                    raise ProfileError(f"sample {bad[0]} has {name} {values[bad[0]]}, outside [{low}, {high})")
            bad = np.flatnonzero(cols["weight_ns"] <= 0)
            if bad.size:
                raise ProfileError(f"sample {bad[0]} has weight {cols['weight_ns'][bad[0]]} ns; weights must be > 0")
            bad = np.flatnonzero(cols["time_ns"] < 0)
            if bad.size:
                raise ProfileError(f"sample {bad[0]} has time {cols['time_ns'][bad[0]]} ns; times must be >= 0 ns since the epoch")
        # From bytes, not element by element (1M samples: 0.45 s -> 5 ms); "i" is 4 bytes like int32.
        self._time, self._thread, self._stack = (array("q", cols["time_ns"].tobytes()), array("i", cols["thread"].tobytes()),
                                                 array("i", cols["stack"].tobytes()))
        self._weight, self._state, self._reason = (array("q", cols["weight_ns"].tobytes()), array("b", cols["state"].tobytes()),
                                                   array("i", cols["reason"].tobytes()))
        self._columns = cols

    # -- reading ---------------------------------------------------------------------------

    @property
    def sample_count(self) -> int:
        return len(self._time)

    def column_lists(self) -> dict[str, list[int]]:
        """The sample columns as new Python lists, keyed like :meth:`columns` (cheaper than numpy
        for a profile of a few samples)."""
        return {
            "time_ns": self._time.tolist(), "thread": self._thread.tolist(), "stack": self._stack.tolist(),
            "weight_ns": self._weight.tolist(), "state": self._state.tolist(), "reason": self._reason.tolist(),
        }

    def columns(self) -> dict[str, np.ndarray]:
        """The sample columns as numpy arrays (cached until the next append)."""
        if self._columns is None:
            self._columns = {
                "time_ns": np.frombuffer(self._time, dtype=np.int64).copy() if len(self._time) else np.zeros(0, np.int64),
                "thread": np.frombuffer(self._thread, dtype=np.int32).copy() if len(self._thread) else np.zeros(0, np.int32),
                "stack": np.frombuffer(self._stack, dtype=np.int32).copy() if len(self._stack) else np.zeros(0, np.int32),
                "weight_ns": np.frombuffer(self._weight, dtype=np.int64).copy() if len(self._weight) else np.zeros(0, np.int64),
                "state": np.frombuffer(self._state, dtype=np.int8).copy() if len(self._state) else np.zeros(0, np.int8),
                "reason": np.frombuffer(self._reason, dtype=np.int32).copy() if len(self._reason) else np.zeros(0, np.int32),
            }
        return self._columns

    def frame(self, index: int) -> Frame:
        return Frame(self.strings[self.frame_function[index]], self.strings[self.frame_file[index]], self.frame_line[index])

    def stack_frames(self, stack: int) -> list[int]:
        """Frame indices of a stack, root first."""
        frames = []
        while stack != NO_STACK:
            frames.append(self.stack_frame[stack])
            stack = self.stack_prefix[stack]
        frames.reverse()
        return frames

    def thread_label(self, index: int) -> str:
        thread = self.threads[index]
        return f"{thread.name} ({thread.tid})" if thread.name else str(thread.tid)

    def find_threads(self, selector: str | int | Sequence[str | int]) -> list[int]:
        """Thread indices whose tid equals, or whose name equals, the selector(s).

        Raises ProfileError naming the selector and the known threads when nothing matches.
        """
        selectors = [selector] if isinstance(selector, (str, int)) else list(selector)
        found: list[int] = []
        for sel in selectors:
            text = str(sel)
            matches = [i for i, t in enumerate(self.threads) if str(t.tid) == text or t.name == text]
            if not matches:
                known = ", ".join(self.thread_label(i) for i in range(len(self.threads))) or "none"
                raise ProfileError(f"no thread matches {text!r}; threads are: {known}")
            found.extend(m for m in matches if m not in found)
        return found

    @property
    def time_range_ns(self) -> tuple[int, int]:
        """(first sample time, last sample time + its weight), or (0, 0) for an empty profile."""
        cols = self.columns()
        if not len(cols["time_ns"]):
            return (0, 0)
        return int(cols["time_ns"].min()), int((cols["time_ns"] + cols["weight_ns"]).max())

    def check(self) -> None:
        """Check table invariants (prefix order, index ranges). Raises ProfileError."""
        for i, prefix in enumerate(self.stack_prefix):
            if not (-1 <= prefix < i):
                raise ProfileError(f"stack {i} has prefix {prefix}; a prefix must be -1 or an earlier stack")
        for i, (fn, fl) in enumerate(zip(self.frame_function, self.frame_file)):
            if not (0 <= fn < len(self.strings)) or not (0 <= fl < len(self.strings)):
                raise ProfileError(f"frame {i} names strings {fn}/{fl}, outside the {len(self.strings)} strings")
        self.set_sample_columns(self.columns())


class TableLists:
    """A new profile's string, frame and stack tables built in plain lists, for collectors that
    intern many frames at once (a method call and two dict lookups a frame, none of the arrays'
    per-value appends); :meth:`fill` hands them to :meth:`Profile.set_tables`, which checks them.
    Ids come out as :meth:`Profile.intern_frames` would give them in the same order.
    It may start from tables already built (e.g. a remembered stack's), given root first."""

    __slots__ = ("strings", "functions", "files", "lines", "prefixes", "stack_frames",
                 "_string_index", "_frame_index", "_stack_index")

    def __init__(self, strings: Sequence[str] = (), functions: Sequence[int] = (), files: Sequence[int] = (),
                 lines: Sequence[int] = (), prefixes: Sequence[int] = (), stack_frames: Sequence[int] = ()):
        self.strings, self.functions, self.files, self.lines = list(strings), list(functions), list(files), list(lines)
        self.prefixes, self.stack_frames = list(prefixes), list(stack_frames)
        self._string_index = dict(zip(self.strings, range(len(self.strings))))
        self._frame_index = dict(zip(zip(self.functions, self.files, self.lines), range(len(self.functions))))
        self._stack_index = dict(zip(zip(self.prefixes, self.stack_frames), range(len(self.prefixes))))

    def frame(self, function: str, file: str, line: int) -> int:
        """The id of the frame (function, file, line), added if new."""
        string_index, strings = self._string_index, self.strings
        function_id = string_index.get(function)
        if function_id is None:
            function_id = string_index[function] = len(strings)
            strings.append(function)
        file_id = string_index.get(file)
        if file_id is None:
            file_id = string_index[file] = len(strings)
            strings.append(file)
        key = (function_id, file_id, line)
        frame = self._frame_index.get(key)
        if frame is None:
            frame = self._frame_index[key] = len(self.functions)
            self.functions.append(function_id)
            self.files.append(file_id)
            self.lines.append(line)
        return frame

    def stack(self, prefix: int, frame: int) -> int:
        """The id of the stack ``frame`` called from stack ``prefix`` (NO_STACK at the root), added if new."""
        key = (prefix, frame)
        stack = self._stack_index.get(key)
        if stack is None:
            stack = self._stack_index[key] = len(self.prefixes)
            self.prefixes.append(prefix)
            self.stack_frames.append(frame)
        return stack

    def fill(self, profile: Profile) -> None:
        """Hand the tables to ``profile`` (one without tables yet): :meth:`Profile.set_tables`."""
        profile.set_tables(self.strings, self.functions, self.files, self.lines, self.prefixes, self.stack_frames)


_STATE_VALUES = frozenset(int(state) for state in State)
_PACKERS: dict[tuple[str, int], struct.Struct] = {}


def _packer(code: str, count: int) -> struct.Struct:
    """A struct packing ``count`` values as the profile's arrays hold them (``i``, ``q``, ``b``:
    native order, standard sizes): one pack fills an array, where each ``append`` parses its
    argument (~1k instructions a value on CPython 3.11)."""
    packer = _PACKERS.get((code, count))
    if packer is None:
        packer = struct.Struct(f"{count}{code}")
        if len(_PACKERS) < 3072:
            _PACKERS[code, count] = packer
    return packer


def _int32_array(values: list[int]) -> array:
    out = array("i")
    if values:
        out.frombytes(_packer("i", len(values)).pack(*values))
    return out


def profile_from_tables(
    meta: dict,
    strings: list[str],
    frames: tuple[Sequence[int], Sequence[int], Sequence[int]],
    stacks: tuple[Sequence[int], Sequence[int]],
    threads: Sequence[tuple[int, int, str]],
    samples: dict[str, np.ndarray],
    spans: Sequence[Span] = (),
) -> Profile:
    """Rebuild a profile from its tables (as stored), checking every invariant."""
    profile = Profile(meta)
    for text in strings:
        if not isinstance(text, str) or text in profile._string_index:
            raise ProfileError(f"string {text!r:.80} is not a str or is stored twice")
        profile.intern_string(text)
    function, file, line = (np.asarray(col, dtype=np.int64) for col in frames)
    prefix, frame = (np.asarray(col, dtype=np.int64) for col in stacks)
    if not (len(function) == len(file) == len(line)) or len(prefix) != len(frame):
        raise ProfileError(f"frame columns {len(function)}/{len(file)}/{len(line)} or stack columns {len(prefix)}/{len(frame)} differ in length")
    n_strings, n_frames = len(profile.strings), len(function)
    for name, values in (("function", function), ("file", file)):
        bad = np.flatnonzero((values < 0) | (values >= n_strings))
        if bad.size:
            raise ProfileError(f"frame {bad[0]} has {name} string {values[bad[0]]}, outside the {n_strings} strings")
    bad = np.flatnonzero(line < 0)
    if bad.size:
        raise ProfileError(f"frame {bad[0]} has line {line[bad[0]]}; lines must be >= 0")
    bad = np.flatnonzero((prefix < -1) | (prefix >= np.arange(len(prefix))) | (frame < 0) | (frame >= n_frames))
    if bad.size:
        raise ProfileError(f"stack {bad[0]} has prefix {prefix[bad[0]]} and frame {frame[bad[0]]}; a prefix must be -1 or an earlier stack, a frame one of the {n_frames} frames")
    profile.frame_function, profile.frame_file, profile.frame_line = array("i", function), array("i", file), array("i", line)
    profile.stack_prefix, profile.stack_frame = array("i", prefix), array("i", frame)
    profile._frame_index = profile._stack_index = None
    for pid, tid, name in threads:
        profile.add_thread(pid, tid, name)
    profile.set_sample_columns(samples)
    profile.spans = list(spans)
    return profile
