"""Load and export times of a 1M-sample profile in every format profviz reads and writes (issue
21's goal: under 1 s each), and the peak memory of a load against the file's size (goal: under 10x).

The profile (:func:`big_profile`): 8 threads, 5,000 stacks up to 40 frames deep over 2,000
functions, sharing prefixes, runs of samples in one stack, every state, wait reasons on the
waiting samples. Each format's file is written once (timed: the export), then loaded in a fresh
process (timed, the best of ``--repeat``; then once more under ``tracemalloc`` for the peak of
what Python and numpy allocate, plus the file's bytes). Usage:
``python bench/formats_1m.py [--samples 1000000] [--repeat 3] [--formats pprof,speedscope]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from profviz.formats import dump, names  # noqa: E402
from profviz.model import Profile, State  # noqa: E402

LOAD = """
import sys, time, tracemalloc
from profviz.formats import load_any
data = open(sys.argv[1], "rb").read()
best = None
for _ in range(int(sys.argv[2])):
    began = time.perf_counter()
    profile = load_any(data, sys.argv[1])
    took = time.perf_counter() - began
    best = took if best is None else min(best, took)
    count = profile.sample_count
    del profile
tracemalloc.start()
profile = load_any(data, sys.argv[1])
peak = tracemalloc.get_traced_memory()[1] + len(data)
print(best, peak, count)
"""


def big_profile(samples: int) -> Profile:
    """As a sampler sees a service: stacks that share prefixes (each new one grows from a cut of an
    earlier one), and a thread that stays in one stack for a run of samples (4 on average)."""
    rng = np.random.default_rng(1)
    profile = Profile({"kind": "attach", "pid": 4242, "cmdline": "python app.py", "rate_hz": 100.0, "start_ns": 1_700_000_000 * 10**9})
    threads = [profile.add_thread(4242, 1000 + n, f"worker-{n}") for n in range(8)]
    functions = [(f"module{n % 50}.function_{n}", f"/srv/app/module{n % 50}.py", 10 + n % 300) for n in range(2000)]
    paths = [[functions[int(i)] for i in rng.integers(0, len(functions), 8)]]
    while len(paths) < 5000:
        base = paths[int(rng.integers(0, len(paths)))]
        cut = int(rng.integers(1, len(base) + 1))
        paths.append(base[:cut] + [functions[int(i)] for i in rng.integers(0, len(functions), int(rng.integers(1, 6)))][: 40 - cut])
    stacks = [profile.intern_frames(path) for path in paths]
    reason = profile.intern_string("socket recv 10.0.0.5:5432")
    per_thread = samples // len(threads)
    stack_col, state_col, thread_col, time_col = [], [], [], []
    for thread in threads:
        changes = rng.random(per_thread) < 0.25
        picks = rng.integers(0, len(stacks), per_thread)
        states = rng.choice([int(State.ON_CPU), int(State.WAITING), int(State.RUNNABLE), int(State.GIL)], per_thread, p=[0.5, 0.4, 0.05, 0.05])
        run_id = np.cumsum(changes)
        stack_col.append(np.asarray(stacks)[picks[np.maximum.accumulate(np.where(changes, np.arange(per_thread), 0))]])
        state_col.append(states[np.maximum.accumulate(np.where(changes, np.arange(per_thread), 0))])
        thread_col.append(np.full(per_thread, thread))
        time_col.append(1_700_000_000 * 10**9 + np.arange(per_thread, dtype=np.int64) * 10_000_000)
        del run_id
    state = np.concatenate(state_col)
    profile.set_sample_columns({
        "time_ns": np.concatenate(time_col), "thread": np.concatenate(thread_col).astype(np.int32),
        "stack": np.concatenate(stack_col).astype(np.int32), "weight_ns": np.full(len(state), 10_000_000, dtype=np.int64),
        "state": state.astype(np.int8), "reason": np.where(state == int(State.WAITING), reason, -1).astype(np.int32),
    })
    return profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default=",".join(names(dumpable=True)))
    args = parser.parse_args()
    profile = big_profile(args.samples)
    tmp = tempfile.mkdtemp(prefix="profviz-bench-formats-")
    print(f"{args.samples:,} samples, {len(profile.stack_prefix):,} stack nodes, {len(profile.threads)} threads")
    print(f"{'format':<13} {'export s':>9} {'file MB':>9} {'load s':>8} {'peak MB':>9} {'peak/file':>9} {'peak/raw':>9} {'samples read':>13}")
    for name in args.formats.split(","):
        began = time.perf_counter()
        data = dump(profile, name)
        exported = time.perf_counter() - began
        path = os.path.join(tmp, f"profile.{name}")
        with open(path, "wb") as out:
            out.write(data)
        result = subprocess.run([sys.executable, "-c", LOAD, path, str(args.repeat)], capture_output=True, text=True, timeout=600)
        if result.returncode:
            print(f"{name:<13} {exported:>9.2f} {len(data) / 1e6:>9.1f}  load failed: {result.stderr.strip().splitlines()[-1][:120]}")
            continue
        took, peak, count = result.stdout.split()
        raw = len(gzip.decompress(data)) if data[:2] == b"\x1f\x8b" else len(data)  # a gzip file: also against what it holds
        print(f"{name:<13} {exported:>9.2f} {len(data) / 1e6:>9.1f} {float(took):>8.2f} {int(peak) / 1e6:>9.0f}"
              f" {int(peak) / max(1, len(data)):>9.1f} {int(peak) / max(1, raw):>9.1f} {int(count):>13,}")
    print(json.dumps({"goal": "load and export < 1 s each, peak memory < 10x the file (peak/raw: a gzip file's content)"}))


if __name__ == "__main__":
    main()
