"""Shutdown keeps what was recorded (profviz/middleware/shutdown.py): a real server process under
a real load from this process's client threads, then SIGTERM right after the load or in the middle
of it; every request a client got its answer for must be in the store afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from .proxied_server import free_port
from .served import ROOT, Load, answered_stored, logged, served, stored_paths, wait_for_answer


@pytest.mark.parametrize("mode", ["waitress", "wsgiref"])
@pytest.mark.parametrize("when", ["after", "during"])
def test_sigterm_keeps_every_answered_request(tmp_path, mode, when):
    """``python app.py`` under waitress (4 threads) or wsgiref: SIGTERM right after a 1.5 s load, or
    1.5 s into one that goes on: the process still ends by SIGTERM, and no answered request is missing."""
    store = tmp_path / "store.db"
    with served(mode, store) as (process, url):
        load = Load(url)
        time.sleep(1.5)
        if when == "after":
            answered = load.finish()
            process.send_signal(signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
            answered = load.finish()
        assert process.wait(timeout=60) == -signal.SIGTERM, logged(process)
    answered_stored(answered, store)


@pytest.mark.parametrize("again", [False, True])
def test_sigterm_inside_a_request_on_the_main_thread(tmp_path, again):
    """wsgiref serves on the main thread, where the handler runs: SIGTERM 0.3 s into a 1 s request
    lets it finish whole and stored, then ends the process by SIGTERM; a second SIGTERM meanwhile
    ends it at once, as SIGTERM did without profviz."""
    store = tmp_path / "store.db"
    with served("wsgiref", store) as (process, url):
        requests.get(url + "/work/ready", timeout=10)
        answers = []
        client = threading.Thread(target=lambda: answers.append(_get(url + "/slow/1")))
        client.start()
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        if again:
            time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM, logged(process)
        client.join(timeout=30)
    if again:
        assert answers == [None]
    else:
        assert answers == ["/slow/1"], logged(process)
        assert "/slow/1" in stored_paths(store)


def _get(url: str) -> str | None:
    try:
        response = requests.get(url, timeout=10)
        return response.text if response.status_code == 200 else f"HTTP {response.status_code}"
    except requests.RequestException:
        return None


@pytest.mark.parametrize("worker_class, threads", [("sync", 1), ("gthread", 4)])
def test_gunicorns_graceful_stop_keeps_every_answered_request(tmp_path, worker_class, threads):
    """gunicorn (2 workers, sync or gthread x 4) gets SIGTERM during a load: its graceful stop runs
    as before (the app's handler chains to gunicorn's), and no answered request is missing."""
    store, port = tmp_path / "store.db", free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", worker_class, "--threads", str(threads),
         "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "20", "tests.targets.served_app:app"],
        cwd=ROOT, env={**os.environ, "SERVED_APP_STORE": str(store), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # gunicorn's own log is not needed; a pipe could fill
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_answer(url + "/work/ready", process, "gunicorn")
        load = Load(url)
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        answered = load.finish()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    answered_stored(answered, store)
