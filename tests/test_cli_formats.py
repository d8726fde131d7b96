"""`profviz import` and `profviz export` through the real console script and a real store file."""

import json
import os
import pty
import select
import subprocess
import time

import pytest

from profviz.analysis.summary import profile_summary as summarise
from profviz.shapes.profiles import summary_json
from profviz.store import open_store
from tests.formats_support import DATA, HUGE_NAME


def profviz(*args, store, check=True):
    result = subprocess.run(["profviz", *args, "--store", str(store)], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _threads(summary):
    return sorted((t["tid"], t["name"], t["wall_s"]) for t in summary["threads"])


def _functions(summary):
    return {(f["function"], f["file"]): f["total_s"] for f in summary["functions"]}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    store = tmp_path_factory.mktemp("cli-formats") / "s.db"
    out = profviz("import", str(DATA / "pyspy_idle_threads.speedscope.json"), "--label", "team=core", "--json", store=store)
    result = json.loads(out.stdout)
    return store, result


def test_import_then_show(imported):
    store, result = imported
    assert result["format"] == "speedscope" and result["threads"] == 3 and result["samples"] > 100
    summary = json.loads(profviz("show", str(result["profile_id"]), "--json", store=store).stdout)
    assert summary["sample_count"] == result["samples"]
    assert {t["name"] for t in summary["threads"]} == {"MainThread", "io-waiter", "lock-waiter"}
    assert {"crunch_numbers", "wait_for_io", "wait_on_lock"} <= {f["function"] for f in summary["functions"]}
    assert any("pyspy_idle_threads.speedscope.json" in note for note in summary["notes"])
    listed = json.loads(profviz("list", "--json", store=store).stdout)
    assert listed[0]["labels"] == {"imported_from": "speedscope", "team": "core"}


@pytest.mark.parametrize("format_name", ["speedscope", "profviz", "pyinstrument", "collapsed"])
def test_export_writes_a_file_that_reimports(imported, tmp_path, format_name):
    store, result = imported
    out = tmp_path / f"export.{format_name}"
    done = profviz("export", str(result["profile_id"]), "--format", format_name, "-o", str(out), store=store)
    assert f"wrote profile {result['profile_id']}" in done.stderr
    again = json.loads(profviz("import", str(out), "--json", store=store).stdout)
    assert again["format"] == format_name
    with open_store(store) as opened:
        first = summary_json(summarise(opened.load_profile(result["profile_id"])))
        second = summary_json(summarise(opened.load_profile(again["profile_id"])))
    assert _threads(second) == _threads(first)
    assert _functions(second) == _functions(first)


def test_export_to_stdout(imported):
    store, result = imported
    text = profviz("export", str(result["profile_id"]), "--format", "collapsed", store=store).stdout
    assert "thread (" in text and "wait_for_io (" in text


def test_export_to_a_terminal_is_indented_and_to_a_pipe_compact(imported):
    store, result = imported
    piped = profviz("export", str(result["profile_id"]), "--format", "speedscope", store=store).stdout
    assert "\n" not in piped.strip()
    main, terminal = pty.openpty()
    process = subprocess.Popen(["profviz", "export", str(result["profile_id"]), "--format", "speedscope", "--store", str(store)],
                               stdout=terminal, stderr=subprocess.PIPE)
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([main], [], [], 1.0)[0]:
            continue
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(timeout=60) == 0
    shown = b"".join(chunks).decode().replace("\r\n", "\n")
    assert shown.startswith("{\n  ") and json.loads(shown) == json.loads(piped)


def test_bad_inputs_give_one_line(imported, tmp_path):
    store, _ = imported
    bad = tmp_path / "bad.json"
    bad.write_text('{"$schema": "https://www.speedscope.app/file-format-schema.json", "shared": {"frames": [{"name": "' + HUGE_NAME + '"}]}, "profiles": [{"type": "sampled", "unit": "seconds", "samples": [[0]], "weights": [-1]}]}')
    for args, fragment in (
        (["import", str(bad)], "profiles[0].weights[0]"),
        (["import", str(tmp_path / "missing.txt")], "No such file"),
        (["import", str(DATA / "workload.py")], "not a profviz, speedscope"),
        (["export", "999", "--format", "speedscope"], "no profile with id 999"),
    ):
        result = profviz(*args, store=store, check=False)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("profviz: ") and fragment in lines[0], result.stderr
        assert "Traceback" not in result.stderr and len(lines[0]) < 600
