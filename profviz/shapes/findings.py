"""JSON of findings (``profviz findings --json`` and ``/api/findings``)."""

from __future__ import annotations

from ..analysis.findings import Finding


def finding_json(finding: Finding) -> dict:
    return {
        "kind": finding.kind, "route": finding.route, "title": finding.title, "requests": finding.requests,
        "impact_ms": finding.impact_ms, "tail_share": finding.tail_share, "share": finding.share,
        "evidence": finding.evidence, "fix": finding.fix,
    }


def findings_json(findings: list[Finding]) -> dict:
    """``{"findings": [...]}``, in the order given (largest impact first). Each: kind, route
    ("METHOD /route" or null), title, requests, impact_ms, tail_share, share, evidence (statement
    or url with count_per_request, call_site {function, file, line}, examples [{request, profile,
    spans}], plan...), fix."""
    return {"findings": [finding_json(f) for f in findings]}
