"""Server half of the UI benchmark: how fast and how big are the API responses of a big profile?

Builds a synthetic profile (default 1,000,000 samples, 50,000 distinct stacks, 8 threads; a few
hundred functions in a few dozen modules, stacks sharing prefixes, consecutive samples of a
thread mostly repeating one stack, CPU/waiting/runnable mixed), saves it to a store and prints:

* bytes per stored sample;
* flame-graph response: cold (fresh server, profile loaded from the store) and warm (profile
  cached) time, and its size raw and gzipped (goals: < 1 s, < 2 MB);
* timeline response time and size for the whole profile and for a zoomed window;
* the other endpoints' times, for reference.

``--store PATH --keep`` keeps the profile in that store (its id is printed) so the browser
benchmark can reuse it. Run: ``python bench/ui_server.py [--samples N] [--store PATH --keep]``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profviz.model import Profile, State  # noqa: E402
from profviz.server import create_app  # noqa: E402
from profviz.store import open_store  # noqa: E402

SAMPLE_PERIOD_NS = 10_000_000
START_NS = 1_700_000_000_000_000_000
WAIT_REASONS = ("socket recv", "lock acquire", "sleep", "disk read", "select/poll")


def synthetic_profile(samples: int, stacks: int, threads: int, functions: int = 400, seed: int = 7) -> Profile:
    """A deterministic profile shaped like a real service (see the module docstring)."""
    rng = np.random.default_rng(seed)
    profile = Profile({"kind": "synthetic", "pid": 4242, "cmdline": "python -m bench.service --workers 8",
                       "start_ns": START_NS, "rate_hz": 1e9 / SAMPLE_PERIOD_NS})
    modules = [f"/srv/app/service/module_{m:02d}.py" for m in range(30)] + [
        f"/usr/lib/python3.11/site-packages/{pkg}/{name}.py"
        for pkg in ("requests", "sqlalchemy", "jinja2", "urllib3", "werkzeug") for name in ("core", "util")
    ] + [f"/usr/lib/python3.11/{name}.py" for name in ("socket", "threading", "selectors", "json/decoder", "ssl")]
    names = [f"fn_{i:03d}_{('handle', 'load', 'render', 'query', 'parse', 'send', 'wait', 'compute')[i % 8]}" for i in range(functions)]
    file_of = [modules[i % len(modules)] for i in range(functions)]
    popularity = 1.0 / np.arange(1, functions + 1) ** 0.9
    popularity /= popularity.sum()

    thread_ids = [profile.add_thread(4242, 5000 + t, "MainThread" if t == 0 else f"worker-{t}") for t in range(threads)]
    roots = []
    for t in range(threads):
        stack = profile.intern_frames([("<module>", "/srv/app/main.py", 1), ("_bootstrap", "/usr/lib/python3.11/threading.py", 995),
                                       ("run", "/usr/lib/python3.11/threading.py", 975), (f"worker_loop_{t}", "/srv/app/main.py", 40 + t)])
        roots.append(stack)
    owner = {root: t for t, root in enumerate(roots)}
    depth = {root: 4 for root in roots}
    by_thread = [[root] for root in roots]
    made = list(roots)
    picks = rng.choice(functions, size=stacks * 2, p=popularity)
    pick = 0
    while len(made) < stacks:
        t = len(made) % threads
        mine = by_thread[t]
        parent = mine[-1] if (rng.random() < 0.7 and depth[mine[-1]] < 45) else mine[int(rng.integers(len(mine)))]
        fn = int(picks[pick % len(picks)])
        pick += 1
        frame = profile.intern_frame(names[fn], file_of[fn], 10 + (fn * 7 + depth[parent]) % 400)
        stack = profile.intern_stack(parent, frame)
        if stack in depth:
            continue
        depth[stack] = depth[parent] + 1
        owner[stack] = t
        mine.append(stack)
        made.append(stack)
    stack_ids = np.asarray(made, dtype=np.int32)
    stack_owner = np.asarray([owner[s] for s in made])

    per_thread = samples // threads
    columns = {k: [] for k in ("time_ns", "thread", "stack", "weight_ns", "state", "reason")}
    reason_ids = np.asarray([profile.intern_string(r) for r in WAIT_REASONS], dtype=np.int32)
    for t in range(threads):
        mine = stack_ids[stack_owner == t]
        count = per_thread + (samples - per_thread * threads if t == threads - 1 else 0)
        run_lengths = rng.geometric(1 / 8, size=count // 4 + 16)
        run_lengths = run_lengths[: np.searchsorted(np.cumsum(run_lengths), count) + 1]
        runs = len(run_lengths)
        weights = 1.0 / np.arange(1, len(mine) + 1) ** 1.1
        run_stacks = np.concatenate([rng.permutation(mine)[: min(len(mine), runs)],
                                     rng.choice(rng.permutation(mine), size=max(0, runs - len(mine)), p=weights / weights.sum())])
        rng.shuffle(run_stacks)
        run_states = rng.choice([int(State.ON_CPU), int(State.WAITING), int(State.RUNNABLE)], size=runs, p=[0.45, 0.45, 0.10])
        run_reasons = np.where(run_states == int(State.WAITING), reason_ids[rng.integers(len(reason_ids), size=runs)], -1)
        per_sample_run = np.repeat(np.arange(runs), run_lengths)[:count]
        columns["time_ns"].append(START_NS + np.arange(count, dtype=np.int64) * SAMPLE_PERIOD_NS + t * 37_000)
        columns["thread"].append(np.full(count, thread_ids[t], dtype=np.int32))
        columns["stack"].append(run_stacks[per_sample_run])
        columns["weight_ns"].append(np.full(count, SAMPLE_PERIOD_NS, dtype=np.int64))
        columns["state"].append(run_states[per_sample_run].astype(np.int8))
        columns["reason"].append(run_reasons[per_sample_run].astype(np.int32))
    merged = {k: np.concatenate(v) for k, v in columns.items()}
    order = np.argsort(merged["time_ns"], kind="stable")
    profile.set_sample_columns({k: v[order] for k, v in merged.items()})
    return profile


def timed_get(client, url: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"{url} -> {response.status_code}: {response.get_data(as_text=True)[:300]}")
    return elapsed, response.get_data()


def size_text(data: bytes) -> str:
    return f"{len(data) / 1e6:6.2f} MB raw, {len(gzip.compress(data, 5)) / 1e6:5.2f} MB gzipped"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--stacks", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--store", help="store file to save the synthetic profile into (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the profile in --store for the browser benchmark")
    parser.add_argument("--width", type=int, default=1500, help="timeline pixel width")
    args = parser.parse_args()
    if args.keep and not args.store:
        parser.error("--keep needs --store PATH")

    started = time.perf_counter()
    profile = synthetic_profile(args.samples, args.stacks, args.threads)
    used = len(np.unique(profile.columns()["stack"]))
    print(f"synthetic profile: {profile.sample_count:,} samples, {used:,} distinct sampled stacks "
          f"({len(profile.stack_prefix):,} in the stack table), {len(profile.threads)} threads, "
          f"{len(profile.frame_function):,} frames; built in {time.perf_counter() - started:.1f} s")

    tmp = None
    store_path = args.store
    if store_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="profviz-bench-")
        store_path = os.path.join(tmp.name, "bench.db")
    store = open_store(store_path)
    started = time.perf_counter()
    profile_id = store.save_profile(profile)
    print(f"saved as profile {profile_id} in {store_path} in {time.perf_counter() - started:.2f} s; "
          f"{store.profile_bytes(profile_id) / profile.sample_count:.2f} bytes per stored sample")
    del profile

    base = f"/api/profiles/{profile_id}"
    cold_app = create_app(store)
    client = cold_app.test_client()
    cold, body = timed_get(client, f"{base}/flamegraph")
    warm_times = [timed_get(client, f"{base}/flamegraph")[0] for _ in range(3)]
    import json

    nodes = len(json.loads(body)["nodes"])
    print(f"flamegraph (min_fraction 0.001): cold {cold * 1000:7.0f} ms (load from store included), "
          f"warm {min(warm_times) * 1000:7.0f} ms; {nodes:,} nodes; {size_text(body)}   [goals: < 1000 ms, < 2 MB]")
    cached = client.application.extensions["profviz"].profile(profile_id)
    start_load = time.perf_counter()
    open_store(store_path).load_profile(profile_id)
    print(f"  of which loading the profile from the store: {(time.perf_counter() - start_load) * 1000:.0f} ms")

    elapsed, body = timed_get(client, f"{base}/flamegraph?threads=1&states=waiting")
    print(f"flamegraph one thread, waiting only: {elapsed * 1000:7.0f} ms; {size_text(body)}")
    elapsed, body = timed_get(client, f"{base}/timeline?width={args.width}")
    print(f"timeline whole profile, {args.width} px, {len(cached.threads)} threads: {elapsed * 1000:7.0f} ms; {size_text(body)}")
    first, last = cached.time_range_ns
    origin = first
    window = (last - first) // 100
    elapsed, body = timed_get(client, f"{base}/timeline?width={args.width}&start_ns={window * 40}&end_ns={window * 41}")
    print(f"timeline 1% window, {args.width} px: {elapsed * 1000:7.0f} ms; {size_text(body)}")
    del origin
    for label, url in (
        ("profile detail (first)", f"{base}"),
        ("functions sort=self", f"{base}/functions?sort=self"),
        ("search 'query'", f"{base}/search?q=query"),
        ("search regex 'fn_0[0-4]'", f"{base}/search?q=fn_0%5B0-4%5D&regex=1"),
        ("sandwich fn_001_load", f"{base}/sandwich?function=fn_001_load"),
        ("diff first half vs second half", f"/api/diff?a={profile_id}&a_end_ns={(last - first) // 2}&b_start_ns={(last - first) // 2}"),
    ):
        elapsed, body = timed_get(client, url)
        print(f"{label:<32} {elapsed * 1000:7.0f} ms; {size_text(body)}")
    if args.keep:
        print(f"kept: profile {profile_id} in {store_path}")
    else:
        store.delete_profile(profile_id)
    store.close()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
