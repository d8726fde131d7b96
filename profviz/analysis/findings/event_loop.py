"""``event_loop_blocked``: a synchronous call inside ``async def`` (a ``requests.get``, a sync
database driver, a big ``json.dumps``) held the event loop, and every request in flight on it
waited. Read from the ``loop_stall`` profiles the ASGI middleware stores (what the loop ran
while it was stalled, and the request that ran it)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

from ...model import Frame, Profile, State
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, is_app_frame

_PACKAGE = re.compile(r"/(?:site|dist)-packages/([A-Za-z_][\w]*)|/lib/python3\.\d+/([A-Za-z_]\w*)(?:\.py)?(?:/|$)")
STACK_SHOWN = 16
CALLS_SHOWN = 5
OWN_MIN_SHARE = 0.5
_OWN_STATES = frozenset({int(State.ON_CPU), int(State.WAITING)})
_COLLECTOR_FILES = ("/weakref.py", "/_weakrefset.py")  # callbacks the garbage collector ran on top of any frame
CALLERS_SHOWN = 2


@detector
def event_loop_blocked(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None or not window.stalls:
        return []
    groups: dict[str | None, list[tuple[int, Profile]]] = defaultdict(list)
    for profile_id, profile in window.stalls.items():
        labels = profile.meta.get("labels") or {}
        if labels.get("one_callback") is False or own_share(profile) < OWN_MIN_SHARE:
            continue  # a loop busy with many steps, or waiting for the GIL or a CPU: not one blocking call
        groups[f"{labels['method']} {labels['route']}" if labels.get("route") else None].append((profile_id, profile))
    rows = sorted(window.requests, key=lambda r: r.start_ns)
    found = []
    for route, stalls in groups.items():
        delayed, overlap_ns, blockers = _delayed(rows, stalls, route)
        if not delayed:
            continue
        calls: Counter = Counter()
        for _, profile in stalls:
            calls.update(blocking_calls(profile))
        (site, call), _ = calls.most_common(1)[0] if calls else ((None, None), 0)
        durations = np.array([row.duration_ns for row in delayed], dtype=np.float64)
        overlaps = np.array([overlap_ns[row.id] for row in delayed], dtype=np.float64)
        longest = max(profile.meta["duration_ns"] for _, profile in stalls) / 1e6
        total = sum(profile.meta["duration_ns"] for _, profile in stalls) / 1e6
        what = _call_name(call) if call is not None else (f"a call in {site.function}" if site is not None else "a callback")
        others = len(calls) - 1
        if others > 0:
            what += f" (and {others} other call{'s' if others > 1 else ''})"
        where = route or "code outside any request"
        example_id, example = max(stalls, key=lambda item: item[1].meta["duration_ns"])
        found.append(Finding(
            kind="event_loop_blocked", route=route,
            title=(f"{what} blocked the event loop {len(stalls)} time{'s' if len(stalls) != 1 else ''} in {where} "
                   f"(up to {longest:.0f} ms), delaying {len(delayed)} requests"),
            requests=len(delayed), impact_ms=round(float(overlaps.mean()) / 1e6, 3),
            tail_share=round(_tail_share(window, delayed, overlap_ns), 3),
            share=round(float(overlaps.sum() / durations.sum()), 3),
            evidence={
                "call_site": call_site(site), "blocking_call": call_site(call),
                "calls": [{"call_site": call_site(s), "blocking_call": call_site(c), "ms": round(ns / 1e6, 3)}
                          for (s, c), ns in calls.most_common(CALLS_SHOWN)],
                "stalls": len(stalls), "blocked_ms": round(total, 3), "longest_ms": round(longest, 3),
                "delayed_requests": len(delayed),
                "delayed_routes": dict(Counter(f"{row.method} {row.route}" for row in delayed).most_common(10)),
                "stack": _stack_text(example),
                "examples": [{"request": blockers.get(example_id), "profile": example_id, "spans": []}],
            },
            fix=("Do not call blocking code in async def: use an async client (httpx.AsyncClient, asyncpg, aiofiles), "
                 "or run the call in a thread with `await asyncio.to_thread(...)` (run_in_executor); move CPU-heavy "
                 "work (serialisation, parsing) to a thread or a process pool, or declare the endpoint with plain "
                 "def so the framework runs it in its threadpool."),
        ))
    return found


def own_share(profile: Profile) -> float:
    """The share of a stall's samples in which the loop thread ran its own code or blocked in a
    call (ON_CPU, WAITING), not waiting for the GIL or a CPU."""
    columns = profile.columns()
    weights = columns["weight_ns"].astype(np.float64)
    own = np.isin(columns["state"], list(_OWN_STATES))
    return float(weights[own].sum() / weights.sum()) if weights.sum() else 0.0


def blocking_calls(profile: Profile) -> Counter:
    """ns of a stall's own samples (ON_CPU, WAITING) by (the app's call site, the function it called): per sample, the innermost app
    frame and the frame above it (the library call that blocked; None when the app frame is the
    leaf, or when what is above it is the garbage collector's weakref callbacks)."""
    columns = profile.columns()
    weight: Counter = Counter()
    for stack, state, ns in zip(columns["stack"].tolist(), columns["state"].tolist(), columns["weight_ns"].tolist()):
        if stack < 0 or state not in _OWN_STATES:
            continue
        frames = [profile.frame(index) for index in profile.stack_frames(stack)]
        app = [i for i, frame in enumerate(frames) if is_app_frame(frame)]
        if app:
            site = frames[app[-1]]
            call = frames[app[-1] + 1] if app[-1] + 1 < len(frames) else None
        else:
            site, call = None, frames[-1]
        if call is not None and call.file.endswith(_COLLECTOR_FILES):
            call = None
        weight[(site, call)] += ns or 1
    return weight


def _call_name(frame: Frame) -> str:
    """``requests.get``: a library function with its top-level package or module when its file tells it."""
    match = _PACKAGE.search(frame.file)
    if match is None or "." in frame.function:
        return frame.function
    return f"{match.group(1) or match.group(2)}.{frame.function}"


def _delayed(rows: list, stalls: list[tuple[int, Profile]], route: str | None) -> tuple[list, dict, dict]:
    """The requests of the stalls' processes in flight during them (not the blocking one), the ns
    each overlapped the stalls by request id, and the blocking request's id by stall profile id (when found)."""
    overlap: dict[int, int] = defaultdict(int)
    blockers: dict = {}
    by_id = {}
    for profile_id, stall in stalls:
        start = int(stall.meta["start_ns"])
        end = start + int(stall.meta["duration_ns"])
        pid = stall.meta.get("pid")
        blocker = _blocker(rows, stall, route)
        if blocker is not None:
            blockers[profile_id] = blocker.id
        for row in rows:
            if row.start_ns >= end:
                break
            if row.pid != pid or row is blocker or row.start_ns + row.duration_ns <= start:
                continue
            overlap[row.id] += min(end, row.start_ns + row.duration_ns) - max(start, row.start_ns)
            by_id[row.id] = row
    return list(by_id.values()), overlap, blockers


def _blocker(rows: list, stall: Profile, route: str | None):
    """The request row that ran the stall: of its route and process, the one overlapping it most."""
    if route is None:
        return None
    start = int(stall.meta["start_ns"])
    end = start + int(stall.meta["duration_ns"])
    best, most = None, 0
    for row in rows:
        if row.start_ns >= end:
            break
        overlap = min(end, row.start_ns + row.duration_ns) - max(start, row.start_ns)
        if overlap > most and f"{row.method} {row.route}" == route and row.pid == stall.meta.get("pid"):
            best, most = row, overlap
    return best


def _tail_share(window: Window, delayed: list, overlap_ns: dict) -> float:
    """Of the delayed requests at or over their route's P95, the share of their time over the route's median the stalls overlap."""
    by_route: dict[str, list] = defaultdict(list)
    for row in window.requests:
        by_route[f"{row.method} {row.route}"].append(row.duration_ns)
    extra = explained = 0.0
    for row in delayed:
        durations = by_route[f"{row.method} {row.route}"]
        p95, p50 = np.percentile(durations, 95), np.median(durations)
        if row.duration_ns >= p95 and row.duration_ns > p50:
            extra += row.duration_ns - p50
            explained += min(overlap_ns[row.id], row.duration_ns - p50)
    return explained / extra if extra else 0.0


def _stack_text(profile: Profile) -> list[str]:
    """The longest stall's most seen stack as ``function (file:line)`` lines, innermost first, down
    to the app's call site and CALLERS_SHOWN of its callers; the middle of a longer one left out."""
    columns = profile.columns()
    seen: Counter = Counter()
    for stack, ns in zip(columns["stack"].tolist(), columns["weight_ns"].tolist()):
        if stack >= 0:
            seen[stack] += ns or 1
    if not seen:
        return []
    frames = [profile.frame(index) for index in profile.stack_frames(seen.most_common(1)[0][0])][::-1]
    app = [i for i, frame in enumerate(frames) if is_app_frame(frame)]
    frames = frames[: (app[0] + 1 + CALLERS_SHOWN) if app else STACK_SHOWN]
    lines = [f"{frame.function} ({frame.file}:{frame.line})" for frame in frames]
    if len(lines) > STACK_SHOWN:
        half = STACK_SHOWN // 2
        lines = lines[:half] + [f"... {len(lines) - 2 * half} frames ..."] + lines[-half:]
    return lines
