"""Per-thread scheduler state and wait reasons of a live process, read from /proc.

``ProcStateReader(pid).read()`` returns one :class:`~.states.ThreadReading` per live thread: the
state letter from ``stat``, the cumulative on-CPU and run-queue times from ``schedstat`` and, for
blocked threads only, a short wait reason decoded from ``syscall``, ``wchan`` and the file
descriptors the blocking call waits on (:mod:`.waits`; sockets resolved to addresses). Its cost model
and known limits: docs/attach.md.
"""

from __future__ import annotations

import errno
import os
import resource
import time
from dataclasses import dataclass

from .procfs import parse_stat, reason_from_wchan
from .states import BLOCKED_LETTERS, STOPPED_LETTERS, ThreadReading
from .gil import gil_range
from .waits import SOCKET_CACHE_TTL_S, WaitDecoder

TASK_LIST_REFRESH_S = 0.5
_FUTEX_REASONS = ("gil", "lock (futex)")

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_GONE_ERRNOS = (errno.ENOENT, errno.ESRCH)


class ProcessGone(Exception):
    """The target process exited (or the pid vanished) while being read."""


class _Task:
    """Open files and last-seen counters of one thread."""

    __slots__ = ("tid", "directory", "stat_fd", "schedstat_fd", "syscall_fd", "wchan_fd",
                 "comm", "last_run_marker", "last_letter", "last_reason", "last_syscall_line",
                 "last_syscall_letter", "last_syscall_decoded_at", "last_syscall_reason", "last_futex_reason")

    def __init__(self, tid: int, directory: str) -> None:
        self.tid = tid
        self.directory = directory
        self.stat_fd = -1
        self.schedstat_fd = -1
        self.syscall_fd = -1
        self.wchan_fd = -1
        self.comm = b""
        self.last_run_marker: tuple[int, int] | None = None
        self.last_letter = ""
        self.last_reason: str | None = None
        self.last_syscall_line: bytes | None = None
        self.last_syscall_letter = ""
        self.last_syscall_decoded_at = 0.0
        self.last_syscall_reason: str | None = None
        self.last_futex_reason: str | None = None  # "gil" or "lock (futex)", the last futex wait decoded

    def close(self) -> None:
        for fd in (self.stat_fd, self.schedstat_fd, self.syscall_fd, self.wchan_fd):
            if fd >= 0:
                os.close(fd)
        self.stat_fd = self.schedstat_fd = self.syscall_fd = self.wchan_fd = -1


class ProcStateReader:
    """Reads every thread of one process; not thread-safe.  Use ``close()`` (or ``with``) when done."""

    def __init__(self, pid: int):
        """Raises ProcessLookupError if ``pid`` is not a live process (or is a thread, not a
        process), PermissionError if we may not inspect it (wait reasons need ptrace access)."""
        self.pid = pid
        self._proc_dir = f"/proc/{pid}"
        self._task_dir = f"{self._proc_dir}/task"
        self._tasks: dict[int, _Task] = {}
        self._names: dict[int, str] = {}
        self._tasks_listed_at = 0.0
        self._expected_thread_count = 0
        self._leader_start_ticks = 0
        self._has_schedstat = True
        self._spare_fds = self._fd_budget()
        self._waits = WaitDecoder(pid)
        self._closed = False
        self._check_target()
        self._waits.gil = gil_range(pid)
        self._has_schedstat = os.path.exists(f"{self._task_dir}/{pid}/schedstat")
        try:
            self._refresh_tasks()
        except ProcessGone:
            raise ProcessLookupError(f"process {pid} exited while attaching") from None

    def _check_target(self) -> None:
        pid = self.pid
        if not isinstance(pid, int) or pid <= 0:
            raise ProcessLookupError(f"no process with pid {pid!r}")
        try:
            with open(f"{self._proc_dir}/status", "rb") as status_file:
                status = status_file.read()
            with open(f"{self._proc_dir}/stat", "rb") as stat_file:
                leader = parse_stat(stat_file.read())
        except FileNotFoundError:
            raise ProcessLookupError(f"no process with pid {pid}") from None
        except PermissionError as error:
            raise PermissionError(f"not allowed to read /proc/{pid} ({error.strerror})") from None
        for line in status.splitlines():
            if line.startswith(b"Tgid:"):
                tgid = int(line.split()[1])
                if tgid != pid:
                    raise ProcessLookupError(f"{pid} is a thread of process {tgid}, not a process; use pid {tgid}")
        if leader.letter in "ZX" and leader.num_threads <= 1:
            raise ProcessLookupError(f"process {pid} has already exited (it is a zombie)")
        self._leader_start_ticks = leader.start_ticks
        try:
            with open(f"{self._task_dir}/{pid}/syscall", "rb") as syscall_file:
                syscall_file.read()
        except PermissionError as error:
            raise PermissionError(
                f"not allowed to inspect process {pid} ({error.strerror} reading /proc/{pid}/syscall); "
                "run as the target's user or as root, and check kernel.yama.ptrace_scope"
            ) from None
        except FileNotFoundError:
            raise ProcessLookupError(f"no process with pid {pid}") from None

    @staticmethod
    def _fd_budget() -> int:
        """How many /proc files we may keep open; beyond that we open/read/close each time."""
        soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft_limit == resource.RLIM_INFINITY:
            return 8192
        return max(0, min(8192, soft_limit // 2 - 64))

    def read(self) -> list[ThreadReading]:
        """One reading of every live thread.  Raises ProcessGone when the process is gone."""
        if self._closed:
            raise ValueError("reader is closed")
        self._waits.new_round()
        if time.monotonic() - self._tasks_listed_at >= TASK_LIST_REFRESH_S:
            self._refresh_tasks()
        readings: list[ThreadReading] = []
        task_list_changed = self._read_tasks(list(self._tasks.values()), readings)
        if task_list_changed or len(self._tasks) != self._expected_thread_count:
            known = set(self._tasks)
            self._refresh_tasks()
            seen = {reading.tid for reading in readings}
            new_tasks = [task for tid, task in self._tasks.items() if tid not in known and tid not in seen]
            self._read_tasks(new_tasks, readings)
        if not readings:
            raise ProcessGone(f"process {self.pid} has no threads left")
        return readings

    def _read_tasks(self, tasks: list[_Task], readings: list[ThreadReading]) -> bool:
        """Append a reading per task; return True if some thread vanished (task list is stale).

        A thread whose schedstat shows it has not run since its previous reading (same cpu
        time and same switch count) keeps its previous letter and wait reason without
        reading ``stat``: a thread cannot change state without running, except when it is
        woken and still waits for a CPU, which is then reported one reading late.  The
        leader's ``stat`` is always read, to track the thread count.
        """
        changed = False
        pread = os.pread
        time_ns = time.time_ns
        leader_tid = self.pid
        has_schedstat = self._has_schedstat
        for task in tasks:
            try:
                if has_schedstat:
                    schedstat_fd = task.schedstat_fd
                    schedstat = (
                        pread(schedstat_fd, 256, 0) if schedstat_fd >= 0 else self._read_once(task, "schedstat")
                    ).split()
                    cpu_ns = int(schedstat[0])
                    runqueue_ns = int(schedstat[1])
                    run_marker = (cpu_ns, int(schedstat[2]))
                    if run_marker == task.last_run_marker and task.tid != leader_tid:
                        readings.append(
                            ThreadReading(time_ns(), task.tid, task.last_letter, cpu_ns, runqueue_ns, task.last_reason)
                        )
                        continue
                stat = pread(task.stat_fd, 4096, 0) if task.stat_fd >= 0 else self._read_once(task, "stat")
                now_ns = time_ns()
            except OSError as error:
                if error.errno not in _GONE_ERRNOS:
                    raise
                self._forget(task)
                changed = True
                continue
            close_paren = stat.rfind(b")")
            letter = chr(stat[close_paren + 2])
            comm = stat[stat.find(b"(") + 1 : close_paren]
            if comm != task.comm:
                task.comm = comm
                self._names[task.tid] = comm.decode("utf-8", "replace")
            if task.tid == leader_tid:
                changed |= self._check_leader(stat)
            if not has_schedstat:
                fields = parse_stat(stat)
                cpu_ns = (fields.utime_ticks + fields.stime_ticks) * 1_000_000_000 // _CLOCK_TICKS_PER_S
                runqueue_ns, run_marker = 0, None
            if letter in BLOCKED_LETTERS or letter in STOPPED_LETTERS:
                if run_marker is not None and run_marker == task.last_run_marker and letter == task.last_letter:
                    reason = task.last_reason
                else:
                    reason = self._wait_reason(task, letter)
            else:
                reason = None
            task.last_run_marker = run_marker
            task.last_letter = letter
            task.last_reason = reason
            readings.append(ThreadReading(now_ns, task.tid, letter, cpu_ns, runqueue_ns, reason))
        return changed

    def _check_leader(self, stat: bytes) -> bool:
        """Track the thread count from the leader's stat; raise ProcessGone once it is a lone zombie."""
        fields = parse_stat(stat)
        if fields.letter in "ZX" and fields.num_threads <= 1:
            raise ProcessGone(f"process {self.pid} exited")
        changed = fields.num_threads != self._expected_thread_count
        self._expected_thread_count = fields.num_threads
        return changed

    def _refresh_tasks(self) -> None:
        try:
            listed = {int(name) for name in os.listdir(self._task_dir)}
        except OSError as error:
            if error.errno in _GONE_ERRNOS:
                raise ProcessGone(f"process {self.pid} exited") from None
            raise
        if not listed:
            raise ProcessGone(f"process {self.pid} exited")
        self._tasks_listed_at = time.monotonic()
        self._expected_thread_count = len(listed)
        for tid in [tid for tid in self._tasks if tid not in listed]:
            self._forget(self._tasks[tid])
        for tid in sorted(listed - set(self._tasks)):
            self._start_task(tid)

    def _start_task(self, tid: int) -> None:
        """Open a new thread's files and start tracking it, unless it is already gone."""
        task = _Task(tid, f"{self._task_dir}/{tid}")
        try:
            task.stat_fd = self._open_kept(task, "stat")
            stat = os.pread(task.stat_fd, 4096, 0) if task.stat_fd >= 0 else self._read_once(task, "stat")
            if self._has_schedstat:
                task.schedstat_fd = self._open_kept(task, "schedstat")
        except OSError as error:
            self._close_task_files(task)
            if error.errno in _GONE_ERRNOS:
                return
            raise
        if tid == self.pid and parse_stat(stat).start_ticks != self._leader_start_ticks:
            self._close_task_files(task)
            raise ProcessGone(f"process {self.pid} exited and its pid was reused")
        self._tasks[tid] = task

    def _open_kept(self, task: _Task, name: str) -> int:
        """Open a per-thread file to keep, or return -1 if over the fd budget."""
        if self._spare_fds <= 0:
            return -1
        try:
            fd = os.open(f"{task.directory}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE):
                self._spare_fds = 0
                return -1
            raise
        self._spare_fds -= 1
        return fd

    @staticmethod
    def _read_once(task: _Task, name: str) -> bytes:
        fd = os.open(f"{task.directory}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)

    def _forget(self, task: _Task) -> None:
        self._close_task_files(task)
        self._tasks.pop(task.tid, None)

    def _close_task_files(self, task: _Task) -> None:
        self._spare_fds += sum(1 for fd in (task.stat_fd, task.schedstat_fd, task.syscall_fd, task.wchan_fd) if fd >= 0)
        task.close()

    def _read_optional(self, task: _Task, name: str) -> bytes | None:
        """Read ``syscall``/``wchan`` of a thread, keeping the file open; None if unreadable."""
        attribute = f"{name}_fd"
        try:
            fd = getattr(task, attribute)
            if fd < 0:
                fd = self._open_kept(task, name)
                if fd < 0:
                    return self._read_once(task, name)
                setattr(task, attribute, fd)
            return os.pread(fd, 4096, 0)
        except OSError:
            return None

    def _wait_reason(self, task: _Task, letter: str) -> str | None:
        """Why a blocked (or stopped) thread waits; see ThreadReading.wait_reason.

        The decoded reason is reused while the thread's ``syscall`` line (number, arguments,
        stack and instruction pointers) and letter stay identical, for at most
        ``SOCKET_CACHE_TTL_S``: a thread looping on the same blocking call is decoded once.
        """
        line = self._read_optional(task, "syscall")
        now = time.monotonic()
        if (
            line is not None
            and line == task.last_syscall_line
            and letter == task.last_syscall_letter
            and now - task.last_syscall_decoded_at < SOCKET_CACHE_TTL_S
        ):
            return task.last_syscall_reason
        reason = self._decode_wait_reason(task, letter, line)
        if reason in _FUTEX_REASONS:
            task.last_futex_reason = reason
        if line is not None and not line.startswith(b"running"):
            task.last_syscall_line = line
            task.last_syscall_letter = letter
            task.last_syscall_decoded_at = now
            task.last_syscall_reason = reason
        return reason

    def _decode_wait_reason(self, task: _Task, letter: str, line: bytes | None) -> str | None:
        stopped = letter in STOPPED_LETTERS
        reason, known_blocking_call = self._waits.reason(task.tid, line)
        if stopped:
            return reason if known_blocking_call else None
        if known_blocking_call:
            return reason
        wchan = self._read_optional(task, "wchan")
        wchan_reason = reason_from_wchan(wchan.decode("ascii", "replace") if wchan else "")
        if wchan_reason == "lock (futex)" and self._waits.gil is not None:
            # the syscall line was read as the thread moved on: which futex is it waiting on now,
            # the GIL's or a lock's? Read it again; failing that, the kind of futex it waited on last
            again, known = self._waits.reason(task.tid, self._read_optional(task, "syscall"))
            return again if known else task.last_futex_reason
        if wchan_reason is not None:
            return wchan_reason
        if letter == "D":
            return "disk io"
        return reason

    def thread_names(self) -> dict[int, str]:
        """tid -> name (the kernel comm, at most 15 bytes) for every thread seen so far."""
        return dict(self._names)

    def close(self) -> None:
        """Release every open file; the reader can no longer be used."""
        for task in list(self._tasks.values()):
            self._forget(task)
        self._waits.close()
        self._closed = True

    def __enter__(self) -> ProcStateReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class ReadCost:
    """CPU spent by ``ProcStateReader.read()`` on one process (user + system time of the reading thread)."""

    reads: int
    threads: int
    cpu_ns_per_read: float

    def percent_of_core(self, rate_hz: float) -> float:
        return self.cpu_ns_per_read * rate_hz / 1e7


def measure_read_cost(pid: int, seconds: float = 2.0, rate_hz: float = 100.0) -> ReadCost:
    """Read ``pid`` at ``rate_hz`` for ``seconds`` and report the CPU time per read()."""
    period = 1.0 / rate_hz
    with ProcStateReader(pid) as reader:
        reader.read()
        reads = threads = 0
        cpu_ns = 0
        deadline = time.monotonic() + seconds
        next_read = time.monotonic()
        while time.monotonic() < deadline:
            started = time.thread_time_ns()
            threads = len(reader.read())
            cpu_ns += time.thread_time_ns() - started
            reads += 1
            next_read += period
            delay = next_read - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    return ReadCost(reads=reads, threads=threads, cpu_ns_per_read=cpu_ns / max(reads, 1))
