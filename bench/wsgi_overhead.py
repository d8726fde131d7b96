"""Overhead of profviz's WSGI middleware on the sample shop, as ratios to no middleware.

Configurations (the same in every section):

    none          the bare app
    timing        ProfilerMiddleware(sampler=False): every request timed and stored
    sampler       the always-on sampler at 100 Hz with tail capture (the default)
    pyinst-10%    pyinstrument deep profiles on 10 % of requests (sampler off)
    pyinst-100%   pyinstrument deep profiles on every request (sampler off)
    werkzeug      werkzeug.middleware.profiler.ProfilerMiddleware (cProfile, no output)

Goals: timing >= 0.99, sampler >= 0.97, pyinst-10% >= 0.93 (throughput relative to the bare app).

Sections (``--sections``, run in this order; ``--paired-only`` = waitress-paired and paired,
``--no-paired`` = instructions, waitress and the sampler CPU):

    instructions     CPU instructions per request of one server per configuration under callgrind
                     (deterministic; its verdicts are printed first)
    waitress-paired  the served app's CPU per request, bare and wrapped in one server
    paired           the same pairing in process, direct WSGI calls on one thread
    waitress         throughput of one server process per configuration

The time-based sections cannot resolve a goal within ~2 % of the true ratio on this noisy 2-vCPU
box (their A/A controls swing by +-2-3 %); the instruction count can (see 0.). Of the time-based
sections, waitress-paired is the primary one: it measures what a deployment pays (a request through waitress, HTTP and 8
worker threads costs ~2.5 ms of server CPU here, against ~1.0 ms for a direct call on one thread,
so the same absolute profviz cost is a smaller fraction of it than in the in-process section,
which is stricter than any server), and pairing inside one process cancels what makes separate
server processes incomparable on this 2-core VM (start order, CPU placement, the box's other load:
the throughput section's A/A control is off by ~9 %).

0. Instructions (``--sections instructions``; the first verdicts). The CPU work per request as
user-space instructions counted by valgrind's callgrind, repeatable to ~0.03 % between identical
runs whatever else the machine does; the A/A difference below, two server processes of the bare
app, has come out 0.03-0.3 % at 1000 requests (thread interleaving is not deterministic: waitress
handoffs, GIL waits timed in wall-clock time, how many requests a sampler tick finds in flight).
One waitress server (the ``--serve`` shop, 8 threads, 127.0.0.1, ephemeral port) per configuration
runs under ``valgrind --tool=callgrind --separate-threads=no --fair-sched=try`` with the real
interpreter binary (``sys.executable`` resolved: a pyenv shim is a bash script, and valgrind would
count bash; the dump's ``cmd:`` and count are checked), ``PYTHONHASHSEED=0`` (hash randomisation
moves the counts) and ``OPENBLAS_NUM_THREADS=1`` (numpy, imported by profviz only, starts OpenBLAS
worker threads whose idle spin-wait, brief natively, runs on under valgrind's thread scheduler and
was counted at 3-6k instructions per request, in proportion to wall time, not work); ``random`` is seeded in the server, so ``pyinst-10%`` profiles the same number
of requests in every run. The server answers ``/_bench/counters`` outside the middleware: it
flushes the writer's queue and returns the middleware's stats. This process is the client (native
speed; ``--instr-concurrency`` keep-alive connections, default ``--concurrency``, over PATHS): 200
warm-up requests, counters (flush), ``callgrind_control --zero``, ``--instr-requests`` requests
(1000), counters (the writer's work for them is done and counted), then ``callgrind_control
--dump`` and the dump's ``totals:`` line (which, with the final dump's, adds up to callgrind's
"Collected"): every thread of the process (waitress loop and workers, the shop's service threads,
profviz's writer and sampler). At most two valgrind servers run at once (2 vCPUs); with all configs
the section took 10.5 and 14 minutes here (load average 6-12 from other work; ``--instr-requests
600`` shortens it).

Everything runs ~25-45x slower under callgrind (more when the box is busy), so profviz's
time-driven parts are scaled by the slowdown S, or a 100 Hz sampler would take S times more samples
per request and the writer, waking every second, would commit S times smaller batches. S is the
bare app's wall time per request under callgrind (two servers) over its wall time per request
natively (the median of three native runs): the sampler's ticks, the deep profiler's interval and
the writer's polls follow wall time, and with the server saturated by the closed-loop clients wall
time per request is the inverse of throughput. (S from CPU time, used at first, moved with the
box's load between 19.5 and 43 and left the sampler with 0.40 ticks per request under callgrind
against 0.26 natively; from wall time the same run gave 0.29.) The instrumented servers then run with
``sample_hz``, ``tail_max_per_minute`` and ``baseline_per_minute`` divided by S and
``writer_interval_s``, ``aggregate_interval_s``, ``deep_interval_s`` (and the writer's 1 s idle
check, the poll interval of the shop's two loopback services, which the measured paths leave
idle: unscaled, their 50 ms wake-ups came ~2 times a request each under callgrind, 4-9k
instructions a request per service that moved with the box's load, and the interpreter's GIL
switch interval, 5 ms: a thread waiting that long for the GIL makes the holder hand it over, so
unscaled the 8 server threads traded it S times more often per request than natively) multiplied by it (defaults read from ``profviz.middleware.options``). Werkzeug's
profiler (cProfile) has no time-driven part. The sampler config is also run natively, and its ticks
per request are printed next to the callgrind run's: they agree when the scaling is right, to
within the box's noise (S from CPU time is printed too). Its samples per
request do not: a tick samples every request in flight, and under callgrind ~6 of the 8
connections' requests are in the server at a tick against ~3.5 natively (the client runs at native
speed, so a connection spends a smaller part of its cycle outside the server), which charges the
sampler about twice the native samples per request. Hence the sampler and the bare app are also run
with half the connections (``sampler@4``, ``none@4``): the sampler's excess over the bare app at
the two concurrencies gives its cost per sample and per request besides, and from them its ratio at
the native samples per request (printed, and in the verdict line next to the measured one; the
measured ratio is the one for a saturated server, whose 8 threads are all busy).

The cyclic garbage collector: a full (generation 2) collection of the shop server's heap costs
~27 ms of CPU and comes about once per few thousand requests, so whether one falls inside a
1000-request window depends on where each configuration's allocations left the collector's
counters, not on its work: that alone can move a ratio by ~1 %, the same way in every run of the
same configuration (so the A/A control, two identical servers, does not show it). Hence at the
window's start (``/_bench/counters?window=start``) every server runs ``gc.collect()`` and
``gc.freeze()`` (``--instr-gc freeze``, the default; ``asis`` to compare): young collections,
driven by allocations, stay counted, while a full collection no longer walks the heap built
before the window. What that leaves out is measured natively, without a frozen heap:
``--gc-requests`` (10000) requests per configuration, the full collections' count and CPU time
(from ``gc.callbacks``) as a share of the server's CPU, printed per configuration with the count
behind it (a few collections per 10000 requests: the share is good to a few tenths of itself), and each ratio
with that share put back, ratio x (1 - share) / (1 - the bare app's share), in the table's notes and
the verdicts ("with full collections at their native share").

The bare app is measured in two server processes (``none``, ``none-again``): their difference is
the method's noise floor. Per configuration: millions of instructions per request, the ratio bare /
config (bare = the mean of the two bare runs: the throughput ratio of a CPU-bound server counted in
instructions), the goal and the verdict: ``met`` when ratio - A/A difference >= goal, ``NOT met``
when ratio + A/A difference < goal, else ``within noise``; then the window's counts (requests
recorded and dropped, tail and deep profiles, sampler ticks and samples per request), the server's
CPU and wall time per request under callgrind (for S; not compared).

What it does NOT capture: instructions are not time. Cache misses and memory stalls (profviz's data
structures polluting the app's caches), branch mispredictions and the cost of slow instructions
weigh the same as any instruction; callgrind counts user-space instructions only: system calls are
not counted, nor anything in the kernel (socket I/O, futex waits and wake-ups, i.e. the kernel side
of GIL handoffs, the sampler's sleeps, SQLite's file writes and fsyncs), nor the extra context
switches themselves. The app's own waits (the shop's 1 ms service delays) and Python's 5 ms GIL
switch interval are not scaled, so requests are more CPU-bound under callgrind than natively and
GIL handoff patterns differ somewhat (alike for every configuration). The tail profile budget is a
token bucket per route whose burst (ten seconds' worth, at least one token) shrinks to one token
when its rate is divided by S, so fewer tail profiles are kept in the window than in a native run
of the same requests (both counts are printed: 14-18 against 33-38 per 1000 requests). Scheduling
still moves a few things: which requests turn out slow enough for a tail profile, how many requests
a tick finds in flight, and the sampler's idle ticks in the ~1 s between the load's end and the
dump. The route aggregates (written once a minute natively, every ~20k requests) fall outside the
counted window, as in the paired sections.

1. Paired waitress CPU (the primary time-based measure). Per configuration ONE waitress server
process (8 threads, 127.0.0.1, ephemeral port) hosts two shop apps over the same database and the
same log sink / external service: ``/a/...`` reaches the bare app, ``/b/...`` the wrapped one
(``none``: both bare, the A/A control), the prefix moved from PATH_INFO to SCRIPT_NAME so the
shop's routes match (checked before the load: every path answers 200 on both sides, the same body
on both, 404 outside them; after it, the wrapped app's stored routes are listed). The dispatcher
charges each request's worker-thread CPU (``time.thread_time_ns`` from before the app call until
the response iterable is closed; waitress iterates and closes it on the same thread) to its side.
This process is the client: ``--concurrency`` keep-alive connections, each taking the next pair
and sending the same path to both apps back to back, the order within a pair flipping every full
cycle of the path list (a path's second call is cheaper: warm caches). After 300 warm-up pairs,
``--blocks`` blocks of ``--pairs`` pairs; after each block the client reads ``/_bench/counters``,
which first flushes the writer's queue (so its CPU for the block counts; the sampler's per-route
aggregate profiles, written once a minute, are not forced) and then returns each side's CPU and
request count, the process CPU (``time.process_time_ns``) and the CPU clock of each profviz
thread (``profviz-writer``, ``profviz-sampler``, found by name; ``pthread_getcpuclockid``).
Per block, in microseconds per request:

    bare app, wrapped   each side's worker-thread CPU per request of that side
    shared              process CPU - both sides - profviz threads, per request of either side:
                        waitress's main loop and HTTP parsing outside the app, the shop's service
                        threads, GIL handoffs (charged to both sides alike)
    threads             profviz's threads' CPU per wrapped request
    bare srv            bare app + shared: the bare server's CPU per request
    ratio               (bare + shared) / (wrapped + shared + threads): the throughput ratio of a
                        CPU-bound server
    corrected           ratio / the A/A control's median ratio

The table shows medians and the min-max over blocks, and profviz's cost per wrapped request split
into the request path (wrapped - bare x the control's wrapped/bare app CPU) and its threads.
Caveats: with both apps in one server the sampler sees only the wrapped half of the in-flight
requests, yet its whole CPU is charged to the wrapped requests (conservative for its fixed
per-tick cost; its per-sampled-thread cost is counted about right). Costs profviz causes outside
its threads and the wrapped request (e.g. extra GIL handoffs in the waitress loop) land in
``shared`` and are split over both sides, so half of them is missed. Per-request CPU rises with
the box's load (other processes' contention for the 2 cores and their caches; steal time is
negligible here), so the absolute figures move between runs and configurations, and with 8
threads interleaving, the two calls of a pair do not see the same conditions as they do on one
thread: a block's ratio strays by a few per cent (the A/A control's blocks ranged 0.945-1.014 in
one full run at 400 pairs a block, hence 800 by default), and the median over blocks is steadier
than the min-max. At this resolution, a goal within ~2 % of the true ratio reads "within noise".

2. Paired in-process CPU cost (the strictest measure; corroboration). One child process
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

3. Waitress throughput (corroboration). One waitress server (8 threads) per configuration runs
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

4. The sampler's own CPU time per second of wall time with 10 and 100 threads busy serving
requests (each blocked in a 40-frame-deep stack, as a web framework's worker would be).

Verdicts: the instruction counts' first (section 0), then section 1's, then sections 2 and 3 as
corroboration; for the time-based sections: ``met`` when
the whole range (paired sections: min-max over blocks of the corrected ratio, widened on both
sides by the largest distance of that section's A/A control blocks from 1; waitress: the 90 %
interval) is at or above the goal, ``NOT met`` when it is entirely below,
``within noise`` when it straddles the goal.

Run: python bench/wsgi_overhead.py [--configs none,timing] [--sections instructions,waitress-paired,paired,waitress]
     [--instr-requests 1000]
     [--paired-only | --no-paired]
     [--blocks 5] [--pairs 400] [--runs 14] [--requests 400] [--no-sampler-cpu]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = ("none", "timing", "sampler", "pyinst-10%", "pyinst-100%", "werkzeug")
SECTIONS = ("instructions", "waitress-paired", "paired", "waitress")  # run in this order; see the module docstring
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


def instrument(app, config: str, store: str, **overrides):
    """Wrap the Flask ``app`` as ``config`` says (profviz options: OPTIONS[config], then ``overrides``);
    the profviz middleware, or None (bare, werkzeug)."""
    if config == "werkzeug":
        from werkzeug.middleware.profiler import ProfilerMiddleware as WerkzeugProfiler

        app.wsgi_app = WerkzeugProfiler(app.wsgi_app, stream=None)
        return None
    if config in ("none", CONTROL_AGAIN):
        return None
    from profviz.flask import init_app

    return init_app(app, store=store, **{**OPTIONS[config], **overrides})


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


# -- 0. instructions (callgrind) ---------------------------------------------------------------

INSTR_WARMUP = 200  # requests before the counted window: imports, caches, route windows, valgrind's translations
SCALED_INTERVALS = ("writer_interval_s", "aggregate_interval_s", "deep_interval_s")  # wall-time intervals: x S
SCALED_RATES = ("sample_hz", "tail_max_per_minute", "baseline_per_minute")  # per wall-time rates: / S
CALLGRIND = ("valgrind", "--tool=callgrind", "--separate-threads=no", "--fair-sched=try")
INSTR_ORDER = ("pyinst-100%", "werkzeug", "sampler", "pyinst-10%", "timing")  # slowest first: two at a time pack better


def scaled_options(config: str, scale: float) -> dict:
    """profviz's time-driven options for ``config`` with wall time stretched ``scale`` times
    (intervals x scale, rates / scale; unset ones from the engine's defaults); {} without profviz."""
    if config not in OPTIONS:
        return {}
    from profviz.middleware.options import defaults

    default = defaults()
    options = {}
    for name in SCALED_INTERVALS + SCALED_RATES:
        value = OPTIONS[config].get(name, default[name])
        options[name] = value * scale if name in SCALED_INTERVALS else value / scale
    return options


def real_interpreter() -> str:
    """The interpreter binary itself: under pyenv ``python`` may be a bash shim, and valgrind would count bash."""
    path = os.path.realpath(sys.executable)
    with open(path, "rb") as binary:
        if binary.read(4) != b"\x7fELF":
            raise SystemExit(f"bench: {path} (sys.executable resolved) is not an ELF binary; run the bench with the real interpreter")
    return path


def callgrind_control(pid: int, *command: str) -> None:
    """Send ``command`` to the callgrind process ``pid`` and wait for it to be done, or exit with what failed."""
    run = subprocess.run(["callgrind_control", *command, str(pid)], capture_output=True, text=True, timeout=600)
    if run.returncode != 0 or "OK" not in run.stdout:
        raise SystemExit(f"bench: callgrind_control {' '.join(command)} {pid} failed (exit {run.returncode}):"
                         f" {(run.stdout + run.stderr).strip()[-500:]}")


def dump_totals(out_file: str, label: str) -> tuple[int, str]:
    """(instructions, command) of the callgrind dump triggered as ``label``: its ``totals:`` line (the
    sum of its cost lines; with one event, Ir) and its ``cmd:`` line."""
    prefix = os.path.basename(out_file) + "."
    for name in sorted(os.listdir(os.path.dirname(out_file))):
        if not name.startswith(prefix):
            continue
        header: dict[str, str] = {}
        with open(os.path.join(os.path.dirname(out_file), name), errors="replace") as dump:
            for line in dump:
                key, sep, value = line.partition(":")
                if sep and key in ("cmd", "desc", "events", "totals"):
                    header.setdefault(key if key != "desc" or "Trigger" not in value else "trigger", value.strip())
        if header.get("trigger") == f"Trigger: dump {label}":
            if header.get("events") != "Ir" or "totals" not in header:
                raise SystemExit(f"bench: callgrind dump {name} has events {header.get('events')!r}, totals {header.get('totals')!r}")
            return int(header["totals"]), header.get("cmd", "")
    raise SystemExit(f"bench: no callgrind dump {label!r} next to {out_file}")


def instr_counters(port: int, window_start: bool = False) -> tuple[dict, dict]:
    """``/_bench/counters`` of a ``--time-scale`` server: the writer's queue flushed, then (its
    stats, the server's garbage-collector figures); ``window_start`` marks the counted window's start."""
    status, body = get(port, COUNTERS_PATH + ("?window=start" if window_start else ""))
    if status != 200:
        raise SystemExit(f"bench: {COUNTERS_PATH} answered {status}")
    answer = json.loads(body)
    if not answer["flushed"]:
        raise SystemExit("bench: the writer's queue did not flush in time")
    return answer["stats"] or {}, answer["gc"]


def instr_measure(config: str, label: str, db: str, tmp: str, args, scale: float, under_callgrind: bool,
                  connections: int, requests: int | None = None, freeze_gc: bool = True) -> dict:
    """One ``config`` server (natively or under callgrind) through warm-up and the counted window of
    ``requests`` (default ``--instr-requests``) requests from ``connections`` keep-alive clients:
    instructions (callgrind), server CPU and wall time, profviz's and the garbage collector's
    counters over the window (``freeze_gc``: the heap frozen at the window's start)."""
    n = requests or args.instr_requests
    label = label.replace("%", "pct")  # valgrind expands % in --callgrind-out-file
    out_file = os.path.join(tmp, f"callgrind.{label}.out")
    wrapper = (*CALLGRIND, f"--callgrind-out-file={out_file}") if under_callgrind else ()
    log_path = os.path.join(tmp, f"instr-{label}.log")
    with open(log_path, "w") as log:
        server = Server(config, db, os.path.join(tmp, f"instr-{label}.db"), python=real_interpreter(), wrapper=wrapper,
                        extra=("--time-scale", repr(scale), *(("--freeze-gc",) if freeze_gc else ())), env=dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1"), stderr=log)
        try:
            load(server.port, INSTR_WARMUP, connections)
            before, gc_before = instr_counters(server.port, window_start=True)
            if under_callgrind:
                callgrind_control(server.proc.pid, "--zero")
            cpu0, wall0 = server.counters()[0], time.perf_counter()
            load(server.port, n, connections)
            after, gc_after = instr_counters(server.port)
            cpu, wall = server.counters()[0] - cpu0, time.perf_counter() - wall0
            deadline = time.monotonic() + 60
            while after and after["recorded"] - before["recorded"] < n and time.monotonic() < deadline:
                # a response can reach the client before its worker ends the request (waitress sends each
                # chunk as it comes, then finishes iterating and calls close()): wait for those records
                time.sleep(1.0)
                after, gc_after = instr_counters(server.port)
            if under_callgrind:
                callgrind_control(server.proc.pid, f"--dump={label}")
        finally:
            note = server.stop(timeout_s=600)
    gc_window = {key: [a - b for a, b in zip(gc_after[key], gc_before[key])] for key in gc_after}
    figures = {"config": config, "cpu_ms": cpu * 1e3 / n, "wall_ms": wall * 1e3 / n, "note": note, "instructions": None,
               "gc": gc_window, "requests": n}
    if after:
        counts = {"recorded": after["recorded"] - before["recorded"], "dropped": after["dropped"] - before["dropped"],
                  "tail": after["profiles_tail"] - before["profiles_tail"], "deep": after["profiles_deep"] - before["profiles_deep"]}
        if after["sampler"] is not None:
            counts["ticks"] = (after["sampler"]["ticks"] - before["sampler"]["ticks"]) / n
            counts["samples"] = (after["sampler"]["samples"] - before["sampler"]["samples"]) / n
        figures["counts"] = counts
    if under_callgrind:
        instructions, command = dump_totals(out_file, label)
        if real_interpreter() not in command or instructions < 1e5 * n:
            raise SystemExit(f"bench: callgrind counted {instructions} instructions for {n} requests of {command!r}:"
                             " not the server's interpreter (see the log)")
        figures["instructions"] = instructions / n
    return figures


def run_instructions(configs: list[str], db: str, tmp: str, args) -> dict:
    """Measure and print the instructions table; {"ratios": {config: ratio}, "noise": A/A difference,
    "sampler_native": the sampler's ratio at native samples per request, or None, "with_gc":
    {config: ratio with full collections at their native share}}."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: the instructions section needs {tool} (apt-get install valgrind), or leave it out of --sections")
    n, conns = args.instr_requests, args.instr_concurrency
    half = conns // 2
    started = time.perf_counter()
    print(f"\n== instructions: callgrind, {n} requests per config after {INSTR_WARMUP} warm-up,"
          f" one server (8 threads) per config, at most 2 at once; {conns} keep-alive clients; git {git_commit()}")
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} CPUs)")
    frozen = args.instr_gc == "freeze"
    native = {c: instr_measure(c, f"native-{c}", db, tmp, args, 1.0, False, conns, freeze_gc=frozen) for c in ("none", "sampler") if c in configs}
    gc_native = {c: instr_measure(c, f"gc-{c}", db, tmp, args, 1.0, False, conns, requests=args.gc_requests, freeze_gc=False)
                 for c in configs} if frozen and args.gc_requests else {}
    native_walls = [native["none"]["wall_ms"]] + [
        instr_measure("none", f"native-none-{i}", db, tmp, args, 1.0, False, conns, freeze_gc=frozen)["wall_ms"] for i in (2, 3)
    ]
    native_wall_ms = statistics.median(native_walls)
    with ThreadPoolExecutor(max_workers=2) as pool:
        bare = list(pool.map(lambda label: instr_measure("none", label, db, tmp, args, 1.0, True, conns, freeze_gc=frozen),
                            ("none", CONTROL_AGAIN)))
        scale = statistics.mean(b["wall_ms"] for b in bare) / native_wall_ms
        options = {c: scaled_options(c, scale) for c in OPTIONS}
        print(f"slowdown S = {scale:.1f}: bare server wall time per request {bare[0]['wall_ms']:.1f} / {bare[1]['wall_ms']:.1f} ms"
              f" under callgrind, natively {native_wall_ms:.3f} ms (median of {', '.join(f'{w:.3f}' for w in native_walls)});"
              f" server CPU per request {bare[0]['cpu_ms']:.1f} / {bare[1]['cpu_ms']:.1f} ms under callgrind,"
              f" {native['none']['cpu_ms']:.3f} ms natively:"
              f" {statistics.mean(b['cpu_ms'] for b in bare) / native['none']['cpu_ms']:.1f}x)")
        print("scaled profviz settings under callgrind: " + ", ".join(f"{k}={v:.4g}" for k, v in options["sampler"].items())
              + f", writer idle_s={scale:.4g} (natively: x1 or /1 of {', '.join(SCALED_INTERVALS + SCALED_RATES)})")
        jobs = [(c, c, conns) for c in INSTR_ORDER if c in configs]
        if "sampler" in configs and half >= 1:  # the sampler's cost per sample, for samples per request as natively
            jobs[1:1] = [("sampler", f"sampler@{half}", half), ("none", f"none@{half}", half)]
        measured = dict(zip((label for _, label, _ in jobs),
                            pool.map(lambda job: instr_measure(job[0], job[1], db, tmp, args, scale, True, job[2], freeze_gc=frozen), jobs)))
    results = {"none": bare[0], CONTROL_AGAIN: bare[1], **measured}
    base = statistics.mean(b["instructions"] for b in bare)
    noise = abs(bare[0]["instructions"] - bare[1]["instructions"]) / base
    print(f"\n{'config':<12} {'Minstr/req':>10} {'ratio':>7} {'goal':>5}  {'verdict':<13} {'cg CPU ms':>9} {'wall ms':>8}  window counts")
    ratios: dict[str, float] = {}
    rows = [c for c in CONFIGS if c in results] + [CONTROL_AGAIN] + [label for label in (f"sampler@{half}", f"none@{half}") if label in results]
    for label in rows:
        figures = results[label]
        own_base = results[f"none@{half}"]["instructions"] if label == f"sampler@{half}" else base
        ratios[label] = ratio = own_base / figures["instructions"]
        goal = GOALS.get(label)
        verdict_text = instr_verdict(ratio, noise, goal) if goal else ("A/A control" if label in ("none", CONTROL_AGAIN) else "")
        counts = figures.get("counts", {})
        shown = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in counts.items())
        shown += " gc=" + "/".join(str(c) for c in figures["gc"]["collections"])
        print(f"{label:<12} {figures['instructions'] / 1e6:>10.3f} {ratio:>7.4f} {goal or '':>5}  {verdict_text:<13}"
              f" {figures['cpu_ms']:>9.1f} {figures['wall_ms']:>8.1f}  {shown}")
        if counts and counts["recorded"] < n:
            print(f"{'':<12} NOT RECORDED: {n - counts['recorded']} of {n} requests in the window")
        elif counts and counts["recorded"] > n:  # a warm-up request that reached the writer after the counters were read
            print(f"{'':<12} {counts['recorded'] - n} more recorded than the window's {n} requests (late warm-up records)")
    print(f"(A/A: the bare app in two servers, {bare[0]['instructions'] / 1e6:.4f} and {bare[1]['instructions'] / 1e6:.4f}"
          f" Minstr/req: difference {noise:.4%}, the noise floor; ratio = mean of the two / config"
          + (f"; rows @{half}: {half} client connections, ratio against none@{half})" if f"none@{half}" in results else ")"))
    print("(gc=a/b/c: the cyclic collector's generation 0/1/2 collections in the window; "
          + ("the heap was frozen at its start, see --instr-gc)" if frozen else "the heap was not frozen: --instr-gc asis)"))
    with_gc = gc_adjusted_ratios(gc_native, ratios) if gc_native else {}
    sampler_native = None
    if "sampler" in measured and "sampler" in native:
        at_full, native_counts = measured["sampler"]["counts"], native["sampler"]["counts"]
        print(f"(sampler per request: {at_full['ticks']:.2f} ticks, {at_full['samples']:.2f} samples under callgrind at"
              f" {options['sampler']['sample_hz']:.3g} Hz; natively at 100 Hz {native_counts['ticks']:.2f} ticks,"
              f" {native_counts['samples']:.2f} samples, {native_counts['tail']} tail profiles. Ticks per request agree when"
              f" the time scaling is right; samples per tick are the requests in flight, more under callgrind: the"
              f" client runs at native speed, so a connection spends less of its cycle outside the server)")
        if f"sampler@{half}" in measured:
            sampler_native = sampler_at_native_samples(results, base, half, native_counts["samples"])
    print(f"instructions phase took {time.perf_counter() - started:.0f} s;"
          f" load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    return {"ratios": ratios, "noise": noise, "sampler_native": sampler_native, "with_gc": with_gc}


def gc_adjusted_ratios(gc_native: dict, ratios: dict) -> dict:
    """Print the full (generation 2) collections of native runs without a frozen heap, and each
    config's ratio with their share of the server's CPU time put back: ratio x (1 - share) /
    (1 - the bare app's share). Returns {config: adjusted ratio}."""
    shares = {}
    print(f"\nfull garbage collections natively (heap not frozen), {next(iter(gc_native.values()))['requests']} requests per config:")
    for config, figures in gc_native.items():
        n = figures["requests"]
        collections, cpu_ms = figures["gc"]["collections"], figures["gc"]["cpu_ms"]
        shares[config] = cpu_ms[2] / (figures["cpu_ms"] * n) if figures["cpu_ms"] else 0.0
        each = cpu_ms[2] / collections[2] if collections[2] else 0.0
        print(f"  {config:<12} {collections[2]:3d} ({collections[2] * 1000 / n:5.2f} per 1000 requests), {each:6.1f} ms CPU each,"
              f" {shares[config]:.2%} of the server's CPU (generations 0/1: {collections[0]}/{collections[1]},"
              f" {cpu_ms[0] + cpu_ms[1]:.0f} ms)")
    adjusted = {}
    for config, ratio in ratios.items():
        if config in shares and config != "none" and "none" in shares:
            adjusted[config] = ratio * (1 - shares[config]) / (1 - shares["none"])
    if adjusted:
        print("  ratios with full collections at their native share: "
              + ", ".join(f"{config} {value:.4f}" for config, value in adjusted.items()))
    return adjusted


def sampler_at_native_samples(results: dict, base: float, half: int, native_samples: float) -> float | None:
    """The sampler's ratio had it taken as many samples per request as natively: its excess over the
    bare app at the same concurrency, linear in samples per request through the full and half
    concurrency runs (printed); None when the two runs' samples per request are too close."""
    full, reduced = results["sampler"], results[f"sampler@{half}"]
    excess_full = full["instructions"] - base
    excess_half = reduced["instructions"] - results[f"none@{half}"]["instructions"]
    spread = full["counts"]["samples"] - reduced["counts"]["samples"]
    if spread < 0.1:
        print(f"(sampler at native samples per request: not estimated, {spread:.2f} samples/req apart at {half} and full concurrency)")
        return None
    per_sample = (excess_full - excess_half) / spread
    excess_native = excess_full + (native_samples - full["counts"]["samples"]) * per_sample
    ratio = base / (base + excess_native)
    print(f"(sampler excess over bare: {excess_full / 1e3:.0f} k instr/req at {full['counts']['samples']:.2f} samples/req,"
          f" {excess_half / 1e3:.0f} k at {reduced['counts']['samples']:.2f}: {per_sample / 1e3:.1f} k per sample,"
          f" {(excess_full - full['counts']['samples'] * per_sample) / 1e3:.0f} k per request besides;"
          f" at the native {native_samples:.2f} samples/req: {excess_native / 1e3:.0f} k, ratio {ratio:.4f})")
    return ratio


def instr_verdict(ratio: float, noise: float, goal: float) -> str:
    """met when the ratio clears the goal by the A/A noise, NOT met when it misses it by more, else within noise."""
    return verdict(ratio - noise, ratio + noise, goal)


def git_commit() -> str:
    """The checkout's commit (short hash, ``+dirty`` when bench or profviz files differ from it)."""
    try:
        commit = subprocess.run(["git", "log", "-1", "--format=%h"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "profviz", "bench"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return "unknown"
    return commit + ("+dirty" if dirty else "")


# -- 1. paired waitress CPU (primary) ----------------------------------------------------------

SIDES = {"/a": "bare", "/b": "wrapped"}  # path prefix -> app in the paired server
COUNTERS_PATH = "/_bench/counters"
PROFVIZ_THREAD_PREFIX = "profviz-"  # profviz-writer (collect/writer.py), profviz-sampler (collect/sampler.py)


def profviz_threads_cpu_ns() -> dict[str, int]:
    """CPU nanoseconds so far of each of this process's profviz threads, by thread name."""
    cpu: dict[str, int] = {}
    for thread in threading.enumerate():
        if thread.name.startswith(PROFVIZ_THREAD_PREFIX) and thread.ident is not None:
            try:
                used = time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
            except (OSError, ProcessLookupError):  # ended since enumerate()
                continue
            cpu[thread.name] = cpu.get(thread.name, 0) + used
    return cpu


class _TimedBody:
    """A response iterable that charges its worker thread's CPU, from the app call to close(), to one side."""

    __slots__ = ("body", "side", "start_ns", "dispatcher")

    def __init__(self, body, side: str, start_ns: int, dispatcher: PairedDispatcher):
        self.body, self.side, self.start_ns, self.dispatcher = body, side, start_ns, dispatcher

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.dispatcher.charge(self.side, self.start_ns)


class PairedDispatcher:
    """WSGI app over a bare and a wrapped app: ``/a/...`` -> bare, ``/b/...`` -> wrapped, counters at
    ``/_bench/counters`` (JSON, after flushing the writer's queue). The prefix moves from PATH_INFO to
    SCRIPT_NAME, so the apps' routes match as if mounted there."""

    def __init__(self, bare, wrapped, middleware):
        self.apps = {"bare": bare, "wrapped": wrapped}
        self.middleware = middleware
        self.cpu_ns = {"bare": 0, "wrapped": 0}
        self.requests = {"bare": 0, "wrapped": 0}
        self.lock = threading.Lock()

    def charge(self, side: str, start_ns: int) -> None:
        used = time.thread_time_ns() - start_ns
        with self.lock:
            self.cpu_ns[side] += used
            self.requests[side] += 1

    def __call__(self, environ: dict, start_response):
        path = environ.get("PATH_INFO", "")
        side = SIDES.get(path[:2]) if path[2:3] == "/" else None
        if side is None:
            if path == COUNTERS_PATH:
                return self.counters(start_response)
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"paired bench server: /a/... (bare) or /b/... (wrapped)\n"]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + path[:2]
        environ["PATH_INFO"] = path[2:]
        start_ns = time.thread_time_ns()
        try:
            body = self.apps[side](environ, start_response)
        except BaseException:
            self.charge(side, start_ns)
            raise
        return _TimedBody(body, side, start_ns, self)

    def counters(self, start_response):
        flushed, stats = flush_queue(self.middleware)
        threads = profviz_threads_cpu_ns()
        process_ns = time.process_time_ns()
        with self.lock:
            body = {"requests": dict(self.requests), "app_ns": dict(self.cpu_ns), "process_ns": process_ns,
                    "threads_ns": threads, "flushed": flushed,
                    "recorded": None if stats is None else stats["recorded"],
                    "sampler_cpu_ns": None if stats is None or stats["sampler"] is None else int(stats["sampler"]["cpu_s"] * 1e9)}
        return json_response(start_response, body)


def json_response(start_response, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def flush_queue(middleware, timeout_s: float = 60.0) -> tuple[bool, dict | None]:
    """(flushed in time, stats) after the writer's queue is written; the route aggregates are not
    forced (``middleware.flush()`` would). (True, None) without a profviz middleware."""
    if middleware is None:
        return True, None
    return middleware.recorder.writer.flush(timeout_s), middleware.stats


class GcWatch:
    """The cyclic garbage collector's collections and thread CPU time per generation, since start."""

    def __init__(self):
        self.collections = [0, 0, 0]
        self.cpu_ns = [0, 0, 0]
        self._started_ns = 0
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started_ns = time.thread_time_ns()
        else:
            generation = info["generation"]
            self.collections[generation] += 1
            self.cpu_ns[generation] += time.thread_time_ns() - self._started_ns

    def figures(self) -> dict:
        return {"collections": list(self.collections), "cpu_ms": [ns / 1e6 for ns in self.cpu_ns]}


class CountersEndpoint:
    """The served app, plus ``/_bench/counters`` answered outside it: JSON ``{"flushed", "stats",
    "gc"}`` after flushing the writer's queue (timeout scaled with the server's slowdown).
    ``?window=start`` marks the counted window's start: with ``freeze_gc``, a full collection
    and ``gc.freeze()`` there (see :func:`run_instructions` on why)."""

    def __init__(self, app, middleware, flush_timeout_s: float, freeze_gc: bool = False):
        self.app, self.middleware, self.flush_timeout_s, self.freeze_gc = app, middleware, flush_timeout_s, freeze_gc
        self.gc = GcWatch()

    def __call__(self, environ: dict, start_response):
        if environ.get("PATH_INFO") != COUNTERS_PATH:
            return self.app(environ, start_response)
        flushed, stats = flush_queue(self.middleware, self.flush_timeout_s)
        if self.freeze_gc and environ.get("QUERY_STRING") == "window=start":
            gc.collect()
            gc.freeze()
        return json_response(start_response, {"flushed": flushed, "stats": stats, "gc": self.gc.figures()})


def serve_shops(config: str, db: str, store: str, paired: bool, time_scale: float | None = None,
                freeze_gc: bool = False) -> None:
    """Server process: one waitress (8 threads) serving the shop (``paired``: a bare and a
    ``config`` shop behind :class:`PairedDispatcher`; else one ``config`` shop). Prints the port,
    serves until stdin closes, then prints the middleware's stats. With ``time_scale`` (the
    instructions section): profviz's time-driven options scaled by it (:func:`scaled_options`),
    ``random`` seeded, and ``/_bench/counters`` served by :class:`CountersEndpoint`."""
    import logging

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    from profviz_shop.app import create_app
    from profviz_shop.serving import waitress_in_thread
    from profviz_shop.services import ExternalService, SlowLogSink

    poll_s = 0.05 * (time_scale or 1.0)  # the services' idle loops wake as often per request as natively
    with SlowLogSink(delay_s=0.001, poll_interval_s=poll_s) as sink, ExternalService(delay_s=0.001, poll_interval_s=poll_s) as external:
        app = create_app(db, log_sink_url=sink.url, external_url=external.url)
        if paired:
            bare = create_app(db, log_sink_url=sink.url, external_url=external.url)
            middleware = instrument(app, config, store)
            served = PairedDispatcher(bare, app, middleware)
        elif time_scale is not None:
            random.seed(0)  # pyinst-10%: the same requests profiled in every run
            sys.setswitchinterval(sys.getswitchinterval() * time_scale)  # GIL handoffs per request as natively
            middleware = instrument(app, config, store, **scaled_options(config, time_scale))
            if middleware is not None:  # the writer's idle check (route aggregates due?) runs every idle_s
                writer = middleware.recorder.writer
                writer.idle_s = writer.idle_s * time_scale
            served = CountersEndpoint(app, middleware, 60.0 * time_scale, freeze_gc)
        else:
            middleware = instrument(app, config, store)
            served = app
        with waitress_in_thread(served, threads=8) as server:
            print(server.effective_port, flush=True)
            sys.stdin.read()
        if middleware is not None:
            middleware.flush(60 * (time_scale or 1.0))
            print(middleware_stats(middleware), flush=True)


def get(port: int, path: str) -> tuple[int, bytes]:
    """One GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_paired_routing(port: int) -> None:
    """Both prefixes reach their app's routes (same answer), unknown paths 404: or exit with what failed."""
    for path in sorted(set(PATHS)):
        bare, wrapped = get(port, "/a" + path), get(port, "/b" + path)
        if bare[0] != 200 or wrapped[0] != 200:
            raise SystemExit(f"bench: paired server answered {path} with {bare[0]} (bare) / {wrapped[0]} (wrapped), expected 200")
    if get(port, "/a/posts/17") != get(port, "/b/posts/17"):
        raise SystemExit("bench: the bare and wrapped apps answered /posts/17 differently")
    for path in ("/a/no-such-page", "/b/no-such-page", "/posts"):
        status = get(port, path)[0]
        if status != 404:
            raise SystemExit(f"bench: paired server answered {path} with {status}, expected 404")


def paired_load(port: int, first_pair: int, pairs: int, concurrency: int) -> None:
    """Pairs ``first_pair`` .. + ``pairs`` over ``concurrency`` keep-alive connections; each pair is
    the same path on the bare and the wrapped app, back to back on one connection, the order
    flipping every full cycle of PATHS."""
    counter = iter(range(first_pair, first_pair + pairs))
    lock = threading.Lock()
    errors: list[str] = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while not errors:
                with lock:
                    index = next(counter, None)
                if index is None:
                    break
                path = PATHS[index % len(PATHS)]
                for prefix in (("/a", "/b") if (index // len(PATHS)) % 2 == 0 else ("/b", "/a")):
                    conn.request("GET", prefix + path)
                    response = conn.getresponse()
                    response.read()
                    if response.status != 200:
                        errors.append(f"{prefix}{path}: {response.status}")
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"connection: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"bench: paired load failed ({len(errors)} errors, first: {errors[0]})")


def counters(port: int) -> dict:
    status, body = get(port, COUNTERS_PATH)
    if status != 200:
        raise SystemExit(f"bench: {COUNTERS_PATH} answered {status}")
    return json.loads(body)


def block_figures(before: dict, after: dict) -> dict:
    """One block's CPU nanoseconds (apps, profviz threads by name, shared rest) and request counts."""
    requests = {side: after["requests"][side] - before["requests"][side] for side in ("bare", "wrapped")}
    app = {side: after["app_ns"][side] - before["app_ns"][side] for side in ("bare", "wrapped")}
    threads = {name: used - before["threads_ns"].get(name, 0) for name, used in after["threads_ns"].items()}
    process = after["process_ns"] - before["process_ns"]
    recorded = None if after["recorded"] is None else after["recorded"] - before["recorded"]
    sampler = None if after["sampler_cpu_ns"] is None else after["sampler_cpu_ns"] - before["sampler_cpu_ns"]
    return {"requests": requests, "app_ns": app, "threads_ns": threads, "process_ns": process,
            "shared_ns": process - sum(app.values()) - sum(threads.values()), "recorded": recorded,
            "sampler_cpu_ns": sampler, "flushed": after["flushed"]}


def run_waitress_paired(configs: list[str], db: str, tmp: str, args) -> dict[str, list[dict]]:
    """Each configuration's paired server in turn (never two at once); block figures by configuration."""
    results: dict[str, list[dict]] = {}
    notes: dict[str, str] = {}
    for config in configs:
        store = os.path.join(tmp, f"waitress-paired-{config}.db")
        server = Server(config, db, store, mode="--serve-paired")
        try:
            check_paired_routing(server.port)
            paired_load(server.port, 0, WARMUP_PAIRS, args.concurrency)
            blocks = []
            before = counters(server.port)
            for block in range(args.blocks):
                paired_load(server.port, WARMUP_PAIRS + block * args.pairs, args.pairs, args.concurrency)
                after = counters(server.port)
                blocks.append(block_figures(before, after))
                before = after
        finally:
            notes[config] = server.stop()
        if config not in ("none", "werkzeug"):
            notes[config] += "; " + recorded_routes(store)
        results[config] = blocks
    results["_notes"] = notes  # type: ignore[assignment]
    return results


def recorded_routes(store: str) -> str:
    """What the wrapped app stored: request rows by route (a check that prefix stripping kept route names)."""
    from collections import Counter

    from profviz.store import open_store

    with open_store(store) as opened:
        routes = Counter(opened.request_columns()["route"])
    return "stored routes: " + ", ".join(f"{route} {count}" for route, count in sorted(routes.items()))


def report_waitress_paired(results: dict[str, list[dict]]) -> dict[str, list[float]]:
    """Print the paired waitress table; corrected ratios per block by configuration (for the verdicts)."""
    notes = results.pop("_notes")

    def per_request(block: dict) -> dict[str, float]:
        """Microseconds per request: each app, shared (per request of either app), profviz threads (per wrapped request)."""
        n = block["requests"]
        return {
            "bare": block["app_ns"]["bare"] / n["bare"] / 1e3,
            "wrapped": block["app_ns"]["wrapped"] / n["wrapped"] / 1e3,
            "shared": block["shared_ns"] / (n["bare"] + n["wrapped"]) / 1e3,
            "threads": sum(block["threads_ns"].values()) / n["wrapped"] / 1e3,
        }

    def ratio(us: dict[str, float]) -> float:
        return (us["bare"] + us["shared"]) / (us["wrapped"] + us["shared"] + us["threads"])

    control = [per_request(b) for b in results["none"]]
    control_ratios = [ratio(us) for us in control]
    control_ratio = statistics.median(control_ratios)
    control_app_ratio = statistics.median(us["wrapped"] / us["bare"] for us in control)
    print(f"\n{'config':<12} {'bare app':>8} {'wrapped':>8} {'shared':>7} {'threads':>8} {'bare srv':>8}"
          f"   {'ratio median [min-max]':<24} {'corrected median [min-max]':<26} profviz us/req: request path + threads = total")
    corrected: dict[str, list[float]] = {}
    for config, blocks in results.items():
        figures = [per_request(b) for b in blocks]
        ratios = [ratio(us) for us in figures]
        corrected[config] = [r / control_ratio for r in ratios]
        path_cost = [us["wrapped"] - us["bare"] * control_app_ratio for us in figures]
        threads = [us["threads"] for us in figures]
        label = "A/A control: the method's bias and noise floor" if config == "none" else (
            f"{statistics.median(path_cost):6.1f} + {statistics.median(threads):6.1f} ="
            f" {statistics.median([p + t for p, t in zip(path_cost, threads)]):6.1f}")
        med = {key: statistics.median(us[key] for us in figures) for key in ("bare", "wrapped", "shared", "threads")}
        print(f"{config:<12} {med['bare']:>8.1f} {med['wrapped']:>8.1f} {med['shared']:>7.1f} {med['threads']:>8.1f}"
              f" {med['bare'] + med['shared']:>8.1f}   {spread(ratios, 4):<24} {spread(corrected[config], 4):<26} {label}")
        by_thread: dict[str, list[float]] = {}
        for block in blocks:
            for name, used in block["threads_ns"].items():
                by_thread.setdefault(name, []).append(used / block["requests"]["wrapped"] / 1e3)
        detail = [f"{name} {statistics.median(v):.1f}" for name, v in sorted(by_thread.items())]
        sampler = [b["sampler_cpu_ns"] / b["requests"]["wrapped"] / 1e3 for b in blocks if b["sampler_cpu_ns"] is not None]
        if sampler:
            detail.append(f"(sampler.cpu_ns {statistics.median(sampler):.1f})")
        unrecorded = sum(b["requests"]["wrapped"] - b["recorded"] for b in blocks if b["recorded"] is not None)
        unflushed = sum(not b["flushed"] for b in blocks)
        problems = (f" NOT RECORDED: {unrecorded} wrapped requests" if unrecorded else "") + (
            f" WRITER FLUSH TIMED OUT in {unflushed} blocks" if unflushed else "")
        if detail or notes.get(config) or problems:
            print(f"{'':<12} threads us/wrapped req: {', '.join(detail) or 'none'}{problems}  {notes.get(config, '')}")
    print(f"(control ratio per block: {' '.join(f'{r:.4f}' for r in control_ratios)};"
          f" control wrapped/bare app CPU: {control_app_ratio:.4f})")
    return corrected


# -- 2. paired in-process CPU cost -------------------------------------------------------------


def paired_child(config: str, db: str, store: str, blocks: int, pairs: int) -> None:
    """Child process: print one JSON line per block (CPU ns of each app and background), then stats."""
    from werkzeug.test import create_environ

    from profviz_shop.app import create_app
    from profviz_shop.services import ExternalService, SlowLogSink

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


# -- 3. waitress throughput --------------------------------------------------------------------


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
    """One configuration's server process (:func:`serve_shops`; paired with ``mode="--serve-paired"``)
    and its CPU/context-switch counters."""

    def __init__(self, config: str, db: str, store: str, mode: str = "--serve", *, python: str = sys.executable,
                 wrapper: tuple[str, ...] = (), extra: tuple[str, ...] = (), env: dict | None = None, stderr=None):
        self.config = config
        self.proc = subprocess.Popen(
            [*wrapper, python, __file__, mode, config, "--db", db, "--store", store, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env,
        )
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.proc.kill()
            self.proc.wait()
            log = getattr(stderr, "name", None)
            tail = Path(log).read_text(errors="replace").strip()[-1500:] if log else "(on stderr above)"
            raise SystemExit(f"bench: the {config} server did not start (printed {line!r}, exit {self.proc.returncode}): {tail}")
        self.port = int(line)
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

    def stop(self, timeout_s: float = 120.0) -> str:
        """Stop the server; its profviz counters (empty for the bare app)."""
        self.proc.stdin.close()
        tail = self.proc.stdout.read().strip()
        self.proc.wait(timeout=timeout_s)
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


# -- 4. sampler CPU ----------------------------------------------------------------------------


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


def range_verdict(name: str, values: list[float], goal: float, control: list[float] | None = None) -> str:
    """The verdict on the min-max range of ``values``, widened on both sides by the A/A control's
    largest distance from 1 (how far this method was off when there was nothing to find)."""
    slack = max((abs(v - 1.0) for v in control), default=0.0) if control else 0.0
    low, high = min(values) - slack, max(values) + slack
    return (f"{name} {statistics.median(values):.4f} [{min(values):.4f}-{max(values):.4f}]"
            f" +-{slack:.4f} (A/A): {verdict(low, high, goal)}")


def print_verdicts(instructions: dict | None, served: dict[str, list[float]] | None,
                   paired: dict[str, list[float]] | None, waitress: dict | None) -> None:
    print("\n== verdicts (first: instructions per request under callgrind, ratio +- the A/A difference;"
          " time-based: paired waitress CPU, corrected ratio median [min-max over blocks],"
          " paired in-process CPU [min-max], waitress throughput [90% CI])")
    for config, goal in GOALS.items():
        parts = []
        if instructions and config in instructions["ratios"]:
            ratio, noise = instructions["ratios"][config], instructions["noise"]
            parts.append(f"INSTRUCTIONS {ratio:.4f} +-{noise:.4f} (A/A): {instr_verdict(ratio, noise, goal)}")
            if config == "sampler" and instructions["sampler_native"] is not None:
                adjusted = instructions["sampler_native"]
                parts.append(f"at native samples/req {adjusted:.4f}: {instr_verdict(adjusted, noise, goal)}")
            if config in instructions.get("with_gc", {}):
                with_gc = instructions["with_gc"][config]
                parts.append(f"with full collections at their native share {with_gc:.4f}: {instr_verdict(with_gc, noise, goal)}")
        if served and config in served:
            parts.append(range_verdict("waitress-paired", served[config], goal, served.get("none")))
        if paired and config in paired:
            parts.append(range_verdict("in-process paired", paired[config], goal, paired.get("none")))
        if waitress and config in waitress:
            for key in ("rps", "cpu-cap"):
                median, low, high = waitress[config][key]
                parts.append(f"waitress {key} {median:.3f} [{low:.3f}-{high:.3f}]: {verdict(low, high, goal)}")
        if parts:
            print(f"{config:<12} >= {goal:.2f}  " + "; ".join(parts))
    for name, section in (("waitress-paired", served), ("in-process paired", paired)):
        if section and "none" in section:
            values = section["none"]
            print(f"({name} A/A control, corrected per block: {' '.join(f'{v:.4f}' for v in values)};"
                  f" its spread is that section's noise floor)")
    if waitress and CONTROL_AGAIN in waitress:
        median, low, high = waitress[CONTROL_AGAIN]["rps"]
        print(f"(waitress A/A control, the bare app against itself: rps {median:.3f} [{low:.3f}-{high:.3f}];"
              f" its distance from 1 is this section's bias, its width the noise: a waitress ratio closer"
              f" to its goal than that decides nothing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=CONFIGS + (CONTROL_AGAIN,), help=argparse.SUPPRESS)
    parser.add_argument("--serve-paired", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--paired-child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--time-scale", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--freeze-gc", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset (none is always included)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--paired-only", action="store_true", help="run only the two paired sections (--sections waitress-paired,paired)")
    parser.add_argument("--no-paired", action="store_true", help="skip both paired sections (--sections instructions,waitress)")
    parser.add_argument("--instr-requests", type=int, default=1000,
                        help="instructions: counted requests per configuration (after 200 warm-up requests)")
    parser.add_argument("--instr-gc", choices=("freeze", "asis"), default="freeze",
                        help="instructions: freeze the heap at the counted window's start (default), or leave the collector as is")
    parser.add_argument("--gc-requests", type=int, default=10000,
                        help="instructions: requests per config of the native runs that measure full collections (0: skip)")
    parser.add_argument("--instr-concurrency", type=int,
                        help="instructions: keep-alive client connections (default: --concurrency)")
    parser.add_argument("--blocks", type=int, default=5, help="paired sections: blocks per configuration")
    parser.add_argument("--pairs", type=int, default=800,
                        help=f"paired sections: request pairs per block (a multiple of {2 * len(PATHS)})")
    parser.add_argument("--runs", type=int, default=14, help="waitress: rounds over all configurations")
    parser.add_argument("--requests", type=int, default=400, help="waitress: requests per configuration per round")
    parser.add_argument("--concurrency", type=int, default=8, help="waitress sections: keep-alive client connections")
    parser.add_argument("--rows", type=int, default=20_000, help="posts in the shop database")
    parser.add_argument("--no-sampler-cpu", action="store_true", help="skip the sampler CPU measurement")
    args = parser.parse_args()
    if args.serve or args.serve_paired:
        serve_shops(args.serve or args.serve_paired, args.db, args.store, paired=bool(args.serve_paired), time_scale=args.time_scale,
                    freeze_gc=args.freeze_gc)
        return
    if args.paired_child:
        paired_child(args.paired_child, args.db, args.store, args.blocks, args.pairs)
        return
    if args.paired_only and args.no_paired:
        parser.error("--paired-only and --no-paired exclude each other")
    sections = {s for s in args.sections.split(",") if s}
    if sections - set(SECTIONS) or not sections:
        parser.error(f"--sections: choose from {', '.join(SECTIONS)} (got {args.sections!r})")
    if args.paired_only:
        sections &= {"waitress-paired", "paired"}
    if args.no_paired:
        sections -= {"waitress-paired", "paired"}
    if not sections:
        parser.error("no section left to run (check --sections against --paired-only / --no-paired)")
    if args.pairs <= 0 or args.pairs % (2 * len(PATHS)):
        parser.error(f"--pairs must be a positive multiple of {2 * len(PATHS)} (each order over every path equally often)")
    if args.instr_concurrency is None:
        args.instr_concurrency = args.concurrency
    if min(args.blocks, args.runs, args.requests, args.concurrency, args.instr_requests, args.instr_concurrency) < 1:
        parser.error("--blocks, --runs, --requests, --instr-requests and --concurrency must be at least 1")
    unknown = [c for c in args.configs.split(",") if c and c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    configs = ["none"] + [c for c in args.configs.split(",") if c in CONFIGS and c != "none"]

    from profviz_shop.data import build_database

    cache = Path(tempfile.gettempdir()) / "profviz-bench"
    cache.mkdir(exist_ok=True)
    db = str(cache / f"shop-{args.rows}.sqlite3")
    build_database(db, rows=args.rows)
    print(f"sample shop ({args.rows} posts), endpoints: {', '.join(sorted(set(PATHS)))}")
    instructions = served = paired = waitress = None
    with tempfile.TemporaryDirectory(prefix="profviz-bench-") as tmp:
        if "instructions" in sections:
            instructions = run_instructions(configs, db, tmp, args)
        if "waitress-paired" in sections:
            print(f"\n== paired waitress CPU (primary): one waitress server (8 threads) per config hosting a bare and"
                  f" a wrapped shop; {args.blocks} blocks x {args.pairs} pairs after {WARMUP_PAIRS} warm-up pairs,"
                  f" {args.concurrency} keep-alive clients; CPU us per request")
            started = time.perf_counter()
            served = report_waitress_paired(run_waitress_paired(configs, db, tmp, args))
            print(f"waitress-paired phase took {time.perf_counter() - started:.0f} s")
        if "paired" in sections:
            print(f"\n== paired in-process CPU: {args.blocks} blocks x {args.pairs} pairs per config after"
                  f" {WARMUP_PAIRS} warm-up pairs, one child process per config, one thread")
            started = time.perf_counter()
            paired = report_paired(run_paired(configs, db, tmp, args))
            print(f"paired phase took {time.perf_counter() - started:.0f} s")
        if "waitress" in sections:
            waitress = run_waitress(configs, db, tmp, args)
    if "waitress" in sections and not args.no_sampler_cpu:
        print()
        for threads in (10, 100):
            cpu = sampler_cpu(threads)
            print(f"sampler CPU at 100 Hz with {threads:>3} busy request threads: {cpu * 1000:.1f} ms per second ({cpu:.2%} of one core)")
    print_verdicts(instructions, served, paired, waitress)


if __name__ == "__main__":
    main()
