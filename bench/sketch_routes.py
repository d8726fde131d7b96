"""``profviz routes`` over many stored requests from the latency sketches (issue 20's goal: 10M
requests in under 1 s), against the exact table from the rows.

Fills a SQLite store with ``--requests`` (default 10M) requests of 20 routes spread over a week,
written as a middleware writes them (batches of 5,000, moved into ``requests`` and sketched on
the next read), then times, each the best of ``--repeat``: ``Store.route_sketches`` over the
whole store and over one day, the route table from them, and the whole ``profviz routes --from
sketches`` command (a process: its start included); and ``profviz routes --from rows`` over a
1M-request day for comparison. ``--postgres``: the same against a PostgreSQL store, in a throwaway
cluster started for the run (tests/postgres_cluster.py). Usage: ``python bench/sketch_routes.py
[--requests 10000000] [--postgres]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from profviz.analysis.routes import route_table_from_sketches
from profviz.model import RequestBatch
from profviz.store import open_store

T0 = 1_760_000_000 * 10**9
WEEK_NS = 7 * 86400 * 10**9
ROUTES = [f"/api/v1/resource{n}/{{id}}" for n in range(20)]


def fill(path: str, count: int) -> float:
    """Write ``count`` requests; seconds taken, the move into ``requests`` and the sketching included."""
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    with open_store(path) as store:
        step = 5000
        for first in range(0, count, step):
            n = min(step, count - first)
            starts = T0 + (np.arange(first, first + n, dtype=np.int64) * (WEEK_NS // count))
            durations = (rng.lognormal(16, 1.0, n) + 1).astype(np.int64)
            routes = rng.integers(0, len(ROUTES), n)
            batch = RequestBatch()
            for start, duration, route in zip(starts.tolist(), durations.tolist(), routes.tolist()):
                batch.add(1, 2, ROUTES[route], "GET", "/x", 200, start, duration, 0, 100, "", '{"request_id": "r"}')
            store.write_batch(batch)
            if first // step % 40 == 39:
                store.latest_request_ns()  # a reader: moves the logged batches into requests, sketching them
        store.latest_request_ns()
    return time.perf_counter() - began


def best(repeat: int, work) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - began)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", action="store_true", help="a PostgreSQL store in a throwaway cluster")
    args = parser.parse_args()
    if not args.postgres:
        run(os.path.join(tempfile.mkdtemp(prefix="profviz-bench-sketch-"), "store.db"), args)
        return
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.postgres_cluster import create_database, start_cluster, stop_cluster

    cluster = start_cluster()
    try:
        run(create_database(cluster, "bench"), args)
    finally:
        stop_cluster(cluster)


def run(path: str, args: argparse.Namespace) -> None:
    filled = fill(path, args.requests)
    store = open_store(path)
    size = (os.path.getsize(path) if "://" not in path else store.fetch("SELECT pg_database_size(current_database())")[0][0]) / 1e9
    print(f"stored {args.requests:,} requests of {len(ROUTES)} routes over a week in {filled:.0f} s "
          f"({args.requests / filled:,.0f} a second, sketching included) in {type(store).__name__}; store {size:.2f} GB")
    whole, sketches = best(args.repeat, lambda: store.route_sketches())
    day_start = T0 + 3 * 86400 * 10**9 + 1234 * 10**9
    day, _ = best(args.repeat, lambda: store.route_sketches(since_ns=day_start, until_ns=day_start + 86400 * 10**9))
    table, rows = best(args.repeat, lambda: route_table_from_sketches(sketches, None, "app"))
    assert sum(r.count for r in rows) == args.requests
    print(f"route_sketches: whole store {1000 * whole:.0f} ms, one day {1000 * day:.0f} ms; route table {1000 * table:.1f} ms")
    env = {**os.environ, "PROFVIZ_STORE": path}
    command, _ = best(args.repeat, lambda: subprocess.run([sys.executable, "-m", "profviz", "routes", "--from", "sketches", "--json"],
                                                         env=env, capture_output=True, check=True))
    startup, _ = best(args.repeat, lambda: subprocess.run([sys.executable, "-m", "profviz", "--help"], env=env, capture_output=True, check=True))
    print(f"profviz routes --from sketches over {args.requests:,} requests: {command:.2f} s "
          f"(the process's start alone: {startup:.2f} s; goal < 1 s)")
    since = f"{int((time.time_ns() - (T0 + 6 * 86400 * 10**9)) / 1e9)}s"  # the last day of the week, ~1/7 of the requests
    exact, _ = best(1, lambda: subprocess.run([sys.executable, "-m", "profviz", "routes", "--from", "rows", "--json", "--since", since],
                                             env=env, capture_output=True, check=True))
    print(f"profviz routes --from rows over the last day ({args.requests // 7:,} requests): {exact:.2f} s")


if __name__ == "__main__":
    main()
