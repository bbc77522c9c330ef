"""A large fleet across a capture boundary with its ground truth on: rows written, and what a client waits.

Runs the real `fleet run --mode address` (N meters, W workers, --speed 1, the embedded PostgreSQL in a
folder of its own) from --lead (five) simulated minutes before a half-hour block boundary. A client associates
with meter 0 at its address and reads its clock every 5 ms throughout, recording each request's
latency. Before the boundary is the ceiling (the same client, the same fleet, nothing to compute);
from the boundary until every meter's block row of it is in the database is the measure. Then SIGTERM,
timed, and the rows counted.

With --billing the boundary is the next billing close (the 1st of the month, 00:00 IST, the meters' default
billing date): each meter's billing row needs its month's maximum demand, every demand period of the month,
and the rows counted are the billing profile's.

    python -m bench.boundary [--meters 1000000] [--workers 2] [--lead 600] [--after 600] [--data-dir /tmp/fleet-boundary]
    python -m bench.boundary --billing --meters 20000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg

from bench._common import until
from fleet.settings import FleetOptions
from fleet.store import pg
from meter_core.client import Associated, ClientSettings, DlmsClient, GetResult
from meter_core.connection import Transport
from meter_core.device.clock import IST

ADDRESS_BASE = "127.22.0.1"


class Reader(threading.Thread):
    """Meter 0's clock, read every 5 ms on one association; (wall time, latency) of each read."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the bench
            self.error = repr(e)

    def _run(self) -> None:
        client = DlmsClient(ClientSettings(client_sap=16, transport=Transport.WRAPPER))
        buf = bytearray()
        with socket.create_connection(self.address, timeout=30) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.associate()
            until(client, s, buf, Associated)
            while not self.stop.is_set():
                t0 = time.perf_counter()
                client.get(8, "0.0.1.0.0.255", 2)
                until(client, s, buf, GetResult)
                self.samples.append((time.time(), time.perf_counter() - t0))
                time.sleep(0.005)


async def rows_at(url: str, at: dt.datetime, billing: bool) -> int:
    """The boundary's rows written: block-load rows captured at ``at``, or billing rows closed then."""
    conn = await asyncpg.connect(url)
    try:
        if billing:
            return await conn.fetchval("SELECT count(*) FROM billing_profile WHERE billing_time = $1", at)
        return await conn.fetchval("SELECT count(*) FROM block_load_profile WHERE capture_time = $1", at)
    finally:
        await conn.close()


def _stats(lat: list[float]) -> str:
    lat = sorted(lat)
    if not lat:
        return "no reads"
    return (f"{len(lat)} reads, p50 {lat[len(lat) // 2] * 1e3:.2f} ms, p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms, "
            f"longest {lat[-1] * 1e3:.1f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/fleet-boundary/pgdata"))
    ap.add_argument("--port", type=int, default=16059)
    ap.add_argument("--patience", type=float, default=1800.0, help="seconds to wait for the rows, at most")
    ap.add_argument("--lead", type=float, default=300.0, help="simulated seconds from the start to the boundary")
    ap.add_argument("--after", type=float, default=0.0,
                    help="simulated seconds to run on after the boundary, at least (--lead 600 --after 600: 20 minutes)")
    ap.add_argument("--billing", action="store_true", help="the boundary is the next billing close (month end)")
    args = ap.parse_args(argv)
    shutil.rmtree(args.data_dir.parent, ignore_errors=True)
    args.data_dir.parent.mkdir(parents=True)
    now = dt.datetime.now(IST)
    boundary = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=(30 - now.minute % 30) % 30 or 30)
    if args.billing:
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        boundary = (first + dt.timedelta(days=32)).replace(day=1)
    what = "billing rows" if args.billing else "block rows"
    start = boundary - dt.timedelta(seconds=args.lead)
    options = FleetOptions(meters=args.meters, mode="address", address_base=ADDRESS_BASE, port_base=args.port)
    cmd = [sys.executable, "-m", "fleet", "run", "--mode", "address", "--meters", str(args.meters), "--workers",
           str(args.workers), "--address-base", ADDRESS_BASE, "--port-base", str(args.port), "--metrics-port", "0",
           "--start", start.isoformat(), "--spool-dir", str(args.data_dir.parent / "spool")]
    server = pg.start_embedded(args.data_dir)  # ours: the fleet is given its URL, and we count its rows
    url = server.url
    cmd += ["--database-url", url]
    lines: list[str] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    threading.Thread(target=lambda: [lines.append(x.rstrip()) for x in proc.stderr], daemon=True).start()
    try:
        while not any("meters ready" in x for x in lines):
            if proc.poll() is not None:
                raise RuntimeError("fleet stopped:\n" + "\n".join(lines[-20:]))
            time.sleep(0.2)
        ready_after = time.monotonic() - t0
        print(f"{args.meters} meters ready after {ready_after:.1f} s; simulated now {start:%Y-%m-%d %H:%M}, boundary "
              f"{boundary:%Y-%m-%d %H:%M} IST", file=sys.stderr)
        reader = Reader(options.address(0))
        reader.start()
        # simulated time = wall time since the start (speed 1): the boundary comes --lead seconds after it
        boundary_wall = time.time() + (boundary - start).total_seconds() - ready_after
        at = boundary.astimezone(dt.UTC)
        deadline = time.monotonic() + args.patience
        count = 0
        done_wall = 0.0  # when the boundary's last row was in
        while time.monotonic() < deadline:
            time.sleep(10)
            if time.time() > boundary_wall:
                try:
                    count = asyncio.run(rows_at(url, at, args.billing))
                except (OSError, asyncpg.PostgresError) as e:
                    print(f"  cannot count the rows: {e}", file=sys.stderr)
                    continue
                if count < args.meters or not done_wall:
                    print(f"  {count} {what} of {boundary:%H:%M} written", file=sys.stderr)
                if count >= args.meters:
                    done_wall = done_wall or time.time()
                    if time.time() >= boundary_wall + args.after:
                        break
        done_wall = done_wall or time.time()
        end_wall = time.time()
        reader.stop.set()
        reader.join(10)
        t_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        stop_s = time.monotonic() - t_stop
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    before = [lat for t, lat in reader.samples if t < boundary_wall]
    during = [lat for t, lat in reader.samples if boundary_wall <= t <= done_wall]
    after = [lat for t, lat in reader.samples if done_wall < t <= end_wall]
    print(f"{args.meters} meters in address mode, {args.workers} workers, --speed 1, ground truth on "
          f"(embedded PostgreSQL); python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"start: {ready_after:.1f} s to ready; stop (SIGTERM): {stop_s:.1f} s, exit {code}")
    print(f"{what} of the boundary written: {count} of {args.meters}, the last "
          f"{done_wall - boundary_wall:.0f} s after the boundary")
    print(f"client before the boundary (ceiling): {_stats(before)}")
    print(f"client from the boundary to the last row: {_stats(during)}")
    if after:
        print(f"client after that, to the end ({end_wall - boundary_wall:.0f} s after the boundary; "
              f"{(end_wall - boundary_wall + args.lead) / 60:.1f} simulated minutes in all): {_stats(after)}")
    if reader.error:
        print(f"client error: {reader.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
