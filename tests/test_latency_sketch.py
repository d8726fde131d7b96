"""Mergeable latency sketches (profviz/model/latency_sketch.py) against ddsketch's own and exact percentiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ddsketch import DDSketch

from profviz.model.latency_sketch import MAPPING, RELATIVE_ACCURACY, LatencySketch, SketchError

QS = (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def latencies(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.lognormal(16, 1.2, n), rng.uniform(1e5, 1e6, n // 10), [0, 0, 3]]).astype(np.int64)


def test_keys_are_ddsketch_s_keys():
    values = latencies(50_000)
    values = values[values >= 1]
    ours = LatencySketch.of(values)
    expected = np.array([MAPPING.key(float(v)) for v in values])
    keys = np.repeat(np.arange(ours.first_key, ours.first_key + ours.counts.size), ours.counts)
    assert np.array_equal(np.sort(expected), keys)


def test_quantiles_are_ddsketch_s_and_within_its_error_of_the_exact_values():
    values = latencies(20_000)
    ours = LatencySketch.of(values)
    theirs = DDSketch(RELATIVE_ACCURACY)
    for value in values:
        theirs.add(float(value))
    ordered = np.sort(values)
    for q in QS:
        got = ours.quantile_ns(q)
        assert got == pytest.approx(min(theirs.get_quantile_value(q), ours.max_ns), rel=1e-12), q
        exact = ordered[int(math.floor(q * (len(values) - 1)))]  # ddsketch's rank, the lower one
        assert abs(got - exact) <= RELATIVE_ACCURACY * exact + 1e-9, (q, got, exact)
    assert (ours.count, ours.min_ns, ours.max_ns, ours.sum_ns, ours.zero_count) == (
        len(values), values.min(), values.max(), values.sum(), 2)


def test_merged_parts_are_the_sketch_of_the_whole():
    values = latencies(30_000, seed=7)
    parts = [LatencySketch.of(chunk) for chunk in np.array_split(values, 13)] + [LatencySketch.empty()]
    merged, whole = LatencySketch.merge_all(parts), LatencySketch.of(values)
    assert merged.first_key == whole.first_key and np.array_equal(merged.counts, whole.counts)
    assert (merged.count, merged.zero_count, merged.min_ns, merged.max_ns, merged.sum_ns) == (
        whole.count, whole.zero_count, whole.min_ns, whole.max_ns, whole.sum_ns)
    assert LatencySketch.merge_all([]).quantile_ns(0.5) is None


def test_encoded_sketches_round_trip_and_other_bytes_are_refused():
    sketch = LatencySketch.of(latencies(1000))
    again = LatencySketch.decode(sketch.encode())
    assert again.first_key == sketch.first_key and np.array_equal(again.counts, sketch.counts)
    assert again.quantile_ns(0.95) == sketch.quantile_ns(0.95)
    data = sketch.encode()
    for bad in (b"", b"PVS1", b"XXXX" + data[4:], data[:-3], data[:-8]):
        with pytest.raises(SketchError):
            LatencySketch.decode(bad)


def test_sketches_of_groups_are_each_group_s_sketch():
    values = latencies(5000, seed=11)
    groups = np.random.default_rng(2).integers(0, 40, values.size)
    order = np.argsort(groups, kind="stable")
    starts = np.flatnonzero(np.diff(groups[order])) + 1
    starts = np.concatenate(([0], starts))
    for sketch, group in zip(LatencySketch.of_groups(values, order, starts), np.unique(groups)):
        alone = LatencySketch.of(values[groups == group])
        assert sketch.first_key == alone.first_key and np.array_equal(sketch.counts, alone.counts)
        assert (sketch.count, sketch.zero_count, sketch.min_ns, sketch.max_ns, sketch.sum_ns) == (
            alone.count, alone.zero_count, alone.min_ns, alone.max_ns, alone.sum_ns)
