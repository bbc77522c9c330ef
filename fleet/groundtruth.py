"""Ground truth in PostgreSQL: every profile entry of the worker's meters, written as it happens.

A worker's `GroundTruthWriter` walks simulated time in steps: for each step (a window of simulated
time, the same for all meters) it computes, for every meter of the shard, the block-load, daily and
billing entries the meter captured in that window (`meter_core.groundtruth`, the same sources DLMS
reads use) plus an instantaneous snapshot at each block boundary, and queues the rows. One writer
task COPYs them in batches into per-session staging tables and inserts them with ON CONFLICT DO
NOTHING, so a batch written twice (a retry after a commit whose answer was lost) changes nothing.

- Bounded memory, no loss: rows are a pure function of the window, so when ``max_queue`` rows wait
  the producer simply does not advance (back-pressure is a metric: `fleet_db_writer_backpressure`
  and the lag of simulated time behind the clock).
- Database outage: a batch that fails to write is spooled to disk (one pickle file per batch in the
  worker's spool folder, written atomically) with everything queued after it, and the writer retries
  with back-off; when the database answers again the spool is written first, oldest first, then the
  queue. Nothing is lost and, thanks to the keys, nothing is written twice.
- A row the database refuses (a CHECK, a NOT NULL) is reported with its meter and capture time in
  the log and counted (`fleet_db_writer_discarded`); the rest of its batch is written row by row.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import math
import os
import pickle
import time
from collections import deque
from decimal import Decimal
from pathlib import Path

import asyncpg

from fleet import pg
from meter_core import eventlog
from meter_core.groundtruth import billing_records, block_records, daily_records
from meter_core.powerquality import IST_S

log = logging.getLogger("fleet.groundtruth")

# Profiles capture at most every 15 minutes (on IST quarter hours): a pass over the shard runs once a
# quarter-hour boundary has passed, so every capture is written within one pass of happening and a
# meter is computed once per period, not on every tick (a transient Meter costs ~0.2 ms to build).
STEP = 900.0
# Most simulated time one pass over the shard covers (bounds the rows a pass computes at once).
MAX_WINDOW = 86400.0
TICK = 0.2
BATCH_ROWS = 5000
MAX_QUEUE_ROWS = 100_000
RETRY_MIN, RETRY_MAX = 0.2, 5.0

_UTC = _dt.UTC
_from_ts = _dt.datetime.fromtimestamp
_ENERGY = ("active_import_wh", "active_export_wh", "apparent_import_vah", "apparent_export_vah",
           "reactive_q1_varh", "reactive_q2_varh", "reactive_q3_varh", "reactive_q4_varh")

COLUMNS: dict[str, tuple[str, ...]] = {
    "block_load_profile": ("meter_id", "capture_time", "interval_seconds", "avg_current_l1", "avg_current_l2",
                           "avg_current_l3", "avg_voltage_l1", "avg_voltage_l2", "avg_voltage_l3", *_ENERGY),
    "daily_load_profile": ("meter_id", "capture_time", *_ENERGY),
    "billing_profile": ("meter_id", "billing_time", "billing_count", *_ENERGY, "md_active_import_w",
                        "md_active_import_time", "md_apparent_import_va", "md_apparent_import_time",
                        "average_power_factor", "power_on_minutes"),
    "event_logs": ("meter_id", "category", "occurred_at", "event_code", "current_l1", "current_l2", "current_l3",
                   "voltage_l1", "voltage_l2", "voltage_l3", "power_factor_l1", "power_factor_l2", "power_factor_l3",
                   "active_import_wh"),
    "eswf_status": ("meter_id", "changed_at", "esw", "bits_set"),
    "instant_profile": ("meter_id", "capture_time", "voltage_l1", "voltage_l2", "voltage_l3", "current_l1",
                        "current_l2", "current_l3", "current_neutral", "power_factor_l1", "power_factor_l2",
                        "power_factor_l3", "power_factor", "frequency", "active_power_w", "reactive_power_var",
                        "apparent_power_va", "active_import_wh", "apparent_import_vah"),
}
TABLES = tuple(COLUMNS)


def _ts(t: float) -> _dt.datetime | None:
    return None if t != t else _from_ts(t, _UTC)  # NaN: not specified


def _dec(value: int, places: int, present: bool = True) -> Decimal | None:
    """A register integer with ``places`` decimals, exactly (asyncpg COPYs a Decimal into a numeric
    column two to three times faster than a float)."""
    return Decimal(value).scaleb(-places) if present else None


class _Decimals(dict):
    """`_dec(value, places)` for one ``places``, each value made once (the same few voltages, power
    factors and frequencies recur in every row of a meter); lives as long as one batch of rows."""

    __slots__ = ("places", "unit")

    def __init__(self, places: int) -> None:
        super().__init__()
        self.places = -places
        self.unit = Decimal(1).scaleb(-places)  # 0.01, 0.001

    def __missing__(self, value: int) -> Decimal:
        # value * 10**-places is exact (no rounding below 28 digits), so it equals scaleb's, exponent too
        d = Decimal(value) * self.unit if -_EXACT < value < _EXACT else Decimal(value).scaleb(self.places)
        self[value] = d
        return d


_EXACT = 10**27
_MILLI = Decimal(1).scaleb(-3)


def _milli(value: int) -> Decimal:
    """`_dec(value, 3)` for values that rarely recur (currents): made directly, exactly as `_Decimals` does."""
    return Decimal(value) * _MILLI if -_EXACT < value < _EXACT else Decimal(value).scaleb(-3)


def capture_rows(meter, sim_from: float, sim_to: float, now: float) -> dict[str, list[tuple]]:
    """The rows ``meter`` captured in simulated time (sim_from, sim_to], per table."""
    with meter.batch():
        return _capture_rows(meter, sim_from, sim_to, now)


def _capture_rows(meter, sim_from: float, sim_to: float, now: float) -> dict[str, list[tuple]]:
    mid = meter.identity.meter_id
    phases = tuple(s > 0 for s in meter.load.params.phase_share)
    p1, p2, p3 = phases
    out: dict[str, list[tuple]] = {t: [] for t in TABLES}
    blocks, instants = out["block_load_profile"], out["instant_profile"]
    dec2, dec3 = _Decimals(2), _Decimals(3)
    for r in block_records(meter, sim_from, sim_to):
        i1, i2, i3 = r.avg_current_ma
        v1, v2, v3 = r.avg_voltage_cv
        stamp = _ts(r.capture_time)
        blocks.append((
            mid, stamp, r.interval_seconds,
            _milli(i1) if p1 else None, _milli(i2) if p2 else None, _milli(i3) if p3 else None,
            dec2[v1] if p1 else None, dec2[v2] if p2 else None, dec2[v3] if p3 else None,
            *r.energy_wh,
        ))
        instants.append(_instant_row(meter, r.captured_at, stamp, phases, r.cumulative_wh, dec2, dec3))
    for r in daily_records(meter, sim_from, sim_to):
        out["daily_load_profile"].append((mid, _ts(r.capture_time), *r.energy_wh))
    for e in eventlog.events_between(meter, sim_from, sim_to):
        out["event_logs"].append(event_row(meter, e, phases))
    out["eswf_status"] += esw_changes(meter, sim_from, sim_to)
    for r in billing_records(meter, sim_from, sim_to):
        out["billing_profile"].append((
            mid, _ts(r.billing_time), r.billing_count, *r.energy_wh, r.md_w, _ts(r.md_w_time), r.md_va,
            _ts(r.md_va_time), _dec(r.average_pf_milli, 3), r.power_on_minutes,
        ))
    return out


def event_row(meter, e: eventlog.Event, phases) -> tuple:
    """An event log entry, with the snapshot the voltage, current and other logs capture."""
    row = [meter.identity.meter_id, eventlog.CATEGORY_NAMES[e.category], _ts(eventlog.stamp_of(meter, e.time)), e.code]
    if e.category in (eventlog.VOLTAGE, eventlog.CURRENT, eventlog.OTHER):
        inst = meter.instant_at(e.time)
        div = meter.energy_divisor
        row += [_dec(round(i * 1000), 3, p) for i, p in zip(inst.current, phases)]
        row += [_dec(round(v * 100), 2, p) for v, p in zip(inst.voltage, phases)]
        row += [_dec(round(f * 1000), 3, p) for f, p in zip(inst.pf, phases)]
        row.append(int(meter.readings(e.time)[0] * div))
    else:
        row += [None] * 10
    return tuple(row)


def esw_changes(meter, sim_from: float, sim_to: float) -> list[tuple]:
    """Each change of the Event Status Word in (sim_from, sim_to]: (meter_id, time, 16 bytes, bits)."""
    return [(meter.identity.meter_id, _ts(eventlog.stamp_of(meter, t)), eventlog.bitstring(after), sorted(after))
            for t, _before, after in eventlog.esw_changes(meter, sim_from, sim_to)]


def instant_row(meter, t: float, phases, cumulative_wh=None) -> tuple:
    """The instantaneous profile's values at true time ``t``, stamped with the meter clock then, rounded as
    served."""
    return _instant_row(meter, t, _ts(meter.clock_at_sim(t)), phases, cumulative_wh, _Decimals(2), _Decimals(3))


def _instant_row(meter, t: float, stamp, phases, cumulative_wh, dec2: _Decimals, dec3: _Decimals) -> tuple:
    volts, currents, pf, pf_total, frequency, power, reactive, apparent, neutral = meter.load.instant_values(t)
    if cumulative_wh is None:
        div = meter.energy_divisor
        cumulative_wh = tuple(int(r * div) for r in meter.readings(t))
    p1, p2, p3 = phases
    return (
        meter.identity.meter_id, stamp,
        dec2[round(volts[0] * 100)] if p1 else None, dec2[round(volts[1] * 100)] if p2 else None,
        dec2[round(volts[2] * 100)] if p3 else None,
        _milli(round(currents[0] * 1000)) if p1 else None, _milli(round(currents[1] * 1000)) if p2 else None,
        _milli(round(currents[2] * 1000)) if p3 else None,
        _milli(round(neutral * 1000)),
        dec3[round(pf[0] * 1000)] if p1 else None, dec3[round(pf[1] * 1000)] if p2 else None,
        dec3[round(pf[2] * 1000)] if p3 else None,
        dec3[round(pf_total * 1000)],
        dec2[round(frequency * 100)],
        round(power), round(reactive), round(apparent),
        cumulative_wh[0], cumulative_wh[2],
    )


# -- writing ---------------------------------------------------------------------------------------------


def _stage(table: str) -> str:
    return f"fleet_stage_{table}"


CREATE_STAGING = "\n".join(
    f"CREATE TEMP TABLE IF NOT EXISTS {_stage(t)} (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
    for t in TABLES
)


def _insert(table: str) -> str:
    cols = ", ".join(COLUMNS[table])
    return f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {_stage(table)} ON CONFLICT DO NOTHING"


def _insert_one(table: str) -> str:
    cols = COLUMNS[table]
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) ON CONFLICT DO NOTHING"


async def write_batch(conn: asyncpg.Connection, batch: dict[str, list[tuple]]) -> tuple[dict[str, int], list[str]]:
    """Write ``batch`` idempotently; returns (rows inserted per table, reports of refused rows).

    COPY to staging and one INSERT ... ON CONFLICT DO NOTHING per table, in one transaction. If the
    database refuses a row (a constraint), the batch is written again row by row and each refused
    row is reported with its meter and capture time instead of being dropped silently.
    """
    try:
        return await _write_set(conn, batch), []
    except asyncpg.IntegrityConstraintViolationError:
        pass
    written = {t: 0 for t in batch}
    refused: list[str] = []
    for table, rows in batch.items():
        query = _insert_one(table)
        for row in rows:
            try:
                async with conn.transaction():
                    written[table] += _count(await conn.execute(query, *row))
            except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as e:
                refused.append(f"{table}: meter {row[0]} at {row[1]}: {pg.one_line(e)}")
    return written, refused


async def _write_set(conn: asyncpg.Connection, batch: dict[str, list[tuple]]) -> dict[str, int]:
    written = {}
    async with conn.transaction():
        for table, rows in batch.items():
            if not rows:
                continue
            await conn.copy_records_to_table(_stage(table), records=rows, columns=COLUMNS[table])
            written[table] = _count(await conn.execute(_insert(table)))
    return written


def _count(status: str) -> int:
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


class GroundTruthWriter:
    """One per worker: produces its meters' captures in simulated-time order and writes them."""

    def __init__(self, url: str, worker, *, spool_dir: Path, step: float = STEP, batch_rows: int = BATCH_ROWS,
                 max_queue_rows: int = MAX_QUEUE_ROWS) -> None:
        self.url = url
        self.worker = worker
        self.spool_dir = spool_dir
        self.step = step
        self.batch_rows = batch_rows
        self.max_queue_rows = max_queue_rows
        # Simulated time up to which rows are produced: the fleet's start, so a worker restarted on its
        # shard produces the run's captures again (the keys make the repeats no-ops) and loses none.
        self.cursor = worker.settings.sim_start
        self.queue: deque[dict[str, list[tuple]]] = deque()
        self.queued_rows = 0
        self.rows_written = {t: 0 for t in TABLES}
        self.refused = 0
        self.backpressure = 0
        self.errors = 0
        self._conn = pg.WriterConnection(url, CREATE_STAGING, command_timeout=30.0)
        self._seq = 0
        self._stopping = False
        self._stop_at = math.inf
        self._task: asyncio.Task | None = None
        spool_dir.mkdir(parents=True, exist_ok=True)
        self._seq = max((int(p.stem) for p in spool_dir.glob("*.pkl")), default=0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fleet-groundtruth")

    async def close(self, timeout: float) -> None:
        """Produce up to now, write what can be written within ``timeout``, spool the rest."""
        self._stopping = True
        self._stop_at = self.worker.clock.sim(time.monotonic())  # the captures up to the stop, no further
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass
        if self.queue:
            self._spool_queue()
        self._conn.drop()

    @property
    def lag(self) -> float:
        """Simulated seconds the producer is behind the clock."""
        return max(0.0, self.worker.clock.sim(time.monotonic()) - self.cursor)

    # -- producing ---------------------------------------------------------------------------------

    def produce(self) -> int:
        """Advance the cursor towards simulated now while the queue has room; returns rows queued.

        The cursor moves once at least `step` simulated seconds have passed, by at most `MAX_WINDOW`
        per pass over the shard, so a pass costs one computation per meter whatever the speed.
        """
        now = time.monotonic()
        sim_now = self.worker.clock.sim(now)
        if self._stopping:
            sim_now = min(sim_now, self._stop_at)
        queued = 0
        batch: dict[str, list[tuple]] = {t: [] for t in TABLES}
        n = 0
        while self._next_boundary() <= sim_now or (self._stopping and self.cursor < sim_now):
            if self.queued_rows + n >= self.max_queue_rows:
                self.backpressure += 1
                break
            end = min(self.cursor + MAX_WINDOW, sim_now)
            for meter_id in self.worker.shard:
                rows = capture_rows(self.worker.meter_for_rows(meter_id), self.cursor, end, now)
                for table, r in rows.items():
                    if r:
                        batch[table] += r
                        n += len(r)
            self.cursor = end
            if n >= self.batch_rows:
                self._enqueue(batch, n)
                queued += n
                batch, n = {t: [] for t in TABLES}, 0
        if n:
            self._enqueue(batch, n)
            queued += n
        return queued

    def _next_boundary(self) -> float:
        """The first `step` boundary (IST-aligned, plus a second of margin) after the cursor."""
        step = self.step
        return (math.floor((self.cursor + IST_S) / step) + 1) * step - IST_S + 1.0

    def _enqueue(self, batch: dict[str, list[tuple]], n: int) -> None:
        self.queue.append(batch)
        self.queued_rows += n

    # -- writing -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_MIN
        while True:
            self.produce()
            try:
                await self._drain()
                delay = RETRY_MIN
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                self.errors += 1
                log.warning("ground truth: database unavailable (%s); spooling, retry in %.1fs", pg.one_line(e), delay)
                self._conn.drop()
                self._spool_queue()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if self._stopping and not self.queue and self.cursor >= self._stop_at:
                return
            await asyncio.sleep(TICK)

    async def _drain(self) -> None:
        """Write spooled batches (oldest first), then the queue."""
        spooled = sorted(self.spool_dir.glob("*.pkl"), key=lambda p: int(p.stem))
        for path in spooled:
            with open(path, "rb") as f:
                batch = pickle.load(f)
            await self._write(batch)
            path.unlink()
        while self.queue:
            batch = self.queue[0]
            await self._write(batch)
            self.queue.popleft()
            self.queued_rows -= sum(len(r) for r in batch.values())

    async def _write(self, batch: dict[str, list[tuple]]) -> None:
        conn = await self._conn.get()
        written, refused = await write_batch(conn, batch)
        for table, n in written.items():
            self.rows_written[table] += n
        for report in refused:
            log.error("ground truth row refused: %s", report)
        self.refused += len(refused)

    def _spool_queue(self) -> None:
        """Move every queued batch to the spool folder (atomically, in order)."""
        while self.queue:
            batch = self.queue.popleft()
            self.queued_rows -= sum(len(r) for r in batch.values())
            self._seq += 1
            path = self.spool_dir / f"{self._seq:012d}.pkl"
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                pickle.dump(batch, f, protocol=pickle.HIGHEST_PROTOCOL)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

    def flush_metrics(self, metrics) -> None:
        """Report counters to Prometheus (called from the worker's metrics task)."""
        reported = getattr(self, "_reported", None)
        if reported is None:
            reported = self._reported = {"rows": {t: 0 for t in TABLES}, "refused": 0, "bp": 0, "errors": 0}
        for table, n in self.rows_written.items():
            if n > reported["rows"][table]:
                metrics.DB_ROWS.labels(table).inc(n - reported["rows"][table])
                reported["rows"][table] = n
        for key, value, counter in (("refused", self.refused, metrics.DB_DISCARDED),
                                    ("bp", self.backpressure, metrics.DB_BACKPRESSURE),
                                    ("errors", self.errors, metrics.DB_ERRORS)):
            if value > reported[key]:
                counter.inc(value - reported[key])
                reported[key] = value


__all__ = ["COLUMNS", "GroundTruthWriter", "capture_rows", "write_batch"]
