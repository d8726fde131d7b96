"""What the files under /proc/PID/task/TID mean: ``stat`` lines, syscall numbers, the blocking
calls and kernel wait functions that name a wait reason."""

from __future__ import annotations

from typing import NamedTuple


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


READ_CALLS = frozenset(
    {"read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recvmmsg"}
)
WRITE_CALLS = frozenset(
    {"write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "sendmmsg", "sendfile"}
)
FIXED_REASONS = {
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
BLOCKING_CALLS = (
    READ_CALLS | WRITE_CALLS | set(FIXED_REASONS)
    | {"poll", "ppoll", "connect", "accept", "accept4", "fsync", "fdatasync", "sync_file_range", "flock", "fcntl"}
)
FCNTL_BLOCKING_LOCK_COMMANDS = (7, 38)  # F_SETLKW, F_OFD_SETLKW
POLLIN, POLLPRI, POLLOUT = 0x1, 0x2, 0x4

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


def reason_from_wchan(wchan: str) -> str | None:
    """The wait reason a kernel wait function (``wchan``) names, or None."""
    if wchan in _WCHAN_NOT_A_REASON:
        return None
    for prefix, reason in _WCHAN_REASONS:
        if wchan.startswith(prefix):
            return reason
    return None
