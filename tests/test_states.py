"""Classifying /proc readings into thread states."""

from __future__ import annotations

from profviz.collect.states import ThreadReading, classify
from profviz.model import State


def reading(time_ns: int, letter: str, cpu_ns: int, runqueue_ns: int, reason: str | None = None, tid: int = 7):
    return ThreadReading(time_ns, tid, letter, cpu_ns, runqueue_ns, reason)


def test_classify_rules():
    ms = 1_000_000
    prev = reading(0, "S", 100 * ms, 100 * ms)
    assert classify(prev, reading(10 * ms, "R", 108 * ms, 101 * ms)) == (State.ON_CPU, None)
    assert classify(prev, reading(10 * ms, "R", 102 * ms, 107 * ms)) == (State.RUNNABLE, None)
    assert classify(None, reading(10 * ms, "R", 0, 0)) == (State.ON_CPU, None)
    assert classify(prev, reading(10 * ms, "S", 100 * ms, 100 * ms, "sleep")) == (State.WAITING, "sleep")
    assert classify(prev, reading(10 * ms, "D", 100 * ms, 100 * ms, "disk io")) == (State.WAITING, "disk io")
    assert classify(prev, reading(10 * ms, "t", 109 * ms, 100 * ms)) == (State.ON_CPU, None)
    assert classify(prev, reading(10 * ms, "t", 101 * ms, 108 * ms)) == (State.RUNNABLE, None)
    assert classify(prev, reading(10 * ms, "t", 101 * ms, 100 * ms, "epoll")) == (State.WAITING, "epoll")
    assert classify(prev, reading(10 * ms, "t", 101 * ms, 100 * ms)) == (State.UNKNOWN, None)
    assert classify(None, reading(10 * ms, "T", 101 * ms, 100 * ms)) == (State.UNKNOWN, None)
    assert classify(prev, reading(10 * ms, "Z", 100 * ms, 100 * ms)) == (State.UNKNOWN, None)
    other_thread = reading(0, "R", 0, 0, tid=8)
    assert classify(other_thread, reading(10 * ms, "R", 1 * ms, 9 * ms)) == (State.ON_CPU, None)
