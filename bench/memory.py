"""Memory per idle meter: RSS of fleet workers listening for N meters, against bare uvloop listeners.

Starts W real fleet workers (as `fleet run` does) serving N meters in total, waits until all listen,
and reads each worker's RSS; a worker with a handful of meters gives the fixed cost of a worker,
so (RSS - fixed) / meters is what one more idle meter costs. In the same run, a bare uvloop process
opens the same number of listening sockets and nothing else: the ceiling set by the event loop and
the kernel objects.

Both figures are also given as a slope: the RSS at N meters less the RSS at N/2, per meter. What a
process holds before its first meter (the modules it imported, how the allocator laid them out) is in
both runs and drops out, so the slope is what one more meter costs and nothing else.

    python -m bench.memory [--meters 20000] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys

from bench._common import rss_bytes, spawn_worker, stop
from fleet.settings import FleetOptions, split_range


def bare_listeners(port_base: int, count: int, out) -> None:
    import resource

    import uvloop

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main():
        loop = asyncio.get_running_loop()
        servers = []
        for i in range(count):
            servers.append(await loop.create_server(asyncio.Protocol, "127.0.0.1", port_base + i, backlog=16))
        out.send("ready")
        await asyncio.Event().wait()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(main())


def fleet_rss(options: FleetOptions, workers: int) -> list[int]:
    """RSS of each of ``workers`` fleet workers listening for ``options.meters`` meters between them."""
    procs = []
    try:
        for slot, shard in enumerate(split_range(range(options.meters), workers)):
            procs.append(spawn_worker(options, shard, slot))  # keep the pipe: a worker stops when it closes
        return [rss_bytes(p.pid) for p, _ in procs]
    finally:
        for p, _ in procs:
            stop(p)


def bare_listeners_rss(ctx, port_base: int, n: int, workers: int) -> list[int]:
    """RSS of each of ``workers`` bare listener processes holding ``n`` listening sockets between them."""
    out = []
    for shard in split_range(range(n), workers):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=bare_listeners, args=(port_base + shard.start, len(shard), child), daemon=True)
        p.start()
        parent.recv()
        out.append(rss_bytes(p.pid))
        stop(p)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--port-base", type=int, default=10000)
    args = ap.parse_args(argv)
    n, w = args.meters, args.workers
    options = FleetOptions(meters=n, port_base=args.port_base)

    # Fixed cost of one worker: the same process serving 10 meters.
    small, _ = spawn_worker(FleetOptions(meters=10, port_base=args.port_base), range(10))
    fixed = rss_bytes(small.pid)
    stop(small)

    rss = fleet_rss(options, w)
    per_meter = (sum(rss) - fixed * w) / (n - 10 * w)
    half_rss = fleet_rss(FleetOptions(meters=n // 2, port_base=args.port_base), w)
    slope = (sum(rss) - sum(half_rss)) / (n - n // 2)

    ctx = multiprocessing.get_context("spawn")
    bare_rss = bare_listeners_rss(ctx, args.port_base, n, w)
    bare_slope = (sum(bare_rss) - sum(bare_listeners_rss(ctx, args.port_base, n // 2, w))) / (n - n // 2)
    parent, child = ctx.Pipe()
    p = ctx.Process(target=bare_listeners, args=(args.port_base, 10, child), daemon=True)
    p.start()
    parent.recv()
    bare_fixed = rss_bytes(p.pid)
    stop(p)
    bare_per = (sum(bare_rss) - bare_fixed * w) / (n - 10 * w)

    print(f"{n} idle meters on {w} workers")
    print(f"fleet workers RSS: {', '.join(f'{r / 2**20:.1f} MiB' for r in rss)}; worker fixed cost "
          f"{fixed / 2**20:.1f} MiB")
    print(f"fleet: {per_meter:.0f} B per idle meter ({per_meter / 1024:.2f} KiB; aim <= 4 KiB)")
    print(f"bare uvloop listeners: {bare_per:.0f} B per listening socket (fixed {bare_fixed / 2**20:.1f} MiB)")
    print(f"ratio fleet / bare per meter: {per_meter / bare_per:.2f}")
    print(f"slope {n // 2} -> {n} meters: fleet {slope:.0f} B per meter, bare {bare_slope:.0f} B per socket, "
          f"ratio {slope / bare_slope:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
