"""Thread states attached to every sample."""

from enum import IntEnum


class State(IntEnum):
    """What a thread was doing when it was sampled.

    ``ON_CPU``: running on a CPU. ``WAITING``: blocked (socket, disk, lock,
    sleep, poll...); the sample's wait reason says on what where known.
    ``RUNNABLE``: ready to run but starved of CPU (waiting in the run queue).
    ``GIL``: ready to run Python but waiting for the interpreter's GIL, held by another thread of
    the process (CPU contention, not I/O or a lock; like every state but WAITING, no wait reason).
    ``UNKNOWN``: no state reading could be matched to the sample.
    """

    UNKNOWN = 0
    ON_CPU = 1
    WAITING = 2
    RUNNABLE = 3
    GIL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: "str | int | State") -> "State":
        """Accept a State, its integer value, or its name in any case ("cpu" means ON_CPU)."""
        if isinstance(value, State):
            return value
        if isinstance(value, int):
            return cls(value)
        key = str(value).strip().upper()
        if key == "CPU":
            key = "ON_CPU"
        if key == "WAIT":
            key = "WAITING"
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"unknown state {value!r}; expected one of cpu, waiting, runnable, gil, unknown") from None


STATE_NAMES = {State.ON_CPU: "cpu", State.WAITING: "waiting", State.RUNNABLE: "runnable", State.GIL: "gil",
               State.UNKNOWN: "unknown"}
"""A state's name in JSON, the UI and the CLI."""

GIL_REASON = "gil"
"""The wait reason collectors give a futex wait on the interpreter's GIL."""


def blocked(reason: str | None) -> tuple[State, str | None]:
    """(state, wait reason) of a blocked thread waiting on ``reason``: (GIL, None) for the GIL's
    futex, else (WAITING, reason)."""
    return (State.GIL, None) if reason == GIL_REASON else (State.WAITING, reason)
