"""Runtime commands to a running fleet through PostgreSQL: a commands table plus LISTEN/NOTIFY.

`fleet inject` inserts a row into ``fleet_commands``; a trigger notifies channel ``fleet_commands``
with its id. Each worker keeps one connection listening on it: on a notification (and after a
reconnect, for what it missed) it reads the commands newer than the last it applied, applies each to
the meters of its shard the command selects, and records how many in ``fleet_command_results``.
A worker that starts (a fleet started again, a worker restarted after a crash) first replays the
commands issued before, each at the simulated time a worker first applied it (or now, if none has:
one issued while the fleet was starting), so a power failure, tamper or link fault still in force is
in force for it too (the meters' state is the commands').

Which meters: those of the region (``first_meter``..``last_meter``, inclusive) whose seeded draw for
the command falls under ``share``: the same meters in every worker and run, a different set per
command.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
from dataclasses import dataclass, field

import asyncpg

from fleet.store import pg
from meter_core.device.identity import stable_hash

log = logging.getLogger(__name__)

CHANNEL = "fleet_commands"
ACTIONS = ("power-failure", "restore", "tamper", "link-down", "load-change")
_DRAW = 1 << 32

_LAST = "SELECT coalesce(max(command_id), 0) FROM fleet_commands"
_EARLIER = """SELECT c.command_id, c.action, c.first_meter, c.last_meter, c.share, c.params,
                     extract(epoch FROM min(r.sim_at)) AS sim_at
              FROM fleet_commands c LEFT JOIN fleet_command_results r USING (command_id)
              WHERE c.command_id <= $1 GROUP BY c.command_id ORDER BY c.command_id"""
_NEWER = """SELECT command_id, action, first_meter, last_meter, share, params
            FROM fleet_commands WHERE command_id > $1 ORDER BY command_id"""
_RESULT = """INSERT INTO fleet_command_results (command_id, shard_start, shard_stop, meters, sim_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (command_id, shard_start) DO NOTHING"""
_ISSUE = """INSERT INTO fleet_commands (action, first_meter, last_meter, share, params)
            VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING command_id"""
_RESULTS = "SELECT count(*), coalesce(sum(meters), 0) FROM fleet_command_results WHERE command_id = $1"


@dataclass(frozen=True, slots=True)
class Command:
    command_id: int
    action: str
    first_meter: int | None
    last_meter: int | None
    share: float
    params: dict = field(default_factory=dict)

    def selects(self, seed: int, meter_id: int) -> bool:
        """Whether this command reaches meter ``meter_id``."""
        if self.first_meter is not None and meter_id < self.first_meter:
            return False
        if self.last_meter is not None and meter_id > self.last_meter:
            return False
        if self.share >= 1.0:
            return True
        return stable_hash("inject", seed, self.command_id, meter_id) % _DRAW < self.share * _DRAW

    def meters(self, seed: int, ids: range) -> list[int]:
        lo = ids.start if self.first_meter is None else max(ids.start, self.first_meter)
        hi = ids.stop if self.last_meter is None else min(ids.stop, self.last_meter + 1)
        return [m for m in range(lo, hi) if self.selects(seed, m)]

    @classmethod
    def from_row(cls, r) -> Command:
        params = r["params"]
        if isinstance(params, str):
            params = json.loads(params)
        return cls(r["command_id"], r["action"], r["first_meter"], r["last_meter"], r["share"], params or {})


class CommandListener:
    """A worker's connection on ``fleet_commands``: calls ``apply(command) -> (meters, sim_time)`` for each
    command newer than the worker's start, in order, and records the result."""

    def __init__(self, url: str, shard: range, apply, replay, durable=None) -> None:
        self.url = url
        self.shard = shard
        self.apply = apply
        # replay(command, sim_at or None) -> (simulated time, meters): an earlier command, at the time a
        # worker first applied it (None: none has yet)
        self.replay = replay
        self.durable = durable  # awaited before a result is recorded: the meters' journal has the command
        self.last = None
        self._wake = asyncio.Event()
        self.applied = 0

    async def run(self) -> None:
        """Listen until cancelled; reconnect (and catch up) when the connection is lost."""
        delay = 0.5
        while True:
            conn = None
            try:
                conn = await pg.connect(self.url)
                if self.last is None:
                    last = await conn.fetchval(_LAST)
                    await self._replay(conn, last)
                    self.last = last
                await conn.add_listener(CHANNEL, self._notified)
                delay = 0.5
                while not conn.is_closed():
                    await self._catch_up(conn)
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), 5.0)  # a periodic look covers a lost notify
                    except TimeoutError:
                        pass
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
                log.warning("commands: %s; listening again in %.1f s", pg.one_line(e), delay)
            finally:
                if conn is not None and not conn.is_closed():
                    try:
                        await asyncio.wait_for(conn.close(), 2.0)
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                        conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _replay(self, conn, last: int) -> None:
        """The commands up to ``last`` issued before this worker listened: each as of the time a worker
        first applied it, or now if none has yet (issued while the fleet was starting); answered for
        this shard like the new ones."""
        count = 0
        for row in await conn.fetch(_EARLIER, last):
            cmd = Command.from_row(row)
            try:
                sim_t, n = self.replay(cmd, None if row["sim_at"] is None else float(row["sim_at"]))
            except Exception:  # a command that fails on one meter must not stop the worker
                log.exception("replaying command %d (%s) failed", cmd.command_id, cmd.action)
                continue
            count += n
            when = _dt.datetime.fromtimestamp(sim_t, _dt.UTC)
            if self.durable is not None:
                await self.durable()
            await conn.execute(_RESULT, cmd.command_id, self.shard.start, self.shard.stop, n, when)
        if count:
            log.info("commands issued before this worker listened: applied to %d meter(s)", count)

    def _notified(self, conn, pid, channel, payload) -> None:
        self._wake.set()

    async def _catch_up(self, conn) -> None:
        for row in await conn.fetch(_NEWER, self.last):
            cmd = Command.from_row(row)
            try:
                count, sim_t = self.apply(cmd)
            except Exception:  # a command that fails on one meter must not stop the worker
                log.exception("command %d (%s) failed", cmd.command_id, cmd.action)
                count, sim_t = 0, None
            self.last = cmd.command_id
            self.applied += 1
            if self.durable is not None:
                await self.durable()
            when = _dt.datetime.fromtimestamp(sim_t if sim_t is not None else 0.0, _dt.UTC)
            await conn.execute(_RESULT, cmd.command_id, self.shard.start, self.shard.stop, count, when)


async def issue(url: str, action: str, *, first: int | None, last: int | None, share: float,
                params: dict) -> int:
    conn = await pg.connect(url)
    try:
        return await conn.fetchval(_ISSUE, action, first, last, share, json.dumps(params))
    finally:
        await conn.close()


async def results(url: str, command_id: int) -> tuple[int, int]:
    """(workers that applied command ``command_id``, meters they reached)."""
    conn = await pg.connect(url)
    try:
        r = await conn.fetchrow(_RESULTS, command_id)
        return r[0], r[1]
    finally:
        await conn.close()
