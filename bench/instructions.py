"""Instructions per association: what a short connection costs the worker in Python, counted by callgrind.

bench.connections measures associations per CPU second against a bare server, a figure that moves with the
machine (the same code gave 0.48 to 0.61 of the bare server on different runs of one day). An instruction
count does not move. This runs a worker's per-connection path in one process, without sockets or an event
loop: a MeterProtocol gets ``connection_made`` with a stand-in transport whose local address names the meter
(address mode), the churn client's AARQ, GET of the clock and RLRQ, then ``connection_lost``; connection
after connection over 640 meters, after a warm-up. Under valgrind's callgrind twice, with N connections and
with none, the difference over N is the instructions of one association. The ceiling, counted the same
way: bench.get_cost's bare protocol fed the same three frames (the least any asyncio protocol answering
them costs in Python; the kernel's and uvloop's share, the same for both, is not counted).

    python -m bench.instructions [--connections 1000]

Needs valgrind (Debian: apt-get install valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench._common import instructions_per, valgrind_missing

METERS = 640
WARM_UP = 700
ADDRESS_BASE = "127.21.0.1"


class _Transport:
    """Enough of an asyncio transport for the actor: its local address, and what is written (kept if asked)."""

    __slots__ = ("sockname", "closed", "kept")

    def __init__(self, sockname, kept: list | None = None) -> None:
        self.sockname, self.closed, self.kept = sockname, False, kept

    def get_extra_info(self, name, default=None):
        return self.sockname if name == "sockname" else ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data) -> None:
        if self.kept is not None:
            self.kept.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _fleet():
    """(one association's function, the meter's three answers): a worker's actor path for connection i."""
    from bench._common import EPOCH
    from bench.connections import _frames
    from fleet.runtime.actor import MeterProtocol
    from fleet.runtime.worker import Worker
    from fleet.settings import FleetOptions, RunSettings
    from fleet.store.recorder import NullRecorder
    from meter_core.device.clock import SimClock

    options = FleetOptions(meters=METERS, mode="address", address_base=ADDRESS_BASE, port_base=15059)
    settings = RunSettings(options=options, workers=1, sim_start=time.time(), sim_t0=time.monotonic(),
                           epoch_start=EPOCH)
    worker = Worker(0, range(METERS), settings, None)
    worker.clock = worker.meters.clock = SimClock(start=settings.sim_start, t0=settings.sim_t0)
    worker.recorder = NullRecorder()
    worker.loop = asyncio.new_event_loop()
    frames = _frames()
    names = [options.address(i) for i in range(METERS)]

    def one(i: int, kept: list | None = None) -> None:
        proto = MeterProtocol(worker, None)
        proto.connection_made(_Transport(names[i % METERS], kept))
        for frame in frames:
            proto.data_received(frame)
        proto.connection_lost(None)
        if len(worker.unarmed) > 1000:  # the worker's once-a-second round, which does not run here
            worker.unarmed.clear()

    answers: list[bytes] = []
    one(0, answers)
    assert len(answers) == 3 and answers[0][8] == 0x61, answers  # AARE, GET answer, RLRE
    return one, tuple(answers)


def _bare(answers: tuple[bytes, ...]):
    from bench.connections import _frames
    from bench.get_cost import _Bare

    frames = _frames()
    transport = _Transport(("127.21.0.1", 15059))

    def one(i: int) -> None:
        proto = _Bare(*answers)
        proto.connection_made(transport)
        for frame in frames:
            proto.data_received(frame)
        proto.connection_lost(None)

    return one


def _inner(which: str, count: int) -> None:
    one, answers = _fleet()
    if which == "bare":
        one = _bare(answers)
    for i in range(WARM_UP):
        one(i)
    for i in range(count):
        one(i)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--inner", choices=("fleet", "bare"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:  # a run under callgrind (0 connections: the warm-up alone)
        _inner(args.inner, args.connections)
        return 0
    if args.connections < 1:
        ap.error("--connections must be at least 1")
    if valgrind_missing("bench.instructions"):
        return 2
    print(f"callgrind, {args.connections} connections after {WARM_UP} (AARQ, GET clock, RLRQ, close; "
          f"{METERS} meters, address mode); python {sys.version.split()[0]}")
    per = {}
    for which in ("fleet", "bare"):
        print(f"{which} ...", file=sys.stderr)
        per[which] = instructions_per("bench.instructions", which, "--connections", args.connections)
        print(f"{which:>5}: {per[which]:,.0f} instructions per association")
    print(f"fleet / bare: {per['fleet'] / per['bare']:.1f} (the bare protocol's Python is the least a server "
          f"answering these frames can run; the kernel's and uvloop's work, the same for both, is not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
