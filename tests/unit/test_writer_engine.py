"""The writer engine (fleet.store.writer.Writer) that every table family goes through: passes a set
interval apart or when woken, a failed pass kept and retried with back-off and reported once, a fault of
ours counted and the loop run again with what it held, and a close that writes what is held."""

from __future__ import annotations

import asyncio
import errno
import logging
import time

import asyncpg
import pytest

from fleet.store.writer import Writer


class FakeConnection:
    """Stands in for WriterConnection: `get` fails while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.gets = self.drops = 0

    async def get(self):
        self.gets += 1
        if self.down:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        return self

    def drop(self) -> None:
        self.drops += 1

    async def close(self) -> None:
        pass


class ListWriter(Writer):
    """Writes the items it holds into ``written``; ``bug`` makes the next pass raise a fault of ours."""

    RETRY = (0.01, 0.04)

    def __init__(self, interval: float | None, urgent_at: int = 10**9) -> None:
        super().__init__("test writer", "postgresql://unused", "", interval=interval)
        self._conn = FakeConnection()
        self.held: list[int] = []
        self.written: list[int] = []
        self.passes = 0
        self.bug = False
        self.urgent_at = urgent_at

    def waiting(self) -> int:
        return len(self.held)

    def urgent(self) -> bool:
        return len(self.held) >= self.urgent_at

    async def write_due(self, conn) -> None:
        self.passes += 1
        if self.bug:
            self.bug = False
            raise KeyError("a bug in building the rows")
        if not self.held:
            return
        batch, self.held = self.held, []
        try:
            await conn.get()
        except BaseException:
            self.held = batch + self.held
            raise
        self.written += batch


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.002)


def test_an_outage_keeps_the_rows_retries_with_back_off_and_says_so_once(caplog):
    caplog.set_level(logging.INFO)

    async def main():
        w = ListWriter(interval=0.01)
        w.start()
        w.held += [1, 2]
        await until(lambda: w.written == [1, 2])
        w._conn.down = True
        w.held += [3]
        await until(lambda: w.errors >= 3)
        assert w.written == [1, 2] and w.held == [3] and w.alive
        assert w._conn.drops >= 3  # a new connection for every try
        w._conn.down = False
        await until(lambda: w.written == [1, 2, 3])
        assert w.failing == 0 and w.restarts == 0
        await w.close(1.0)
        assert not w.alive

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot write" in m for m in messages) == 1
    assert sum("writing again after" in m for m in messages) == 1


def test_a_fault_of_ours_is_counted_logged_and_the_loop_goes_on_with_what_it_held(caplog):
    async def main():
        w = ListWriter(interval=0.01)
        w.held += [7]
        w.bug = True
        w.start()
        await until(lambda: w.written == [7])
        assert w.restarts == 1 and w.errors == 1 and w.alive
        await w.close(1.0)

    asyncio.run(main())
    assert any("writer failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_passes_wait_for_the_interval_unless_woken_or_urgent():
    async def main():
        w = ListWriter(interval=None, urgent_at=3)  # no interval: a pass only when woken
        w.start()
        await asyncio.sleep(0.05)
        first = w.passes
        w.held += [1]
        await asyncio.sleep(0.05)
        assert w.passes == first and not w.written  # nobody woke it
        w.wake()
        await until(lambda: w.written == [1])
        w.held += [2, 3, 4]  # urgent once the pass after the wake looks
        w.wake()
        await until(lambda: w.written == [1, 2, 3, 4])
        await w.close(1.0)

    asyncio.run(main())


def test_close_writes_what_is_held_and_gives_up_after_its_time_out(caplog):
    async def main():
        w = ListWriter(interval=10.0)  # a long interval: close must not wait for it
        w.start()
        await asyncio.sleep(0.02)
        w.held += [1, 2, 3]
        t0 = time.monotonic()
        await w.close(2.0)
        assert w.written == [1, 2, 3] and time.monotonic() - t0 < 1.0

        down = ListWriter(interval=0.01)
        down._conn.down = True
        down.start()
        down.held += [9]
        t0 = time.monotonic()
        await down.close(0.2)
        assert 0.15 < time.monotonic() - t0 < 1.0
        assert down.held == [9] and not down.alive  # kept, not lost: the owner decides what to do with it

    asyncio.run(main())
    assert any("stopped with 1 unwritten" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("error", [asyncpg.PostgresConnectionError("gone"), TimeoutError(), OSError(errno.EMFILE, "x")])
def test_every_transient_failure_is_retried_not_a_fault(error):
    async def main():
        w = ListWriter(interval=0.01)
        real_get = w._conn.get
        failures = {"left": 2}

        async def get():
            if failures["left"]:
                failures["left"] -= 1
                raise error
            return await real_get()

        w._conn.get = get
        w.held += [5]
        w.start()
        await until(lambda: w.written == [5])
        assert w.errors == 2 and w.restarts == 0
        await w.close(1.0)

    asyncio.run(main())
