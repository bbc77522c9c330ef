"""Listen mode at the descriptor limit: as many concurrent associations as the budget admits, then clean refusals.

C connections from this host to C meters in listen mode (one listening socket per meter, W workers), each
associated as the public client and then reading the clock in a loop for S seconds. A worker of n meters
admits ``RLIMIT_NOFILE - n - 64`` connections (`fleet.runtime.budget`); past that it accepts and closes at
once. Expected: exactly the budget associated, every other connection closed without an answer, none left
hanging, and the admitted ones served throughout (their latencies shown). The ceiling the latencies
compare with is bench.connections' (address mode, same client).

    python -m bench.listen_budget [--concurrent 20000] [--workers 2] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench._common import EPOCH, spawn_worker_settings, stop
from bench.connections import _concurrent, _in_clients, _quantiles, tally
from fleet.runtime import budget
from fleet.settings import FleetOptions, RunSettings, ephemeral_ports, split_range


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrent", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--port-base", type=int, default=10_000)
    ap.add_argument("--host", default="127.0.0.3", help="address the meters listen on")
    args = ap.parse_args(argv)
    n = args.concurrent
    options = FleetOptions(meters=n, mode="listen", hosts=(args.host,), port_base=args.port_base,
                           ephemeral=ephemeral_ports())
    limit = budget.nofile_limit()
    shards = split_range(range(n), args.workers)
    plans = budget.plan(shards, "listen", limit)
    expected = sum(min(b.connections, len(s)) for b, s in zip(plans, shards))
    print(f"listen mode, {n} meters on {args.workers} workers, descriptor limit {limit}: each worker admits "
          f"{', '.join(str(b.connections) for b in plans)} connections (its meters' sockets and "
          f"{budget.RESERVE} of its own aside); {n} connections, one per meter: {expected} expected to associate; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    settings = RunSettings(options=options, workers=args.workers, sim_start=time.time(), sim_t0=time.monotonic(),
                           epoch_start=EPOCH, heartbeat_interval=1.0, fd_limit=limit)
    procs, pipes = [], []  # keep the pipes: a worker whose supervisor's end is gone stops
    try:
        for slot, shard in enumerate(shards):
            proc, pipe = spawn_worker_settings(settings, shard, slot)
            procs.append(proc)
            pipes.append(pipe)
        res = _in_clients([options.address(i) for i in range(n)], _concurrent, args.seconds)
    finally:
        for p in procs:
            stop(p)
    associated, rejected, closed, failed, lat = tally(res)
    print(f"{associated} associated, {closed} closed without an answer (refused), {rejected} AARE rejections, "
          f"{failed} not connected; admitted ones: {_quantiles(lat)}")
    ok = associated == expected and closed == n - expected and not rejected and not failed
    print("as the budget says" if ok else f"NOT as the budget says (expected {expected} associated, "
          f"{n - expected} refused)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
