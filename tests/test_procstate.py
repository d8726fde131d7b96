"""ProcStateReader and classify against real target processes (tests/targets/procstate_*.py)."""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profviz.collect.procstate import ProcessGone, ProcStateReader, measure_read_cost
from profviz.collect.states import ThreadReading, classify
from profviz.model.state import State

TARGETS = Path(__file__).parent / "targets"
HANDSHAKE_TIMEOUT_S = 10.0
CONDITION_TIMEOUT_S = 3.0


def start_target(script: str, *args: str) -> tuple[subprocess.Popen, dict]:
    """Start a target script and return it with the JSON handshake it prints once its threads run."""
    process = subprocess.Popen(
        [sys.executable, str(TARGETS / script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    ready, _, _ = select.select([process.stdout], [], [], HANDSHAKE_TIMEOUT_S)
    if not ready:
        stop_target(process)
        pytest.fail(f"{script} printed no handshake within {HANDSHAKE_TIMEOUT_S}s")
    line = process.stdout.readline()
    if not line:
        stop_target(process)
        pytest.fail(f"{script} exited before its handshake (exit code {process.wait()})")
    return process, json.loads(line)


def stop_target(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_reading(reader: ProcStateReader, tid: int, condition, timeout: float = CONDITION_TIMEOUT_S):
    """Read until ``condition(prev, cur)`` holds for thread ``tid``; fail showing the last reading otherwise."""
    prev = cur = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = next((reading for reading in reader.read() if reading.tid == tid), None)
        if cur is not None and condition(prev, cur):
            return prev, cur
        prev = cur
        time.sleep(0.01)
    pytest.fail(f"condition not met for tid {tid} within {timeout}s; last reading {cur}, classified {classify(prev, cur) if cur else None}")


def has_state(expected_state: State, expected_reason: str | None):
    return lambda prev, cur: classify(prev, cur) == (expected_state, expected_reason)


@pytest.fixture(scope="module")
def tcp_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server
    server.close()


@pytest.fixture(scope="module")
def threads_target(tcp_server, tmp_path_factory):
    """procstate_threads.py connected to a TCP server that never answers and to a unix socket server."""
    unix_path = str(tmp_path_factory.mktemp("procstate") / "server.sock")
    unix_server = socket.socket(socket.AF_UNIX)
    unix_server.bind(unix_path)
    unix_server.listen()
    process, handshake = start_target("procstate_threads.py", str(tcp_server.getsockname()[1]), unix_path)
    unix_server.settimeout(HANDSHAKE_TIMEOUT_S)
    accepted, _ = unix_server.accept()
    reader = ProcStateReader(process.pid)
    yield {
        "process": process,
        "reader": reader,
        "tids": handshake["threads"],
        "accept_port": handshake["accept_port"],
        "backlog_port": handshake["backlog_port"],
        "tcp_port": tcp_server.getsockname()[1],
        "unix_path": unix_path,
    }
    reader.close()
    stop_target(process)
    accepted.close()
    unix_server.close()


def test_every_thread_of_the_target_is_read(threads_target):
    readings = threads_target["reader"].read()
    assert {reading.tid for reading in readings} == set(threads_target["tids"].values())
    for reading in readings:
        assert reading.cpu_ns > 0 and reading.runqueue_ns >= 0
        assert abs(reading.time_ns - time.time_ns()) < 5_000_000_000


def test_spinning_thread_is_mostly_on_cpu(threads_target):
    """On CPU most of the time if it got most of a core; if other load starved it, runnable is seen."""
    reader, tid = threads_target["reader"], threads_target["tids"]["spinner"]
    readings = []
    for _ in range(40):
        readings.append(next(reading for reading in reader.read() if reading.tid == tid))
        time.sleep(0.01)
    states = [classify(prev, cur)[0] for prev, cur in zip(readings, readings[1:])]
    cpu_share = (readings[-1].cpu_ns - readings[0].cpu_ns) / (readings[-1].time_ns - readings[0].time_ns)
    assert set(states) <= {State.ON_CPU, State.RUNNABLE}, states
    if cpu_share >= 0.8:
        assert states.count(State.ON_CPU) >= 0.6 * len(states), (cpu_share, states)
    else:
        assert State.RUNNABLE in states, (cpu_share, states)


def test_sleeping_thread_waits_on_sleep(threads_target):
    wait_for_reading(threads_target["reader"], threads_target["tids"]["sleeper"], has_state(State.WAITING, "sleep"))


def _cpythons() -> list[str]:
    """This interpreter and every other CPython 3.10-3.13 on the machine (pyenv's, Debian's)."""
    import glob

    found = {os.path.realpath(sys.executable): sys.executable}
    for path in sorted(glob.glob("/root/.pyenv/versions/3.1[0-3].*/bin/python3") + glob.glob("/usr/bin/python3.1[0-3]")):
        found.setdefault(os.path.realpath(path), path)
    return list(found.values())


@pytest.mark.parametrize("python", _cpythons())
def test_a_thread_waiting_for_the_gil_is_gil_and_one_waiting_for_a_lock_is_lock(python):
    """tests/targets/attach_gil.py, under each CPython 3.10-3.13 found: the compressor (zlib
    releases the GIL, then waits to take it back from the pure-Python spinner) waits on the GIL,
    never on a lock; the lock waiter waits on its lock, never the GIL."""
    target = subprocess.Popen([python, str(TARGETS / "attach_gil.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        hello = json.loads(target.stdout.readline())
        pid, tids = hello["pid"], hello["threads"]
        time.sleep(0.2)
        with ProcStateReader(pid) as reader:
            states: dict[str, list] = {"compressor": [], "lock-waiter": []}
            last = {}
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                for reading in reader.read():
                    for name in states:
                        if reading.tid == tids[name]:
                            if name in last:
                                states[name].append(classify(last[name], reading))
                            last[name] = reading
                time.sleep(0.01)
    finally:
        stop_target(target)

    def share(name, test) -> float:
        return sum(1 for state in states[name] if test(state)) / max(1, len(states[name]))

    def waits_on(reason):
        return lambda state: state == (State.WAITING, reason)

    assert len(states["compressor"]) > 50 and len(states["lock-waiter"]) > 50, {n: len(s) for n, s in states.items()}
    on_the_gil = lambda state: state == (State.GIL, None)  # noqa: E731
    compressor_busy = share("compressor", lambda s: s[0] in (State.ON_CPU, State.RUNNABLE) or on_the_gil(s))
    assert compressor_busy >= 0.9 and share("compressor", waits_on("lock (futex)")) < 0.05, states["compressor"]
    assert share("compressor", on_the_gil) > 0.05, "the compressor does wait for the GIL"
    assert share("lock-waiter", waits_on("lock (futex)")) >= 0.9 and share("lock-waiter", on_the_gil) < 0.05


def test_lock_acquire_waits_on_a_futex(threads_target):
    tid = threads_target["tids"]["lock-waiter"]
    wait_for_reading(threads_target["reader"], tid, has_state(State.WAITING, "lock (futex)"))


@pytest.mark.parametrize("thread", ["tcp-receiver", "tcp-timeout-receiver"])
def test_socket_recv_names_the_server_address(threads_target, thread):
    """A plain blocking recv (recvfrom) and a recv with a timeout (poll on the socket) read the same."""
    expected = f"socket recv 127.0.0.1:{threads_target['tcp_port']}"
    wait_for_reading(threads_target["reader"], threads_target["tids"][thread], has_state(State.WAITING, expected))


@pytest.mark.parametrize("thread", ["select-receiver", "poll-receiver", "epoll-receiver", "epoll-pool"])
def test_a_wait_on_one_peer_among_wakeup_pipes_names_the_peer(threads_target, thread):
    """select/poll/epoll on a socket and an event loop's wake-up pipe (or on several connections
    to one server, a pool) is a wait on that server."""
    expected = f"socket recv 127.0.0.1:{threads_target['tcp_port']}"
    wait_for_reading(threads_target["reader"], threads_target["tids"][thread], has_state(State.WAITING, expected))


def test_a_wait_on_sockets_to_different_peers_says_how_many(threads_target):
    tid = threads_target["tids"]["epoll-two-peers"]
    _, reading = wait_for_reading(threads_target["reader"], tid, lambda prev, cur: classify(prev, cur)[0] == State.WAITING)
    peers = sorted(f"socket recv 127.0.0.1:{threads_target[port]}" for port in ("tcp_port", "backlog_port"))
    assert reading.wait_reason == f"epoll on 2 sockets ({peers[0]}, ...)"


def test_unix_socket_recv_names_the_server_path(threads_target):
    expected = f"unix socket recv {threads_target['unix_path']}"
    tid = threads_target["tids"]["unix-receiver"]
    wait_for_reading(threads_target["reader"], tid, has_state(State.WAITING, expected))


def test_accept_names_the_listening_address(threads_target):
    expected = f"socket accept 127.0.0.1:{threads_target['accept_port']}"
    wait_for_reading(threads_target["reader"], threads_target["tids"]["acceptor"], has_state(State.WAITING, expected))


def test_main_thread_reading_stdin_waits_on_a_pipe(threads_target):
    wait_for_reading(threads_target["reader"], threads_target["tids"]["main"], has_state(State.WAITING, "pipe read"))


def test_thread_names_come_from_comm(threads_target):
    """Linux comm is at most 15 bytes; Python 3.11 does not copy threading names to it (3.14+ does)."""
    names = threads_target["reader"].thread_names()
    tids = threads_target["tids"]
    assert set(tids.values()) <= set(names)
    assert names[tids["renamed"]] == "a) b (c"
    process_comm = names[tids["main"]]
    for name in ("sleeper", "tcp-timeout-receiver"):
        assert names[tids[name]] in (process_comm, name[:15])


def test_read_costs_little_cpu(threads_target):
    cost = measure_read_cost(threads_target["process"].pid, seconds=0.3, rate_hz=100)
    assert cost.threads == len(threads_target["tids"])
    assert cost.reads >= 10
    assert cost.cpu_ns_per_read < 1_000_000, f"{cost.cpu_ns_per_read / 1000:.0f} us per read"


def test_more_cpu_bound_threads_than_cores_are_sometimes_runnable():
    threads = max(4, 2 * (os.cpu_count() or 1))
    process, handshake = start_target("procstate_contention.py", str(threads))
    try:
        with ProcStateReader(process.pid) as reader:
            hashing_tids = set(handshake["threads"])
            previous: dict[int, ThreadReading] = {}
            states: list[State] = []
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and (states.count(State.RUNNABLE) < 3 or len(states) < 40):
                for reading in reader.read():
                    if reading.tid in hashing_tids and reading.tid in previous:
                        states.append(classify(previous[reading.tid], reading)[0])
                    previous[reading.tid] = reading
                time.sleep(0.01)
    finally:
        stop_target(process)
    assert states.count(State.RUNNABLE) >= 3, states
    assert states.count(State.ON_CPU) + states.count(State.RUNNABLE) >= 0.5 * len(states), states


def test_a_stopped_thread_is_waiting_on_the_call_it_was_stopped_in():
    process, _ = start_target("procstate_contention.py", "0")
    try:
        with ProcStateReader(process.pid) as reader:
            wait_for_reading(reader, process.pid, has_state(State.WAITING, "pipe read"))
            os.kill(process.pid, signal.SIGSTOP)
            _, stopped = wait_for_reading(reader, process.pid, lambda prev, cur: cur.letter == "T")
            assert classify(None, stopped) == (State.WAITING, "pipe read")
    finally:
        stop_target(process)


def test_reading_an_exited_process_raises_process_gone():
    process, _ = start_target("procstate_contention.py", "0")
    try:
        reader = ProcStateReader(process.pid)
        assert [reading.tid for reading in reader.read()] == [process.pid]
        process.stdin.close()
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        with pytest.raises(ProcessGone):
            reader.read()
        process.wait()
        with pytest.raises(ProcessGone):
            reader.read()
        reader.close()
    finally:
        stop_target(process)


def test_nonexistent_pid_raises_process_lookup_error():
    with open("/proc/sys/kernel/pid_max") as pid_max_file:
        impossible_pid = int(pid_max_file.read()) + 1
    with pytest.raises(ProcessLookupError, match=str(impossible_pid)):
        ProcStateReader(impossible_pid)


def test_a_thread_id_is_not_accepted_as_a_pid(threads_target):
    with pytest.raises(ProcessLookupError, match="is a thread of process"):
        ProcStateReader(threads_target["tids"]["sleeper"])
