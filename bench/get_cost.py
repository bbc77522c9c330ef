"""GET cost: server CPU per GET of the clock, our meters against a bare uvloop server, same bytes.

A fast client in its own process holds N persistent associations (wrapper, public client), keeps
one pre-encoded GET clock request outstanding on each, and counts answers for a fixed time. The
server's CPU time comes from /proc. The same client then runs against a bare uvloop server that
answers every wrapper frame with a canned GET response of the same size; the ratio of CPU per GET
is the figure that counts (on 2 cores the client, not the server, limits requests/s).

    python -m bench.get_cost [--seconds 8] [--associations 16,64] [--mode listen|address]

In address mode (--mode address) each association goes to a meter at its own address on one port, and the
bare server listens once on the wildcard address, as the worker does.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import struct
import sys
import time

from bench._common import cpu_seconds, spawn_worker, stop
from fleet.settings import FleetOptions
from meter_core.codec.apdu import encode_apdu
from meter_core.codec.apdu.acse import AARQ, context_oid
from meter_core.codec.apdu.codes import ApplicationContextName, Conformance
from meter_core.codec.apdu.xdlms import CosemAttributeDescriptor, GetRequestNormal, InitiateRequest
from meter_core.codec.obis import Obis
from meter_core.codec.wrapper import wrap

CLIENT, SERVER = 16, 1


def _requests() -> tuple[bytes, bytes]:
    initiate = encode_apdu(InitiateRequest(
        proposed_conformance=Conformance.GET | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ,
        client_max_receive_pdu_size=1024))
    aarq = encode_apdu(AARQ(application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME),
                            user_information=initiate))
    get = encode_apdu(GetRequestNormal(
        invoke_id_and_priority=0xC1,
        attribute=CosemAttributeDescriptor(8, Obis.parse("0.0.1.0.0.255").to_bytes(), 2)))
    return wrap(CLIENT, SERVER, aarq), wrap(CLIENT, SERVER, get)


# -- the bare server: parses wrapper headers, answers each frame with canned bytes ------------------

class _Bare(asyncio.Protocol):
    """Answers the k-th whole frame with ``answers[k]`` (the last one again for every later frame), and
    closes when the client does; with ``close``, closes itself after the last answer (which the meter
    does not do after its RLRE: releasing an association leaves the TCP connection open, IEC 62056-4-7's
    connection manager closes it when the client does or at the inactivity time-out)."""

    def __init__(self, *answers: bytes, close: bool = False) -> None:
        self.answers, self.last, self.close, self.buf, self.step = answers, len(answers) - 1, close, b"", 0

    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        n = 0
        while len(buf) - n >= 8:
            length = struct.unpack_from(">H", buf, n + 6)[0]
            if len(buf) - n < 8 + length:
                break
            n += 8 + length
            step = self.step
            self.t.write(self.answers[step if step < self.last else self.last])
            self.step = step + 1
            if self.close and step == self.last:
                self.t.close()
                break
        self.buf = buf[n:]


def bare_server(binds: list[tuple[str, int]], aare: bytes, reply: bytes, ready) -> None:
    import uvloop

    async def main():
        loop = asyncio.get_running_loop()
        for host, port in binds:
            await loop.create_server(lambda: _Bare(aare, reply), host, port)
        ready.send("ready")
        await asyncio.Event().wait()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(main())


# -- the client ------------------------------------------------------------------------------------

class _Client(asyncio.Protocol):
    def __init__(self, get: bytes, counter: list, stop_at: float, done: asyncio.Future) -> None:
        self.get, self.counter, self.stop_at, self.done = get, counter, stop_at, done
        self.buf = b""
        self.associated = asyncio.get_running_loop().create_future()
        self.reply_size = 0
        self.running = False

    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        n = 0
        while len(buf) - n >= 8:
            length = struct.unpack_from(">H", buf, n + 6)[0]
            if len(buf) - n < 8 + length:
                break
            frame = buf[n:n + 8 + length]
            n += 8 + length
            if not self.associated.done():
                self.associated.set_result(frame)
                continue
            self.reply_size = len(frame)
            if self.running:
                self.counter[0] += 1
                if time.monotonic() < self.stop_at:
                    self.t.write(self.get)
                elif not self.done.done():
                    self.done.set_result(None)
        self.buf = buf[n:]

    def connection_lost(self, exc):
        if not self.associated.done():
            self.associated.set_exception(ConnectionError("closed before AARE"))


async def _run_client(targets: list[tuple[str, int]], seconds: float, aarq: bytes, get: bytes, server_pid: int):
    loop = asyncio.get_running_loop()
    counter = [0]
    protos = []
    for host, port in targets:
        _, p = await loop.create_connection(
            lambda: _Client(get, counter, float("inf"), loop.create_future()), host, port)
        p.t.write(aarq)
        protos.append(p)
    aares = [await p.associated for p in protos]
    assert all(a[8] == 0x61 and a[-1] != 0 for a in aares), "association refused"
    # Warm up one round trip each, then measure.
    for p in protos:
        p.t.write(get)
    await asyncio.sleep(0.5)
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    counter[0] = 0
    for p in protos:
        p.stop_at = t0 + seconds
        p.done = loop.create_future()
        p.running = True
    # Writes stopped during warm-up resumed here: one outstanding request per association.
    for p in protos:
        p.t.write(get)
    await asyncio.wait([p.done for p in protos], timeout=seconds + 10)
    t1, cpu1 = time.monotonic(), cpu_seconds(server_pid)
    size = protos[0].reply_size
    for p in protos:
        p.t.close()
    return counter[0], t1 - t0, cpu1 - cpu0, size


def client_process(targets, seconds, aarq, get, server_pid, out) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        out.send(r.run(_run_client(targets, seconds, aarq, get, server_pid)))


def measure(targets: list[tuple[str, int]], seconds: float, server_pid: int) -> tuple[float, float, int]:
    aarq, get = _requests()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=client_process, args=(targets, seconds, aarq, get, server_pid, child))
    p.start()
    n, elapsed, cpu, size = parent.recv()
    p.join()
    return n / elapsed, cpu / n * 1e6, size


def _canned(target: tuple[str, int]) -> tuple[bytes, bytes]:
    """One real AARE and one real GET response of our meter (so the bare server sends the same sizes)."""
    import socket

    aarq, get = _requests()
    with socket.create_connection(target) as s:
        s.sendall(aarq)
        aare = _recv_frame(s)
        s.sendall(get)
        reply = _recv_frame(s)
    return aare, reply


def _recv_frame(s) -> bytes:
    buf = b""
    while len(buf) < 8 or len(buf) < 8 + struct.unpack_from(">H", buf, 6)[0]:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--associations", default="16,64")
    ap.add_argument("--port-base", type=int, default=21000)
    ap.add_argument("--mode", choices=("listen", "address"), default="listen")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.associations.split(",")]
    top = max(counts)
    print(f"GET clock, wrapper, public client, {args.mode} mode; {args.seconds:.0f} s per run; python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs")
    options = FleetOptions(meters=top, port_base=args.port_base, mode=args.mode, address_base="127.2.0.1")
    targets = [options.address(i) for i in range(top)]
    proc, _pipe = spawn_worker(options, range(top))
    ctx = multiprocessing.get_context("spawn")
    try:
        aare, reply = _canned(targets[0])
        ours = {c: measure(targets[:c], args.seconds, proc.pid) for c in counts}
    finally:
        stop(proc)
    if args.mode == "address":  # the same addresses, on the next port: one socket on the wildcard address
        bare_port = args.port_base + 1
        binds, bare_targets = [("0.0.0.0", bare_port)], [(host, bare_port) for host, _ in targets]
    else:
        bare_base = args.port_base + top + 100
        binds = bare_targets = [("127.0.0.1", bare_base + i) for i in range(top)]
    parent, child = ctx.Pipe()
    bare = ctx.Process(target=bare_server, args=(binds, aare, reply, child), daemon=True)
    bare.start()
    parent.recv()
    try:
        theirs = {c: measure(bare_targets[:c], args.seconds, bare.pid) for c in counts}
    finally:
        stop(bare)
    print(f"{'assocs':>6} {'server':>8} {'req/s':>9} {'CPU us/GET':>11} {'reply bytes':>11}")
    for c in counts:
        for name, res in (("fleet", ours[c]), ("bare", theirs[c])):
            rate, us, size = res
            print(f"{c:>6} {name:>8} {rate:>9.0f} {us:>11.2f} {size:>11}")
        print(f"{c:>6} {'ratio':>8} {'':>9} {ours[c][1] / theirs[c][1]:>11.2f}  (fleet / bare CPU per GET; aim <= 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
