"""How long `profviz findings` takes over an hour of stored traffic.

Not a test: prints figures. Run: ``python bench/findings.py [--requests 100000] [--spans-per-request 10]
[--store PATH]`` (building the store takes a minute or two; ``--store`` keeps it for the next run).

The store holds one hour of a 20-route service: ``--requests`` requests (100k by default), each
with ``--spans-per-request`` spans on its thread (database statements, some repeated per item, and
HTTP calls; 1M spans by default), and a kept sampler profile for about 2% of them (the tail and
baseline capture keeps a few per route and minute). Printed per run (``--runs``, 5): the time to load the window
(requests, statements and calls, profiles) and to run every detector; then the median and the
slowest, and the top findings. The goal: under 2 s in all.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

from profviz.analysis.findings import run_detectors
from profviz.model import Profile, RequestRow, Span, State
from profviz.store import open_store
from profviz.store.window import load_window

MS = 1_000_000
HOUR_NS = 3600 * 10**9
ROUTES = 20
APP = "/srv/app/views.py"


def build(path: str, requests: int, spans_per_request: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    store = open_store(path)
    start = time.time_ns() - HOUR_NS
    rows, spans, profiles = [], [], []
    for i in range(requests):
        route = i % ROUTES
        begin = start + int(i * HOUR_NS / requests)
        tid = 100 + i % 16
        duration = int((20 + rng.expovariate(1 / 30) + (40 if route == 3 else 0)) * MS)
        rows.append(RequestRow(pid=1, tid=tid, route=f"/r{route}", method="GET", path=f"/r{route}", status=200, start_ns=begin,
                               duration_ns=duration, cpu_ns=duration // 4, response_bytes=2_000, labels={"capacity": 16}))
        step = duration // (spans_per_request + 1)
        for j in range(spans_per_request):
            at = begin + (j + 1) * step // 2
            if route == 3:  # the N+1 route: one query per item
                attributes = {"db.system": "postgresql", "db.statement": f"SELECT name FROM authors WHERE id = {j}"}
            elif j % 4 == 3:
                attributes = {"http.method": "GET", "http.url": f"http://inventory/items/{rng.randrange(1000)}"}
            else:  # a handful of distinct statements: no N+1 here
                attributes = {"db.system": "postgresql", "db.statement": f"SELECT * FROM t{route}_{j} WHERE k = 1"}
            spans.append(Span(f"{i + 1:032x}", f"{i + 1:08x}{j + 1:08x}", None, "q", "client", "ok", at, at + step // 3,
                              attributes=attributes, pid=1, tid=tid))
        if rng.random() < 0.02:
            profiles.append((len(rows) - 1, request_profile(begin, duration, route)))
        if len(spans) >= 200_000:
            store.insert_spans(spans)
            spans = []
    store.insert_spans(spans)
    ids = store.save_profiles([p for _, p in profiles])
    for (row_index, _), profile_id in zip(profiles, ids):
        rows[row_index].profile_id = profile_id
    store.insert_requests(rows)
    store.close()


def request_profile(begin: int, duration: int, route: int) -> Profile:
    profile = Profile({"kind": "request", "pid": 1, "start_ns": begin, "duration_ns": duration,
                       "labels": {"route": f"/r{route}", "capture": "tail"}})
    thread = profile.add_thread(1, 100, "worker")
    query = profile.intern_frames([("handler", APP, 10), (f"view{route}", APP, 20 + route), ("execute", "/venv/lib/python3.11/site-packages/psycopg/cursor.py", 1)])
    work = profile.intern_frames([("handler", APP, 10), (f"view{route}", APP, 20 + route), ("render", APP, 90)])
    at, left = begin, duration
    while left > 0:
        weight = min(10 * MS, left)
        if (at // (10 * MS)) % 3:
            profile.append_sample(at, thread, query, weight, State.WAITING, "socket recv 10.0.0.5:5432")
        else:
            profile.append_sample(at, thread, work, weight, State.ON_CPU)
        at, left = at + weight, left - weight
    return profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--spans-per-request", type=int, default=10)
    parser.add_argument("--store", default=None, help="build the store here once, and reuse it")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="profviz-findings-bench-")
    path = args.store or os.path.join(directory, "store.db")
    if not os.path.exists(path):
        began = time.perf_counter()
        build(path, args.requests, args.spans_per_request)
        print(f"built {path}: {args.requests} requests, {args.requests * args.spans_per_request} spans in {time.perf_counter() - began:.0f} s")
    store = open_store(path)
    totals = []
    for attempt in range(1, args.runs + 1):
        began = time.perf_counter()
        window = load_window(store)
        loaded = time.perf_counter()
        findings = run_detectors(window)
        done = time.perf_counter()
        totals.append(done - began)
        print(f"run {attempt}: load {loaded - began:.2f} s ({len(window.requests)} requests, {len(window.facts)} statements and calls,"
              f" {len(window.profiles)} profiles), detectors {done - loaded:.2f} s, total {done - began:.2f} s")
        del window  # each run as a fresh `profviz findings` would: nothing of the last one still in memory
    print(f"median of {len(totals)}: {statistics.median(totals):.2f} s, slowest {max(totals):.2f} s (goal < 2 s)")
    for finding in findings[:5]:
        print(f"  {finding.kind}: {finding.title}")


if __name__ == "__main__":
    main()
