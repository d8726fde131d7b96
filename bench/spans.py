"""Span processor overhead and span/sample join time.

1. Overhead of profviz's OpenTelemetry SpanProcessor on the thread that creates spans, in µs per
   span (a ``with start_as_current_span`` block with one attribute), against a bare SDK
   TracerProvider: stamping only, and stamping + recording to a store. With a store the creating
   thread only queues the span, but the writer thread converts and inserts it on the same GIL, so
   in this tight loop its work shows up in the per-span time; the process CPU per span is given
   too.
2. The join (``join_spans``) of 100k spans against 1M samples: 8 threads sampled at 100 Hz, each
   running back-to-back "requests" (a server span with three nested client spans and gaps).
   Goal: < 2 s.

Run: python bench/spans.py [--spans N] [--samples N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from profviz.analysis.correlate import join_spans, unspanned
from profviz.analysis.span_views import span_flame_mask, span_summaries
from profviz.shapes.spans import listing_rows
from profviz.model import Profile, Span, State
from profviz.otel import SpanProcessor
from profviz.store import open_store

THREADS = 8
RATE_HZ = 100


def per_span_us(provider: TracerProvider, count: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the µs per span to start, set one attribute and end a span."""
    tracer = provider.get_tracer("bench")
    runs = []
    for _ in range(repeat):
        begin = time.perf_counter()
        for i in range(count):
            with tracer.start_as_current_span("work", kind=SpanKind.INTERNAL) as span:
                span.set_attribute("i", i)
        runs.append((time.perf_counter() - begin) / count * 1e6)
    return statistics.median(runs)


def processor_overhead(count: int, repeat: int) -> None:
    bare = per_span_us(TracerProvider(), count, repeat)

    stamping = TracerProvider()
    stamping.add_span_processor(SpanProcessor())
    stamped = per_span_us(stamping, count, repeat)

    with tempfile.TemporaryDirectory() as scratch:
        store = open_store(os.path.join(scratch, "spans.db"))
        processor = SpanProcessor(store, queue_size=count * repeat + 1)
        recording = TracerProvider()
        recording.add_span_processor(processor)
        cpu_begin = time.process_time()
        recorded = per_span_us(recording, count, repeat)
        begin = time.perf_counter()
        processor.force_flush(600_000)
        drain_s = time.perf_counter() - begin
        cpu_per_span = (time.process_time() - cpu_begin) / (count * repeat) * 1e6
        written = processor.recorded
        dropped = processor.dropped
        recording.shutdown()

    print(f"span processor, {count} spans x {repeat} runs (median µs per span on the creating thread):")
    print(f"  bare SDK TracerProvider       {bare:7.2f} µs")
    print(f"  + profviz stamp (no store)    {stamped:7.2f} µs  (+{stamped - bare:.2f} µs, x{stamped / bare:.2f})")
    print(f"  + profviz stamp + store queue {recorded:7.2f} µs  (+{recorded - bare:.2f} µs, x{recorded / bare:.2f})")
    print(f"  background writer: {written} spans stored, {dropped} dropped, {drain_s:.2f} s left to drain after the"
          f" last span; process CPU per span with recording {cpu_per_span:.2f} µs (vs {bare:.2f} µs bare:"
          f" +{cpu_per_span - bare:.2f} µs of conversion and SQLite work, mostly on the writer thread)")


def synthetic_join_input(n_spans: int, n_samples: int, seed: int) -> tuple[Profile, list[Span]]:
    rng = np.random.default_rng(seed)
    profile = Profile({"kind": "attach", "pid": 4242})
    for i in range(THREADS):
        profile.add_thread(4242, 5000 + i, f"worker-{i}")
    stacks = [profile.intern_frames([("serve", "app.py", 1), (f"fn{k}", f"mod{k % 7}.py", k)]) for k in range(200)]
    interval = 1_000_000_000 // RATE_HZ
    t0 = 1_700_000_000_000_000_000
    per_thread = n_samples // THREADS
    n = per_thread * THREADS
    time_ns = t0 + np.repeat(np.arange(per_thread, dtype=np.int64) * interval, THREADS)
    profile.set_sample_columns({
        "time_ns": time_ns,
        "thread": np.tile(np.arange(THREADS, dtype=np.int32), per_thread),
        "stack": np.asarray(stacks, dtype=np.int32)[rng.integers(0, len(stacks), n)],
        "weight_ns": np.full(n, interval, dtype=np.int64),
        "state": rng.choice([1, 2, 3], n, p=[0.5, 0.45, 0.05]).astype(np.int8),
        "reason": np.full(n, -1, dtype=np.int32),
    })
    span_per_thread = n_spans // THREADS
    requests_per_thread = span_per_thread // 4
    duration = per_thread * interval
    spans: list[Span] = []
    for thread in range(THREADS):
        slot = duration // requests_per_thread
        starts = t0 + np.arange(requests_per_thread, dtype=np.int64) * slot + rng.integers(0, slot // 10, requests_per_thread)
        lengths = (slot * rng.uniform(0.5, 0.85, requests_per_thread)).astype(np.int64)
        for r, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
            trace = f"{thread:08x}{r:024x}"
            root = f"{thread:04x}{r:08x}0000"
            spans.append(Span(trace, root, None, "GET /orders", "server", "ok", start, start + length, thread=thread))
            child_start = start + length // 20
            for c in range(3):
                child_length = length // 5
                spans.append(Span(trace, f"{thread:04x}{r:08x}{c + 1:04x}", root, ("SELECT", "GET", "cache get")[c],
                                  "client", "ok", child_start, child_start + child_length, thread=thread))
                child_start += child_length + length // 20
    return profile, spans


def join_time(n_spans: int, n_samples: int, repeat: int) -> None:
    profile, spans = synthetic_join_input(n_spans, n_samples, seed=1)
    profile.columns()
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        join = join_spans(profile, spans)
        times.append(time.perf_counter() - begin)
    owned = float((join.owner >= 0).mean())
    begin = time.perf_counter()
    listing_rows(span_summaries(join), None, join.profile)
    rows_s = time.perf_counter() - begin
    begin = time.perf_counter()
    span_flame_mask(join, name="SELECT", include_children=True)
    mask_s = time.perf_counter() - begin
    root = spans[0]
    begin = time.perf_counter()
    unspanned(join, root.thread, root.start_ns, root.end_ns)
    gap_s = time.perf_counter() - begin
    print(f"join of {len(spans)} spans against {profile.sample_count} samples ({THREADS} threads, {RATE_HZ} Hz), "
          f"{repeat} runs:")
    print(f"  join_spans          median {statistics.median(times):.3f} s, best {min(times):.3f} s, first {times[0]:.3f} s"
          f"  (goal < 2 s; {owned:.0%} of samples inside a span)")
    print(f"  span_rows (table)   {rows_s:.3f} s for {len(spans)} rows with top-5 functions")
    print(f"  by-name mask        {mask_s:.3f} s (all 'SELECT' spans, children included)")
    print(f"  (no span) of one request {gap_s:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--processor-spans", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    processor_overhead(args.processor_spans, args.repeat)
    print()
    join_time(args.spans, args.samples, args.repeat)


if __name__ == "__main__":
    main()
