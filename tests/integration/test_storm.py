"""Storms injected through PostgreSQL (`fleet inject`): a 30 % power failure sends last-gasp pushes spread
over the alert push's randomisation interval, first breaths follow the restore, and the meters' profiles
show the gap (issue 6, acceptance 3)."""

from __future__ import annotations

import asyncio
import datetime as _dt
import math
import time

import asyncpg
import pytest

from fleet.runtime.faults import Command
from fleet.store import commands
from meter_core.codec.axdr import data_from_bytes
from meter_core.device import config as device_config
from meter_core.device import eventprofiles, logbook
from meter_core.device import pushes as push
from meter_core.device.clock import SimClock, day_of
from meter_core.device.config import DEFAULT_DEVICE
from meter_core.device.meter import Meter
from tests.integration.test_sink import RunningSink
from tests.servers import EPOCH, running_meters, wait_for

pytestmark = pytest.mark.integration

METERS = 600
SPEED = 30.0  # the 60-second randomisation interval plays in 2 s


async def _sql(url: str, query: str, *args):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def _issue(url: str, action: str, **kw) -> tuple[int, int, float]:
    """Issue a command as `fleet inject` does; wait for the worker's result: (command id, meters reached,
    sim time it was applied)."""
    cid = asyncio.run(commands.issue(url, action, first=kw.get("first"), last=kw.get("last"),
                                     share=kw.get("share", 1.0), params=kw.get("params", {})))
    rows = wait_for(f"a worker to apply command {cid} ({action})", lambda: asyncio.run(_sql(
        url, "SELECT meters, sim_at FROM fleet_command_results WHERE command_id = $1", cid)))
    return cid, rows[0]["meters"], rows[0]["sim_at"].timestamp()


def _record_arrivals(sink: RunningSink) -> dict[tuple[int, str, float], float]:
    """From now on, when (monotonic time) the sink takes each push: (meter, push setup, notified at) -> the
    first arrival. Kept by the sink's thread; read it once the meters have stopped."""
    arrived: dict[tuple[int, str, float], float] = {}
    s = sink.sink
    take = s.take

    def taking(apdu: bytes, peer: str):
        at, received = time.monotonic(), s.received
        reply = take(apdu, peer)
        if s.received > received:  # taken: its row is the last one pending (same thread, no await between)
            meter_id, push_ln, stamp = s.pending[-1][:3]
            arrived.setdefault((meter_id, push_ln, stamp.timestamp()), at)
        return reply

    s.take = taking
    return arrived


def _alert_pushes(url: str, since: float) -> list:
    return asyncio.run(_sql(url, "SELECT meter_id, notified_at, received_at, body FROM push_received "
                            "WHERE push_logical_name = $1 AND notified_at >= $2 ORDER BY notified_at",
                            device_config.ALERT_PUSH, _dt.datetime.fromtimestamp(since - 1, _dt.UTC)))


def _each_with(rows: list, bit: int, since: float) -> dict[int, list[float]]:
    """Each meter's alert pushes with ESW ``bit`` notified from ``since`` (less a second) on: when each was
    notified, in time order."""
    each: dict[int, list[float]] = {}
    for r in rows:  # (in time order)
        at = r["notified_at"].timestamp()
        if at >= since - 1 and bit in _esw_bits(r["body"]):
            each.setdefault(r["meter_id"], []).append(at)
    return each


def _first_with(rows: list, bit: int, since: float) -> dict[int, float]:
    """Each meter's first alert push with ESW ``bit`` notified from ``since`` (less a second) on: when it was
    notified (a meter may send more alerts later, for its own supply events)."""
    return {mid: times[0] for mid, times in _each_with(rows, bit, since).items()}


def _raises(worker, mid: int, t: float, bit: int) -> bool:
    """Whether the meter's ESW raised ``bit`` at ``t`` (not already set by its own supply events)."""
    meter = worker.meters.for_rows(mid)
    return bit not in eventprofiles.esw_bits(meter, t - 1e-3) and bit in eventprofiles.esw_bits(meter, t + 1e-3)


def _without_interruptions(options, meter_ids, span: float) -> float:
    """A time from now on at which none of these meters' seeded days has a supply interruption of its own for
    ``span`` simulated seconds (the supply events a test sees are then those it injects)."""
    probes = [Meter(options.fleet, mid, epoch_start=EPOCH, clock=SimClock.real_time()) for mid in meter_ids]
    t = time.time()
    for _ in range(100):
        ends = [e.end for p in probes for day in range(day_of(t) - 1, day_of(t + span) + 1)
                for e in p.pq_events(day) if e.kind == "INTERRUPTION" and e.start < t + span and e.end > t]
        if not ends:
            return t
        t = max(ends)
    raise AssertionError(f"meters {meter_ids} have no {span:.0f} s without an interruption")


def _esw_bits(body: bytes) -> set[int]:
    """The ESW bits set in an alert push's body (device ID, push setup, clock, ESW)."""
    esw = data_from_bytes(body).value[3].value
    return {i for i in range(esw.bits) if esw.data[i // 8] & (0x80 >> (i % 8))}


def test_a_power_failure_storm_sends_spread_last_gasps_then_first_breaths(database_url):
    from fleet.settings import FleetOptions

    options = FleetOptions(meters=METERS, seed=1)
    periodic = DEFAULT_DEVICE.scheduled()
    # The simulated day starts a minute before a half hour (IST's half hours are UTC's): the failure comes as
    # the half hour's instant and block load pushes fall due, so the failed meters owe some without supply.
    start = math.ceil(time.time() / 1800) * 1800 - 60
    sink = RunningSink(database_url, options)
    arrived = _record_arrivals(sink)
    try:
        with running_meters(METERS, hes=("127.0.0.1", sink.port), speed=SPEED, sim_start=start, dial_idle=0.3,
                            database_url=database_url) as m:
            worker = m.worker
            cid, reached, t_fail = _issue(database_url, "power-failure", share=0.3)
            failed = set(Command(cid, "power-failure", None, None, 0.3).meters(1, range(METERS)))
            gasping = m.call(lambda: {mid for mid in failed if _raises(worker, mid, t_fail, 85)})
            # The restore comes once the randomisation interval has passed twice over (in simulated time),
            # every last gasp has arrived, and a scheduled push of a failed meter has fallen due.
            owed_from = min(push.next_due(DEFAULT_DEVICE, 1, mid, p, t_fail) for mid in failed for p in periodic)

            def gasped() -> set[int]:
                return set(_first_with(_alert_pushes(database_url, t_fail), 85, t_fail))

            wait_for(f"two randomisation intervals and the last gasps of {len(gasping)} meters",
                      lambda: m.sim_now() >= max(t_fail + 2 * 60, owed_from) and gasping <= gasped(),
                      lambda: (f"{m.sim_now() - t_fail:.0f} simulated s after the failure, "
                               f"missing {sorted(gasping - gasped())}"))
            _, _, t_restore = _issue(database_url, "restore")
            breathing = m.call(lambda: {mid for mid in failed if _raises(worker, mid, t_restore, 86)})
            # the scheduled pushes the failed meters owed while without supply: counted "no-supply", not sent
            owed_off = [(mid, p, due) for mid in failed for p in periodic
                        for due in push.due_between(DEFAULT_DEVICE, 1, mid, p, t_fail, t_restore) if due < t_restore]
            assert owed_off, "no scheduled push of a failed meter fell due during the failure"

            def breathed() -> set[int]:
                return set(_first_with(_alert_pushes(database_url, t_restore), 86, t_restore))

            def no_supply() -> int:
                return m.call(lambda: sum(n for (_, outcome), n in worker.dialer.push_counts.items()
                                                 if outcome == "no-supply"))

            def alarms_of(bit: int) -> set[int]:
                return {r["meter_id"] for r in asyncio.run(_sql(
                    database_url, "SELECT meter_id FROM eswf_push_alarms WHERE bit = $1 AND raised_at >= $2",
                    bit, _dt.datetime.fromtimestamp(t_fail - 1, _dt.UTC)))}

            # The meters stop once the randomisation interval has passed twice over since the restore, the
            # first breaths have arrived, the pushes owed without supply are counted, and the meters' record
            # of the alarms is written.
            wait_for(f"two randomisation intervals, the first breaths of {len(breathing)} meters, "
                      f"{len(owed_off)} pushes counted without supply and the alarms recorded",
                      lambda: m.sim_now() >= t_restore + 2 * 60 and breathing <= breathed()
                      and no_supply() >= len(owed_off) and gasping <= alarms_of(85) and breathing <= alarms_of(86),
                      lambda: (f"{m.sim_now() - t_restore:.0f} simulated s after the restore, first breaths "
                               f"missing {sorted(breathing - breathed())}, {no_supply()} counted without supply, "
                               f"alarms missing {sorted(gasping - alarms_of(85))} (85) "
                               f"{sorted(breathing - alarms_of(86))} (86)"))
        assert reached == len(failed) and 0.25 * METERS < len(failed) < 0.35 * METERS

        wait_for("the sink to write what it took", lambda: not sink.sink.pending)
        rows = _alert_pushes(database_url, t_fail)
        gasps, breaths = _first_with(rows, 85, t_fail), _first_with(rows, 86, t_restore)
        # every meter that lost its supply sent its last gasp (not one whose seeded day already had the
        # supply off at that moment: it raised no bit), and no other meter did but those whose seeded day
        # has an interruption of its own then
        def drop_generated(found: dict, bit: int) -> None:
            for mid in set(found) - failed:
                probe = Meter(options.fleet, mid, epoch_start=EPOCH, clock=SimClock.real_time())
                assert bit in eventprofiles.esw_bits(probe, found[mid]), mid
                del found[mid]

        drop_generated(gasps, 85)
        expect = {mid for mid in failed if _raises(worker, mid, t_fail, 85)}
        assert set(gasps) == expect and len(gasps) > 0.9 * len(failed)
        # each one notified at its own seeded delay within the 60 s randomisation interval (a push carries
        # the time it fell due, in hundredths): the histogram is flat
        for mid, at in gasps.items():
            delay = push.randomisation(DEFAULT_DEVICE, 1, mid, device_config.ALERT_PUSH)
            assert delay - 0.01 <= at - t_fail <= delay + 0.01, (mid, delay, at - t_fail)
        bins = [0] * 6
        for at in gasps.values():
            bins[min(5, int((at - t_fail) // 10))] += 1
        expected = len(gasps) / 6
        assert all(0.5 * expected <= b <= 1.5 * expected for b in bins), bins
        # and each reached the head-end no sooner than its delay after the failure (simulated time as the
        # meters count it): spread over the interval, not all at once
        def arrival(mid: int, at: float) -> float:
            return worker.clock.sim(arrived[(mid, device_config.ALERT_PUSH, at)])

        early = {mid: round(at - arrival(mid, at), 3) for mid, at in gasps.items() if arrival(mid, at) < at}
        assert not early, f"last gasps that arrived before they were due (simulated s early): {early}"
        # first breaths: the same meters, after the restore, spread the same way
        # (not those whose own interruption goes on, or ended within the hour: 86 was set already)
        drop_generated(breaths, 86)
        assert set(breaths) == {mid for mid in failed if _raises(worker, mid, t_restore, 86)}
        assert len(breaths) > 0.9 * len(failed)
        # (an alert a meter raises for a supply event of its own soon after the restore carries bit 86 too,
        # and may come first: the first breath is the one at the meter's delay)
        carrying = _each_with(rows, 86, t_restore)
        for mid in breaths:
            delay = push.randomisation(DEFAULT_DEVICE, 1, mid, device_config.ALERT_PUSH)
            at = [a for a in carrying[mid] if delay - 0.01 <= a - t_restore <= delay + 0.01]
            assert at, (mid, delay, [a - t_restore for a in carrying[mid]])
            breaths[mid] = at[0]
        early = {mid: round(at - arrival(mid, at), 3) for mid, at in breaths.items() if arrival(mid, at) < at}
        assert not early, f"first breaths that arrived before they were due (simulated s early): {early}"
        # the meters' own record of the alarms: bit 85 and bit 86 settled as SENT
        alarms = asyncio.run(_sql(database_url, "SELECT meter_id, bit, status FROM eswf_push_alarms "
                                  "WHERE bit IN (85, 86) AND raised_at >= $1",
                                  _dt.datetime.fromtimestamp(t_fail - 1, _dt.UTC)))
        assert {r["meter_id"] for r in alarms if r["bit"] == 85} >= set(gasps)
        assert all(r["status"] == "SENT" for r in alarms)
        # the meters without supply owed no scheduled push while it was off: each one due then was counted
        # "no-supply" (other meters' own interruptions count too), and none was sent or settled
        counts = dict(worker.dialer.push_counts)
        assert sum(n for (_, outcome), n in counts.items() if outcome == "no-supply") >= len(owed_off) > 0
        assert not any(outcome == "failed" for _, outcome in counts)
        window = (list(failed), list(periodic), _dt.datetime.fromtimestamp(t_fail, _dt.UTC),
                  _dt.datetime.fromtimestamp(t_restore, _dt.UTC))
        assert not asyncio.run(_sql(database_url, "SELECT * FROM push_due WHERE meter_id = ANY($1) AND "
                                    "push_logical_name = ANY($2) AND due_at > $3 AND due_at < $4", *window))
        assert not asyncio.run(_sql(database_url, "SELECT meter_id FROM push_received WHERE meter_id = ANY($1) AND "
                                    "push_logical_name = ANY($2) AND notified_at > $3 AND notified_at < $4",
                                    *window))
    finally:
        sink.stop()


def test_a_meter_without_supply_answers_nobody_and_logs_the_failure_after_the_restore(database_url):
    """Listen mode: a power failure on meter 0 only (--region 0-0): a head-end's connection to it is
    closed at once, meter 1 answers as before. The fleet is stopped and started again: the failure is
    still in force (the worker replays the commands before its start). After the restore meter 0 answers
    again, and gurux-dlms reads the failure in its power log (101 then 102) and the outage counter."""
    from gurux_dlms.objects import GXDLMSClock, GXDLMSData

    from fleet.settings import FleetOptions
    from meter_core.connection import Transport
    from meter_core.device.identity import meter_identity
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

    # (the failure and restore counted are the ones injected: the meters have none of their own for a
    # simulated day, 24 wall minutes at this speed)
    start = _without_interruptions(FleetOptions(meters=2, seed=1), (0, 1), 86400.0)
    with running_meters(2, speed=60.0, database_url=database_url, sim_start=start) as m:
        password = meter_identity(m.options.fleet, 0).lls_password
        ports = [m.options.address(i)[1] for i in range(2)]
        count0 = failures(ports[0])
        _, reached, t_fail = _issue(database_url, "power-failure", first=0, last=0)
        assert reached == 1
        assert refused(ports[0])
        with GuruxSession(ports[1], Transport.WRAPPER) as s:
            s.open()
            assert s.read(GXDLMSClock("0.0.1.0.0.255"), 2) is not None  # meter 1 has its supply
        wait_for("a simulated minute without supply", lambda: m.sim_now() >= t_fail + 60)
        stopped_at = m.sim_now()
    with running_meters(2, speed=60.0, database_url=database_url, sim_start=stopped_at) as m:
        ports = [m.options.address(i)[1] for i in range(2)]
        wait_for("the restarted worker to replay the commands",
                  lambda: m.worker.commands is not None and m.worker.commands.last is not None)
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
    from meter_core.device.history import month_of, scheduled_billing

    asyncio.run(_sql(database_url, "UPDATE push_schedules SET enabled = true WHERE push_logical_name = $1",
                     device_config.EVENT_PUSHES[logbook.OTHER]))
    options = FleetOptions(meters=2, seed=1)
    sink = RunningSink(database_url, options)
    now = time.time()
    closing = scheduled_billing(month_of(now) + 1, 1, 0, 0)  # the next 1st of the month, 00:00 IST
    try:
        with running_meters(2, hes=("127.0.0.1", sink.port), speed=600.0, sim_start=closing - 1800, dial_idle=0.2,
                            database_url=database_url) as m:
            _, reached, t_tamper = _issue(database_url, "tamper", first=1, last=1, params={"code": 201})
            assert reached == 1

            def received() -> list:
                return asyncio.run(_sql(database_url, "SELECT meter_id, push_logical_name AS p, notified_at, body "
                                        "FROM push_received ORDER BY notified_at"))

            def looked_for(rows) -> set:
                """Of the pushes the test looks for, those received."""
                got = {(r["meter_id"], r["p"] if r["p"] != device_config.ALERT_PUSH or 81 not in _esw_bits(r["body"])
                        else "alert with bit 81") for r in rows}
                return got & {(1, "alert with bit 81"), (1, device_config.EVENT_PUSHES[logbook.OTHER]),
                              (0, device_config.BILLING_PUSH), (1, device_config.BILLING_PUSH)}

            # the billing date passes, and the billing push's randomisation (15 min), and ten simulated
            # minutes more; by then the alert, the event log's push and the billing pushes have come
            wait_for("the tamper's alert and event log pushes and both meters' billing pushes",
                      lambda: m.sim_now() >= closing + 900 + 600 and len(looked_for(received())) == 4,
                      lambda: f"{m.sim_now() - closing:.0f} simulated s after the closing, {looked_for(received())}")
        wait_for("the sink to write what it took", lambda: not sink.sink.pending)
        rows = received()
    finally:
        sink.stop()
    alerts = [r for r in rows if r["p"] == device_config.ALERT_PUSH and r["meter_id"] == 1
              and 81 in _esw_bits(r["body"])]
    assert alerts and alerts[0]["notified_at"].timestamp() >= t_tamper
    events = [r for r in rows if r["p"] == device_config.EVENT_PUSHES[logbook.OTHER]]
    assert [r["meter_id"] for r in events] == [1]
    entry = data_from_bytes(events[0]["body"]).value[3].value  # the log's last entry: clock, code, ...
    assert entry[0].value[1].value == 201
    billing = [r for r in rows if r["p"] == device_config.BILLING_PUSH]
    assert sorted(r["meter_id"] for r in billing) == [0, 1]
    assert all(closing <= r["notified_at"].timestamp() <= closing + 900 for r in billing)
    assert all(len(data_from_bytes(r["body"]).value[3].value) == 1 for r in billing)  # one billing row
