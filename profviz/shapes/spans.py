"""Spans joined to samples, as ``profviz spans --json`` and the span API (``/spans``, ``/correlation``) show them.

The CLI's rows carry epoch seconds (``start``) and seconds; the API's carry times relative to the
profile's origin in ns (``start_ns``, ``duration_ns``) and ``start_ms``: :func:`relative_row`.
"""

from __future__ import annotations

import numpy as np

from ..analysis.span_views import FunctionShare, GapSummary, SpanSummary, StateLane
from ..model import STATE_NAMES, Profile, RequestRow, State


def _seconds(ns: float) -> float:
    return float(np.round(np.float64(ns) / 1e9, 6))


def _s(ns: float) -> float:
    return round(float(ns) / 1e9, 6)


def function_shares_json(shares: list[FunctionShare]) -> list[dict]:
    return [{"function": f.function, "file": f.file, "line": f.line, "self_s": _seconds(f.self_ns),
             "share": float(np.round(f.share, 4))} for f in shares]


def span_row(summary: SpanSummary, profile: Profile) -> dict:
    """One span of ``profviz spans``: ids, name, kind, status, thread, start (epoch s), start_ns,
    duration_s, samples, cpu_s, wait_s, runnable_s, gil_s, self_s, uncovered_s, approximate, attributes, top_functions."""
    span = summary.span
    thread = profile.threads[span.thread] if span.thread >= 0 else None
    by_state = summary.by_state_ns
    return {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "trace_id": span.trace_id,
        "name": span.name,
        "kind": span.kind,
        "status": span.status,
        "tid": thread.tid if thread else None,
        "thread_name": thread.name if thread else None,
        "start": summary.start_ns / 1e9,
        "start_ns": summary.start_ns,
        "duration_s": _seconds(summary.duration_ns),
        "samples": summary.samples,
        "cpu_s": _seconds(by_state[State.ON_CPU]),
        "wait_s": _seconds(by_state[State.WAITING]),
        "runnable_s": _seconds(by_state[State.RUNNABLE]),
        "gil_s": _seconds(by_state[State.GIL]),
        "self_s": _seconds(summary.self_ns),
        "uncovered_s": _seconds(summary.uncovered_ns),
        "approximate": summary.approximate,
        "attributes": span.attributes,
        "top_functions": function_shares_json(summary.top_functions),
    }


def gap_row(summary: GapSummary, profile: Profile) -> dict:
    """The "(no span)" row: the keys of :func:`span_row` (ids None) and its ``intervals``."""
    gap = summary.gap
    thread = profile.threads[gap.thread]
    by_state = gap.by_state_ns
    return {
        "span_id": None, "parent_id": None, "trace_id": None, "name": "(no span)", "kind": "none", "status": "unset",
        "tid": thread.tid, "thread_name": thread.name, "start": gap.start_ns / 1e9, "start_ns": gap.start_ns,
        "duration_s": _s(gap.duration_ns), "samples": summary.samples,
        "cpu_s": _s(by_state[State.ON_CPU]), "wait_s": _s(by_state[State.WAITING]),
        "runnable_s": _s(by_state[State.RUNNABLE]), "gil_s": _s(by_state[State.GIL]), "self_s": _s(by_state.sum()),
        "uncovered_s": _s(gap.uncovered_ns), "approximate": False, "attributes": {},
        "top_functions": function_shares_json(summary.top_functions),
        "intervals": [[a, b] for a, b in gap.intervals],
    }


def relative_row(row: dict, origin_ns: int) -> dict:
    """A row with its times made relative to ``origin_ns`` (in place): ``start_ns``, ``start_ms``, ``duration_ns``."""
    row["start_ns"] -= origin_ns
    row["start_ms"] = row.pop("start") * 1e3
    row["duration_ns"] = int(round(row["duration_s"] * 1e9))
    if "intervals" in row:
        row["intervals"] = [[a - origin_ns, b - origin_ns] for a, b in row["intervals"]]
    return row


def listing_rows(summaries: list[SpanSummary], gap: GapSummary | None, profile: Profile) -> list[dict]:
    """Every span's row, and the "(no span)" row last for a request."""
    rows = [span_row(summary, profile) for summary in summaries]
    if gap is not None:
        rows.append(gap_row(gap, profile))
    return rows


def cli_listing_json(profile_id: int, request: RequestRow | None, offset_ns: int, skipped: int, rows: list[dict]) -> dict:
    """``profviz spans --json``: times in epoch seconds."""
    return {
        "profile_id": profile_id,
        "request": None if request is None else {
            "id": request.id, "route": request.route, "method": request.method, "path": request.path,
            "tid": request.tid, "start": request.start_ns / 1e9, "duration_s": request.duration_ns / 1e9,
        },
        "offset_ns": offset_ns,
        "skipped_spans": skipped,
        "spans": rows,
    }


def api_listing_json(profile_id: int, request: RequestRow | None, origin_ns: int, offset_ns: int, skipped: int,
                     rows: list[dict]) -> dict:
    """``/api/profiles/<id>/spans``: the CLI listing with times relative to the profile's origin."""
    return {
        "profile_id": profile_id,
        "origin_ns": str(origin_ns),
        "request": None if request is None else {
            "id": request.id, "route": request.route, "method": request.method, "path": request.path,
            "tid": request.tid, "start_ns": request.start_ns - origin_ns, "start_ms": request.start_ns / 1e6,
            "duration_ns": request.duration_ns,
        },
        "offset_ns": offset_ns,
        "skipped_spans": skipped,
        "spans": [relative_row(row, origin_ns) for row in rows],
    }


def lane_json(lane: StateLane, origin_ns: int) -> dict:
    return {
        "thread": lane.thread, "tid": lane.tid, "name": lane.name,
        "start_ns": [t - origin_ns for t in lane.start_ns], "end_ns": [t - origin_ns for t in lane.end_ns],
        "state": [STATE_NAMES[s] for s in lane.states], "truncated": lane.truncated,
    }


def stored_span_json(span) -> dict:
    """A stored span as ``/api/spans`` lists it (absolute times)."""
    return {
        "trace_id": span.trace_id, "span_id": span.span_id, "parent_id": span.parent_id, "name": span.name, "kind": span.kind,
        "status": span.status, "start_ns": str(span.start_ns), "start_ms": span.start_ns / 1e6, "duration_ns": span.duration_ns,
        "pid": span.pid, "tid": span.tid, "thread_name": span.thread_name, "approximate": span.approximate,
        "source": span.source, "attributes": span.attributes,
    }
