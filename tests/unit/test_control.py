"""Writes and methods a head-end uses to programme a meter, over the sans-I/O meter.

tests/interop/test_control.py does the same with gurux-dlms over TCP.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter_core.client import ActionDone, Associated, ExceptionReceived, SetResult
from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import Data, DataType
from meter_core.connection import Transport
from meter_core.device.identity import FleetConfig, MeterKind, meter_identity
from meter_core.device.meter import Meter
from tests.strategies import data_values
from tests.unit.test_meter import EPOCH, Pair, us_pair
from tests.unit.test_profiles import BILLING, by_entry, read, rows, stamp

T0 = dt.datetime(2026, 11, 24, 6, 40, tzinfo=dt.UTC).timestamp()


def reader(kind=MeterKind.THREE_PHASE, now=T0, meter=None) -> Pair:
    """A head-end's programming session: client 48 (utility settings, HLS, ciphered), as IS 15959
    meters take writes and methods there and not from the meter reader."""
    fleet = FleetConfig(seed=7, kind=kind)
    meter = meter or Meter(fleet, 3, epoch_start=EPOCH)
    p = us_pair(meter=meter, now=now)
    assert isinstance(p.associate(), Associated)
    return p


def test_the_meter_reader_may_read_but_not_programme():
    fleet = FleetConfig(seed=7)
    p = Pair(Transport.WRAPPER, client_sap=32, password=meter_identity(fleet, 3).lls_password.encode(),
             meter=Meter(fleet, 3, epoch_start=EPOCH), now=T0)
    assert isinstance(p.associate(), Associated)
    assert p.get(1, "1.0.0.8.0.255", 2).value.value == 1800
    assert set_(p, 1, "1.0.0.8.0.255", 2, Data(DataType.LONG_UNSIGNED, 900)) == DataAccessResult.READ_WRITE_DENIED
    assert act(p, 70, "0.0.96.3.10.255", 1, Data(DataType.INTEGER, 0)) == ActionResult.READ_WRITE_DENIED
    assert p.meter.state.demand_integration_period == 1800 and not p.meter.state.disconnected


def set_(p: Pair, class_id, obis, attr, value: Data):
    p.client.set(class_id, obis, attr, value)
    ev = p.exchange()
    assert isinstance(ev, SetResult)
    return ev.result


def act(p: Pair, class_id, obis, method, params: Data | None = None):
    p.client.action(class_id, obis, method, params)
    ev = p.exchange()
    assert isinstance(ev, ActionDone)
    return ev.result


def test_demand_integration_period_is_checked_then_set():
    p = reader()
    assert set_(p, 1, "1.0.0.8.0.255", 2, Data(DataType.LONG_UNSIGNED, 600)) == DataAccessResult.OTHER_REASON
    assert set_(p, 1, "1.0.0.8.0.255", 2, Data(DataType.DOUBLE_LONG_UNSIGNED, 900)) == DataAccessResult.TYPE_UNMATCHED
    assert p.get(1, "1.0.0.8.0.255", 2).value.value == 1800  # nothing changed
    count = p.get(1, "0.0.96.2.0.255", 2).value.value
    assert set_(p, 1, "1.0.0.8.0.255", 2, Data(DataType.LONG_UNSIGNED, 900)) == DataAccessResult.SUCCESS
    assert p.get(1, "1.0.0.8.0.255", 2).value.value == 900
    assert p.get(5, "1.0.1.4.0.255", 8).value.value == 900  # the demand register's period follows
    assert p.get(1, "0.0.96.2.0.255", 2).value.value == count + 1  # programming count


def test_profile_capture_period_through_the_data_object():
    p = reader()
    assert set_(p, 1, "1.0.0.8.4.255", 2, Data(DataType.LONG_UNSIGNED, 900)) == DataAccessResult.SUCCESS
    assert read(p, "1.0.99.1.0.255", 4).value.value == 900


def test_public_client_may_not_programme():
    fleet = FleetConfig(seed=7)
    p = Pair(Transport.WRAPPER, meter=Meter(fleet, 3, epoch_start=EPOCH), now=T0)
    p.associate()
    p.client.set(1, "1.0.0.8.0.255", 2, Data(DataType.LONG_UNSIGNED, 900))
    ev = p.exchange()
    assert isinstance(ev, ExceptionReceived)  # SET is not in the public client's conformance
    assert p.meter.state.demand_integration_period == 1800


def test_md_reset_closes_the_billing_period_now():
    p = reader()
    before = p.get(1, "0.0.0.1.0.255", 2).value.value
    md_before = p.get(4, "1.0.1.6.0.255", 2).value.value
    assert act(p, 9, "0.0.10.0.1.255", 1, Data(DataType.LONG_UNSIGNED, 1)) == ActionResult.SUCCESS
    assert p.get(1, "0.0.0.1.0.255", 2).value.value == before + 1
    last = rows(p, BILLING)[-1]
    now_ist = dt.datetime.fromtimestamp(T0, dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=330)
    assert abs((stamp(last[0]) - now_ist).total_seconds()) < 2
    assert p.get(4, "1.0.1.6.0.255", 2).value.value < md_before  # a new period: no block yet
    assert act(p, 9, "0.0.10.0.1.255", 1, Data(DataType.LONG_UNSIGNED, 2)) == ActionResult.OBJECT_UNAVAILABLE
    assert act(p, 9, "0.0.10.0.1.255", 1, Data(DataType.UNSIGNED, 1)) == ActionResult.TYPE_UNMATCHED


def test_billing_date_moves_the_next_billing():
    p = reader()
    date = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        Data(DataType.OCTET_STRING, bytes((6, 30, 0, 0))), Data(DataType.OCTET_STRING, b"\xff\xff\xff\x0f\xff"))),))
    bad = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        Data(DataType.OCTET_STRING, bytes((6, 30, 0, 0))), Data(DataType.OCTET_STRING, b"\x07\xea\x0c\x0f\xff"))),))
    assert set_(p, 22, "0.0.15.0.0.255", 4, bad) == DataAccessResult.OTHER_REASON
    assert set_(p, 22, "0.0.15.0.0.255", 4, Data(DataType.LONG_UNSIGNED, 1)) == DataAccessResult.TYPE_UNMATCHED
    assert set_(p, 22, "0.0.15.0.0.255", 4, date) == DataAccessResult.SUCCESS
    assert p.get(22, "0.0.15.0.0.255", 4).value == date
    count = p.get(1, "0.0.0.1.0.255", 2).value.value
    later = reader(now=T0 + 25 * 86400, meter=p.meter)  # 19 December: the 15th has passed
    assert later.get(1, "0.0.0.1.0.255", 2).value.value == count + 1
    assert stamp(rows(later, BILLING)[-1][0]) == dt.datetime(2026, 12, 15, 6, 30)


def test_disconnect_and_reconnect():
    p = reader(MeterKind.SINGLE_PHASE)
    assert p.get(70, "0.0.96.3.10.255", 2).value.value is True
    assert act(p, 70, "0.0.96.3.10.255", 1, Data(DataType.INTEGER, 0)) == ActionResult.SUCCESS
    assert p.get(70, "0.0.96.3.10.255", 2).value.value is False
    assert p.get(70, "0.0.96.3.10.255", 3).value.value == 0
    assert act(p, 70, "0.0.96.3.10.255", 2, Data(DataType.INTEGER, 0)) == ActionResult.SUCCESS
    assert p.get(70, "0.0.96.3.10.255", 3).value.value == 1


def test_ct_pt_meters_have_no_relay():
    p = reader(MeterKind.CT_PT)
    assert act(p, 70, "0.0.96.3.10.255", 1, Data(DataType.INTEGER, 0)) == ActionResult.OBJECT_UNDEFINED


def test_load_limit():
    p = reader()
    assert p.get(71, "0.0.17.0.0.255", 4).value.value == 20_000
    assert set_(p, 71, "0.0.17.0.0.255", 4, Data(DataType.DOUBLE_LONG, 7_500)) == DataAccessResult.SUCCESS
    assert p.get(71, "0.0.17.0.0.255", 3).value.value == 7_500
    assert set_(p, 71, "0.0.17.0.0.255", 4, Data(DataType.DOUBLE_LONG, -1)) == DataAccessResult.OTHER_REASON
    assert set_(p, 71, "0.0.17.0.0.255", 3, Data(DataType.DOUBLE_LONG, 1)) == DataAccessResult.READ_WRITE_DENIED


def test_passive_calendar_activation():
    p = reader()
    active_day = p.get(20, "0.0.13.0.0.255", 5).value
    day = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        Data(DataType.UNSIGNED, 1),
        Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.OCTET_STRING, bytes(4)), Data(DataType.OCTET_STRING, bytes((0, 0, 10, 0, 100, 255))),
            Data(DataType.LONG_UNSIGNED, 1))),)),
    )),))
    assert set_(p, 20, "0.0.13.0.0.255", 9, Data(DataType.UNSIGNED, 1)) == DataAccessResult.TYPE_UNMATCHED
    assert set_(p, 20, "0.0.13.0.0.255", 9, day) == DataAccessResult.SUCCESS
    assert p.get(20, "0.0.13.0.0.255", 5).value == active_day  # passive only, until activated
    assert act(p, 20, "0.0.13.0.0.255", 1, Data(DataType.INTEGER, 0)) == ActionResult.SUCCESS
    assert p.get(20, "0.0.13.0.0.255", 5).value == day


def test_action_with_parameters_in_blocks():
    """Long ACTION parameters arrive in pblocks (IEC 62056-5-3): collected, then the method runs once."""
    from meter_core.codec.apdu import (
        ActionRequestWithFirstPblock,
        ActionRequestWithPblock,
        ActionResponseNextPblock,
        ActionResponseNormal,
        CosemMethodDescriptor,
        DataBlock,
        decode_apdu,
        encode_apdu,
    )
    from meter_core.codec.obis import ln

    p = reader()
    before = p.meter.clock(p.now)
    method = CosemMethodDescriptor(class_id=8, instance=ln("0.0.1.0.0.255"), method_id=6)  # shift_time(long)
    raw = b"\x10\x00\x3c"  # long 60

    def send(apdu):
        # through the client's protection (client 48 takes ciphered APDUs only), answer deciphered raw
        p.client.send_raw_apdu(encode_apdu(apdu))
        p.conn.receive_data(p.client.data_to_send(), p.now)
        back = p.conn.data_to_send()
        return decode_apdu(p.client._unprotect(back[8:]))  # after the wrapper header

    got = send(ActionRequestWithFirstPblock(invoke_id_and_priority=0xC1, method=method, block=DataBlock(False, 1, raw[:1])))
    assert isinstance(got, ActionResponseNextPblock) and got.block_number == 1
    got = send(ActionRequestWithPblock(invoke_id_and_priority=0xC1, block=DataBlock(True, 2, raw[1:])))
    assert isinstance(got, ActionResponseNormal) and got.outcome.result == ActionResult.SUCCESS
    assert p.meter.clock(p.now) - before == pytest.approx(60, abs=0.01)
    got = send(ActionRequestWithPblock(invoke_id_and_priority=0xC1, block=DataBlock(True, 3, raw)))
    assert got.outcome.result == ActionResult.NO_LONG_ACTION_IN_PROGRESS
    send(ActionRequestWithFirstPblock(invoke_id_and_priority=0xC1, method=method, block=DataBlock(False, 1, raw[:1])))
    got = send(ActionRequestWithPblock(invoke_id_and_priority=0xC1, block=DataBlock(True, 5, raw[1:])))
    assert got.outcome.result == ActionResult.LONG_ACTION_ABORTED
    assert p.meter.clock(p.now) - before == pytest.approx(60, abs=0.01)  # nothing more ran


def test_profile_reset_and_capture():
    from tests.unit.test_profiles import BLOCK

    p = reader()
    assert read(p, BLOCK, 7).value.value == 2208
    assert act(p, 7, BLOCK, 2, Data(DataType.INTEGER, 0)) == ActionResult.OTHER_REASON
    assert act(p, 7, "1.0.94.91.0.255", 2, Data(DataType.INTEGER, 0)) == ActionResult.SUCCESS
    assert act(p, 7, BLOCK, 1, Data(DataType.INTEGER, 0)) == ActionResult.SUCCESS
    assert read(p, BLOCK, 7).value.value == 0
    later = reader(now=T0 + 7200, meter=p.meter)
    assert read(later, BLOCK, 7).value.value == 4


def test_tod_registers_add_up_to_the_total_and_follow_the_calendar():
    p = reader(MeterKind.SINGLE_PHASE)
    zones = [p.get(3, f"1.0.1.8.{z}.255", 2).value.value for z in range(1, 5)]
    total = p.get(3, "1.0.1.8.0.255", 2).value.value
    assert all(z > 0 for z in zones)
    assert total - 4 <= sum(zones) <= total  # each register floors its own share
    bill = rows(p, BILLING)[-1]
    assert abs(sum(bill[3:7]) - bill[2]) <= 4  # 1ph billing: kWh total then TOD 1-4 (a public HES client's single-phase decoder)
    # one zone all day: zone 1 takes everything
    day = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        Data(DataType.UNSIGNED, 1),
        Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.OCTET_STRING, bytes(4)), Data(DataType.OCTET_STRING, bytes((0, 0, 10, 0, 100, 255))),
            Data(DataType.LONG_UNSIGNED, 1))),)),
    )),))
    assert set_(p, 20, "0.0.13.0.0.255", 9, day) == DataAccessResult.SUCCESS
    assert act(p, 20, "0.0.13.0.0.255", 1, Data(DataType.INTEGER, 0)) == ActionResult.SUCCESS
    # the energy counted before the activation keeps its zones; from then on zone 1 takes everything
    assert [p.get(3, f"1.0.1.8.{z}.255", 2).value.value for z in range(1, 5)] == zones
    p.now += 2 * 86400
    later = p.get(3, "1.0.1.8.0.255", 2).value.value
    now_zones = [p.get(3, f"1.0.1.8.{z}.255", 2).value.value for z in range(1, 5)]
    assert later - total > 0
    assert now_zones[1:] == zones[1:]
    assert abs((now_zones[0] - zones[0]) - (later - total)) <= 1


def test_the_limiter_trips_the_relay_above_its_threshold_and_recloses_after_the_lockout():
    from meter_core.device import eventprofiles

    p = reader(MeterKind.SINGLE_PHASE)
    m = p.meter
    t = m.sim(p.now)
    power = m.instant_at(t).active_power
    assert power > 0
    assert set_(p, 71, "0.0.17.0.0.255", 4, Data(DataType.DOUBLE_LONG, max(1, int(power * 0.3)))) == \
        DataAccessResult.SUCCESS
    assert not m.relay_open(t + 30)
    assert m.relay_open(t + 120)  # above the threshold for a minute: tripped
    trip = next(s for s, e in m.state.disconnections if e is not None)
    assert t + 60 <= trip <= t + 90
    assert m.readings(trip + 1)[0] == m.readings(trip + 299)[0]  # no energy while open
    assert not m.relay_open(trip + 301)  # the lockout is over
    assert 84 in eventprofiles.esw_bits(m, trip + 10)
    later = reader(MeterKind.SINGLE_PHASE, now=p.now + 3600, meter=m)
    assert later.get(70, "0.0.96.3.10.255", 2).value.value in (True, False)
    assert {215, 216} <= {r[1] for r in rows(later, "0.0.99.98.4.255")}
    assert len([s for s, e in m.state.disconnections if e is not None]) >= 2  # it trips again after reclosing


# -- bad input to every write and method the utility-settings association has ------------------------


def _targets():
    from meter_core.cosem.build import model_for

    out = []
    for kind in MeterKind:
        view = model_for(kind).associations[48]
        for obj, rights in view.entries:
            for i, mode in enumerate(rights.attributes, start=1):
                if mode.writable:
                    out.append((kind, "set", obj.ic.class_id, obj.ln, i))
            for i, mode in enumerate(rights.methods, start=1):
                if mode:
                    out.append((kind, "action", obj.ic.class_id, obj.ln, i))
    return out


TARGETS = _targets()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TARGETS), data_values())
def test_any_value_to_any_write_or_method_gets_a_result_and_the_meter_keeps_serving(target, value):
    from meter_core.codec.apdu import (
        ActionRequestNormal,
        CosemAttributeDescriptor,
        CosemMethodDescriptor,
        SetRequestNormal,
        encode_apdu,
    )
    from meter_core.codec.axdr import encode_value

    kind, what, class_id, ln_, index = target
    p = reader(kind)
    raw = encode_value(value)
    if what == "set":
        req = SetRequestNormal(invoke_id_and_priority=0xC1,
                               attribute=CosemAttributeDescriptor(class_id, ln_, index), value=raw)
    else:
        req = ActionRequestNormal(invoke_id_and_priority=0xC1, method=CosemMethodDescriptor(class_id, ln_, index),
                                  parameters=raw)
    p.client.send_raw_apdu(encode_apdu(req))  # ciphered by the client like any request of client 48
    answer = p.exchange()
    assert type(answer).__name__ in ("SetResult", "ActionDone"), answer
    # the meter still answers reads of what may have changed
    for obis, cls in (("0.0.1.0.0.255", 8), ("1.0.1.8.0.255", 3), ("0.0.96.3.10.255", 70)):
        if kind is MeterKind.CT_PT and cls == 70:
            continue
        p.get(cls, obis, 2)
    rows(p, "1.0.99.1.0.255", by_entry(1, 2))
    rows(p, "0.0.99.98.3.255", by_entry(1, 2))
