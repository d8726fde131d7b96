"""``large_payload``: a route's responses are so large that fetching, encoding and sending them is
where its requests' time goes."""

from __future__ import annotations

import statistics

import numpy as np

from ...model import State
from ...model.statements import normalise
from ...model.window import Window
from . import Finding, Thresholds, detector
from .serialization import is_codec
from .stacks import computing_under
from .traffic import enough, examples, figures, kept_profiles, routes_of, spans_by_request, statements_in


@detector
def large_payload(window: Window, limits: Thresholds) -> list[Finding]:
    found = []
    spans_of = spans_by_request(window)
    for traffic in routes_of(window).values():
        large = [row for row in traffic.requests if row.response_bytes >= limits.large_payload_bytes]
        if not large or not enough(traffic, len(large), len(traffic.requests), limits.min_requests):
            continue
        cost: dict[int, float] = {}
        statements: dict[str, list[int]] = {}
        for row in large:  # the statements that fetch the rows: the slow ones of a large request
            for statement, span in statements_in(spans_of.get(row.id, [])):
                if span.duration_ns >= limits.scan_min_ms * 1e6:
                    cost[row.id] = cost.get(row.id, 0.0) + span.duration_ns
                    statements.setdefault(normalise(statement), []).append(span.duration_ns)
        large_ids = {row.id for row in large}
        for row, profile in kept_profiles(window, traffic):
            if row.id in large_ids:
                encoding, _ = computing_under(profile, is_codec)
                cost[row.id] = cost.get(row.id, 0.0) + encoding + _sending(profile)
        numbers = figures(traffic, cost, large_ids)
        size = statistics.median(row.response_bytes for row in large)
        duration = statistics.mean(row.duration_ns for row in large) / 1e6
        fetching = {statement: round(statistics.mean(ns) / 1e6, 3) for statement, ns in statements.items()}
        found.append(Finding(
            kind="large_payload", route=traffic.key,
            title=f"{traffic.key} returns {size / 1e6:.1f} MB a response ({len(large)} of {len(traffic.requests)} requests,"
                  f" {duration:.0f} ms each)",
            requests=len(large), impact_ms=round(numbers.impact_ms, 3), tail_share=round(numbers.tail_share, 3),
            share=round(numbers.share, 3),
            evidence={"response_bytes": size, "max_response_bytes": max(row.response_bytes for row in large),
                      "fetching_ms": fetching,
                      "examples": examples(traffic, {row.id: float(row.response_bytes) for row in large}, spans_of)},
            fix=("Send less: paginate (a LIMIT and a cursor, so each request fetches one page of rows), let the client "
                 "choose the fields, stream the rows as they are read, and compress (gzip)."),
        ))
    return found


def _sending(profile) -> float:
    """ns a profile's samples waited on sending (wait reasons ``socket send ...``)."""
    if not profile.sample_count:
        return 0.0
    send = [i for i, text in enumerate(profile.strings) if text.startswith("socket send")]
    if not send:
        return 0.0
    columns = profile.columns()
    chosen = np.isin(columns["reason"], send) & (columns["state"] == int(State.WAITING))
    return float(columns["weight_ns"][chosen].sum())
