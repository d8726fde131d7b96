"""profviz's portable JSON: lossless export/import, through the store too, and refusal of broken tables."""

import json

import pytest

from profviz.formats import load_any, profviz_json, speedscope
from profviz.store import open_store
from tests.formats_support import (
    SAMPLE_FILES,
    assert_format_error,
    data,
    function_totals,
    rich_profile,
    sample_rows,
    state_totals,
    thread_totals,
)


def test_detects_its_own_exports_only():
    assert profviz_json.detect(profviz_json.dump(rich_profile()))
    for name in SAMPLE_FILES:
        assert not profviz_json.detect(data(name)), name
    assert not profviz_json.detect(speedscope.dump(rich_profile()))


def test_round_trip_is_lossless_including_spans_and_meta():
    profile = rich_profile()
    again = profviz_json.load(profviz_json.dump(profile))
    assert sample_rows(again) == sample_rows(profile)
    assert state_totals(again) == state_totals(profile)
    assert [(t.pid, t.tid, t.name) for t in again.threads] == [(t.pid, t.tid, t.name) for t in profile.threads]
    assert again.spans == profile.spans
    for key in ("kind", "pid", "cmdline", "rate_hz", "labels", "notes", "error_count"):
        assert again.meta[key] == profile.meta[key], key
    assert profviz_json.dump(again) == profviz_json.dump(profile)


def test_spans_carry_the_documented_keys_only():
    """A span joined from the store knows its process, source and store id: none of that is the profile's."""
    profile = rich_profile()
    span = profile.spans[0]
    span.pid, span.tid, span.thread_name, span.source, span.id, span.request_id = 7, 8, "t", "otlp", 99, 5
    (written,) = json.loads(profviz_json.dump(profile))["spans"]
    assert tuple(written) == profviz_json.SPAN_KEYS and written["span_id"] == span.span_id


@pytest.mark.parametrize("name", ["pyspy_idle_threads.speedscope.json", "pyspy_raw_subprocesses.txt", "pyinstrument.pyisession"])
def test_real_profiles_survive_store_export_import(tmp_path, name):
    store = open_store(tmp_path / "s.db")
    first = load_any(data(name), name)
    stored = store.load_profile(store.save_profile(first))
    again = load_any(profviz_json.dump(stored), "export.json")
    assert sample_rows(again) == sample_rows(first)
    assert thread_totals(again) == thread_totals(first) and function_totals(again) == function_totals(first)


def _export(**changes):
    doc = json.loads(profviz_json.dump(rich_profile()))
    for path, value in changes.items():
        target = doc
        keys = path.split("/")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        target[int(last) if isinstance(target, list) else last] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("changes, fragments", [
    ({"format_version": 2}, ["format_version is 2", "upgrade profviz"]),
    ({"samples/weight_ns/3": -5}, ["samples.weight_ns[3]", "outside"]),
    ({"samples/weight_ns/3": "5"}, ["samples.weight_ns[3]", "must be an integer"]),
    ({"samples/stack/0": 999}, ["samples.stack[0] is 999"]),
    ({"samples/thread/1": 9}, ["samples.thread[1] is 9"]),
    ({"samples/state/0": 7}, ["samples.state[0] is 7"]),
    ({"samples/reason/0": 0}, ["samples.reason[0]", "not WAITING"]),
    ({"stacks/prefix/0": 3}, ["stacks.prefix[0] is 3", "earlier stack"]),
    ({"stacks/frame/2": 10_000}, ["stacks.frame[2] is 10000"]),
    ({"frames/function/0": 10_000}, ["frames.function[0] is 10000"]),
    ({"strings/0": 12}, ["strings[0] must be a string"]),
    ({"threads/0": [1, 2]}, ["threads[0] must be [pid, tid, name]"]),
    ({"samples/time_delta_ns": [1]}, ["samples columns differ in length"]),
    ({"spans/0/end_ns": 0}, ["spans[0].end_ns"]),
    ({"meta/pid": "many"}, ["meta.pid must be an integer"]),
])
def test_broken_tables_are_refused_with_the_field(changes, fragments):
    assert_format_error(_export(**changes), "as profviz", *fragments)


def test_truncated_file_names_the_place():
    whole = profviz_json.dump(rich_profile())
    assert_format_error(whole[:-40], "as profviz", "invalid JSON at line 1", "truncated")
