"""``gil_contention``: requests wait for the interpreter's GIL while other threads of the process
compute (state GIL, from the futex a thread sleeps on: profviz.collect.gil)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ...model import State
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, frames_of, innermost_app_frames, top_site
from .traffic import examples, kept_profiles, profile_figures, sampled_routes, windows_of

GIL = int(State.GIL)


def gil_waits(profile) -> tuple[float, Counter, None]:
    """(ns ``profile`` waited for the GIL, by the innermost app frame waiting, None)."""
    if not profile.sample_count:
        return 0.0, Counter(), None
    columns = profile.columns()
    chosen = (columns["state"] == GIL) & (columns["stack"] >= 0)
    if not chosen.any():
        return 0.0, Counter(), None
    innermost = innermost_app_frames(profile)
    sites: Counter = Counter()
    for stack, weight in zip(columns["stack"][chosen].tolist(), columns["weight_ns"][chosen].tolist()):
        sites[int(innermost[stack])] += weight
    return float(columns["weight_ns"][chosen].sum()), frames_of(profile, sites), None


def _inside_calls(window: Window, hit) -> float:
    """Of the GIL waits in the hit's kept profiles, the fraction inside the requests' statements
    and calls (a thread taking the GIL back as a query returns)."""
    positions = {window.requests[i].id: i for i in hit.traffic.indices.tolist()}
    inside = total = 0.0
    for row, profile in kept_profiles(window, hit.traffic):
        if row.id not in hit.cost:
            continue
        columns = profile.columns()
        waiting = columns["state"] == GIL
        middle = (columns["time_ns"] + columns["weight_ns"] // 2)[waiting]
        weights = columns["weight_ns"][waiting]
        covered = np.zeros(len(middle), dtype=bool)
        for start, end in windows_of(window, positions[row.id]):
            covered |= (middle >= start) & (middle < end)
        total += float(weights.sum())
        inside += float(weights[covered].sum())
    return inside / total if total else 0.0


def own_share(beside: dict[str, float], route: str) -> float:
    """Of the CPU spent beside a route's GIL waits (:func:`cpu_beside`), the fraction its own requests spent."""
    everyone = sum(beside.values())
    return beside.get(route, 0.0) / everyone if everyone else 0.0


def cpu_beside(window: Window, hit) -> dict[str, float]:
    """ns of CPU that requests of the same process spent, by route, while the hit's requests waited
    for the GIL (each request's CPU prorated by its overlap with each waiting request)."""
    from .traffic import route_key

    rows = window.requests
    columns = window.once("gil_cpu_columns", lambda: (
        np.array([r.pid for r in rows], dtype=np.int64), np.array([r.start_ns for r in rows], dtype=np.int64),
        np.array([r.start_ns + r.duration_ns for r in rows], dtype=np.int64),
        np.array([r.cpu_ns for r in rows], dtype=np.float64), np.array([r.id for r in rows], dtype=np.int64)))
    pid, start, end, cpu, ids = columns
    duration = np.maximum(end - start, 1)
    by_route: dict[str, float] = {}
    for row in hit.traffic.requests:
        if row.id not in hit.cost:
            continue
        overlap = np.minimum(end, row.start_ns + row.duration_ns) - np.maximum(start, row.start_ns)
        others = np.flatnonzero((pid == row.pid) & (overlap > 0) & (ids != row.id))
        for index, spent in zip(others.tolist(), (cpu[others] * overlap[others] / duration[others]).tolist()):
            key = route_key(rows[index])
            by_route[key] = by_route.get(key, 0.0) + spent
    return by_route


_FIX = ("Threads of one process take turns with the one interpreter lock: run CPU-heavy work in processes (more "
        "workers with fewer threads each), move it off the request path, or do it in code that releases the GIL "
        "(numpy, hashlib or zlib on large buffers, a C extension).")


@detector
def gil_contention(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None:
        spent, sites, _ = gil_waits(window.profile)
        numbers = profile_figures(window.profile, spent, limits.gil_min_ms * 1e6, limits.min_share)
        if numbers is None:
            return []
        return [Finding(kind="gil_contention", route=None,
                        title=f"{100 * numbers.share:.0f}% of the profile's time waits for the GIL while other threads compute",
                        **numbers.fields(),
                        evidence={"call_site": call_site(top_site(sites))}, fix=_FIX)]
    from .cpu_hotspot import cpu_hotspot
    from .saturation import saturation
    from .serialization import serialization

    computing = {f.route for f in serialization(window, limits) + cpu_hotspot(window, limits)}
    saturated = {f.route for f in saturation(window, limits)}
    found = []
    for hit in sampled_routes(window, gil_waits, limits.gil_min_ms * 1e6, limits.min_requests, limits.min_share):
        if hit.traffic.key in computing:
            continue  # the route's own CPU work is what its requests queue behind: that finding names the fix
        if _inside_calls(window, hit) > 0.5:
            continue  # taking the GIL back after each query or call: the span-based finding counts it, and names the fix
        beside = cpu_beside(window, hit)
        if hit.traffic.key in saturated and own_share(beside, hit.traffic.key) > 0.5:
            continue  # queued behind its own concurrent requests' CPU: the route saturates its process, which saturation names
        computing_routes = [{"route": key, "cpu_ms": round(ns / 1e6, 3)}
                            for key, ns in sorted(beside.items(), key=lambda item: -item[1])[:3] if key != hit.traffic.key]
        found.append(Finding(
            kind="gil_contention", route=hit.traffic.key,
            title=f"{hit.traffic.key} waits {hit.numbers.impact_ms:.0f} ms a request for the GIL while other threads compute",
            evidence={"call_site": call_site(top_site(hit.sites)), "examples": examples(hit.traffic, hit.cost),
                      "computing_routes": computing_routes},
            fix=_FIX, **hit.numbers.fields(),
        ))
    return found
