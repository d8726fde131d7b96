"""Shutdown keeps what was recorded (profviz/middleware/shutdown.py): a real server process under
a real load from this process's client threads, then SIGTERM right after the load or in the middle
of it; every request a client got its answer for must be in the store afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from profviz.store import open_store

from .proxied_server import free_port

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "targets" / "shutdown_app.py"
CLIENTS = 8


class Load:
    """CLIENTS threads sending /work/<client>/<n> until stopped or the server goes away; ``answered``
    holds the path of every request whose full answer came back."""

    def __init__(self, url: str):
        self.url, self.answered, self.stop = url, [], threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def _client(self, index: int) -> None:
        with requests.Session() as session:
            n = 0
            while not self.stop.is_set():
                path = f"/work/{index}/{n}"
                n += 1
                try:
                    response = session.get(self.url + path, timeout=10)
                except requests.RequestException:
                    return  # the server is gone
                if response.status_code == 200 and response.text == path:
                    with self._lock:
                        self.answered.append(path)

    def finish(self) -> list[str]:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        return self.answered


def serve(mode: str, store: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(TARGET), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "SHUTDOWN_APP_STORE": str(store)})
    line = process.stdout.readline()
    assert line, process.stderr.read()
    return process, json.loads(line)["url"]


def stored_paths(store: Path) -> set[str]:
    opened = open_store(store)
    try:
        return {row.path for row in opened.query_requests()}
    finally:
        opened.close()


@pytest.mark.parametrize("mode", ["waitress", "wsgiref"])
@pytest.mark.parametrize("when", ["after", "during"])
def test_sigterm_keeps_every_answered_request(tmp_path, mode, when):
    """``python app.py`` under waitress (4 threads) or wsgiref: SIGTERM right after a 1.5 s load, or
    1.5 s into one that goes on: the process still ends by SIGTERM, and no answered request is missing."""
    store = tmp_path / "store.db"
    process, url = serve(mode, store)
    try:
        load = Load(url)
        time.sleep(1.5)
        if when == "after":
            answered = load.finish()
            process.send_signal(signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
            answered = load.finish()
        assert process.wait(timeout=60) == -signal.SIGTERM, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    stored = stored_paths(store)
    missing = [path for path in answered if path not in stored]
    assert len(answered) > 100 and not missing, (len(answered), len(stored), missing[:5])


@pytest.mark.parametrize("worker_class, threads", [("sync", 1), ("gthread", 4)])
def test_gunicorns_graceful_stop_keeps_every_answered_request(tmp_path, worker_class, threads):
    """gunicorn (2 workers, sync or gthread x 4) gets SIGTERM during a load: its graceful stop runs
    as before (the app's handler chains to gunicorn's), and no answered request is missing."""
    store, port = tmp_path / "store.db", free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", worker_class, "--threads", str(threads),
         "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "20", "tests.targets.shutdown_app:app"],
        cwd=ROOT, env={**os.environ, "SHUTDOWN_APP_STORE": str(store), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/work/ready", timeout=2)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and process.poll() is None, process.stderr.read() if process.poll() is not None else "gunicorn did not start"
                time.sleep(0.1)
        load = Load(url)
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        answered = load.finish()
        assert process.wait(timeout=60) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    stored = stored_paths(store)
    missing = [path for path in answered if path not in stored]
    assert len(answered) > 100 and not missing, (len(answered), len(stored), missing[:5])
