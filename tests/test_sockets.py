"""Socket addresses as /proc/net tables write them."""

from __future__ import annotations

import sys

from profviz.collect.sockets import decode_inet_address


def test_inet_addresses_from_proc_net_tables():
    little_endian = sys.byteorder == "little"
    loopback = "0100007F" if little_endian else "7F000001"
    assert decode_inet_address(f"{loopback}:1F90") == "127.0.0.1:8080"
    ipv6_loopback = "00000000000000000000000001000000" if little_endian else "00000000000000000000000000000001"
    assert decode_inet_address(f"{ipv6_loopback}:0050") == "[::1]:80"
    mapped = "0000000000000000FFFF00000100007F" if little_endian else "00000000000000000000FFFF7F000001"
    assert decode_inet_address(f"{mapped}:01BB") == "127.0.0.1:443"
