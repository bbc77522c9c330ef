"""`fleet backfill`: history equal to what the meters serve, resumable, never written twice."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from fleet import backfill as bf
from fleet.groundtruth import COLUMNS
from fleet.settings import FleetOptions
from meter_core.groundtruth import block_records
from meter_core.identity import MeterKind
from meter_core.meter import Meter, SimClock
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
    in_tables = sum(query(database_url, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in COLUMNS)
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
