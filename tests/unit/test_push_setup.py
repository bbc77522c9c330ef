"""Push setup objects as a head-end reads them (class 40 version 1), the push schedule and script table
that trigger them, and the fleet's push configuration (the seed's push_setups and push_schedules)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter_core import notification
from meter_core.codec.apdu import ciphered
from meter_core.codec.apdu.codes import ActionResult
from meter_core.codec.axdr import Data, DataType
from meter_core.codec.obis import ln
from meter_core.cosem.build import model_of
from meter_core.cosem.ic import script_table, single_action_schedule
from meter_core.device import config as device_config
from meter_core.device import pushes as push
from meter_core.device.config import DEFAULT_DEVICE, DeviceConfig
from meter_core.device.identity import FleetConfig, MeterKind
from meter_core.device.meter import Meter
from meter_core.events import PushRequested
from tests.unit.test_control import act, reader
from tests.unit.test_meter import EPOCH


def test_push_setups_are_version_1_with_their_port_client_and_retries():
    p = reader()
    for obis in (device_config.INSTANT_PUSH, device_config.ALERT_PUSH, device_config.BLOCK_LOAD_PUSH, device_config.DAILY_LOAD_PUSH):
        obj = model_of(p.meter).by_key[(40, ln(obis))]
        assert obj.ic.version == 1 and len(obj.attributes) == 10
        c = DEFAULT_DEVICE.push[obis]
        assert p.get(40, obis, 5).value.value == c.randomisation_s
        assert p.get(40, obis, 6).value.value == c.retries == 3
        assert p.get(40, obis, 7).value.value == c.repetition_delay_s == 60
        assert bytes(p.get(40, obis, 8).value.value) == ln("0.0.25.0.0.255")
        assert p.get(40, obis, 9).value.value == push.PUSH_CLIENT_SAP == 64
        assert p.get(40, obis, 10).value.value == ()


def test_the_push_schedule_follows_the_instant_push_schedule_type():
    p = reader()
    times = p.get(22, single_action_schedule.PUSH_SCHEDULE, 4).value.value
    assert [bytes(t.value[0].value) for t in times] == [bytes((0xFF, m, 0, 0)) for m in (0, 15, 30, 45)]
    assert all(bytes(t.value[1].value) == b"\xff" * 5 for t in times)
    script = p.get(22, single_action_schedule.PUSH_SCHEDULE, 2).value.value
    assert bytes(script[0].value) == ln(script_table.PUSH_SCRIPT_TABLE) and script[1].value == 1
    config = DeviceConfig.from_rows(pushes=[{
        "logical_name": device_config.INSTANT_PUSH, "randomisation_start_interval_s": 30, "number_of_retries": 5,
        "repetition_delay_s": 120, "schedule_type": "FOUR_HOUR"}])
    p = reader(meter=Meter(FleetConfig(seed=7, kind=MeterKind.THREE_PHASE), 3, epoch_start=EPOCH, config=config))
    times = p.get(22, single_action_schedule.PUSH_SCHEDULE, 4).value.value
    assert [bytes(t.value[0].value) for t in times] == [bytes((h, 0, 0, 0)) for h in range(0, 24, 4)]
    assert p.get(40, device_config.INSTANT_PUSH, 6).value.value == 5
    assert push.next_due(config, 1, 0, device_config.INSTANT_PUSH, 0.0) % 14400 == (
        push.randomisation(config, 1, 0, device_config.INSTANT_PUSH) - 19800) % 14400
    assert config.scheduled()[device_config.INSTANT_PUSH] == "FOUR_HOUR"


def test_the_configuration_checks_the_schedule_type_and_can_turn_a_push_off():
    with pytest.raises(ValueError, match="schedule type"):
        DeviceConfig.from_rows(pushes=[{"logical_name": device_config.INSTANT_PUSH, "randomisation_start_interval_s": 30,
                                        "number_of_retries": 1, "repetition_delay_s": 10,
                                        "schedule_type": "FORTNIGHTLY"}])
    config = DeviceConfig.from_rows(pushes=[{
        "logical_name": device_config.BLOCK_LOAD_PUSH, "randomisation_start_interval_s": 30, "number_of_retries": 1,
        "repetition_delay_s": 10, "schedule_type": "THIRTY_MIN", "enabled": False}])
    assert device_config.BLOCK_LOAD_PUSH not in config.scheduled()
    assert device_config.BLOCK_LOAD_PUSH in DEFAULT_DEVICE.scheduled()  # a value: the defaults are untouched


def test_a_script_of_the_push_script_table_asks_for_its_push():
    p = reader()
    assert act(p, 9, script_table.PUSH_SCRIPT_TABLE, 1, Data(DataType.LONG_UNSIGNED, 3)) == ActionResult.SUCCESS
    assert PushRequested(device_config.BLOCK_LOAD_PUSH) in p.meter_events
    assert act(p, 9, script_table.PUSH_SCRIPT_TABLE, 1, Data(DataType.LONG_UNSIGNED, 99)) == ActionResult.OBJECT_UNAVAILABLE


@given(st.binary(max_size=120))
@settings(max_examples=300, deadline=None)
def test_anything_from_the_push_client_is_a_confirm_or_refused(data):
    """Bytes the push client sends outside an association (a head-end's confirm, or garbage) never break
    the meter: a confirm that does not decipher is a security failure, the association goes on."""
    from meter_core.codec.wrapper import wrap
    from meter_core.connection import MeterConnection, Transport
    from meter_core.device.identity import FleetConfig
    from meter_core.device.meter import Meter
    from meter_core.events import PushConfirmed, SecurityFailure
    from tests.unit.test_meter import EPOCH

    meter = Meter(FleetConfig(seed=7), 3, epoch_start=EPOCH)
    conn = MeterConnection(meter, Transport.WRAPPER, now=0.0)
    conn.receive_data(wrap(push.PUSH_CLIENT_SAP, 1, b"\xdb" + data), 0.0)
    events = []
    while type(ev := conn.next_event()).__name__ != "Sentinel":
        events.append(ev)
    assert not any(isinstance(e, PushConfirmed) for e in events)
    assert any(isinstance(e, SecurityFailure) for e in events) and not conn.closed


def test_a_ciphered_confirm_is_taken_once():
    from meter_core.codec import crypto as sec
    from meter_core.codec.apdu import DataNotificationConfirm, encode_apdu
    from meter_core.device.identity import FleetConfig
    from meter_core.device.meter import Meter
    from tests.unit.test_meter import EPOCH

    meter = Meter(FleetConfig(seed=7), 3, epoch_start=EPOCH)
    ks = meter.keys().sets[4]
    title = b"HES\x00\x00\x00\x00\x01"
    plain = encode_apdu(DataNotificationConfirm(long_invoke_id_and_priority=0x40000000 | 1234))
    apdu = ciphered.seal(0xDB, sec.protect(0x30, 10, title, ks.ek, ks.ak, plain), title)
    assert notification.take_confirm(meter, apdu) == 1234
    assert notification.take_confirm(meter, apdu) is None  # a replayed counter
    plain_only = ciphered.seal(0xDB, sec.protect(0x10, 11, title, ks.ek, ks.ak, plain), title)  # authenticated only
    assert notification.take_confirm(meter, plain_only) is None


def test_a_head_end_writes_its_address_retries_and_delay_into_a_push_setup():
    from meter_core.codec.apdu.codes import DataAccessResult
    from tests.unit.test_control import set_

    p = reader()
    count = p.meter.state.programming_count
    dest = Data(DataType.STRUCTURE, (Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, b"10.1.2.3:4059"),
                                     Data(DataType.ENUM, 0)))
    assert set_(p, 40, device_config.INSTANT_PUSH, 3, dest) == DataAccessResult.SUCCESS
    got = p.get(40, device_config.INSTANT_PUSH, 3).value.value
    assert bytes(got[1].value) == b"10.1.2.3:4059"
    assert push.setting(p.meter, device_config.INSTANT_PUSH, "destination") == "10.1.2.3:4059"
    assert push.setting(p.meter, device_config.ALERT_PUSH, "destination") == ""  # the others keep the fleet's
    assert set_(p, 40, device_config.INSTANT_PUSH, 6, Data(DataType.UNSIGNED, 1)) == DataAccessResult.SUCCESS
    assert set_(p, 40, device_config.INSTANT_PUSH, 7, Data(DataType.LONG_UNSIGNED, 30)) == DataAccessResult.SUCCESS
    assert p.get(40, device_config.INSTANT_PUSH, 6).value.value == 1 and p.get(40, device_config.INSTANT_PUSH, 7).value.value == 30
    assert p.meter.state.programming_count == count + 3
    # what a meter cannot do: SMS, XML, an address that is not host:port, a zero delay, a wrong type
    for bad, result in (
            (Data(DataType.STRUCTURE, (Data(DataType.ENUM, 4), Data(DataType.OCTET_STRING, b"+9198"),
                                       Data(DataType.ENUM, 0))), DataAccessResult.OTHER_REASON),
            (Data(DataType.STRUCTURE, (Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, b"nowhere"),
                                       Data(DataType.ENUM, 0))), DataAccessResult.OTHER_REASON),
            (Data(DataType.OCTET_STRING, b"10.1.2.3:4059"), DataAccessResult.TYPE_UNMATCHED)):
        assert set_(p, 40, device_config.INSTANT_PUSH, 3, bad) == result
    assert set_(p, 40, device_config.INSTANT_PUSH, 7, Data(DataType.LONG_UNSIGNED, 0)) == DataAccessResult.OTHER_REASON
    assert set_(p, 40, device_config.INSTANT_PUSH, 6, Data(DataType.LONG_UNSIGNED, 2)) == DataAccessResult.TYPE_UNMATCHED
    assert set_(p, 40, device_config.INSTANT_PUSH, 5, Data(DataType.LONG_UNSIGNED, 2)) == DataAccessResult.READ_WRITE_DENIED
    assert bytes(p.get(40, device_config.INSTANT_PUSH, 3).value.value[1].value) == b"10.1.2.3:4059"
