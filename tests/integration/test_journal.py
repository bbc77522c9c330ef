"""What a head-end programmed stays programmed: the meters' journal in PostgreSQL (issue 12).

gurux-dlms programs a meter through client 48 (clock +1 h, demand period 900 s, remote disconnect,
MD reset) on a worker with a real database; the worker stops and another starts on the same database
with the same simulated clock, as a restarted worker or a new pod would. The new worker builds the
meter again from the journal: the clock is still an hour ahead, the period still 900 s, the relay
still open, the MD-reset bill still served, and every entry served before the restart is served
again. `programming_actions` lists what the head-end did, with true and meter time and outcome.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from gurux_dlms.enums import DataType as GXType
from gurux_dlms.objects import GXDLMSData, GXDLMSDisconnectControl, GXDLMSScriptTable

from meter_core.device.identity import MeterKind
from tests.database import fetch
from tests.interop.clients import utility_settings
from tests.interop.test_history import read_all, read_clock, set_clock
from tests.servers import running_meters

pytestmark = [pytest.mark.integration, pytest.mark.interop]

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
START = dt.datetime(2026, 11, 20, 10, 0, tzinfo=IST).timestamp()
SPEED = 60.0


def program(s) -> None:
    """What a head-end does to meter 0: each must answer success."""
    shown = read_clock(s)
    assert set_clock(s, shown + dt.timedelta(hours=1)) == 0
    period = GXDLMSData("1.0.0.8.0.255")
    s.read(period, 2)
    period.value = 900
    period.setDataType(2, GXType.UINT16)
    assert s.exchange(s.client.write(period, 2)).error == 0
    relay = GXDLMSDisconnectControl("0.0.96.3.10.255")
    assert s.exchange(relay.remoteDisconnect(s.client)).error == 0
    script = GXDLMSScriptTable("0.0.10.0.1.255")
    s.read(script, 2)
    assert s.exchange(script.execute(s.client, 1)).error == 0


def state_of(s) -> tuple:
    period = GXDLMSData("1.0.0.8.0.255")
    s.read(period, 2)
    relay = GXDLMSDisconnectControl("0.0.96.3.10.255")
    s.read(relay, 3)
    count = GXDLMSData("0.0.0.1.0.255")
    s.read(count, 2)
    return period.value, int(relay.controlState), count.value


def test_what_a_head_end_programmed_survives_a_restart_and_is_listed(database_url, tmp_path):
    sim_t0 = time.monotonic()  # the fleet's clock: both workers keep it, as a restarted worker does
    kw = dict(kind=MeterKind.THREE_PHASE, database_url=database_url, sim_start=START, sim_t0=sim_t0, speed=SPEED,
              spool_dir=tmp_path / "spool")
    with running_meters(2, **kw) as first:
        s = utility_settings(first, 0)
        try:
            untouched = read_clock(s) - dt.datetime.fromtimestamp(first.worker.clock.sim(time.monotonic()), IST)
            program(s)
            programmed = state_of(s)
            served = read_all(s)
            offset = read_clock(s) - dt.datetime.fromtimestamp(first.worker.clock.sim(time.monotonic()), IST)
        finally:
            s.close()
    assert abs(untouched.total_seconds()) < 5
    assert 3590 < offset.total_seconds() < 3610
    assert programmed[:2] == (900, 0)

    with running_meters(2, **kw) as second:
        s = utility_settings(second, 0)  # reads the invocation counter it must exceed, as head-ends do
        try:
            again = state_of(s)
            offset_again = read_clock(s) - dt.datetime.fromtimestamp(second.worker.clock.sim(time.monotonic()), IST)
            served_again = read_all(s)
        finally:
            s.close()
    assert again == programmed  # period, relay, billing count (the MD reset)
    assert abs((offset_again - offset).total_seconds()) < 5
    for obis, rows in served.items():
        assert served_again[obis][:len(rows)] == rows, f"{obis}: the restarted meter serves other entries"

    actions = fetch(database_url, "SELECT meter_id, client_sap, service, class_id, obis, attribute_or_method, outcome, "
                                  "changed_meter, true_time, meter_time FROM programming_actions ORDER BY true_time")
    done = [(a["service"], a["obis"], a["attribute_or_method"], a["outcome"]) for a in actions if a["changed_meter"]]
    assert done == [("set", "0.0.1.0.0.255", 2, "success"), ("set", "1.0.0.8.0.255", 2, "success"),
                    ("action", "0.0.96.3.10.255", 1, "success"), ("action", "0.0.10.0.1.255", 1, "success")]
    assert {a["meter_id"] for a in actions} == {0} and {a["client_sap"] for a in actions} == {48}
    clock_set = actions[0]
    # meter time: what the meter's clock showed when it was set (its true time then, no drift)
    assert abs((clock_set["meter_time"] - clock_set["true_time"]).total_seconds()) < 1
    # every later one: an hour ahead
    assert all(3590 < (a["meter_time"] - a["true_time"]).total_seconds() < 3610 for a in actions[1:])


def test_a_row_the_database_refuses_is_left_out_and_the_answers_waiting_go_out(database_url):
    """The journal's writer follows the one rule: a row PostgreSQL will never take (here a simulated time
    that is not finite, against the table's CHECK) does not hold the meters' answers for ever; the rows
    beside it are written."""
    import asyncio
    import math

    from fleet.store.journal import Journal, injected_row

    good = [injected_row(7, 1_800_000_000.0 + i, 1_800_000_000.0 + i, "power-failure", None, {"n": i})
            for i in range(3)]
    bad = injected_row(8, math.inf, 1_800_000_000.0, "power-failure", None, {})

    async def go():
        journal = Journal(database_url, lambda meter_id: None)
        journal.start()
        try:
            done = journal.persist([good[0], bad, *good[1:]])
            await asyncio.wait_for(done, 30)
        finally:
            await journal.close(5)
        return journal

    journal = asyncio.run(go())
    assert journal.refused == 1 and journal.rows_written == 3
    rows = fetch(database_url, "SELECT meter_id, params FROM meter_journal ORDER BY meter_id, seq")
    assert [(r["meter_id"], r["params"]) for r in rows] == [(7, '{"n": 0}'), (7, '{"n": 1}'), (7, '{"n": 2}')]
