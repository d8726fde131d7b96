"""What /proc's files mean: stat lines, syscall tables."""

from __future__ import annotations

import pytest

from profviz.collect.procfs import parse_stat, syscall_names_for


def test_parse_stat_takes_comm_up_to_the_last_parenthesis():
    fields_after_comm = " ".join(["S"] + [str(number) for number in range(4, 53)])
    parsed = parse_stat(f"4242 (a) R (b) {fields_after_comm}\n".encode())
    assert parsed.comm == "a) R (b"
    assert parsed.letter == "S"
    assert (parsed.utime_ticks, parsed.stime_ticks, parsed.num_threads, parsed.start_ticks) == (14, 15, 20, 22)
    with pytest.raises(ValueError):
        parse_stat(b"4242 no parenthesis S 1 2 3")


def test_syscall_tables_cover_both_architectures():
    x86_64, aarch64 = syscall_names_for("x86_64"), syscall_names_for("aarch64")
    for name, x86_number, arm_number in [
        ("read", 0, 63), ("recvfrom", 45, 207), ("futex", 202, 98), ("clock_nanosleep", 230, 115),
        ("epoll_pwait", 281, 22), ("ppoll", 271, 73), ("accept4", 288, 242), ("wait4", 61, 260),
    ]:
        assert x86_64[x86_number] == name and aarch64[arm_number] == name
    assert "poll" not in aarch64.values() and "epoll_wait" not in aarch64.values()
