"""`fleet backfill`: history equal to what the meters serve, resumable, never written twice."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from fleet.settings import FleetOptions
from fleet.store import sql
from fleet.tools import backfill as bf
from meter_core.device.clock import SimClock
from meter_core.device.groundtruth import block_records
from meter_core.device.identity import MeterKind
from meter_core.device.meter import Meter
from tests.fleet.test_cli import assert_one_line_error, fleet

EPOCH = 1767205800.0
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
END = dt.datetime(2026, 11, 20, tzinfo=IST).timestamp()


def query(url: str, sql: str, *args):
    async def go():
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_backfill_writes_the_window_once_and_resumes(database_url):
    options = FleetOptions(meters=30, kind=MeterKind.SINGLE_PHASE)
    plan = bf.plan(database_url, options, EPOCH, 2, END, range(30), chunk=10)
    # a chunk written before (as by an interrupted backfill or a running fleet): part of meter 12's rows
    m = Meter(options.fleet, 12, epoch_start=EPOCH, clock=SimClock(start=END, t0=0.0))
    first = next(block_records(m, END - 2 * 86400, END))
    query(database_url, "INSERT INTO block_load_profile (meter_id, capture_time, interval_seconds, active_import_wh,"
          " active_export_wh, apparent_import_vah, apparent_export_vah, reactive_q1_varh, reactive_q2_varh,"
          " reactive_q3_varh, reactive_q4_varh) VALUES (12, $1, 1800, $2, 0, 0, 0, 0, 0, 0, 0)",
          dt.datetime.fromtimestamp(first.capture_time, dt.UTC), first.energy_wh[0])
    seen = []
    chunks, rows, _ = bf.run(plan, 2, lambda done, total, n, s: seen.append((done, total)))
    assert chunks == 3 and seen[-1] == (3, 3)
    blocks = query(database_url, "SELECT meter_id, count(*) AS n, count(DISTINCT capture_time) AS d "
                                 "FROM block_load_profile GROUP BY meter_id ORDER BY meter_id")
    assert [(r["meter_id"], r["n"], r["d"]) for r in blocks] == [(i, 96, 96) for i in range(30)]
    in_tables = sum(query(database_url, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in sql.PROFILE_COLUMNS)
    assert rows == in_tables - 1  # every row counted once; meter 12's first block was there already
    events = query(database_url, "SELECT count(*) AS n FROM event_logs")[0]["n"]
    assert in_tables - events - query(database_url, "SELECT count(*) AS n FROM eswf_status")[0]["n"] == 30 * (96 * 2 + 2)
    # the pre-existing row kept its value, which is the backfill's own
    got = query(database_url, "SELECT active_import_wh FROM block_load_profile WHERE meter_id = 12 "
                              "ORDER BY capture_time LIMIT 1")
    assert got[0]["active_import_wh"] == first.energy_wh[0]
    # run again: every chunk is done, nothing is written
    assert bf.run(plan, 2)[:2] == (0, 0)
    # a bigger fleet's backfill over the same window only adds the new meters
    wider = bf.plan(database_url, FleetOptions(meters=40, kind=MeterKind.SINGLE_PHASE), EPOCH, 2, END,
                    range(40), chunk=10)
    assert bf.run(wider, 1)[0] == 1  # the same job (fleet and window): only the new chunk is written
    total = query(database_url, "SELECT count(*) AS n FROM block_load_profile")[0]["n"]
    assert total == 40 * 96


@pytest.mark.parametrize("args, words", [
    (["backfill"], ["--days"]),
    (["backfill", "--days", "0"], ["--days"]),
    (["backfill", "--days", "2", "--ids", "x"], ["--ids"]),
    (["backfill", "--days", "2", "--meters", "10", "--ids", "5-20"], ["--ids", "0-9"]),
    (["backfill", "--days", "2", "--end", "2999-01-01T00:00:00"], ["--end", "future"]),
])
def test_backfill_mistakes_are_one_line_errors(args, words):
    assert_one_line_error(fleet(*args), *words)


@pytest.fixture
def second_database_url(postgres_url, template_database):
    """Another fresh migrated database (the backfill's, beside the live run's)."""
    from tests.conftest import _admin, _fresh_database, with_database

    name = _fresh_database(postgres_url, template_database)
    yield with_database(postgres_url, name)
    asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


TIME_COLUMN = {"block_load_profile": "capture_time", "daily_load_profile": "capture_time",
               "billing_profile": "billing_time", "instant_profile": "capture_time", "event_logs": "occurred_at",
               "eswf_status": "changed_at"}


def table_rows(url: str, table: str, lo: float, hi: float) -> list[tuple]:
    cols = ", ".join(sql.PROFILE_COLUMNS[table])
    t = TIME_COLUMN[table]
    rows = query(url, f"SELECT {cols} FROM {table} WHERE {t} > $1 AND {t} <= $2 ORDER BY {cols}",
                 dt.datetime.fromtimestamp(lo, dt.UTC), dt.datetime.fromtimestamp(hi, dt.UTC))
    return [tuple(r) for r in rows]


@pytest.mark.interop
def test_backfill_equals_live_with_drift_and_programming_and_leaves_no_gap(database_url, second_database_url,
                                                                           tmp_path):
    """A live run at 28800x with drifting clocks, one meter's clock set by gurux while it runs, writes its
    window; `fleet backfill` of the same window (same options, the run's journal) writes the same rows, table by
    table. A run started after the backfill's end writes from that end: no gap."""
    import time

    from gurux_dlms import GXDateTime
    from gurux_dlms.objects import GXDLMSClock

    from fleet.store.sql import JOURNAL_COLUMNS
    from tests.interop.clients import utility_settings
    from tests.servers import running_meters

    w1 = dt.datetime(2026, 11, 2, tzinfo=IST).timestamp()  # a billing date inside the window
    w0 = w1 - 2 * 86400
    options = dict(kind=MeterKind.CT_PT, drift_ppm=5.0, speed=28800.0)
    with running_meters(3, database_url=database_url, sim_start=w0, spool_dir=tmp_path / "a", **options) as live:
        s = utility_settings(live, 0)
        try:
            clock = GXDLMSClock("0.0.1.0.0.255")
            s.read(clock, 2)
            clock.time = GXDateTime(clock.time.value.replace(tzinfo=IST) + dt.timedelta(seconds=300))
            assert s.exchange(s.client.write(clock, 2)).error == 0
        finally:
            s.close()
        while live.worker.clock.sim(time.monotonic()) < w1 + 3600:
            time.sleep(0.1)
    journal = query(database_url, f"SELECT {', '.join(JOURNAL_COLUMNS)} FROM meter_journal")
    assert any(r["obis"] == "0.0.1.0.0.255" and r["replay"] for r in journal)

    async def copy_journal():
        conn = await asyncpg.connect(second_database_url)
        try:
            await conn.copy_records_to_table("meter_journal", records=[tuple(r) for r in journal],
                                             columns=JOURNAL_COLUMNS)
        finally:
            await conn.close()

    asyncio.run(copy_journal())
    fleet_options = FleetOptions(meters=3, kind=MeterKind.CT_PT)
    plan = bf.plan(second_database_url, fleet_options, EPOCH, 2, w1, range(3), drift_ppm=5.0)
    assert bf.run(plan, 1)[0] == 1
    for table in sql.PROFILE_COLUMNS:
        lo, hi = w0 + 3600, w1 - 3600  # stamps drift from capture times by minutes: leave the edges out
        got_live, got_backfill = table_rows(database_url, table, lo, hi), table_rows(second_database_url, table, lo, hi)
        assert got_live == got_backfill, table
        if table in ("block_load_profile", "daily_load_profile", "billing_profile", "instant_profile"):
            assert got_live, table

    # a run started six simulated hours after the backfill's end writes from that end
    with running_meters(3, database_url=second_database_url, sim_start=w1 + 6 * 3600, spool_dir=tmp_path / "b",
                        **options) as later:
        while later.worker.clock.sim(time.monotonic()) < w1 + 9 * 3600:
            time.sleep(0.1)
    stamps = query(second_database_url, "SELECT capture_time FROM block_load_profile WHERE meter_id = 1 "
                                        "ORDER BY capture_time")
    times = [r["capture_time"].timestamp() for r in stamps]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert times[0] < w0 + 3600 and times[-1] > w1 + 8 * 3600
    assert set(gaps) == {1800.0}, "the history has a gap or a repeat"
