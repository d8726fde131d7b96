"""Routes, requests, the tail diff and version comparisons as the API (``/api/routes``, ``/api/requests``...) and the CLI show them."""

from __future__ import annotations

from dataclasses import asdict

from ..analysis.load import KNEE_FACTOR, LoadCurve
from ..analysis.routes import HistogramBin, LatencyPoint, RouteStats, TailDiff, Utilisation
from ..analysis.versions import VersionRoute
from ..model import RequestRow
from .diff import diff_tree_json


def route_json(row: RouteStats) -> dict:
    return asdict(row)


def histogram_json(bins: list[HistogramBin]) -> list[dict]:
    return [asdict(b) for b in bins]


def series_json(points: list[LatencyPoint]) -> list[dict]:
    return [asdict(p) for p in points]


def utilisation_json(utilisation: Utilisation) -> dict:
    return asdict(utilisation)


def load_json(curve: LoadCurve) -> dict:
    """``/api/routes/load``, ``profviz routes --load --json``: utilisations as fractions, latencies in ms."""
    return {**asdict(curve), "knee_factor": KNEE_FACTOR}


def request_entry(row: RequestRow) -> dict:
    """One timed request (``/api/requests``, ``profviz requests --json``): times in ms (``duration_ms``
    the app's, ``queue_ms`` before it or None when unknown, ``total_ms`` both), start (of the app) in epoch s."""
    return {
        "id": row.id, "route": row.route, "method": row.method, "path": row.path, "status": row.status,
        "duration_ms": round(row.duration_ns / 1e6, 3), "queue_ms": None if row.queue_ns is None else round(row.queue_ns / 1e6, 3),
        "total_ms": round(row.total_ns / 1e6, 3), "cpu_ms": round(row.cpu_ns / 1e6, 3), "start": row.start_ns / 1e9,
        "profile_id": row.profile_id, "pid": row.pid, "tid": row.tid, "error": row.error,
    }


def request_detail_json(row: RequestRow, profile_meta: dict | None) -> dict:
    """``/api/requests/<id>``: the entry, its size and labels, and its profile's summary (None without one)."""
    entry = {**request_entry(row), "response_bytes": row.response_bytes, "labels": row.labels, "profile": None}
    if profile_meta is not None:
        entry["profile"] = {
            "id": profile_meta["id"], "kind": profile_meta["kind"], "sample_count": profile_meta["sample_count"],
            "capture": profile_meta["labels"].get("capture"), "collector": profile_meta["labels"].get("collector"),
            "cpu_ms": round(profile_meta["cpu_ns"] / 1e6, 3), "wait_ms": round(profile_meta["wait_ns"] / 1e6, 3),
        }
    return entry


def tail_diff_json(diff: TailDiff) -> dict:
    return {
        "tail_profiles": diff.tail_profiles,
        "typical_profiles": diff.typical_profiles,
        "tail_sampled_ms": diff.tail_sampled_ms,
        "typical_sampled_ms": diff.typical_sampled_ms,
        "extra_ms": diff.extra_ms,
        "frames": [asdict(frame) for frame in diff.frames],
        "tree": diff_tree_json(diff.tree),
    }


def version_row_json(row: VersionRoute) -> dict:
    """One route in two versions: each side's route row (None where it served no request) and the P95 change."""
    return {"route": row.route, "method": row.method, "a": None if row.a is None else route_json(row.a),
            "b": None if row.b is None else route_json(row.b), "p95_change": row.p95_change}
