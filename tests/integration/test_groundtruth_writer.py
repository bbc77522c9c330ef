"""The ground-truth writer against a real PostgreSQL (issue 12): it outlives running out of file
descriptors, its gauges tell the truth through a database outage, and the database holds one
continuous history per meter across restarts and later runs (capture_progress).

A worker runs in the test's process (`tests.servers.running_meters`) at high --speed; every check
waits for an event with a deadline. "Every row exactly once" compares the block-load rows with a
recomputation from (seed, meter_id, time), as tests/integration/test_ground_truth.py does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import os
import resource
import time

import asyncpg
import pytest
from prometheus_client import REGISTRY

from meter_core.device.clock import SimClock
from meter_core.device.groundtruth import block_records
from meter_core.device.identity import FleetConfig, MeterKind
from meter_core.device.meter import Meter
from tests.database import fetch
from tests.servers import EPOCH, running_meters

pytestmark = pytest.mark.integration

IST = dt.timezone(dt.timedelta(minutes=330))
MIDNIGHT = dt.datetime(2026, 11, 20, tzinfo=IST).timestamp()
SPEED = 28800.0  # a simulated day in three seconds
KIND = MeterKind.THREE_PHASE


def wait_for(predicate, timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def progress(url: str, meters: int) -> float | None:
    rows = fetch(url, "SELECT captured_until FROM capture_progress WHERE meter_from = 0 AND meter_to = $1", meters)
    return rows[0]["captured_until"] if rows else None


def assert_blocks_exactly_once(url: str, meters: int, start: float, end: float) -> dict[int, list]:
    """Every block-load row of (start, end] of each meter is in the database, once, as recomputed
    from (seed, meter_id, time); returns the recomputed (capture time, kWh) per meter."""
    rows = fetch(url, "SELECT meter_id, capture_time, active_import_wh FROM block_load_profile "
                      "WHERE meter_id < $1 ORDER BY meter_id, capture_time", meters)
    recomputed = {}
    for meter_id in range(meters):
        m = Meter(FleetConfig(seed=1, kind=KIND), meter_id, epoch_start=EPOCH, clock=SimClock(start=end, t0=0.0))
        expected = [(r.capture_time, r.energy_wh[0]) for r in block_records(m, start, end)]
        got = [(r["capture_time"].timestamp(), r["active_import_wh"]) for r in rows
               if r["meter_id"] == meter_id and start < r["capture_time"].timestamp() <= end]
        assert len(expected) >= (end - start) // 1800 // 2  # half-hour blocks, less what outages took
        assert got == expected, f"meter {meter_id}: rows missing or extra in ({start}, {end}]"
        recomputed[meter_id] = expected
    return recomputed


@contextlib.contextmanager
def descriptors_exhausted():
    """The process out of file descriptors: /dev/null opened until open() fails with EMFILE, then the
    soft limit pinned at 0 so that a descriptor freed meanwhile (a dropped connection's socket) cannot
    be taken either. Both undone on exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft > 65536:  # fill a bounded table, not a million entries
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, hard))
    held: list[int] = []
    try:
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as e:
                if e.errno != errno.EMFILE:
                    raise
                break
        resource.setrlimit(resource.RLIMIT_NOFILE, (0, hard))
        yield len(held)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for fd in held:
            os.close(fd)


def test_the_writer_outlives_running_out_of_file_descriptors_and_every_row_is_written_once(
        database_url, tmp_path, caplog):
    start = MIDNIGHT - 600
    admin_loop = asyncio.new_event_loop()
    admin = admin_loop.run_until_complete(asyncpg.connect(database_url))  # opened while descriptors are free
    try:
        with running_meters(3, kind=KIND, speed=SPEED, database_url=database_url, sim_start=start,
                            spool_dir=tmp_path / "spool") as fleet:
            writer, clock = fleet.worker.groundtruth, fleet.worker.clock
            writer.max_queue_rows = 400  # about a simulated day of the three meters: the bound shows
            wait_for(lambda: (writer.captured_until or 0) > start + 2 * 3600, 20, "the first writes")
            conn = writer._conn.conn
            assert conn is not None
            before = writer.errors_by_reason.get("too-many-open-files", 0)
            backpressure = writer.backpressure
            with descriptors_exhausted() as held:
                assert held > 0
                # The writer's connection ends (as a server or network would end it): it must connect again.
                admin_loop.run_until_complete(admin.fetchval("SELECT pg_terminate_backend($1)",
                                                             conn.get_server_pid()))
                wait_for(lambda: writer.errors_by_reason.get("too-many-open-files", 0) >= before + 3, 30,
                         "failures for want of descriptors")
                wait_for(lambda: writer.backpressure > backpressure, 30, "the producer held back by the bound")
                assert writer.alive
                assert writer.queued_rows > 0 and writer.spool_files == 0  # waiting in memory: no file could be made
                assert writer.lag > 0
                stuck_at = writer.captured_until
            released = clock.sim(time.monotonic())
            wait_for(lambda: (writer.captured_until or 0) > released + 3600 and writer.rows_waiting == 0, 30,
                     "writes after the descriptors came back")
            assert writer.alive and writer.restarts == 0
    finally:
        admin_loop.run_until_complete(admin.close())
        admin_loop.close()
    end = progress(database_url, 3)
    assert end >= released + 3600 > stuck_at
    assert_blocks_exactly_once(database_url, 3, start, end)
    messages = [r.getMessage() for r in caplog.records if r.name == "fleet.store.truth"]
    assert any("too many open files (connecting to the database" in m for m in messages), messages
    assert any("too many open files (spooling" in m for m in messages), messages
    assert not any("database unavailable" in m and "Errno 24" in m for m in messages), messages


def gauge(name: str, shard: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"shard": shard})


def test_the_gauges_show_rows_waiting_and_lag_while_the_database_is_cut_and_zero_after(database_url, tmp_path):
    from tests.dbproxy import CuttableProxy

    proxy = CuttableProxy(database_url)
    start = MIDNIGHT - 600

    def saw(name: str, shard: str = "0-2") -> bool:
        return (gauge(name, shard) or 0.0) > 0

    def counter(name: str, labels: dict | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    try:
        # 900x: a quarter hour a second, so the writer is up to date (lag 0) most of each second
        with running_meters(2, kind=KIND, speed=900.0, database_url=proxy.url, sim_start=start,
                            spool_dir=tmp_path / "spool") as fleet:
            writer = fleet.worker.groundtruth
            wait_for(lambda: (writer.captured_until or 0) > start + 1800, 20, "the first writes")
            spooled = counter("fleet_groundtruth_spooled_rows_total")
            errors = counter("fleet_groundtruth_errors_total", {"reason": "database"})
            proxy.cut()
            wait_for(lambda: saw("fleet_groundtruth_rows_waiting") and saw("fleet_groundtruth_spool_files")
                     and saw("fleet_groundtruth_spool_rows"), 30, "rows waiting in the gauges")
            wait_for(lambda: saw("fleet_groundtruth_lag_seconds"), 30, "a lag in the gauge")
            assert writer.alive
            assert counter("fleet_groundtruth_spooled_rows_total") > spooled
            assert counter("fleet_groundtruth_errors_total", {"reason": "database"}) > errors
            proxy.restore()
            wait_for(lambda: gauge("fleet_groundtruth_rows_waiting", "0-2") == 0
                     and gauge("fleet_groundtruth_spool_files", "0-2") == 0
                     and gauge("fleet_groundtruth_spool_rows", "0-2") == 0, 30, "the gauges back to 0")
            wait_for(lambda: gauge("fleet_groundtruth_lag_seconds", "0-2") == 0, 30, "the lag back to 0")
            assert not list((tmp_path / "spool").rglob("*.pkl"))
    finally:
        proxy.close()


def test_a_worker_restarted_on_its_shard_resumes_where_its_rows_end(database_url, tmp_path):
    start = MIDNIGHT - 600
    t0 = time.monotonic()
    spool = tmp_path / "spool"
    with running_meters(2, kind=KIND, speed=SPEED, database_url=database_url, sim_start=start, sim_t0=t0,
                        spool_dir=spool) as fleet:
        first = fleet.worker.groundtruth
        wait_for(lambda: (first.captured_until or 0) > start + 6 * 3600, 20, "the first run's writes")
    stopped = progress(database_url, 2)
    assert stopped == first.captured_until and first.resumed_from == start
    # the same settings (run start and clock) as the supervisor gives a worker it restarts
    with running_meters(2, kind=KIND, speed=SPEED, database_url=database_url, sim_start=start, sim_t0=t0,
                        spool_dir=spool) as fleet:
        again = fleet.worker.groundtruth
        wait_for(lambda: again.resumed_from is not None, 20, "the restarted writer to resume")
        assert again.resumed_from == stopped  # not the run's start: nothing before it is written again
        wait_for(lambda: (again.captured_until or 0) > stopped + 6 * 3600, 20, "the restarted writer's writes")
    end = progress(database_url, 2)
    assert end > stopped + 6 * 3600
    assert_blocks_exactly_once(database_url, 2, start, end)


def test_a_run_started_after_the_last_one_ended_fills_the_gap_first(database_url, tmp_path):
    start = MIDNIGHT - 600
    with running_meters(2, kind=KIND, speed=SPEED, database_url=database_url, sim_start=start,
                        spool_dir=tmp_path / "spool") as fleet:
        first = fleet.worker.groundtruth
        wait_for(lambda: (first.captured_until or 0) > start + 3 * 3600, 20, "the first run's writes")
    ended = progress(database_url, 2)
    later = ended + 2 * 86400  # the second run starts two simulated days after the first one's rows end
    with running_meters(2, kind=KIND, speed=SPEED, database_url=database_url, sim_start=later,
                        spool_dir=tmp_path / "spool") as fleet:
        second = fleet.worker.groundtruth
        wait_for(lambda: second.resumed_from is not None, 20, "the second writer to resume")
        assert second.resumed_from == ended
        wait_for(lambda: (second.captured_until or 0) > later + 3 * 3600, 30, "the gap and the second run's writes")
    end = progress(database_url, 2)
    recomputed = assert_blocks_exactly_once(database_url, 2, start, end)
    in_gap = [t for rows in recomputed.values() for t, _ in rows if ended < t <= later]
    assert len(in_gap) >= 2 * 2 * 48 * 0.9  # two days of half-hour blocks of two meters (less outages): all there


def test_rows_asyncpg_cannot_encode_are_reported_and_the_rest_of_the_batch_is_written(database_url):
    from fleet.store.sql import CREATE_PROFILE_STAGING
    from fleet.store.writer import write_batch

    t = dt.datetime(2026, 11, 20, 10, 30, tzinfo=dt.UTC)
    good = (7, t, 1800, None, None, None, None, None, None, 100, 0, 110, 0, 10, 0, 0, 0)
    wrong_type = (8, t, "1800", None, None, None, None, None, None, 100, 0, 110, 0, 10, 0, 0, 0)
    too_big = (9, t, 1800, None, None, None, None, None, None, 2**70, 0, 110, 0, 10, 0, 0, 0)

    async def go():
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(CREATE_PROFILE_STAGING)
            async with conn.transaction():  # as the writer calls it, with its progress in the same transaction
                written, refused = await write_batch(conn, {"block_load_profile": [good, wrong_type, too_big]})
            rows = await conn.fetch("SELECT meter_id FROM block_load_profile WHERE meter_id IN (7, 8, 9)")
            return written, refused, rows
        finally:
            await conn.close()

    written, refused, rows = asyncio.run(go())
    assert written == {"block_load_profile": 1}
    assert len(refused) == 2
    assert "meter 8 at 2026-11-20 10:30" in refused[0] and "meter 9 at 2026-11-20 10:30" in refused[1]
    assert [r["meter_id"] for r in rows] == [7]
