"""Rows per second of `fleet backfill`, against a raw asyncpg COPY of the same rows in the same run.

A private embedded PostgreSQL is started in a temporary folder and migrated. First the backfill
writes M meters x D days (its job processes compute the rows and COPY them); then the same rows,
computed beforehand (not timed), are COPYed with plain `copy_records_to_table` into the same
partitioned tables, emptied first, from one connection. Printed: rows, seconds, rows/s, and the ratio.

    python -m bench.backfill [--meters 400] [--days 7] [--jobs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from fleet.settings import FleetOptions
from fleet.store import migrations, pg, sql
from fleet.tools import backfill as bf

EPOCH = 1767205800.0


async def _migrate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn)
    finally:
        await conn.close()


async def _raw_copy(url: str, batches: list[dict[str, list[tuple]]]) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE " + ", ".join(sql.PROFILE_COLUMNS) + ", backfill_progress")
        t0 = time.perf_counter()
        for batch in batches:
            for table, rows in batch.items():
                if rows:
                    await conn.copy_records_to_table(table, records=rows, columns=sql.PROFILE_COLUMNS[table])
        return time.perf_counter() - t0
    finally:
        await conn.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=400)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="cosem-fleet-bench-"))
    if os.geteuid() == 0:
        base.chmod(0o755)
    server = pg.start_embedded(base / "pgdata")
    try:
        url = server.url
        asyncio.run(_migrate(url))
        options = FleetOptions(meters=args.meters)
        plan = bf.plan(url, options, EPOCH, args.days, None, range(args.meters))
        print(f"backfill {args.meters} meters x {args.days} days, {args.jobs} job(s), "
              f"{len(plan.chunks)} chunks; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        chunks, rows, seconds = bf.run(plan, args.jobs)
        t0 = time.perf_counter()
        batches = [bf.chunk_rows(plan, a, b) for a, b in plan.chunks]
        compute = time.perf_counter() - t0
        same = sum(len(r) for b in batches for r in b.values())
        raw = asyncio.run(_raw_copy(url, batches))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert same == rows, (same, rows)
    print(f"{'':>14} {'rows':>10} {'seconds':>9} {'rows/s':>10}")
    print(f"{'fleet backfill':>14} {rows:>10} {seconds:>9.2f} {rows / seconds:>10.0f}")
    print(f"{'raw COPY':>14} {same:>10} {raw:>9.2f} {same / raw:>10.0f}")
    print(f"{'ratio':>14} {'':>10} {'':>9} {raw / seconds:>10.2f}  (backfill / raw COPY rows/s; aim >= 0.8)")
    print(f"computing the rows alone, one process: {compute:.2f} s ({same / compute:.0f} rows/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
