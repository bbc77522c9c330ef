"""A million meters in address mode: start time, memory per idle meter, and a sample read by address.

Starts W real fleet workers (as `fleet run --mode address` does: one reuseport group opened in slot
order and steered by destination address, one socket per worker) for N meters, all at once, and times
them from the first spawn to the last "ready". Memory per idle meter is the slope of the workers' RSS
between N/2 and N meters (what a process holds before its first meter drops out); the ceiling it is
compared with is the fixed cost of the same workers with 10 meters. Then a client reads K meters picked
at random, each in a connection of its own to the meter's own address: AARQ as the public client
(SAP 16), GET of the logical device name (which must be that meter's), RLRQ, close.

    python -m bench.address [--meters 1000000] [--workers 2] [--sample 10000]

No database: the ground truth at this scale is `bench` of its own (issue 14, point 4).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import socket
import sys
import time

from bench._common import EPOCH, rss_bytes, stop, until
from fleet.runtime import address
from fleet.runtime.worker import worker_main
from fleet.settings import FleetOptions, RunSettings, split_range
from meter_core.client import Associated, ClientSettings, DlmsClient, GetResult, Released
from meter_core.connection import Transport
from meter_core.device.identity import meter_identity

ADDRESS_BASE = "127.20.0.1"


def start_workers(options: FleetOptions, workers: int) -> tuple[list, list, float]:
    """All workers spawned at once; returns (processes, pipes, seconds until the last is ready)."""
    shards = split_range(range(options.meters), workers)
    listeners = address.open_listeners(options, shards)
    settings = RunSettings(options=options, workers=workers, sim_start=time.time(), sim_t0=time.monotonic(),
                           epoch_start=EPOCH, heartbeat_interval=1.0)
    ctx = multiprocessing.get_context("spawn")
    t0 = time.monotonic()
    procs, pipes = [], []
    for slot, shard in enumerate(shards):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=worker_main, args=(slot, shard, settings, child, listeners[slot]), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent)
    for parent in pipes:
        while True:
            msg = parent.recv()
            if msg[0] == "ready":
                break
            if msg[0] == "boot-error":
                raise RuntimeError(msg[2])
    elapsed = time.monotonic() - t0
    for sock in listeners:
        sock.close()  # the workers hold theirs
    return procs, pipes, elapsed


def read_one(options: FleetOptions, meter_id: int) -> float:
    """Associate with meter ``meter_id`` at its address, read its logical device name, release; seconds."""
    t0 = time.perf_counter()
    client = DlmsClient(ClientSettings(client_sap=16, transport=Transport.WRAPPER))
    buf = bytearray()
    with socket.create_connection(options.address(meter_id), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.associate()
        until(client, s, buf, Associated)
        client.get(1, "0.0.42.0.0.255", 2)
        name = bytes(until(client, s, buf, GetResult).value.value).decode()
        assert name == meter_identity(options.fleet, meter_id).logical_device_name, (meter_id, name)
        client.release()
        until(client, s, buf, Released)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample", type=int, default=10_000)
    ap.add_argument("--port", type=int, default=14059)
    args = ap.parse_args(argv)
    n, w = args.meters, args.workers

    def options(meters: int) -> FleetOptions:
        return FleetOptions(meters=meters, mode="address", address_base=ADDRESS_BASE, port_base=args.port)

    def rss_of(meters: int) -> tuple[list[int], float]:
        procs, _pipes, elapsed = start_workers(options(meters), w)
        try:
            time.sleep(1.0)  # what the workers do right after "ready" counts too
            return [rss_bytes(p.pid) for p in procs], elapsed
        finally:
            for p in procs:
                stop(p)

    fixed, _ = rss_of(10 * w)
    half, _ = rss_of(n // 2)
    procs, _pipes, start = start_workers(options(n), w)
    try:
        time.sleep(1.0)
        full = [rss_bytes(p.pid) for p in procs]
        rnd = random.Random(15959)
        picks = [rnd.randrange(n) for _ in range(args.sample)]
        t0 = time.monotonic()
        times = sorted(read_one(options(n), m) for m in picks)
        wall = time.monotonic() - t0
    finally:
        for p in procs:
            stop(p)
    slope = (sum(full) - sum(half)) / (n - n // 2)
    beyond = (sum(full) - sum(fixed)) / (n - 10 * w)
    print(f"{n} meters in address mode on {w} workers; python {sys.version.split()[0]}")
    print(f"start: {start:.1f} s from the first spawn to the last worker ready")
    print(f"workers RSS: {', '.join(f'{r / 2**20:.1f} MiB' for r in full)}; with 10 meters each (the ceiling: "
          f"a worker's fixed cost) {', '.join(f'{r / 2**20:.1f} MiB' for r in fixed)}")
    print(f"per idle meter: {beyond:.1f} B beyond the fixed cost, slope {n // 2} -> {n}: {slope:.1f} B "
          f"(aim <= 512 B)")
    print(f"sample: {len(picks)} random meters read by address (AARQ, GET logical device name, RLRQ), each its "
          f"own connection, in {wall:.1f} s: p50 {times[len(times) // 2] * 1e3:.2f} ms, p99 "
          f"{times[int(len(times) * 0.99)] * 1e3:.2f} ms, max {times[-1] * 1e3:.2f} ms; every name matched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
