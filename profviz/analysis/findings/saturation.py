"""``saturation``: the server's workers were nearly all busy, and a route's latency rose with it
(the knee of latency against utilisation), in a window this names. Latency is total (queued before
the app plus the app's time) where a proxy stamped the queue time: saturation shows as a queue."""

from __future__ import annotations

import numpy as np

from ...model.window import Window
from ..routes import utilisation_series
from . import Finding, Thresholds, detector
from .traffic import enough, routes_of

BUCKETS = 60
MIN_BUCKET_S = 1.0
CALM_UTILISATION = 0.5


@detector
def saturation(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None or not window.requests:
        return []
    rows = window.requests
    starts = np.array([r.start_ns for r in rows], dtype=np.int64)
    span_s = (max(r.start_ns + r.duration_ns for r in rows) - int(starts.min())) / 1e9
    bucket_s = max(MIN_BUCKET_S, span_s / BUCKETS)
    columns = {"pid": [r.pid for r in rows], "tid": [r.tid for r in rows], "start_ns": starts.tolist(),
               "duration_ns": [r.duration_ns for r in rows], "capacity": [(r.labels or {}).get("capacity") for r in rows]}
    usage = utilisation_series(columns, bucket_s)
    if not usage.capacity or len(usage.series) < 4:
        return []
    level = np.array([p.utilisation or 0.0 for p in usage.series])
    bucket_of = np.minimum(((starts - int(starts.min())) // int(bucket_s * 1e9)).astype(np.int64), len(level) - 1)
    busy_bucket = level[bucket_of] >= limits.saturation_utilisation
    calm_bucket = (level[bucket_of] < CALM_UTILISATION) & (bucket_of < len(level) - 1)  # the last bucket is cut short
    if busy_bucket.sum() < limits.min_requests or calm_bucket.sum() < limits.min_requests:
        return []
    index = {r.id: i for i, r in enumerate(rows)}
    found = []
    for traffic in routes_of(window).values():
        ids = np.array([index[r.id] for r in traffic.requests])
        durations = np.array([r.total_ns for r in traffic.requests], dtype=np.float64) / 1e6
        busy, calm = busy_bucket[ids], calm_bucket[ids]
        if not enough(traffic, int(busy.sum()), len(ids), limits.min_requests) or calm.sum() < limits.min_requests:
            continue
        p95_busy, p95_calm = np.percentile(durations[busy], 95), np.percentile(durations[calm], 95)
        if p95_busy < limits.saturation_latency_ratio * p95_calm:
            continue
        extra = durations[busy] - np.median(durations[calm])
        tail = durations >= np.percentile(durations, 95)
        first, last = starts[ids][busy].min(), (starts[ids] + np.array([r.duration_ns for r in traffic.requests]))[busy].max()
        knee = float(np.min(level[bucket_of[ids][busy & (durations > limits.saturation_latency_ratio * p95_calm)]],
                            initial=float(limits.saturation_utilisation)))
        found.append(Finding(
            kind="saturation", route=traffic.key,
            title=(f"{traffic.key}'s P95 rose from {p95_calm:.0f} ms to {p95_busy:.0f} ms while the server's "
                   f"{usage.capacity} workers were {100 * level[level >= limits.saturation_utilisation].mean():.0f}% busy"),
            requests=int(busy.sum()), impact_ms=round(float(max(0.0, extra.mean())), 3),
            tail_share=round(float((tail & busy).sum() / max(1, tail.sum())), 3),
            share=round(float(max(0.0, extra.sum()) / durations.sum()), 3),
            evidence={"capacity": usage.capacity, "capacity_source": usage.capacity_source,
                      "window": {"start": first / 1e9, "end": last / 1e9}, "p95_calm_ms": round(float(p95_calm), 3),
                      "p95_busy_ms": round(float(p95_busy), 3), "knee_utilisation": round(knee, 3),
                      "busy_utilisation": round(float(level[level >= limits.saturation_utilisation].mean()), 3)},
            fix=("Add capacity where the workers wait (more worker processes, more instances; more threads only where "
                 "the workers wait on I/O, since threads that compute take turns with one process's GIL), or free the "
                 "workers sooner: fix this route's other findings first, since a worker waiting on I/O or a lock is busy too."),
        ))
    return found
