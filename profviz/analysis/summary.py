"""The profile summary behind ``profviz show`` (text and ``--json``)."""

from __future__ import annotations

from ..model import Profile
from .calltree import SampleFilter, build_call_tree, function_stats, thread_stats


def _s(ns: int) -> float:
    return round(ns / 1e9, 6)


def profile_summary(profile: Profile, *, thread: str | int | None = None, max_functions: int = 200) -> dict:
    """Summarise a profile as the JSON of ``profviz show --json``.

    Keys: id, kind, pid, start (epoch s), duration_s, sample_count, rate_hz, errors, notes,
    threads (per thread: tid, name, wall_s, cpu_s, wait_s, runnable_s, unknown_s, waits by
    reason in s) and functions (function, file, line, total_s, self_s, cpu_s, wait_s,
    runnable_s, samples; cpu_s/wait_s split the inclusive total by state), heaviest total first,
    at most ``max_functions``. ``thread`` (tid or name) restricts everything to that thread.
    """
    meta = profile.meta
    selection = SampleFilter(threads=profile.find_threads(thread)) if thread is not None else SampleFilter()
    tree = build_call_tree(profile, selection)
    threads = [
        {
            "tid": t.tid,
            "name": t.name,
            "wall_s": _s(t.wall_ns),
            "cpu_s": _s(t.cpu_ns),
            "wait_s": _s(t.wait_ns),
            "runnable_s": _s(t.runnable_ns),
            "unknown_s": _s(t.unknown_ns),
            "samples": t.samples,
            "waits": {reason: _s(ns) for reason, ns in t.waits.items()},
        }
        for t in thread_stats(profile, selection)
    ]
    stats = function_stats(tree)
    by_self = sorted(stats, key=lambda f: -f.self_ns)[:max_functions]
    chosen = {id(f): f for f in stats[:max_functions]}
    chosen.update({id(f): f for f in by_self if f.self_ns > 0})
    functions = [
        {
            "function": f.function,
            "file": f.file,
            "line": f.line,
            "total_s": _s(f.total_ns),
            "self_s": _s(f.self_ns),
            "cpu_s": _s(f.cpu_ns),
            "wait_s": _s(f.wait_ns),
            "runnable_s": _s(f.runnable_ns),
            "samples": f.samples,
        }
        for f in sorted(chosen.values(), key=lambda f: (-f.total_ns, f.function))
    ]
    return {
        "id": meta.get("id"),
        "kind": meta.get("kind"),
        "pid": meta.get("pid"),
        "start": (meta.get("start_ns") or 0) / 1e9,
        "duration_s": _s(int(meta.get("duration_ns") or 0)),
        "sample_count": int(tree.mask.sum()),
        "rate_hz": meta.get("rate_hz"),
        "errors": int(meta.get("error_count") or 0),
        "notes": list(meta.get("notes") or []),
        "threads": threads,
        "functions": functions,
    }
