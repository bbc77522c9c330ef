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

from fleet.settings import DEFAULT_ADDRESS_BASE, FleetOptions, RunSettings
from meter_core import NEED_DATA
from meter_core.client import Associated, ClientSettings, DlmsClient, GetResult
from meter_core.connection import Transport
from meter_core.device.identity import FleetConfig, MeterKind, meter_identity

EPOCH = 1767205800.0  # 2026-01-01 00:00 IST, as `fleet run` uses
# How long a test waits, in wall seconds, for something the fleet does (a command applied, pushes
# arrived, rows written): long enough for a machine busy with other work; a test that waits that long
# has failed.
PATIENCE = 120.0


def wait_for(what: str, done, state=None, timeout: float = PATIENCE):
    """Poll ``done()`` until it returns something true, and return that; fail after ``timeout`` wall seconds,
    saying what never came (and ``state()``, what there was instead)."""
    deadline = time.monotonic() + timeout
    while not (got := done()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}" + (f": {state()}" if state else ""))
        time.sleep(0.2)
    return got


class _Pipe:
    """Stands in for the supervisor's pipe: keeps what the worker reports."""

    def __init__(self) -> None:
        self.messages: list = []
        self.ready = threading.Event()

    def send(self, msg) -> None:
        self.messages.append(msg)
        if msg[0] in ("ready", "boot-error"):
            self.ready.set()


def free_port_base(count: int, low: int = 20000, high: int = 30000, hosts: tuple[str, ...] = ("127.0.0.1",)) -> int:
    """A base port with ``count`` free ports after it on every one of ``hosts`` (below the ephemeral range)."""
    for _ in range(200):
        base = random.randrange(low, high - count)
        socks = []
        try:
            for host in hosts:
                for p in range(base, base + count):
                    s = socket.socket()
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    socks.append(s)
                    s.bind((host, p))
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

    def address(self, meter_id: int) -> tuple[str, int]:
        """(host, port) of a meter: its own port (listen mode) or its own address (address mode)."""
        return self.options.address(meter_id)

    def identity(self, meter_id: int):
        return meter_identity(self.fleet, meter_id)

    def sim_now(self) -> float:
        """The worker's simulated time now."""
        return self.worker.clock.sim(time.monotonic())

    def call(self, fn):
        """``fn()`` run on the worker's event loop (its meters and counters belong to that thread): its result."""
        async def run():
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.worker.loop).result(PATIENCE)


@contextmanager
def running_meters(meters: int = 2, transport: Transport = Transport.WRAPPER,
                   kind: MeterKind = MeterKind.THREE_PHASE, seed: int = 1, speed: float = 1.0,
                   database_url: str | None = None, sim_start: float | None = None, spool_dir=None,
                   hls_mechanism: int = 2, security_suite: int = 0, hes: tuple[str, int] | None = None,
                   dial_idle: float = 30.0, source_base: str | None = None, sim_t0: float | None = None,
                   drift_ppm: float = 0.0, fd_limit: int | None = None, address_base: str | None = None):
    """Serve ``meters`` meters from one worker in a background thread; stop them on exit. With
    ``address_base``, in address mode: meter i at that address + i, all on one free port.

    ``sim_t0`` (a ``time.monotonic()`` of this process) is when simulated time was ``sim_start``: give
    an earlier run's to continue its clock, as a worker the supervisor restarts does.
    """
    import uvloop

    from fleet.runtime.worker import Worker

    options = FleetOptions(meters=meters, seed=seed, kind=kind, transport=transport,
                           port_base=free_port_base(1 if address_base else meters), hls_mechanism=hls_mechanism,
                           security_suite=security_suite,
                           mode="dial" if hes else "address" if address_base else "listen",
                           address_base=address_base or DEFAULT_ADDRESS_BASE)
    settings = RunSettings(options=options, workers=1, speed=speed,
                           sim_start=time.time() if sim_start is None else sim_start,
                           sim_t0=time.monotonic() if sim_t0 is None else sim_t0, epoch_start=EPOCH,
                           database_url=database_url,
                           shutdown_timeout=5.0, spool_dir=None if spool_dir is None else str(spool_dir),
                           hes=hes, dial_idle=dial_idle, source_base=source_base, drift_ppm=drift_ppm,
                           fd_limit=fd_limit)
    pipe = _Pipe()
    worker = Worker(0, range(meters), settings, pipe)
    result: dict = {}

    def run() -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result["code"] = runner.run(worker.main(install_signals=False))

    thread = threading.Thread(target=run, name="meters", daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while not pipe.ready.wait(0.05):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("worker did not start")
    booted = next(m for m in pipe.messages if m[0] in ("ready", "boot-error"))  # heartbeats come too
    if booted[0] == "boot-error":
        thread.join(5)
        raise RuntimeError(booted[2])
    # Dial mode: the meters owe the pushes that fall due once the dial loop has started (it looks for them
    # from its simulated start on, not from sim_start: pushes due while the worker boots are not owed), so
    # a test's "from now on" begins there.
    while hes is not None and worker.dialer._heap is None:
        if not thread.is_alive() or time.monotonic() > deadline:
            worker.loop.call_soon_threadsafe(worker.stop)
            raise RuntimeError("the worker's dial loop did not start")
        time.sleep(0.01)
    try:
        yield RunningMeters(options, worker, pipe)
    finally:
        worker.loop.call_soon_threadsafe(worker.stop)
        thread.join(15)
        assert not thread.is_alive(), "worker did not stop"
        assert result.get("code") == 0


class Head:
    """A head-end on one TCP connection to a meter (wrapper), our sans-I/O client underneath; keeps every byte
    it sends."""

    def __init__(self, port: int, settings, host: str = "127.0.0.1") -> None:
        self.client = DlmsClient(settings)
        self.sock = socket.create_connection((host, port), timeout=PATIENCE)
        self.sent: list[bytes] = []

    def __enter__(self) -> Head:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def until(self, *kinds):
        """Send what the client has, read until it reports an event (of ``kinds``); None if the meter closed."""
        while True:
            out = self.client.data_to_send()
            if out:
                self.sent.append(out)
                self.sock.sendall(out)
            ev = self.client.next_event()
            if ev is not NEED_DATA:
                assert isinstance(ev, kinds), ev
                return ev
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.client.receive_data(chunk)

    def close(self) -> None:
        self.sock.close()


def counter_to_use(port: int, setup: int = 3) -> int:
    """What head-ends do before a ciphered association: read 0.0.43.1.e.255 as the public client, add one."""
    h = Head(port, ClientSettings(client_sap=16, transport=Transport.WRAPPER))
    try:
        h.client.associate()
        h.until(Associated)
        h.client.get(1, f"0.0.43.1.{setup}.255", 2)
        return h.until(GetResult).value.value + 1
    finally:
        h.close()
