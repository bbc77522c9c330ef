"""PostgreSQL is the ground truth: what the meters served over DLMS at high --speed is in the tables.

A worker runs three meters at 28800x from ten simulated minutes before an IST midnight through the
next day, writing its captures as they happen. A head-end (our sans-I/O client over TCP) reads the block-load and daily
profiles over DLMS while it runs; after the stop, the database holds exactly those entries, equal
value for value, equal to a recomputation from (seed, meter_id, time), and consistent (the blocks of
the day add up to the daily profile's delta).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import asyncpg
import pytest

from meter_core.client import Associated, ClientSettings, GetResult
from meter_core.codec.axdr import CosemDateTime
from meter_core.connection import Transport
from meter_core.device.clock import SimClock, day_of
from meter_core.device.groundtruth import block_records
from meter_core.device.identity import MeterKind
from meter_core.device.meter import Meter
from tests.database import fetch
from tests.servers import EPOCH, Head, running_meters
from tests.unit.test_profiles import by_range

pytestmark = pytest.mark.integration

IST = dt.timedelta(minutes=330)
SPEED = 28800.0


def read_profile(port: int, password: str, obis: str, selection) -> list:
    settings = ClientSettings(client_sap=32, password=password.encode(), transport=Transport.WRAPPER)
    with Head(port, settings) as head:
        head.client.associate()
        head.until(Associated)
        head.client.get(7, obis, 2, selection)
        ev = head.until(GetResult)
    assert ev is not None, "the meter closed the connection"
    return [tuple(c.value for c in r.value) for r in ev.value.value]


def local(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None) + IST


def day_with_an_outage(meter_id: int = 0) -> float:
    """An IST midnight whose day has a supply interruption for the meter (1ph, seed 1)."""
    from meter_core.device import powerquality as pq

    day = day_of(dt.datetime(2026, 11, 20, tzinfo=dt.timezone(IST)).timestamp())
    while not any(e.kind == "INTERRUPTION" for e in pq.day_events(1, meter_id, MeterKind.SINGLE_PHASE, day)):
        day -= 1
    return day * 86400 - pq.IST_S


def test_profiles_served_over_dlms_are_the_rows_in_postgresql(database_url, tmp_path):
    midnight = day_with_an_outage()
    start = midnight - 600
    end = midnight + 86400 + 3600
    with running_meters(3, kind=MeterKind.SINGLE_PHASE, speed=SPEED, database_url=database_url,
                        sim_start=start, spool_dir=tmp_path / "spool") as fleet:
        deadline = time.monotonic() + 30
        while fleet.worker.clock.sim(time.monotonic()) < end and time.monotonic() < deadline:
            time.sleep(0.2)
        served = {}
        for meter_id in range(3):
            ident = fleet.identity(meter_id)
            window = by_range(local(start), local(end))
            served[meter_id] = read_profile(fleet.port(meter_id), ident.lls_password, "1.0.99.1.0.255", window)
            served[meter_id, "daily"] = read_profile(fleet.port(meter_id), ident.lls_password, "1.0.99.2.0.255",
                                                     window)
            served[meter_id, "power"] = read_profile(fleet.port(meter_id), ident.lls_password, "0.0.99.98.2.255",
                                                     window)
        end_sim = fleet.worker.clock.sim(time.monotonic())
    rows = fetch(database_url, "SELECT meter_id, capture_time, active_import_wh, apparent_import_vah, avg_voltage_l1 "
                               "FROM block_load_profile WHERE meter_id < 3 ORDER BY meter_id, capture_time")
    assert rows, "no block-load rows written"
    for meter_id in range(3):
        mine = [r for r in rows if r["meter_id"] == meter_id and r["capture_time"].timestamp() <= end]
        dlms = served[meter_id]
        assert len(dlms) == len(mine) == 51  # 00:00 of day 1 .. 01:00 of day 2, half-hourly
        for row, entry in zip(mine, dlms):
            assert local(row["capture_time"].timestamp()) == CosemDateTime.from_bytes(entry[0]).to_datetime()
            assert row["active_import_wh"] == entry[2]  # 1ph: clock, avg V, kWh imp, kVAh imp, ...
            assert row["apparent_import_vah"] == entry[3]
            assert row["avg_voltage_l1"] * 100 == entry[1]
        # a recomputation from (seed, meter_id, time) gives the same rows
        from meter_core.device.identity import FleetConfig

        m = Meter(FleetConfig(seed=1, kind=MeterKind.SINGLE_PHASE), meter_id, epoch_start=EPOCH,
                  clock=SimClock(start=end_sim, t0=0.0))
        again = list(block_records(m, start, end))
        assert [(r.capture_time, r.energy_wh[0]) for r in again] == [
            (r["capture_time"].timestamp(), r["active_import_wh"]) for r in mine]

    daily = fetch(database_url, "SELECT meter_id, capture_time, active_import_wh FROM daily_load_profile "
                                "WHERE meter_id < 3 ORDER BY meter_id, capture_time")
    assert [(r["meter_id"], r["capture_time"].timestamp()) for r in daily] == [
        (i, t) for i in range(3) for t in (midnight, midnight + 86400)]
    for meter_id in range(3):
        d0, d1 = (r["active_import_wh"] for r in daily if r["meter_id"] == meter_id)
        assert [e[3] for e in served[meter_id, "daily"]] == [d0, d1]  # 1ph daily: clock, kWh/kVAh export, kWh import
        day = [r["active_import_wh"] for r in rows
               if r["meter_id"] == meter_id and midnight < r["capture_time"].timestamp() <= midnight + 86400]
        assert len(day) == 48 and sum(day) == d1 - d0
    events = fetch(database_url, "SELECT meter_id, occurred_at, event_code FROM event_logs WHERE category = 'power' "
                                 "AND meter_id < 3 ORDER BY meter_id, occurred_at, event_code")
    for meter_id in range(3):
        dlms = [(CosemDateTime.from_bytes(e[0]).to_datetime(), e[1]) for e in served[meter_id, "power"]]
        mine = [(local(r["occurred_at"].timestamp()), r["event_code"]) for r in events
                if r["meter_id"] == meter_id and r["occurred_at"].timestamp() <= end]
        assert dlms == mine
    assert any(served[0, "power"]), "the chosen day has an outage for meter 0"
    outage = [e for e in served[0, "power"] if e[1] == 101]  # an occurrence, not only a restoration
    billing = fetch(database_url, "SELECT count(*) AS n FROM billing_profile WHERE meter_id < 3")
    assert billing[0]["n"] == (3 if local(midnight).day == 1 or local(midnight + 86400).day == 1 else 0)
    assert outage
    snapshots = fetch(database_url, "SELECT count(*) AS n FROM instant_profile WHERE meter_id < 3")
    assert snapshots[0]["n"] == len(rows)


def test_a_database_outage_while_meters_capture_loses_nothing_and_writes_nothing_twice(database_url, tmp_path):
    from tests.dbproxy import CuttableProxy

    proxy = CuttableProxy(database_url)
    midnight = dt.datetime(2026, 11, 20, tzinfo=dt.timezone(IST)).timestamp()
    start = midnight - 600
    spool = tmp_path / "spool"
    try:
        with running_meters(2, kind=MeterKind.THREE_PHASE, speed=SPEED, database_url=proxy.url,
                            sim_start=start, spool_dir=spool) as fleet:
            clock = fleet.worker.clock
            writer = fleet.worker.groundtruth
            while clock.sim(time.monotonic()) < start + 4 * 3600:
                time.sleep(0.05)
            proxy.cut()  # the database goes away for six simulated hours
            while clock.sim(time.monotonic()) < start + 10 * 3600:
                time.sleep(0.05)
            assert writer.errors > 0
            assert list(spool.rglob("*.pkl")), "nothing spooled while the database was away"
            proxy.restore()
            while clock.sim(time.monotonic()) < start + 16 * 3600:
                time.sleep(0.05)
            deadline = time.monotonic() + 20
            while list(spool.rglob("*.pkl")) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not list(spool.rglob("*.pkl")), "the spool was not written back"
            end_sim = clock.sim(time.monotonic())
    finally:
        proxy.close()
    rows = fetch(database_url, "SELECT meter_id, capture_time, active_import_wh FROM block_load_profile "
                               "WHERE meter_id < 2 ORDER BY meter_id, capture_time")
    from meter_core.device.identity import FleetConfig

    for meter_id in range(2):
        m = Meter(FleetConfig(seed=1, kind=MeterKind.THREE_PHASE), meter_id, epoch_start=EPOCH,
                  clock=SimClock(start=end_sim, t0=0.0))
        expected = [(r.capture_time, r.energy_wh[0]) for r in block_records(m, start, end_sim)]
        got = [(r["capture_time"].timestamp(), r["active_import_wh"]) for r in rows
               if r["meter_id"] == meter_id and r["capture_time"].timestamp() <= end_sim]
        assert len(expected) >= 32
        assert got == expected  # every block exactly once: none lost in the outage, none doubled


def test_a_row_the_database_refuses_is_reported_with_its_meter_and_time_and_the_rest_is_written(database_url):
    from fleet.store.sql import CREATE_PROFILE_STAGING
    from fleet.store.writer import write_batch

    t = dt.datetime(2026, 11, 20, 10, 30, tzinfo=dt.UTC)
    good = (7, t, 1800, None, None, None, None, None, None, 100, 0, 110, 0, 10, 0, 0, 0)
    bad = (8, t, 1800, None, None, None, None, None, None, -5, 0, 110, 0, 10, 0, 0, 0)  # negative energy

    async def go():
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(CREATE_PROFILE_STAGING)
            written, refused = await write_batch(conn, {"block_load_profile": [good, bad]})
            again, _ = await write_batch(conn, {"block_load_profile": [good]})
            rows = await conn.fetch("SELECT meter_id FROM block_load_profile WHERE meter_id IN (7, 8)")
            return written, refused, again, rows
        finally:
            await conn.close()

    written, refused, again, rows = asyncio.run(go())
    assert written == {"block_load_profile": 1} and again == {"block_load_profile": 0}
    assert len(refused) == 1 and "meter 8" in refused[0] and "2026-11-20 10:30" in refused[0]
    assert "block_load_profile_energy_check" in refused[0]
    assert [r["meter_id"] for r in rows] == [7]
