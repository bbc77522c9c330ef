"""Supply events, event logs, counters, ESW and ESWF over the sans-I/O meter."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import BitString, CosemDateTime, Data, DataType
from meter_core.device import eventprofiles
from meter_core.device import powerquality as pq
from meter_core.device.clock import day_of
from meter_core.device.identity import FleetConfig, MeterKind
from meter_core.device.meter import Meter
from tests.unit.test_control import act, reader, set_
from tests.unit.test_profiles import EPOCH, IST, T0, by_entry, by_range, rows, stamp

FLEET1 = FleetConfig(seed=7, kind=MeterKind.SINGLE_PHASE)


def find_day(kind: str, meter_id: int = 3, fleet=FLEET1, before: float = T0, longer: float = 1800):
    """A recent day of the meter with an event of ``kind`` (days are pure: searching is cheap)."""
    day = day_of(before) - 2
    for d in range(day, day - 200, -1):
        for e in pq.day_events(fleet.seed, meter_id, fleet.kind, d):
            if e.kind == kind and e.end - e.start > longer:
                return d, e
    raise AssertionError(f"no {kind} in 200 days")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(19_000, 21_000), st.sampled_from(list(MeterKind)))
def test_day_events_are_reproducible_ordered_and_do_not_overlap(meter_id, day, kind):
    events = pq.day_events(7, meter_id, kind, day)
    assert events == pq.day_events(7, meter_id, kind, day)
    assert [e.start for e in events] == sorted(e.start for e in events)
    midnight = day * 86400 - pq.IST_S
    for e in events:
        assert midnight <= e.start < e.end <= midnight + 86400
        if e.kind == "INTERRUPTION":
            assert e.end <= midnight + pq.LAST_END
        same = [o for o in events if o.kind == e.kind and o is not e]
        assert all(e.end <= o.start or e.start >= o.end for o in same)


def test_meters_have_their_own_events():
    days = range(20_000, 20_030)
    a = [pq.day_events(7, 1, MeterKind.SINGLE_PHASE, d) for d in days]
    b = [pq.day_events(7, 2, MeterKind.SINGLE_PHASE, d) for d in days]
    assert a != b
    assert sum(len(x) for x in a) > 10


def test_an_interruption_stops_energy_shows_a_gap_and_is_logged_and_counted():
    day, outage = find_day("INTERRUPTION")
    m = Meter(FLEET1, 3, epoch_start=EPOCH)
    mid = (outage.start + outage.end) / 2
    assert m.instant_at(mid).voltage == (0.0, 0.0, 0.0) and m.instant_at(mid).active_power == 0.0
    assert m.readings(outage.start + 1)[0] == m.readings(outage.end - 1)[0]  # nothing counted while off
    # the day's energy is the load model's: what the outage held back is used after it (cold load pickup)
    midnight = day * 86400 - pq.IST_S
    assert m.energy_at(midnight + 86400).active_import_wh == pytest.approx(
        m.load.energy(midnight + 86400).active_import_wh, rel=1e-9)
    assert m.instant_at(outage.end + 60).active_power > m.load.instant(outage.end + 60).active_power
    # blocks entirely inside the outage: no energy, no voltage
    p = reader(MeterKind.SINGLE_PHASE, now=midnight + 2 * 86400)
    local = dt.datetime.fromtimestamp(midnight, dt.UTC).replace(tzinfo=None) + IST
    blocks = rows(p, "1.0.99.1.0.255", by_range(local, local + dt.timedelta(days=1)))
    inside = [b for b in blocks
              if outage.start + 1800 <= (stamp(b[0]) - IST).replace(tzinfo=dt.UTC).timestamp() <= outage.end]
    assert inside and all(b[1] == 0 and b[2] == 0 for b in inside)  # 1ph: clock, avg V, kWh import
    # the power log has the pair, stamped at the outage's start and end
    log = rows(p, "0.0.99.98.2.255")
    codes = {(stamp(r[0]), r[1]) for r in log}
    start_local = dt.datetime.fromtimestamp(int(outage.start), dt.UTC).replace(tzinfo=None) + IST
    assert any(code == 101 and abs((t - start_local).total_seconds()) < 1 for t, code in codes)
    count, seconds = eventprofiles.outage_totals(p.meter, midnight + 86400)
    before, _ = eventprofiles.outage_totals(p.meter, outage.start - 1)
    assert count >= before + 1 and seconds > outage.end - outage.start - 1


def test_a_sag_lowers_voltages_sets_esw_bit_4_and_logs_9_then_10():
    day, sag = find_day("VOLTAGE_SAG", longer=600)
    m = Meter(FLEET1, 3, epoch_start=EPOCH)
    mid = (sag.start + sag.end) / 2
    if any(e.kind == "INTERRUPTION" and e.start <= mid < e.end for e in m.pq_events(day)):
        pytest.skip("sag under an outage")
    assert m.instant_at(mid).voltage[0] == pytest.approx(m.load.instant(mid).voltage[0] * sag.magnitude)
    assert 4 in eventprofiles.esw_bits(m, mid)
    assert 4 not in eventprofiles.esw_bits(m, sag.end + 1) or any(
        e.kind == "VOLTAGE_SAG" and e.start <= sag.end + 1 < e.end for e in m.pq_events(day))
    p = reader(MeterKind.SINGLE_PHASE, now=sag.end + 60)
    log = rows(p, "0.0.99.98.0.255")
    assert [r[1] for r in log[-2:]] == [9, 10]
    assert log[-2][3] < 230 * 100 * 0.9  # snapshot voltage (cV) at the occurrence: low
    assert p.get(1, "0.0.96.11.0.255", 2).value.value == 10  # last voltage event code


def test_transaction_events_and_the_fifo_depth():
    from tests.unit.test_meter import us_pair
    from tests.unit.test_profiles import meter_of

    p = us_pair(meter=meter_of(MeterKind.THREE_PHASE), now=T0)  # clock set: the utility-settings client
    p.associate()
    for i in range(25):
        p.client.set(8, "0.0.1.0.0.255", 2, Data(DataType.OCTET_STRING, CosemDateTime.from_datetime(
            dt.datetime(2026, 11, 24, 12, 10, i)).to_bytes()))
        p.exchange()
    log = rows(p, "0.0.99.98.3.255")
    assert len(log) == 20 and {r[1] for r in log} == {151}
    assert rows(p, "0.0.99.98.3.255", by_entry(1, 1)) == log[:1]
    assert p.get(1, "0.0.96.11.3.255", 2).value.value == 151


def test_tamper_esw_and_counts():
    p = reader()
    m = p.meter
    m.inject_tamper(201, p.now, duration=600)
    assert 81 in eventprofiles.esw_bits(m, m.sim(p.now) + 1)
    assert 81 not in eventprofiles.esw_bits(m, m.sim(p.now) + 601)
    later = reader(now=p.now + 700, meter=m)
    log = rows(later, "0.0.99.98.4.255")
    assert [r[1] for r in log] == [201, 202]
    assert later.get(1, "0.0.94.91.0.255", 2).value.value == 1  # tamper count
    m.inject_tamper(251, later.now)
    assert rows(reader(now=later.now + 1, meter=m), "0.0.99.98.5.255")[-1][1] == 251
    assert 83 in eventprofiles.esw_bits(m, m.sim(later.now) + 5)


def test_disconnect_stops_energy_and_is_logged():
    p = reader(MeterKind.SINGLE_PHASE)
    m = p.meter
    assert act(p, 70, "0.0.96.3.10.255", 1, Data(DataType.INTEGER, 0)) == ActionResult.SUCCESS
    t = m.sim(p.now)
    assert m.readings(t + 3600)[0] == m.readings(t)[0]
    assert m.load.energy(t + 3600).active_import_wh > m.load.energy(t).active_import_wh
    assert 84 in eventprofiles.esw_bits(m, t + 1)
    later = reader(MeterKind.SINGLE_PHASE, now=p.now + 3600, meter=m)
    assert act(later, 70, "0.0.96.3.10.255", 2, Data(DataType.INTEGER, 0)) == ActionResult.SUCCESS
    assert [r[1] for r in rows(later, "0.0.99.98.6.255")] == [302]  # depth 1: the last control event
    assert m.readings(t + 7200)[0] > m.readings(t + 3600)[0]


def test_esw_and_eswf_over_dlms():
    p = reader()
    esw = p.get(1, "0.0.94.91.18.255", 2).value
    assert esw.tag is DataType.BIT_STRING and esw.value.bits == 128
    eswf = Data(DataType.BIT_STRING, BitString(128, b"\x0f" + b"\xff" * 15))
    assert set_(p, 1, "0.0.94.91.26.255", 2, eswf) == DataAccessResult.SUCCESS
    assert p.get(1, "0.0.94.91.26.255", 2).value == eswf
    assert set_(p, 1, "0.0.94.91.26.255", 2, Data(DataType.BIT_STRING, BitString(8, b"\x01"))) == \
        DataAccessResult.OTHER_REASON
    assert set_(p, 1, "0.0.94.91.26.255", 2, Data(DataType.OCTET_STRING, bytes(16))) == \
        DataAccessResult.TYPE_UNMATCHED
    assert rows(p, "0.0.99.98.3.255")[-1][1] == 165
