"""The fleet's database away for a minute (issue 12): afterwards every row of the simulated period is in it,
once.

`fleet run` (two workers, four meters, 600x) writes through a TCP proxy to PostgreSQL; the proxy drops every
connection and refuses new ones for a minute of wall time (ten hours of the meters' time), then lets them
through again. The workers spool and retry; afterwards each meter's block-load rows run from the run's
start to past the outage, every half hour once, and each daily row is there once.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.dbproxy import CuttableProxy
from tests.fleet.test_fleet_run import FleetProcess, ports, query
from tests.servers import wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.integration]

START = "2026-11-20T23:00:00+05:30"
START_TIME = dt.datetime.fromisoformat(START).timestamp()
SPEED = 600.0
OUTAGE = 60.0  # wall seconds


def progress(url: str) -> float:
    rows = query(url, "SELECT min(captured_until) AS t FROM capture_progress")
    return rows[0]["t"] or 0.0


def test_a_minute_without_the_database_loses_no_row_and_writes_none_twice(database_url, tmp_path):
    proxy = CuttableProxy(database_url)
    base, metrics_port = ports(4)
    f = FleetProcess("run", "--meters", "4", "--workers", "2", "--port-base", str(base), "--metrics-port",
                     str(metrics_port), "--database-url", proxy.url, "--speed", str(SPEED), "--start", START,
                     "--spool-dir", str(tmp_path / "spool"))
    try:
        f.wait_for(r"4 meters ready", timeout=90)
        wait_for("rows written before the outage", lambda: progress(database_url) > START_TIME + 1800)
        proxy.cut()
        f.wait_for(r"ground truth \S+: database unavailable", timeout=60)
        time.sleep(OUTAGE)
        proxy.restore()
        back = progress(database_url)
        wait_for("the writers past the outage", lambda: progress(database_url) > back + 3 * 3600, timeout=180)
    finally:
        code = f.stop(60)
        proxy.close()
    assert code == 0, "\n".join(f.lines)
    end = progress(database_url)
    for meter_id in range(4):
        times = [r["capture_time"].timestamp() for r in query(
            database_url, f"SELECT capture_time FROM block_load_profile WHERE meter_id = {meter_id} ORDER BY 1")]
        assert times[0] == START_TIME + 1800 and times[-1] > back + 3600
        assert {b - a for a, b in zip(times, times[1:])} == {1800.0}, f"meter {meter_id}: a block missing or twice"
        days = [r["capture_time"].timestamp() for r in query(
            database_url, f"SELECT capture_time FROM daily_load_profile WHERE meter_id = {meter_id} ORDER BY 1")]
        assert days == [START_TIME + 3600 + 86400 * i for i in range(len(days))] and days[-1] <= end
    assert not list((tmp_path / "spool").rglob("*.pkl")), "spooled rows left unwritten"
