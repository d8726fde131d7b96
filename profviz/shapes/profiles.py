"""Profiles as the API and the CLI show them: the list entry, the detail, the summary of ``profviz show``."""

from __future__ import annotations

from ..analysis.summary import ProfileSummary
from ..model import STATE_NAMES, Profile, State


def _s(ns: float) -> float:
    return round(ns / 1e9, 6)


def profile_entry(meta: dict) -> dict:
    """One stored profile (``GET /api/profiles``, ``profviz list --json``) from its metadata."""
    return {
        "id": meta["id"],
        "kind": meta["kind"],
        "pid": meta["pid"],
        "cmdline": meta["cmdline"],
        "start_ms": meta["start_ns"] / 1e6,
        "duration_ns": int(meta["duration_ns"]),
        "rate_hz": meta["rate_hz"],
        "sample_count": int(meta["sample_count"]),
        "errors": int(meta["error_count"]),
        "threads": int(meta["thread_count"]),
        "cpu_ns": int(meta["cpu_ns"]),
        "wait_ns": int(meta["wait_ns"]),
        "runnable_ns": int(meta["runnable_ns"]),
        "gil_ns": int(meta.get("gil_ns") or 0),
        "labels": meta["labels"],
        "notes": meta["notes"],
    }


def profile_detail_json(meta: dict, profile: Profile, summary: ProfileSummary, origin_ns: int) -> dict:
    """``GET /api/profiles/<id>``: metadata, per-thread totals by state, time range (relative to ``origin_ns``), wait reasons."""
    first, end = profile.time_range_ns
    threads = sorted(summary.threads, key=lambda t: t.thread)
    return {
        "profile": profile_entry(meta),
        "origin_ns": str(origin_ns),
        "origin_ms": origin_ns / 1e6,
        "time_range": {"start_ns": first - origin_ns if profile.sample_count else 0,
                       "end_ns": end - origin_ns if profile.sample_count else 0},
        "threads": [
            {
                "index": t.thread, "pid": profile.threads[t.thread].pid, "tid": t.tid, "name": t.name,
                "wall_ns": t.wall_ns, "cpu_ns": t.cpu_ns, "wait_ns": t.wait_ns, "runnable_ns": t.runnable_ns,
                "gil_ns": t.gil_ns, "unknown_ns": t.unknown_ns, "samples": t.samples, "waits": [[r, ns] for r, ns in t.waits.items()],
            }
            for t in threads
        ],
        "states": {STATE_NAMES[s]: int(summary.by_state[s]) for s in (State.ON_CPU, State.WAITING, State.RUNNABLE, State.GIL, State.UNKNOWN)},
        "wait_reasons": [[r, ns] for r, ns in summary.waits.items()],
    }


def summary_json(summary: ProfileSummary) -> dict:
    """``profviz show --json``: id, kind, pid, start (epoch s), duration_s, sample_count, rate_hz,
    errors, notes, threads (times in s, waits by reason) and functions (times in s)."""
    meta = summary.meta
    return {
        "id": meta.get("id"),
        "kind": meta.get("kind"),
        "pid": meta.get("pid"),
        "start": (meta.get("start_ns") or 0) / 1e9,
        "duration_s": _s(int(meta.get("duration_ns") or 0)),
        "sample_count": summary.sample_count,
        "rate_hz": meta.get("rate_hz"),
        "errors": int(meta.get("error_count") or 0),
        "notes": list(meta.get("notes") or []),
        "threads": [
            {
                "tid": t.tid, "name": t.name, "wall_s": _s(t.wall_ns), "cpu_s": _s(t.cpu_ns), "wait_s": _s(t.wait_ns),
                "runnable_s": _s(t.runnable_ns), "gil_s": _s(t.gil_ns), "unknown_s": _s(t.unknown_ns), "samples": t.samples,
                "waits": {reason: _s(ns) for reason, ns in t.waits.items()},
            }
            for t in summary.threads
        ],
        "functions": [
            {
                "function": f.function, "file": f.file, "line": f.line, "total_s": _s(f.total_ns), "self_s": _s(f.self_ns),
                "cpu_s": _s(f.cpu_ns), "wait_s": _s(f.wait_ns), "runnable_s": _s(f.runnable_ns), "gil_s": _s(f.gil_ns), "samples": f.samples,
            }
            for f in summary.functions
        ],
    }
