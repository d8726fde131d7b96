"""How much `profviz attach` slows its target, next to bare py-spy, and what the collector costs.

Not a test: prints figures. Run: ``python bench/attach_overhead.py [--seconds 3] [--rounds 3]``
(about ``rounds x 8 x 2 x seconds`` + 15 s: ~2.5 min with the defaults).

1. Target slowdown. A single-threaded CPU-bound target spins for ``--seconds`` after it is told to
   go (once the profiler is sampling) and reports its iterations and its CPU time. For each mode
   (100 / 1000 Hz, blocking / --nonblocking) and each profiler (bare ``py-spy record`` with the
   same flags profviz uses, and profviz's collector), every round runs the target once without
   and once with the profiler, back to back (paired, so machine load drifts cancel). Printed:
   medians over rounds of throughput(profiled) / throughput(unprofiled), of the paused fraction
   1 - CPU time / wall time (profiled and bare), and of the stopped fraction: wall time neither on
   a CPU nor in the run queue, from the target's schedstat. On a loaded machine the first two move
   with the load (other processes deschedule the target too); the stopped fraction counts only
   time the target could not run at all, i.e. ptrace stops by the profiler.
2. Collector cost. A 20-thread target (each thread spins 1 ms then sleeps 19 ms) is profiled at
   100 Hz for ``--seconds`` + 2 s, blocking and ``--nonblocking``; printed: py-spy's CPU (its
   rusage once reaped) and the /proc state reader thread's CPU, each as % of one core, and the
   one-off time to build the profile.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from profviz.collect.attach import AttachOptions, collect
from profviz.collect.pyspy import check_pyspy, record_command, PySpyOptions

SPIN_TARGET = r"""
import json, sys, time
def schedstat():
    with open("/proc/thread-self/schedstat") as f:
        on_cpu, run_queue, _ = f.read().split()
    return int(on_cpu) / 1e9, int(run_queue) / 1e9
print("ready", flush=True)
sys.stdin.readline()
seconds = float(sys.argv[1])
wall0, cpu0, (sched_cpu0, queue0) = time.perf_counter(), time.process_time(), schedstat()
iterations = 0
while time.perf_counter() - wall0 < seconds:
    for _ in range(1000):
        iterations += 1
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
sched_cpu, queue = schedstat()
print(json.dumps({"iterations": iterations, "wall": wall, "cpu": cpu, "sched_cpu": sched_cpu - sched_cpu0,
                  "run_queue": queue - queue0}), flush=True)
sys.stdin.readline()
"""

THREADS_TARGET = r"""
import sys, threading, time
def worker():
    while True:
        end = time.perf_counter() + 0.001
        while time.perf_counter() < end:
            pass
        time.sleep(0.019)
for i in range(20):
    threading.Thread(target=worker, name=f"w{i}", daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
"""


def start(code: str, *args: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def finish_spin(process: subprocess.Popen) -> dict:
    result = json.loads(process.stdout.readline())
    process.stdin.write("\n")
    process.stdin.flush()
    process.wait(timeout=30)
    return result


def go(process: subprocess.Popen) -> None:
    process.stdin.write("go\n")
    process.stdin.flush()


def run_unprofiled(seconds: float) -> dict:
    target = start(SPIN_TARGET, str(seconds))
    go(target)
    return finish_spin(target)


def run_bare_pyspy(seconds: float, rate: int, nonblocking: bool, scratch: str) -> dict:
    info = check_pyspy()
    target = start(SPIN_TARGET, str(seconds))
    command = record_command(info.path, target.pid, os.path.join(scratch, "bare.json"), PySpyOptions(rate_hz=rate, nonblocking=nonblocking))
    spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in spy.stdout:
        if "Sampling process" in line:
            break
    go(target)
    result = finish_spin(target)
    spy.wait(timeout=30)
    return result


def run_profviz(seconds: float, rate: int, nonblocking: bool) -> dict:
    target = start(SPIN_TARGET, str(seconds))
    sampling = threading.Event()
    stop = threading.Event()
    holder: dict = {}

    def record() -> None:
        holder["result"] = collect(target.pid, AttachOptions(rate_hz=rate, nonblocking=nonblocking), stop=stop,
                                   on_progress=lambda _progress: sampling.set())

    worker = threading.Thread(target=record)
    worker.start()
    sampling.wait(30)
    go(target)
    result = json.loads(target.stdout.readline())
    stop.set()
    worker.join()
    target.stdin.write("\n")
    target.stdin.flush()
    target.wait(timeout=30)
    return result


def paused(result: dict) -> float:
    """The brief's measure: the share of wall time the CPU-bound target did not run."""
    return 1.0 - result["cpu"] / result["wall"]


def stopped(result: dict) -> float:
    """Share of wall time neither on a CPU nor waiting for one: stopped (ptrace), never load."""
    return max(0.0, 1.0 - (result["sched_cpu"] + result["run_queue"]) / result["wall"])


def throughput(result: dict) -> float:
    return result["iterations"] / result["wall"]


def slowdown_table(seconds: float, rounds: int) -> None:
    modes = [(100, False), (100, True), (1000, False), (1000, True)]
    print(f"target slowdown: single-threaded CPU-bound target, {seconds:g} s per run, median of {rounds} paired rounds")
    print("throughput ratio and 'paused' (1 - CPU time / wall) move with the machine's load; 'stopped' (wall time")
    print("neither on a CPU nor in the run queue, from schedstat) is what the profiler itself took away.")
    print(f"{'profiler':<8} {'rate':>5} {'mode':<12} {'throughput':>10} {'paused':>7} {'bare paused':>11} {'stopped':>8} {'bare stopped':>12}")
    with tempfile.TemporaryDirectory(prefix="profviz-bench-") as scratch:
        for rate, nonblocking in modes:
            for name in ("py-spy", "profviz"):
                rows: list[tuple[float, float, float, float, float]] = []
                for _ in range(rounds):
                    bare = run_unprofiled(seconds)
                    if name == "py-spy":
                        profiled = run_bare_pyspy(seconds, rate, nonblocking, scratch)
                    else:
                        profiled = run_profviz(seconds, rate, nonblocking)
                    rows.append((throughput(profiled) / throughput(bare), paused(profiled), paused(bare),
                                 stopped(profiled), stopped(bare)))
                ratio, pause, bare_pause, stop, bare_stop = (statistics.median(column) for column in zip(*rows))
                mode = "nonblocking" if nonblocking else "blocking"
                print(f"{name:<8} {rate:>5} {mode:<12} {ratio:>10.3f} {100 * pause:>6.1f}% {100 * bare_pause:>10.1f}%"
                      f" {100 * stop:>7.1f}% {100 * bare_stop:>11.1f}%", flush=True)


def collector_cost(seconds: float, nonblocking: bool) -> None:
    target = start(THREADS_TARGET)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    duration = seconds + 2
    started = time.perf_counter()
    result = collect(target.pid, AttachOptions(rate_hz=100, duration_s=duration, nonblocking=nonblocking))
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    target.stdin.write("\n")
    target.stdin.flush()
    target.wait(timeout=30)
    pyspy_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    threads = len(result.profile.threads)
    mode = "nonblocking" if nonblocking else "blocking"
    print(f"\ncollector cost: 20-thread target ({threads} threads seen), 100 Hz {mode}, {result.duration_s:.1f} s recorded")
    print(f"  py-spy process      {100 * pyspy_cpu / result.duration_s:5.1f}% of one core")
    print(f"  profviz state reader {100 * result.collector_cpu_s / result.duration_s:5.1f}% of one core")
    print(f"  together            {100 * (pyspy_cpu + result.collector_cpu_s) / result.duration_s:5.1f}% of one core (goal <= 10%)")
    print(f"  samples {result.samples}, UNKNOWN {result.unknown_samples}, wall time of collect() {elapsed:.1f} s"
          f" (profile build + py-spy start/stop = {elapsed - result.duration_s:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="target run length per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per configuration (median)")
    parser.add_argument("--skip-slowdown", action="store_true", help="only measure the collector cost")
    args = parser.parse_args()
    print(f"py-spy {check_pyspy().version_text}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    if not args.skip_slowdown:
        slowdown_table(args.seconds, args.rounds)
    collector_cost(args.seconds, nonblocking=False)
    collector_cost(args.seconds, nonblocking=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
