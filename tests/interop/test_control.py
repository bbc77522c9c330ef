"""gurux-dlms programmes a meter over TCP: each SET and ACTION of issue 4, wrapper and HDLC, through the
utility-settings association (client 48, HLS, ciphered), the only one that may.

Gurux reads each object first (as a head-end does), changes it with its own object model and
encoders, writes or invokes, and reads back.
"""

from __future__ import annotations

import pytest
from gurux_dlms.enums import DataType as GXType
from gurux_dlms.objects import (
    GXDLMSActionSchedule,
    GXDLMSActivityCalendar,
    GXDLMSData,
    GXDLMSDisconnectControl,
    GXDLMSLimiter,
    GXDLMSProfileGeneric,
    GXDLMSScriptTable,
)

from meter_core.connection import Transport
from meter_core.device.identity import MeterKind
from tests.interop.clients import GuruxSession, next_invocation_counter, onboarding_client, utility_settings
from tests.servers import running_meters

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module", params=[Transport.WRAPPER, Transport.HDLC], ids=["wrapper", "hdlc"])
def meters(request):
    with running_meters(1, request.param, kind=MeterKind.SINGLE_PHASE) as running:
        yield running


def session(meters) -> GuruxSession:
    """A head-end programs an IS 15959 meter through client 48 (utility settings: HLS, ciphered)."""
    return utility_settings(meters)


def write(s: GuruxSession, obj, index: int) -> int:
    reply = s.exchange(s.client.write(obj, index))
    return reply.error


def invoke(s: GuruxSession, request) -> int:
    return s.exchange(request).error


def test_periods_billing_date_and_md_reset(meters):
    s = session(meters)
    try:
        period = GXDLMSData("1.0.0.8.0.255")
        s.read(period, 2)
        period.value = 900
        period.setDataType(2, GXType.UINT16)
        assert write(s, period, 2) == 0
        period.value = None
        s.read(period, 2)
        assert period.value == 900
        period.value = 700
        assert write(s, period, 2) == 250  # other-reason: not a period the meter supports

        block = GXDLMSProfileGeneric("1.0.99.1.0.255")
        s.read(block, 4)
        block.capturePeriod = 900
        assert write(s, block, 4) == 0
        s.read(block, 4)
        assert block.capturePeriod == 900

        schedule = GXDLMSActionSchedule("0.0.15.0.0.255")
        s.read(schedule, 4)
        assert len(schedule.executionTime) == 1
        count = GXDLMSData("0.0.0.1.0.255")
        s.read(count, 2)
        before = count.value
        script = GXDLMSScriptTable("0.0.10.0.1.255")
        s.read(script, 2)
        assert [sc.id for sc in script.scripts] == [1]
        assert invoke(s, script.execute(s.client, 1)) == 0
        s.read(count, 2)
        assert count.value == before + 1
        s.close()
    finally:
        s.sock.close()


def test_relay_load_limit_and_calendar(meters):
    s = session(meters)
    try:
        relay = GXDLMSDisconnectControl("0.0.96.3.10.255")
        assert invoke(s, relay.remoteDisconnect(s.client)) == 0
        s.read(relay, 2)
        s.read(relay, 3)
        assert relay.outputState is False and int(relay.controlState) == 0
        assert invoke(s, relay.remoteReconnect(s.client)) == 0
        s.read(relay, 2)
        assert relay.outputState is True

        limiter = GXDLMSLimiter("0.0.17.0.0.255")
        for index in (2, 3, 4):
            s.read(limiter, index)
        limiter.thresholdNormal = 4000
        assert write(s, limiter, 4) == 0
        s.read(limiter, 3)
        assert limiter.thresholdActive == 4000

        cal = GXDLMSActivityCalendar("0.0.13.0.0.255")
        for index in range(2, 11):
            s.read(cal, index)
        cal.dayProfileTablePassive = cal.dayProfileTableActive
        assert write(s, cal, 9) == 0
        assert invoke(s, cal.activatePassiveCalendar(s.client)) == 0
        s.close()
    finally:
        s.sock.close()


def test_dlms_cosem_performs_the_same_writes_and_methods_and_gurux_reads_them_back(meters):
    """dlms-cosem encodes the values with its own A-XDR classes; gurux then reads what the meter holds."""
    if meters.options.transport is not Transport.WRAPPER:
        pytest.skip("dlms-cosem's HDLC reader splits frames at 0x7E bytes (see tests/interop/test_profiles.py)")
    from dlms_cosem import cosem, dlms_data, enumerations
    from dlms_cosem.cosem.obis import Obis
    from dlms_cosem.utils import parse_as_dlms_data

    from tests.interop.clients import dlms_cosem_client

    IC = enumerations.CosemInterface

    def attr(ic, obis, index):
        return cosem.CosemAttribute(interface=ic, instance=Obis.from_string(obis), attribute=index)

    def method(ic, obis, index):
        return cosem.CosemMethod(interface=ic, instance=Obis.from_string(obis), method=index)

    c = dlms_cosem_client(meters.port(0), Transport.WRAPPER, client_sap=48, secure=onboarding_client(meters),
                          invocation_counter=next_invocation_counter(meters))
    with c.session() as c:
        c.set(attr(IC.DATA, "1.0.0.8.0.255", 2), dlms_data.UnsignedLongData(1800).to_bytes())
        assert parse_as_dlms_data(c.get(attr(IC.DATA, "1.0.0.8.0.255", 2))) == 1800
        c.set(attr(IC.LIMITER, "0.0.17.0.0.255", 4), dlms_data.DoubleLongData(3300).to_bytes())
        before = parse_as_dlms_data(c.get(attr(IC.DATA, "0.0.0.1.0.255", 2)))
        c.action(method(IC.SCRIPT_TABLE, "0.0.10.0.1.255", 1), dlms_data.UnsignedLongData(1).to_bytes())
        assert parse_as_dlms_data(c.get(attr(IC.DATA, "0.0.0.1.0.255", 2))) == before + 1
        c.action(method(IC.DISCONNECT_CONTROL, "0.0.96.3.10.255", 1), dlms_data.IntegerData(0).to_bytes())
        assert parse_as_dlms_data(c.get(attr(IC.DISCONNECT_CONTROL, "0.0.96.3.10.255", 2))) is False
        c.action(method(IC.DISCONNECT_CONTROL, "0.0.96.3.10.255", 2), dlms_data.IntegerData(0).to_bytes())
        # (the ESWF is written by gurux in tests/interop/test_event_logs.py: dlms-cosem's BitStringData
        # encodes its length in bytes, not bits)
    s = session(meters)
    try:
        limiter = GXDLMSLimiter("0.0.17.0.0.255")
        s.read(limiter, 3)
        assert limiter.thresholdActive == 3300
        relay = GXDLMSDisconnectControl("0.0.96.3.10.255")
        s.read(relay, 2)
        assert relay.outputState is True
        log = GXDLMSProfileGeneric("0.0.99.98.3.255")
        s.read(log, 3)
        s.read(log, 2)
        codes = [row[1] for row in log.buffer]
        assert {152, 158, 166} <= set(codes)  # demand period, load limit, MD reset
        s.close()
    finally:
        s.sock.close()
