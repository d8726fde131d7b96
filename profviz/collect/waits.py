"""What a blocked thread waits on, decoded from its ``/proc/PID/task/TID/syscall`` line: the call,
and for calls on file descriptors what the descriptor is (a socket's peer, a pipe, a file).

:class:`WaitDecoder` serves both collectors: :class:`~.procstate.ProcStateReader` (another
process, sockets resolved through ``/proc/PID/net``) and :class:`OwnThreadWaits` (this process's
own threads, for the in-process sampler; sockets resolved on a duplicate of the descriptor).
A wait on many descriptors (poll, select, epoll) is described by the one socket among them
when there is one; an event loop's wake-up pipe or eventfd does not count. A futex wait on the
interpreter's GIL is ``gil``, any other ``lock (futex)``. Limits: docs/attach.md.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct
import time

from ..model.state import GIL_REASON
from .gil import own_gil_range
from .procfs import (
    BLOCKING_CALLS,
    FCNTL_BLOCKING_LOCK_COMMANDS,
    FIXED_REASONS,
    POLLIN,
    POLLOUT,
    POLLPRI,
    READ_CALLS,
    WRITE_CALLS,
    syscall_names_for,
)
from .sockets import ALL_NET_TABLES, NET_TABLE_BY_PROTO, SocketEndpoint, UnixPeerLookup, join_detail, parse_inet_table, parse_unix_table

SOCKET_CACHE_TTL_S = 2.0
MAX_WAITED_FDS = 256  # a poll/select/epoll on more descriptors than this is not resolved
MAX_SOCKETS_RESOLVED = 8
_EPOLLIN, _EPOLLPRI, _EPOLLOUT = 0x1, 0x2, 0x4
_MULTIPLEX_LABEL = {"poll": "poll/select", "ppoll": "poll/select", "select": "poll/select", "pselect6": "poll/select",
                    "epoll_wait": "epoll", "epoll_pwait": "epoll", "epoll_pwait2": "epoll"}


_FUTEX_CALLS = frozenset({"futex", "futex_wait"})


class WaitDecoder:
    """Decodes ``syscall`` lines of one process's threads; not thread-safe. ``own``: the process is
    this one (sockets are resolved on a duplicate descriptor, no ``/proc/net`` parsing). ``gil``:
    the [start, end) address range of the interpreter's runtime state (:func:`.gil.gil_range`): a
    futex wait inside it is a wait for the GIL (``gil``), not for a lock."""

    def __init__(self, pid: int, *, own: bool = False, gil: tuple[int, int] | None = None):
        self.pid = pid
        self.own = own
        self.gil = gil
        self._proc_dir = f"/proc/{pid}"
        self._syscall_names = syscall_names_for(platform.machine())
        self._mem_fd = -1
        self._unix_peers = UnixPeerLookup()
        self._net_tables: dict[str, dict[int, SocketEndpoint]] = {}
        self._socket_cache: dict[tuple[int, int, int], tuple[float, SocketEndpoint]] = {}

    def new_round(self) -> None:
        """Start a round of readings: ``/proc/PID/net`` tables are parsed again when next needed,
        and socket endpoints older than ``SOCKET_CACHE_TTL_S`` are forgotten."""
        self._net_tables = {}
        now = time.monotonic()
        expired = [key for key, (seen_at, _) in self._socket_cache.items() if now - seen_at >= SOCKET_CACHE_TTL_S]
        for key in expired:
            del self._socket_cache[key]

    def reason(self, tid: int, line: bytes | None) -> tuple[str | None, bool]:
        """(reason, True if the syscall is a known blocking call) from a ``syscall`` file line;
        (None, False) for "running", an unreadable line or a thread in no syscall."""
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
        if name not in BLOCKING_CALLS:
            return f"syscall {name or number}", False
        return self._reason_for_call(tid, name, args), True

    def _reason_for_call(self, tid: int, name: str, args: list[int]) -> str:
        if name in _FUTEX_CALLS and self.gil is not None and self.gil[0] <= args[0] < self.gil[1]:
            return GIL_REASON
        if name in _MULTIPLEX_LABEL:
            return self._describe_multiplex(tid, name, args)
        fixed = FIXED_REASONS.get(name)
        if fixed is not None:
            return fixed
        fd = args[0]
        if name in READ_CALLS:
            return self._describe_fd(tid, fd, "read", fallback=f"syscall {name}")
        if name in WRITE_CALLS:
            return self._describe_fd(tid, fd, "write", fallback=f"syscall {name}")
        if name == "connect":
            return self._describe_fd(tid, fd, "connect", fallback="socket connect")
        if name in ("accept", "accept4"):
            return self._describe_fd(tid, fd, "accept", fallback="socket accept")
        if name in ("fsync", "fdatasync", "sync_file_range"):
            return join_detail("fsync", self._file_path(tid, fd))
        if name == "flock" or (name == "fcntl" and args[1] in FCNTL_BLOCKING_LOCK_COMMANDS):
            return join_detail("file lock", self._file_path(tid, fd))
        return f"syscall {name}"

    # -- waits on many descriptors ---------------------------------------------------------

    def _describe_multiplex(self, tid: int, name: str, args: list[int]) -> str:
        """A poll/select/epoll wait, described by what it waits on (see the module docstring)."""
        label = _MULTIPLEX_LABEL[name]
        if name in ("poll", "ppoll"):
            waited = self._poll_fds(args[0], args[1])
        elif name in ("select", "pselect6"):
            waited = self._select_fds(args[0], args[1], args[2])
        else:
            waited = self._epoll_fds(tid, args[0])
        if not waited:
            return label
        if len(waited) == 1:
            fd, direction = waited[0]
            return self._describe_fd(tid, fd, direction, fallback=label)
        sockets = [(fd, direction) for fd, direction in waited if (self._fd_target(tid, fd) or "").startswith("socket:[")]
        if len(sockets) == 1:
            fd, direction = sockets[0]
            return self._describe_fd(tid, fd, direction, fallback=label)
        if not sockets:
            return label
        described = sorted({self._describe_fd(tid, fd, direction, fallback="socket") for fd, direction in sockets[:MAX_SOCKETS_RESOLVED]})
        if len(described) == 1 and len(sockets) <= MAX_SOCKETS_RESOLVED:
            return described[0]  # several connections to one peer (a pool)
        return f"{label} on {len(sockets)} sockets ({described[0]}, ...)"

    def _poll_fds(self, address: int, count: int) -> list[tuple[int, str]]:
        if not 0 < count <= MAX_WAITED_FDS:
            return []
        raw = self._read_memory(address, 8 * count)
        if raw is None:
            return []
        waited = []
        for fd, events, _ in struct.iter_unpack("=ihh", raw):
            if fd >= 0 and events & (POLLIN | POLLPRI):
                waited.append((fd, "read"))
            elif fd >= 0 and events & POLLOUT:
                waited.append((fd, "write"))
        return waited

    def _select_fds(self, nfds: int, read_address: int, write_address: int) -> list[tuple[int, str]]:
        if not 0 < nfds <= 1024:
            return []
        size = ((nfds + 63) // 64) * 8
        waited = []
        for address, direction in ((read_address, "read"), (write_address, "write")):
            raw = self._read_memory(address, size) if address else None
            if raw is None:
                continue
            bits = int.from_bytes(raw, "little")
            waited.extend((fd, direction) for fd in range(nfds) if bits >> fd & 1)
            if len(waited) > MAX_WAITED_FDS:
                return []
        return waited

    def _epoll_fds(self, tid: int, epoll_fd: int) -> list[tuple[int, str]]:
        """The descriptors an epoll instance watches, from ``fdinfo`` (``tfd: N events: HEX ...`` lines)."""
        if epoll_fd >= 1 << 31:
            return []
        try:
            with open(f"{self._task_dir(tid)}/fdinfo/{epoll_fd}", "rb") as fdinfo:
                text = fdinfo.read(64 * 1024)
        except OSError:
            return []
        waited = []
        for line in text.splitlines():
            if not line.startswith(b"tfd:"):
                continue
            fields = line.split()
            try:
                fd, events = int(fields[1]), int(fields[3], 16)
            except (IndexError, ValueError):
                continue
            if events & (_EPOLLIN | _EPOLLPRI):
                waited.append((fd, "read"))
            elif events & _EPOLLOUT:
                waited.append((fd, "write"))
            if len(waited) > MAX_WAITED_FDS:
                return []
        return waited

    # -- one descriptor ---------------------------------------------------------------------

    def _task_dir(self, tid: int) -> str:
        return f"{self._proc_dir}/task/{tid}"

    def _fd_target(self, tid: int, fd: int) -> str | None:
        if fd >= 1 << 31:
            return None
        try:
            return os.readlink(f"{self._task_dir(tid)}/fd/{fd}")
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
        endpoint = _own_socket(fd, inode) if self.own else self._lookup_socket(tid, fd, inode)
        self._socket_cache[key] = (now, endpoint)
        return endpoint

    def _lookup_socket(self, tid: int, fd: int, inode: int) -> SocketEndpoint:
        try:
            protocol = os.getxattr(f"{self._task_dir(tid)}/fd/{fd}", "system.sockprotoname")
            tables = NET_TABLE_BY_PROTO.get(protocol.rstrip(b"\0").decode("ascii", "replace"), ())
        except OSError:
            tables = ALL_NET_TABLES
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
        """Parsed /proc/PID/net/<table>, at most once per round."""
        parsed = self._net_tables.get(table)
        if parsed is None:
            try:
                with open(f"{self._proc_dir}/net/{table}", encoding="utf-8", errors="replace") as table_file:
                    text = table_file.read()
            except OSError:
                text = ""
            if table == "unix":
                parsed = parse_unix_table(text)
            else:
                parsed = parse_inet_table(text, "tcp" if table.startswith("tcp") else "udp")
            self._net_tables[table] = parsed
        return parsed

    def close(self) -> None:
        if self._mem_fd >= 0:
            os.close(self._mem_fd)
            self._mem_fd = -1
        self._unix_peers.close()


def _own_socket(fd: int, inode: int) -> SocketEndpoint:
    """What one of this process's sockets is connected to, asked of a duplicate of ``fd`` (so
    the socket the program uses is never touched); checks that the duplicate is still ``inode``."""
    try:
        duplicate = os.dup(fd)
    except OSError:
        return SocketEndpoint(kind="socket")
    try:
        if os.fstat(duplicate).st_ino != inode:
            return SocketEndpoint(kind="socket")
        probe = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return SocketEndpoint(kind="socket")
    with probe:
        kind = {socket.AF_INET: "tcp", socket.AF_INET6: "tcp", socket.AF_UNIX: "unix"}.get(probe.family, "socket")
        if kind == "tcp" and probe.type == socket.SOCK_DGRAM:
            kind = "udp"
        try:
            listening = bool(probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            listening = False
        local = _address_text(_ask(probe.getsockname))
        remote = None if listening else _address_text(_ask(probe.getpeername))
    return SocketEndpoint(kind=kind, local=local, remote=remote, tcp_state="0A" if listening and kind == "tcp" else None,
                          listening=listening)


def _ask(call):
    try:
        return call()
    except OSError:
        return None


def _address_text(address) -> str | None:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(address, bytes):  # an abstract unix address
        return "@" + address[1:].decode("utf-8", "replace") if address else None
    return address or None


def _pread_holding_the_gil():
    """``pread(fd, size) -> bytes`` through libc without releasing the GIL (``ctypes.PyDLL``):
    a read of ``/proc/self/task/TID/syscall`` takes microseconds, and a sampler that let the GIL
    go for each would wait up to a switch interval (5 ms) to get it back from busy threads."""
    try:
        libc_pread = ctypes.PyDLL(None).pread
    except (OSError, AttributeError):
        return lambda fd, size: os.pread(fd, size, 0)
    libc_pread.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long)
    libc_pread.restype = ctypes.c_ssize_t
    buffer = ctypes.create_string_buffer(256)

    def pread(fd: int, size: int) -> bytes:
        count = libc_pread(fd, buffer, min(size, len(buffer)), 0)
        if count < 0:
            error = ctypes.get_errno() or errno.EIO
            raise OSError(error, os.strerror(error))
        return buffer.raw[:count]

    return pread


RUNNABLE = "(runnable)"  # what reason() answers for a thread starved of CPU: its sample is RUNNABLE, with no reason
RUNNING = "(running)"  # what reason() answers for a thread running again (or in a call that does not block)
RUNNABLE_SHARE = 0.5  # of the time since its previous reading, in the run queue


class OwnThreadWaits:
    """Wait reasons of this process's own threads, for the in-process sampler: one kept
    ``syscall`` file per thread, re-read with ``pread``; a reason is decoded again only when the
    call or its first argument (the descriptor, the lock's address) changes, or after
    ``SOCKET_CACHE_TTL_S``. Not thread-safe: the sampling thread owns it."""

    MAX_KEPT = 512

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.decoder = WaitDecoder(self.pid, own=True, gil=own_gil_range())
        self._fds: dict[int, int] = {}
        self._last: dict[int, tuple[bytes, float, str | None]] = {}
        self._sched_fds: dict[int, int] = {}
        self._run_delay: dict[int, tuple[int, int]] = {}  # (monotonic ns, run-queue ns) at the last schedstat read
        self._disabled = False
        self._pread = _pread_holding_the_gil()

    def reason(self, native_id: int) -> str | None:
        """Why thread ``native_id`` waited (the sampler asks for threads its CPU clock found mostly
        off a CPU): a known blocking call's reason (``gil`` for the GIL's futex). A thread running
        again (or in a call that does not block) is RUNNABLE when it spent at least
        RUNNABLE_SHARE of the time since its previous reading in the run queue (``schedstat``,
        read at each of its waiting ticks), else RUNNING: what it waited on is over. None: in a
        call that names no wait, or unreadable."""
        if self._disabled:
            return None
        fd = self._fds.get(native_id)
        try:
            if fd is None:
                if len(self._fds) >= self.MAX_KEPT:
                    self.forget_all()
                fd = os.open(f"/proc/{self.pid}/task/{native_id}/syscall", os.O_RDONLY | os.O_CLOEXEC)
                self._fds[native_id] = fd
            line = self._pread(fd, 256)
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EPERM):
                self._disabled = True  # no ptrace access to ourselves (a locked-down kernel): no reasons
            self._drop(native_id)
            return None
        now = time.monotonic()
        key = line[:line.find(b" ", line.find(b" ") + 1)]  # "number arg0"; "running" as it is
        last = self._last.get(native_id)
        if last is not None and last[0] == key and now - last[1] < SOCKET_CACHE_TTL_S:
            reason = last[2]
        else:
            if len(self._last) >= self.MAX_KEPT:
                self._last.clear()
                self.decoder.new_round()
            reason, known = self.decoder.reason(native_id, line)
            reason = reason if known else None
            self._last[native_id] = (key, now, reason)
        share = self._run_queue_share(native_id)  # read at every waiting tick: each share covers about one interval
        if reason is None:
            if share is not None and share >= RUNNABLE_SHARE:
                return RUNNABLE  # mostly off its CPU because the kernel ran others: starved of CPU, not waiting
            return RUNNING
        return reason

    def _run_queue_share(self, native_id: int) -> float | None:
        """The share of the wall time since this thread's previous reading that it spent in the
        run queue (``schedstat``'s second field); None on its first reading or when unreadable."""
        fd = self._sched_fds.get(native_id)
        try:
            if fd is None:
                fd = os.open(f"/proc/{self.pid}/task/{native_id}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
                self._sched_fds[native_id] = fd
            run_delay = int(self._pread(fd, 128).split()[1])
        except (OSError, ValueError, IndexError):
            return None
        now_ns = time.monotonic_ns()
        previous = self._run_delay.get(native_id)
        self._run_delay[native_id] = (now_ns, run_delay)
        if previous is None or now_ns <= previous[0]:
            return None
        return (run_delay - previous[1]) / (now_ns - previous[0])

    @property
    def kept(self) -> int:
        """How many threads' ``syscall`` files are open."""
        return len(self._fds)

    def keep_only(self, native_ids: set[int]) -> None:
        """Close the files of threads not in ``native_ids`` (threads that ended or serve no request)."""
        for native_id in [tid for tid in self._fds if tid not in native_ids]:
            self._drop(native_id)

    def _drop(self, native_id: int) -> None:
        fd = self._fds.pop(native_id, None)
        self._last.pop(native_id, None)
        self._run_delay.pop(native_id, None)
        sched = self._sched_fds.pop(native_id, None)
        if fd is not None:
            os.close(fd)
        if sched is not None:
            os.close(sched)

    def forget_all(self) -> None:
        for native_id in list(self._fds):
            self._drop(native_id)

    def close(self) -> None:
        self.forget_all()
        self.decoder.close()
