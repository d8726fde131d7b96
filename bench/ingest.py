"""Ingest throughput of one collector (``profviz serve``): request rows and tail profiles stored per
second, and per second of the collector's CPU (what one collector core takes), into SQLite and
into PostgreSQL (a throwaway cluster started for the run, tests/postgres_cluster.py).

Senders in this process push pre-encoded batches (the wire format a middleware sends) from
``--senders`` threads for ``--seconds``, each batch with its own id: ``rows`` batches of 1,000
requests; ``profiles`` batches of 100 requests with 20 tail profiles (shared-stack, 60 samples
each, as the sampler keeps them). The collector's CPU is read from /proc (psutil), the
database server's too. Usage: ``python bench/ingest.py [--seconds 10] [--senders 4]``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from profviz.model import RequestBatch, SharedStackProfile, StackNodes, State  # noqa: E402
from profviz.store.remote import wire  # noqa: E402

TOKEN = "bench-ingest-token"
ROUTES = [f"/api/v1/resource{n}/{{id}}" for n in range(20)]


def request_batch(first: int, count: int, profiles: int) -> RequestBatch:
    batch = RequestBatch()
    now = time.time_ns()
    for i in range(first, first + count):
        batch.add(4242, 7, ROUTES[i % 20], "GET", f"/api/v1/resource{i % 20}/{i}", 200, now + i * 1000, 20_000_000 + i % 997, 5_000_000,
                  512, "", f'{{"request_id": "r{i}", "host": "web-1", "version": "1.5", "service": "shop"}}')
    for n in range(profiles):
        times = [now + k * 10_000_000 for k in range(60)]
        batch.keep(SharedStackProfile({"kind": "request", "pid": 4242, "labels": {"capture": "tail", "route": ROUTES[n % 20]}},
                                      "bench-proc", (4242, 7, "worker-1"), times, [k % 40 + 1 for k in range(60)], [10_000_000] * 60,
                                      [int(State.ON_CPU if k % 3 else State.WAITING) for k in range(60)],
                                      [None if k % 3 else "socket recv db:5432" for k in range(60)]), n)
    return batch


def nodes_batch() -> RequestBatch:
    batch = RequestBatch()
    batch.stack_nodes = StackNodes("bench-proc", [(0, -1, "main", "app.py", 1)] + [(k, k - 1, f"f{k}", "app.py", k) for k in range(1, 41)])
    return batch


def push(port: int, body: bytes, connection: http.client.HTTPConnection | None) -> http.client.HTTPConnection:
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/v1/ingest", body=body, headers={
        "Content-Encoding": "gzip", "Authorization": f"Bearer {TOKEN}", "X-Profviz-Batch": str(uuid.uuid4())})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"collector answered {response.status}")
    return connection


def server_cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def measure(store: str, kind: str, seconds: float, senders: int, db_processes) -> None:
    port = _free_port()
    collector = subprocess.Popen([sys.executable, "-m", "profviz", "serve", "--store", store, "--port", str(port), "--token", TOKEN],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    collector.stdout.readline()
    try:
        push(port, wire.encode(nodes_batch()), None).close()
        rows, profiles = (1000, 0) if kind == "rows" else (100, 20)
        bodies = [wire.encode(request_batch(n * rows, rows, profiles)) for n in range(8)]
        sent = [0] * senders
        stop = threading.Event()

        def sender(index: int) -> None:
            connection = None
            n = 0
            while not stop.is_set():
                connection = push(port, bodies[n % len(bodies)], connection)
                sent[index] += 1
                n += 1

        me = psutil.Process(collector.pid)
        database = db_processes()
        cpu_before, db_before, began = server_cpu([me]), server_cpu(database), time.perf_counter()
        threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        cpu, db_cpu = server_cpu([me]) - cpu_before, server_cpu(db_processes()) - db_before
        batches = sum(sent)
        print(f"  {kind:<8}: {batches * rows / wall:>9,.0f} requests/s, {batches * profiles / wall:>7,.0f} profiles/s over {wall:.1f} s;"
              f" per collector CPU second: {batches * rows / cpu:>9,.0f} requests, {batches * profiles / cpu:>7,.0f} profiles"
              f" (collector {100 * cpu / wall:.0f}% of a core, database server {100 * db_cpu / wall:.0f}%;"
              f" body {len(bodies[0]) / 1024:.0f} KB)")
    finally:
        collector.terminate()
        collector.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=4)
    args = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(prefix="profviz-bench-ingest-"), "store.db")
    print("SQLite store:")
    for kind in ("rows", "profiles"):
        measure(path, kind, args.seconds, args.senders, lambda: [])
    from tests.postgres_cluster import create_database, start_cluster, stop_cluster

    cluster = start_cluster()
    try:
        url = create_database(cluster, "bench")

        def postgres_processes() -> list[psutil.Process]:
            return [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "postgres"
                    or (p.info["cmdline"] and str(cluster.base) in " ".join(p.info["cmdline"]))]

        print("PostgreSQL store:")
        for kind in ("rows", "profiles"):
            measure(url, kind, args.seconds, args.senders, postgres_processes)
    finally:
        stop_cluster(cluster)


if __name__ == "__main__":
    main()
