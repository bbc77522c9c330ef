"""The writer engine every table goes through: one task per writer with one connection of its own,
batches, back-off, and the one failure rule (DESIGN.md, "Storage"; STYLE.md section 9).

The rule: a batch that cannot be written is kept (in memory, or spooled to disk where the writer has a
spool) and retried with back-off on a new connection, before anything newer; it is never dropped, and
the writer task never dies of a failure. A row the database refuses for good (a constraint, a value it
cannot take) is not a batch that cannot be written: the batch is written again row by row and each
refused row is reported with its meter and time and counted (`write_batch`), the rest written.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
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
