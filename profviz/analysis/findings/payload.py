"""``large_payload``: a route's responses are so large that fetching, encoding and sending them is
where its requests' time goes."""

from __future__ import annotations

import statistics

import numpy as np

from ...model import State
from ...model.window import Window
from . import Finding, Thresholds, detector
from .serialization import is_codec
from .stacks import computing_under
from .traffic import enough, examples, figures, kept_profiles, request_facts, routes_of


@detector
def large_payload(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None or not window.requests:
        return []
    placed = request_facts(window)
    facts = window.facts
    sql_keys = np.array([k for k, kind in placed.key_kind.items() if kind == "sql"], dtype=np.int64)
    found = []
    for traffic in routes_of(window).values():
        large = [row for row in traffic.requests if row.response_bytes >= limits.large_payload_bytes]
        if not large or not enough(traffic, len(large), len(traffic.requests), limits.min_requests):
            continue
        large_ids = {row.id for row in large}
        positions = np.array([i for i, row in zip(traffic.indices.tolist(), traffic.requests) if row.id in large_ids], dtype=np.int64)
        # the statements that fetch the rows: the slow ones of a large request
        fetching = np.isin(placed.request, positions) & np.isin(facts.key, sql_keys) & (placed.duration >= limits.scan_min_ms * 1e6)
        cost: dict[int, float] = {}
        for position, duration in zip(placed.request[fetching].tolist(), placed.duration[fetching].tolist()):
            request = window.requests[position].id
            cost[request] = cost.get(request, 0.0) + duration
        statements: dict[str, list[int]] = {}
        for key, duration in zip(facts.key[fetching].tolist(), placed.duration[fetching].tolist()):
            statements.setdefault(facts.keys[key].text, []).append(duration)
        for row, profile in kept_profiles(window, traffic):
            if row.id in large_ids:
                encoding, _ = computing_under(profile, is_codec)
                cost[row.id] = cost.get(row.id, 0.0) + encoding + _sending(profile)
        numbers = figures(traffic, cost, large_ids)
        size = statistics.median(row.response_bytes for row in large)
        duration = statistics.mean(row.duration_ns for row in large) / 1e6
        found.append(Finding(
            kind="large_payload", route=traffic.key,
            title=f"{traffic.key} returns {size / 1e6:.1f} MB a response ({len(large)} of {len(traffic.requests)} requests,"
                  f" {duration:.0f} ms each)",
            requests=len(large), impact_ms=round(numbers.impact_ms, 3), tail_share=round(numbers.tail_share, 3),
            share=round(numbers.share, 3),
            evidence={"response_bytes": size, "max_response_bytes": max(row.response_bytes for row in large),
                      "fetching_ms": {text: round(statistics.mean(ns) / 1e6, 3) for text, ns in statements.items()},
                      "examples": examples(traffic, {row.id: float(row.response_bytes) for row in large})},
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
