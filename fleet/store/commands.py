"""Runtime commands to a running fleet through PostgreSQL: a commands table plus LISTEN/NOTIFY.

`fleet inject` inserts a row into ``fleet_commands``; a trigger notifies channel ``fleet_commands``
with its id. Each worker keeps one connection listening on it: on a notification (and after a
reconnect, for what it missed) it reads the commands newer than the last it applied, applies each to
the meters of its shard the command selects, and records how many in ``fleet_command_results``.
A worker that starts (a fleet started again, a worker restarted after a crash) first replays the
commands issued before, each at the simulated time a worker first applied it (or now, if none has:
one issued while the fleet was starting), so a power failure, tamper or link fault still in force is
in force for it too (the meters' state is the commands').

The listener hands each command's row to the worker's callbacks; what a command is and which meters it
reaches is `fleet.runtime.faults`.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging

import asyncpg

from fleet.store import pg, sql

log = logging.getLogger(__name__)


class CommandListener:
    """A worker's connection on ``fleet_commands``: calls ``apply(row) -> (meters, sim_time)`` for each
    command (its ``fleet_commands`` row) newer than the worker's start, in order, and records the result."""

    def __init__(self, url: str, shard: range, apply, replay, durable=None) -> None:
        self.url = url
        self.shard = shard
        self.apply = apply
        # replay(row, sim_at or None) -> (simulated time, meters): an earlier command, at the time a
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
                    last = await conn.fetchval(sql.LAST_COMMAND)
                    await self._replay(conn, last)
                    self.last = last
                await conn.add_listener(sql.COMMANDS_CHANNEL, self._notified)
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
        for row in await conn.fetch(sql.EARLIER_COMMANDS, last):
            try:
                sim_t, n = self.replay(row, None if row["sim_at"] is None else float(row["sim_at"]))
            except Exception:  # a command that fails on one meter must not stop the worker
                log.exception("replaying command %d (%s) failed", row["command_id"], row["action"])
                continue
            count += n
            when = _dt.datetime.fromtimestamp(sim_t, _dt.UTC)
            if self.durable is not None:
                await self.durable()
            await conn.execute(sql.RECORD_COMMAND_RESULT, row["command_id"], self.shard.start, self.shard.stop, n, when)
        if count:
            log.info("commands issued before this worker listened: applied to %d meter(s)", count)

    def _notified(self, conn, pid, channel, payload) -> None:
        self._wake.set()

    async def _catch_up(self, conn) -> None:
        for row in await conn.fetch(sql.NEWER_COMMANDS, self.last):
            try:
                count, sim_t = self.apply(row)
            except Exception:  # a command that fails on one meter must not stop the worker
                log.exception("command %d (%s) failed", row["command_id"], row["action"])
                count, sim_t = 0, None
            self.last = row["command_id"]
            self.applied += 1
            if self.durable is not None:
                await self.durable()
            when = _dt.datetime.fromtimestamp(sim_t if sim_t is not None else 0.0, _dt.UTC)
            await conn.execute(sql.RECORD_COMMAND_RESULT, row["command_id"], self.shard.start, self.shard.stop, count,
                               when)


async def issue(url: str, action: str, *, first: int | None, last: int | None, share: float,
                params: dict) -> int:
    conn = await pg.connect(url)
    try:
        return await conn.fetchval(sql.ISSUE_COMMAND, action, first, last, share, json.dumps(params))
    finally:
        await conn.close()


async def results(url: str, command_id: int) -> tuple[int, int]:
    """(workers that applied command ``command_id``, meters they reached)."""
    conn = await pg.connect(url)
    try:
        r = await conn.fetchrow(sql.COMMAND_RESULTS, command_id)
        return r[0], r[1]
    finally:
        await conn.close()
