"""A worker's journal: what must be in PostgreSQL before a meter answers, and what it replays at start.

Three things are written here, by one task with its own connection, in group commits (everything
waiting goes in one transaction, so a burst of head-end requests costs one round trip):

- journal rows (``meter_journal``): every SET and ACTION a head-end made (`meter_core.events.Programmed`)
  and every state change an operator injected, with its true time. Those that changed a meter are
  written before the meter's answer goes out (the actor holds the answer until then); the others
  (refusals) go in the next commit without anyone waiting;
- the keys and counters of a meter whose keys a head-end changed, or that accepted an invocation
  counter past what is durable (`meter_core.keys.reserve_counters`): also before the answer;
- nothing else (profiles go through the ground-truth writer, connections through the recorder).

A failed commit is retried with back-off on a new connection (the writer engine's rule,
`fleet.store.writer`); the answers wait, the meters keep serving everyone else. When a worker starts, `fetch` reads its shard's journal so that every meter is
built again as it was (`meter_core.session.journal.replay`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from fleet.store import pg, sql
from fleet.store.writer import REFUSED, Writer, WriterConnection, timestamp
from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.obis import Obis
from meter_core.device import keys

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 30.0
RETRY_MIN, RETRY_MAX = 0.1, 5.0



def _outcome(service: str, result: int) -> str:
    try:
        e = DataAccessResult(result) if service == "set" else ActionResult(result)
    except ValueError:
        return str(result)
    return e.name.lower().replace("_", "-")


def programmed_row(meter_id: int, ev) -> tuple:
    """The journal row of a `Programmed` event."""
    return (meter_id, ev.sim_time, timestamp(ev.meter_time), "dlms", ev.client_sap, ev.service, ev.class_id,
            str(Obis.from_bytes(ev.obis)), ev.index, ev.value, ev.result, _outcome(ev.service, ev.result), ev.replay, None, None)


def injected_row(meter_id: int, sim_time: float, meter_time: float, action: str, command_id: int | None,
                 params: dict) -> tuple:
    """The journal row of a state change injected into a meter (`fleet inject`)."""
    return (meter_id, sim_time, timestamp(meter_time), "inject", None, action, None, None, None, None, None, "applied",
            True, command_id, json.dumps(params))


async def fetch(url: str, shard: range) -> list:
    """The journal rows of ``shard`` to replay, in order (none from a database without the table)."""
    return await pg.fetch_all(url, sql.SELECT_JOURNAL, shard.start, shard.stop, command_timeout=COMMAND_TIMEOUT)


class Journal(Writer):
    """Writes a worker's journal rows and urgent keys in group commits (the engine, `fleet.store.writer`: one
    task, one connection): a pass commits everything waiting, whoever waits for it."""

    RETRY = (RETRY_MIN, RETRY_MAX)

    def __init__(self, url: str, security_of: Callable[[int], object | None]) -> None:
        super().__init__("journal", url, sql.CREATE_STAGING, interval=None, command_timeout=COMMAND_TIMEOUT)
        self._security_of = security_of  # a meter's keys and counters (None: it has none)
        self._rows: list[tuple] = []
        self._keys: set[int] = set()
        self._waiting: list[asyncio.Future] = []
        self.rows_written = 0
        self.commits = 0
        self.refused = 0  # rows the database would never take (reported, left out)

    def record(self, rows: list[tuple]) -> None:
        """Rows no answer waits for (refused requests): written with the next commit."""
        self._rows += rows
        self.wake()

    def persist(self, rows: list[tuple], key_meters=()) -> asyncio.Future:
        """Rows (and the keys and counters of ``key_meters``) that must be committed before an answer;
        the future is done when they are."""
        self._rows += rows
        self._keys.update(key_meters)
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self.wake()
        return fut

    @property
    def depth(self) -> int:
        return self.waiting()

    def waiting(self) -> int:
        return len(self._rows) + len(self._keys)

    def urgent(self) -> bool:
        return bool(self._rows or self._keys)

    async def write_due(self, conn: WriterConnection) -> None:
        if not (self._rows or self._keys):
            return
        rows, keys, waiting = self._rows, self._keys, self._waiting
        self._rows, self._keys, self._waiting = [], set(), []
        left_out = 0
        try:
            try:
                await self._commit(conn, rows, keys)
            except REFUSED:
                # a row the database will never take (the one rule, `fleet.store.writer`): the rest are
                # written one by one and the answers waiting for them go out, instead of waiting for ever
                conn.drop()
                left_out = await self._commit_isolated(conn, rows, keys)
        except BaseException:
            self._rows, self._keys, self._waiting = rows + self._rows, keys | self._keys, waiting + self._waiting
            raise
        self.rows_written += len(rows) - left_out
        self.commits += 1
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)

    async def _commit(self, conn: WriterConnection, rows: list[tuple], key_meters: set[int]) -> None:
        written = []
        records = []
        for meter_id in key_meters:
            sec = self._security_of(meter_id)
            if sec is not None:
                keys.reserve_counters(sec)
                mine = keys.rows(meter_id, sec)
                records += mine
                written.append((sec, mine))
        db = await conn.get()
        async with db.transaction():
            if rows:
                await db.copy_records_to_table("meter_journal", records=rows, columns=sql.JOURNAL_COLUMNS)
            if records:
                await db.copy_records_to_table(sql.STAGE_KEYS, records=records, columns=sql.KEY_COLUMNS)
                await db.execute(sql.UPSERT_KEYS)
        for sec, mine in written:
            keys.counters_written(sec, mine)

    async def _commit_isolated(self, conn: WriterConnection, rows: list[tuple], key_meters: set[int]) -> int:
        """`_commit` with each journal row in a transaction of its own: a row the database refuses is
        reported with its meter and time, counted, and left out. Returns how many were left out."""
        left_out = 0
        await self._commit(conn, [], key_meters)
        db = await conn.get()
        query = sql.insert_one("meter_journal", sql.JOURNAL_COLUMNS)
        for row in rows:
            try:
                async with db.transaction():
                    await db.execute(query, *row)
            except REFUSED as e:
                left_out += 1
                log.error("journal: row of meter %s at %s refused and left out: %s", row[0], row[1], pg.one_line(e))
        self.refused += left_out
        return left_out

    async def close(self, timeout: float) -> None:
        """Write what waits within ``timeout`` seconds, then close the connection; answers still waiting
        are cancelled."""
        await super().close(timeout)
        for fut in self._waiting:
            if not fut.done():
                fut.cancel()


__all__ = ["Journal", "fetch", "injected_row", "programmed_row"]
