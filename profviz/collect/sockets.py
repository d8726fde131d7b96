"""What a socket file descriptor is connected to: ``/proc/PID/net/*`` tables, and unix socket peers
through sock_diag."""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass

_TCP_STATE_LISTEN = "0A"
_TCP_STATE_SYN_SENT = "02"
_UNIX_FLAG_LISTENING = 0x10000  # __SO_ACCEPTCON
NET_TABLE_BY_PROTO = {
    "TCP": ("tcp",), "TCPv6": ("tcp6",), "UDP": ("udp",), "UDPv6": ("udp6",),
    "UDPLITE": ("udplite",), "UDPLITEv6": ("udplite6",),
    "UNIX": ("unix",), "UNIX-STREAM": ("unix",), "UNIX-DGRAM": ("unix",), "UNIX-SEQPACKET": ("unix",),
}
ALL_NET_TABLES = ("tcp", "tcp6", "udp", "udp6", "unix")


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
                return join_detail("socket accept", self.local)
            if self.tcp_state == _TCP_STATE_SYN_SENT or direction == "connect":
                return join_detail("socket connect", self.remote)
            return join_detail(f"socket {_SOCKET_VERB[direction]}", self.remote)
        if self.kind == "udp":
            if self.remote is not None:
                return join_detail(f"udp {_SOCKET_VERB[direction]}", self.remote)
            return join_detail(f"udp {_SOCKET_VERB[direction]} on", self.local)
        if self.kind == "unix":
            verb = "accept" if self.listening else _SOCKET_VERB[direction]
            return join_detail(f"unix socket {verb}", self.remote or self.local)
        return f"socket {_SOCKET_VERB[direction]}"


_SOCKET_VERB = {"read": "recv", "write": "send", "connect": "connect", "accept": "accept"}


def join_detail(prefix: str, detail: str | None) -> str:
    return f"{prefix} {detail}" if detail else prefix


def decode_inet_address(hex_address: str) -> str:
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


def parse_inet_table(text: str, kind: str) -> dict[int, SocketEndpoint]:
    endpoints = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            local, remote = decode_inet_address(fields[1]), decode_inet_address(fields[2])
            inode = int(fields[9])
        except ValueError:
            continue
        endpoints[inode] = SocketEndpoint(
            kind=kind, local=local, remote=None if remote.endswith(":0") else remote, tcp_state=fields[3]
        )
    return endpoints


def parse_unix_table(text: str) -> dict[int, SocketEndpoint]:
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


class UnixPeerLookup:
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
