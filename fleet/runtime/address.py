"""Address mode: every meter on one port (4059, the DLMS/COSEM port) at an IP address of its own, the way a
head-end sees cellular meters (DESIGN.md, "Transports").

Meter i is at ``--address-base`` + i. 127.0.0.0/8 is local on Linux without any set-up; any other range
is made local with one AnyIP route (``ip route add local 10.200.0.0/16 dev lo``; for IPv6, which has a
single loopback address, ``ip -6 route add local fd00:cf::/64 dev lo``). A worker holds one
listening socket, not one per meter: it listens on the wildcard address, and the local address of a
connection it accepts names the meter.

With several workers the listening sockets form one SO_REUSEPORT group, and a classic BPF program on
the group (SO_ATTACH_REUSEPORT_CBPF) sends each connection to the socket of the worker that owns the
meter, by the destination address of its SYN: the kernel does the routing, with no extra hop per
connection or request. The program returns an index into the group, which is the order the sockets
joined it, so the supervisor opens them all in slot order before it starts a worker, hands each worker
its socket, and keeps its own copy: a worker that dies and is started again gets the same socket, and
the connections that came meanwhile wait in its backlog.
"""

from __future__ import annotations

import ctypes
import socket
import struct

from fleet.errors import FleetError
from fleet.settings import FleetOptions

BACKLOG = 4096
SO_ATTACH_REUSEPORT_CBPF = 51  # <asm-generic/socket.h>

# Classic BPF (linux/filter.h): instruction classes, sizes, modes, operations, sources.
_BPF_LD, _BPF_ALU, _BPF_JMP, _BPF_RET = 0x00, 0x04, 0x05, 0x06
_BPF_W, _BPF_ABS = 0x00, 0x20
_BPF_SUB, _BPF_JGE, _BPF_K, _BPF_A = 0x10, 0x30, 0x00, 0x10
# Loads at SKF_NET_OFF + k read the network header: in a reuseport program the packet data starts after
# the TCP header. The IPv4 destination address is at offset 16 of the IPv4 header; the IPv6 one at offset
# 24 of the IPv6 header, its last 32 bits at 36 (`FleetOptions` keeps the meters' addresses within them).
_SKF_NET_OFF = -0x100000
_IPV4_DESTINATION = 16
_IPV6_DESTINATION_LOW = 36
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k


def steering_program(base: int, starts: list[int], *, ipv6: bool = False) -> bytes:
    """The classic BPF program that picks, for a connection to address A, the index of the worker whose
    shard holds meter A - base; ``starts`` are the shards' first meter ids (the first is 0). Addresses
    below ``base`` wrap to large numbers and go to the last worker, which closes them (not a meter). For
    IPv6 it compares the last 32 bits of the addresses."""
    offset = _IPV6_DESTINATION_LOW if ipv6 else _IPV4_DESTINATION
    insns = [
        (_BPF_LD | _BPF_W | _BPF_ABS, 0, 0, (_SKF_NET_OFF + offset) & 0xFFFFFFFF),  # A = destination
        (_BPF_ALU | _BPF_SUB | _BPF_K, 0, 0, base & 0xFFFFFFFF),  # A = meter id
    ]
    # From the last shard down: if A >= its first id, return its index; else try the next one down.
    for index in range(len(starts) - 1, 0, -1):
        insns.append((_BPF_JMP | _BPF_JGE | _BPF_K, 0, 1, starts[index]))
        insns.append((_BPF_RET | _BPF_K, 0, 0, index))
    insns.append((_BPF_RET | _BPF_K, 0, 0, 0))
    return b"".join(_INSN.pack(*i) for i in insns)


def attach_steering(sock: socket.socket, program: bytes) -> None:
    """Attach ``program`` to the reuseport group of ``sock`` (the kernel copies it)."""
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("@HP", len(program) // _INSN.size, ctypes.addressof(buf))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def open_listeners(options: FleetOptions, shards: list[range]) -> list[socket.socket]:
    """One listening socket per worker slot, in slot order, joined in one reuseport group steered by
    destination address (a lone worker needs no steering). FleetError if the port cannot be had."""
    socks: list[socket.socket] = []
    try:
        for _ in shards:
            socks.append(_listener(options, reuse_port=len(shards) > 1))
        if len(shards) > 1:
            attach_steering(socks[0], steering_program(options.base_address, [s.start for s in shards],
                                                       ipv6=options.ipv6))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def listener(options: FleetOptions) -> socket.socket:
    """A listening socket for a worker that serves the whole fleet alone (no steering)."""
    return _listener(options, reuse_port=False)


def _listener(options: FleetOptions, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if options.ipv6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        if options.ipv6:  # IPv6 only: an IPv4 connection would reach it as ::ffff:a.b.c.d, not a meter
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((options.listen_host, options.port_base))
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise FleetError(f"cannot listen on {options.listen_host}:{options.port_base} for the meters' addresses: "
                         f"{e.strerror}") from None
    sock.setblocking(False)
    return sock


def meter_of(options: FleetOptions, sockname) -> int | None:
    """The meter a connection reached, from its local address (None: not one of the fleet's)."""
    try:
        host = sockname[0]
        packed = socket.inet_pton(socket.AF_INET6, host) if ":" in host else socket.inet_aton(host)
        meter_id = int.from_bytes(packed, "big") - options.base_address
    except (OSError, TypeError, IndexError):
        return None
    return meter_id if 0 <= meter_id < options.meters else None
