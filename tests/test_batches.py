"""Store faults under a real server and load (profviz/middleware/batches.py): a store deleted
mid-load, a store locked for 10 s, a full filesystem for 10 s. No response changes; what the
clients got answered is stored, or its loss is counted in a ``profviz:`` log line."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from .mounts import tmpfs
from .served import Load, logged, served, stored_paths


def stop(process: subprocess.Popen) -> str:
    """SIGTERM (the middleware drains), then the server's stderr: profviz's log lines."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return logged(process)


def profviz_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("profviz:")]


def test_a_store_deleted_mid_load_is_created_again_and_said_once(tmp_path):
    store = tmp_path / "store.db"
    with served("waitress", store, SERVED_APP_WRITER_S="0.2") as (process, url):
        load = Load(url)
        time.sleep(1.5)
        deleted_at = time.time()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        time.sleep(1.5)
        answered = load.answered[:]
        load.finish()
        stderr = stop(process)
    stored = stored_paths(store)
    after = [path for path, when in answered if when > deleted_at + 0.5]  # a batch being written as the file went may go with it
    assert len(after) > 100 and all(path in stored for path in after), (len(after), len(stored))
    moved = [line for line in profviz_lines(stderr) if "was deleted or replaced" in line]
    assert len(moved) == 1, profviz_lines(stderr)


def test_a_store_locked_for_10_s_loses_nothing_silently(tmp_path):
    """Another process holds the store's write lock (BEGIN EXCLUSIVE) for 10 s, with a queue of
    2,000: the requests before the lock are stored, and every answered request is either stored
    or counted in the log's "dropped" lines."""
    store = tmp_path / "store.db"
    with served("waitress", store, SERVED_APP_WRITER_S="0.2", SERVED_APP_QUEUE="2000") as (process, url):
        load = Load(url)
        time.sleep(1.0)
        locker = sqlite3.connect(store, timeout=30)
        locker.execute("BEGIN EXCLUSIVE")
        locked_at = time.time()
        time.sleep(10)
        locker.rollback()
        locker.close()
        time.sleep(1.0)
        answered = load.answered[:]
        load.finish()
        stderr = stop(process)
    stored = stored_paths(store)
    before = [path for path, when in answered if when < locked_at - 0.5]
    assert before and all(path in stored for path in before)
    lines = profviz_lines(stderr)
    dropped = max([int(n) for line in lines for n in re.findall(r"(\d+) request records were dropped in all", line)]
                  + [int(n) for line in lines for n in re.findall(r"dropped \d+ request records \((\d+) in all\)", line)], default=0)
    missing = [path for path, _ in answered if path not in stored]
    assert dropped > 0 and len(missing) == dropped, (len(answered), len(stored), len(missing), dropped, lines)


def test_a_full_filesystem_for_10_s_keeps_the_records_from_before_and_during_it(tmp_path):
    """The store on a 16 MB tmpfs that a filler file fills for 10 s: writes fail ("database or disk
    is full"), the requests are held, and once there is room every answered request is stored; the
    failure and the recovery are logged."""
    with tmpfs("16m") as where:
        store = where / "store.db"
        with served("waitress", store, SERVED_APP_WRITER_S="0.2") as (process, url):
            load = Load(url)
            time.sleep(1.0)
            filler = where / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True)  # stops when full
            time.sleep(10)
            filler.unlink()
            time.sleep(2.0)
            answered = [path for path, _ in load.answered]
            load.finish()
            stderr = stop(process)
        stored = stored_paths(store)
    lines = profviz_lines(stderr)
    missing = [path for path in answered if path not in stored]
    assert len(answered) > 1000 and not missing, (len(answered), len(stored), missing[:5], lines)
    assert any("holding them in memory" in line for line in lines) and any("works again" in line for line in lines), lines
