"""The findings registry: its stable vocabulary, and every detector's findings sorted by impact."""

from __future__ import annotations

import pytest

from profviz.analysis.findings import KINDS, Finding, Window, run_detectors


def finding(kind: str, route: str, impact_ms: float) -> Finding:
    return Finding(kind, route, f"{kind} on {route}", 3, impact_ms, 0.5, 0.2, {"count": 3}, "fix it")


def test_findings_of_every_detector_come_largest_impact_first():
    detectors = [
        lambda window: [finding("slow_query", "/a", 12.0), finding("cpu_hotspot", "/b", 40.0)],
        lambda window: [finding("n_plus_one_query", "/a", 25.0)],
        lambda window: [],
    ]
    found = run_detectors(Window(), detectors)
    assert [(f.kind, f.impact_ms) for f in found] == [("cpu_hotspot", 40.0), ("n_plus_one_query", 25.0), ("slow_query", 12.0)]
    assert run_detectors(Window(), []) == []


def test_the_registry_runs_what_is_registered_and_the_vocabulary_is_closed(monkeypatch):
    monkeypatch.setattr("profviz.analysis.findings.DETECTORS", [lambda window: [finding("pool_wait", "/c", 1.0)]])
    assert [f.kind for f in run_detectors(Window())] == ["pool_wait"]
    assert len(set(KINDS)) == 13 and "n_plus_one_query" in KINDS and "saturation" in KINDS
    with pytest.raises(ValueError, match="not one of"):
        finding("slow_endpoint", "/a", 1.0)
