"""Listen mode: each meter of the shard listens on its own TCP port (meter i on port-base + i, then the
next host) and serves the head-ends that connect (DESIGN.md, "Transports")."""

from __future__ import annotations

import asyncio
import errno
import functools
import resource
import socket
from collections.abc import Callable

from fleet.errors import FleetError
from fleet.settings import FleetOptions

# Backlog of each meter's listening socket (a head-end opens one or two connections per meter).
BACKLOG = 16


def raise_fd_limit() -> None:
    """Let this process open as many descriptors as it may (one per connection, one per listening meter)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


async def listen(options: FleetOptions, shard: range,
                 protocol_for: Callable[[int], asyncio.Protocol]) -> list[asyncio.AbstractServer]:
    """One listening socket per meter of ``shard``, serving ``protocol_for(meter_id)`` on each connection;
    FleetError (boot error) if an address cannot be had."""
    loop = asyncio.get_running_loop()
    servers = []
    for meter_id in shard:
        host, port = options.address(meter_id)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(BACKLOG)
        except OSError as e:
            sock.close()
            for server in servers:
                server.close()
            reason = "already in use" if e.errno == errno.EADDRINUSE else e.strerror
            raise FleetError(f"cannot listen on {host}:{port} for meter {meter_id}: {reason}") from None
        sock.setblocking(False)
        # a partial, not a closure: a few dozen bytes less per idle meter (bench.memory)
        servers.append(await loop.create_server(functools.partial(protocol_for, meter_id), sock=sock))
    return servers
