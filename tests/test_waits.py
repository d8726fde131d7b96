"""OwnThreadWaits: wait reasons of this process's own threads, on real sockets, pipes and locks."""

from __future__ import annotations

import os
import select
import socket
import threading
import time

import pytest

from profviz.collect.waits import OwnThreadWaits, WaitDecoder


@pytest.fixture
def server():
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener
    listener.close()


def reason_when_blocked(waits: OwnThreadWaits, thread: threading.Thread, expected: str, timeout: float = 3.0) -> str | None:
    """Read the thread's reason until it is ``expected`` (it may not have blocked yet); the last one."""
    deadline = time.monotonic() + timeout
    reason = None
    while time.monotonic() < deadline:
        reason = waits.reason(thread.native_id)
        if reason == expected:
            break
        time.sleep(0.01)
    return reason


def blocked_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_thread_reading_a_socket_is_waiting_on_the_servers_address(server):
    connection = socket.create_connection(server.getsockname())
    waits = OwnThreadWaits()
    thread = blocked_thread(lambda: connection.recv(1))
    expected = f"socket recv 127.0.0.1:{server.getsockname()[1]}"
    assert reason_when_blocked(waits, thread, expected) == expected
    connection.shutdown(socket.SHUT_RDWR)
    thread.join(2)
    connection.close()
    waits.close()


def test_a_select_on_a_socket_and_a_wakeup_pipe_is_a_wait_on_the_socket(server):
    connection = socket.create_connection(server.getsockname())
    wakeup_read, wakeup_write = os.pipe()
    waits = OwnThreadWaits()
    thread = blocked_thread(lambda: select.select([wakeup_read, connection], [], []))
    expected = f"socket recv 127.0.0.1:{server.getsockname()[1]}"
    assert reason_when_blocked(waits, thread, expected) == expected
    os.write(wakeup_write, b"x")
    thread.join(2)
    for fd in (wakeup_read, wakeup_write):
        os.close(fd)
    connection.close()
    waits.close()


def test_the_socket_the_program_uses_is_left_working(server):
    """Resolving a socket works on a duplicate: the program's connection still sends and receives."""
    connection = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    waits = OwnThreadWaits()
    received = []
    thread = blocked_thread(lambda: received.append(connection.recv(5)))
    expected = f"socket recv 127.0.0.1:{server.getsockname()[1]}"
    assert reason_when_blocked(waits, thread, expected) == expected
    accepted.sendall(b"hello")
    thread.join(2)
    assert received == [b"hello"]
    connection.sendall(b"back")
    assert accepted.recv(4) == b"back"
    for sock in (connection, accepted):
        sock.close()
    waits.close()


def test_sleep_and_lock_waits(server):
    held = threading.Lock()
    held.acquire()
    waits = OwnThreadWaits()
    sleeper = blocked_thread(lambda: time.sleep(1.5))
    locked = blocked_thread(lambda: held.acquire(timeout=1.5))
    assert reason_when_blocked(waits, sleeper, "sleep") == "sleep"
    assert reason_when_blocked(waits, locked, "lock (futex)") == "lock (futex)"
    held.release()
    waits.close()


def test_a_running_thread_reads_running_an_ended_one_no_reason_and_its_file_is_closed():
    import hashlib

    waits = OwnThreadWaits()
    stop = threading.Event()

    def hash_without_the_gil():  # runs on a CPU in C without the GIL: "running", no syscall
        data = b"x" * 20_000_000
        while not stop.is_set():
            hashlib.sha256(data).digest()

    hashing = blocked_thread(hash_without_the_gil)
    readings = []
    for _ in range(20):
        readings.append(waits.reason(hashing.native_id))
        time.sleep(0.01)
    stop.set()
    hashing.join(5)
    from profviz.collect.waits import RUNNABLE, RUNNING

    assert sum(reading in (RUNNING, RUNNABLE) for reading in readings) >= 10, readings  # what it waited on is over
    waits.keep_only(set())
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    assert waits.reason(ended.native_id) in (None, RUNNING, RUNNABLE)  # gone, or its task entry not reaped yet: no wait
    assert waits.reason(2**22 + 12345) is None  # no such thread
    sleeper = blocked_thread(lambda: time.sleep(1.0))
    assert reason_when_blocked(waits, sleeper, "sleep") == "sleep"
    waits.keep_only({sleeper.native_id})  # the threads that serve no request any more let go of their files
    assert waits.kept == 1
    waits.keep_only(set())
    assert waits.kept == 0
    waits.close()


def test_a_syscall_line_that_is_not_one_decodes_to_nothing():
    decoder = WaitDecoder(os.getpid(), own=True)
    for line in (b"", b"running", b"-1 0x0 0x0", b"garbage here", b"7 0x1 0x2"):
        assert decoder.reason(threading.get_native_id(), line) == (None, False), line
    assert decoder.reason(threading.get_native_id(), b"4095 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0") == ("syscall 4095", False)
    decoder.close()


def test_a_thread_waiting_for_the_gil_reads_gil_and_a_lock_waiter_reads_lock():
    """Two pure-Python spinners take turns with the GIL: a spinner caught off it waits for the GIL;
    a thread blocked on a held threading.Lock waits for that lock, never for the GIL."""
    waits = OwnThreadWaits()
    assert waits.decoder.gil is not None, "the interpreter's runtime state was found"
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinners = [blocked_thread(spin) for _ in range(2)]
    held = threading.Lock()
    held.acquire()
    locked = blocked_thread(lambda: held.acquire(timeout=3))
    seen = {"spinner": [], "locked": []}
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        seen["spinner"].extend(waits.reason(t.native_id) for t in spinners)
        seen["locked"].append(waits.reason(locked.native_id))
        time.sleep(0.005)
    stop.set()
    held.release()
    for thread in [*spinners, locked]:
        thread.join(5)
    waits.close()
    assert "gil" in seen["spinner"] and "lock (futex)" not in seen["spinner"], seen["spinner"][:40]
    assert seen["locked"].count("lock (futex)") >= 0.9 * len(seen["locked"]) and "gil" not in seen["locked"]
