"""speedscope import/export on real py-spy, pyinstrument and speedscope example files."""

import json

import pytest

from profviz.analysis.calltree import SampleFilter, build_call_tree, function_stats
from profviz.formats import load_any, speedscope
from profviz.model import State
from tests.formats_support import (
    HOSTILE,
    HUGE_NAME,
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

MS = 1_000_000


@pytest.mark.parametrize("name", files_of("speedscope"))
def test_detects_its_own_files(name):
    assert speedscope.detect(data(name))


@pytest.mark.parametrize("name", files_not_of("speedscope"))
def test_rejects_other_formats(name):
    assert not speedscope.detect(data(name))


def test_pyspy_file_threads_weights_and_functions():
    raw = json.loads(data("pyspy_idle_threads.speedscope.json"))
    profile = speedscope.load(data("pyspy_idle_threads.speedscope.json"))
    names = {t.name for t in profile.threads}
    assert names == {"MainThread", "io-waiter", "lock-waiter"}
    assert profile.sample_count == sum(len(p["samples"]) for p in raw["profiles"])
    assert profile.columns()["weight_ns"].sum() == pytest.approx(sum(sum(p["weights"]) for p in raw["profiles"]) * 1e9)
    assert set(profile.columns()["weight_ns"].tolist()) == {10 * MS}
    for name, expected in (("MainThread", "crunch_numbers"), ("io-waiter", "wait_for_io"), ("lock-waiter", "wait_on_lock")):
        tree = build_call_tree(profile, SampleFilter(threads=profile.find_threads(name)))
        functions = {f.function for f in function_stats(tree)}
        assert expected in functions, (name, functions)
    assert not any(f.startswith("thread (") for f in function_names(profile)), "py-spy's thread pseudo-frames are dropped"
    assert "count_primes" in function_names(profile)
    assert set(profile.columns()["state"].tolist()) == {int(State.UNKNOWN)}


def test_speedscope_examples_match_speedscopes_own_reading():
    evented = speedscope.load(data("speedscope-examples/simple.speedscope.json"), rate_hz=100)
    totals = function_totals(evented)
    # a opens 0..14, b 0..14, c 0..2 and 6..9, d 2..6 in unit "none" = 10 ms per unit at 100 Hz
    assert totals[("a", "")] == (140 * MS, 0)
    assert totals[("b", "")] == (140 * MS, 50 * MS)
    assert totals[("c", "")] == (50 * MS, 50 * MS)
    assert totals[("d", "")] == (40 * MS, 40 * MS)
    two = speedscope.load(data("speedscope-examples/two-sampled.speedscope.json"))
    assert [t.name for t in two.threads] == ["one", "two"]
    assert thread_totals(two) == {(0, "one"): 14_000 * MS, (1, "two"): 14_000 * MS}
    assert function_totals(two)[("c", "")] == (10_000 * MS, 10_000 * MS)


def test_unit_none_is_priced_by_the_rate():
    at_100 = speedscope.load(data("speedscope-examples/simple.speedscope.json"), rate_hz=100)
    at_1000 = speedscope.load(data("speedscope-examples/simple.speedscope.json"), rate_hz=1000)
    assert sum(thread_totals(at_100).values()) == 10 * sum(thread_totals(at_1000).values())


def test_incomplete_evented_trace_is_closed_at_end_value():
    profile = speedscope.load(data("speedscope-examples/invalid-incomplete-trace.json"))
    assert function_totals(profile)[("A", "")] == (1000 * MS, 1000 * MS)
    assert any("closed at endValue" in note for note in profile.meta["notes"])


def test_out_of_order_close_is_refused_with_the_event():
    assert_format_error(data("speedscope-examples/invalid-out-of-order-events.json"), "profiles[0].events[6]", "innermost open frame")


def test_pyinstrument_evented_file():
    profile = speedscope.load(data("pyinstrument.speedscope.json"))
    totals = function_totals(profile)
    assert {"crunch_numbers", "count_primes", "main"} <= function_names(profile)
    assert totals[("main", "workload.py")][0] == pytest.approx(sum(thread_totals(profile).values()), rel=0.05)


@pytest.mark.parametrize("name", ["pyspy.speedscope.json", "pyspy_idle_threads.speedscope.json", "pyinstrument.speedscope.json",
                                  "speedscope-examples/two-sampled.speedscope.json", "speedscope-examples/simple.speedscope.json"])
def test_real_files_round_trip(name):
    first = speedscope.load(data(name))
    again = speedscope.load(speedscope.dump(first))
    assert thread_totals(again) == thread_totals(first)
    assert function_totals(again) == function_totals(first)
    assert sample_rows(again) == sample_rows(first)


def test_rich_profile_round_trips_losslessly():
    profile = rich_profile()
    again = speedscope.load(speedscope.dump(profile))
    assert sample_rows(again) == sample_rows(profile)
    assert state_totals(again) == state_totals(profile)
    assert {t.pid for t in again.threads} == {4242, 4343}
    assert again.meta["cmdline"] == "python app.py --port 8000" and again.meta["rate_hz"] == 100.0
    assert again.meta["labels"] == {"env": "test"}


def test_export_is_plain_speedscope_without_the_extension():
    profile = rich_profile()
    doc = json.loads(speedscope.dump(profile))
    assert doc["$schema"] == speedscope.SCHEMA_URL
    assert "$profviz" in doc
    frames = doc["shared"]["frames"]
    for p in doc["profiles"]:
        assert p["type"] == "sampled" and p["unit"] == "nanoseconds"
        assert len(p["samples"]) == len(p["weights"]) and all(w > 0 for w in p["weights"])
        assert all(0 <= f < len(frames) for stack in p["samples"] for f in stack)
        assert p["endValue"] >= p["startValue"] >= 0
    del doc["$profviz"]
    plain = speedscope.load(json.dumps(doc).encode())
    assert function_totals(plain) == function_totals(profile)
    assert {(tid, name) for tid, name in thread_totals(plain)} == {(t.tid, t.name) for t in profile.threads}
    assert set(plain.columns()["state"].tolist()) == {int(State.UNKNOWN)}


def test_hostile_strings_survive_verbatim():
    again = speedscope.load(speedscope.dump(rich_profile()))
    strings = set(again.strings) | {t.name for t in again.threads}
    for text in HOSTILE:
        assert any(text in s for s in strings), text[:40]
    assert HUGE_NAME in function_names(again)


def _doc(**profile_fields):
    profile = {"type": "sampled", "name": "t", "unit": "seconds", "startValue": 0, "endValue": 2,
               "samples": [[0, 1], [0]], "weights": [1, 1]}
    profile.update(profile_fields)
    return {"$schema": speedscope.SCHEMA_URL, "shared": {"frames": [{"name": "a"}, {"name": "b", "file": "f.py", "line": 3}]},
            "profiles": [profile]}


def _bytes(doc):
    return json.dumps(doc).encode()


@pytest.mark.parametrize("fields, fragments", [
    ({"weights": [1, -1]}, ["profiles[0].weights[1]", ">= 0"]),
    ({"weights": ["1", 1]}, ["profiles[0].weights[0]", "must be a number"]),
    ({"samples": [[0, 7], [0]]}, ["profiles[0].samples[0][1]", "frame indices"]),
    ({"samples": [[0, 1]]}, ["1 samples but 2 weights"]),
    ({"samples": "nope"}, ["profiles[0].samples", "must be a list"]),
    ({"unit": "bytes"}, ["memory profile"]),
    ({"unit": "furlongs"}, ["profiles[0].unit"]),
    ({"type": "flat"}, ["profiles[0].type"]),
])
def test_corrupt_profiles_name_the_field(fields, fragments):
    assert_format_error(_bytes(_doc(**fields)), "as speedscope", *fragments)


def test_corrupt_frames_and_extension():
    doc = _doc()
    doc["shared"]["frames"][1]["line"] = "three"
    assert_format_error(_bytes(doc), "shared.frames[1].line")
    exported = json.loads(speedscope.dump(rich_profile()))
    exported["$profviz"]["threads"][0]["states"][0][1] += 1
    assert_format_error(_bytes(exported), "$profviz.threads[0].states")
    exported = json.loads(speedscope.dump(rich_profile()))
    exported["$profviz"]["threads"][0]["reasons"] = [["why", len(exported["profiles"][0]["samples"])]]
    assert_format_error(_bytes(exported), "$profviz.threads[0].reasons", "not WAITING")


def test_truncated_and_empty_files():
    whole = data("pyspy.speedscope.json")
    assert_format_error(whole[: len(whole) // 2], "as speedscope", "invalid JSON at line 1", "truncated")
    assert_format_error(b"", "the file is empty")


def test_hostile_names_in_a_corrupt_file_stay_out_of_the_message_length():
    doc = _doc(weights=[1, -1])
    doc["profiles"][0]["name"] = HUGE_NAME
    doc["shared"]["frames"][0]["name"] = HUGE_NAME
    assert_format_error(_bytes(doc), "weights[1]")
    doc = _doc()
    doc["profiles"][0]["name"] = HUGE_NAME
    doc["shared"]["frames"][0]["name"] = HUGE_NAME
    again = load_any(_bytes(doc), "ok.json")
    assert again.threads[0].name == HUGE_NAME and HUGE_NAME in function_names(again)


def test_the_lifted_sample_arrays_read_as_the_parser_would():
    """The samples arrays taken out before parsing (a million stacks as lists cost more than the
    rest) give the same profile, pretty-printed or not; an array of anything but indices is left
    to the parser, whose error names the sample."""
    from tests.formats_support import sample_rows

    raw = json.loads(data("pyspy_idle_threads.speedscope.json"))
    compact = json.dumps(raw).encode()
    pretty = json.dumps(raw, indent=3).encode()
    assert speedscope._lift_samples(compact)[1] and speedscope._lift_samples(pretty)[1]
    assert sample_rows(speedscope.load(pretty)) == sample_rows(speedscope.load(compact)) == sample_rows(speedscope.load(data("pyspy_idle_threads.speedscope.json")))
    compact_text = compact.decode()
    first = json.dumps(raw["profiles"][0]["samples"][0])
    for broken in ("[" + first[1:].replace(", ", " ", 1), "[01]", "[1,,0]"):  # what JSON refuses is refused, not lifted
        if first != "[]":
            assert_format_error(compact_text.replace(first, broken, 1).encode(), "invalid JSON", format_name="speedscope")
    raw["profiles"][0]["samples"][1] = [0, 1.5]
    message = assert_format_error(json.dumps(raw).encode(), "profiles[0].samples[1][1]", format_name="speedscope")
    assert "not one of the" in message
