"""Findings: profviz naming a route's bottleneck, with its evidence and the fix.

One detector per module in this package, each a pure function from a
:class:`~profviz.model.window.Window` and :class:`Thresholds` to :class:`Finding` objects;
:func:`run_detectors` runs every registered detector and sorts what they find by impact. The
``kind`` names are a stable vocabulary (:data:`KINDS`): the JSON contract, tests and users rely
on them. How each detector decides, and its thresholds: docs/findings.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

from ...model.window import Window, gc_paused

KINDS = (
    "n_plus_one_query", "repeated_remote_call", "full_scan", "slow_query", "connection_setup", "pool_wait",
    "sync_logging", "serialization", "large_payload", "lock_contention", "gil_contention", "cpu_hotspot", "saturation",
    "event_loop_blocked",
)


@dataclass(frozen=True)
class Thresholds:
    """When a detector speaks up (docs/findings.md explains each). Times in ms per request."""

    min_requests: int = 3  # a route finding needs this many requests showing it (or all of the route's, if fewer)
    repeat_min_count: int = 5  # the same statement / remote call this often in one request...
    repeat_min_total_ms: float = 20.0  # ...taking this long in all
    scan_min_ms: float = 10.0  # a statement this slow on average gets its plan read (full_scan)
    slow_query_ms: float = 50.0  # one statement's mean duration, for slow_query
    connect_min_ms: float = 5.0  # time opening connections, per request
    pool_wait_min_ms: float = 5.0
    logging_min_ms: float = 5.0  # a logging call blocking on I/O or the handler's lock
    lock_min_ms: float = 5.0
    gil_min_ms: float = 5.0  # waiting for the GIL, per request
    serialization_min_ms: float = 10.0
    large_payload_bytes: int = 1_000_000
    hotspot_min_share: float = 0.3  # one function's own computing, of the route's sampled time
    hotspot_min_cpu_ms: float = 5.0  # ...in requests that use this much CPU themselves (their measured thread CPU time)
    saturation_utilisation: float = 0.8  # busy workers over capacity, for a time bucket to count as saturated
    saturation_latency_ratio: float = 1.5  # a route's P95 when saturated over its P95 when calm (under 50%)
    min_share: float = 0.05  # a finding explains at least this much of the affected requests' time

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Thresholds":
        """Thresholds with ``values`` overriding defaults; raises ValueError naming an unknown key."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown finding threshold {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**{key: (int if known[key] == "int" else float)(value) for key, value in values.items()})


@dataclass
class Finding:
    """One bottleneck. ``route`` is ``"METHOD /route"``, None for an attach profile; ``impact_ms``
    the mean time per affected request the problem costs (what a fix could save); ``tail_share``
    the fraction of the route's extra tail time (requests over its P95 against those near its P50)
    it explains; ``share`` its fraction of the route's total request time; ``evidence`` what a
    person needs to believe it (statement or URL template with its count, call site, example
    request, profile and span ids, a query plan); ``fix`` what to do."""

    kind: str
    route: str | None
    title: str
    requests: int
    impact_ms: float
    tail_share: float
    share: float
    evidence: dict[str, Any]
    fix: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"finding kind {self.kind!r} is not one of {', '.join(KINDS)}")


Detector = Callable[[Window, Thresholds], list[Finding]]
DETECTORS: list[Detector] = []
"""The detectors :func:`run_detectors` runs, in order; each detector module registers its own."""


def detector(function: Detector) -> Detector:
    """Register ``function`` as a detector (a decorator)."""
    DETECTORS.append(function)
    return function


def run_detectors(window: Window, thresholds: Thresholds | None = None, detectors: Sequence[Detector] | None = None) -> list[Finding]:
    """Every finding of ``detectors`` (default: the registered ones) over ``window``, largest impact
    first; a finding whose fix lies in other routes (``gil_contention`` behind their CPU:
    :func:`caused_elsewhere`) after those whose fix lies in its own route."""
    limits = thresholds or Thresholds()
    with gc_paused():
        found = [finding for run in (DETECTORS if detectors is None else detectors) for finding in run(window, limits)]
    return sorted(found, key=lambda f: (caused_elsewhere(f), -f.impact_ms, f.kind, f.route or ""))


def caused_elsewhere(finding: Finding) -> bool:
    """A route's GIL waits behind other routes' CPU: the fix is there (their own findings name it)."""
    return finding.kind == "gil_contention" and bool(finding.evidence.get("computing_routes"))


from . import (  # noqa: E402 - each module registers its detector
    connections,
    cpu_hotspot,
    event_loop,
    gil,
    locks,
    logging_io,
    payload,
    pools,
    remote_calls,
    repeated_queries,
    saturation,
    serialization,
    slow_queries,
)

__all__ = ["DETECTORS", "KINDS", "Detector", "Finding", "Thresholds", "Window", "detector", "run_detectors",
           "connections", "cpu_hotspot", "event_loop", "gil", "locks", "logging_io", "payload", "pools", "remote_calls", "repeated_queries", "saturation", "serialization", "slow_queries"]
