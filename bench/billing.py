"""A billing-profile read: the worker's CPU for a meter's first read and for a repeat, against a bare server
sending the same bytes, and the longest wait another meter's client sees meanwhile.

One real fleet worker process serves ``--meters`` 3-phase meters in listen mode. A client (our sans-I/O client
on a blocking socket, in this process) opens a meter-reader association with each meter in turn and reads the
whole billing profile (1.0.98.1.0.255, attribute 2: the closed billing periods, each with its maximum demand,
which the meter computes from every demand period of the month), pulling every GET block; each read is a new
connection. Then the same meters ``--repeat`` times more (the rows are kept), and then, for the other half of the meters, first reads again
while a second client reads the clock of one more meter every 5 ms: its longest wait is the pause the billing
computation puts on the worker's loop (that client runs in a process of its own). A bare uvloop server then answers the same requests with the recorded
frames, in order, with no work at all (the ceiling).

CPU times on a shared machine move by a third from run to run; ``--instructions`` counts instead, under
valgrind's callgrind, what computing the billing rows of a meter's first read costs in instructions (fresh
meter objects as a worker builds them, over ``--meters`` meters, less a run with none), against the bare
server's protocol answering the same requests (callgrind the same way, without sockets); and what the
ground-truth writer computes for a meter across a billing close (its billing row needs the month's maximum
demand).

    python -m bench.billing [--meters 20] [--pdu 1024] [--repeat 20]
    python -m bench.billing --instructions [--meters 10]    (needs valgrind)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import time

from bench._common import cpu_seconds, instructions_per, spawn_worker, stop, until, valgrind_missing
from bench.profile_serve import _Replay, bare_server
from fleet.settings import FleetOptions
from meter_core.client import Associated, ClientSettings, DlmsClient, GetResult
from meter_core.connection import Transport
from meter_core.device.identity import FleetConfig, meter_identity

BILLING = "1.0.98.1.0.255"
EPOCH = 1767205800.0  # 2026-01-01 00:00 IST, as `fleet run` uses
NOW = 1796644800.0  # 2026-12-07 (fixed: the instruction count does not move with the day it runs)
BARE_READS = 100  # bare reads per meter counted (one is too few for a stable count)
CLOSE = 1798741800.0  # 2027-01-01 00:00 IST: a billing close (the default billing date)


def _client(password: bytes, pdu: int) -> DlmsClient:
    return DlmsClient(ClientSettings(client_sap=32, password=password, transport=Transport.WRAPPER,
                                     max_receive_pdu_size=pdu))


def read_billing(port: int, password: bytes, pdu: int, record: list | None = None) -> int:
    """One connection: associate, read the billing buffer in blocks; returns the rows read."""
    client = _client(password, pdu)
    buf = bytearray()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.associate()
        until(client, s, buf, Associated, record)
        client.get(7, BILLING, 2)
        ev = until(client, s, buf, GetResult, record)
        return len(ev.value.value)


def reads(ports_passwords: list, pdu: int, pid: int | None) -> tuple[float, float, int]:
    """Read each meter's billing profile once: (wall s per read, server CPU s per read, rows of the last)."""
    c0 = cpu_seconds(pid) if pid is not None else 0.0
    t0 = time.perf_counter()
    rows = 0
    for port, password in ports_passwords:
        rows = read_billing(port, password, pdu)
    n = len(ports_passwords)
    cpu = (cpu_seconds(pid) - c0) / n if pid is not None else float("nan")
    return (time.perf_counter() - t0) / n, cpu, rows


def _probe(port: int, password: bytes, every: float, pipe) -> None:
    """In a process of its own (no lock shared with the reading client): read one meter's clock every
    ``every`` seconds on one association, and report each answer's wait; until asked, then send them."""
    client = _client(password, 1024)
    buf = bytearray()
    waits: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.associate()
        until(client, s, buf, Associated)
        pipe.send("ready")
        while True:
            if pipe.poll(every):
                if pipe.recv() == "stop":
                    pipe.send(waits)
                    return
                pipe.send(waits)  # ("mark": the waits so far, and a fresh list)
                waits = []
            t = time.perf_counter()
            client.get(8, "0.0.1.0.0.255", 2)
            until(client, s, buf, GetResult)
            waits.append(time.perf_counter() - t)


class _Sink:
    def write(self, data) -> None:
        pass


def _inner(which: str, meters: int) -> None:
    """Under callgrind: the billing rows of ``meters`` meters' first reads, or the bare protocol answering
    as many reads (the requests of one read, recorded from a meter in this process)."""
    from meter_core.device import profiles
    from meter_core.device.clock import SimClock
    from meter_core.device.meter import Meter

    fleet = FleetConfig(seed=1)
    meters += 1  # the first of them warms up (tables built once per process): counted in both runs
    if which == "fleet":
        source = profiles.Billing()
        for mid in range(meters):
            m = Meter(fleet, mid, epoch_start=EPOCH, clock=SimClock.real_time())
            list(source.rows(m, source.keys(m, NOW), NOW, None))
        return
    if which == "writer":
        from fleet.store.truth import capture_rows

        for mid in range(meters):  # a transient meter, as the writer builds for a meter no head-end holds
            m = Meter(fleet, mid, epoch_start=EPOCH, clock=SimClock.real_time())
            capture_rows(m, CLOSE - 60, CLOSE + 60, CLOSE + 60)
        return
    requests = [bytes.fromhex("0001002000010038" + "00" * 0x38), bytes.fromhex("000100200001000d" + "00" * 0x0d)]
    for _ in range(meters * BARE_READS):
        proto = _Replay([b"aare", b"billing"])
        proto.connection_made(_Sink())
        for r in requests:
            proto.data_received(r)


def instructions(meters: int) -> int:
    if valgrind_missing("bench.billing --instructions"):
        return 2
    print(f"callgrind: billing rows of a first read (7 closed billing periods and their maximum demands), "
          f"{meters} meters, 3-phase, as of 2026-12-07; python {sys.version.split()[0]}")
    per = {}
    for which, what in (("fleet", "per first read"), ("bare", "per read"),
                        ("writer", "per meter: the ground-truth writer's rows of two minutes across a billing close")):
        per[which] = instructions_per("bench.billing", which, "--meters", meters)
        if which == "bare":
            per[which] /= BARE_READS
        print(f"{which:>6}: {per[which]:,.0f} instructions {what}")
    print(f"fleet / bare: {per['fleet'] / per['bare']:,.0f} (the bare protocol only frames and replays the bytes)")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=20, help="meters read (half without the probe, half with it)")
    ap.add_argument("--pdu", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=20, help="reads of each meter again, and of the bare server")
    ap.add_argument("--port-base", type=int, default=23600)
    ap.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    ap.add_argument("--inner", choices=("fleet", "bare", "writer"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:  # a run under callgrind
        _inner(args.inner, args.meters)
        return 0
    if args.instructions:
        return instructions(args.meters)
    if args.meters < 2:
        ap.error("--meters must be at least 2")
    fleet = FleetConfig(seed=1)
    n = args.meters
    meters = [(args.port_base + i, meter_identity(fleet, i).lls_password.encode()) for i in range(n + 1)]
    first, second, probe_at = meters[:n // 2], meters[n // 2:n], meters[n]
    print(f"billing profile, whole buffer, wrapper, PDU {args.pdu}, {n} meters; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    proc, _pipe = spawn_worker(FleetOptions(meters=n + 1, port_base=args.port_base), range(n + 1))
    try:
        record: list = []
        cold = reads(first, args.pdu, proc.pid)
        read_billing(*first[0], args.pdu, record)  # (the frames of one read, for the bare server)
        again = reads(first * args.repeat, args.pdu, proc.pid)
        ctx = multiprocessing.get_context("spawn")
        mine, theirs = ctx.Pipe()
        probe = ctx.Process(target=_probe, args=(*probe_at, 0.005, theirs), daemon=True)
        probe.start()
        if not mine.poll(30):
            raise RuntimeError("the probe client did not associate")
        mine.recv()
        time.sleep(0.5)
        mine.send("mark")
        idle = mine.recv()
        during = reads(second, args.pdu, proc.pid)
        mine.send("stop")
        busy = mine.recv()
        probe.join(10)
    finally:
        stop(proc)
    frames = [reply for _req, reply in record]
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    bare_port = args.port_base + n + 10
    bare = ctx.Process(target=bare_server, args=(bare_port, frames, child), daemon=True)
    bare.start()
    parent.recv()
    try:
        ceiling = reads([(bare_port, first[0][1])] * (len(first) * args.repeat), args.pdu, bare.pid)
    finally:
        stop(bare)
    print(f"rows {cold[2]}, {len(frames) - 1} GET responses, {sum(len(f) for f in frames)} bytes on the wire per read")
    print(f"{'server':>26} {'wall ms/read':>13} {'server CPU ms/read':>19} {'CPU / bare':>11}")
    for name, (wall, cpu, _rows) in (("fleet, first read", cold), ("fleet, read again", again),
                                     ("fleet, first, with probe", during), ("bare", ceiling)):
        print(f"{name:>26} {wall * 1e3:>13.1f} {cpu * 1e3:>19.2f} {cpu / max(ceiling[1], 1e-9):>11.1f}")
    for name, waits in (("idle", idle), ("during first reads", busy)):
        if waits:
            print(f"probe (GET clock every 5 ms), {name}: {len(waits)} reads, "
                  f"p50 {statistics.median(waits) * 1e3:.2f} ms, longest {max(waits) * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
