"""A real server process for the shutdown and store-fault tests (tests/targets/served_app.py) and a
real load from client threads of the test's process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import requests

from profviz.store import open_store

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "targets" / "served_app.py"
CLIENTS = 8


class Load:
    """CLIENTS threads sending /work/<client>/<n> until stopped or the server goes away; ``answered``
    holds (path, when) of every request whose full and right answer came back, ``wrong`` any other answer."""

    def __init__(self, url: str):
        self.url, self.answered, self.wrong, self.stop = url, [], [], threading.Event()
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
                with self._lock:
                    if response.status_code == 200 and response.text == path:
                        self.answered.append((path, time.time()))
                    else:
                        self.wrong.append((path, response.status_code, response.text[:80]))

    def finish(self) -> list[str]:
        """Stop; the paths answered (no answer may have been wrong)."""
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        assert not self.wrong, self.wrong[:5]
        return [path for path, _ in self.answered]


def serve(mode: str, store: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """tests/targets/served_app.py under ``mode`` (waitress or wsgiref) into ``store``; (the process, its URL).
    ``env``: SERVED_APP_WRITER_S, SERVED_APP_QUEUE."""
    import tempfile

    log = tempfile.TemporaryFile("w+")  # not a pipe: a full pipe would block the server's logging, and so its threads
    process = subprocess.Popen([sys.executable, str(TARGET), mode], stdout=subprocess.PIPE, stderr=log, text=True,
                               env={**os.environ, "SERVED_APP_STORE": str(store), **env})
    process.log = log
    line = process.stdout.readline()
    assert line, logged(process)
    return process, json.loads(line)["url"]


@contextlib.contextmanager
def served(mode: str, store: Path, **env: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """:func:`serve` as a context: the process is killed on the way out if the test left it running."""
    process, url = serve(mode, store, **env)
    try:
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def wait_for_answer(url: str, process: subprocess.Popen, what: str, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers at all; AssertionError when ``process`` exits or ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            assert process.poll() is None, f"{what} exited with {process.returncode}"
            assert time.monotonic() < deadline, f"{what} did not answer within {timeout_s:g} s"
            time.sleep(0.1)


def answered_stored(answered: list[str], store: Path) -> None:
    """Every path in ``answered`` is a stored request of ``store`` (and there were over 100)."""
    stored = stored_paths(store)
    missing = [path for path in answered if path not in stored]
    assert len(answered) > 100 and not missing, (len(answered), len(stored), missing[:5])


def logged(process: subprocess.Popen) -> str:
    """What a process started by :func:`serve` wrote to stderr so far."""
    process.log.seek(0)
    return process.log.read()


def stored_paths(store: Path) -> set[str]:
    opened = open_store(store)
    try:
        return {row.path for row in opened.query_requests()}
    finally:
        opened.close()
