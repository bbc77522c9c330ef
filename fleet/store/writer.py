"""The writer engine every table goes through (DESIGN.md, "Storage"; STYLE.md section 9).

`Writer` is the one loop: a task with one connection of its own that writes what its owner holds, in
passes, and waits between them (a set interval, or until the owner wakes it). Each family of tables is a
subclass that says what a pass writes (`Writer.write_due`); the loop, the connection, back-off, the
failure rule, logging and shutdown are here, once:

- A pass that cannot be written (the database or the link to it, the disk, the descriptor table:
  `TRANSIENT`) is kept by its writer (in memory, or spooled to disk where the writer has a spool:
  `Writer.keep`) and tried again with back-off on a new connection, before anything newer; it is never
  dropped.
- A row the database refuses for good (a constraint, a value it cannot take: `REFUSED`) is not a batch
  that cannot be written: the batch is written again row by row and each refused row is reported with
  its meter and time and counted (`write_batch`), the rest written.
- Any other failure is a fault of ours: counted, logged with its traceback, and the loop runs again
  after a back-off delay with everything it held. Only cancellation (after `Writer.close`'s time-out)
  ends the task.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import pickle
from collections.abc import Awaitable, Callable

import asyncpg

from fleet.store import sql
from fleet.store.pg import CONNECT_TIMEOUT, close_quietly, one_line

log = logging.getLogger(__name__)

_UTC = _dt.UTC
_from_ts = _dt.datetime.fromtimestamp


def timestamp(t: float | None) -> _dt.datetime | None:
    """A POSIX time as a timestamptz value; None (or NaN: not specified) as NULL."""
    return None if t is None or t != t else _from_ts(t, _UTC)


def rowcount(status: str) -> int:
    """Rows a command touched, from its status tag ("INSERT 0 5", "UPDATE 3")."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


# What makes a row unwritable on any connection: the database refuses it (a constraint, a value out
# of range) or asyncpg cannot encode it (COPY raises TypeError, ValueError or OverflowError; a query
# argument its client-side DataError, a ValueError).
REFUSED = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError, TypeError, ValueError, ArithmeticError)
# What makes a pass fail now and succeed later: the database or the link to it, the disk, the descriptor
# table (a spool file that cannot be pickled is the disk's business too).
TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, pickle.PicklingError)


async def write_batch(conn: asyncpg.Connection, batch: dict[str, list[tuple]],
                      columns: dict[str, tuple[str, ...]] = sql.PROFILE_COLUMNS) -> tuple[dict[str, int], list[str]]:
    """Write ``batch`` ({table: rows}, each table's COPY columns in ``columns``) idempotently; returns
    (rows inserted per table, reports of refused rows).

    COPY to staging and one INSERT ... ON CONFLICT DO NOTHING per table, in one transaction (a
    savepoint if the caller holds one open). If a row is refused (a constraint, a value out of
    range, a value of the wrong type that COPY cannot encode), the batch is written again row by row
    and each refused row is reported with its meter and capture time instead of being dropped
    silently, or stalling the writer that would retry the batch for ever.
    """
    try:
        return await _write_set(conn, batch, columns), []
    except REFUSED:
        pass
    written = {t: 0 for t in batch}
    refused: list[str] = []
    for table, rows in batch.items():
        query = sql.insert_one(table, columns[table])
        for row in rows:
            try:
                async with conn.transaction():
                    written[table] += rowcount(await conn.execute(query, *row))
            except REFUSED as e:
                where = f"meter {row[0]} at {row[1]}" if isinstance(row, tuple) and len(row) > 1 else repr(row)[:80]
                refused.append(f"{table}: {where}: {one_line(e)}")
    return written, refused


async def _write_set(conn: asyncpg.Connection, batch: dict[str, list[tuple]],
                     columns: dict[str, tuple[str, ...]]) -> dict[str, int]:
    written = {}
    async with conn.transaction():
        for table, rows in batch.items():
            if not rows:
                continue
            await conn.copy_records_to_table(sql.stage_of(table), records=rows, columns=columns[table])
            written[table] = rowcount(await conn.execute(sql.insert_staged(table, columns[table])))
    return written


class Backoff:
    """The delay before the next try of a failing writer: doubling from ``low`` up to ``high``."""

    __slots__ = ("low", "high", "delay")

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high, self.delay = low, high, low

    def next(self) -> float:
        """The delay to wait now (the next one doubles)."""
        delay = self.delay
        self.delay = min(delay * 2, self.high)
        return delay

    def reset(self) -> None:
        self.delay = self.low


class WriterConnection:
    """The one connection a writer task keeps: opened on demand with the session's staging tables,
    dropped (terminated) after an error so the next use opens a fresh one."""

    __slots__ = ("url", "setup_sql", "command_timeout", "conn")

    def __init__(self, url: str, setup_sql: str, command_timeout: float,
                 conn: asyncpg.Connection | None = None) -> None:
        self.url, self.setup_sql, self.command_timeout, self.conn = url, setup_sql, command_timeout, conn

    async def get(self) -> asyncpg.Connection:
        conn = self.conn
        if conn is None or conn.is_closed():
            conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT, command_timeout=self.command_timeout)
            try:
                await conn.execute(self.setup_sql)
            except BaseException:
                conn.terminate()
                raise
            self.conn = conn
        return conn

    def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    def take(self) -> asyncpg.Connection | None:
        """Hand the open connection over (to close it gracefully), forgetting it."""
        conn, self.conn = self.conn, None
        return conn

    async def close(self) -> None:
        """Close the connection gracefully (terminate it if that takes more than two seconds)."""
        conn = self.take()
        if conn is not None:
            await close_quietly(conn)


async def finish(task: asyncio.Task | None, timeout: float) -> None:
    """Let a writer ``task`` end by itself within ``timeout`` seconds; cancel it after that and wait for it."""
    if task is None or task.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - it was cancelled: how it ended is moot
            pass


async def serve_forever(serve: Callable[[], Awaitable[None]], on_fault: Callable[[Exception], float]) -> None:
    """Run a writer's loop ``serve`` until it returns; after any fault but cancellation ``on_fault(e)`` counts
    and reports it and says how long to wait before the loop runs again with what it holds (the one rule:
    a writer task never dies of a failure)."""
    while True:
        try:
            await serve()
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the writer must outlive any failure
            await asyncio.sleep(on_fault(e))


class Writer:
    """The writer engine: one task, one connection, passes of `write_due` with back-off on failure.

    A subclass holds the rows of its tables and writes what is due in `write_due`, taking the connection
    from ``conn.get()`` only when it has something to write; if the pass raises, what it took must be
    back where the next pass finds it (a failure is never a loss). Between passes the loop waits
    ``interval`` seconds (None: until `wake`), or less when `urgent` says a pass is due now. `close`
    lets the writer finish what it holds (`finished`) within a time-out.
    """

    RETRY = (0.1, 5.0)  # back-off bounds (seconds) of a failing writer

    def __init__(self, label: str, url: str, setup_sql: str, *, interval: float | None,
                 command_timeout: float = 30.0, retry: tuple[float, float] | None = None) -> None:
        self.label = label  # how the logs name this writer
        self.interval = interval
        self._conn = WriterConnection(url, setup_sql, command_timeout)
        self._backoff = Backoff(*(retry or self.RETRY))
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.closing = False
        self.failing = 0  # failed passes in a row
        self.errors = 0  # failed passes and faults, in all
        self.restarts = 0  # loop restarts after a fault of ours

    # -- what a family of tables says ------------------------------------------------------------------

    async def write_due(self, conn: WriterConnection) -> None:
        """Write what is due. Raising leaves what was taken for the next pass."""
        raise NotImplementedError

    def waiting(self) -> int:
        """Rows (or events) held and not written yet."""
        raise NotImplementedError

    def urgent(self) -> bool:
        """A pass is due now, without waiting for the interval."""
        return False

    def finished(self) -> bool:
        """Closing, the writer has nothing left to write."""
        return not self.waiting()

    def keep(self) -> None:
        """After a failed pass: put what is held somewhere safer if the writer has such a place (a spool)."""

    def failed(self, e: BaseException) -> None:
        """Count and report a failed pass (the first of a run of failures; the rest are counted only)."""
        self.errors += 1
        if self.failing == 1:
            log.warning("%s: cannot write (%s); %d waiting, retrying", self.label, one_line(e), self.waiting())

    def recovered(self) -> None:
        """Report that a pass went through after failures."""
        log.info("%s: writing again after %d failed attempt(s)", self.label, self.failing)

    # -- the task --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(serve_forever(self._serve, self._fault),
                                                            name=f"fleet-writer-{self.label}")

    @property
    def alive(self) -> bool:
        """The writer's task is running."""
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Run a pass now (the owner has something urgent)."""
        self._wake.set()

    async def close(self, timeout: float) -> None:
        """Write what is held within ``timeout`` seconds (cancel the task after that), close the connection."""
        self.closing = True
        self._wake.set()
        await finish(self._task, timeout)
        if self.waiting():
            log.warning("%s: stopped with %d unwritten", self.label, self.waiting())
        await self._conn.close()

    async def _serve(self) -> None:
        while True:
            try:
                await self.write_due(self._conn)
            except TRANSIENT as e:
                self.failing += 1
                self._conn.drop()
                self.failed(e)
                self.keep()
                await asyncio.sleep(self._backoff.next())
                continue
            if self.failing:
                self.recovered()
                self.failing = 0
            self._backoff.reset()
            if self.closing:
                if self.finished():
                    return
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            if self.urgent():
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass

    def _fault(self, e: Exception) -> float:
        """A fault of ours in a pass: counted, logged with its traceback; the loop runs again after a delay."""
        self.errors += 1
        self.restarts += 1
        delay = self._backoff.next()
        # Even reporting may fail (a log handler with no descriptor left): nothing here may end the task.
        try:
            self._conn.drop()
            log.error("%s: writer failed (%s); running it again in %.1f s with %d waiting", self.label,
                      one_line(e), delay, self.waiting(), exc_info=True)
        except Exception:  # noqa: BLE001, S110 - see above
            pass
        return delay
