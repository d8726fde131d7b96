"""The Firefox Profiler's processed format: profviz -> firefox -> profviz keeping every thread's
time in each state and the wait reasons, tables whose indexes hold (what the profiler checks on
load), states as sample categories, spans and waits as markers."""

from __future__ import annotations

import json

from profviz.formats import firefox, load_any
from profviz.model import State
from tests.formats_support import HOSTILE, data, files_of, function_names, rich_profile, state_totals


def test_profviz_to_firefox_to_profviz_keeps_states_reasons_threads_and_functions():
    original = rich_profile()
    loaded = load_any(firefox.dump(original), "out.firefox.json")
    assert state_totals(loaded) == state_totals(original)
    assert function_names(loaded) == function_names(original)
    assert {(t.pid, t.tid, t.name) for t in loaded.threads} == {(t.pid, t.tid, t.name) for t in original.threads}
    assert loaded.time_range_ns == original.time_range_ns


def test_the_tables_hold_together_and_states_are_categories():
    original = rich_profile()
    doc = json.loads(firefox.dump(original))
    strings = doc["shared"]["stringArray"]
    names = [c["name"] for c in doc["meta"]["categories"]]
    assert doc["meta"]["preprocessedProfileVersion"] == firefox.PROCESSED_VERSION
    by_category: dict = {}
    for thread in doc["threads"]:
        tables = {key: thread[key] for key in ("samples", "stackTable", "frameTable", "funcTable", "resourceTable", "markers")}
        for name, table in tables.items():
            assert all(len(v) == table["length"] for k, v in table.items() if isinstance(v, list)), name
        stacks, frames, funcs = tables["stackTable"], tables["frameTable"], tables["funcTable"]
        assert all(p is None or 0 <= p < i for i, p in enumerate(stacks["prefix"]))
        assert all(0 <= f < frames["length"] for f in stacks["frame"]) and all(0 <= f < funcs["length"] for f in frames["func"])
        assert all(0 <= s < len(strings) for s in funcs["name"])
        for stack, weight in zip(tables["samples"]["stack"], tables["samples"]["weight"]):
            category = names[stacks["category"][stack]]
            by_category[category] = by_category.get(category, 0) + weight
        assert thread["samples"]["weightType"] == "tracing-ms"
    expected: dict = {}
    for (_, state, _), ns in state_totals(original).items():
        key = {State.ON_CPU: "On CPU", State.WAITING: "Waiting", State.RUNNABLE: "Runnable", State.GIL: "GIL"}.get(State(state), "Other")
        expected[key] = expected.get(key, 0) + ns / 1e6
    assert by_category == expected
    markers = [(strings[name], item) for thread in doc["threads"] for name, item in zip(thread["markers"]["name"], thread["markers"]["data"])]
    assert {item["reason"] for name, item in markers if name == "Waiting"} == {"socket recv", HOSTILE[2], "lock", "sleep"}
    assert any(item["type"] == "Span" and name == "GET /" + HOSTILE[1] for name, item in markers)
    assert HOSTILE[0] in strings


def test_detection():
    assert firefox.detect(firefox.dump(rich_profile()))
    assert not any(firefox.detect(data(name)) for name in files_of("speedscope") + files_of("collapsed"))
