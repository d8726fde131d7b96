"""What every backend stores of a profile: a summary row (queryable metadata) and two data blobs."""

from __future__ import annotations

import json
import operator
import time
from typing import Any, NamedTuple

from ..model import FORMAT_VERSION, Profile, SharedStackProfile, State
from .encoding import SMALL_COLUMN_LIMIT, encode_samples, encode_tables
from .shared_stacks import encode_shared

SUMMARY_FIELDS = (
    "kind", "pid", "cmdline", "start_ns", "duration_ns", "rate_hz", "sample_count", "error_count",
    "thread_count", "cpu_ns", "wait_ns", "runnable_ns", "gil_ns", "labels", "notes", "format_version", "created_ns",
)


class EncodedProfile(NamedTuple):
    """``summary``: the values of :data:`SUMMARY_FIELDS` (labels and notes as JSON text); the two blobs."""

    summary: tuple
    tables: bytes
    samples: bytes


def _sums(times: list[int], weights: list[int], states: list[int]) -> tuple[list[int], int, int]:
    """Weight by state (indexed by state value, 0..len(State)-1), first sample start, last sample end."""
    by_state = [0] * len(State)
    for state, weight in zip(states, weights):
        by_state[state] += weight
    first, end = (min(times), max(map(operator.add, times, weights))) if times else (0, 0)
    return by_state, first, end


def encode_profile(profile: Profile | SharedStackProfile) -> EncodedProfile:
    """A profile's summary and blobs. Counts and CPU/wait/runnable/GIL ns come from the samples; the
    rest from ``meta`` (kind, pid, cmdline, start_ns, duration_ns, rate_hz, error_count, labels, notes)."""
    meta = profile.meta
    thread_count = 1
    if type(profile) is SharedStackProfile:
        by_state, first, end = _sums(profile.times, profile.weights, profile.states)
        tables, samples = encode_shared(profile)
    else:
        if profile.sample_count < SMALL_COLUMN_LIMIT:
            # plain lists: numpy's per-call cost dominates on the many small per-request profiles
            cols = profile.column_lists()
            by_state, first, end = _sums(cols["time_ns"], cols["weight_ns"], cols["state"])
        else:
            cols = profile.columns()
            by_state = {s: int(cols["weight_ns"][cols["state"] == int(s)].sum()) for s in State}
            first, end = profile.time_range_ns
        tables, samples = encode_tables(profile), encode_samples(cols)
        thread_count = len(profile.threads)
    start_ns = int(meta.get("start_ns") or first or time.time_ns())
    duration_ns = int(meta.get("duration_ns") if meta.get("duration_ns") is not None else max(0, end - first))
    notes = meta.get("notes", [])
    summary = (
        str(meta.get("kind", "unknown")), meta.get("pid"), str(meta.get("cmdline", "")), start_ns, duration_ns,
        meta.get("rate_hz"), profile.sample_count, int(meta.get("error_count", 0)), thread_count,
        by_state[State.ON_CPU], by_state[State.WAITING], by_state[State.RUNNABLE], by_state[State.GIL],
        json.dumps(meta.get("labels", {})), "[]" if type(notes) is list and not notes else json.dumps(notes),
        FORMAT_VERSION, time.time_ns(),
    )
    return EncodedProfile(summary, tables, samples)


def decode_meta(row: Any) -> dict[str, Any]:
    """A stored summary row (a mapping with ``id`` and :data:`SUMMARY_FIELDS`) as profile metadata."""
    meta = dict(row)
    meta["labels"] = json.loads(meta.get("labels") or "{}")
    meta["notes"] = json.loads(meta.get("notes") or "[]")
    return meta
