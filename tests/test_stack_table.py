"""The sampler's stack table: interning runs of frames."""

from __future__ import annotations

from profviz.collect import stack_table
from profviz.collect.stack_table import StackTable


def test_remembered_runs_give_the_ids_of_frame_by_frame_interning(monkeypatch):
    codes = [compile(f"def f{i}():\n    a = 1\n    return a\n", "<run>", "exec").co_consts[0] for i in range(6)]
    offsets = [0, 2, 4, 6, 2, 4]
    table = StackTable()
    expected, stack = [], -1
    for code, offset in zip(codes, offsets):
        stack = table.intern_instruction(stack, code, offset)
        expected.append(stack)
    size = len(table)
    assert list(table.intern_run(-1, codes, offsets)) == expected
    assert list(table.intern_run(-1, codes, offsets)) == expected  # remembered: the same ids, no new stacks
    assert len(table) == size
    assert list(table.intern_run(expected[1], codes[2:], offsets[2:])) == expected[2:]  # a run on a prefix
    moved = table.intern_run(-1, codes, offsets[:-1] + [0])  # the leaf at another instruction: another leaf stack
    assert list(moved[:-1]) == expected[:-1] and moved[-1] not in expected
    assert table.frames(moved[-1])[-1] == ("f5", "<run>", 1)  # offset 0 is the function's first line
    other = [compile("def f0():\n    a = 1\n    return a\n", "<elsewhere>", "exec").co_consts[0]] + codes[1:]
    elsewhere = table.intern_run(-1, other, offsets)[0]  # alike but for its file: code objects compare equal
    assert elsewhere != expected[0] and table.frames(elsewhere) == [("f0", "<elsewhere>", 1)]

    monkeypatch.setattr(stack_table, "RUNS_KEPT", 2)
    for start in range(4):  # more runs than kept: forgotten, and still right
        assert list(table.intern_run(expected[start], codes[start + 1:], offsets[start + 1:])) == expected[start + 1:]
    assert len(table._runs) <= 2
