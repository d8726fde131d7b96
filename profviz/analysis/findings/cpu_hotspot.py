"""``cpu_hotspot``: one function's own computing (its self time on a CPU, and waiting for the GIL
while other threads compute) dominates a route."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ...model import Frame, State
from ...model.window import Window
from . import Finding, Thresholds, detector
from .locks import blocked_on_a_lock
from .serialization import is_codec
from .stacks import call_site
from .traffic import enough, examples, figures, kept_profiles, routes_of


def leaf_time(profile) -> tuple[Counter, Counter, float]:
    """Per leaf function (a :class:`Frame` with the line left out) of ``profile``: ns on a CPU,
    ns computing in all (on a CPU, runnable, waiting for the GIL, or waiting with no reason other
    than a futex where the GIL could not be told apart: not at a line that takes a lock), and all sampled ns. Sleeps,
    sockets and files are not computing."""
    if not profile.sample_count:
        return Counter(), Counter(), 0.0
    columns = profile.columns()
    total = float(columns["weight_ns"].sum())
    futex = [i for i, text in enumerate(profile.strings) if text == "lock (futex)"]
    state, reason = columns["state"], columns["reason"]
    on_cpu = state == int(State.ON_CPU)
    computing = (on_cpu | (state == int(State.RUNNABLE)) | (state == int(State.GIL))
                 | ((state == int(State.WAITING)) & ((reason < 0) | np.isin(reason, futex))))
    chosen = computing & (columns["stack"] >= 0)
    cpu, busy = Counter(), Counter()
    stacks, inverse = np.unique(columns["stack"][chosen], return_inverse=True)
    if len(stacks):
        busy_sums = np.bincount(inverse, weights=columns["weight_ns"][chosen])
        cpu_sums = np.bincount(inverse, weights=columns["weight_ns"][chosen] * on_cpu[chosen])
        for stack, busy_ns, cpu_ns in zip(stacks.tolist(), busy_sums.tolist(), cpu_sums.tolist()):
            frame = profile.frame(int(profile.stack_frame[stack]))
            if busy_ns > cpu_ns and blocked_on_a_lock(frame):
                busy_ns = cpu_ns  # a futex wait at a line that takes a lock is lock_contention's, not computing
            key = Frame(frame.function, frame.file, 0)
            busy[key] += busy_ns
            cpu[key] += cpu_ns
    return cpu, busy, total


_IO_FILES = ("/socket.py", "/ssl.py", "/selectors.py", "/subprocess.py")
_IO_FUNCTIONS = ("readinto", "recv", "recv_into", "recvfrom", "send", "sendall", "accept", "connect", "select", "poll",
                 "sleep", "wait", "acquire")


def is_io(frame: Frame) -> bool:
    """A leaf that does I/O or blocks (a socket's read, ``select``): a futex wait there is the GIL
    after the I/O returned, not computing."""
    return frame.file.endswith(_IO_FILES) or frame.function.rsplit(".", 1)[-1] in _IO_FUNCTIONS


@detector
def cpu_hotspot(window: Window, limits: Thresholds) -> list[Finding]:
    """Made once per window and thresholds (gil_contention asks too)."""
    return window.once(("cpu_hotspot", limits), lambda: _cpu_hotspot(window, limits))


def _cpu_hotspot(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None:
        return []
    found = []
    for traffic in routes_of(window).values():
        kept = kept_profiles(window, traffic)
        per_function: dict[Frame, dict[int, float]] = {}
        on_cpu: Counter = Counter()
        sampled = 0.0
        for row, profile in kept:
            cpu, busy, total = leaf_time(profile)
            sampled += total
            on_cpu.update(cpu)
            for frame, ns in busy.items():
                per_function.setdefault(frame, {})[row.id] = float(ns)
        if not per_function or not sampled:
            continue
        frame, cost = max(per_function.items(), key=lambda item: sum(item[1].values()))
        spent = sum(cost.values())
        if is_codec(frame) or is_io(frame) or spent / sampled < limits.hotspot_min_share or not on_cpu[frame]:
            continue  # encoding is serialization's finding; I/O, and a function never seen on a CPU, no hotspot
        measured = {row.id for row, _ in kept}
        numbers = figures(traffic, cost, measured)
        if not enough(traffic, numbers.requests, len(measured), limits.min_requests):
            continue
        rows = traffic.by_id()
        own_cpu = [rows[request].cpu_ns for request in cost if request in rows]
        if not own_cpu or sum(own_cpu) / len(own_cpu) < limits.hotspot_min_cpu_ms * 1e6:
            continue  # its requests hardly compute themselves (their thread CPU time, measured, not sampled):
            # they wait for the GIL while others compute, which is gil_contention's finding
        found.append(Finding(
            kind="cpu_hotspot", route=traffic.key,
            title=f"{traffic.key} spends {100 * numbers.share:.0f}% of its time computing in {frame.function}",
            **numbers.fields(),
            evidence={"function": frame.function, "call_site": call_site(frame), "examples": examples(traffic, cost)},
            fix=(f"Make {frame.function} ({frame.file}) do less: a better algorithm or data structure, caching its "
                 "result, or moving the work off the request path (precompute, a background job)."),
        ))
    return found
