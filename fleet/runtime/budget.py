"""The file-descriptor budget of a worker: what it needs against what a process may open (RLIMIT_NOFILE).

A worker holds one descriptor per listening meter (listen mode), one per open connection, and a few of
its own: the database connections of its writers and the command listener, ground-truth spool files,
its metric files, its pipe to the supervisor, the event loop, logging. The supervisor plans before it
starts anything: each worker's listeners plus `RESERVE` plus room for at least `MIN_CONNECTIONS`
connections must fit under the limit, or the run stops with one line that says the way out. A running
worker admits connections up to its budget and refuses the rest cleanly (accepted and closed at once,
counted), so the descriptors of its own that the reserve keeps are always there: the database writer,
the spool and the metrics go on working however many head-ends knock.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass

from fleet.errors import FleetError

# Descriptors a worker keeps for itself (see above: about 20 in use; the rest is headroom for a spool
# file being written, a reconnect while the old connection closes, and the one a refused connection
# holds between its accept and its close).
RESERVE = 64
# The fewest connections a worker must be able to hold for a run to make sense.
MIN_CONNECTIONS = 256


def nofile_limit() -> int:
    """How many descriptors a worker may open: the hard RLIMIT_NOFILE (workers raise their soft limit to it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)


@dataclass(frozen=True, slots=True)
class Budget:
    """One worker's descriptors: its listening sockets, its reserve, and the connections it admits."""

    limit: int
    listeners: int
    connections: int

    @property
    def reserve(self) -> int:
        return self.limit - self.listeners - self.connections


def listeners(mode: str, shard: range) -> int:
    """Listening sockets a worker of ``mode`` holds: one per meter (listen), one in all (address), none (dial)."""
    return len(shard) if mode == "listen" else 1 if mode == "address" else 0


def budget(limit: int, listeners: int) -> Budget:
    """The budget of a worker with ``listeners`` listening sockets under a descriptor ``limit``."""
    return Budget(limit, listeners, max(0, limit - listeners - RESERVE))


def plan(shards: list[range], mode: str, limit: int) -> list[Budget]:
    """Each worker's budget; FleetError (one line, with the way out) if a worker cannot fit."""
    budgets = [budget(limit, listeners(mode, s)) for s in shards]
    worst = max(budgets, key=lambda b: b.listeners)
    if worst.connections >= MIN_CONNECTIONS:
        return budgets
    meters = sum(len(s) for s in shards)
    room = limit - RESERVE - MIN_CONNECTIONS
    if room <= 0:
        raise FleetError(f"a process may open only {limit} files (RLIMIT_NOFILE); a worker needs at least "
                         f"{RESERVE + MIN_CONNECTIONS}: raise the limit (ulimit -n, or LimitNOFILE= in a unit)")
    workers = math.ceil(meters / room)
    raise FleetError(
        f"a worker would listen for {worst.listeners} meters, and needs {RESERVE} descriptors of its own and room "
        f"for at least {MIN_CONNECTIONS} connections, but a process may open {limit} files (RLIMIT_NOFILE): "
        f"use --workers {workers} or more, or --mode address (one socket per worker), or raise the limit (ulimit -n, "
        f"or LimitNOFILE= in a unit)"
    )
