"""Overhead of profviz's WSGI middleware on the sample shop, as ratios to no middleware.

Configurations (the same in every section):

    none          the bare app
    timing        ProfilerMiddleware(sampler=False): every request timed and stored
    sampler       the always-on sampler at 100 Hz with tail capture (the default)
    pyinst-10%    pyinstrument deep profiles on 10 % of requests (sampler off)
    pyinst-100%   pyinstrument deep profiles on every request (sampler off)
    werkzeug      werkzeug.middleware.profiler.ProfilerMiddleware (cProfile, no output)

Goals: timing >= 0.99, sampler >= 0.97, pyinst-10% >= 0.93 (throughput relative to the bare app).

1. Paired in-process CPU cost (the precise measure; the verdicts rest on it). One child process
per configuration (the sampler is process-global, so configurations never share a process)
builds two shop apps over the same database and the same log sink / external service, wraps
one of them, and on one thread alternates requests between the two (direct WSGI calls, the
response iterated and closed), the same path for both calls of a pair. The order within a pair
flips every full cycle of the path list (a path's second call is ~2 % cheaper: warm caches), so
order effects cancel. Per-request CPU of each app is the main thread's CPU clock
(``time.thread_time_ns``) around each call; host noise slows both calls of a pair alike, so it
cancels in the ratio. Background CPU (profviz's writer and sampler threads, but also the shop's
own service threads) is the process's CPU minus the main thread's over a block, taken after
the writer's queue is flushed so its work for the block is included (the queue only: the
sampler's per-route aggregate profiles are written at their natural interval, once a minute,
which a child never reaches; forcing them every block would charge ~20 us/req that a real
server pays about once per 20k requests). ``--blocks`` blocks of
``--pairs`` pairs are measured after 300 warm-up pairs; the table shows the median and the
min-max over blocks. Columns:

    bare, wrapped   CPU microseconds per request of each app on the main thread
    bg+             background CPU per request in excess of the control's (shop service threads
                    serve both apps alike, so only the excess is profviz's; charged entirely to
                    the wrapped app)
    ratio           bare / (wrapped + bg+): the throughput ratio of a CPU-bound server
    corrected       ratio / the control's ratio

``none`` runs with both apps bare: the A/A control. Its ratio is the method's bias and noise
floor (its median has come out between 0.989 and 1.000 here; a single block can stray by a few
per cent when the host bursts, which the min-max shows), and every configuration's
``corrected`` ratio divides it out. profviz's own CPU per request is then printed split into the
request path (wrapped - bare / control ratio) and background (bg+).

Caveats: a single thread's in-process requests are cheaper (~1 ms CPU) than the same requests
through waitress (~2.6 ms CPU with HTTP parsing and thread handoffs), so the same absolute
profviz cost is a larger fraction here: the in-process ratio is the stricter of the two. With
the sampler, only about half the wall time has a wrapped request in flight (the other half runs
the bare app), yet every sampler tick is charged to the wrapped requests: conservative. Effects
that slow both apps alike (the writer thread's cache pollution, GIL handoffs to background
threads) cancel in the pair and show only in the waitress section.

2. Waitress throughput (corroboration). One waitress server (8 threads) per configuration runs
the shop in its own process, all started up front and warmed up, plus ``none-again``: the bare
app in a second server process, the A/A control whose ratios are this section's noise floor.
This process is only the client: it drives a bounded closed-loop load (``--requests`` requests
from ``--concurrency`` keep-alive connections over a fixed mix of the shop's database endpoints)
against one server at a time, so client threads never share a GIL with the server they measure.
Rounds alternate the order of the configurations (forward, then backward: A B C C B A ...) and
each ratio is taken against the bare app of the same round; the table shows the median over
``--runs`` rounds, each median's 90 % bootstrap confidence interval (2000 resamples of the
per-round ratios, seeded) and the per-round values. Ratios: ``rps`` (throughput), ``p50``/``p99``
(client latency; a ratio above 1 is slower), and ``cpu-cap``: the bare app's server CPU time per
request over this configuration's (user + system of the whole server process, profviz's
background threads included, during the measured load), i.e. the throughput ratio a CPU-bound
server would see. ``ctx/req`` is the server's context switches per request (GIL handoffs show
up there: ~100 per request among 8 threads). On this shared 2-core box a single round's
throughput ratio swings by +-20 % for the same configuration, so this section cannot resolve a
1 % effect; its confidence intervals say how much it can resolve. Round length, measured once
each with ``--configs none,timing,sampler`` on a busy box (load average 1-3.5): 7 rounds of 800
requests took 62 s and gave the A/A control an rps interval 0.29 wide, 14 rounds of 400 took
81 s for 0.15, 28 rounds of 200 took 115 s for 0.17 (each measurement also waits 0.6 s for
background work to settle, so short rounds cost time); hence the defaults, 14 rounds of 400.
In two full runs the A/A control's rps median came out 1.086 and 1.097 with intervals that
excluded 1: besides the noise, this section has a bias of several per cent between two server
processes running the same app (start order, placement on the 2 CPUs, the box's other load),
which the intervals alone do not show; read its ratios against the control's.

3. The sampler's own CPU time per second of wall time with 10 and 100 threads busy serving
requests (each blocked in a 40-frame-deep stack, as a web framework's worker would be).

Verdicts: ``met`` when the whole range (paired: min-max over blocks of the corrected ratio;
waitress: the 90 % interval) is at or above the goal, ``NOT met`` when it is entirely below,
``within noise`` when it straddles the goal.

Run: python bench/wsgi_overhead.py [--configs none,timing] [--paired-only | --no-paired]
     [--blocks 5] [--pairs 400] [--runs 14] [--requests 400] [--no-sampler-cpu]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
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
CONTROL_AGAIN = "none-again"  # the bare app in a second waitress server: the A/A control there
PATHS = (  # mean in-process service time about 1.3 ms: SQL scans, N+1 queries, connection churn
    "/posts", "/posts/fast", "/search/slow?q=lor", "/report", "/report/fast", "/tags/python", "/posts/17",
    "/authors/3/posts", "/search/fast?q=lor", "/posts",
)
GOALS = {"timing": 0.99, "sampler": 0.97, "pyinst-10%": 0.93}
WARMUP_PAIRS = 300
BOOTSTRAP_RESAMPLES = 2000


OPTIONS = {
    "timing": {"sampler": False},
    "sampler": {"sampler": True, "sample_hz": 100.0},
    "pyinst-10%": {"sampler": False, "deep_fraction": 0.1},
    "pyinst-100%": {"sampler": False, "deep_fraction": 1.0},
}


def instrument(app, config: str, store: str):
    """Wrap the Flask ``app`` as ``config`` says; the profviz middleware, or None (bare, werkzeug)."""
    if config == "werkzeug":
        from werkzeug.middleware.profiler import ProfilerMiddleware as WerkzeugProfiler

        app.wsgi_app = WerkzeugProfiler(app.wsgi_app, stream=None)
        return None
    if config in ("none", CONTROL_AGAIN):
        return None
    from profviz.flask import init_app

    return init_app(app, store=store, **OPTIONS[config])


def middleware_stats(middleware) -> str:
    """One line of the middleware's counters (empty for None)."""
    if middleware is None:
        return ""
    stats = middleware.stats
    sampler = stats["sampler"]
    sampling = "" if sampler is None else (
        f" sampler: {sampler['ticks']} ticks, {sampler['samples']} samples,"
        f" {sampler['cpu_s'] * 1e6 / max(sampler['ticks'], 1):.0f} us CPU a tick"
    )
    return (f"recorded={stats['recorded']} dropped={stats['dropped']} errors={stats['errors']}"
            f" profiles tail/baseline/deep/aggregate={stats['profiles_tail']}/{stats['profiles_baseline']}"
            f"/{stats['profiles_deep']}/{stats['profiles_aggregate']}{sampling}")


# -- 1. paired in-process CPU cost -------------------------------------------------------------


def paired_child(config: str, db: str, store: str, blocks: int, pairs: int) -> None:
    """Child process: print one JSON line per block (CPU ns of each app and background), then stats."""
    from werkzeug.test import create_environ

    from samples.shop.app import create_app
    from samples.shop.services import ExternalService, SlowLogSink

    environs = [create_environ(path, query_string=query) for path, _, query in (p.partition("?") for p in PATHS)]

    def start_response(status, headers, exc_info=None):
        return None

    def call(app, environ) -> None:
        body = app(dict(environ), start_response)
        try:
            for _ in body:
                pass
        finally:
            if hasattr(body, "close"):
                body.close()

    clock = time.thread_time_ns
    with SlowLogSink(delay_s=0.001) as sink, ExternalService(delay_s=0.001) as external:
        bare = create_app(db, log_sink_url=sink.url, external_url=external.url)
        wrapped = create_app(db, log_sink_url=sink.url, external_url=external.url)
        middleware = instrument(wrapped, config, store)
        done = 0

        def run(count: int) -> tuple[int, int]:
            nonlocal done
            bare_ns = wrapped_ns = 0
            for i in range(done, done + count):
                environ = environs[i % len(PATHS)]
                bare_first = (i // len(PATHS)) % 2 == 0
                first, second = (bare, wrapped) if bare_first else (wrapped, bare)
                t0 = clock()
                call(first, environ)
                t1 = clock()
                call(second, environ)
                t2 = clock()
                if bare_first:
                    bare_ns += t1 - t0
                    wrapped_ns += t2 - t1
                else:
                    wrapped_ns += t1 - t0
                    bare_ns += t2 - t1
            done += count
            return bare_ns, wrapped_ns

        run(WARMUP_PAIRS)
        if middleware is not None:
            middleware.flush(60)
        for _ in range(blocks):
            process0, main0 = time.process_time_ns(), clock()
            bare_ns, wrapped_ns = run(pairs)
            if middleware is not None:  # the queue only: middleware.flush() would also force route aggregates
                middleware.recorder.writer.flush(60)
            main1, process1 = clock(), time.process_time_ns()
            print(json.dumps({"pairs": pairs, "bare_ns": bare_ns, "wrapped_ns": wrapped_ns,
                              "background_ns": (process1 - process0) - (main1 - main0)}), flush=True)
        print(json.dumps({"stats": middleware_stats(middleware)}), flush=True)


def run_paired(configs: list[str], db: str, tmp: str, args) -> dict[str, list[dict]]:
    """Run each configuration's paired child in turn (never two at once); blocks by configuration."""
    results: dict[str, list[dict]] = {}
    notes: dict[str, str] = {}
    for config in configs:
        proc = subprocess.run(
            [sys.executable, __file__, "--paired-child", config, "--db", db,
             "--store", os.path.join(tmp, f"paired-{config}.db"), "--blocks", str(args.blocks), "--pairs", str(args.pairs)],
            capture_output=True, text=True, cwd=ROOT, timeout=600,
        )
        if proc.returncode != 0:
            raise SystemExit(f"bench: paired child for {config} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        results[config] = [line for line in lines if "pairs" in line]
        notes[config] = next((line["stats"] for line in lines if "stats" in line), "")
    results["_notes"] = notes  # type: ignore[assignment]
    return results


def spread(values: list[float], digits: int = 3) -> str:
    """``median [min-max]`` of values."""
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def report_paired(results: dict[str, list[dict]]) -> dict[str, list[float]]:
    """Print the paired table; corrected ratios per block by configuration (for the verdicts)."""
    notes = results.pop("_notes")
    control = results["none"]
    control_ratios = [b["bare_ns"] / b["wrapped_ns"] for b in control]
    control_ratio = statistics.median(control_ratios)
    control_background = statistics.median(b["background_ns"] / b["pairs"] for b in control)
    print(f"\n{'config':<12} {'bare us':>8} {'wrapped':>8} {'bg+ us':>7}   {'ratio median [min-max]':<24}"
          f" {'corrected median [min-max]':<26} profviz us/req: request path + background = total")
    corrected: dict[str, list[float]] = {}
    for config, blocks in results.items():
        bare = [b["bare_ns"] / b["pairs"] / 1e3 for b in blocks]
        wrapped = [b["wrapped_ns"] / b["pairs"] / 1e3 for b in blocks]
        excess = [0.0 if config == "none" else (b["background_ns"] / b["pairs"] - control_background) / 1e3 for b in blocks]
        ratios = [b_ / (w + e) for b_, w, e in zip(bare, wrapped, excess)]
        corrected[config] = [r / control_ratio for r in ratios]
        path_cost = [w - b_ / control_ratio for b_, w in zip(bare, wrapped)]
        label = "A/A control: the method's bias and noise floor" if config == "none" else (
            f"{statistics.median(path_cost):6.1f} + {statistics.median(excess):6.1f} ="
            f" {statistics.median([p + e for p, e in zip(path_cost, excess)]):6.1f}")
        print(f"{config:<12} {statistics.median(bare):>8.1f} {statistics.median(wrapped):>8.1f}"
              f" {statistics.median(excess):>7.1f}   {spread(ratios, 4):<24} {spread(corrected[config], 4):<26} {label}")
        if notes.get(config):
            print(f"{'':<12} {notes[config]}")
    print(f"(control background, the shop's own service threads: {control_background / 1e3:.1f} us/req;"
          f" control ratio per block: {' '.join(f'{r:.4f}' for r in control_ratios)})")
    return corrected


# -- 2. waitress throughput --------------------------------------------------------------------


def serve(config: str, db: str, store: str) -> None:
    """Server process: print the port, serve until stdin closes, print profviz stats."""
    import logging

    import waitress

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    from samples.shop.app import create_app
    from samples.shop.services import ExternalService, SlowLogSink

    with SlowLogSink(delay_s=0.001) as sink, ExternalService(delay_s=0.001) as external:
        app = create_app(db, log_sink_url=sink.url, external_url=external.url)
        middleware = instrument(app, config, store)
        server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        print(server.effective_port, flush=True)
        sys.stdin.read()
        server.close()
        server.task_dispatcher.shutdown()
        if middleware is not None:
            middleware.flush(60)
            print(middleware_stats(middleware), flush=True)


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


def bootstrap_interval(values: list[float], level: float = 0.90) -> tuple[float, float]:
    """``level`` bootstrap confidence interval of the median of ``values`` (seeded: repeatable)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(BOOTSTRAP_RESAMPLES))
    tail = (1 - level) / 2
    return medians[int(tail * BOOTSTRAP_RESAMPLES)], medians[min(int((1 - tail) * BOOTSTRAP_RESAMPLES), BOOTSTRAP_RESAMPLES - 1)]


def run_waitress(configs: list[str], db: str, tmp: str, args) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Measure and print the waitress table; {config: {"rps"|"cpu-cap": (median, low, high)}}."""
    configs = configs + [CONTROL_AGAIN]
    print(f"\n== waitress: 8 threads, {args.requests} requests x {args.runs} rounds per config,"
          f" {args.concurrency} keep-alive clients in the bench process")
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} CPUs)")
    started = time.perf_counter()
    results: dict[str, list[tuple[float, float, float, float, float]]] = {c: [] for c in configs}
    notes: dict[str, str] = {}
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
          f"   {'rps [90% CI]':<21} {'p50':>6} {'p99':>6}   {'cpu-cap [90% CI]':<21}")
    summary: dict[str, dict[str, tuple[float, float, float]]] = {}
    for config in configs:
        rps, p50, p99, cpu, switches = (statistics.median(v[i] for v in results[config]) for i in range(5))
        pairs = list(zip(results[config], results["none"]))
        per_round = {
            "rps": [run[0] / base[0] for run, base in pairs],
            "p50": [run[1] / base[1] for run, base in pairs],
            "p99": [run[2] / base[2] for run, base in pairs],
            "cpu-cap": [base[3] / run[3] for run, base in pairs],
        }
        summary[config] = {k: (statistics.median(v), *bootstrap_interval(v)) for k, v in per_round.items()}
        shown = {k: f"{m:.3f} [{lo:.3f}-{hi:.3f}]" for k, (m, lo, hi) in summary[config].items()}
        note = "  <- A/A control: this section's noise floor" if config == CONTROL_AGAIN else ""
        print(f"{config:<12} {rps:>7.1f} {p50:>7.2f} {p99:>7.2f} {cpu:>6.3f}ms {switches:>7.1f}"
              f"   {shown['rps']:<21} {summary[config]['p50'][0]:>6.3f} {summary[config]['p99'][0]:>6.3f}"
              f"   {shown['cpu-cap']:<21}{note}")
        if config != "none":
            print(f"{'':<12} per round: rps {' '.join(f'{r:.2f}' for r in per_round['rps'])}"
                  f" | cpu-cap {' '.join(f'{c:.2f}' for c in per_round['cpu-cap'])}  {notes.get(config, '')}")
    print(f"\nwaitress phase took {time.perf_counter() - started:.0f} s;"
          f" load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    return summary


# -- 3. sampler CPU ----------------------------------------------------------------------------


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


# -- verdicts ----------------------------------------------------------------------------------


def verdict(low: float, high: float, goal: float) -> str:
    """met / NOT met / within noise for a range [low, high] against ``goal``."""
    if low >= goal:
        return "met"
    if high < goal:
        return "NOT met"
    return "within noise"


def print_verdicts(paired: dict[str, list[float]] | None, waitress: dict | None) -> None:
    print("\n== verdicts (primary: paired CPU, corrected ratio over blocks; corroboration: waitress, 90% CI)")
    for config, goal in GOALS.items():
        parts = []
        if paired and config in paired:
            values = paired[config]
            parts.append(f"paired {statistics.median(values):.4f} [{min(values):.4f}-{max(values):.4f}]:"
                         f" {verdict(min(values), max(values), goal)}")
        if waitress and config in waitress:
            for key in ("rps", "cpu-cap"):
                median, low, high = waitress[config][key]
                parts.append(f"waitress {key} {median:.3f} [{low:.3f}-{high:.3f}]: {verdict(low, high, goal)}")
        if parts:
            print(f"{config:<12} >= {goal:.2f}  " + "; ".join(parts))
    if waitress and CONTROL_AGAIN in waitress:
        median, low, high = waitress[CONTROL_AGAIN]["rps"]
        print(f"(waitress A/A control, the bare app against itself: rps {median:.3f} [{low:.3f}-{high:.3f}];"
              f" its distance from 1 is this section's bias, its width the noise: a waitress ratio closer"
              f" to its goal than that decides nothing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=CONFIGS + (CONTROL_AGAIN,), help=argparse.SUPPRESS)
    parser.add_argument("--paired-child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset (none is always included)")
    parser.add_argument("--paired-only", action="store_true", help="run only the paired in-process CPU section")
    parser.add_argument("--no-paired", action="store_true", help="skip the paired in-process CPU section")
    parser.add_argument("--blocks", type=int, default=5, help="paired: blocks per configuration")
    parser.add_argument("--pairs", type=int, default=400, help=f"paired: request pairs per block (a multiple of {2 * len(PATHS)})")
    parser.add_argument("--runs", type=int, default=14, help="waitress: rounds over all configurations")
    parser.add_argument("--requests", type=int, default=400, help="waitress: requests per configuration per round")
    parser.add_argument("--concurrency", type=int, default=8, help="waitress: keep-alive client connections")
    parser.add_argument("--rows", type=int, default=20_000, help="posts in the shop database")
    parser.add_argument("--no-sampler-cpu", action="store_true", help="skip the sampler CPU measurement")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.db, args.store)
        return
    if args.paired_child:
        paired_child(args.paired_child, args.db, args.store, args.blocks, args.pairs)
        return
    if args.paired_only and args.no_paired:
        parser.error("--paired-only and --no-paired exclude each other")
    if args.pairs <= 0 or args.pairs % (2 * len(PATHS)):
        parser.error(f"--pairs must be a positive multiple of {2 * len(PATHS)} (each order over every path equally often)")
    if min(args.blocks, args.runs, args.requests, args.concurrency) < 1:
        parser.error("--blocks, --runs, --requests and --concurrency must be at least 1")
    unknown = [c for c in args.configs.split(",") if c and c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    configs = ["none"] + [c for c in args.configs.split(",") if c in CONFIGS and c != "none"]

    from samples.shop.data import build_database

    cache = Path(tempfile.gettempdir()) / "profviz-bench"
    cache.mkdir(exist_ok=True)
    db = str(cache / f"shop-{args.rows}.sqlite3")
    build_database(db, rows=args.rows)
    print(f"sample shop ({args.rows} posts), endpoints: {', '.join(sorted(set(PATHS)))}")
    paired = waitress = None
    with tempfile.TemporaryDirectory(prefix="profviz-bench-") as tmp:
        if not args.no_paired:
            print(f"\n== paired in-process CPU: {args.blocks} blocks x {args.pairs} pairs per config after"
                  f" {WARMUP_PAIRS} warm-up pairs, one child process per config, one thread")
            started = time.perf_counter()
            paired = report_paired(run_paired(configs, db, tmp, args))
            print(f"paired phase took {time.perf_counter() - started:.0f} s")
        if not args.paired_only:
            waitress = run_waitress(configs, db, tmp, args)
    if not args.paired_only and not args.no_sampler_cpu:
        print()
        for threads in (10, 100):
            cpu = sampler_cpu(threads)
            print(f"sampler CPU at 100 Hz with {threads:>3} busy request threads: {cpu * 1000:.1f} ms per second ({cpu:.2%} of one core)")
    print_verdicts(paired, waitress)


if __name__ == "__main__":
    main()
