"""The writer thread's queue (profviz/collect/writer.py): what is queued is written, including
what a request queued while the writer was stopping, and drops are reported from the writer."""

from __future__ import annotations

import threading

from profviz.collect.writer import BackgroundWriter


def test_items_queued_as_the_writer_stops_are_written_by_the_next_close():
    written: list[int] = []
    writer = BackgroundWriter(written.extend, poll_s=0.01)
    assert writer.submit(1)
    writer.close()
    assert written == [1]
    writer._queue.append(2)  # a request that saw the writer live and queued after it took its stop marker
    writer.close()
    assert written == [1, 2]
    assert writer.submit(3)  # and a later request starts it again
    writer.close()
    assert written == [1, 2, 3]


def test_drops_are_reported_from_the_writer_thread_with_the_running_total():
    release = threading.Event()
    reports: list[tuple[int, int, str]] = []

    def slow(batch):
        release.wait(10)

    writer = BackgroundWriter(slow, maxsize=4, poll_s=0.01,
                              on_drop=lambda new, total: reports.append((new, total, threading.current_thread().name)))
    writer.submit(0)
    assert writer.flush(0.05) is False  # the writer is stuck in its first batch
    accepted = [writer.submit(i) for i in range(10)]
    release.set()
    writer.close()
    dropped = accepted.count(False)
    assert dropped > 0 and writer.dropped == dropped
    assert sum(new for new, _, _ in reports) == dropped and reports[-1][1] == dropped
    assert {name for _, _, name in reports} == {"profviz-writer"}
