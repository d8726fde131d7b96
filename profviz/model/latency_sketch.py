"""Latency sketches that merge: many requests' latencies as counts in logarithmic bins, so that a
fleet's or a week's percentiles come from adding counts, within a stated relative error.

The bins are ddsketch's logarithmic mapping (:data:`RELATIVE_ACCURACY`): a quantile read from a
sketch is within that relative error of the value at the same rank. The library keeps the mapping
and its guarantee; the counts are numpy arrays here (ddsketch's own stores and their protobuf
decoding loop over bins in Python: 545 us to decode one sketch, docs/fleet.md), so a sketch
of a batch is built, merged and read vectorised. Quantiles use ddsketch's rank definition
(``q * (count - 1)``, the lower bin), and tests check them against ddsketch's own on the same values.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_MULTIPLIER = MAPPING._multiplier  # the mapping's log-2 multiplier: key = ceil(log2(value) * it) (ddsketch's key())
_HEADER = struct.Struct("<4sqqqqqq")  # magic, first key, zero count, count, min, max, sum (ns)
_MAGIC = b"PVS1"
MAX_BINS = 1 << 16  # a sketch spans at most this many keys (1 ns to centuries is ~3,300)


class SketchError(ValueError):
    """Bytes that are not a latency sketch."""


@dataclass
class LatencySketch:
    """Counts of latencies (ns) by bin key from ``first_key``; latencies under 1 ns count as zero."""

    first_key: int
    counts: np.ndarray  # int64, one per key from first_key
    zero_count: int
    count: int
    min_ns: int
    max_ns: int
    sum_ns: int

    @classmethod
    def of(cls, latencies_ns: Sequence[int] | np.ndarray) -> "LatencySketch":
        """The sketch of some latencies in ns (an empty sketch for none)."""
        values = np.asarray(latencies_ns, dtype=np.int64)
        if values.size == 0:
            return cls.empty()
        return cls.of_groups(values, np.arange(values.size), np.zeros(1, dtype=np.int64))[0]

    @classmethod
    def of_groups(cls, latencies_ns: np.ndarray, order: np.ndarray, starts: np.ndarray) -> list["LatencySketch"]:
        """The sketches of groups of latencies at once: group ``i`` is ``latencies_ns[order[starts[i]:starts[i + 1]]]``
        (the last to the end of ``order``); each group non-empty. The keys, counts and extremes are
        computed for all groups together (one sketch a minute of a batch costs ~10 us, not ~60)."""
        values = np.asarray(latencies_ns, dtype=np.int64)[order]
        positive = values >= 1
        keys = np.zeros(values.size, dtype=np.int64)
        keys[positive] = _keys(values[positive])
        ends = np.append(starts[1:], values.size)
        lows, highs = np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)
        sums, zeros = np.add.reduceat(values, starts), np.add.reduceat(~positive, starts, dtype=np.int64)
        out = []
        for index, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
            group = keys[start:end][positive[start:end]]
            if group.size:
                first = int(group.min())
                counts = np.bincount(group - first).astype(np.int64)
            else:
                first, counts = 0, np.zeros(0, dtype=np.int64)
            out.append(cls(first, counts, int(zeros[index]), end - start, int(lows[index]), int(highs[index]), int(sums[index])))
        return out

    @classmethod
    def empty(cls) -> "LatencySketch":
        return cls(0, np.zeros(0, dtype=np.int64), 0, 0, 0, 0, 0)

    @staticmethod
    def merge_all(sketches: Iterable["LatencySketch"]) -> "LatencySketch":
        """One sketch of everything the given sketches counted."""
        parts = [s for s in sketches if s.count]
        if not parts:
            return LatencySketch.empty()
        binned = [s for s in parts if s.counts.size]
        if binned:
            first = min(s.first_key for s in binned)
            counts = np.zeros(max(s.first_key + s.counts.size for s in binned) - first, dtype=np.int64)
            for s in binned:
                counts[s.first_key - first:s.first_key - first + s.counts.size] += s.counts
        else:
            first, counts = 0, np.zeros(0, dtype=np.int64)
        return LatencySketch(first, counts, sum(s.zero_count for s in parts), sum(s.count for s in parts),
                             min(s.min_ns for s in parts), max(s.max_ns for s in parts), sum(s.sum_ns for s in parts))

    def quantile_ns(self, q: float) -> float | None:
        """The latency at quantile ``q`` (0..1), within RELATIVE_ACCURACY; None when empty."""
        if not self.count:
            return None
        rank = q * (self.count - 1)
        if rank < self.zero_count:
            return 0.0
        index = int(np.searchsorted(np.cumsum(self.counts), rank - self.zero_count, side="right"))
        index = min(index, self.counts.size - 1)
        return float(min(MAPPING.value(self.first_key + index), self.max_ns))

    def encode(self) -> bytes:
        return _HEADER.pack(_MAGIC, self.first_key, self.zero_count, self.count, self.min_ns, self.max_ns, self.sum_ns) \
            + self.counts.astype("<i8").tobytes()

    @classmethod
    def decode(cls, data: bytes) -> "LatencySketch":
        """A sketch from :meth:`encode`'s bytes; SketchError for anything else."""
        data = bytes(data)
        if len(data) < _HEADER.size or (len(data) - _HEADER.size) % 8:
            raise SketchError(f"a latency sketch is {_HEADER.size} bytes and 8 a bin, not {len(data)}")
        magic, first, zero, count, low, high, total = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise SketchError("not a profviz latency sketch (wrong magic)")
        counts = np.frombuffer(data, dtype="<i8", offset=_HEADER.size).astype(np.int64)
        if counts.size > MAX_BINS or (counts < 0).any() or zero < 0 or int(counts.sum()) + zero != count:
            raise SketchError("a latency sketch whose counts do not add up")
        return cls(first, counts, zero, count, low, high, total)


def _keys(values_ns: np.ndarray) -> np.ndarray:
    """The mapping's bin keys of latencies >= 1 ns (ddsketch's ``key()``, vectorised)."""
    return np.ceil(np.log2(values_ns.astype(np.float64)) * _MULTIPLIER).astype(np.int64)


@dataclass
class RouteSketch:
    """One (route, method)'s requests in a window as sketches: the app's time (``app``), queue +
    app where any request knew its queue time (``total``, else None: the same as ``app``), the
    count of errors (status >= 500 or an exception), and the span of the minutes they fill."""

    route: str
    method: str
    errors: int
    app: LatencySketch
    total: LatencySketch | None
    first_ns: int
    end_ns: int

    @property
    def count(self) -> int:
        return self.app.count
