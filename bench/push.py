"""Pushes delivered to `fleet hes-sink` per worker, against a bare uvloop client sending the same bytes.

A private embedded PostgreSQL, migrated; the sink runs in its own process. First one real fleet worker in
dial mode (M meters, simulated time fast enough that pushes are due faster than they can go out) pushes
for a fixed time after a warm-up (its first look a simulated day ahead for alert pushes, each meter's
first day of load model): each push is a connection of its own, a ciphered DataNotification, then the meter
hangs up when idle. Then a bare uvloop client, in its own process, opens one connection per push and
sends pushes taken from the same meters (the same bytes, made beforehand) to the same sink for the same
time. Printed: pushes the sink received per second in each run, and the ratio (aim >= 0.5).

    python -m bench.push [--meters 2000] [--seconds 8] [--warmup 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench._common import EPOCH, stop
from fleet.settings import FleetOptions, RunSettings
from fleet.store import migrations, pg


def _sink_process(url: str, options: FleetOptions, pipe) -> None:
    import uvloop

    from fleet.tools.sink import Directory, PushSink

    async def main():
        sink = PushSink(url, Directory(options))
        await sink.start("127.0.0.1", 0)
        pipe.send(sink._server.sockets[0].getsockname()[1])
        while True:
            await asyncio.sleep(0.1)
            if pipe.poll():
                pipe.recv()
                pipe.send((sink.received, sink.recorded, sum(sink.refused.values())))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(main())


def _received(pipe) -> int:
    pipe.send("count")
    return pipe.recv()[0]


def _bare_process(port: int, frames: list[bytes], seconds: float, concurrency: int, out) -> None:
    import uvloop

    async def one(frame: bytes) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame)
        await writer.drain()
        writer.close()

    async def main():
        gate = asyncio.Semaphore(concurrency)
        sent = 0
        stop_at = time.monotonic() + seconds
        pending = set()
        i = 0
        while time.monotonic() < stop_at and i < len(frames):
            await gate.acquire()
            t = asyncio.ensure_future(one(frames[i]))
            t.add_done_callback(lambda _t: gate.release())
            pending.add(t)
            t.add_done_callback(pending.discard)
            i += 1
            sent += 1
        await asyncio.gather(*pending, return_exceptions=True)
        out.send(sent)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(main())


def _frames(options: FleetOptions, count: int) -> list[bytes]:
    """Ciphered instant pushes of the fleet's meters, as the worker makes them (different invoke ids so
    the sink keeps each)."""
    from meter_core import notification
    from meter_core.device import config as device_config
    from meter_core.device.clock import SimClock
    from meter_core.device.meter import Meter

    meters = [Meter(options.fleet, i, epoch_start=EPOCH, clock=SimClock.real_time()) for i in range(options.meters)]
    now = time.time()
    out = []
    for k in range(count):
        m = meters[k % len(meters)]
        apdu = notification.data_notification(m, device_config.INSTANT_PUSH, now + k * 60, k + 1)
        out.append(notification.frame(m, notification.protect(m, apdu), False))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds the worker runs before it is measured")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="cosem-fleet-bench-"))
    if os.geteuid() == 0:
        base.chmod(0o755)
    server = pg.start_embedded(base / "pgdata")
    ctx = multiprocessing.get_context("spawn")
    try:
        url = server.url

        async def migrate():
            import asyncpg

            conn = await asyncpg.connect(url)
            try:
                await migrations.migrate(conn)
            finally:
                await conn.close()

        asyncio.run(migrate())
        options = FleetOptions(meters=args.meters, mode="dial")
        parent, child = ctx.Pipe()
        sink = ctx.Process(target=_sink_process, args=(url, options, child), daemon=True)
        sink.start()
        port = parent.recv()
        print(f"pushes to fleet hes-sink, {args.meters} meters, {args.seconds:.0f} s per run; "
              f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

        # the worker: 15-minute pushes of 2000 meters at 1800x are due at ~4000/s, more than go out
        from bench._common import spawn_worker_settings

        settings = RunSettings(options=options, workers=1, speed=1800.0, sim_start=time.time(),
                               sim_t0=time.monotonic(), epoch_start=EPOCH, hes=("127.0.0.1", port), dial_idle=0.2,
                               dial_concurrency=args.concurrency, heartbeat_interval=1.0)
        proc, _pipe = spawn_worker_settings(settings, range(args.meters))
        # steady state: the worker first looks a simulated day ahead for its meters' alert pushes (once a
        # simulated day, 48 s at this speed) and loads each meter's day of load model
        time.sleep(args.warmup)
        before = _received(parent)
        t0 = time.monotonic()
        time.sleep(args.seconds)
        fleet_n = _received(parent) - before
        fleet_s = time.monotonic() - t0
        stop(proc)
        time.sleep(1.0)

        frames = _frames(options, 60_000)
        before = _received(parent)
        out_parent, out_child = ctx.Pipe()
        t0 = time.monotonic()
        bare = ctx.Process(target=_bare_process, args=(port, frames, args.seconds, args.concurrency, out_child))
        bare.start()
        sent = out_parent.recv()
        bare.join()
        time.sleep(0.5)
        bare_n = _received(parent) - before
        bare_s = time.monotonic() - t0
        stop(sink)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{'':>12} {'pushes':>8} {'seconds':>8} {'pushes/s':>9}")
    print(f"{'fleet worker':>12} {fleet_n:>8} {fleet_s:>8.2f} {fleet_n / fleet_s:>9.0f}")
    print(f"{'bare client':>12} {bare_n:>8} {bare_s:>8.2f} {bare_n / bare_s:>9.0f}  ({sent} sent)")
    print(f"{'ratio':>12} {'':>8} {'':>8} {(fleet_n / fleet_s) / (bare_n / bare_s):>9.2f}  "
          "(worker / bare client pushes/s; aim >= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
