"""Findings: profviz naming a route's bottleneck, with its evidence and the fix.

One detector per module in this package, each a pure function from a :class:`Window` (stored
requests, their samples and spans, or an attach profile alone) to :class:`Finding` objects;
:func:`run_detectors` runs every registered detector and sorts what they find by impact. The
``kind`` names are a stable vocabulary (:data:`KINDS`): the JSON contract, tests and users rely on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ...model import Profile, RequestRow, Span

KINDS = (
    "n_plus_one_query", "repeated_remote_call", "full_scan", "slow_query", "connection_setup", "pool_wait",
    "sync_logging", "serialization", "large_payload", "lock_contention", "gil_contention", "cpu_hotspot", "saturation",
)


@dataclass
class Window:
    """What detectors look at: requests of a time window with the profiles and spans stored for
    them (``profiles`` by profile id), or an attach ``profile`` alone (no requests)."""

    requests: Sequence[RequestRow] = ()
    profiles: dict[int, Profile] = field(default_factory=dict)
    spans: Sequence[Span] = ()
    profile: Profile | None = None


@dataclass
class Finding:
    """One bottleneck. ``route`` is None for an attach profile; ``impact_ms`` the mean time per
    affected request the problem costs (what a fix could save); ``tail_share`` the fraction of
    the route's extra tail time (requests over its P95 against those near its P50) it explains;
    ``share`` its fraction of the route's total request time; ``evidence`` what a person needs
    to believe it (statement or URL template with its count, call site, example request,
    profile and span ids, a query plan); ``fix`` what to do."""

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


Detector = Callable[[Window], list[Finding]]
DETECTORS: list[Detector] = []
"""The detectors :func:`run_detectors` runs, in order; each detector module appends its own."""


def run_detectors(window: Window, detectors: Sequence[Detector] | None = None) -> list[Finding]:
    """Every finding of ``detectors`` (default: the registered ones) over ``window``, largest impact first."""
    found = [finding for detector in (DETECTORS if detectors is None else detectors) for finding in detector(window)]
    return sorted(found, key=lambda f: (-f.impact_ms, f.kind, f.route or ""))
