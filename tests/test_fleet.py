"""A fleet on one machine: three app processes (hosts a, b, c; versions 1.4 and 1.5) under load
push to two ``profviz serve`` collectors over one PostgreSQL. One collector is killed (SIGKILL)
and restarted mid-load, then PostgreSQL restarts mid-load; every request answered is stored
exactly once, and ``profviz routes`` shows the fleet with per-host and per-version counts."""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from profviz.store import open_store
from tests.postgres_cluster import create_database, drop_database, restart_cluster
from tests.served import Load, logged, serve

TOKEN = "fleet-token-for-tests"
APPS = (("a", "1.4", 0), ("b", "1.4", 1), ("c", "1.5", 0))  # host, version, collector


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def collector(store_url: str, port: int) -> subprocess.Popen:
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen([sys.executable, "-m", "profviz", "serve", "--store", store_url, "--port", str(port), "--token", TOKEN],
                               stdout=subprocess.PIPE, stderr=log, text=True)
    process.log = log
    assert process.stdout.readline().startswith("http://127.0.0.1:"), logged(process)
    return process


def profviz_json(*args: str) -> list:
    result = subprocess.run([sys.executable, "-m", "profviz", *args, "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_a_fleet_pushes_through_two_collectors_and_loses_nothing_when_they_or_postgresql_restart(postgres):
    url = create_database(postgres, "fleet")
    open_store(url).close()
    ports = [free_port(), free_port()]
    collectors = [collector(url, port) for port in ports]
    apps, loads = [], []
    try:
        for host, version, which in APPS:
            process, app_url = serve("waitress", f"http://:{TOKEN}@127.0.0.1:{ports[which]}", SERVED_APP_WRITER_S="0.3",
                                     OTEL_RESOURCE_ATTRIBUTES=f"host.name={host},service.version={version},service.name=shop")
            apps.append(process)
            loads.append(Load(app_url))
        time.sleep(2)
        killed_at = time.time()
        collectors[0].send_signal(signal.SIGKILL)  # apps a and c buffer meanwhile
        collectors[0].wait(timeout=30)
        time.sleep(2)
        collectors[0] = collector(url, ports[0])
        back_at = time.time()
        time.sleep(1.5)
        restart_at = time.time()
        restart_cluster(postgres)  # the collectors' writes fail, they answer 503, the senders retry
        restarted_at = time.time()
        time.sleep(2)
        during_outage = sum(1 for load in (loads[0], loads[2]) for _, when in load.answered if killed_at <= when < back_at)
        during_restart = sum(1 for load in loads for _, when in load.answered if restart_at <= when < restarted_at)
        answered = [load.finish() for load in loads]
        for process in apps:
            process.send_signal(signal.SIGTERM)  # drains: the last batches are sent before it exits
        for process in apps:
            assert process.wait(timeout=60) in (0, -signal.SIGTERM), logged(process)[-3000:]
        store = open_store(url)
        stored = collections.Counter((row.labels.get("host"), row.path) for row in store.query_requests())
        sent = [(host, path) for (host, _, _), paths in zip(APPS, answered) for path in paths]
        assert len(sent) > 600 and len(set(sent)) == len(sent)
        assert [key for key in sent if stored[key] != 1] == [] and sum(stored.values()) == len(sent)
        routes = profviz_json("routes", "--store", url)
        assert sum(r["count"] for r in routes) == len(sent)
        for (host, version, _), paths in zip(APPS, answered):
            assert sum(r["count"] for r in profviz_json("routes", "--store", url, "--host", host)) == len(paths)
            assert sum(r["count"] for r in profviz_json("routes", "--store", url, "--host", host, "--from", "sketches")) == len(paths)
        assert sum(r["count"] for r in profviz_json("routes", "--store", url, "--version", "1.5")) == len(answered[2])
        assert sum(r["count"] for r in profviz_json("routes", "--store", url, "--version", "1.4", "--service", "shop")) == \
            len(answered[0]) + len(answered[1])
        refused = sum(logged(process).count("could not store a pushed batch") for process in collectors)
        assert during_outage > 100 and during_restart > 0
        print(f"fleet: {len(sent)} requests answered by 3 apps, each stored once; per app {[len(p) for p in answered]}; "
              f"{during_outage} answered by apps a and c while their collector was down ({back_at - killed_at:.1f} s); "
              f"{during_restart} answered during the PostgreSQL restart ({restarted_at - restart_at:.1f} s); "
              f"pushes the collectors answered 503 meanwhile: {refused}")
        store.close()
    finally:
        for process in apps + collectors:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        drop_database(postgres, url)


def test_a_full_sender_buffer_drops_with_a_count_and_changes_no_response(tmp_path):
    """An app whose collector never answers, with a small buffer: every response is right, and the
    oldest batches are dropped with a notice saying how many requests went."""
    dead = free_port()
    process, app_url = serve("waitress", f"http://:{TOKEN}@127.0.0.1:{dead}/?buffer_mb=0.02", SERVED_APP_WRITER_S="0.1")
    try:
        load = Load(app_url)
        time.sleep(3)
        answered = load.finish()  # asserts that no answer was wrong
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        err = logged(process)
        assert len(answered) > 300 and "dropping the oldest batches" in err
        dropped = int(err.split("dropping the oldest batches (")[1].split(" requests")[0])
        assert 0 < dropped <= len(answered)
        assert "requests were not sent to the collector before the writer stopped" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
