"""Attach truth target: two worker threads with known CPU and waiting phases, logging every call.

Every 100 ms cycle (aligned to one start time, so the threads never compete for the GIL):

* thread ``cpu_sleeper``: ``burn_cpu`` spins pure Python until cycle + 30 ms, then ``nap`` sleeps
  until the next cycle (70 ms);
* thread ``cpu_recv``: ``crunch`` spins for 20 ms from when the reply came (cycle + 40 ms), sends a
  request to a loopback server in this process and ``wait_reply`` blocks in ``socket.recv`` until
  the server answers, at the next cycle + 40 ms (about 80 ms later; answering on the shared
  schedule keeps the two threads' CPU phases from drifting into each other).

Each call is logged as (function, thread, start epoch ns, end epoch ns). Prints one line
``{"ready": true, "pid": ..., "port": ...}`` on stdout when running; on SIGTERM writes the log as
JSON to ``argv[1]`` and exits 0. With ``argv[2]`` (seconds) it exits by itself after that long.
"""

import json
import os
import signal
import socket
import sys
import threading
import time

CYCLE_S = 0.100
calls = []
calls_lock = threading.Lock()
stop = threading.Event()


def logged(function):
    def wrapper(*args):
        started = time.time_ns()
        try:
            return function(*args)
        finally:
            with calls_lock:
                calls.append((function.__name__, threading.current_thread().name, started, time.time_ns()))

    wrapper.__wrapped__ = function
    return wrapper


def spin_until(deadline):
    total = 0
    while time.perf_counter() < deadline:
        for i in range(200):
            total += i * i
    return total


def burn_cpu(deadline):
    return spin_until(deadline)


def nap(deadline):
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def crunch(deadline):
    return spin_until(deadline)


def wait_reply(connection):
    return connection.recv(64)


burn_cpu_logged, nap_logged = logged(burn_cpu), logged(nap)
crunch_logged, wait_reply_logged = logged(crunch), logged(wait_reply)


def cpu_sleeper(origin):
    cycle = origin
    while not stop.is_set():
        burn_cpu_logged(cycle + 0.030)
        cycle += CYCLE_S
        nap_logged(cycle)


def cpu_recv(port):
    connection = socket.create_connection(("127.0.0.1", port))
    while not stop.is_set():
        crunch_logged(time.perf_counter() + 0.020)
        connection.sendall(b"request")
        if not wait_reply_logged(connection):
            return


def late_server(listener, first_answer):
    """Answer each request at the first slot (first_answer + k cycles) at least 60 ms after it."""
    connection, _ = listener.accept()
    while True:
        request = connection.recv(64)
        if not request:
            return
        earliest = time.perf_counter() + 0.060
        answer_at = first_answer + CYCLE_S * max(0, -int(-(earliest - first_answer) // CYCLE_S))
        while time.perf_counter() < answer_at:
            time.sleep(max(0.0, answer_at - time.perf_counter()))
        connection.sendall(b"reply")


def finish(path):
    stop.set()
    with calls_lock:
        snapshot = list(calls)
    with open(path + ".tmp", "w") as out:
        json.dump({"calls": snapshot}, out)
    os.replace(path + ".tmp", path)
    os._exit(0)


def main():
    log_path = sys.argv[1]
    lifetime = float(sys.argv[2]) if len(sys.argv) > 2 else None
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    origin = time.perf_counter() + 0.05
    threading.Thread(target=late_server, args=(listener, origin + 0.040), name="late_server", daemon=True).start()
    threading.Thread(target=cpu_sleeper, args=(origin,), name="cpu_sleeper", daemon=True).start()
    threading.Thread(target=cpu_recv, args=(port,), name="cpu_recv", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: finish(log_path))
    print(json.dumps({"ready": True, "pid": os.getpid(), "port": port}), flush=True)
    if lifetime is not None:
        time.sleep(lifetime)
        finish(log_path)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
