"""What a whole profile (or one thread of it) holds: per-thread time by state, the heaviest
functions, wait reasons. Behind ``profviz show`` and ``GET /api/profiles/<id>``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import Profile
from .calltree import ROOT, FunctionStats, SampleFilter, ThreadStats, build_call_tree, function_stats, thread_stats


@dataclass
class ProfileSummary:
    """The selected samples of a profile: ``sample_count``, per-thread stats (heaviest first),
    functions (heaviest total first: the ``max_functions`` heaviest by total and by self time),
    ``by_state`` (ns per state value) and ``waits`` (waiting ns by reason, largest first)."""

    meta: dict
    sample_count: int
    threads: list[ThreadStats]
    functions: list[FunctionStats]
    by_state: np.ndarray
    waits: dict[str, int]


def profile_summary(profile: Profile, *, thread: str | int | None = None, max_functions: int = 200) -> ProfileSummary:
    """Summarise a profile; ``thread`` (tid or name) restricts everything to that thread."""
    selection = SampleFilter(threads=profile.find_threads(thread)) if thread is not None else SampleFilter()
    tree = build_call_tree(profile, selection)
    stats = function_stats(tree)
    by_self = sorted(stats, key=lambda f: -f.self_ns)[:max_functions]
    chosen = {id(f): f for f in stats[:max_functions]}
    chosen.update({id(f): f for f in by_self if f.self_ns > 0})
    functions = sorted(chosen.values(), key=lambda f: (-f.total_ns, f.function))
    return ProfileSummary(
        profile.meta, int(tree.mask.sum()), thread_stats(profile, selection), functions,
        tree.total_by_state[:, ROOT].copy(), tree.waits_by_reason(),
    )
