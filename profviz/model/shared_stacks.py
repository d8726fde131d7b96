"""A profile whose samples point into a sampling process's shared stack table, not into tables of its own."""

from __future__ import annotations

from .profile import ProfileError


class SharedStackProfile:
    """A profile to store: ``meta`` (as a Profile's), the ``source`` whose stack nodes its samples
    use (one per sampling process), its one thread ``(pid, tid, name)``, and its samples as four
    lists (epoch ns, node id, weight ns, state) and, when any sample has one, their wait reasons
    (str or None each). Stores save it like a Profile and load it back as one.

    The in-process sampler interns every stack it sees in one table per process; a request profile
    it keeps is a handful of samples on those nodes, so no tables are built until someone reads it.
    """

    __slots__ = ("meta", "source", "thread", "times", "stacks", "weights", "states", "reasons")

    def __init__(self, meta: dict, source: str, thread: tuple[int, int, str], times: list[int], stacks: list[int],
                 weights: list[int], states: list[int], reasons: list[str | None] | None = None):
        if not (len(times) == len(stacks) == len(weights) == len(states)) or (reasons is not None and len(reasons) != len(times)):
            raise ProfileError(f"sample lists differ in length: {len(times)}/{len(stacks)}/{len(weights)}/{len(states)}")
        self.meta, self.source, self.thread = meta, source, thread
        self.times, self.stacks, self.weights, self.states = times, stacks, weights, states
        self.reasons = reasons if reasons is not None and any(reasons) else None

    @property
    def sample_count(self) -> int:
        return len(self.times)
