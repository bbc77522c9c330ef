"""`fleet backfill`: write D days of profile history for the fleet, as fast as COPY allows, resumably.

The window is the D whole IST days before the end (default: today's midnight, IST). Meters are cut
into chunks; each job process takes a chunk, computes its rows (the same `capture_rows` the workers
use, so backfilled history equals what the meters serve over DLMS) and writes them:

- fast path: plain COPY into the tables, in one transaction with the chunk's row in
  `backfill_progress` (a chunk nobody wrote before gets no staging, no conflict checks);
- if any row of the chunk is already there (a run or an earlier backfill wrote it), the
  transaction rolls back and the chunk is written again through staging with ON CONFLICT DO
  NOTHING: nothing is written twice.

A chunk is done when its `backfill_progress` row is committed with its rows, so an interrupted
backfill run again with the same arguments skips what was done and redoes only the rest. Progress
goes to stderr as a bar.

Rows are what the meters serve: their clocks drift as `fleet run --drift-ppm` makes them, and what
the journal says was done to them (head-ends' programming, injected changes) is replayed at its time.
With its rows a chunk moves its `capture_progress` to the window's end (when its history is then
continuous), so a `fleet run` started later writes from there: one continuous history per meter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import hashlib
import logging
import multiprocessing
import time
from dataclasses import dataclass

import asyncpg

from fleet.runtime.meters import load_history
from fleet.store import pg, sql
from fleet.store.defaults import device_config, load_settings
from fleet.store.truth import capture_rows, resume_point
from fleet.store.writer import write_batch
from meter_core.device.clock import IST, SimClock
from meter_core.device.config import DEFAULT_DEVICE, DeviceConfig
from meter_core.device.meter import Meter
from meter_core.device.state import MeterState
from meter_core.session import journal

log = logging.getLogger(__name__)

DAY = 86400
CHUNK_METERS = 50


@dataclass(frozen=True, slots=True)
class Plan:
    url: str
    options: object  # FleetOptions
    epoch_start: float
    window_start: float
    window_end: float
    chunks: tuple[tuple[int, int], ...]
    config: DeviceConfig = DEFAULT_DEVICE  # the fleet's load templates and supply events, from the database
    drift_ppm: float = 0.0  # as `fleet run --drift-ppm`: the meters' clocks drift the same way

    @property
    def key(self) -> str:
        """What makes two backfills the same job: the fleet's identity, what changes its values, the window."""
        o = self.options
        text = (f"{o.seed}|{o.fleet.kind.value}|{getattr(o.fleet, 'mix', '')}|{self.window_start}|{self.window_end}"
                f"|{self.drift_ppm}")
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def plan(url: str, options, epoch_start: float, days: int, end: float | None, meter_ids: range,
         chunk: int = CHUNK_METERS, drift_ppm: float = 0.0) -> Plan:
    if end is None:
        today = _dt.datetime.now(IST).replace(hour=0, minute=0, second=0, microsecond=0)
        end = today.timestamp()
    chunks = tuple((a, min(a + chunk, meter_ids.stop)) for a in range(meter_ids.start, meter_ids.stop, chunk))
    return Plan(url, options, epoch_start, end - days * DAY, end, chunks, drift_ppm=drift_ppm)


def chunk_rows(p: Plan, first: int, stop: int, history=None) -> dict[str, list[tuple]]:
    """Every row meters [first, stop) captured in the window, as the meters served them: their clocks
    drifting as in `fleet run`, and what was done to them (``history``: meter -> journal entries up to
    the window's end, `fleet.runtime.meters.load_history`) replayed at its time."""
    clock = SimClock(start=p.window_end, t0=0.0, drift_ppm=p.drift_ppm)
    batch: dict[str, list[tuple]] = {t: [] for t in sql.PROFILE_COLUMNS}
    for meter_id in range(first, stop):
        m = Meter(p.options.fleet, meter_id, epoch_start=p.epoch_start, clock=clock, state=MeterState(),
                  config=p.config)
        entries = history.get(meter_id) if history else None
        if entries:
            journal.replay(m, entries)
        for table, rows in capture_rows(m, p.window_start, p.window_end, 0.0).items():
            batch[table] += rows
    return batch


async def _done_chunks(conn: asyncpg.Connection, key: str) -> set[int]:
    rows = await conn.fetch(sql.SELECT_BACKFILL_DONE, key)
    return {r["meter_from"] for r in rows}


async def _claim(conn: asyncpg.Connection, p: Plan, first: int, stop: int) -> None:
    """Move the chunk's `capture_progress` to the window's end, when its history is then continuous: the
    chunk had none, or it reached the window's start. Otherwise the gap before the window is left for
    the next run to fill (it resumes where the recorded history ends)."""
    rows = await conn.fetch(sql.SELECT_PROGRESS, first, stop)
    reached = resume_point(range(first, stop), [(r[0], r[1], r[2]) for r in rows])
    if reached is None or reached >= p.window_start:
        await conn.execute(sql.RECORD_PROGRESS, first, stop, p.window_end)
    else:
        log.info("backfill: meters %d-%d have no history from %s to the window's start; a run fills it",
                 first, stop - 1, _dt.datetime.fromtimestamp(reached, IST).isoformat())


async def write_chunk(conn: asyncpg.Connection, p: Plan, first: int, stop: int,
                      batch: dict[str, list[tuple]]) -> int:
    """Write one chunk and mark it done, in one transaction; returns rows written."""
    n = sum(len(r) for r in batch.values())
    mark = sql.MARK_BACKFILL_CHUNK
    args = (p.key, first, stop, _dt.datetime.fromtimestamp(p.window_start, _dt.UTC),
            _dt.datetime.fromtimestamp(p.window_end, _dt.UTC))
    try:
        async with conn.transaction():
            for table, rows in batch.items():
                if rows:
                    await conn.copy_records_to_table(table, records=rows, columns=sql.PROFILE_COLUMNS[table])
            await conn.execute(mark, *args, n)
            await _claim(conn, p, first, stop)
        return n
    except asyncpg.UniqueViolationError:
        pass  # some rows exist already: write through staging, skipping them
    async with conn.transaction():
        written, refused = await write_batch(conn, batch)
        await conn.execute(mark, *args, sum(written.values()))
        await _claim(conn, p, first, stop)
    for report in refused:
        log.error("backfill row refused: %s", report)
    return sum(written.values())


def _job(args) -> tuple[int, int, int]:
    """A job process: compute and write one chunk (its own connection, reused across chunks)."""
    p, first, stop = args
    history = _run_in_job(_history_in_job(p, first, stop))
    batch = chunk_rows(p, first, stop, history)
    return first, stop, _run_in_job(_write_in_job(p, first, stop, batch))


_job_loop: asyncio.AbstractEventLoop | None = None
_job_conn: asyncpg.Connection | None = None


def _run_in_job(coro):
    global _job_loop
    if _job_loop is None:
        _job_loop = asyncio.new_event_loop()
    return _job_loop.run_until_complete(coro)


async def _history_in_job(p: Plan, first: int, stop: int) -> dict[int, list]:
    """The journal of meters [first, stop) up to the window's end (what was done to them, to replay)."""
    return (await load_history(p.url, range(first, stop), p.window_end)).entries


async def _write_in_job(p: Plan, first: int, stop: int, batch) -> int:
    global _job_conn
    if _job_conn is None or _job_conn.is_closed():
        _job_conn = await pg.connect(p.url, command_timeout=600)
        await _job_conn.execute(sql.CREATE_PROFILE_STAGING)
    return await write_chunk(_job_conn, p, first, stop, batch)


async def pending(p: Plan) -> tuple[list[tuple[int, int]], DeviceConfig]:
    """The chunks not done yet, and the configuration the rows are computed with (the database's)."""
    conn = await pg.connect(p.url)
    try:
        done = await _done_chunks(conn, p.key)
        settings = await load_settings(conn)
    finally:
        await conn.close()
    return [c for c in p.chunks if c[0] not in done], device_config(settings)


def run(p: Plan, jobs: int, progress=None) -> tuple[int, int, float]:
    """Backfill the chunks not done yet with ``jobs`` processes; returns (chunks, rows, seconds)."""
    todo, config = asyncio.run(pending(p))
    p = dataclasses.replace(p, config=config)
    t0 = time.perf_counter()
    rows = 0
    if not todo:
        return 0, 0, 0.0
    # fork, not spawn: the jobs start with everything imported, instead of spending a second each on
    # imports while the clock runs. The parent holds no thread, event loop or connection at this point
    # (pending() closed its own).
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ctx.Pool(jobs) as pool:
        for i, (_first, _stop, n) in enumerate(pool.imap_unordered(_job, [(p, a, b) for a, b in todo]), start=1):
            rows += n
            if progress is not None:
                progress(i, len(todo), rows, time.perf_counter() - t0)
    return len(todo), rows, time.perf_counter() - t0


__all__ = ["Plan", "chunk_rows", "plan", "run", "write_chunk"]
