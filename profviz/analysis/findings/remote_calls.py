"""``repeated_remote_call``: one request calls the same remote endpoint (method, host and path with
ids aside) again and again, one item at a time."""

from __future__ import annotations

import statistics

from ...model.window import Window
from . import Finding, Thresholds, detector
from ...model.statements import client_call_of
from .logging_io import is_handler_call
from .stacks import call_site, share_under, site_during
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
            example = examples(traffic, cost, calls[call])
            kept = kept_profiles(window, traffic)
            if share_under(kept, calls[call], is_handler_call) > 0.5:
                continue  # a logging handler's own calls: sync_logging's finding, not the app's
            site = site_during(kept, calls[call])
            mean_call_ms = statistics.mean(s.duration_ns for spans in calls[call].values() for s in spans) / 1e6
            found.append(Finding(
                kind="repeated_remote_call", route=traffic.key,
                title=f"{traffic.key} calls {method} {template} {per_request} times per request, one after another",
                requests=numbers.requests, impact_ms=round(numbers.impact_ms, 3), tail_share=round(numbers.tail_share, 3),
                share=round(numbers.share, 3),
                evidence={
                    "method": method, "url": template, "count_per_request": per_request, "mean_call_ms": round(mean_call_ms, 3),
                    "call_site": call_site(site), "examples": example,
                },
                fix=(f"Ask {template.split('/', 1)[0]} for all items in one call if it has a batch endpoint; otherwise run the "
                     "calls concurrently (a thread pool or an async client) with a bounded concurrency, and cache what repeats."),
            ))
    return found
