"""``repeated_remote_call``: one request calls the same remote endpoint (method, host and path with
ids aside) again and again, one item at a time."""

from __future__ import annotations

import statistics

from ...model.window import Window
from . import Finding, Thresholds, detector
from .logging_io import is_handler_call
from .stacks import call_site, share_under, site_during
from .traffic import enough, examples, figures, kept_profiles, repeated_groups, request_facts, span_ids_of, windows_of


@detector
def repeated_remote_calls(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None or not window.requests:
        return []
    placed = request_facts(window)
    measured = placed.measured(window)
    found = []
    for group in repeated_groups(window, "http", limits.repeat_min_count, limits.repeat_min_total_ms * 1e6):
        traffic = group.traffic
        route_measured = measured & set(traffic.duration_ns())
        numbers = figures(traffic, group.cost, route_measured)
        if not enough(traffic, numbers.requests, len(route_measured), limits.min_requests) or numbers.share < limits.min_share:
            continue
        kept = kept_profiles(window, traffic)

        def windows(request: int, group=group) -> list:
            return windows_of(window, group.position[request], group.key) if request in group.position else []

        if share_under(kept, windows, is_handler_call) > 0.5:
            continue  # a logging handler's own calls: sync_logging's finding, not the app's
        method, template = window.facts.keys[group.key].text.split(" ", 1)
        per_request = int(statistics.median(group.count.values()))
        durations = placed.duration[(placed.request >= 0) & (window.facts.key == group.key)]
        found.append(Finding(
            kind="repeated_remote_call", route=traffic.key,
            title=f"{traffic.key} calls {method} {template} {per_request} times per request, one after another",
            **numbers.fields(),
            evidence={
                "method": method, "url": template, "count_per_request": per_request,
                "mean_call_ms": round(float(durations.mean()) / 1e6, 3) if len(durations) else None,
                "call_site": call_site(site_during(kept, windows)),
                "examples": examples(traffic, group.cost, lambda request, group=group: span_ids_of(window, group.position[request], group.key)),
            },
            fix=(f"Ask {template.split('/', 1)[0]} for all items in one call if it has a batch endpoint; otherwise run the "
                 "calls concurrently (a thread pool or an async client) with a bounded concurrency, and cache what repeats."),
        ))
    return found
