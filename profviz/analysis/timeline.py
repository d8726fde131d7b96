"""The time-ordered flame chart ("stack chart") and per-thread state lanes, at pixel resolution.

A window of a profile is cut into ``width`` pixels per thread; each pixel shows the first
sample of that thread whose time falls in it, and runs of consecutive pixels with the same
merged node at a depth become one interval. So the response grows with the pixel width, never
with the sample count. Node ids are the call tree's merged node ids
(:func:`~profviz.analysis.calltree.node_table`), the same as the flame graph's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model import NO_REASON, Profile, State
from .calltree import NodeTable, node_table
from .pruning import sample_nodes

MAX_WIDTH = 10_000


@dataclass
class DepthRuns:
    """Frame intervals at one depth: ``start_ns[i]``..``end_ns[i]`` shows merged node ``node[i]``."""

    depth: int
    start_ns: list[int]
    end_ns: list[int]
    node: list[int]


@dataclass
class StateRuns:
    """The state lane: ``state[i]`` (and its wait ``reason[i]``, None if not waiting) over ``start_ns[i]``..``end_ns[i]``."""

    start_ns: list[int] = field(default_factory=list)
    end_ns: list[int] = field(default_factory=list)
    state: list[State] = field(default_factory=list)
    reason: list[str | None] = field(default_factory=list)


@dataclass
class ThreadLanes:
    index: int
    tid: int
    name: str
    samples: int
    max_depth: int = 0
    depths: list[DepthRuns] = field(default_factory=list)
    states: StateRuns = field(default_factory=StateRuns)


@dataclass
class Timeline:
    """A window of a profile at pixel resolution; times relative to the origin asked for.
    ``node_ids`` are the merged nodes the lanes show (their parents, functions and depths are in ``nodes``)."""

    start_ns: int
    end_ns: int
    width: int
    pixel_ns: int
    threads: list[ThreadLanes]
    node_ids: list[int]
    nodes: NodeTable


def timeline(
    profile: Profile,
    *,
    threads: list[int] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    width: int = 1000,
    origin_ns: int = 0,
) -> Timeline:
    """Per thread: frame intervals per depth and a state lane over ``[start_ns, end_ns)`` (absolute ns).

    Times in the result are relative to ``origin_ns``. An interval ends where the next shown
    sample starts, unless the gap exceeds one pixel; then it ends where the last sample of its
    pixel ends.
    """
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"width must be 1..{MAX_WIDTH} pixels, got {width}")
    first, last = profile.time_range_ns
    start = first if start_ns is None else int(start_ns)
    end = last if end_ns is None else int(end_ns)
    if end <= start:
        end = start + 1
    span = end - start
    pixel_ns = max(1, -(-span // width))
    cols = profile.columns()
    nodes = node_table(profile)
    node_of_sample = sample_nodes(profile, nodes)
    in_window = (cols["time_ns"] >= start) & (cols["time_ns"] < end)
    referenced: set[int] = set()
    thread_rows = []
    for thread in (range(len(profile.threads)) if threads is None else threads):
        info = profile.threads[thread]
        chosen = np.flatnonzero(in_window & (cols["thread"] == thread))
        chosen = chosen[np.argsort(cols["time_ns"][chosen], kind="stable")]
        row = ThreadLanes(int(thread), info.tid, info.name, int(len(chosen)))
        thread_rows.append(row)
        if not len(chosen):
            continue
        times = cols["time_ns"][chosen]
        pixel = (times - start) * width // span
        first_in_pixel = np.flatnonzero(np.r_[True, pixel[1:] != pixel[:-1]])
        shown = chosen[first_in_pixel]
        begin = cols["time_ns"][shown]
        own_end = np.maximum.reduceat(times + cols["weight_ns"][chosen], first_in_pixel)
        following = np.r_[begin[1:], np.iinfo(np.int64).max]
        joined = (following - own_end) <= pixel_ns
        joined[-1] = False
        finish = np.minimum(np.where(joined, following, own_end), end)
        leaf = node_of_sample[shown]
        max_depth = int(nodes.depth[leaf].max())
        row.max_depth = max_depth
        at_depth = np.zeros((max_depth + 1, len(shown)), dtype=np.int64)
        current = leaf.astype(np.int64)
        columns = np.arange(len(shown))
        while True:
            live = current > 0
            if not live.any():
                break
            at_depth[nodes.depth[current[live]], columns[live]] = current[live]
            current = np.where(live, nodes.parent[np.where(live, current, 0)], 0)
        for depth in range(1, max_depth + 1):
            first_of_run, last_of_run = _runs(at_depth[depth], joined)
            node_ids = at_depth[depth][first_of_run]
            referenced.update(node_ids.tolist())
            row.depths.append(DepthRuns(
                depth, (begin[first_of_run] - origin_ns).tolist(), (finish[last_of_run] - origin_ns).tolist(), node_ids.tolist(),
            ))
        state = cols["state"][shown].astype(np.int64)
        reason = np.where(state == int(State.WAITING), cols["reason"][shown], NO_REASON).astype(np.int64)
        key = state * (len(profile.strings) + 2) + reason + 2
        first_of_run, last_of_run = _runs(key, joined)
        row.states = StateRuns(
            (begin[first_of_run] - origin_ns).tolist(), (finish[last_of_run] - origin_ns).tolist(),
            [State(s) for s in state[first_of_run].tolist()],
            [None if r == NO_REASON else profile.strings[r] for r in reason[first_of_run].tolist()],
        )
    return Timeline(start - origin_ns, end - origin_ns, width, pixel_ns, thread_rows, sorted(referenced), nodes)


def _runs(values: np.ndarray, joined: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of equal non-zero ``values`` whose steps are all ``joined``."""
    present = values > 0
    same_as_previous = np.zeros(len(values), dtype=bool)
    same_as_previous[1:] = (values[1:] == values[:-1]) & joined[:-1] & present[1:]
    starts = present & ~same_as_previous
    continues = np.zeros(len(values), dtype=bool)
    continues[:-1] = same_as_previous[1:]
    ends = present & ~continues
    return np.flatnonzero(starts), np.flatnonzero(ends)
