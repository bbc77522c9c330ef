"""Injected supply changes on the sans-I/O meter (what `fleet inject` does to each meter it reaches): a
power failure stops the energy, zeroes the instant values, logs 101/102, raises ESW bit 85 then 86 for
an hour, and leaves a gap in the block profile; a load change scales the load drawn."""

from __future__ import annotations

import datetime as dt

import pytest

from meter_core.device import eventprofiles, logbook, profiles
from meter_core.device import powerquality as pq
from meter_core.device.clock import day_of
from meter_core.device.identity import FleetConfig, MeterKind
from meter_core.device.meter import Meter
from tests.unit.test_meter import EPOCH

HOUR = 3600.0


def quiet_meter(kind=MeterKind.THREE_PHASE) -> tuple[Meter, float]:
    """A meter and a midnight (IST) that starts two days without generated supply events."""
    fleet = FleetConfig(seed=11, kind=kind)
    for meter_id in range(50):
        m = Meter(fleet, meter_id, epoch_start=EPOCH)
        day = day_of(dt.datetime(2026, 11, 20, tzinfo=dt.UTC).timestamp())
        if not m.pq_events(day) and not m.pq_events(day + 1):
            return m, day * pq.DAY - pq.IST_S
    raise AssertionError("no quiet meter")


@pytest.mark.parametrize("kind", list(MeterKind))
def test_a_power_failure_stops_the_energy_and_leaves_a_gap(kind):
    m, midnight = quiet_meter(kind)
    fresh = Meter(m.fleet, m.identity.meter_id, epoch_start=EPOCH)
    t = midnight + 10 * HOUR + 7  # a little after 10:00 IST: the 10:00-10:30 block is partly off
    before = m.readings(t)
    count0, seconds0 = eventprofiles.outage_totals(m, t)
    assert m.change_supply(0.0, now=t) is True
    assert m.change_supply(0.0, now=t + 10) is False  # already off
    assert m.readings(t + HOUR) == before
    inst = m.instant_at(t + 60)
    assert inst.voltage == (0.0, 0.0, 0.0) and inst.current == (0.0, 0.0, 0.0) and inst.active_power == 0.0
    assert m.supply_off(t + 60) and not m.supply_off(t - 1)
    assert 85 in eventprofiles.esw_bits(m, t + 1) and 85 not in eventprofiles.esw_bits(m, t - 1)
    assert m.change_supply(1.5, now=t + 100) is False  # no supply, no load to change

    restore = t + 2 * HOUR
    assert m.change_supply(None, now=restore) is True
    assert 85 not in eventprofiles.esw_bits(m, restore) and 86 in eventprofiles.esw_bits(m, restore + 10)
    assert 86 not in eventprofiles.esw_bits(m, restore + HOUR + 1)
    log = [(e.code, e.time) for e in eventprofiles.last_events(m, logbook.POWER, restore + 1, 40)]
    assert log[-2:] == [(101, t), (102, restore)]
    assert eventprofiles.outage_totals(m, restore + 1) == (count0 + 1, pytest.approx(seconds0 + 2 * HOUR))
    # after the restore the load is the model's again: the energy goes on from where it stopped
    later = restore + 3 * HOUR
    lost = fresh.readings(restore)[0] - fresh.readings(t)[0]
    assert lost > 0
    assert abs((fresh.readings(later)[0] - m.readings(later)[0]) - lost) <= 1
    # the block profile: blocks inside the outage have no energy and no voltage, the one it started
    # in has part of both
    period = m.state.profile_capture_period
    caps = m.block_captures()
    keys = range(caps.count(t) - 1, caps.count(restore) + 1)  # the block before it .. the one after
    rows = list(profiles.BlockLoad().rows(m, keys, later, None))
    inside = [r for r in rows if t <= r.clock - period and r.clock <= restore]
    assert len(inside) >= 2
    for r in inside:
        assert r.r1 == r.r0 and max(r.volts) == 0.0 and max(r.currents) == 0.0
    # 10:00-10:30, off from 10:00:07: its averages are those of the 7 s it had supply, so its voltage
    # is the feeder's and its current the load's, not pulled down (or up) by the outage
    before, first = rows[0], rows[1]
    assert 0 < first.r1[0] - first.r0[0] < before.r1[0] - before.r0[0]
    assert abs(max(first.volts) - max(before.volts)) < 0.02 * max(before.volts)
    assert 0 < max(first.currents) < 3 * max(before.currents)


def test_a_load_change_scales_the_load_and_a_failure_ends_it():
    m, midnight = quiet_meter()
    fresh = Meter(m.fleet, m.identity.meter_id, epoch_start=EPOCH)
    t = midnight + 12 * HOUR
    assert m.change_supply(2.0, now=t, duration=HOUR) is True
    model = fresh.readings(t + HOUR)[0] - fresh.readings(t)[0]
    got = m.readings(t + HOUR)[0] - m.readings(t)[0]
    assert abs(got - 2 * model) <= 2
    assert m.instant_at(t + 60).active_power == pytest.approx(2 * fresh.instant_at(t + 60).active_power)
    # it ended by itself after an hour: the next hour is the model's
    model2 = fresh.readings(t + 2 * HOUR)[0] - fresh.readings(t + HOUR)[0]
    assert abs((m.readings(t + 2 * HOUR)[0] - m.readings(t + HOUR)[0]) - model2) <= 1
    # an open-ended change, then a power failure: the change ends with the supply
    assert m.change_supply(0.5, now=t + 3 * HOUR) is True
    assert m.change_supply(0.0, now=t + 4 * HOUR) is True
    assert m.change_supply(None, now=t + 5 * HOUR) is True
    assert m.supply_factor(t + 6 * HOUR) == 1.0
    assert m.change_supply(None, now=t + 7 * HOUR) is False  # nothing left to restore


def test_the_relay_and_a_power_failure_overlapping_count_the_lost_energy_once():
    m, midnight = quiet_meter()
    fresh = Meter(m.fleet, m.identity.meter_id, epoch_start=EPOCH)
    t = midnight + 9 * HOUR
    m.set_disconnected(True, now=t)
    m.change_supply(0.0, now=t + HOUR)
    m.set_disconnected(False, now=t + 2 * HOUR)
    m.change_supply(None, now=t + 3 * HOUR)
    end = t + 5 * HOUR
    lost = fresh.readings(t + 3 * HOUR)[0] - fresh.readings(t)[0]
    assert abs((fresh.readings(end)[0] - m.readings(end)[0]) - lost) <= 1
    assert m.readings(t + 3 * HOUR) == m.readings(t)


def test_a_restore_before_the_duration_ends_logs_the_end_once():
    """A power failure and a magnet injected for two hours, restored after one: 102 and 202 are logged at
    the restore, and the ends their durations had logged ahead are taken back (logs and counts)."""
    m, midnight = quiet_meter()
    t = midnight + 8 * HOUR
    m.change_supply(0.0, now=t, duration=2 * HOUR)
    m.inject_tamper(201, now=t, duration=2 * HOUR)
    counts = dict(m.state.event_counts)
    assert m.change_supply(None, now=t + HOUR) is True
    assert m.restore_tampers(now=t + HOUR) is True
    later = t + 5 * HOUR
    power = [(e.code, e.time) for e in eventprofiles.last_events(m, logbook.POWER, later, 40) if e.time >= t]
    other = [(e.code, e.time) for e in eventprofiles.last_events(m, logbook.OTHER, later, 60) if e.time >= t]
    assert power == [(101, t), (102, t + HOUR)]
    assert other == [(201, t), (202, t + HOUR)]
    assert dict(m.state.event_counts) == counts  # one end each, moved, not added
    assert 85 not in eventprofiles.esw_bits(m, t + HOUR + 1) and 81 not in eventprofiles.esw_bits(m, t + HOUR + 1)
    assert m.restore_tampers(now=t + 2 * HOUR) is False


def test_a_meter_without_supply_raises_no_alert_but_its_last_gasp():
    """A magnet held on while the supply is off: the meter detects nothing until the supply returns, so
    no alert push is owed for it then; its bit (81) is in the ESW the first breath's push carries. With
    the supply on, the same tamper raises an alert at once."""
    from meter_core.device import pushes

    m, midnight = quiet_meter()
    t = midnight + 8 * HOUR
    m.change_supply(0.0, now=t)
    m.inject_tamper(201, now=t + 600)
    m.change_supply(None, now=t + HOUR)
    alerts = [(at, set(bits)) for at, bits in pushes.alerts_between(m, t - 1, t + 2 * HOUR)]
    assert alerts == [(t, {85}), (t + HOUR, {86})]
    assert {81, 86} <= eventprofiles.esw_bits(m, t + HOUR + 60)
    m.inject_tamper(203, now=t + 3 * HOUR)  # (neutral disturbance, with the supply on)
    assert pushes.alerts_between(m, t + 2 * HOUR, t + 4 * HOUR) == [(t + 3 * HOUR, frozenset({82}))]
