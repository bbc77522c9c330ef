"""Time to serve a 30-day block-load buffer, against a bare server sending the same bytes.

One real fleet worker process serves one 3-phase meter over the wrapper. A client (our sans-I/O
client on a blocking socket, in this process) opens a meter-reader association with a given PDU
size and reads the block-load profile by range for the last 30 days (1440 half-hour rows), pulling
every GET block; each read is a new connection. The first read is recorded frame by frame; a bare
uvloop server then answers the same requests with the recorded frames, in order, with no work at
all. Reported: wall time per read and server CPU per read for both, and their ratios.

    python -m bench.profile_serve [--reads 10] [--pdu 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import socket
import struct
import sys
import time

from bench._common import cpu_seconds, spawn_worker, stop, until
from fleet.settings import FleetOptions
from meter_core.client import Associated, ClientSettings, DlmsClient, GetResult
from meter_core.codec.apdu import SelectiveAccess
from meter_core.codec.axdr import CosemDateTime, Data, DataType, encode_value
from meter_core.codec.obis import ln
from meter_core.connection import Transport
from meter_core.device.clock import IST
from meter_core.device.identity import FleetConfig, meter_identity


def _selection() -> SelectiveAccess:
    now = dt.datetime.now(IST).replace(tzinfo=None)
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=30)

    def stamp(t):
        return Data(DataType.OCTET_STRING, CosemDateTime.from_datetime(t).to_bytes())

    clock = Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, 8), Data(DataType.OCTET_STRING, ln("0.0.1.0.0.255")),
                                      Data(DataType.INTEGER, 2), Data(DataType.LONG_UNSIGNED, 0)))
    return SelectiveAccess(1, encode_value(Data(DataType.STRUCTURE, (clock, stamp(start), stamp(end),
                                                                     Data(DataType.ARRAY, ())))))


def read_once(port: int, password: bytes, pdu: int, selection, record: list | None = None) -> int:
    """One connection: associate, read the buffer in blocks; returns the rows read."""
    client = DlmsClient(ClientSettings(client_sap=32, password=password, transport=Transport.WRAPPER,
                                       max_receive_pdu_size=pdu))
    buf = bytearray()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.associate()
        until(client, s, buf, Associated, record)
        client.get(7, "1.0.99.1.0.255", 2, selection)
        ev = until(client, s, buf, GetResult, record)
        return len(ev.value.value)


class _Replay(asyncio.Protocol):
    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.i = 0
        self.buf = bytearray()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf
        buf += data
        while len(buf) >= 8 and len(buf) >= 8 + struct.unpack_from(">H", buf, 6)[0]:
            del buf[:8 + struct.unpack_from(">H", buf, 6)[0]]
            self.transport.write(self.frames[self.i])
            self.i += 1


def bare_server(port: int, frames: list[bytes], ready) -> None:
    import uvloop

    async def main():
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: _Replay(frames), "127.0.0.1", port)
        ready.send("ready")
        await asyncio.Event().wait()

    uvloop.run(main())


def measure(port: int, pid: int, reads: int, password: bytes, pdu: int, selection) -> tuple[float, float, int]:
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    rows = 0
    for _ in range(reads):
        rows = read_once(port, password, pdu, selection)
    return (time.perf_counter() - t0) / reads, (cpu_seconds(pid) - c0) / reads, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=10)
    ap.add_argument("--pdu", type=int, default=1024)
    ap.add_argument("--port-base", type=int, default=23500)
    args = ap.parse_args(argv)
    fleet = FleetConfig(seed=1)
    password = meter_identity(fleet, 0).lls_password.encode()
    selection = _selection()
    print(f"block-load buffer, last 30 days by range, wrapper, PDU {args.pdu}, {args.reads} reads; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    proc, _pipe = spawn_worker(FleetOptions(meters=1, port_base=args.port_base), range(1))
    try:
        record: list = []
        rows = read_once(args.port_base, password, args.pdu, selection, record)
        ours = measure(args.port_base, proc.pid, args.reads, password, args.pdu, selection)
    finally:
        stop(proc)
    frames = [reply for _req, reply in record]
    size = sum(len(f) for f in frames)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    bare_port = args.port_base + 10
    bare = ctx.Process(target=bare_server, args=(bare_port, frames, child), daemon=True)
    bare.start()
    parent.recv()
    try:
        theirs = measure(bare_port, bare.pid, args.reads, password, args.pdu, selection)
    finally:
        stop(bare)
    print(f"rows {rows}, {len(frames) - 1} GET responses, {size} bytes on the wire per read")
    print(f"{'server':>8} {'wall ms/read':>13} {'server CPU ms/read':>19}")
    for name, (wall, cpu, _n) in (("fleet", ours), ("bare", theirs)):
        print(f"{name:>8} {wall * 1e3:>13.1f} {cpu * 1e3:>19.1f}")
    print(f"{'ratio':>8} {ours[0] / theirs[0]:>13.2f} {ours[1] / max(theirs[1], 1e-9):>19.2f}  (fleet / bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
