"""Suite-wide setup: the same environment whether the suite runs in a terminal, a venv, CI or a background job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# A suite started as a background job (or by some CI runners) inherits SIGINT ignored, and so would
# every child it starts: Python then installs no KeyboardInterrupt handler, and the tests that stop a
# child with SIGINT (as a user's Ctrl-C would) would wait for nothing.
signal.signal(signal.SIGINT, signal.default_int_handler)

# Nothing the suite runs writes into the user's home: profviz's default store and the sample
# shop's database cache go under the temp dir (kept between runs, so the shop's database is built once).
_ROOT = Path(tempfile.gettempdir()) / f"profviz-tests-{os.getuid()}"
os.environ["XDG_DATA_HOME"] = str(_ROOT / "data")
os.environ["XDG_CACHE_HOME"] = str(_ROOT / "cache")
os.environ.pop("PROFVIZ_STORE", None)


DEMO_REQUESTS = 600


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One real ``profviz demo`` run for the session (600 requests, spans, no attach, no UI):
    (its store's path, the JSON summary it printed)."""
    store_path = tmp_path_factory.mktemp("demo") / "demo.db"
    result = subprocess.run(
        [sys.executable, "-m", "profviz", "demo", "--no-serve", "--no-attach", "--requests", str(DEMO_REQUESTS),
         "--json", "--store", str(store_path)],
        capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 0
    return store_path, summary, result.stdout


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the session (tests/postgres_cluster.py)."""
    from .postgres_cluster import start_cluster, stop_cluster

    cluster = start_cluster()
    yield cluster
    stop_cluster(cluster)
