"""Storms injected through PostgreSQL (`fleet inject`): a 30 % power failure sends last-gasp pushes spread
over the alert push's randomisation interval, first breaths follow the restore, and the meters' profiles
show the gap (issue 6, acceptance 3)."""

from __future__ import annotations

import asyncio
import datetime as _dt
import time

import asyncpg
import pytest

from fleet import commands
from fleet.commands import Command
from meter_core import eventlog, push
from meter_core.axdr import data_from_bytes
from meter_core.meter import Meter, SimClock
from tests.integration.test_sink import RunningSink
from tests.servers import EPOCH, running_meters

pytestmark = pytest.mark.integration

METERS = 600
SPEED = 30.0  # the 60-second randomisation interval plays in 2 s


async def _sql(url: str, query: str, *args):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def _issue(url: str, action: str, **kw) -> tuple[int, float]:
    """Issue a command as `fleet inject` does; wait for the worker's result: (meters reached, sim time)."""
    cid = asyncio.run(commands.issue(url, action, first=kw.get("first"), last=kw.get("last"),
                                     share=kw.get("share", 1.0), params=kw.get("params", {})))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = asyncio.run(_sql(url, "SELECT meters, sim_at FROM fleet_command_results WHERE command_id = $1", cid))
        if rows:
            return cid, rows[0]["meters"], rows[0]["sim_at"].timestamp()
        time.sleep(0.05)
    raise AssertionError(f"no worker applied command {cid}")


def _esw_bits(body: bytes) -> set[int]:
    """The ESW bits set in an alert push's body (device ID, push setup, clock, ESW)."""
    esw = data_from_bytes(body).value[3].value
    return {i for i in range(esw.bits) if esw.data[i // 8] & (0x80 >> (i % 8))}


def test_a_power_failure_storm_sends_spread_last_gasps_then_first_breaths(database_url):
    from fleet.settings import FleetOptions

    options = FleetOptions(meters=METERS, seed=1)
    sink = RunningSink(database_url, options)
    try:
        with running_meters(METERS, hes=("127.0.0.1", sink.port), speed=SPEED, dial_idle=0.3,
                            database_url=database_url) as m:
            time.sleep(1.0)
            cid, reached, t_fail = _issue(database_url, "power-failure", share=0.3)
            time.sleep(4.0)  # two randomisation intervals
            _, _, t_restore = _issue(database_url, "restore")
            time.sleep(4.0)
            worker = m.worker
        failed = set(Command(cid, "power-failure", None, None, 0.3).meters(1, range(METERS)))
        assert reached == len(failed) and 0.25 * METERS < len(failed) < 0.35 * METERS

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sink.sink.pending:
            time.sleep(0.1)
        rows = asyncio.run(_sql(database_url, "SELECT meter_id, notified_at, received_at, body FROM push_received "
                                "WHERE push_logical_name = $1 AND notified_at >= $2 ORDER BY notified_at",
                                push.ALERT_PUSH, _dt.datetime.fromtimestamp(t_fail - 1, _dt.UTC)))
        # each meter's first alert with the bit (a meter may send more alerts later, for its own supply events)
        gasps, breaths = {}, {}
        for r in rows:  # (in time order)
            bits, at = _esw_bits(r["body"]), r["notified_at"].timestamp()
            if 85 in bits:
                gasps.setdefault(r["meter_id"], at - t_fail)
            if 86 in bits and at >= t_restore - 1:
                breaths.setdefault(r["meter_id"], at - t_restore)
        # every meter that lost its supply sent its last gasp (not one whose seeded day already had the
        # supply off at that moment: it raised no bit), and no other meter did but those whose seeded day
        # has an interruption of its own then
        def drop_generated(found: dict, t0: float, bit: int) -> None:
            for mid in set(found) - failed:
                probe = Meter(options.fleet, mid, epoch_start=EPOCH, clock=SimClock.real_time())
                assert bit in eventlog.esw_bits(probe, t0 + found[mid]), mid
                del found[mid]

        drop_generated(gasps, t_fail, 85)

        def raises(mid: int, t: float, bit: int) -> bool:
            """Whether the meter's ESW raised ``bit`` at ``t`` (not already set by its own supply events)."""
            meter = worker.meter_for_rows(mid)
            return bit not in eventlog.esw_bits(meter, t - 1e-3) and bit in eventlog.esw_bits(meter, t + 1e-3)

        expect = {mid for mid in failed if raises(mid, t_fail, 85)}
        assert set(gasps) == expect and len(gasps) > 0.9 * len(failed)
        # each one at its own seeded delay within the 60 s randomisation interval: the histogram is flat
        slack = 0.5 * SPEED  # half a second of scheduling lag, in simulated seconds
        for mid, offset in gasps.items():
            delay = push.randomisation(1, mid, push.ALERT_PUSH)
            assert delay - 0.01 <= offset <= delay + slack, (mid, delay, offset)
        bins = [0] * 6
        for offset in gasps.values():
            bins[min(5, int(offset // 10))] += 1
        expected = len(gasps) / 6
        assert all(0.5 * expected <= b <= 1.5 * expected for b in bins), bins
        # and they reached the head-end spread over the interval's 2 s of wall time, not all at once
        arrived = sorted(r["received_at"].timestamp() for r in rows if r["meter_id"] in gasps
                         and 85 in _esw_bits(r["body"]))
        assert arrived[-1] - arrived[0] > 0.75 * 60 / SPEED
        # first breaths: the same meters, after the restore, spread the same way
        # (not those whose own interruption goes on, or ended within the hour: 86 was set already)
        drop_generated(breaths, t_restore, 86)
        assert set(breaths) == {mid for mid in failed if raises(mid, t_restore, 86)}
        assert len(breaths) > 0.9 * len(failed)
        assert all(-0.01 <= off <= 60 + slack for off in breaths.values())
        # the meters' own record of the alarms: bit 85 and bit 86 settled as SENT
        alarms = asyncio.run(_sql(database_url, "SELECT meter_id, bit, status FROM eswf_push_alarms "
                                  "WHERE bit IN (85, 86) AND raised_at >= $1",
                                  _dt.datetime.fromtimestamp(t_fail - 1, _dt.UTC)))
        assert {r["meter_id"] for r in alarms if r["bit"] == 85} >= set(gasps)
        assert all(r["status"] == "SENT" for r in alarms)
        # the meters without supply owed no scheduled push while it was off
        counts = dict(worker.push_counts)
        assert sum(n for (_, outcome), n in counts.items() if outcome == "no-supply") > 0
        assert not any(outcome == "failed" for _, outcome in counts)
    finally:
        sink.stop()


def test_a_meter_without_supply_answers_nobody_and_logs_the_failure_after_the_restore(database_url):
    """Listen mode: a power failure on meter 0 only (--region 0-0): a head-end's connection to it is
    closed at once, meter 1 answers as before. The fleet is stopped and started again: the failure is
    still in force (the worker replays the commands before its start). After the restore meter 0 answers
    again, and gurux-dlms reads the failure in its power log (101 then 102) and the outage counter."""
    from gurux_dlms.objects import GXDLMSClock, GXDLMSData

    from meter_core.connection import Transport
    from meter_core.identity import meter_identity
    from tests.interop.clients import GuruxSession

    password = None

    def reader(port):  # the meter reader (client 32, LLS), who may read the counters and logs
        return GuruxSession(port, Transport.WRAPPER, client_sap=32, password=password)

    def failures(port) -> int:
        with reader(port) as s:
            s.open()
            return s.read(GXDLMSData("0.0.96.7.0.255"), 2)

    def refused(port) -> bool:
        try:
            with GuruxSession(port, Transport.WRAPPER) as s:
                s.open()
        except ConnectionError:
            return True
        return False

    with running_meters(2, speed=60.0, database_url=database_url) as m:
        password = meter_identity(m.options.fleet, 0).lls_password
        ports = [m.options.address(i)[1] for i in range(2)]
        count0 = failures(ports[0])
        _, reached, _ = _issue(database_url, "power-failure", first=0, last=0)
        assert reached == 1
        assert refused(ports[0])
        with GuruxSession(ports[1], Transport.WRAPPER) as s:
            s.open()
            assert s.read(GXDLMSClock("0.0.1.0.0.255"), 2) is not None  # meter 1 has its supply
        time.sleep(1.0)  # a simulated minute without supply
        stopped_at = m.worker.clock.sim(time.monotonic())
    with running_meters(2, speed=60.0, database_url=database_url, sim_start=stopped_at) as m:
        ports = [m.options.address(i)[1] for i in range(2)]
        deadline = time.monotonic() + 10
        while m.worker.commands is None or m.worker.commands.last is None:  # (its replay is done)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert refused(ports[0]) and not refused(ports[1])
        _issue(database_url, "restore", first=0, last=0)
        assert failures(ports[0]) == count0 + 1
        with reader(ports[0]) as s:
            s.open()
            assert s.read(GXDLMSData("0.0.96.11.2.255"), 2) == 102  # last power event: restoration


def test_a_tamper_sends_its_alert_and_the_enabled_event_log_push_and_billing_pushes_on_closure(database_url):
    """An operator's tamper (magnet, 201) on one meter: the alert push carries ESW bit 81 and, with the
    'other' event log's push enabled in push_schedules, that push carries the log's new entry (201).
    A billing period that closes sends the billing push with the closed period's billing profile row."""
    from fleet.settings import FleetOptions
    from meter_core.profiles import month_of, scheduled_billing

    asyncio.run(_sql(database_url, "UPDATE push_schedules SET enabled = true WHERE push_logical_name = $1",
                     push.EVENT_PUSHES[eventlog.OTHER]))
    options = FleetOptions(meters=2, seed=1)
    sink = RunningSink(database_url, options)
    now = time.time()
    closing = scheduled_billing(month_of(now) + 1, 1, 0, 0)  # the next 1st of the month, 00:00 IST
    try:
        with running_meters(2, hes=("127.0.0.1", sink.port), speed=600.0, sim_start=closing - 1800, dial_idle=0.2,
                            database_url=database_url):
            time.sleep(0.5)
            _, reached, t_tamper = _issue(database_url, "tamper", first=1, last=1, params={"code": 201})
            assert reached == 1
            time.sleep(5.0)  # the billing date passes, and the billing push's randomisation (15 min)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sink.sink.pending:
            time.sleep(0.1)
        rows = asyncio.run(_sql(database_url, "SELECT meter_id, push_logical_name AS p, notified_at, body "
                                "FROM push_received ORDER BY notified_at"))
    finally:
        sink.stop()
    alerts = [r for r in rows if r["p"] == push.ALERT_PUSH and r["meter_id"] == 1
              and 81 in _esw_bits(r["body"])]
    assert alerts and alerts[0]["notified_at"].timestamp() >= t_tamper
    events = [r for r in rows if r["p"] == push.EVENT_PUSHES[eventlog.OTHER]]
    assert [r["meter_id"] for r in events] == [1]
    entry = data_from_bytes(events[0]["body"]).value[3].value  # the log's last entry: clock, code, ...
    assert entry[0].value[1].value == 201
    billing = [r for r in rows if r["p"] == push.BILLING_PUSH]
    assert sorted(r["meter_id"] for r in billing) == [0, 1]
    assert all(closing <= r["notified_at"].timestamp() <= closing + 900 for r in billing)
    assert all(len(data_from_bytes(r["body"]).value[3].value) == 1 for r in billing)  # one billing row
