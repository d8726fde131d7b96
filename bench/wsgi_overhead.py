"""Overhead of profviz's WSGI middleware on the sample shop, as ratios to no middleware.

One waitress server (8 threads) per configuration runs the sample shop (``samples/shop``, 20k
posts) in its own process, all started up front and warmed up. This process is only the client:
it drives a bounded closed-loop load (``--requests`` requests from ``--concurrency`` keep-alive
connections over a fixed mix of the shop's database endpoints) against one server at a time, so
client threads never share a GIL with the server they measure. Rounds alternate the order of
the configurations (forward, then backward: A B C C B A ...) and each ratio is taken against
the bare app of the same round; the table shows the median over ``--runs`` rounds and the
per-round spread (the box's load drifts; the load average is printed at start and end):

    none          the bare app
    timing        ProfilerMiddleware(sampler=False): every request timed and stored
    sampler       the always-on sampler at 100 Hz with tail capture (the default)
    pyinst-10%    pyinstrument deep profiles on 10 % of requests (sampler off)
    pyinst-100%   pyinstrument deep profiles on every request (sampler off)
    werkzeug      werkzeug.middleware.profiler.ProfilerMiddleware (cProfile, no output)

Ratios: ``rps`` (throughput), ``p50``/``p99`` (client latency; a ratio above 1 is slower), and
``cpu-cap``: the bare app's server CPU time per request over this configuration's (user +
system of the whole server process, profviz's background threads included, during the measured
load), i.e. the throughput ratio a CPU-bound server would see. On a shared box the throughput
ratio is noisy; CPU per request much less so. ``ctx/req`` is the server's context switches per
request (GIL handoffs show up there).

Then the sampler's own CPU time per second of wall time with 10 and 100 threads busy serving
requests (each blocked in a 40-frame-deep stack, as a web framework's worker would be).

Run: python bench/wsgi_overhead.py [--runs 7] [--requests 800] [--configs none,timing]
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
            sampler = stats["sampler"]
            sampling = "" if sampler is None else (
                f" sampler: {sampler['ticks']} ticks, {sampler['samples']} samples,"
                f" {sampler['cpu_s'] * 1e6 / max(sampler['ticks'], 1):.0f} us CPU a tick"
            )
            print(f"recorded={stats['recorded']} dropped={stats['dropped']} errors={stats['errors']}"
                  f" profiles tail/baseline/deep/aggregate={stats['profiles_tail']}/{stats['profiles_baseline']}"
                  f"/{stats['profiles_deep']}/{stats['profiles_aggregate']}{sampling}", flush=True)


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


class Server:
    """One configuration's server process (see :func:`serve`) and its CPU/context-switch counters."""

    def __init__(self, config: str, db: str, store: str):
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", config, "--db", db, "--store", store],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        self.port = int(self.proc.stdout.readline())
        self.process = psutil.Process(self.proc.pid)

    def counters(self) -> tuple[float, int]:
        """(CPU seconds, context switches) of the whole server process so far."""
        cpu = self.process.cpu_times()
        switches = 0
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/status") as status:
                    for line in status:  # voluntary_ctxt_switches and nonvoluntary_ctxt_switches
                        name, _, value = line.partition(":")
                        if name.endswith("ctxt_switches"):
                            switches += int(value)
            except FileNotFoundError:  # a thread that just ended
                pass
        return cpu.user + cpu.system, switches

    def stop(self) -> str:
        """Stop the server; its profviz counters (empty for the bare app)."""
        self.proc.stdin.close()
        tail = self.proc.stdout.read().strip()
        self.proc.wait(timeout=120)
        return tail


def measure(server: Server, args) -> tuple[float, float, float, float, float]:
    """(req/s, p50 ms, p99 ms, server CPU ms per request, server context switches per request)."""
    time.sleep(0.3)  # let the previous load's background work (other servers' writers) settle
    cpu0, switches0 = server.counters()
    rps, latencies = load(server.port, args.requests, args.concurrency)
    time.sleep(0.3)  # let the writer thread finish this load's records (its CPU counts)
    cpu1, switches1 = server.counters()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return rps, cuts[49], cuts[98], (cpu1 - cpu0) * 1000 / args.requests, (switches1 - switches0) / args.requests


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
    parser.add_argument("--runs", type=int, default=7, help="rounds over all configurations")
    parser.add_argument("--requests", type=int, default=800, help="requests per configuration per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20_000, help="posts in the shop database")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset (none is always included)")
    parser.add_argument("--no-sampler-cpu", action="store_true", help="skip the sampler CPU measurement")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.db, args.store)
        return
    configs = ["none"] + [c for c in args.configs.split(",") if c in CONFIGS and c != "none"]

    from samples.shop.data import build_database

    cache = Path(tempfile.gettempdir()) / "profviz-bench"
    cache.mkdir(exist_ok=True)
    db = str(cache / f"shop-{args.rows}.sqlite3")
    build_database(db, rows=args.rows)
    print(f"sample shop ({args.rows} posts), waitress 8 threads, {args.requests} requests x {args.runs} rounds per config,"
          f" {args.concurrency} keep-alive clients in the bench process, endpoints: {', '.join(sorted(set(PATHS)))}")
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} CPUs)")
    started = time.perf_counter()
    results: dict[str, list[tuple[float, float, float, float, float]]] = {c: [] for c in configs}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="profviz-bench-") as tmp:
        servers = {c: Server(c, db, os.path.join(tmp, f"{c}.db")) for c in configs}
        try:
            for server in servers.values():  # warm up connections, caches, lazy imports, route windows
                load(server.port, 300, args.concurrency)
            for run in range(args.runs):
                for config in (configs if run % 2 == 0 else configs[::-1]):
                    results[config].append(measure(servers[config], args))
        finally:
            for config, server in servers.items():
                notes[config] = server.stop()
    print(f"\n{'config':<12} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu/req':>8} {'ctx/req':>7}"
          f"   {'rps':>6} {'p50':>6} {'p99':>6} {'cpu-cap':>7}  goal (on rps and cpu-cap)")
    for config in configs:
        rps, p50, p99, cpu, switches = (statistics.median(v[i] for v in results[config]) for i in range(5))
        pairs = list(zip(results[config], results["none"]))
        ratios = [statistics.median(run[i] / base[i] for run, base in pairs) for i in range(3)]
        capacities = [base[3] / run[3] for run, base in pairs]
        capacity = statistics.median(capacities)
        goal = GOALS.get(config)
        verdict = "" if goal is None else (
            f">= {goal:.2f}: rps {'met' if ratios[0] >= goal else 'NOT met'}, cpu-cap {'met' if capacity >= goal else 'NOT met'}"
        )
        print(f"{config:<12} {rps:>7.1f} {p50:>7.2f} {p99:>7.2f} {cpu:>6.3f}ms {switches:>7.1f}"
              f"   {ratios[0]:>6.3f} {ratios[1]:>6.3f} {ratios[2]:>6.3f} {capacity:>7.3f}  {verdict}")
        if config != "none":
            rps_runs = " ".join(f"{run[0] / base[0]:.2f}" for run, base in pairs)
            cpu_runs = " ".join(f"{c:.2f}" for c in capacities)
            print(f"{'':<12} per round: rps {rps_runs} | cpu-cap {cpu_runs}  {notes.get(config, '')}")
    print(f"\nload phase took {time.perf_counter() - started:.0f} s;"
          f" load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.no_sampler_cpu:
        return
    for threads in (10, 100):
        cpu = sampler_cpu(threads)
        print(f"sampler CPU at 100 Hz with {threads:>3} busy request threads: {cpu * 1000:.1f} ms per second ({cpu:.2%} of one core)")


if __name__ == "__main__":
    main()
