"""Settings of a fleet run, and the pure functions that place meters: shards, hosts and ports.

Everything here is computed from the command line, so the supervisor, each worker, `fleet meters
export` and a test all agree on which process serves a meter and where a head-end reaches it.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from dataclasses import dataclass

from fleet.errors import FleetError
from meter_core.connection import Transport
from meter_core.device.identity import DEFAULT_FLEET_SECRET, FleetConfig, MeterKind

MAX_PORT = 65535
# The ports the kernel picks a connection's local port from (net.ipv4.ip_local_port_range). A meter
# listening on one of them collides with any outgoing connection of the host that drew it, and a local
# client cannot reach meters that hold them all: listen mode keeps meter ports out of it.
EPHEMERAL_PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
LINUX_EPHEMERAL_PORTS = (32768, 60999)  # the kernel's default


def ephemeral_ports(path: str = EPHEMERAL_PORT_RANGE_FILE) -> tuple[int, int]:
    """This host's ephemeral port range (first, last); Linux's default where the file cannot be read."""
    try:
        with open(path) as f:
            first, last = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL_PORTS
    return first, last


@functools.cache
def _address_int(address: str) -> int:
    return int(ipaddress.ip_address(address))


@functools.cache
def port_runs(port_base: int, ephemeral: tuple[int, int]) -> tuple[range, ...]:
    """The ports a meter may listen on, from ``port_base`` up, in order: below the ephemeral range, then
    above it (empty if ``port_base`` is inside it: `FleetOptions` refuses that)."""
    first, last = ephemeral
    if port_base < first:
        return tuple(r for r in (range(port_base, first), range(last + 1, MAX_PORT + 1)) if r)
    if port_base > last:
        return (range(port_base, MAX_PORT + 1),)
    return ()
# How a head-end reaches the meters (DESIGN.md, "Transports"), one module each in fleet/runtime/; a mode is
# offered once it works (gateway is not yet).
MODES = ("listen", "dial", "address")
# Address mode: meter i at this address + i (127.0.0.0/8 is local on Linux), all on one port.
DEFAULT_ADDRESS_BASE = "127.1.0.1"
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

# Invocation counters a process sends start here when it has none stored: 16 per second since
# 2025-01-01T00:00Z, so a counter used before a crash that came before the first write is never used
# again (2**32 lasts to 2033). The meters' sent counters and hes-sink's confirms both start from it.
COUNTER_EPOCH = 1735689600.0


def counter_floor() -> int:
    """The lowest invocation counter a process may send now (`COUNTER_EPOCH`)."""
    return max(0, int((time.time() - COUNTER_EPOCH) * 16))


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetOptions:
    """What identifies a fleet and where its meters listen (shared by `run` and `meters export`)."""

    meters: int = 1000
    seed: int = 1
    fleet_secret: bytes = DEFAULT_FLEET_SECRET
    kind: MeterKind = MeterKind.THREE_PHASE
    mix: tuple[tuple[MeterKind, float], ...] = ()
    transport: Transport = Transport.WRAPPER
    mode: str = "listen"
    hosts: tuple[str, ...] = ("127.0.0.1",)
    port_base: int = 4059
    address_base: str = DEFAULT_ADDRESS_BASE  # address mode: meter i at address_base + i, port port_base
    # the host's ephemeral ports (`ephemeral_ports`): listen mode places no meter there
    ephemeral: tuple[int, int] = LINUX_EPHEMERAL_PORTS
    shard: tuple[int, int] = (0, 1)
    security_suite: int = 0
    hls_mechanism: int = 2  # of clients 48, 64, 80: 2 (AES of the challenge) or 5 (GMAC)

    def __post_init__(self) -> None:
        if self.meters < 1:
            raise FleetError("--meters must be at least 1")
        if self.mode not in MODES:
            raise FleetError(f"--mode {self.mode}: one of {', '.join(MODES)}")
        if self.hls_mechanism == 7 and self.security_suite == 0:
            raise FleetError("--hls-mechanism high-ecdsa needs --security-suite 1 or 2 (suite 0 has no ECDSA)")
        if not 1 <= self.port_base <= MAX_PORT:
            raise FleetError(f"--port-base {self.port_base} is not a TCP port")
        k, m = self.shard
        if not (m >= 1 and 0 <= k < m):
            raise FleetError(f"--shard {k}/{m}: need 0 <= K < M")
        first, last = self.ephemeral
        if first <= self.port_base <= last:
            raise FleetError(
                f"--port-base {self.port_base} is inside this host's ephemeral port range {first}-{last} "
                f"({EPHEMERAL_PORT_RANGE_FILE}), where outgoing connections take their ports: give a base "
                f"below {first} (or above {last})"
            )
        if self.mode == "address":
            self._check_addresses()
        if self.mode != "listen":
            return  # one port for all (address mode), or none (a calling meter listens nowhere)
        capacity = self.ports_per_host * len(self.hosts)
        if self.meters > capacity:
            need = -(-self.meters // self.ports_per_host)
            raise FleetError(
                f"{self.meters} meters need {self.meters} ports but --port-base {self.port_base} leaves "
                f"{self.ports_per_host} per address outside the ephemeral range {first}-{last}, "
                f"{capacity} on {len(self.hosts)} address(es); give {need} addresses with --host A,B,... "
                f"(127.0.0.0/8 is local on Linux)"
            )

    def _check_addresses(self) -> None:
        try:
            first = ipaddress.ip_address(self.address_base)
        except ValueError:
            raise FleetError(f"--address-base {self.address_base!r} is not an IPv4 or IPv6 address") from None
        if first.version == 6:
            # The steering program reads the last 32 bits of the destination address: the meters' addresses
            # must not carry into the bits above them.
            if (int(first) & 0xFFFFFFFF) + self.meters - 1 > 0xFFFFFFFF:
                raise FleetError(f"--address-base {first}: {self.meters} addresses after it cross a /96 boundary; "
                                 f"give a base with lower last 32 bits")
            if first.is_loopback and self.meters > 1:
                raise FleetError("IPv6 has one loopback address (::1): route a prefix to this host first "
                                 "(ip -6 route add local PREFIX/64 dev lo) and give --address-base in it")
            return
        if int(first) + self.meters - 1 > int(ipaddress.IPv4Address("255.255.255.254")):
            raise FleetError(f"--address-base {first}: no room for {self.meters} addresses after it")
        last = first + (self.meters - 1)
        if first in _LOOPBACK and last not in _LOOPBACK:
            raise FleetError(f"{self.meters} meters from {first} end at {last}, outside 127.0.0.0/8: give a lower "
                             f"--address-base, or a range routed locally (ip route add local PREFIX dev lo)")

    @property
    def base_address(self) -> int:
        """Address mode: meter 0's address as an integer."""
        return _address_int(self.address_base)

    @property
    def ipv6(self) -> bool:
        """Address mode: the meters' addresses are IPv6."""
        return ":" in self.address_base

    @property
    def listen_host(self) -> str:
        """Address mode: where a worker listens, the wildcard (a socket bound to one address hears only it)."""
        return "::" if self.ipv6 else "0.0.0.0"

    @property
    def ports_per_host(self) -> int:
        """Meters one --host address holds: the ports from --port-base up outside the ephemeral range."""
        return sum(len(r) for r in port_runs(self.port_base, self.ephemeral))

    @property
    def fleet(self) -> FleetConfig:
        return FleetConfig(seed=self.seed, secret=self.fleet_secret, kind=self.kind, mix=self.mix,
                           security_suite=self.security_suite, hls_mechanism=self.hls_mechanism)

    def address(self, meter_id: int) -> tuple[str, int]:
        """Where meter ``meter_id`` listens: meter i on port-base + i, skipping the ephemeral range; when
        an address's ports run out, the next --host address from port-base again. In address mode meter i
        is at address-base + i, port-base."""
        if self.mode == "address":
            return str(ipaddress.ip_address(self.base_address + meter_id)), self.port_base
        runs = port_runs(self.port_base, self.ephemeral)
        host, offset = divmod(meter_id, sum(len(r) for r in runs))
        for r in runs:
            if offset < len(r):
                return self.hosts[host % len(self.hosts)], r[offset]  # (only listen mode checks capacity)
            offset -= len(r)
        raise AssertionError("offset beyond the runs")

    def pod_range(self) -> range:
        """The meter ids this process group serves (``--shard K/M`` of the whole fleet)."""
        k, m = self.shard
        return split_range(range(self.meters), m)[k]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSettings:
    """Everything `fleet run` hands to its workers."""

    options: FleetOptions
    workers: int = 1
    speed: float = 1.0
    sim_start: float = 0.0
    # time.monotonic() when simulated time was sim_start; shared by all workers so their clocks agree
    sim_t0: float = 0.0
    epoch_start: float = 0.0
    database_url: str | None = None
    metrics_port: int | None = None
    multiproc_dir: str | None = None
    shutdown_timeout: float = 10.0
    # Where each worker spools ground-truth rows while the database is away (None: no ground truth).
    spool_dir: str | None = None
    # Meters' real-time clocks drift up to this many ppm (seeded per meter); 0 = exact.
    drift_ppm: float = 0.0
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 10.0
    # Dial mode: where the meters push to, how long a dialled-in connection stays open without a request
    # (wall seconds), and how many dials a worker has in flight at once.
    hes: tuple[str, int] | None = None
    # first source address of the meters' dial-in connections (meter i uses source_base + i), None: any
    source_base: str | None = None
    dial_idle: float = 30.0
    dial_concurrency: int = 256
    # The descriptors a worker may open (fleet.runtime.budget; None: no budget, as in tests that run a
    # worker in their own process)
    fd_limit: int | None = None

    def source_address(self, meter_id: int) -> tuple[str, int] | None:
        """The local address meter ``meter_id`` dials from (one IPv4 address per meter)."""
        if self.source_base is None:
            return None
        return str(ipaddress.IPv4Address(self.source_base) + meter_id), 0

    def plan(self) -> list[range]:
        """The shard of each worker slot: the pod's range split into contiguous pieces."""
        return worker_shards(self.options, self.workers)


def worker_shards(options: FleetOptions, workers: int) -> list[range]:
    """The shard of each of ``workers`` worker slots: the pod's range split into contiguous pieces."""
    pod = options.pod_range()
    return split_range(pod, min(workers, len(pod)))


def split_range(ids: range, parts: int) -> list[range]:
    """Split ``ids`` into ``parts`` contiguous ranges whose sizes differ by at most one."""
    n = len(ids)
    base, extra = divmod(n, parts)
    out = []
    start = ids.start
    for i in range(parts):
        size = base + (1 if i < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, m = (int(x) for x in text.split("/"))
    except ValueError:
        raise FleetError(f"--shard {text!r}: expected K/M, e.g. 0/4") from None
    return k, m
