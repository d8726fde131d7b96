"""Thread states over time from /proc readings: classify each reading against the previous one of
its thread, and keep every thread's classified readings (:class:`StateLog`)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np

from ..model import State
from ..model.state import blocked

BLOCKED_LETTERS = frozenset("SDIWPK")
STOPPED_LETTERS = frozenset("tT")


@dataclass(frozen=True, slots=True)
class ThreadReading:
    """One thread at one instant.

    ``wait_reason`` is set for blocked threads (S, D, I...) when anything is known
    about what they wait on, and for stopped threads (t, T) only when they were
    stopped inside a blocking call; it is ``None`` otherwise.
    """

    time_ns: int
    tid: int
    letter: str
    cpu_ns: int
    runqueue_ns: int
    wait_reason: str | None


def classify(prev: ThreadReading | None, cur: ThreadReading) -> tuple[State, str | None]:
    """State of the thread around ``cur`` and its wait reason (``None`` unless WAITING).

    Deltas are ``cur - prev`` of ``cpu_ns`` and ``runqueue_ns``; they are unknown when
    ``prev`` is ``None``, is for another tid, is not earlier than ``cur``, or has a
    larger counter (tid reuse).  The rule, by ``cur.letter``:

    - ``R``: RUNNABLE if the run-queue delta is strictly larger than the cpu delta,
      otherwise ON_CPU (also when the deltas are unknown or both zero).
    - ``S``, ``D``, ``I``, ``W``, ``P``, ``K`` (blocked): WAITING with ``cur.wait_reason``
      (GIL, with no reason, when that reason is ``gil``).
    - ``t``, ``T`` (stopped, e.g. by a ptrace-ing sampler): if the deltas are known and
      cpu + run-queue delta >= half the wall time between the readings, the thread was
      busy: RUNNABLE if run-queue > cpu, else ON_CPU.  Otherwise, if ``cur.wait_reason``
      is set (it was stopped inside a blocking call), WAITING with that reason.
      Otherwise UNKNOWN.
    - anything else (``Z``, ``X``...): UNKNOWN.
    """
    letter = cur.letter
    if letter in BLOCKED_LETTERS:
        return blocked(cur.wait_reason)
    deltas = _deltas(prev, cur)
    if letter == "R":
        if deltas is not None and deltas[1] > deltas[0]:
            return State.RUNNABLE, None
        return State.ON_CPU, None
    if letter in STOPPED_LETTERS:
        if deltas is not None:
            cpu_delta, runqueue_delta, wall_delta = deltas
            if 2 * (cpu_delta + runqueue_delta) >= wall_delta:
                return (State.RUNNABLE if runqueue_delta > cpu_delta else State.ON_CPU), None
        if cur.wait_reason is not None:
            return blocked(cur.wait_reason)
    return State.UNKNOWN, None


def _deltas(prev: ThreadReading | None, cur: ThreadReading) -> tuple[int, int, int] | None:
    """(cpu delta, run-queue delta, wall delta) in ns, or None when prev is not usable."""
    if prev is None or prev.tid != cur.tid or prev.time_ns >= cur.time_ns:
        return None
    cpu_delta = cur.cpu_ns - prev.cpu_ns
    runqueue_delta = cur.runqueue_ns - prev.runqueue_ns
    if cpu_delta < 0 or runqueue_delta < 0:
        return None
    return cpu_delta, runqueue_delta, cur.time_ns - prev.time_ns


class ThreadStates:
    """Classified readings of one thread, in time order (append-only while recording)."""

    __slots__ = ("time_ns", "state", "reason", "busy_ns", "cpu_ns", "previous")

    def __init__(self) -> None:
        self.time_ns = array("q")
        self.state = array("b")
        self.reason = array("i")
        self.busy_ns = array("q")
        self.cpu_ns = array("q")
        self.previous: ThreadReading | None = None

    def add(self, reading: ThreadReading, reasons: "ReasonTable") -> None:
        state, reason = classify(self.previous, reading)
        self.previous = reading
        self.time_ns.append(reading.time_ns)
        self.state.append(int(state))
        self.reason.append(reasons.index(reason))
        self.busy_ns.append(reading.cpu_ns + reading.runqueue_ns)
        self.cpu_ns.append(reading.cpu_ns)

    def __len__(self) -> int:
        return len(self.time_ns)


class ReasonTable:
    """Wait reasons interned to small ints (-1 for none)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def index(self, reason: str | None) -> int:
        if reason is None:
            return -1
        found = self._index.get(reason)
        if found is None:
            found = self._index[reason] = len(self.texts)
            self.texts.append(reason)
        return found

    def text(self, index: int) -> str | None:
        return None if index < 0 else self.texts[index]


@dataclass
class StateLog:
    """Every thread's classified readings, keyed by (pid, tid), with what the join needs to know of
    the rounds of readings: each round's start (``tick_ns``), when each thread was last seen."""

    states: dict[tuple[int, int], ThreadStates] = field(default_factory=dict)
    names: dict[tuple[int, int], str] = field(default_factory=dict)
    reasons: ReasonTable = field(default_factory=ReasonTable)
    last_seen_ns: dict[tuple[int, int], int] = field(default_factory=dict)
    tick_ns: array = field(default_factory=lambda: array("q"))
    first_ns: int | None = None
    last_ns: int | None = None

    def add(self, pid: int, readings: list[ThreadReading], names: dict[int, str]) -> None:
        """One round's readings of process ``pid`` (``names``: its threads' names by tid)."""
        for reading in readings:
            key = (pid, reading.tid)
            states = self.states.get(key)
            if states is None:
                states = self.states[key] = ThreadStates()
                self.names[key] = names.get(reading.tid, "")
            states.add(reading, self.reasons)
            self.last_seen_ns[key] = reading.time_ns
            if self.first_ns is None:
                self.first_ns = reading.time_ns
            self.last_ns = reading.time_ns

    def gone_by(self, last_seen_ns: int, period_ns: float) -> int:
        """When a thread last read at ``last_seen_ns`` was found gone: the start of the next reading
        round (one interval later if there was none)."""
        ticks = np.frombuffer(self.tick_ns, dtype=np.int64)
        after = int(np.searchsorted(ticks, last_seen_ns, side="right"))
        return int(ticks[after]) if after < len(ticks) else last_seen_ns + int(period_ns)
