"""Store size per sample, call-tree build time and profviz-format export/import time on a
realistic synthetic profile.

The profile: 8 threads sampled at 100 Hz for ~21 minutes (1M samples by default), 30k distinct
stacks drawn from a call tree whose paths share prefixes (depth up to ~40), a thread's consecutive samples
repeating the previous stack and state 85% of the time, states mixed (CPU, waiting with a reason,
runnable) and tied to the stack as in real services.

Also: the writer-thread CPU to encode one small per-request profile (what the WSGI middleware
saves many of), for a 3-sample pyinstrument-like and a 40-sample sampler-like profile.

Goals: <= 4 stored bytes per sample; a call tree over 1M samples in < 1 s.
Run: python bench/store_and_tree.py [--samples N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from profviz.analysis.calltree import SampleFilter, build_call_tree, function_stats
from profviz.formats import profviz_json, speedscope
from profviz.model import Profile, State
from profviz.store import open_store
from profviz.store.summary import encode_profile

THREADS = 8
RATE_HZ = 100
REASONS = ["socket recv", "lock acquire", "sleep", "poll"]


def synthetic_profile(samples: int, seed: int, n_stacks: int) -> Profile:
    rng = np.random.default_rng(seed)
    profile = Profile({"kind": "attach", "pid": 4242, "cmdline": "python app.py", "rate_hz": float(RATE_HZ)})
    threads = [profile.add_thread(4242, 5000 + i, "MainThread" if i == 0 else f"worker-{i}") for i in range(THREADS)]
    modules = [f"app/{name}.py" for name in ("views", "models", "db", "cache", "serializers", "auth", "utils", "http", "templates", "tasks")]
    functions = [(f"fn_{i % 1500}", modules[i % 1500 % len(modules)], 10 + (i * 7) % 400) for i in range(6000)]
    roots = [profile.intern_frames([("<module>", "app/main.py", 1), ("serve", "app/main.py", 40)]),
             profile.intern_frames([("Thread._bootstrap", "threading.py", 1002), ("Thread.run", "threading.py", 982), ("worker_loop", "app/tasks.py", 12)])]
    stacks = list(roots)
    depth = {s: 2 + (i == 1) for i, s in enumerate(roots)}
    while len(stacks) < n_stacks:
        parent = stacks[int(len(stacks) * rng.random() ** 0.5)] if rng.random() < 0.9 else roots[rng.integers(2)]
        if depth[parent] >= 40:
            continue
        frame = functions[int(rng.zipf(1.4) - 1) % len(functions)]
        stack = profile.intern_stack(parent, profile.intern_frame(*frame))
        if stack not in depth:
            depth[stack] = depth[parent] + 1
            stacks.append(stack)
    stack_ids = np.asarray(stacks, dtype=np.int32)
    typical_state = rng.choice([int(State.ON_CPU), int(State.WAITING), int(State.RUNNABLE)], len(stacks), p=[0.5, 0.45, 0.05])
    typical_reason = np.where(typical_state == int(State.WAITING), rng.integers(0, len(REASONS), len(stacks)), -1)
    reason_ids = np.asarray([profile.intern_string(r) for r in REASONS], dtype=np.int32)

    per_thread = samples // THREADS
    columns = {k: [] for k in ("time_ns", "thread", "stack", "weight_ns", "state", "reason")}
    start = 1_700_000_000_000_000_000
    period = 1_000_000_000 // RATE_HZ
    for t in threads:
        change = rng.random(per_thread) < 0.15
        change[0] = True
        picks = np.minimum(rng.zipf(1.2, per_thread) - 1, len(stacks) - 1)
        choice = picks[np.maximum.accumulate(np.where(change, np.arange(per_thread), 0))]
        state = typical_state[choice].copy()
        flip = rng.random(per_thread) < 0.03
        state[flip] = int(State.RUNNABLE)
        reason = np.where(state == int(State.WAITING), reason_ids[np.maximum(typical_reason[choice], 0)], -1)
        jitter = rng.integers(-200_000, 200_000, per_thread)
        columns["time_ns"].append(start + t * 1_000_000 + np.arange(per_thread, dtype=np.int64) * period + jitter)
        columns["thread"].append(np.full(per_thread, t, np.int32))
        columns["stack"].append(stack_ids[choice])
        columns["weight_ns"].append(np.full(per_thread, period, np.int64))
        columns["state"].append(state.astype(np.int8))
        columns["reason"].append(reason.astype(np.int32))
    merged = {k: np.concatenate(v) for k, v in columns.items()}
    order = np.argsort(merged["time_ns"], kind="stable")
    profile.set_sample_columns({k: v[order] for k, v in merged.items()})
    return profile


def small_request_profile(seed: int, samples: int, frames: int, paths: int) -> Profile:
    """A per-request profile: ``paths`` call paths sharing a framework prefix, 1 ms (deep) or 10 ms samples."""
    rng = np.random.default_rng(seed)
    period = 1_000_000 if samples <= 3 else 10_000_000
    profile = Profile({"kind": "request", "pid": 4242, "cmdline": "GET /orders/17", "start_ns": 1_700_000_000_000_000_000,
                       "duration_ns": samples * period, "rate_hz": 1e9 / period,
                       "labels": {"request_id": f"r{seed}", "route": "/orders/<id>", "method": "GET", "status": 200}})
    thread = profile.add_thread(4242, 5000, "MainThread")
    calls = [(f"fn_{i}", f"/srv/venv/lib/python3.11/site-packages/pkg/mod_{i % 12}.py", 10 + 7 * i) for i in range(frames)]
    shared = frames // 5
    stacks = [profile.intern_frames(calls[:shared] + calls[shared + k::paths]) for k in range(paths)]
    now = 1_700_000_000_000_000_000
    for _ in range(samples):
        now += period + int(rng.integers(-period // 50, period // 50))
        state = State.ON_CPU if rng.random() < 0.6 else State.WAITING
        profile.append_sample(now, thread, stacks[int(rng.integers(0, paths))], period, state,
                              "socket recv" if state == State.WAITING else None)
    return profile


def small_profile_figures(count: int = 300) -> None:
    """Print per-profile encode CPU (thread time, best of 5 rounds) and stored bytes for small profiles."""
    for label, samples, frames, paths in (("3-sample deep", 3, 30, 3), ("40-sample sampler", 40, 100, 8)):
        best = float("inf")
        for _ in range(5):
            profiles = [small_request_profile(i, samples, frames, paths) for i in range(count)]
            began = time.thread_time_ns()
            encoded = [encode_profile(profile) for profile in profiles]
            best = min(best, (time.thread_time_ns() - began) / count / 1000)
        size = sum(len(tables) + len(blob) for _, tables, blob in encoded) / count
        print(f"small profile ({label}: {samples} samples, {len(profiles[0].frame_function)} frames, "
              f"{len(profiles[0].stack_prefix)} stacks): encode {best:.0f} us CPU/profile, {size:.0f} blob bytes")


def timed(fn, repeat: int = 1):
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--stacks", type=int, default=30_000, help="distinct stacks (default 30000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    build_s, profile = timed(lambda: synthetic_profile(args.samples, args.seed, args.stacks))
    n = profile.sample_count
    cols = profile.columns()
    by_thread = np.lexsort((cols["time_ns"], cols["thread"]))
    same_thread = cols["thread"][by_thread][1:] == cols["thread"][by_thread][:-1]
    repeats = float(np.mean((cols["stack"][by_thread][1:] == cols["stack"][by_thread][:-1])[same_thread]))
    print(f"synthetic profile: {n} samples, {len(profile.threads)} threads, {len(profile.stack_prefix)} stacks, "
          f"{len(profile.frame_function)} frames, built in {build_s:.2f} s")

    with tempfile.TemporaryDirectory(prefix="profviz-bench-") as tmp:
        store = open_store(os.path.join(tmp, "bench.db"))
        encode_s, _ = timed(lambda: encode_profile(profile), repeat=3)
        save_s, profile_id = timed(lambda: store.save_profile(profile))
        stored = store.profile_bytes(profile_id)
        per_sample = stored / n
        print(f"store: {stored} bytes = {per_sample:.2f} bytes/sample (goal <= 4: {per_sample / 4:.2f}x of budget), "
              f"encode {encode_s:.2f} s, save {save_s:.2f} s")
        load_s, loaded = timed(lambda: store.load_profile(profile_id))
        print(f"store: load {load_s:.2f} s")
        store.close()

    first_s, tree = timed(lambda: build_call_tree(loaded))
    cached_s, _ = timed(lambda: build_call_tree(loaded), repeat=3)
    thread_s, _ = timed(lambda: build_call_tree(loaded, SampleFilter(threads=[1])), repeat=3)
    stats_s, stats = timed(lambda: function_stats(tree), repeat=3)
    print(f"call tree over {n} samples: first build {first_s:.3f} s (includes node_table), cached {cached_s:.3f} s "
          f"(goal < 1 s: {cached_s:.2f}x), one thread {thread_s:.3f} s; {tree.nodes.size} nodes; function_stats {stats_s:.3f} s ({len(stats)} functions)")

    for module in (profviz_json, speedscope):
        dump_s, blob = timed(lambda: module.dump(loaded))
        load_s, again = timed(lambda: module.load(blob))
        assert again.sample_count == n
        print(f"{module.NAME} format: export {dump_s:.2f} s, import {load_s:.2f} s, {len(blob) / 1e6:.1f} MB ({len(blob) / n:.1f} bytes/sample)")
    small_profile_figures()
    print(f"(a thread's consecutive samples repeat its previous stack {repeats:.0%} of the time; threads interleave in time order)")


if __name__ == "__main__":
    main()
