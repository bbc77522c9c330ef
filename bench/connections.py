"""Connections at scale in address mode: many concurrent associations, and new associations per second.

1. Concurrent: C connections from this host to C meters (address mode, W workers), each associated as the
   public client and then reading the clock in a loop for S seconds (one request outstanding on each):
   how many associated, and the latency of every request (p50, p99). The ceiling is the same client
   against a bare uvloop server on one wildcard socket that answers every frame with the meters' own
   canned bytes.
2. Churn: connection after connection (K in flight): connect, AARQ, GET clock, RLRQ, close, for S
   seconds: associations per second per second of server CPU (user and system shown apart), against a
   bare server doing accept, the meter's own three answers and close, for the same client (aim: at least
   0.5 of it). Two bare servers, because "close" can be read two ways: "bare" closes when the client
   does, as the meter does (its RLRE releases the association, not the TCP connection: IEC 62056-4-7),
   so its I/O is the meter's to the syscall; "bare-first" closes right after its last answer, which
   costs the server less kernel time (no EOF to read, an active close) and so is the stricter ceiling.
   R rounds, fleet and the two bare servers in turn; medians compared.

    python -m bench.connections [--concurrent 20000] [--workers 2] [--seconds 10] [--rounds 3]

Clients run in their own processes (C / 10 000 of them, a process may hold 20 000 descriptors).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import socket
import statistics
import struct
import sys
import time

import uvloop

from bench._common import conntrack, conntrack_warning, cpu_split, recv_frame, stop
from bench.address import start_workers
from bench.get_cost import _Bare, _canned
from fleet.settings import FleetOptions
from meter_core.codec.apdu import encode_apdu
from meter_core.codec.apdu.acse import AARQ, RLRQ, context_oid, release_reason
from meter_core.codec.apdu.codes import ApplicationContextName, Conformance
from meter_core.codec.apdu.xdlms import CosemAttributeDescriptor, GetRequestNormal, InitiateRequest
from meter_core.codec.obis import Obis
from meter_core.codec.wrapper import wrap

PER_CLIENT = 10_000
ADDRESS_BASE = "127.21.0.1"


def _frames() -> tuple[bytes, bytes, bytes]:
    initiate = encode_apdu(InitiateRequest(proposed_conformance=Conformance.GET, client_max_receive_pdu_size=1024))
    aarq = encode_apdu(AARQ(application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME),
                            user_information=initiate))
    get = encode_apdu(GetRequestNormal(invoke_id_and_priority=0xC1, attribute=CosemAttributeDescriptor(
        8, Obis.parse("0.0.1.0.0.255").to_bytes(), 2)))
    rlrq = encode_apdu(RLRQ(reason=release_reason(0)))
    return wrap(16, 1, aarq), wrap(16, 1, get), wrap(16, 1, rlrq)


class _Framed(asyncio.Protocol):
    """Splits wrapper frames; ``on_frame`` gets each."""

    def __init__(self) -> None:
        self.buf = b""
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        n = 0
        while len(buf) - n >= 8:
            end = n + 8 + struct.unpack_from(">H", buf, n + 6)[0]
            if len(buf) < end:
                break
            self.on_frame(buf[n:end])
            n = end
        self.buf = buf[n:]

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(None)


class _Reader(_Framed):
    """Concurrent mode: associate, then GET the clock in a loop until ``stop_at``; latencies kept."""

    def __init__(self, aarq, get, stop_at, latencies, state) -> None:
        super().__init__()
        self.aarq, self.get, self.stop_at, self.lat, self.state = aarq, get, stop_at, latencies, state
        self.sent = 0.0
        self.associated = False

    def connection_made(self, transport):
        super().connection_made(transport)
        self.t.write(self.aarq)

    def connection_lost(self, exc):
        super().connection_lost(exc)
        if not self.associated:  # closed before any answer: a clean refusal (or a failure)
            self.state["closed"] += 1

    def on_frame(self, frame):
        now = time.perf_counter()
        if not self.associated:  # the reads start once every connection is associated (`read`)
            self.associated = True
            ok = frame[8] == 0x61 and frame[-1] != 0  # AARE with user information: accepted
            self.state["associated" if ok else "rejected"] += 1
            return
        self.lat.append(now - self.sent)
        if time.monotonic() < self.stop_at[0]:
            self.read()

    def read(self) -> None:
        self.sent = time.perf_counter()
        self.t.write(self.get)


async def _concurrent(targets, seconds, out) -> None:
    aarq, get, _ = _frames()
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    state = {"associated": 0, "rejected": 0, "closed": 0}
    stop_at = [0.0]
    protos, failed = [], 0
    for host, port in targets:
        try:
            _, p = await asyncio.wait_for(loop.create_connection(
                lambda: _Reader(aarq, get, stop_at, lat, state), host, port), 10)
            protos.append(p)
        except (OSError, TimeoutError):
            failed += 1
    deadline = time.monotonic() + 60
    while state["associated"] + state["rejected"] + state["closed"] < len(protos) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop_at[0] = time.monotonic() + seconds
    for p in protos:
        if p.associated:
            p.read()
    await asyncio.sleep(seconds + 0.5)
    for p in protos:
        p.t.close()
    out.send((state["associated"], state["rejected"], failed, lat, state["closed"]))


class _Churn(_Framed):
    """Churn mode: AARQ, GET, RLRQ, close; then ``done`` is set."""

    def __init__(self, frames, done) -> None:
        super().__init__()
        self.frames, self.done, self.step = frames, done, 0

    def connection_made(self, transport):
        super().connection_made(transport)
        self.t.write(self.frames[0])

    def on_frame(self, frame):
        self.step += 1
        if self.step < 3:
            self.t.write(self.frames[self.step])
        else:
            self.t.close()
            if not self.done.done():
                self.done.set_result(True)


async def _churn(targets, seconds, in_flight, server_pids, out) -> None:
    frames = _frames()
    loop = asyncio.get_running_loop()
    done = [0]
    stop_at = time.monotonic() + seconds
    cpu0 = [cpu_split(p) for p in server_pids]
    t0 = time.monotonic()

    async def one_after_another(i):
        k = i
        while time.monotonic() < stop_at:
            host, port = targets[k % len(targets)]
            k += in_flight
            fut = loop.create_future()
            try:
                await asyncio.wait_for(loop.create_connection(functools.partial(_Churn, frames, fut), host, port), 10)
                if await asyncio.wait_for(fut, 10):
                    done[0] += 1
            except (OSError, TimeoutError):
                pass

    await asyncio.gather(*(one_after_another(i) for i in range(in_flight)))
    cpu1 = [cpu_split(p) for p in server_pids]
    user = sum(b[0] - a[0] for a, b in zip(cpu0, cpu1))
    system = sum(b[1] - a[1] for a, b in zip(cpu0, cpu1))
    out.send((done[0], time.monotonic() - t0, (user, system)))


def tally(results: list) -> tuple[int, int, int, int, list[float]]:
    """(associated, rejected by AARE, closed without an answer, not connected, latencies) over the client
    processes' `_concurrent` results."""
    return (sum(r[0] for r in results), sum(r[1] for r in results), sum(r[4] for r in results),
            sum(r[2] for r in results), [x for r in results for x in r[3]])


def _run(coro_fn, *args) -> None:
    _run_plain(lambda: coro_fn(*args))


def _in_clients(targets, fn, *args) -> list:
    ctx = multiprocessing.get_context("spawn")
    procs, pipes = [], []
    for i in range(0, len(targets), PER_CLIENT):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_run, args=(fn, targets[i:i + PER_CLIENT], *args, child))
        p.start()
        procs.append(p)
        pipes.append(parent)
    results = [parent.recv() for parent in pipes]
    for p in procs:
        p.join()
    return results


def _canned_churn(target: tuple[str, int]) -> tuple[bytes, bytes, bytes]:
    """The meter's own AARE, GET response and RLRE to the churn client's three requests."""
    buf = bytearray()
    with socket.create_connection(target) as s:
        answers = []
        for frame in _frames():
            s.sendall(frame)
            answers.append(recv_frame(s, buf))
    return tuple(answers)


def _bare(port: int, aare: bytes, reply: bytes, answers: tuple[bytes, bytes, bytes], ready) -> None:
    """The ceilings: the concurrent clients get the AARE then the GET answer for ever (``port``), the churn
    clients the meter's AARE, GET answer and RLRE, then the close: the client's, as with the meter
    (``port`` + 1), or the server's own right after the RLRE (``port`` + 2)."""
    async def main():
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: _Bare(aare, reply), "0.0.0.0", port, backlog=4096)
        await loop.create_server(lambda: _Bare(*answers), "0.0.0.0", port + 1, backlog=4096)
        await loop.create_server(lambda: _Bare(*answers, close=True), "0.0.0.0", port + 2, backlog=4096)
        ready.send("ready")
        await asyncio.Event().wait()

    _run_plain(main)


def _run_plain(main) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(main())


def _quantiles(lat: list[float]) -> str:
    lat.sort()
    return (f"{len(lat)} requests, p50 {lat[len(lat) // 2] * 1e3:.2f} ms, p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms, "
            f"max {lat[-1] * 1e3:.1f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrent", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="churn rounds, fleet and bare in turn")
    ap.add_argument("--port", type=int, default=15059)
    args = ap.parse_args(argv)
    n = args.concurrent
    options = FleetOptions(meters=n, mode="address", address_base=ADDRESS_BASE, port_base=args.port)
    targets = [options.address(i) for i in range(n)]
    print(f"address mode, {n} meters on {args.workers} workers, {args.seconds:.0f} s per run; python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs")
    procs, _pipes, _ = start_workers(options, args.workers)
    bare = None
    warning = conntrack_warning(conntrack())  # a table already full
    try:
        aare, reply = _canned(targets[0])
        answers = _canned_churn(targets[0])
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        bare_port = args.port + 1
        bare = ctx.Process(target=_bare, args=(bare_port, aare, reply, answers, child), daemon=True)
        bare.start()
        parent.recv()
        print("concurrent, fleet ...", file=sys.stderr)
        conc = _in_clients(targets, _concurrent, args.seconds)
        print("concurrent, bare ...", file=sys.stderr)
        bare_conc = _in_clients([(host, bare_port) for host, _ in targets], _concurrent, args.seconds)
        # Churn in turns (fleet, bare, fleet, ...) so that a slower or busier moment of the machine falls on
        # both; the ratio is that of the medians.
        fleet_pids = [p.pid for p in procs]
        churn_targets = targets[:args.in_flight * 10]
        servers = {"fleet": (churn_targets, fleet_pids),
                   "bare": ([(host, bare_port + 1) for host, _ in churn_targets], [bare.pid]),
                   "bare-first": ([(host, bare_port + 2) for host, _ in churn_targets], [bare.pid])}
        churn: dict[str, list] = {name: [] for name in servers}
        for r in range(args.rounds):
            print(f"churn round {r + 1}/{args.rounds} ...", file=sys.stderr)
            tracked = conntrack()
            for name, (where, pids) in servers.items():
                churn[name].append(_in_clients(where, _churn, args.seconds, args.in_flight, pids)[0])
            warning = conntrack_warning(tracked) or warning
    finally:
        for p in procs:
            stop(p)
        if bare is not None:
            stop(bare)

    for name, res in (("fleet", conc), ("bare", bare_conc)):
        associated, rejected, closed, failed, lat = tally(res)
        print(f"concurrent {name:>5}: {associated} associated, {rejected} rejected, {closed} closed unanswered, "
              f"{failed} not connected; {_quantiles(lat)}")
    rates = {}
    for name, rounds in churn.items():
        per_round = []
        for count, elapsed, (user, system) in rounds:
            per_round.append(count / (user + system) if user + system else float("nan"))
            each = max(count, 1)
            print(f"churn {name:>10}: {count} associations in {elapsed:.1f} s ({count / elapsed:.0f}/s); server "
                  f"CPU per association {user / each * 1e6:.0f} us user + {system / each * 1e6:.0f} us system")
        rates[name] = statistics.median(per_round)
        print(f"churn {name:>10}: median {rates[name]:.0f} associations per CPU second")
    for ceiling, how in (("bare", "closing when the client does, as the meter does"),
                         ("bare-first", "closing first, after its last answer")):
        print(f"churn ratio fleet / {ceiling} ({how}; associations per CPU second, medians): "
              f"{rates['fleet'] / rates[ceiling]:.2f} (aim >= 0.5)")
    if warning:
        print(warning)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
