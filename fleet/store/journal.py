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

A failed commit is retried with back-off on a new connection; the answers wait, the meters keep
serving everyone else. When a worker starts, `load` reads its shard's journal so that every meter is
built again as it was (`meter_core.journal.replay`).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg

from fleet.store import pg, sql
from meter_core import journal as mj
from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.obis import Obis, ln

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 30.0
RETRY_MIN, RETRY_MAX = 0.1, 5.0

JOURNAL_COLUMNS = ("meter_id", "sim_time", "meter_time", "source", "client_sap", "service", "class_id", "obis",
                   "index", "value", "result", "outcome", "replay", "command_id", "params")
SELECT_JOURNAL = """
SELECT meter_id, sim_time, source, service, class_id, obis, index, value, command_id, params
FROM meter_journal
WHERE meter_id >= $1 AND meter_id < $2 AND replay
ORDER BY meter_id, sim_time, seq"""

_UTC = _dt.UTC


def _ts(t: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(t, _UTC)


def _outcome(service: str, result: int) -> str:
    try:
        e = DataAccessResult(result) if service == "set" else ActionResult(result)
    except ValueError:
        return str(result)
    return e.name.lower().replace("_", "-")


def programmed_row(meter_id: int, ev) -> tuple:
    """The journal row of a `Programmed` event."""
    return (meter_id, ev.sim_time, _ts(ev.meter_time), "dlms", ev.client_sap, ev.service, ev.class_id,
            str(Obis.from_bytes(ev.obis)), ev.index, ev.value, ev.result, _outcome(ev.service, ev.result), ev.replay, None, None)


def injected_row(meter_id: int, sim_time: float, meter_time: float, action: str, command_id: int | None,
                 params: dict) -> tuple:
    """The journal row of a state change injected into a meter (`fleet inject`)."""
    return (meter_id, sim_time, _ts(meter_time), "inject", None, action, None, None, None, None, None, "applied",
            True, command_id, json.dumps(params))


@dataclass(slots=True)
class Loaded:
    """A shard's journal as read at start: per meter, what to replay (in order)."""

    entries: dict[int, list] = field(default_factory=lambda: defaultdict(list))
    # link faults: meter -> simulated time the link comes back (inf: until a restore)
    link_down: dict[int, float] = field(default_factory=dict)
    # injected commands already applied, per command: the meters they were applied to
    commands: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    last_time: dict[int, float] = field(default_factory=dict)  # per meter, its last entry's time
    future: int = 0  # entries after the run's start (a run that went further before), not replayed


async def load(url: str, shard: range, until: float) -> Loaded:
    """Read the journal of ``shard``: the entries up to simulated ``until`` to replay, link faults, commands."""
    out = Loaded()
    conn = await pg.connect(url, command_timeout=COMMAND_TIMEOUT)
    try:
        rows = await conn.fetch(SELECT_JOURNAL, shard.start, shard.stop)
    except asyncpg.UndefinedTableError:
        rows = []
    finally:
        await conn.close()
    for r in rows:
        mid, t = r["meter_id"], r["sim_time"]
        if t > until:
            out.future += 1
            continue
        out.last_time[mid] = t
        if r["command_id"] is not None:
            out.commands[r["command_id"]].add(mid)
        if r["source"] == "dlms":
            out.entries[mid].append(mj.Operation(t, r["service"], r["class_id"], ln(r["obis"]), r["index"],
                                                 bytes(r["value"] or b"")))
            continue
        params = r["params"]
        if isinstance(params, str):
            params = json.loads(params)
        params = params or {}
        action = r["service"]
        duration = params.get("duration_s")
        if action == "link-down":
            out.link_down[mid] = t + float(duration) if duration is not None else float("inf")
            continue
        if action == "restore":
            out.link_down.pop(mid, None)
        out.entries[mid].append(mj.Injected(t, action, float(duration) if duration is not None else None,
                                            params.get("factor"), params.get("code")))
    return out


class Journal:
    """Writes a worker's journal rows and urgent keys in group commits (one task, one connection)."""

    def __init__(self, url: str, worker) -> None:
        self.worker = worker
        self._conn = pg.WriterConnection(url, sql.CREATE_STAGING, COMMAND_TIMEOUT)
        self._rows: list[tuple] = []
        self._keys: set[int] = set()
        self._waiting: list[asyncio.Future] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self.rows_written = 0
        self.errors = 0
        self.commits = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fleet-journal")

    def record(self, rows: list[tuple]) -> None:
        """Rows no answer waits for (refused requests): written with the next commit."""
        self._rows += rows
        self._wake.set()

    def persist(self, rows: list[tuple], key_meters=()) -> asyncio.Future:
        """Rows (and the keys and counters of ``key_meters``) that must be committed before an answer;
        the future is done when they are."""
        self._rows += rows
        self._keys.update(key_meters)
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._wake.set()
        return fut

    @property
    def depth(self) -> int:
        return len(self._rows) + len(self._keys)

    async def _run(self) -> None:
        delay = RETRY_MIN
        failing = False
        while True:
            if not (self._rows or self._keys):
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            rows, keys, waiting = self._rows, self._keys, self._waiting
            self._rows, self._keys, self._waiting = [], set(), []
            try:
                await self._commit(rows, keys)
            except asyncio.CancelledError:
                self._rows, self._keys, self._waiting = rows + self._rows, keys | self._keys, waiting + self._waiting
                raise
            except Exception as e:  # noqa: BLE001 - everything is kept and tried again
                self._rows, self._keys, self._waiting = rows + self._rows, keys | self._keys, waiting + self._waiting
                self.errors += 1
                self._conn.drop()
                if not failing:
                    log.warning("journal: cannot write (%s); the meters' answers wait, retrying", pg.one_line(e))
                    failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if failing:
                log.info("journal: written again")
                failing = False
            delay = RETRY_MIN
            self.rows_written += len(rows)
            self.commits += 1
            for fut in waiting:
                if not fut.done():
                    fut.set_result(None)

    async def _commit(self, rows: list[tuple], key_meters: set[int]) -> None:
        from meter_core.device import keys

        written = []
        records = []
        for meter_id in key_meters:
            sec = self.worker.security_of(meter_id)
            if sec is not None:
                keys.reserve_counters(sec)
                mine = keys.rows(meter_id, sec)
                records += mine
                written.append((sec, mine))
        conn = await self._conn.get()
        async with conn.transaction():
            if rows:
                await conn.copy_records_to_table("meter_journal", records=rows, columns=JOURNAL_COLUMNS)
            if records:
                await conn.copy_records_to_table(sql.STAGE_KEYS, records=records, columns=sql.KEY_COLUMNS)
                await conn.execute(sql.UPSERT_KEYS)
        for sec, mine in written:
            keys.counters_written(sec, mine)

    async def close(self, timeout: float) -> None:
        """Write what waits within ``timeout`` seconds, then close the connection."""
        self._closing = True
        self._wake.set()
        await pg.finish(self._task, timeout)
        if self.depth:
            log.warning("journal stopped with %d row(s) unwritten", self.depth)
        for fut in self._waiting:
            if not fut.done():
                fut.cancel()
        await self._conn.close()


__all__ = ["Journal", "Loaded", "injected_row", "load", "programmed_row"]
