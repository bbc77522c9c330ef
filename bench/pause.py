"""How long a ground-truth pass holds a worker's event loop: the longest wait a head-end's request sees.

One process, one uvloop event loop, as in a worker: the ground-truth writer computes one window ending
just past a capture boundary (by default the first half hour of a day: a block row per meter) for N
meters with the real row functions, while a ticker on the same loop
wakes every millisecond and records how late it wakes. The database is left out (its writes are
counted, not sent): what is measured is the computation's hold on the loop. The ceiling is the same
ticker with no pass running (the loop's and the machine's own jitter). The worker's boot steps that
matter here are done first, as Worker.main does them: the writer's warm-up and gc.freeze().

    python -m bench.pause [--meters 20000] [--window 1800]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from fleet.runtime.meters import MeterRegistry
from fleet.settings import FleetOptions
from fleet.store import truth
from fleet.store.truth import GroundTruthWriter
from meter_core.device.clock import SimClock

START = 1767205800.0  # an IST midnight


class _NoDatabase:
    """A writer connection that takes every batch (the rows are counted by the patched write_batch)."""

    class _Conn:
        def is_closed(self) -> bool:
            return False

        async def fetch(self, query, *args):
            return []

        async def execute(self, query, *args):
            return "OK"

        def transaction(self):
            return self

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return False

    async def get(self):
        return self._Conn()

    def drop(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def _ticks(seconds: float, busy=None) -> list[float]:
    """How late a 1 ms ticker wakes, for ``seconds`` or until ``busy()`` is false."""
    lates = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end if busy is None else busy():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        lates.append(time.perf_counter() - t - 0.001)
    return lates


def _report(name: str, lates: list[float]) -> str:
    lates = sorted(lates)
    return (f"{name:>14}: {len(lates):6d} ticks, p50 {lates[len(lates) // 2] * 1e3:6.2f} ms, p99 "
            f"{lates[int(len(lates) * 0.99)] * 1e3:6.2f} ms, longest {lates[-1] * 1e3:6.2f} ms")


async def _main(meters: int, window: float) -> None:
    written = {"rows": 0}

    async def count_rows(conn, rows):
        n = {t: len(r) for t, r in rows.items()}
        written["rows"] += sum(n.values())
        return n, []

    truth.write_batch = count_rows
    options = FleetOptions(meters=meters, mode="address")  # no port per meter: any count
    registry = MeterRegistry(options.fleet, options, START - 90 * 86400)
    clock = SimClock(start=START + window + 2, t0=time.monotonic(), speed=1.0)
    registry.clock = clock
    writer = GroundTruthWriter("postgresql://unused", shard=range(meters), clock=clock, start=START,
                               meter_for_rows=registry.for_rows, spool_dir=Path(tempfile.mkdtemp()) / "spool")
    writer._conn = _NoDatabase()
    writer.warm_up()
    gc.freeze()
    idle = await _ticks(3.0)
    t0 = time.monotonic()
    writer.start()
    busy = await _ticks(0, busy=lambda: not (writer.captured_until and writer.captured_until >= START + window))
    elapsed = time.monotonic() - t0
    await writer.close(5.0)
    print(f"{meters} meters, one {window:.0f} s window: {written['rows']} rows in {elapsed:.1f} s "
          f"({elapsed / meters * 1e6:.0f} us a meter); python {sys.version.split()[0]}")
    print(_report("no pass", idle))
    print(_report("during pass", busy))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=20000)
    ap.add_argument("--window", type=float, default=1800.0)
    args = ap.parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(_main(args.meters, args.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
