"""``lock_contention``: requests wait on a lock (or a condition, event or semaphore) that other
threads hold, at one place in the app's code."""

from __future__ import annotations

import linecache
import re
from collections import Counter

from ...model import Frame, State
from ...model.window import Window
from . import Finding, Thresholds, detector
from .logging_io import is_handler_call
from .pools import is_checkout
from .stacks import call_site, under
from .traffic import examples, sampled_routes

_PRIMITIVES = ("Condition.wait", "Event.wait", "Semaphore.acquire", "BoundedSemaphore.acquire", "Barrier.wait",
               "RLock.acquire", "Lock.acquire", "_RLock.acquire")
_ACQUIRING_LINE = re.compile(r"^\s*(async\s+)?with\b|\.acquire\(|\.wait\(")
_LOCK_REASON = "lock (futex)"


def blocked_on_a_lock(frame: Frame) -> bool:
    """The leaf of a stack blocked on a lock: a threading primitive's frame, or app code whose
    line can take one (a ``with`` statement, ``.acquire(``, ``.wait(``), where a futex wait is the
    C-level acquire that line calls: a thread waiting for the GIL anywhere else is not waiting on a
    lock of the app's."""
    if frame.function.endswith(_PRIMITIVES):
        return True
    if frame.line <= 0 or frame.file.startswith("<"):
        return False
    return bool(_ACQUIRING_LINE.search(linecache.getline(frame.file, frame.line)))


def lock_waits(profile) -> tuple[float, Counter]:
    """(ns ``profile`` waited on locks, by the frame that waits: the leaf, or the app frame
    calling a threading primitive), leaving out waits that are a pool's or a logging handler's."""
    if not profile.sample_count or not len(profile.stack_prefix):
        return 0.0, Counter()
    owned = under(profile, lambda f: is_checkout(f) or is_handler_call(f)).matched
    columns = profile.columns()
    lock_reason = {i for i, text in enumerate(profile.strings) if text == _LOCK_REASON}
    total, sites, verdict = 0.0, Counter(), {}
    for stack, state, weight, reason in zip(columns["stack"].tolist(), columns["state"].tolist(),
                                            columns["weight_ns"].tolist(), columns["reason"].tolist()):
        if stack < 0 or state != int(State.WAITING) or owned[stack] or (reason >= 0 and reason not in lock_reason):
            continue
        if stack not in verdict:
            leaf = profile.frame(int(profile.stack_frame[stack]))
            verdict[stack] = _waiter(profile, stack) if blocked_on_a_lock(leaf) else None
        if verdict[stack] is not None:
            total += weight
            sites[verdict[stack]] += weight
    return total, sites


def _waiter(profile, stack: int) -> Frame:
    """The frame to name for a lock wait: the leaf, or for a threading primitive its caller."""
    node = stack
    while node >= 0:
        frame = profile.frame(int(profile.stack_frame[node]))
        if not frame.file.endswith("threading.py"):
            return frame
        node = int(profile.stack_prefix[node])
    return profile.frame(int(profile.stack_frame[stack]))


@detector
def lock_contention(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None:
        return []
    found = []
    for hit in sampled_routes(window, lambda profile: (*lock_waits(profile), None), limits.lock_min_ms * 1e6,
                              limits.min_requests, limits.min_share):
        site = hit.sites.most_common(1)[0][0]
        found.append(Finding(
            kind="lock_contention", route=hit.traffic.key,
            title=f"{hit.traffic.key} waits {hit.numbers.impact_ms:.0f} ms a request for a lock in {site.function}",
            evidence={"call_site": call_site(site), "examples": examples(hit.traffic, hit.cost)},
            fix=(f"Hold the lock in {site.function} for less time (no I/O or slow work inside it), split it (one lock per "
                 "resource instead of one for all), or use a structure that needs none (a queue, per-thread state, atomic swaps)."),
            **hit.numbers.fields(),
        ))
    return found
