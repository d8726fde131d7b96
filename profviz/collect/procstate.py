"""Per-thread scheduler state and wait reasons of a live process, read from /proc.

``ProcStateReader(pid).read()`` returns one ``ThreadReading`` per live thread: the
state letter from ``/proc/PID/task/TID/stat``, the cumulative on-CPU and run-queue
times from ``schedstat`` and, for blocked threads only, a short human readable
wait reason decoded from ``syscall``, ``wchan`` and the file descriptor the
blocking call is using (sockets are resolved to addresses through
``/proc/PID/net/*``).  ``classify(prev, cur)`` turns two consecutive readings of
one thread into a ``State``.

Cost model (it runs at 100-1000 Hz next to py-spy): the task list is cached and
refreshed every ``TASK_LIST_REFRESH_S`` or as soon as the leader's thread count
changes or a thread vanishes; ``stat``/``schedstat`` (and ``syscall``/``wchan``
once needed) stay open and are re-read with ``os.pread``.  A thread whose
schedstat shows it has not run since its previous reading keeps its letter and
wait reason without further reads; ``syscall``/``wchan``/fds are only read for
blocked threads, and a reason is not decoded again while the ``syscall`` line is
unchanged.  Socket tables are parsed at most once per ``read()`` and only when a
socket needs resolving; socket endpoints are cached per (tid, fd, inode).

Known limits: schedstat's run-queue time only grows when a waiting thread finally
gets a CPU, so RUNNABLE shows up in the reading after the wait; a unix socket's
peer path is only known once the server has accepted the connection; thread
names are the kernel comm (15 bytes), which Python < 3.14 leaves as the
process name unless the program sets it.
"""

from __future__ import annotations

import errno
import os
import platform
import resource
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

from profviz.model.state import State

TASK_LIST_REFRESH_S = 0.5
SOCKET_CACHE_TTL_S = 2.0
MAX_POLL_FDS_RESOLVED = 1

BLOCKED_LETTERS = frozenset("SDIWPK")
STOPPED_LETTERS = frozenset("tT")

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_GONE_ERRNOS = (errno.ENOENT, errno.ESRCH)


class ProcessGone(Exception):
    """The target process exited (or the pid vanished) while being read."""


@dataclass(frozen=True, slots=True)
class ThreadReading:
    """One thread at one instant.

    ``wait_reason`` is set for blocked threads (S, D, I...) when anything is known
    about what they wait on, and for stopped threads (t, T) only when they were
    stopped inside a blocking call; it is ``None`` otherwise.
    """

    time_ns: int
    tid: int
    letter: str
    cpu_ns: int
    runqueue_ns: int
    wait_reason: str | None


def classify(prev: ThreadReading | None, cur: ThreadReading) -> tuple[State, str | None]:
    """State of the thread around ``cur`` and its wait reason (``None`` unless WAITING).

    Deltas are ``cur - prev`` of ``cpu_ns`` and ``runqueue_ns``; they are unknown when
    ``prev`` is ``None``, is for another tid, is not earlier than ``cur``, or has a
    larger counter (tid reuse).  The rule, by ``cur.letter``:

    - ``R``: RUNNABLE if the run-queue delta is strictly larger than the cpu delta,
      otherwise ON_CPU (also when the deltas are unknown or both zero).
    - ``S``, ``D``, ``I``, ``W``, ``P``, ``K`` (blocked): WAITING with ``cur.wait_reason``.
    - ``t``, ``T`` (stopped, e.g. by a ptrace-ing sampler): if the deltas are known and
      cpu + run-queue delta >= half the wall time between the readings, the thread was
      busy: RUNNABLE if run-queue > cpu, else ON_CPU.  Otherwise, if ``cur.wait_reason``
      is set (it was stopped inside a blocking call), WAITING with that reason.
      Otherwise UNKNOWN.
    - anything else (``Z``, ``X``...): UNKNOWN.
    """
    letter = cur.letter
    if letter in BLOCKED_LETTERS:
        return State.WAITING, cur.wait_reason
    deltas = _deltas(prev, cur)
    if letter == "R":
        if deltas is not None and deltas[1] > deltas[0]:
            return State.RUNNABLE, None
        return State.ON_CPU, None
    if letter in STOPPED_LETTERS:
        if deltas is not None:
            cpu_delta, runqueue_delta, wall_delta = deltas
            if 2 * (cpu_delta + runqueue_delta) >= wall_delta:
                return (State.RUNNABLE if runqueue_delta > cpu_delta else State.ON_CPU), None
        if cur.wait_reason is not None:
            return State.WAITING, cur.wait_reason
    return State.UNKNOWN, None


def _deltas(prev: ThreadReading | None, cur: ThreadReading) -> tuple[int, int, int] | None:
    """(cpu delta, run-queue delta, wall delta) in ns, or None when prev is not usable."""
    if prev is None or prev.tid != cur.tid or prev.time_ns >= cur.time_ns:
        return None
    cpu_delta = cur.cpu_ns - prev.cpu_ns
    runqueue_delta = cur.runqueue_ns - prev.runqueue_ns
    if cpu_delta < 0 or runqueue_delta < 0:
        return None
    return cpu_delta, runqueue_delta, cur.time_ns - prev.time_ns


class StatLine(NamedTuple):
    comm: str
    letter: str
    utime_ticks: int
    stime_ticks: int
    num_threads: int
    start_ticks: int


def parse_stat(raw: bytes) -> StatLine:
    """Parse a ``/proc/.../stat`` line.

    The comm is everything between the first ``(`` and the LAST ``)``: it may itself
    contain spaces and parentheses, so fields are only split after that ``)``.
    Raises ValueError on a malformed line.
    """
    open_paren = raw.find(b"(")
    close_paren = raw.rfind(b")")
    if open_paren < 0 or close_paren < open_paren:
        raise ValueError(f"malformed stat line: {raw[:80]!r}")
    fields = raw[close_paren + 2 :].split()
    if len(fields) < 20:
        raise ValueError(f"malformed stat line: {raw[:80]!r}")
    return StatLine(
        comm=raw[open_paren + 1 : close_paren].decode("utf-8", "replace"),
        letter=chr(fields[0][0]),
        utime_ticks=int(fields[11]),
        stime_ticks=int(fields[12]),
        num_threads=int(fields[17]),
        start_ticks=int(fields[19]),
    )


# Syscall numbers of the calls a thread can block in (plus a few common ones, for
# readable fallbacks).  aarch64 uses the generic table: it has no poll, select,
# epoll_wait, pause, open.
_SYSCALLS_X86_64 = {
    0: "read", 1: "write", 2: "open", 3: "close", 7: "poll", 9: "mmap", 16: "ioctl",
    17: "pread64", 18: "pwrite64", 19: "readv", 20: "writev", 23: "select", 26: "msync",
    34: "pause", 35: "nanosleep", 40: "sendfile", 42: "connect", 43: "accept",
    44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 61: "wait4",
    65: "semop", 69: "msgsnd", 70: "msgrcv", 72: "fcntl", 73: "flock", 74: "fsync",
    75: "fdatasync", 128: "rt_sigtimedwait", 130: "rt_sigsuspend", 162: "sync",
    202: "futex", 208: "io_getevents", 217: "getdents64", 220: "semtimedop",
    230: "clock_nanosleep", 232: "epoll_wait", 242: "mq_timedsend",
    243: "mq_timedreceive", 247: "waitid", 257: "openat", 262: "newfstatat",
    270: "pselect6", 271: "ppoll", 275: "splice", 277: "sync_file_range",
    281: "epoll_pwait", 288: "accept4", 295: "preadv", 296: "pwritev", 299: "recvmmsg",
    306: "syncfs", 307: "sendmmsg", 326: "copy_file_range", 327: "preadv2",
    328: "pwritev2", 332: "statx", 333: "io_pgetevents", 426: "io_uring_enter",
    441: "epoll_pwait2", 449: "futex_waitv", 455: "futex_wait",
}
_SYSCALLS_AARCH64 = {
    4: "io_getevents", 22: "epoll_pwait", 25: "fcntl", 29: "ioctl", 32: "flock",
    56: "openat", 57: "close", 61: "getdents64", 63: "read", 64: "write", 65: "readv",
    66: "writev", 67: "pread64", 68: "pwrite64", 69: "preadv", 70: "pwritev",
    71: "sendfile", 72: "pselect6", 73: "ppoll", 76: "splice", 79: "newfstatat",
    81: "sync", 82: "fsync", 83: "fdatasync", 84: "sync_file_range", 95: "waitid",
    98: "futex", 101: "nanosleep", 115: "clock_nanosleep", 133: "rt_sigsuspend",
    137: "rt_sigtimedwait", 182: "mq_timedsend", 183: "mq_timedreceive", 188: "msgrcv",
    189: "msgsnd", 192: "semtimedop", 193: "semop", 202: "accept", 203: "connect",
    206: "sendto", 207: "recvfrom", 211: "sendmsg", 212: "recvmsg", 222: "mmap",
    227: "msync", 242: "accept4", 243: "recvmmsg", 260: "wait4", 267: "syncfs",
    269: "sendmmsg", 285: "copy_file_range", 286: "preadv2", 287: "pwritev2",
    291: "statx", 292: "io_pgetevents", 426: "io_uring_enter", 441: "epoll_pwait2",
    449: "futex_waitv", 455: "futex_wait",
}
SYSCALL_NAMES_BY_ARCH = {"x86_64": _SYSCALLS_X86_64, "aarch64": _SYSCALLS_AARCH64}


def syscall_names_for(machine: str) -> dict[int, str]:
    """Syscall number -> name for ``platform.machine()`` values; empty if unsupported."""
    aliases = {"amd64": "x86_64", "arm64": "aarch64"}
    return SYSCALL_NAMES_BY_ARCH.get(aliases.get(machine.lower(), machine.lower()), {})


_READ_CALLS = frozenset(
    {"read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recvmmsg"}
)
_WRITE_CALLS = frozenset(
    {"write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "sendmmsg", "sendfile"}
)
_FIXED_REASONS = {
    "select": "poll/select", "pselect6": "poll/select",
    "epoll_wait": "epoll", "epoll_pwait": "epoll", "epoll_pwait2": "epoll",
    "futex": "lock (futex)", "futex_waitv": "lock (futex)", "futex_wait": "lock (futex)",
    "semop": "lock (semaphore)", "semtimedop": "lock (semaphore)",
    "nanosleep": "sleep", "clock_nanosleep": "sleep",
    "wait4": "child wait", "waitid": "child wait",
    "pause": "signal wait", "rt_sigsuspend": "signal wait", "rt_sigtimedwait": "signal wait",
    "io_getevents": "async io", "io_pgetevents": "async io", "io_uring_enter": "async io",
    "msgrcv": "message queue recv", "mq_timedreceive": "message queue recv",
    "msgsnd": "message queue send", "mq_timedsend": "message queue send",
    "sync": "disk io", "syncfs": "disk io", "msync": "disk io",
}
_BLOCKING_CALLS = (
    _READ_CALLS | _WRITE_CALLS | set(_FIXED_REASONS)
    | {"poll", "ppoll", "connect", "accept", "accept4", "fsync", "fdatasync", "sync_file_range", "flock", "fcntl"}
)
_FCNTL_BLOCKING_LOCK_COMMANDS = (7, 38)  # F_SETLKW, F_OFD_SETLKW
_POLLIN, _POLLPRI, _POLLOUT = 0x1, 0x2, 0x4

# Kernel function names seen in wchan -> reason; matched by prefix, in order.
_WCHAN_REASONS = (
    ("futex", "lock (futex)"),
    ("hrtimer_nanosleep", "sleep"), ("do_nanosleep", "sleep"), ("clock_nanosleep", "sleep"),
    ("do_epoll_wait", "epoll"), ("ep_poll", "epoll"),
    ("do_sys_poll", "poll/select"), ("do_select", "poll/select"), ("core_sys_select", "poll/select"),
    ("poll_schedule_timeout", "poll/select"),
    ("pipe_read", "pipe read"), ("anon_pipe_read", "pipe read"),
    ("pipe_write", "pipe write"), ("anon_pipe_write", "pipe write"),
    ("do_wait", "child wait"), ("kernel_wait", "child wait"),
    ("inet_csk_accept", "socket accept"), ("inet_wait_for_connect", "socket connect"),
    ("sk_wait_data", "socket recv"), ("sk_stream_wait_memory", "socket send"),
    ("unix_stream_read", "unix socket recv"), ("unix_stream_data_wait", "unix socket recv"),
    ("sigsuspend", "signal wait"), ("do_sigtimedwait", "signal wait"),
    ("io_schedule", "disk io"), ("folio_wait", "disk io"), ("wait_on_page", "disk io"),
    ("bit_wait_io", "disk io"), ("jbd2", "disk io"), ("blk_", "disk io"),
)
_WCHAN_NOT_A_REASON = ("0", "", "do_signal_stop", "ptrace_stop")

_TCP_STATE_LISTEN = "0A"
_TCP_STATE_SYN_SENT = "02"
_UNIX_FLAG_LISTENING = 0x10000  # __SO_ACCEPTCON
_NET_TABLE_BY_PROTO = {
    "TCP": ("tcp",), "TCPv6": ("tcp6",), "UDP": ("udp",), "UDPv6": ("udp6",),
    "UDPLITE": ("udplite",), "UDPLITEv6": ("udplite6",),
    "UNIX": ("unix",), "UNIX-STREAM": ("unix",), "UNIX-DGRAM": ("unix",), "UNIX-SEQPACKET": ("unix",),
}
_ALL_NET_TABLES = ("tcp", "tcp6", "udp", "udp6", "unix")


@dataclass(frozen=True, slots=True)
class SocketEndpoint:
    """What a socket inode is connected to, from /proc/PID/net/* (and sock_diag for unix peers)."""

    kind: str  # "tcp", "udp", "unix", or "socket" when unknown
    local: str | None = None
    remote: str | None = None
    tcp_state: str | None = None
    listening: bool = False

    def describe(self, direction: str) -> str:
        """Wait reason for a call in ``direction`` ("read", "write", "connect", "accept")."""
        if self.kind == "tcp":
            if self.tcp_state == _TCP_STATE_LISTEN or direction == "accept":
                return _join("socket accept", self.local)
            if self.tcp_state == _TCP_STATE_SYN_SENT or direction == "connect":
                return _join("socket connect", self.remote)
            return _join(f"socket {_SOCKET_VERB[direction]}", self.remote)
        if self.kind == "udp":
            if self.remote is not None:
                return _join(f"udp {_SOCKET_VERB[direction]}", self.remote)
            return _join(f"udp {_SOCKET_VERB[direction]} on", self.local)
        if self.kind == "unix":
            verb = "accept" if self.listening else _SOCKET_VERB[direction]
            return _join(f"unix socket {verb}", self.remote or self.local)
        return f"socket {_SOCKET_VERB[direction]}"


_SOCKET_VERB = {"read": "recv", "write": "send", "connect": "connect", "accept": "accept"}


def _join(prefix: str, detail: str | None) -> str:
    return f"{prefix} {detail}" if detail else prefix


def _decode_inet_address(hex_address: str) -> str:
    """``0100007F:1F90`` / 32-hex-digit IPv6 form of /proc/net/tcp* -> ``127.0.0.1:8080`` / ``[::1]:8080``."""
    host_hex, _, port_hex = hex_address.partition(":")
    raw = bytes.fromhex(host_hex)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    port = int(port_hex, 16)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw)
    else:
        if raw[:12] == b"\0" * 10 + b"\xff\xff":
            host = socket.inet_ntop(socket.AF_INET, raw[12:])
        else:
            host = "[" + socket.inet_ntop(socket.AF_INET6, raw) + "]"
    return f"{host}:{port}"


def _parse_inet_table(text: str, kind: str) -> dict[int, SocketEndpoint]:
    endpoints = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            local, remote = _decode_inet_address(fields[1]), _decode_inet_address(fields[2])
            inode = int(fields[9])
        except ValueError:
            continue
        endpoints[inode] = SocketEndpoint(
            kind=kind, local=local, remote=None if remote.endswith(":0") else remote, tcp_state=fields[3]
        )
    return endpoints


def _parse_unix_table(text: str) -> dict[int, SocketEndpoint]:
    endpoints = {}
    for line in text.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) < 7:
            continue
        path = fields[7].strip() if len(fields) > 7 else None
        try:
            inode, flags = int(fields[6]), int(fields[3], 16)
        except ValueError:
            continue
        endpoints[inode] = SocketEndpoint(kind="unix", local=path or None, listening=bool(flags & _UNIX_FLAG_LISTENING))
    return endpoints


class _UnixPeerLookup:
    """Peer inode of a unix socket via NETLINK_SOCK_DIAG (unix_diag), in our network namespace."""

    _NETLINK_SOCK_DIAG = 4
    _SOCK_DIAG_BY_FAMILY = 20
    _NLMSG_ERROR = 2
    _UDIAG_SHOW_PEER = 0x4
    _UNIX_DIAG_PEER = 2

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._unavailable = False
        self._sequence = 0

    def peer_inode(self, inode: int) -> int | None:
        """Inode of the socket connected to unix socket ``inode``, or None if unknown."""
        if self._unavailable:
            return None
        if self._socket is None:
            try:
                self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, self._NETLINK_SOCK_DIAG)
            except OSError:
                self._unavailable = True
                return None
            self._socket.settimeout(0.05)
        self._sequence += 1
        request = struct.pack(
            "=BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, inode, self._UDIAG_SHOW_PEER, 0xFFFFFFFF, 0xFFFFFFFF
        )
        header = struct.pack("=IHHII", 16 + len(request), self._SOCK_DIAG_BY_FAMILY, 1, self._sequence, 0)
        try:
            self._socket.send(header + request)
            reply = self._socket.recv(8192)
        except OSError:
            self.close()
            return None
        return self._parse_peer(reply)

    def _parse_peer(self, reply: bytes) -> int | None:
        if len(reply) < 32:
            return None
        length, message_type, _, sequence = struct.unpack_from("=IHHI", reply, 0)
        if message_type == self._NLMSG_ERROR or sequence != self._sequence:
            return None
        offset, end = 32, min(length, len(reply))
        while offset + 4 <= end:
            attribute_length, attribute_type = struct.unpack_from("=HH", reply, offset)
            if attribute_length < 4:
                return None
            if attribute_type == self._UNIX_DIAG_PEER and attribute_length >= 8:
                return struct.unpack_from("=I", reply, offset + 4)[0]
            offset += (attribute_length + 3) & ~3
        return None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class _Task:
    """Open files and last-seen counters of one thread."""

    __slots__ = ("tid", "directory", "stat_fd", "schedstat_fd", "syscall_fd", "wchan_fd",
                 "comm", "last_run_marker", "last_letter", "last_reason", "last_syscall_line",
                 "last_syscall_letter", "last_syscall_decoded_at", "last_syscall_reason")

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
        self._syscall_names = syscall_names_for(platform.machine())
        self._tasks: dict[int, _Task] = {}
        self._names: dict[int, str] = {}
        self._tasks_listed_at = 0.0
        self._expected_thread_count = 0
        self._leader_start_ticks = 0
        self._has_schedstat = True
        self._spare_fds = self._fd_budget()
        self._mem_fd = -1
        self._unix_peers = _UnixPeerLookup()
        self._net_tables: dict[str, dict[int, SocketEndpoint]] = {}
        self._socket_cache: dict[tuple[int, int, int], tuple[float, SocketEndpoint]] = {}
        self._closed = False
        self._check_target()
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
        self._net_tables = {}
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
        self._prune_socket_cache()

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
        if line is not None and not line.startswith(b"running"):
            task.last_syscall_line = line
            task.last_syscall_letter = letter
            task.last_syscall_decoded_at = now
            task.last_syscall_reason = reason
        return reason

    def _decode_wait_reason(self, task: _Task, letter: str, line: bytes | None) -> str | None:
        stopped = letter in STOPPED_LETTERS
        reason, known_blocking_call = self._reason_from_syscall(task.tid, line)
        if stopped:
            return reason if known_blocking_call else None
        if known_blocking_call:
            return reason
        wchan = self._read_optional(task, "wchan")
        wchan_reason = _reason_from_wchan(wchan.decode("ascii", "replace") if wchan else "")
        if wchan_reason is not None:
            return wchan_reason
        if letter == "D":
            return "disk io"
        return reason

    def _reason_from_syscall(self, tid: int, line: bytes | None) -> tuple[str | None, bool]:
        """(reason, True if the syscall is a known blocking call) from a ``syscall`` file line."""
        if not line:
            return None, False
        parts = line.split()
        try:
            number = int(parts[0])
            args = [int(part, 16) for part in parts[1:7]]
        except ValueError:
            return None, False
        if number < 0 or len(args) < 6:
            return None, False
        name = self._syscall_names.get(number)
        if name not in _BLOCKING_CALLS:
            return f"syscall {name or number}", False
        return self._reason_for_call(tid, name, args), True

    def _reason_for_call(self, tid: int, name: str, args: list[int]) -> str:
        fixed = _FIXED_REASONS.get(name)
        if fixed is not None:
            return fixed
        fd = args[0]
        if name in _READ_CALLS:
            return self._describe_fd(tid, fd, "read", fallback=f"syscall {name}")
        if name in _WRITE_CALLS:
            return self._describe_fd(tid, fd, "write", fallback=f"syscall {name}")
        if name == "connect":
            return self._describe_fd(tid, fd, "connect", fallback="socket connect")
        if name in ("accept", "accept4"):
            return self._describe_fd(tid, fd, "accept", fallback="socket accept")
        if name in ("fsync", "fdatasync", "sync_file_range"):
            return _join("fsync", self._file_path(tid, fd))
        if name == "flock" or (name == "fcntl" and args[1] in _FCNTL_BLOCKING_LOCK_COMMANDS):
            return _join("file lock", self._file_path(tid, fd))
        if name in ("poll", "ppoll"):
            return self._describe_poll(tid, pollfd_address=args[0], count=args[1])
        return f"syscall {name}"

    def _fd_target(self, tid: int, fd: int) -> str | None:
        if fd >= 1 << 31:
            return None
        try:
            return os.readlink(f"{self._task_dir}/{tid}/fd/{fd}")
        except OSError:
            return None

    def _file_path(self, tid: int, fd: int) -> str | None:
        target = self._fd_target(tid, fd)
        return target if target and target.startswith("/") else None

    def _describe_fd(self, tid: int, fd: int, direction: str, fallback: str) -> str:
        """Reason for a call blocked on ``fd`` in ``direction`` ("read", "write", "connect" or
        "accept"); ``fallback`` when the fd cannot be resolved."""
        target = self._fd_target(tid, fd)
        if target is None:
            return fallback
        if target.startswith("socket:["):
            return self._socket_endpoint(tid, fd, int(target[8:-1])).describe(direction)
        if target.startswith("pipe:["):
            return f"pipe {direction}"
        if target.startswith("anon_inode:"):
            return f"{target[11:].strip('[]')} {direction}"
        if target.startswith(("/dev/pts/", "/dev/tty")):
            return f"terminal {direction}"
        if target.startswith("/"):
            return f"file {direction} {target}"
        return fallback

    def _describe_poll(self, tid: int, pollfd_address: int, count: int) -> str:
        """A poll on a single fd is described as a wait on that fd (Python socket timeouts do this)."""
        if 0 < count <= MAX_POLL_FDS_RESOLVED:
            pollfd = self._read_memory(pollfd_address, 8)
            if pollfd is not None:
                fd, events, _ = struct.unpack("=ihh", pollfd)
                if fd >= 0 and events & (_POLLIN | _POLLPRI):
                    return self._describe_fd(tid, fd, "read", fallback="poll/select")
                if fd >= 0 and events & _POLLOUT:
                    return self._describe_fd(tid, fd, "write", fallback="poll/select")
        return "poll/select"

    def _read_memory(self, address: int, size: int) -> bytes | None:
        try:
            if self._mem_fd < 0:
                self._mem_fd = os.open(f"{self._proc_dir}/mem", os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(self._mem_fd, size, address)
        except (OSError, OverflowError):
            return None
        return data if len(data) == size else None

    def _socket_endpoint(self, tid: int, fd: int, inode: int) -> SocketEndpoint:
        key = (tid, fd, inode)
        now = time.monotonic()
        cached = self._socket_cache.get(key)
        if cached is not None and now - cached[0] < SOCKET_CACHE_TTL_S:
            return cached[1]
        endpoint = self._lookup_socket(tid, fd, inode)
        self._socket_cache[key] = (now, endpoint)
        return endpoint

    def _lookup_socket(self, tid: int, fd: int, inode: int) -> SocketEndpoint:
        try:
            protocol = os.getxattr(f"{self._task_dir}/{tid}/fd/{fd}", "system.sockprotoname")
            tables = _NET_TABLE_BY_PROTO.get(protocol.rstrip(b"\0").decode("ascii", "replace"), ())
        except OSError:
            tables = _ALL_NET_TABLES
        for table in tables:
            endpoint = self._net_table(table).get(inode)
            if endpoint is None:
                continue
            if endpoint.kind == "unix" and endpoint.local is None:
                peer_inode = self._unix_peers.peer_inode(inode)
                peer = self._net_table("unix").get(peer_inode) if peer_inode else None
                if peer is not None and peer.local:
                    return SocketEndpoint(kind="unix", remote=peer.local)
            return endpoint
        if any(table == "unix" for table in tables):
            return SocketEndpoint(kind="unix")
        return SocketEndpoint(kind="socket")

    def _net_table(self, table: str) -> dict[int, SocketEndpoint]:
        """Parsed /proc/PID/net/<table>, at most once per read()."""
        parsed = self._net_tables.get(table)
        if parsed is None:
            try:
                with open(f"{self._proc_dir}/net/{table}", encoding="utf-8", errors="replace") as table_file:
                    text = table_file.read()
            except OSError:
                text = ""
            if table == "unix":
                parsed = _parse_unix_table(text)
            else:
                parsed = _parse_inet_table(text, "tcp" if table.startswith("tcp") else "udp")
            self._net_tables[table] = parsed
        return parsed

    def _prune_socket_cache(self) -> None:
        now = time.monotonic()
        expired = [key for key, (seen_at, _) in self._socket_cache.items() if now - seen_at >= SOCKET_CACHE_TTL_S]
        for key in expired:
            del self._socket_cache[key]

    def thread_names(self) -> dict[int, str]:
        """tid -> name (the kernel comm, at most 15 bytes) for every thread seen so far."""
        return dict(self._names)

    def close(self) -> None:
        """Release every open file; the reader can no longer be used."""
        for task in list(self._tasks.values()):
            self._forget(task)
        if self._mem_fd >= 0:
            os.close(self._mem_fd)
            self._mem_fd = -1
        self._unix_peers.close()
        self._closed = True

    def __enter__(self) -> ProcStateReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _reason_from_wchan(wchan: str) -> str | None:
    if wchan in _WCHAN_NOT_A_REASON:
        return None
    for prefix, reason in _WCHAN_REASONS:
        if wchan.startswith(prefix):
            return reason
    return None


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
