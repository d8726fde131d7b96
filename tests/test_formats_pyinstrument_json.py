"""pyinstrument sessions and JSON-renderer trees: real files in, sessions out that pyinstrument loads."""

import json

import pytest
from pyinstrument.renderers import ConsoleRenderer
from pyinstrument.session import Session

from profviz.formats import load_any, pyinstrument_json
from profviz.model import State
from tests.formats_support import (
    HOSTILE,
    assert_format_error,
    data,
    files_not_of,
    files_of,
    function_names,
    function_totals,
    rich_profile,
    sample_rows,
    state_totals,
    thread_totals,
)


@pytest.mark.parametrize("name", files_of("pyinstrument"))
def test_detects_its_own_files(name):
    assert pyinstrument_json.detect(data(name))


@pytest.mark.parametrize("name", files_not_of("pyinstrument"))
def test_rejects_other_formats(name):
    assert not pyinstrument_json.detect(data(name))


def test_session_file_samples_threads_and_trimmed_launcher():
    raw = json.loads(data("pyinstrument.pyisession"))
    profile = pyinstrument_json.load(data("pyinstrument.pyisession"))
    assert [t.name for t in profile.threads] == ["MainThread"]
    assert profile.sample_count == len(raw["frame_records"])
    assert int(profile.columns()["weight_ns"].sum()) == pytest.approx(sum(r[1] for r in raw["frame_records"]) * 1e9, abs=len(raw["frame_records"]))
    assert {"crunch_numbers", "count_primes", "main", "<module>"} <= function_names(profile)
    files = {file for _, file in function_totals(profile)}
    assert not any("pyinstrument" in f or "runpy" in f or f == "<string>" for f in files), files
    first = profile.columns()["stack"][0]
    root = profile.frame(profile.stack_frames(int(first))[0])
    assert (root.function, root.file) == ("<module>", "workload.py")
    times = profile.columns()["time_ns"]
    assert times[0] == pytest.approx(raw["start_time"] * 1e9, abs=1000) and (times[1:] > times[:-1]).all()
    assert profile.meta["rate_hz"] == pytest.approx(100)


def test_renderer_tree_self_times_add_up():
    raw = json.loads(data("pyinstrument_renderer.json"))
    profile = pyinstrument_json.load(data("pyinstrument_renderer.json"))
    total = sum(thread_totals(profile).values())
    assert total == pytest.approx(raw["root_frame"]["time"] * 1e9, rel=1e-3)
    totals = function_totals(profile)
    assert {"crunch_numbers", "count_primes"} <= function_names(profile)
    assert "[self]" not in function_names(profile), "[self] nodes fold into their parent"
    count_primes = next(v for (fn, _), v in totals.items() if fn == "count_primes")
    assert count_primes[1] > 0, "count_primes keeps its [self] time"


@pytest.mark.parametrize("name", files_of("pyinstrument"))
def test_real_files_round_trip(name):
    first = pyinstrument_json.load(data(name))
    again = pyinstrument_json.load(pyinstrument_json.dump(first))
    assert sample_rows(again) == sample_rows(first)


def test_rich_profile_round_trips_losslessly():
    profile = rich_profile()
    again = pyinstrument_json.load(pyinstrument_json.dump(profile))
    assert sample_rows(again) == sample_rows(profile)
    assert state_totals(again) == state_totals(profile)
    assert again.meta["cmdline"] == profile.meta["cmdline"]


def test_export_is_a_session_pyinstrument_loads_and_renders(tmp_path):
    profile = rich_profile()
    path = tmp_path / "out.pyisession"
    path.write_bytes(pyinstrument_json.dump(profile))
    session = Session.load(str(path))
    assert session.sample_count == profile.sample_count
    root = session.root_frame(trim_stem=False)
    assert root is not None
    text = ConsoleRenderer(unicode=True, color=False, show_all=True).render(session)
    assert "handle" in text and "query" in text
    without_ext = json.loads(path.read_bytes())
    del without_ext["$profviz"]
    plain = pyinstrument_json.load(json.dumps(without_ext).encode())
    assert function_totals(plain) == function_totals(profile)
    assert sorted(thread_totals(plain).values()) == sorted(thread_totals(profile).values())
    assert set(plain.columns()["state"].tolist()) == {int(State.UNKNOWN)}


def test_await_frames_are_waiting():
    session = {"start_time": 1.0, "duration": 0.03, "sample_count": 2, "target_description": "t", "cpu_time": 0,
               "start_call_stack": [], "frame_records": [
                   [["MainThread\x00<thread>\x001", "main\x00a.py\x001\x01l2", "[await]"], 0.02],
                   [["MainThread\x00<thread>\x001", "main\x00a.py\x001\x01l3\x01cApp"], 0.01]]}
    profile = pyinstrument_json.load(json.dumps(session).encode())
    assert profile.columns()["state"].tolist() == [int(State.WAITING), int(State.UNKNOWN)]
    assert {"App.main", "main", "[await]"} == function_names(profile)


def test_hostile_strings_survive_verbatim():
    again = pyinstrument_json.load(pyinstrument_json.dump(rich_profile()))
    texts = list(again.strings) + [t.name for t in again.threads]
    for text in HOSTILE:
        assert any(text in s for s in texts), text[:40]


def _session(**fields):
    doc = {"start_time": 1.0, "duration": 0.02, "sample_count": 1, "target_description": "t", "cpu_time": 0,
           "start_call_stack": [], "frame_records": [[["T\x00<thread>\x001", "f\x00a.py\x001"], 0.01]]}
    doc.update(fields)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("fields, fragments", [
    ({"frame_records": [[["f\x00a.py\x001"], -0.5]]}, ["frame_records[0][1]", ">= 0"]),
    ({"frame_records": [[["f\x00a.py"], 0.5]]}, ["frame_records[0][0][0]", "not a pyinstrument frame"]),
    ({"frame_records": [[[7], 0.5]]}, ["frame_records[0][0][0]", "must be a string"]),
    ({"frame_records": [[["f\x00a.py\x001", {"x": 1}], 0.5]]}, ["frame_records[0][0][1]", "must be a string"]),
    ({"frame_records": [["f"]]}, ["frame_records[0]", "[frames, seconds]"]),
    ({"frame_records": "x"}, ["frame_records must be a list"]),
    ({"start_time": "yesterday"}, ["start_time"]),
    ({"$profviz": {"format_version": 1, "origin_ns": 0, "threads": []}}, ["$profviz.threads has 0 entries"]),
])
def test_corrupt_sessions_name_the_field(fields, fragments):
    assert_format_error(_session(**fields), "as pyinstrument", *fragments)


def test_two_thread_frames_with_one_ident_are_one_thread():
    """pyinstrument names a thread by its ident: two names with one ident (a thread renamed) are one thread."""
    records = [[["A\x00<thread>\x005", "f\x00a.py\x001"], 0.5], [["B\x00<thread>\x005", "g\x00a.py\x002"], 0.25]]
    profile = load_any(_session(frame_records=records), "renamed.pyisession")
    assert len(profile.threads) == 1 and profile.threads[0].tid == 5
    assert profile.columns()["weight_ns"].tolist() == [500_000_000, 250_000_000]


def test_a_tree_whose_time_is_beyond_64_bits_is_refused():
    tree = json.loads(data("pyinstrument_renderer.json"))
    tree["root_frame"]["time"] = 1e12
    tree["root_frame"]["children"] = []
    assert_format_error(json.dumps(tree).encode(), "beyond 64 bits")


def test_truncated_session_and_null_tree():
    whole = data("pyinstrument.pyisession")
    assert_format_error(whole[:5000], "invalid JSON", "truncated")
    tree = json.loads(data("pyinstrument_renderer.json"))
    tree["root_frame"] = None
    assert_format_error(json.dumps(tree).encode(), "no samples")
    tree["root_frame"] = {"function": "f", "time": -1}
    assert_format_error(json.dumps(tree).encode(), "root_frame.time")
