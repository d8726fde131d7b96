"""How well `profviz attach` tells CPU from waiting when a thread's phases are short.

Not a test: prints figures. Run: ``python bench/attach_phases.py [--seconds 4] [--phases 2,5,10,20,50] [--rate 100]``
(about 10 s a phase length).

The target's one worker thread alternates ``burst`` (spins pure Python for P ms) and ``pause``
(sleeps P ms), logging every call. profviz attaches at ``--rate`` Hz (100) for ``--seconds``; for each P the
script prints each function's share of the thread's wall time (profile and truth, from the log)
and how its time was classified: the CPU fraction of ``burst`` and the waiting fraction of
``pause`` are 1.0 when nothing is misclassified. The sampling interval is 10 ms: phases shorter
than about one interval are where attach's classification has its limit (docs/attach.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

TARGET = r"""
import json, signal, sys, threading, time
PHASE_S = float(sys.argv[2]) / 1000
calls, stop = [], threading.Event()
def burst():
    end = time.perf_counter() + PHASE_S
    while time.perf_counter() < end:
        pass
def pause():
    time.sleep(PHASE_S)
def work():
    while not stop.is_set():
        for function in (burst, pause):
            began = time.time_ns()
            function()
            calls.append((function.__name__, began, time.time_ns()))
def finish(*_):
    stop.set()
    worker.join()
    with open(sys.argv[1], "w") as log:
        json.dump(calls, log)
    sys.exit(0)
signal.signal(signal.SIGTERM, finish)
worker = threading.Thread(target=work, name="worker")
worker.start()
print(json.dumps({"pid": __import__("os").getpid()}), flush=True)
while True:
    time.sleep(1)
"""


def profviz(*args: str, store: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "profviz", *args, "--store", store], capture_output=True, text=True, timeout=180)


def one_phase(phase_ms: float, seconds: float, workdir: str, rate: int) -> dict:
    script, log, store = (os.path.join(workdir, name) for name in ("target.py", f"calls-{phase_ms}.json", f"s-{phase_ms}.db"))
    with open(script, "w") as handle:
        handle.write(TARGET)
    target = subprocess.Popen([sys.executable, script, log, str(phase_ms)], stdout=subprocess.PIPE, text=True)
    try:
        pid = json.loads(target.stdout.readline())["pid"]
        time.sleep(0.3)
        attach = profviz("attach", str(pid), "--duration", str(seconds), "--rate", str(rate), "--json", store=store)
        target.send_signal(signal.SIGTERM)
        target.wait(timeout=20)
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()
    if attach.returncode != 0:
        raise SystemExit(f"attach failed: {attach.stderr.strip()}")
    profile_id = json.loads(attach.stdout.strip().splitlines()[-1])["profile_id"]
    view = json.loads(profviz("show", str(profile_id), "--json", "--thread", "worker", store=store).stdout)
    start_ns = int(view["start"] * 1e9)
    end_ns = start_ns + int(view["duration_s"] * 1e9)
    with open(log) as handle:
        calls = json.load(handle)
    truth = {}
    for name, began, ended in calls:
        truth[name] = truth.get(name, 0) + max(0, min(ended, end_ns) - max(began, start_ns))
    wall = sum(truth.values()) or 1
    (thread,) = view["threads"]
    functions = {f["function"]: f for f in view["functions"]}
    row = {"phase_ms": phase_ms}
    for name in ("burst", "pause"):
        f = functions.get(name, {"total_s": 0.0, "cpu_s": 0.0, "runnable_s": 0.0, "wait_s": 0.0})
        total = f["total_s"] or 1e-12
        row[f"{name}_share"] = f["total_s"] / thread["wall_s"]
        row[f"{name}_truth"] = truth.get(name, 0) / wall
        row[f"{name}_right"] = ((f["cpu_s"] + f["runnable_s"]) if name == "burst" else f["wait_s"]) / total
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--phases", default="2,5,10,20,50", help="phase lengths in ms, comma-separated")
    parser.add_argument("--rate", type=int, default=100, help="sampling rate, Hz")
    args = parser.parse_args()
    print(f"attach at {args.rate} Hz; a function's share of the worker's time (profile, truth) and the part of it classified right")
    print(f"{'phase':>6} {'burst share':>12} {'truth':>6} {'burst CPU':>10} {'pause share':>12} {'truth':>6} {'pause waiting':>14}")
    with tempfile.TemporaryDirectory() as workdir:
        for phase in (float(p) for p in args.phases.split(",")):
            row = one_phase(phase, args.seconds, workdir, args.rate)
            print(f"{phase:>4g}ms {row['burst_share']:>12.3f} {row['burst_truth']:>6.3f} {row['burst_right']:>10.2f}"
                  f" {row['pause_share']:>12.3f} {row['pause_truth']:>6.3f} {row['pause_right']:>14.2f}", flush=True)


if __name__ == "__main__":
    main()
