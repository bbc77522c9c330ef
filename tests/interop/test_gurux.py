"""gurux-dlms (an independent client) reads our meters over loopback TCP, wrapper and HDLC."""

from __future__ import annotations

import datetime as dt

import pytest
from gurux_dlms import GXDLMSException
from gurux_dlms.GXDLMSExceptionResponse import GXDLMSExceptionResponse
from gurux_dlms.objects import (
    GXDLMSClock,
    GXDLMSData,
    GXDLMSDemandRegister,
    GXDLMSExtendedRegister,
    GXDLMSRegister,
)

from tests.interop.clients import GuruxError, GuruxSession

pytestmark = pytest.mark.interop

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def session(meters, meter_id=0, **kw) -> GuruxSession:
    ident = meters.identity(meter_id)
    return GuruxSession(meters.port(meter_id), meters.options.transport,
                        physical_address=ident.hdlc_physical_address, **kw)


def _text(value) -> str:
    return bytes(value).decode() if isinstance(value, (bytes, bytearray)) else str(value)


def test_public_client_reads_clock_name_and_serial(meters):
    ident = meters.identity(0)
    s = session(meters)
    s.open()
    clock = GXDLMSClock("0.0.1.0.0.255")
    s.read(clock, 2)
    now = dt.datetime.now(IST)
    meter_time = clock.time.value
    if meter_time.tzinfo is None:  # deviation "not specified": IST wall time, as Indian meters send
        meter_time = meter_time.replace(tzinfo=IST)
    assert abs((meter_time - now).total_seconds()) < 5
    ldn = GXDLMSData("0.0.42.0.0.255")
    assert _text(s.read(ldn, 2)) == ident.logical_device_name
    serial = GXDLMSData("0.0.96.1.0.255")
    assert _text(s.read(serial, 2)) == ident.serial
    s.close()


def test_object_list_arrives_in_blocks_with_a_256_byte_pdu(meters):
    s = session(meters, max_pdu=256)
    s.open()
    before = meters.worker.stats.all_counts[("get-next", "ok")]
    objects = s.object_list()
    # The public client's list does not fit 256 bytes: the meter sent it in GET blocks and gurux
    # asked for each next one.
    assert meters.worker.stats.all_counts[("get-next", "ok")] - before >= 1
    names = {o.logicalName for o in objects}
    assert {"0.0.1.0.0.255", "0.0.42.0.0.255", "0.0.96.1.0.255", "0.0.40.0.0.255"} <= names
    s.close()


def test_meter_reader_reads_registers_with_scaler_and_unit(meters):
    ident = meters.identity(1)
    s = session(meters, 1, client_sap=32, password=ident.lls_password)
    s.open()
    objects = {o.logicalName: o for o in s.object_list()}
    assert "1.0.32.7.0.255" in objects and "1.0.1.8.0.255" in objects
    volts = GXDLMSRegister("1.0.32.7.0.255")
    s.read(volts, 3)
    s.read(volts, 2)
    assert volts.scaler == 0.01 and int(volts.unit) == 35  # V
    assert 200 < volts.value < 250
    energy = GXDLMSRegister("1.0.1.8.0.255")
    s.read(energy, 3)
    s.read(energy, 2)
    first = energy.value
    assert int(energy.unit) == 30 and first > 0  # Wh
    s.read(energy, 2)
    assert energy.value >= first
    md = GXDLMSExtendedRegister("1.0.1.6.0.255")
    s.read(md, 3)
    s.read(md, 2)
    s.read(md, 5)
    assert int(md.unit) == 27  # W
    demand = GXDLMSDemandRegister("1.0.1.4.0.255")
    if "1.0.1.4.0.255" in objects:
        s.read(demand, 4)
        s.read(demand, 3)
        assert int(demand.unit) == 27
    s.close()


def test_wrong_password_is_rejected_then_the_right_one_works(meters):
    ident = meters.identity(2)
    bad = session(meters, 2, client_sap=32, password="WRONGPASSWORD123")
    with pytest.raises(GXDLMSException) as info:
        bad.open()
    # IEC 62056-5-3: rejected-permanent (1), acse-service-user diagnostic authentication-failure (13).
    assert info.value.result == 1 and info.value.diagnostic == 13
    # Same connection, same link: now with the right password.
    bad.client.password = ident.lls_password.encode()
    reply = bad.exchange(bad.client.aarqRequest())
    bad.client.parseAareResponse(reply.data)
    serial = GXDLMSData("0.0.96.1.0.255")
    assert _text(bad.read(serial, 2)) == ident.serial
    bad.close()


def test_missing_object_is_object_undefined_and_the_link_stays_up(meters):
    s = session(meters)
    s.open()
    with pytest.raises(GuruxError) as info:
        s.read(GXDLMSData("0.0.96.99.99.255"), 2)
    assert info.value.code == 4  # object-undefined
    clock = GXDLMSClock("0.0.1.0.0.255")
    s.read(clock, 2)
    assert clock.time is not None
    s.close()


@pytest.mark.parametrize("client_sap", [16, 32])
def test_every_attribute_the_object_list_offers_reads(meters, client_sap):
    """What a head-end's "read all" does: every attribute with read access reads, the others are denied."""
    from gurux_dlms.enums import AccessMode, ObjectType

    ident = meters.identity(0)
    password = ident.lls_password if client_sap == 32 else None
    s = session(meters, 0, client_sap=client_sap, password=password)
    s.open()
    problems, reads = [], 0
    for obj in s.object_list():
        order = list(range(1, obj.getAttributeCount() + 1))
        if obj.objectType == ObjectType.PROFILE_GENERIC:
            order.remove(3)
            order.insert(1, 3)  # gurux parses a buffer by its capture objects: read them first, as Gurux's reader does
        for index in order:
            access = obj.getAccess(index)
            try:
                s.read(obj, index)
                reads += 1
                if access == AccessMode.NO_ACCESS:
                    problems.append((obj.logicalName, index, "read although the list says no access"))
            except GuruxError as e:
                if access != AccessMode.NO_ACCESS:
                    problems.append((obj.logicalName, index, f"error {e.code}"))
                elif e.code != 3:  # read-write-denied
                    problems.append((obj.logicalName, index, f"no access gives {e.code}, not 3"))
    s.close()
    assert problems == []
    assert reads > (30 if client_sap == 16 else 150)


def test_utility_settings_sets_the_clock_and_the_reader_and_public_client_may_not(meters):
    from gurux_dlms import GXDateTime

    from tests.interop.clients import utility_settings

    ident = meters.identity(1)
    mr = session(meters, 1, client_sap=32, password=ident.lls_password)
    mr.open()
    clock = GXDLMSClock("0.0.1.0.0.255")
    target = dt.datetime.now(IST).replace(microsecond=0) + dt.timedelta(hours=2)
    clock.time = GXDateTime(target)
    assert mr.exchange(mr.client.write(clock, 2)).error == 3  # read-write-denied: the reader only reads
    mr.close()
    s = utility_settings(meters, 1)
    clock.time = GXDateTime(target)
    reply = s.exchange(s.client.write(clock, 2))
    assert reply.error == 0
    s.read(clock, 2)
    got = clock.time.value
    if got.tzinfo is None:
        got = got.replace(tzinfo=IST)
    assert abs((got - target).total_seconds()) < 5
    # Put it back for the other tests.
    clock.time = GXDateTime(dt.datetime.now(IST).replace(microsecond=0))
    assert s.exchange(s.client.write(clock, 2)).error == 0
    s.close()

    pc = session(meters, 1)
    pc.open()
    clock.time = GXDateTime(target)
    # SET is not in the public client's conformance: the meter answers with an exception-response
    # (service-not-allowed, service-not-supported), which gurux raises.
    with pytest.raises(GXDLMSExceptionResponse):
        pc.exchange(pc.client.write(clock, 2))
    pc.read(clock, 2)
    got = clock.time.value
    if got.tzinfo is None:
        got = got.replace(tzinfo=IST)
    assert abs((got - dt.datetime.now(IST)).total_seconds()) < 5
    pc.close()
