"""Meters on loopback for tests: a real fleet worker (uvloop, sockets, actors) run in a thread.

The worker is the same object `fleet run` starts in each process; here it runs in a thread of the
test process so a test can reach its meters on 127.0.0.1 and stop it cleanly.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from fleet.settings import FleetOptions, RunSettings
from meter_core.connection import Transport
from meter_core.identity import FleetConfig, MeterKind, meter_identity

EPOCH = 1767205800.0  # 2026-01-01 00:00 IST, as `fleet run` uses


class _Pipe:
    """Stands in for the supervisor's pipe: keeps what the worker reports."""

    def __init__(self) -> None:
        self.messages: list = []
        self.ready = threading.Event()

    def send(self, msg) -> None:
        self.messages.append(msg)
        if msg[0] in ("ready", "boot-error"):
            self.ready.set()


def free_port_base(count: int, low: int = 20000, high: int = 30000) -> int:
    """A base port with ``count`` free ports after it (below the ephemeral range)."""
    for _ in range(200):
        base = random.randrange(low, high - count)
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


@dataclass
class RunningMeters:
    options: FleetOptions
    worker: object
    pipe: _Pipe

    @property
    def fleet(self) -> FleetConfig:
        return self.options.fleet

    def port(self, meter_id: int) -> int:
        return self.options.address(meter_id)[1]

    def identity(self, meter_id: int):
        return meter_identity(self.fleet, meter_id)


@contextmanager
def running_meters(meters: int = 2, transport: Transport = Transport.WRAPPER,
                   kind: MeterKind = MeterKind.THREE_PHASE, seed: int = 1, speed: float = 1.0,
                   database_url: str | None = None, sim_start: float | None = None, spool_dir=None,
                   hls_mechanism: int = 2, security_suite: int = 0, hes: tuple[str, int] | None = None,
                   dial_idle: float = 30.0, source_base: str | None = None, sim_t0: float | None = None,
                   drift_ppm: float = 0.0):
    """Serve ``meters`` meters from one worker in a background thread; stop them on exit.

    ``sim_t0`` (a ``time.monotonic()`` of this process) is when simulated time was ``sim_start``: give
    an earlier run's to continue its clock, as a worker the supervisor restarts does.
    """
    import uvloop

    from fleet.worker import Worker

    options = FleetOptions(meters=meters, seed=seed, kind=kind, transport=transport,
                           port_base=free_port_base(meters), hls_mechanism=hls_mechanism,
                           security_suite=security_suite, mode="dial" if hes else "listen")
    settings = RunSettings(options=options, workers=1, speed=speed,
                           sim_start=time.time() if sim_start is None else sim_start,
                           sim_t0=time.monotonic() if sim_t0 is None else sim_t0, epoch_start=EPOCH,
                           database_url=database_url,
                           shutdown_timeout=5.0, spool_dir=None if spool_dir is None else str(spool_dir),
                           hes=hes, dial_idle=dial_idle, source_base=source_base, drift_ppm=drift_ppm)
    pipe = _Pipe()
    worker = Worker(0, range(meters), settings, pipe)
    result: dict = {}

    def run() -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result["code"] = runner.run(worker.main(install_signals=False))

    thread = threading.Thread(target=run, name="meters", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not pipe.ready.wait(0.05):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("worker did not start")
    if pipe.messages[-1][0] == "boot-error":
        thread.join(5)
        raise RuntimeError(pipe.messages[-1][2])
    try:
        yield RunningMeters(options, worker, pipe)
    finally:
        worker.loop.call_soon_threadsafe(worker.stop)
        thread.join(15)
        assert not thread.is_alive(), "worker did not stop"
        assert result.get("code") == 0
