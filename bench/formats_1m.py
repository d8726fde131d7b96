"""Load and export times of a 1M-sample profile in every format profviz reads and writes (issue
21's goal: under 1 s each), and the peak memory of a load against the file's size (goal: under 10x).

The profile: 8 threads, 5,000 distinct stacks 10-40 frames deep over 2,000 functions, every
state, wait reasons on the waiting samples. Each format's file is written once (timed: the
export), then loaded in a fresh process (timed, the best of ``--repeat``; peak memory from the
process's maximum resident size, less that of the same process before the load). Usage:
``python bench/formats_1m.py [--samples 1000000] [--repeat 3] [--formats pprof,speedscope]``.
"""

from __future__ import annotations

import argparse
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
import resource, sys, time
from profviz.formats import load_any
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
best = None
for _ in range(int(sys.argv[2])):
    began = time.perf_counter()
    profile = load_any(data, sys.argv[1])
    took = time.perf_counter() - began
    best = took if best is None else min(best, took)
    count = profile.sample_count
    del profile
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(best, (peak - before) * 1024, count)
"""


def big_profile(samples: int) -> Profile:
    rng = np.random.default_rng(1)
    profile = Profile({"kind": "attach", "pid": 4242, "cmdline": "python app.py", "rate_hz": 100.0, "start_ns": 1_700_000_000 * 10**9})
    threads = [profile.add_thread(4242, 1000 + n, f"worker-{n}") for n in range(8)]
    functions = [(f"module{n % 50}.function_{n}", f"/srv/app/module{n % 50}.py", 10 + n % 300) for n in range(2000)]
    stacks = []
    for _ in range(5000):
        depth = int(rng.integers(10, 41))
        stacks.append(profile.intern_frames([functions[int(i)] for i in rng.integers(0, len(functions), depth)]))
    reason = profile.intern_string("socket recv 10.0.0.5:5432")
    thread_col = rng.integers(0, len(threads), samples)
    state_col = rng.choice([int(State.ON_CPU), int(State.WAITING), int(State.RUNNABLE), int(State.GIL)], samples, p=[0.5, 0.4, 0.05, 0.05])
    profile.set_sample_columns({
        "time_ns": (1_700_000_000 * 10**9 + np.arange(samples, dtype=np.int64) * 1_250_000 // len(threads)),
        "thread": thread_col.astype(np.int32), "stack": rng.integers(0, len(stacks), samples).astype(np.int32),
        "weight_ns": np.full(samples, 10_000_000, dtype=np.int64), "state": state_col.astype(np.int8),
        "reason": np.where(state_col == int(State.WAITING), reason, -1).astype(np.int32),
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
    print(f"{'format':<13} {'export s':>9} {'file MB':>9} {'load s':>8} {'peak MB':>9} {'peak/file':>9} {'samples read':>13}")
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
        print(f"{name:<13} {exported:>9.2f} {len(data) / 1e6:>9.1f} {float(took):>8.2f} {int(peak) / 1e6:>9.0f}"
              f" {int(peak) / max(1, len(data)):>9.1f} {int(count):>13,}")
    print(json.dumps({"goal": "load and export < 1 s each, peak memory < 10x the file"}))


if __name__ == "__main__":
    main()
