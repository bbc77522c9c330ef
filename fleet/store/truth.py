"""Ground truth in PostgreSQL: every profile entry of the worker's meters, written as it happens.

A worker's `GroundTruthWriter` walks simulated time in steps: for each step (a window of simulated
time, the same for all meters) it computes, for every meter of the shard, the block-load, daily and
billing entries the meter captured in that window (`meter_core.groundtruth`, the same sources DLMS
reads use) plus an instantaneous snapshot at each block boundary, and queues the rows. One writer
task COPYs them in batches into per-session staging tables and inserts them with ON CONFLICT DO
NOTHING, so a batch written twice (a retry after a commit whose answer was lost) changes nothing.

- One continuous history per meter: each batch moves the shard's row in `capture_progress` to the
  end of its window in the same transaction as its rows. A writer starts where the shard's written
  history ends (`resume_point`; the run's start if some meter has none), so a worker restarted on
  its shard resumes instead of writing the run again, and a run started after an earlier one ended
  first writes the simulated time in between (one later than the clock waits for it).
- Bounded memory, no loss: rows are a pure function of the window, so when ``max_queue_rows`` rows
  wait in memory the producer simply does not advance (back-pressure is a metric:
  `fleet_db_writer_backpressure`, and `fleet_groundtruth_lag_seconds` grows).
- Database outage: a batch that fails to write is spooled to disk (one pickle file per batch in the
  worker's spool folder, written atomically, its window in its name) with everything queued after
  it, and the writer retries with back-off; when the database answers again the spool is written
  first, oldest first, then the queue. Nothing is lost and, thanks to the keys, nothing is written
  twice. If the spool cannot take them either (no descriptor left, disk full), the rows stay queued.
- The writer never dies: a failed step is logged as what it is (running out of descriptors is not a
  database outage), counted by reason (`fleet_groundtruth_errors`) and retried with back-off; a
  fault of ours restarts the loop (`fleet_groundtruth_restarts`) with what it holds. Its gauges
  (`fleet_groundtruth_rows_waiting`, `_spool_rows`, `_spool_files`, `_lag_seconds`) carry a
  ``shard`` label, apart from the connection recorder's.
- A row the database refuses (a CHECK, a NOT NULL) is reported with its meter and capture time in
  the log and counted (`fleet_db_writer_discarded`); the rest of its batch is written row by row.
  A spool file that cannot be read is set aside (``.corrupt``) and its window computed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import errno
import heapq
import logging
import math
import os
import pickle
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import asyncpg

from fleet.store import pg, sql
from fleet.store.writer import Writer, WriterConnection, finish, timestamp, write_batch
from meter_core.device import eventprofiles, logbook
from meter_core.device.clock import IST_S
from meter_core.device.groundtruth import billing_records, block_records, daily_records

log = logging.getLogger(__name__)
_monotonic = time.monotonic

# Profiles capture at most every 15 minutes (on IST quarter hours): a pass over the shard runs once a
# quarter-hour boundary has passed, so every capture is written within one pass of happening and a
# meter is computed once per period, not on every tick (a transient Meter costs ~0.2 ms to build).
STEP = 900.0
# Most simulated time one pass over the shard covers (bounds the rows a pass computes at once).
MAX_WINDOW = 86400.0
TICK = 0.2
# Longest stretch of row computation between two turns of the event loop (seconds): the meters'
# connections wait that long at most, plus one meter's rows for one window (a few ms for a day's window).
SLICE = 0.004
# Rows per COPY: asyncpg encodes a batch in the event loop, so a batch holds the meters for as long
# (bench.boundary: a client's longest wait 178 ms with 5 000-row batches, 47 ms with 1 000).
BATCH_ROWS = 1000
MAX_QUEUE_ROWS = 100_000
RETRY_MIN, RETRY_MAX = 0.2, 5.0



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
    out: dict[str, list[tuple]] = {t: [] for t in sql.PROFILE_TABLES}
    blocks, instants = out["block_load_profile"], out["instant_profile"]
    dec2, dec3 = _Decimals(2), _Decimals(3)
    for r in block_records(meter, sim_from, sim_to):
        i1, i2, i3 = r.avg_current_ma
        v1, v2, v3 = r.avg_voltage_cv
        stamp = timestamp(r.capture_time)
        blocks.append((
            mid, stamp, r.interval_seconds,
            _milli(i1) if p1 else None, _milli(i2) if p2 else None, _milli(i3) if p3 else None,
            dec2[v1] if p1 else None, dec2[v2] if p2 else None, dec2[v3] if p3 else None,
            *r.energy_wh,
        ))
        instants.append(_instant_row(meter, r.captured_at, stamp, phases, r.cumulative_wh, dec2, dec3))
    for r in daily_records(meter, sim_from, sim_to):
        out["daily_load_profile"].append((mid, timestamp(r.capture_time), *r.energy_wh))
    for e in eventprofiles.events_between(meter, sim_from, sim_to):
        out["event_logs"].append(event_row(meter, e, phases))
    out["eswf_status"] += esw_changes(meter, sim_from, sim_to)
    for r in billing_records(meter, sim_from, sim_to):
        out["billing_profile"].append((
            mid, timestamp(r.billing_time), r.billing_count, *r.energy_wh, r.md_w, timestamp(r.md_w_time), r.md_va,
            timestamp(r.md_va_time), _dec(r.average_pf_milli, 3), r.power_on_minutes,
        ))
    return out


def event_row(meter, e: logbook.Event, phases) -> tuple:
    """An event log entry, with the snapshot the voltage, current and other logs capture."""
    row = [meter.identity.meter_id, logbook.CATEGORY_NAMES[e.category], timestamp(eventprofiles.stamp_of(meter, e.time)), e.code]
    if e.category in (logbook.VOLTAGE, logbook.CURRENT, logbook.OTHER):
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
    return [(meter.identity.meter_id, timestamp(eventprofiles.stamp_of(meter, t)), eventprofiles.bitstring(after), sorted(after))
            for t, _before, after in eventprofiles.esw_changes(meter, sim_from, sim_to)]


def instant_row(meter, t: float, phases, cumulative_wh=None) -> tuple:
    """The instantaneous profile's values at true time ``t``, stamped with the meter clock then, rounded as
    served."""
    return _instant_row(meter, t, timestamp(meter.clock_at_sim(t)), phases, cumulative_wh, _Decimals(2), _Decimals(3))


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


def resume_point(shard: range, progress) -> float | None:
    """Where the continuous history of every meter of ``shard`` ends: the earliest, over the meters, of
    the furthest ``captured_until`` of a (meter_from, meter_to, captured_until) range holding the
    meter; None if some meter is in no range (or the shard is empty).

    A sweep over the ranges' ends (a max-heap of the ranges open at each point), not a loop over the
    meters: a shard of a million meters and thousands of backfill chunks costs milliseconds.
    """
    lo, hi = shard.start, shard.stop
    spans = sorted((max(a, lo), min(b, hi), t) for a, b, t in progress if a < hi and b > lo and t == t)
    if lo >= hi or not spans:
        return None
    # Between two consecutive ends the ranges holding a meter are the same: look at each end only.
    points = sorted({lo, *(a for a, _, _ in spans), *(b for _, b, _ in spans)})
    open_: list[tuple[float, int]] = []  # (-captured_until, meter_to) of the ranges begun so far
    result, i = math.inf, 0
    for at in points:
        if at >= hi:
            break
        while i < len(spans) and spans[i][0] <= at:
            heapq.heappush(open_, (-spans[i][2], spans[i][1]))
            i += 1
        while open_ and open_[0][1] <= at:
            heapq.heappop(open_)  # ended before this meter (ranges ended below the top go when they top it)
        if not open_:
            return None  # meter ``at`` has no recorded progress
        result = min(result, -open_[0][0])
    return result


class _Batch:
    """Rows of every meter of the shard, per table, captured in simulated time (sim_from, sim_to].

    Rows beyond sim_to may be there too (a window cut short by an error): they are real rows, written
    again later as no-ops; progress only ever claims up to sim_to.
    """

    __slots__ = ("rows", "n", "sim_from", "sim_to")

    def __init__(self, sim_from: float) -> None:
        self.rows: dict[str, list[tuple]] = {t: [] for t in sql.PROFILE_TABLES}
        self.n = 0
        self.sim_from = self.sim_to = sim_from


class _Spooled:
    """A batch in the spool folder: its file, rows, and window (None: a spool file of an older release)."""

    __slots__ = ("path", "seq", "n", "sim_from", "sim_to")

    def __init__(self, path: Path, seq: int, n: int, sim_from: float | None, sim_to: float | None) -> None:
        self.path, self.seq, self.n, self.sim_from, self.sim_to = path, seq, n, sim_from, sim_to

    @staticmethod
    def name(seq: int, batch: _Batch) -> str:
        # repr() of a float reads back exactly (float(repr(x)) == x), so the window survives a restart
        return f"{seq:012d}_{batch.n}_{batch.sim_from!r}_{batch.sim_to!r}.pkl"

    @classmethod
    def parse(cls, path: Path) -> _Spooled | None:
        parts = path.name[:-4].split("_")
        try:
            if len(parts) == 1:
                return cls(path, int(parts[0]), 0, None, None)  # NNNNNNNNNNNN.pkl, rows unknown
            if len(parts) == 4:
                return cls(path, int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3]))
        except ValueError:
            pass
        return None


# What a failed step was doing, for the log and the reason it is counted under.
_CONNECTING = "connecting to the database"
_READING_PROGRESS = "reading capture_progress"
_WRITING = "writing to the database"
_READING_SPOOL = "reading the spool"
_SPOOLING = "spooling"
_REMOVING = "removing a written spool file"
_OPENING_SPOOL = "opening the spool folder"
_DATABASE_STAGES = frozenset({_CONNECTING, _READING_PROGRESS, _WRITING})

_FD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
# A failure repeating with the same reason and step is logged again at most this often (wall seconds).
LOG_EVERY = 30.0


def failure_reason(e: BaseException, stage: str) -> tuple[str, str]:
    """(metric label, what to tell the operator) for a failure met while doing ``stage``.

    Running out of descriptors is said as such wherever it happens: the database is not at fault.
    """
    if isinstance(e, OSError) and e.errno in _FD_ERRNOS:
        return "too-many-open-files", "too many open files"
    if stage in _DATABASE_STAGES:
        if isinstance(e, asyncpg.PostgresError):
            return "database", "the database refused the write"
        return "database", "database unavailable"
    if stage in (_READING_SPOOL, _SPOOLING, _REMOVING, _OPENING_SPOOL):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return "spool", "no space left for the spool"
        return "spool", "spool unusable"
    return "internal", "internal error"


class GroundTruthWriter(Writer):
    """One per worker: produces its meters' captures in simulated-time order and writes them.

    A pass of the writer engine (`fleet.store.writer`, one task from `start`) produces what the clock
    made due, writes the spool (oldest first) and the queue; passes run a tick apart. A failed pass is
    logged as what it is, counted, and retried with back-off; its rows go to the spool, or stay in
    memory if the spool cannot take them either. A fault of ours restarts the loop (counted, logged
    with its traceback) with everything it held. Only cancellation ends the task, apart from `close`.
    """

    def __init__(self, url: str, *, shard: range, clock, start: float, meter_for_rows: Callable[[int], object],
                 spool_dir: Path, step: float = STEP, batch_rows: int = BATCH_ROWS,
                 max_queue_rows: int = MAX_QUEUE_ROWS) -> None:
        label = f"{shard.start}-{shard.stop}"  # the shard, as metrics and logs name it
        super().__init__(f"ground truth {label}", url, sql.CREATE_PROFILE_STAGING, interval=TICK,
                         retry=(RETRY_MIN, RETRY_MAX))
        self.url = url
        self.shard = shard
        self.clock = clock  # the worker's simulated clock
        self.meter_for_rows = meter_for_rows  # meter_id -> the meter whose captures are computed
        self.label = label
        self.spool_dir = spool_dir
        self.step = step
        self.batch_rows = batch_rows
        self.max_queue_rows = max_queue_rows
        # Simulated time up to which rows are produced: the run's start until the task has read where
        # the shard's written history ends (`resume_point`), then that.
        self.cursor = start
        self.resumed_from: float | None = None  # the cursor read from capture_progress (None: none yet)
        self.captured_until: float | None = None  # the last progress this writer committed
        self.queue: deque[_Batch] = deque()
        self.queued_rows = 0
        self.spool_rows = 0  # rows in spool files of this release (older ones do not say)
        self.rows_written = {t: 0 for t in sql.PROFILE_TABLES}
        self.refused = 0
        self.backpressure = 0
        self.errors_by_reason: dict[str, int] = {}  # failed steps by reason (`errors`: all reasons)
        self.spooled_rows = 0  # rows moved to the spool, in all
        self._spool: deque[_Spooled] | None = None  # read from the folder by the task, lazily
        self._seq = 0
        self._resumed = False
        self._claims = bool(self.shard)  # record progress (off for an empty shard, or a database without 0015)
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}
        self._stage = ""
        self._stop_at = math.inf
        self._reported: dict | None = None
        self._gauges: tuple | None = None

    async def close(self, timeout: float) -> None:
        """Produce up to now and write what can be written within most of ``timeout``, spool the rest.
        A window cut short claims nothing: the next worker of the shard computes it again from the
        recorded progress (a shard of hundreds of thousands of meters takes minutes of computation per
        window, a stop seconds)."""
        self._stop_at = self.clock.sim(time.monotonic())  # the captures up to the stop, no further
        self.closing = True
        self.wake()
        await finish(self._task, timeout * 0.7)  # the rest is for spooling what is held
        if self.queue:
            try:
                self._spool_queue()
            except Exception as e:  # noqa: BLE001 - the stop goes on; the rows can be computed again
                reason, what = failure_reason(e, self._stage)
                self._count(reason)
                _report(logging.ERROR, "ground truth %s: %s (%s: %s) at the stop; %d rows not written or spooled: "
                        "the next worker on this shard computes them again from the recorded progress", self.label,
                        what, self._stage, pg.one_line(e), self.queued_rows)
        self._conn.drop()

    @property
    def lag(self) -> float:
        """Simulated seconds of captures due that the producer has not computed: how far its cursor is
        behind the clock once a step boundary has passed it (0 while it is up to date)."""
        sim_now = self.clock.sim(time.monotonic())
        if self._next_boundary() > sim_now:
            return 0.0
        return max(0.0, sim_now - self.cursor)

    @property
    def rows_waiting(self) -> int:
        """Rows produced and not written yet: queued in memory plus spooled on disk."""
        return self.queued_rows + self.spool_rows

    @property
    def spool_files(self) -> int:
        return len(self._spool) if self._spool is not None else 0

    # -- producing ---------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Compute one block of rows for one meter of each kind in the shard, at start: the first meter of
        a kind builds its object model and the load and supply caches (tens of ms that no slice can cut),
        which a pass must not pay while head-ends wait."""
        seen = set()
        now = time.monotonic()
        t = self.clock.sim(now)
        for meter_id in self.shard[:1000]:
            meter = self.meter_for_rows(meter_id)
            if meter.identity.kind not in seen:
                seen.add(meter.identity.kind)
                capture_rows(meter, t - STEP, t, now)

    def produce(self) -> int:
        """Advance the cursor towards simulated now while the queue has room; returns rows queued.

        The cursor moves once at least `step` simulated seconds have passed, by at most `MAX_WINDOW`
        per pass over the shard, so a pass costs one computation per meter whatever the speed. A
        window advances the cursor only once every meter's rows of it are computed: an error in the
        middle leaves the cursor at the window's start (the rows computed before it are queued).
        """
        steps = self._producing()
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    async def _produce(self) -> int:
        """`produce`, letting the event loop run after every `SLICE` of computation: a pass over a shard of
        thousands of meters takes a good part of a second (of a minute at a million meters), which the
        meters' connections and calls must not wait for."""
        steps = self._producing()
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            await asyncio.sleep(0)
            # A window of a large shard is more rows than the queue should hold: what it has handed over
            # is written between its slices, while the database keeps up. A failing writer does not
            # (the window then completes in memory and goes to the spool once, with its claim).
            if self.failing == 0 and self.queued_rows >= self.batch_rows:
                await self._drain()

    def _producing(self):
        """`produce` as a generator that pauses (yields) once it has computed for `SLICE` seconds."""
        if not self._resumed:
            return 0
        now = time.monotonic()
        sim_now = self.clock.sim(now)
        if self.closing:
            sim_now = min(sim_now, self._stop_at)
        queued = 0
        batch: _Batch | None = None
        try:
            while self._next_boundary() <= sim_now or (self.closing and self.cursor < sim_now):
                if self.queued_rows + (batch.n if batch is not None else 0) >= self.max_queue_rows:
                    self.backpressure += 1
                    break
                end = min(self.cursor + MAX_WINDOW, sim_now)
                if batch is None:
                    batch = _Batch(self.cursor)
                start = self.cursor
                deadline = _monotonic() + SLICE
                for meter_id in self.shard:
                    if _monotonic() >= deadline:
                        if batch.n >= self.batch_rows:
                            # handed over before the window ends: it claims nothing (sim_to = sim_from); the
                            # window's last batch claims it, and the queue is written in order
                            queued += self._enqueue(batch)
                            batch = _Batch(start)
                        yield
                        deadline = _monotonic() + SLICE
                    rows = batch.rows
                    for table, r in capture_rows(self.meter_for_rows(meter_id), start, end, now).items():
                        if r:
                            rows[table] += r
                            batch.n += len(r)
                self.cursor = batch.sim_to = end
                if batch.n >= self.batch_rows:
                    queued += self._enqueue(batch)
                    batch = None
        finally:
            if batch is not None:
                queued += self._enqueue(batch)
        return queued

    def _next_boundary(self) -> float:
        """The first `step` boundary (IST-aligned, plus a second of margin) after the cursor."""
        step = self.step
        return (math.floor((self.cursor + IST_S) / step) + 1) * step - IST_S + 1.0

    def _enqueue(self, batch: _Batch) -> int:
        """Queue ``batch``; one with no rows only moves the progress, so it extends the last queued batch
        when that one ends where it starts."""
        if not batch.n:
            if batch.sim_to <= batch.sim_from:
                return 0
            if self.queue and self.queue[-1].sim_to == batch.sim_from:
                self.queue[-1].sim_to = batch.sim_to
                return 0
        self.queue.append(batch)
        self.queued_rows += batch.n
        return batch.n

    # -- writing -------------------------------------------------------------------------------------

    def waiting(self) -> int:
        return self.rows_waiting

    def finished(self) -> bool:
        return not self._resumed or (not self.queue and self.cursor >= self._stop_at)

    async def write_due(self, conn: WriterConnection) -> None:
        # What an earlier worker of this shard spooled is written before reading where the history
        # ends, so that it counts (a run started after that worker's end then fills the gap).
        if not self._resumed:
            if self.closing:
                return
            await self._drain()
            await self._resume()
        self._stage = ""
        await self._produce()
        await self._drain()

    def keep(self) -> None:
        self._try_spool()

    def failed(self, e: BaseException) -> None:
        self._failed(e)

    def recovered(self) -> None:
        log.info("ground truth %s: writing again after %d failed attempt(s)", self.label, self.failing)
        self._logged.clear()

    def _fault(self, e: Exception) -> float:
        self.restarts += 1
        self._count("internal")
        delay = self._backoff.next()
        # Even reporting may fail (a log handler with no descriptor left): nothing here may end the task.
        with contextlib.suppress(Exception):
            self._conn.drop()
        _report(logging.ERROR, "ground truth %s: writer failed%s (%s); restarting it in %.1f s with %d rows "
                "waiting", self.label, f" while {self._stage}" if self._stage else "", pg.one_line(e), delay,
                self.rows_waiting, exc_info=True)
        return delay

    async def _resume(self) -> None:
        """Set the cursor where the shard's written history ends (the run's start if it has none)."""
        self._stage = _CONNECTING
        conn = await self._conn.get()
        self._stage = _READING_PROGRESS
        try:
            progress = await conn.fetch(sql.SELECT_PROGRESS, self.shard.start, self.shard.stop)
        except asyncpg.UndefinedTableError:
            log.warning("ground truth %s: the database has no capture_progress table (run `fleet db migrate`): "
                        "writing from the run's start, progress not recorded", self.label)
            progress, self._claims = [], False
        found = resume_point(self.shard, [(r[0], r[1], r[2]) for r in progress])
        if found is not None:
            self.cursor = found
        self.resumed_from = self.cursor
        self._resumed = True
        log.info("ground truth %s: writing from %s (%s)", self.label, _when(self.cursor),
                 "where its history ends" if found is not None else "the run's start")

    async def _drain(self) -> None:
        """Write spooled batches (oldest first), then the queue."""
        spool = self._spool_ready()
        while spool:
            entry = spool[0]
            self._stage = _READING_SPOOL
            try:
                with open(entry.path, "rb") as f:
                    rows = pickle.load(f)
                if not _is_rows(rows):
                    raise pickle.UnpicklingError(f"not a batch of rows: {type(rows).__name__}")
            except FileNotFoundError as e:
                self._lost(entry, e)
                continue
            except OSError:
                raise  # the file is there and could not be read now (no descriptor, I/O): retried
            except Exception as e:  # noqa: BLE001 - whatever unpickling raises, the file is unusable
                self._lost(entry, e)
                continue
            claim = entry.sim_to if entry.sim_from is not None and entry.sim_to > entry.sim_from else None
            await self._commit(rows, claim)
            self._stage = _REMOVING
            entry.path.unlink(missing_ok=True)
            spool.popleft()
            self.spool_rows -= entry.n
        while self.queue:
            batch = self.queue[0]
            await self._commit(batch.rows, batch.sim_to if batch.sim_to > batch.sim_from else None)
            self.queue.popleft()
            self.queued_rows -= batch.n

    async def _commit(self, rows: dict[str, list[tuple]], claim: float | None) -> None:
        """Write ``rows`` and, in the same transaction, move the shard's progress to ``claim``."""
        self._stage = _CONNECTING
        conn = await self._conn.get()
        self._stage = _WRITING
        async with conn.transaction():
            written, refused = await write_batch(conn, rows)
            if claim is not None and self._claims:
                await conn.execute(sql.RECORD_PROGRESS, self.shard.start, self.shard.stop, claim)
        if claim is not None:
            self.captured_until = claim if self.captured_until is None else max(self.captured_until, claim)
        for table, n in written.items():
            self.rows_written[table] += n
        for report in refused:
            log.error("ground truth row refused: %s", report)
        self.refused += len(refused)

    def _spool_ready(self, *, writing: bool = False) -> deque[_Spooled]:
        """The spool's batches, read from its folder the first time (stale partial files removed).

        A folder that is not there and cannot be made holds no batch to write before the queue: the
        database writes go on without it (spooling fails, so rows wait in memory).
        """
        if self._spool is not None:
            return self._spool
        self._stage = _OPENING_SPOOL
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            if writing or self.spool_dir.exists():
                raise
            return deque()
        found: list[_Spooled] = []
        for path in self.spool_dir.iterdir():
            if path.suffix == ".tmp":
                path.unlink(missing_ok=True)  # a spool write cut short: its batch was still queued
            elif path.suffix == ".pkl":
                entry = _Spooled.parse(path)
                if entry is None:
                    log.warning("ground truth %s: ignoring %s (not a spool file name)", self.label, path)
                else:
                    found.append(entry)
        found.sort(key=lambda e: e.seq)
        self._seq = max(self._seq, found[-1].seq if found else 0)
        self.spool_rows = sum(e.n for e in found)
        self._spool = deque(found)
        return self._spool

    def _try_spool(self) -> None:
        """Spool the queue if the disk takes it; if not, the rows stay in memory (counted, logged)."""
        if not self.queue:
            return
        try:
            self._spool_queue()
        except Exception as e:  # noqa: BLE001 - the rows stay queued; the producer stops at max_queue_rows
            self._failed(e)

    def _spool_queue(self) -> None:
        """Move every queued batch to the spool folder (atomically, in order)."""
        spool = self._spool_ready(writing=True)
        self._stage = _SPOOLING
        while self.queue:
            batch = self.queue[0]
            seq = self._seq + 1
            path = self.spool_dir / _Spooled.name(seq, batch)
            tmp = path.with_suffix(".tmp")
            try:
                with open(tmp, "wb") as f:
                    pickle.dump(batch.rows, f, protocol=pickle.HIGHEST_PROTOCOL)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                raise
            self._seq = seq
            self.queue.popleft()
            self.queued_rows -= batch.n
            spool.append(_Spooled(path, seq, batch.n, batch.sim_from, batch.sim_to))
            self.spool_rows += batch.n
            self.spooled_rows += batch.n

    def _lost(self, entry: _Spooled, e: BaseException) -> None:
        """A spool file that is gone or unreadable: set it aside and compute its window again.

        Nothing after it was written (the spool is written in order), so the cursor goes back to its
        window's start; the later spool files and the queue are dropped, their rows computed again
        too, so that the progress recorded never passes rows that are not in the database.
        """
        self._count("spool")
        spool = self._spool
        spool.popleft()
        self.spool_rows -= entry.n
        with contextlib.suppress(OSError):
            entry.path.rename(entry.path.with_suffix(".corrupt"))
        if entry.sim_from is None:
            _report(logging.ERROR, "ground truth %s: spool file %s is unreadable (%s) and does not say its window: "
                    "its rows are lost", self.label, entry.path, pg.one_line(e))
            return
        later, queued = len(spool), self.queued_rows
        for other in spool:
            other.sim_from = None  # claims nothing any more, even if its removal fails below
        self.queue.clear()
        self.queued_rows = 0
        self.cursor = min(self.cursor, entry.sim_from)
        _report(logging.ERROR, "ground truth %s: spool file %s is unreadable (%s); computing its rows again from %s "
                "(and the %d rows queued and %d spool files after it)", self.label, entry.path, pg.one_line(e),
                _when(entry.sim_from), queued, later)
        self._stage = _REMOVING
        while spool:
            spool[0].path.unlink(missing_ok=True)
            self.spool_rows -= spool.popleft().n

    def _count(self, reason: str) -> None:
        self.errors += 1
        self.errors_by_reason[reason] = self.errors_by_reason.get(reason, 0) + 1

    def _failed(self, e: BaseException) -> None:
        """Count a failed step and log it as what it is (a repeat of the same at most every LOG_EVERY s)."""
        stage = self._stage
        reason, what = failure_reason(e, stage)
        self._count(reason)
        key = (reason, stage)
        now = time.monotonic()
        last, repeats = self._logged.get(key, (-math.inf, 0))
        if now - last < LOG_EVERY:
            self._logged[key] = (last, repeats + 1)
            return
        self._logged[key] = (now, 0)
        again = f" ({repeats} more like it since the last report)" if repeats else ""
        _report(logging.WARNING, "ground truth %s: %s (%s: %s)%s; %d rows in memory, %d spooled, retry in %.1f s",
                self.label, what, stage, pg.one_line(e), again, self.queued_rows, self.spool_rows, self._backoff.delay)

    # -- metrics -------------------------------------------------------------------------------------

    def flush_metrics(self, metrics) -> None:
        """Report gauges and counters to Prometheus (called from the worker's metrics task)."""
        gauges = self._gauges
        if gauges is None:
            gauges = self._gauges = tuple(g.labels(self.label) for g in (
                metrics.GROUNDTRUTH_ROWS_WAITING, metrics.GROUNDTRUTH_SPOOL_ROWS, metrics.GROUNDTRUTH_SPOOL_FILES,
                metrics.GROUNDTRUTH_LAG))
        waiting, spool_rows, spool_files, lag = gauges
        waiting.set(self.rows_waiting)
        spool_rows.set(self.spool_rows)
        spool_files.set(self.spool_files)
        lag.set(self.lag)
        reported = self._reported
        if reported is None:
            reported = self._reported = {"rows": {t: 0 for t in sql.PROFILE_TABLES}, "reasons": {}, "refused": 0, "bp": 0,
                                         "errors": 0, "spooled": 0, "restarts": 0}
        for table, n in self.rows_written.items():
            if n > reported["rows"][table]:
                metrics.DB_ROWS.labels(table).inc(n - reported["rows"][table])
                reported["rows"][table] = n
        for reason, n in self.errors_by_reason.items():
            done = reported["reasons"].get(reason, 0)
            if n > done:
                metrics.GROUNDTRUTH_ERRORS.labels(reason).inc(n - done)
                reported["reasons"][reason] = n
        for key, value, counter in (("refused", self.refused, metrics.DB_DISCARDED),
                                    ("bp", self.backpressure, metrics.DB_BACKPRESSURE),
                                    ("errors", self.errors, metrics.DB_ERRORS),
                                    ("spooled", self.spooled_rows, metrics.GROUNDTRUTH_SPOOLED),
                                    ("restarts", self.restarts, metrics.GROUNDTRUTH_RESTARTS)):
            if value > reported[key]:
                counter.inc(value - reported[key])
                reported[key] = value


def _when(t: float) -> str:
    """A simulated time for the log (any float: a time out of datetime's range is shown as a number)."""
    try:
        return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return repr(t)


def _report(level: int, msg: str, *args, **kw) -> None:
    """Log a failure of the writer; a log handler that fails too (no descriptor left for its file or
    terminal) costs the line, never the writer."""
    with contextlib.suppress(Exception):
        log.log(level, msg, *args, **kw)


def _is_rows(obj) -> bool:
    """A spooled batch as written: {table: list of row tuples} for tables we write."""
    return type(obj) is dict and all(t in sql.PROFILE_COLUMNS and type(r) is list for t, r in obj.items())


__all__ = ["GroundTruthWriter", "capture_rows", "resume_point"]
