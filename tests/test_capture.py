"""Tail capture's keep-or-drop decision, on made-up durations (no clocks, no threads)."""

from __future__ import annotations

from collections import Counter

from profviz.middleware.capture import TailCapture
from profviz.middleware.options import Options

MS = 1_000_000
SAMPLES = [(0, 1, 0, 10 * MS, None)]  # one sample: the request was sampled


def decisions(durations_ms, **options) -> list[str | None]:
    capture = TailCapture(Options(**options), Counter())
    return [capture.observe(("/r", "GET"), int(d * MS), 0, SAMPLES) for d in durations_ms]


def test_before_the_percentile_decides_the_slowest_request_so_far_is_kept():
    kinds = decisions([50, 40, 60, 55, 90, 30], tail_min_requests=20, baseline_per_minute=0)
    assert kinds == ["tail", None, "tail", None, "tail", None]


def test_after_warming_up_the_running_percentile_decides():
    durations = [10 + (i % 7) for i in range(40)] + [15, 100]
    kinds = decisions(durations, tail_min_requests=20, tail_percentile=95, baseline_per_minute=0)
    assert kinds[-1] == "tail" and kinds[-2] is None
    assert kinds[20:40].count("tail") <= 3


def test_a_new_route_keeps_a_minute_of_typical_requests_at_once():
    durations = [10, 12, 14, 16, 18] * 10
    kinds = decisions(durations, tail_min_requests=5, baseline_per_minute=6)
    assert kinds.count("baseline") == 6


def test_threshold_only_keeps_nothing_else_as_tail():
    kinds = decisions([50, 60, 70, 90], tail_threshold_ms=80, tail_percentile=None, baseline_per_minute=0)
    assert kinds == [None, None, None, "tail"]
