"""Attach target with short-lived threads: one after another, each lives ~50 ms, while a long-lived
thread keeps running.

* thread ``steady``: loops ``steady_tick`` (5 ms of pure-Python CPU, then a 45 ms sleep) for the
  whole run;
* the main thread starts ``short-000``, ``short-001``, ... one at a time, each joined before the
  next starts, so glibc hands every new thread the pthread id (and stack) of the one before. Even
  numbers sleep 50 ms in ``short_sleep``, odd numbers spin 50 ms of pure Python in ``short_spin``.

Every short thread is logged as (name, native tid, start epoch ns, end epoch ns, pthread id),
from the first to the last line of its run function. Prints one line
``{"ready": true, "pid": ...}`` on stdout once running; on SIGTERM writes ``{"threads": [...]}``
as JSON to ``argv[1]`` and exits 0.
"""

import json
import os
import signal
import sys
import threading
import time

LIFETIME_S = 0.050
lives = []
lives_lock = threading.Lock()


def short_sleep(seconds):
    time.sleep(seconds)


def short_spin(seconds):
    deadline = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < deadline:
        for i in range(200):
            total += i * i
    return total


def short_life(work):
    started = time.time_ns()
    work(LIFETIME_S)
    ended = time.time_ns()
    with lives_lock:
        lives.append((threading.current_thread().name, threading.get_native_id(), started, ended, threading.get_ident()))


def steady_tick():
    deadline = time.perf_counter() + 0.005
    while time.perf_counter() < deadline:
        pass
    time.sleep(0.045)


def steady():
    while True:
        steady_tick()


def finish(path):
    with lives_lock:
        snapshot = list(lives)
    with open(path + ".tmp", "w") as out:
        json.dump({"threads": snapshot}, out)
    os.replace(path + ".tmp", path)
    os._exit(0)


def main():
    log_path = sys.argv[1]
    threading.Thread(target=steady, name="steady", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: finish(log_path))
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    number = 0
    while True:
        work = short_sleep if number % 2 == 0 else short_spin
        thread = threading.Thread(target=short_life, args=(work,), name=f"short-{number:03d}")
        thread.start()
        thread.join()
        number += 1


if __name__ == "__main__":
    main()
