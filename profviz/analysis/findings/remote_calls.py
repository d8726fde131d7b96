"""``repeated_remote_call``: one request calls the same remote endpoint (method, host and path with
ids aside) again and again, one item at a time."""

from __future__ import annotations

import statistics

from ...model.window import Window
from . import Finding, Thresholds, detector
from ...model.statements import client_call_of
from .stacks import call_site_text, sites_in_windows, top_site
from .traffic import enough, examples, figures, kept_profiles, routes_of, spans_by_request


@detector
def repeated_remote_calls(window: Window, limits: Thresholds) -> list[Finding]:
    found = []
    spans_of = spans_by_request(window)
    for traffic in routes_of(window).values():
        measured = {row.id for row in traffic.requests if row.id in spans_of}
        costs: dict[tuple, dict[int, float]] = {}
        counts: dict[tuple, dict[int, int]] = {}
        calls: dict[tuple, dict[int, list]] = {}
        for request in measured:
            groups: dict[tuple, list] = {}
            for span in spans_of[request]:
                call = client_call_of(span)
                if call is not None:
                    groups.setdefault(call, []).append(span)
            for call, spans in groups.items():
                total = sum(s.duration_ns for s in spans)
                if len(spans) >= limits.repeat_min_count and total >= limits.repeat_min_total_ms * 1e6:
                    costs.setdefault(call, {})[request] = total * (len(spans) - 1) / len(spans)
                    counts.setdefault(call, {})[request] = len(spans)
                    calls.setdefault(call, {})[request] = spans
        for call, cost in costs.items():
            numbers = figures(traffic, cost, measured)
            if not enough(traffic, numbers.requests, len(measured), limits.min_requests) or numbers.share < limits.min_share:
                continue
            method, template = call
            per_request = int(statistics.median(counts[call].values()))
            example = examples(traffic, cost)
            site, profile_ids = None, []
            for row, profile in kept_profiles(window, traffic):
                if row.id in calls[call]:
                    profile_ids.append(row.profile_id)
                    if site is None:
                        site = top_site(sites_in_windows(profile, [(s.start_ns, s.end_ns) for s in calls[call][row.id]]))
            mean_call_ms = statistics.mean(s.duration_ns for spans in calls[call].values() for s in spans) / 1e6
            found.append(Finding(
                kind="repeated_remote_call", route=traffic.key,
                title=f"{traffic.key} calls {method} {template} {per_request} times per request, one after another",
                requests=numbers.requests, impact_ms=round(numbers.impact_ms, 3), tail_share=round(numbers.tail_share, 3),
                share=round(numbers.share, 3),
                evidence={
                    "method": method, "url": template, "count_per_request": per_request, "mean_call_ms": round(mean_call_ms, 3),
                    "call_site": call_site_text(site), "requests": example, "profiles": profile_ids[:3],
                    "spans": [s.span_id for s in calls[call][example[0]][:5]] if example else [],
                },
                fix=(f"Ask {template.split('/', 1)[0]} for all items in one call if it has a batch endpoint; otherwise run the "
                     "calls concurrently (a thread pool or an async client) with a bounded concurrency, and cache what repeats."),
            ))
    return found
