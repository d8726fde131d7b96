"""Overhead of profviz's WSGI middleware on the sample shop, as ratios to no middleware.

For each configuration a waitress server (8 threads) runs the sample shop (``samples/shop``, a
small database) in its own process; this process drives the same bounded closed-loop load
(``--requests`` requests from ``--concurrency`` keep-alive connections over a fixed mix of the
shop's database endpoints) and measures throughput and latency. Configurations run interleaved in
``--runs`` rounds; ratios are taken against the bare app of the same round and their median is
reported (the box's load drifts between rounds):

    none          the bare app
    timing        ProfilerMiddleware(sampler=False): every request timed and stored
    sampler       the always-on sampler at 100 Hz with tail capture (the default)
    pyinst-10%    pyinstrument deep profiles on 10 % of requests (sampler off)
    pyinst-100%   pyinstrument deep profiles on every request (sampler off)
    werkzeug      werkzeug.middleware.profiler.ProfilerMiddleware (cProfile, no output)

Ratios: ``rps`` (throughput), ``p50``/``p99`` (client latency), and ``cpu-cap``: the bare app's
server CPU time per request over this configuration's (psutil, user + system of the server
process during the measured load), i.e. the throughput ratio a CPU-bound server would see. On a
shared box the throughput ratio is noisy; CPU per request is much less so.

Then the sampler's own CPU time per second of wall time with 10 and 100 threads busy serving
requests (each blocked in a 40-frame-deep stack, as a web framework's worker would be).

Run: python bench/wsgi_overhead.py [--runs 5] [--requests 800]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = ("none", "timing", "sampler", "pyinst-10%", "pyinst-100%", "werkzeug")
PATHS = (  # mean in-process service time about 1.3 ms: SQL scans, N+1 queries, connection churn
    "/posts", "/posts/fast", "/search/slow?q=lor", "/report", "/report/fast", "/tags/python", "/posts/17",
    "/authors/3/posts", "/search/fast?q=lor", "/posts",
)
GOALS = {"timing": 0.99, "sampler": 0.97, "pyinst-10%": 0.93}


OPTIONS = {
    "timing": {"sampler": False},
    "sampler": {"sampler": True, "sample_hz": 100.0},
    "pyinst-10%": {"sampler": False, "deep_fraction": 0.1},
    "pyinst-100%": {"sampler": False, "deep_fraction": 1.0},
}


def serve(config: str, db: str, store: str) -> None:
    """Server process: print the port, serve until stdin closes, print profviz stats."""
    import logging

    import waitress

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    from samples.shop.app import create_app
    from samples.shop.services import ExternalService, SlowLogSink

    with SlowLogSink(delay_s=0.001) as sink, ExternalService(delay_s=0.001) as external:
        app = create_app(db, log_sink_url=sink.url, external_url=external.url)
        middleware = None
        if config == "werkzeug":
            from werkzeug.middleware.profiler import ProfilerMiddleware as WerkzeugProfiler

            app.wsgi_app = WerkzeugProfiler(app.wsgi_app, stream=None)
        elif config != "none":
            from profviz.flask import init_app

            middleware = init_app(app, store=store, **OPTIONS[config])
        server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        print(server.effective_port, flush=True)
        sys.stdin.read()
        server.close()
        server.task_dispatcher.shutdown()
        if middleware is not None:
            middleware.flush(60)
            stats = middleware.stats
            print(f"recorded={stats['recorded']} dropped={stats['dropped']} errors={stats['errors']}", flush=True)


def load(port: int, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Closed-loop load over keep-alive connections; (requests per second, latencies in ms)."""
    latencies: list[float] = []
    counter = iter(range(requests))
    lock = threading.Lock()
    errors = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            started = time.perf_counter()
            conn.request("GET", PATHS[index % len(PATHS)])
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                errors.append(response.status)
            latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"bench: {len(errors)} requests failed (statuses {sorted(set(errors))})")
    return requests / elapsed, latencies


def measure(config: str, db: str, args) -> tuple[float, float, float, float, str]:
    """(req/s, p50 ms, p99 ms, server CPU ms per request, the server's profviz counters)."""
    with tempfile.TemporaryDirectory(prefix="profviz-bench-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", config, "--db", db, "--store", os.path.join(tmp, "bench.db")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        try:
            port = int(proc.stdout.readline())
            load(port, 200, args.concurrency)  # warm up connections, caches, lazy imports
            server = psutil.Process(proc.pid)
            time.sleep(0.2)
            before = server.cpu_times()
            rps, latencies = load(port, args.requests, args.concurrency)
            time.sleep(0.2)  # let the writer thread finish this load's records
            after = server.cpu_times()
            cpu_ms = ((after.user + after.system) - (before.user + before.system)) * 1000 / args.requests
        finally:
            proc.stdin.close()
            tail = proc.stdout.read().strip()
            proc.wait(timeout=120)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return rps, cuts[49], cuts[98], cpu_ms, tail


def sampler_cpu(threads: int, seconds: float = 4.0) -> float:
    """The sampler thread's CPU seconds per wall second with ``threads`` request threads in flight."""
    from profviz.collect.sampler import StackSampler

    sampler = StackSampler(100.0)
    stop = threading.Event()
    ready = threading.Barrier(threads + 1)

    def deep(n):
        if n:
            return deep(n - 1)
        while not stop.is_set():
            time.sleep(0.002)

    def worker():
        slot = sampler.begin(time.perf_counter_ns())
        ready.wait()
        deep(40)
        sampler.end(slot)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    ready.wait()
    sampler.ensure_running()
    time.sleep(0.5)
    cpu0, wall0 = sampler.cpu_ns, time.perf_counter()
    time.sleep(seconds)
    cpu = (sampler.cpu_ns - cpu0) / 1e9 / (time.perf_counter() - wall0)
    stop.set()
    for t in pool:
        t.join()
    sampler.stop()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20_000, help="posts in the shop database")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.db, args.store)
        return

    from samples.shop.data import build_database

    cache = Path(tempfile.gettempdir()) / "profviz-bench"
    cache.mkdir(exist_ok=True)
    db = str(cache / f"shop-{args.rows}.sqlite3")
    build_database(db, rows=args.rows)
    print(f"sample shop ({args.rows} posts), waitress 8 threads, {args.requests} requests x {args.runs} runs per config,"
          f" {args.concurrency} keep-alive clients, endpoints: {', '.join(sorted(set(PATHS)))}")
    started = time.perf_counter()
    results: dict[str, list[tuple[float, float, float, float]]] = {c: [] for c in CONFIGS}
    notes: dict[str, str] = {}
    for run in range(args.runs):
        for config in CONFIGS:
            rps, p50, p99, cpu_ms, tail = measure(config, db, args)
            results[config].append((rps, p50, p99, cpu_ms))
            if tail:
                notes[config] = tail
    print(f"\n{'config':<12} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu/req':>8}   {'rps':>6} {'p50':>6} {'p99':>6} {'cpu-cap':>7}  goal (on rps and cpu-cap)")
    for config in CONFIGS:
        rps, p50, p99, cpu = (statistics.median(v[i] for v in results[config]) for i in range(4))
        # ratios to the bare app of the same round, then the median over rounds (the box's load drifts)
        ratios = [
            statistics.median(run[i] / base[i] for run, base in zip(results[config], results["none"])) for i in range(3)
        ]
        capacity = statistics.median(base[3] / run[3] for run, base in zip(results[config], results["none"]))
        goal = GOALS.get(config)
        verdict = "" if goal is None else (
            f">= {goal:.2f}: rps {'met' if ratios[0] >= goal else 'NOT met'}, cpu-cap {'met' if capacity >= goal else 'NOT met'}"
        )
        runs = " ".join(f"{run[0] / base[0]:.2f}" for run, base in zip(results[config], results["none"]))
        print(f"{config:<12} {rps:>7.1f} {p50:>7.2f} {p99:>7.2f} {cpu:>6.2f}ms   {ratios[0]:>6.3f} {ratios[1]:>6.3f} {ratios[2]:>6.3f}"
              f" {capacity:>7.3f}  {verdict}")
        print(f"{'':<12} per-round rps ratios {runs}; {notes.get(config, '')}")
    print(f"\nload phase took {time.perf_counter() - started:.0f} s")
    for threads in (10, 100):
        cpu = sampler_cpu(threads)
        print(f"sampler CPU at 100 Hz with {threads:>3} busy request threads: {cpu * 1000:.1f} ms per second ({cpu:.2%} of one core)")


if __name__ == "__main__":
    main()
