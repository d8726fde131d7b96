"""The profile model: interning, the append_sample builder's invariants, table rebuilds."""

import numpy as np
import pytest

from profviz.model import NO_STACK, Profile, ProfileError, State, TableLists, profile_from_tables


def small_profile() -> Profile:
    profile = Profile({"kind": "test"})
    main = profile.add_thread(1, 10, "main")
    stack = profile.intern_frames([("main", "app.py", 1), ("handler", "app.py", 20)])
    profile.append_sample(1_000, main, stack, 10_000_000, State.ON_CPU)
    profile.append_sample(2_000, main, stack, 10_000_000, State.WAITING, "sleep")
    return profile


def test_interning_reuses_strings_frames_and_stacks():
    profile = Profile()
    a = profile.intern_frames([("main", "app.py", 1), ("f", "app.py", 5)])
    b = profile.intern_frames([("main", "app.py", 1), ("f", "app.py", 5)])
    c = profile.intern_frames([("main", "app.py", 1), ("g", "app.py", 9)])
    assert a == b != c
    assert profile.strings.count("main") == 1 and profile.strings.count("app.py") == 1
    assert profile.stack_prefix[a] == profile.stack_prefix[c]
    assert [profile.frame(f).function for f in profile.stack_frames(c)] == ["main", "g"]
    assert profile.intern_frames([]) == NO_STACK


def test_prefix_always_precedes_stack():
    profile = small_profile()
    for index, prefix in enumerate(profile.stack_prefix):
        assert -1 <= prefix < index
    profile.check()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(thread=5), "sample thread 5 is not a thread index (have 1 threads)"),
        (dict(stack=99), "sample stack 99 is not a stack index"),
        (dict(weight_ns=0), "sample weight must be > 0 ns, got 0"),
        (dict(time_ns=-1), "sample time must be >= 0 ns since the epoch, got -1"),
        (dict(state=9), "sample state 9 is not a State"),
        (dict(state=State.ON_CPU, reason="sleep"), "wait reason 'sleep' given for a ON_CPU sample"),
    ],
)
def test_append_sample_errors_name_the_values(kwargs, message):
    profile = small_profile()
    args = dict(time_ns=3_000, thread=0, stack=0, weight_ns=1, state=State.WAITING, reason=None)
    args.update(kwargs)
    with pytest.raises(ProfileError) as excinfo:
        profile.append_sample(**args)
    assert message in str(excinfo.value)
    assert profile.sample_count == 2


def test_columns_reflect_appends_and_states():
    profile = small_profile()
    cols = profile.columns()
    assert list(cols["state"]) == [State.ON_CPU, State.WAITING]
    assert profile.strings[cols["reason"][1]] == "sleep" and cols["reason"][0] == -1
    assert profile.time_range_ns == (1_000, 2_000 + 10_000_000)


def test_rebuild_from_tables_round_trips_and_rejects_bad_tables():
    profile = small_profile()
    rebuilt = profile_from_tables(
        dict(profile.meta), profile.strings,
        (profile.frame_function, profile.frame_file, profile.frame_line),
        (profile.stack_prefix, profile.stack_frame),
        [(t.pid, t.tid, t.name) for t in profile.threads], profile.columns(),
    )
    for name, column in profile.columns().items():
        assert np.array_equal(column, rebuilt.columns()[name]), name
    assert rebuilt.intern_frames([("main", "app.py", 1), ("handler", "app.py", 20)]) == 1
    with pytest.raises(ProfileError, match="prefix 5"):
        profile_from_tables({}, profile.strings, (profile.frame_function, profile.frame_file, profile.frame_line),
                            ([5, 0], [0, 1]), [], {k: v[:0] for k, v in profile.columns().items()})
    bad = dict(profile.columns())
    bad["thread"] = np.array([0, 3], dtype=np.int32)
    with pytest.raises(ProfileError, match="sample 1 has thread 3"):
        profile_from_tables({}, profile.strings, (profile.frame_function, profile.frame_file, profile.frame_line),
                            (profile.stack_prefix, profile.stack_frame), [(1, 10, "main")], bad)


def test_find_threads_by_tid_or_name():
    profile = small_profile()
    profile.add_thread(1, 11, "worker")
    assert profile.find_threads("worker") == [1]
    assert profile.find_threads(10) == [0]
    with pytest.raises(ProfileError, match="no thread matches 'nope'; threads are: main \\(10\\), worker \\(11\\)"):
        profile.find_threads("nope")


def test_state_parse():
    assert State.parse("cpu") is State.ON_CPU
    assert State.parse("Waiting") is State.WAITING
    assert State.parse(3) is State.RUNNABLE
    with pytest.raises(ValueError, match="unknown state 'idle'"):
        State.parse("idle")


def _bulk_copy(source: Profile) -> Profile:
    """``source`` (one thread, no wait reasons) rebuilt through the bulk builders."""
    profile = Profile(source.meta)
    profile.set_tables(list(source.strings), list(source.frame_function), list(source.frame_file), list(source.frame_line),
                       list(source.stack_prefix), list(source.stack_frame))
    thread = profile.add_thread(1, 10, "main")
    columns = source.columns()
    profile.extend_samples(columns["time_ns"].tolist(), thread, columns["stack"].tolist(),
                           columns["weight_ns"].tolist(), columns["state"].tolist())
    return profile


def test_bulk_builders_build_what_interning_and_append_sample_build():
    source = Profile({"kind": "test"})
    main = source.add_thread(1, 10, "main")
    for stack_frames, state in (([("main", "app.py", 1), ("f", "app.py", 5)], State.ON_CPU),
                                ([("main", "app.py", 1), ("g", "lib.py", 9)], State.WAITING),
                                ([("main", "app.py", 1)], State.UNKNOWN)):
        source.append_sample(1_000 + len(source.columns()["time_ns"]), main, source.intern_frames(stack_frames), 5_000, state)
    copy = _bulk_copy(source)
    assert copy.strings == source.strings
    assert [copy.frame(i) for i in range(len(copy.frame_function))] == [source.frame(i) for i in range(len(source.frame_function))]
    assert list(copy.stack_prefix) == list(source.stack_prefix) and list(copy.stack_frame) == list(source.stack_frame)
    for name, column in source.columns().items():
        assert copy.columns()[name].tolist() == column.tolist(), name
    assert copy.column_lists() == {name: column.tolist() for name, column in source.columns().items()}
    # interning more afterwards finds what the bulk tables hold
    assert copy.intern_frames([("main", "app.py", 1), ("g", "lib.py", 9)]) == source.intern_frames([("main", "app.py", 1), ("g", "lib.py", 9)])
    assert copy.intern_string("lib.py") == source.strings.index("lib.py")


@pytest.mark.parametrize("tables, message", [
    ((["a", "a"], [], [], [], [], []), "distinct"),
    ((["a"], [0], [1], [1], [], []), "outside the 1 strings"),
    ((["a"], [0], [0], [-1], [], []), "lines must be >= 0"),
    ((["a"], [0], [0], [1], [0], [0]), "earlier stack"),
    ((["a"], [0], [0], [1], [-1], [1]), "one of the 1 frames"),
    ((["a"], [0, 0], [0], [1], [], []), "differ in length"),
])
def test_set_tables_rejects_broken_tables(tables, message):
    with pytest.raises(ProfileError, match=message):
        Profile().set_tables(*tables)


def test_set_tables_refuses_a_profile_that_has_tables():
    with pytest.raises(ProfileError, match="has some"):
        small_profile().set_tables(["a"], [], [], [], [], [])


@pytest.mark.parametrize("samples, message", [
    (([1], 0, [0], [0], [0]), "weight must be > 0"),
    (([-1], 0, [0], [5], [0]), "time must be >= 0"),
    (([1], 0, [0], [5], [99]), "not States"),
    (([1], 0, [7], [5], [0]), "stack is outside"),
    (([1], 3, [0], [5], [0]), "not a thread index"),
    (([1, 2], 0, [0], [5], [0]), "differ in length"),
])
def test_extend_samples_rejects_what_append_sample_rejects(samples, message):
    profile = Profile()
    profile.add_thread(1, 10, "main")
    profile.intern_frames([("main", "app.py", 1)])
    with pytest.raises(ProfileError, match=message):
        profile.extend_samples(*samples)
    assert len(profile.columns()["time_ns"]) == 0


def test_table_lists_give_the_ids_intern_frames_gives_and_continue_from_given_tables():
    chains = [[("main", "app.py", 1), ("f", "app.py", 5)], [("main", "app.py", 1), ("g", "lib.py", 9)], [("h", "app.py", 2)]]
    expected = Profile()
    expected_leaves = [expected.intern_frames(chain) for chain in chains]

    def build(tables: TableLists) -> list[int]:
        leaves = []
        for chain in chains:
            stack = NO_STACK
            for function, file, line in chain:
                stack = tables.stack(stack, tables.frame(function, file, line))
            leaves.append(stack)
        return leaves

    tables = TableLists()
    assert build(tables) == expected_leaves
    profile = Profile()
    tables.fill(profile)
    assert profile.strings == expected.strings
    assert list(profile.stack_prefix) == list(expected.stack_prefix) and list(profile.stack_frame) == list(expected.stack_frame)
    resumed = TableLists(tables.strings[:2], tables.functions[:1], tables.files[:1], tables.lines[:1], [NO_STACK], tables.stack_frames[:1])
    assert build(resumed) == expected_leaves and resumed.prefixes == tables.prefixes
