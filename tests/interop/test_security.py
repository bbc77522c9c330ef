"""Ciphered associations with independent clients: client 48 (utility settings) with HLS mechanism 2 and
HLS-GMAC, suite 0 authenticated and encrypted APDUs, over the wrapper and HDLC.

Each client takes its keys from the onboarding file (`fleet.tools.export.meter_record`) and its invocation
counter the way IS 15959 head-ends do: read 0.0.43.1.3.255 over the public client, then use it + 1.
"""

from __future__ import annotations

import datetime as dt

import pytest
from dlms_cosem.utils import parse_as_dlms_data
from gurux_dlms.enums import DataType as GXType
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSProfileGeneric

from fleet.tools.export import meter_record
from meter_core.connection import Transport
from tests.interop.clients import GuruxSession, dlms_cosem_client
from tests.interop.test_profiles import (
    IST,
    Entries,
    clock_restriction,
    cosem_plain,
    gurux_rows,
    local_today,
    pg_attr,
)
from tests.servers import running_meters

pytestmark = pytest.mark.interop

BLOCK = "1.0.99.1.0.255"
# (mechanism, suite, transport): suites 1 and 2 (AES-GCM-128 / -256) with HLS-GMAC
COMBOS = [(mech, 0, t) for mech in (2, 5) for t in (Transport.WRAPPER, Transport.HDLC)]
COMBOS += [(5, suite, Transport.WRAPPER) for suite in (1, 2)]
# mechanism 7 (ECDSA P-256) with suite 1; gurux-dlms signs P-256 only (its P-384 branch tests P256 twice)
COMBOS += [(7, 1, t) for t in (Transport.WRAPPER, Transport.HDLC)]


@pytest.fixture(scope="module", params=COMBOS, ids=[f"mech{m}-suite{s}-{t.value}" for m, s, t in COMBOS])
def secured(request):
    mechanism, suite, transport = request.param
    with running_meters(1, transport, hls_mechanism=mechanism, security_suite=suite) as running:
        yield running


def onboarding(meters, sap: int = 48) -> dict:
    return next(c for c in meter_record(meters.options, 0)["clients"] if c["client_sap"] == sap)


def public(meters) -> GuruxSession:
    s = GuruxSession(meters.port(0), meters.options.transport,
                     physical_address=meters.identity(0).hdlc_physical_address)
    s.open()
    return s


def invocation_counter(meters, e: int = 3) -> int:
    """The value of 0.0.43.1.e.255 read over the public client."""
    s = public(meters)
    try:
        return int(s.read(GXDLMSData(f"0.0.43.1.{e}.255"), 2))
    finally:
        s.close()


def utility_settings(meters, max_pdu: int = 256) -> GuruxSession:
    s = GuruxSession(meters.port(0), meters.options.transport, physical_address=meters.identity(0).hdlc_physical_address,
                     max_pdu=max_pdu, secure=onboarding(meters), invocation_counter=invocation_counter(meters) + 1)
    s.open()
    return s


def test_onboarding_names_the_mechanism_the_meter_runs(secured):
    client = onboarding(secured)
    expected = {2: "high", 5: "high-gmac", 7: "high-ecdsa"}[secured.options.hls_mechanism]
    assert client["authentication"] == expected
    assert ("hls_secret" in client) == (expected == "high")
    suite = secured.options.security_suite
    assert client["security_suite"] == suite
    assert len(bytes.fromhex(client["block_key"])) == (32 if suite == 2 else 16)


def test_gurux_reads_profiles_and_programmes_over_a_ciphered_association(secured):
    day = local_today() - dt.timedelta(days=1)
    before = invocation_counter(secured)
    s = utility_settings(secured)
    try:
        clock = s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
        wall = dt.datetime.now(IST).replace(tzinfo=None)  # the meter shows IST wall time
        assert abs((clock.value.replace(tzinfo=None) - wall).total_seconds()) < 60
        pg = GXDLMSProfileGeneric(BLOCK)
        s.read(pg, 3)
        pg.buffer = []
        reply = s.exchange(s.client.readRowsByRange(pg, day.replace(tzinfo=IST),
                                                    (day + dt.timedelta(days=1)).replace(tzinfo=IST)))
        s.client.updateValue(pg, 2, reply.value)
        by_range = gurux_rows(pg)
        assert s.frames_received > 10  # a day of blocks at PDU 256 comes in many GET blocks
        pg.buffer = []
        reply = s.exchange(s.client.readRowsByEntry(pg, 1, 3))
        s.client.updateValue(pg, 2, reply.value)
        by_entry = gurux_rows(pg)
        # SET: the demand integration period; ACTION: capture() of the instantaneous profile
        period = GXDLMSData("1.0.0.8.0.255")
        s.read(period, 2)
        period.value = 900
        period.setDataType(2, GXType.UINT16)
        assert s.exchange(s.client.write(period, 2)).error == 0
        period.value = None
        assert s.read(period, 2) == 900
        period.value = 1800
        assert s.exchange(s.client.write(period, 2)).error == 0
        instant = GXDLMSProfileGeneric("1.0.94.91.0.255")
        assert s.exchange(s.client.method(instant, 2, 0, GXType.INT8)).error == 0
        s.close()
    finally:
        s.sock.close()
    assert [r[0] for r in by_range] == [day + dt.timedelta(minutes=30 * i) for i in range(49)]
    assert len(by_entry) == 3
    # every request raised the meter's counter: the next head-end must start above it
    assert invocation_counter(secured) > before + 5


def test_dlms_cosem_reads_the_same_rows_and_verifies_every_tag(secured):
    if secured.options.transport is not Transport.WRAPPER:
        pytest.skip("dlms-cosem's HDLC reader splits frames at 0x7E bytes (see tests/interop/test_profiles.py)")
    if secured.options.hls_mechanism == 7:
        pytest.skip("dlms-cosem has no HLS mechanism 7 (ECDSA)")
    from dlms_cosem import cosem, dlms_data, enumerations
    from dlms_cosem.cosem.obis import Obis
    from dlms_cosem.cosem.selective_access import RangeDescriptor

    day = local_today() - dt.timedelta(days=2)
    s = utility_settings(secured)
    try:
        pg = GXDLMSProfileGeneric(BLOCK)
        s.read(pg, 3)
        pg.buffer = []
        reply = s.exchange(s.client.readRowsByRange(pg, day.replace(tzinfo=IST),
                                                    (day + dt.timedelta(hours=6)).replace(tzinfo=IST)))
        s.client.updateValue(pg, 2, reply.value)
        by_gurux = gurux_rows(pg)
        pg.buffer = []
        reply = s.exchange(s.client.readRowsByEntry(pg, 2, 3))  # from entry 2, three entries
        s.client.updateValue(pg, 2, reply.value)
        entries_gurux = gurux_rows(pg)
        s.close()
    finally:
        s.sock.close()
    c = dlms_cosem_client(secured.port(0), Transport.WRAPPER, client_sap=48, max_pdu=512, secure=onboarding(secured),
                          invocation_counter=invocation_counter(secured) + 1)
    IC = enumerations.CosemInterface
    with c.session() as c:  # dlms-cosem checks f(CtoS) and the GCM tag of every response it deciphers
        rng = RangeDescriptor(restricting_object=clock_restriction(), from_value=day.replace(tzinfo=IST),
                              to_value=(day + dt.timedelta(hours=6)).replace(tzinfo=IST))
        by_cosem = [tuple(cosem_plain(x) for x in r) for r in parse_as_dlms_data(c.get(pg_attr(BLOCK, 2), rng))]
        entries_cosem = [tuple(cosem_plain(x) for x in r)
                         for r in parse_as_dlms_data(c.get(pg_attr(BLOCK, 2), Entries(from_entry=2, to_entry=4)))]
        period = cosem.CosemAttribute(interface=IC.DATA, instance=Obis.from_string("1.0.0.8.0.255"), attribute=2)
        c.set(period, dlms_data.UnsignedLongData(900).to_bytes())
        assert parse_as_dlms_data(c.get(period)) == 900
        c.set(period, dlms_data.UnsignedLongData(1800).to_bytes())
        capture = cosem.CosemMethod(interface=IC.PROFILE_GENERIC, instance=Obis.from_string("1.0.94.91.0.255"),
                                    method=2)
        c.action(capture, dlms_data.IntegerData(0).to_bytes())
    assert len(by_gurux) == 13 and by_cosem == by_gurux
    assert entries_cosem == entries_gurux


def test_gurux_with_a_dedicated_key_uses_general_ded_ciphering(secured):
    """A dedicated key sent in the ciphered InitiateRequest ciphers the rest of the association
    (general-ded-ciphering, as gurux-dlms sends it when general protection is negotiated)."""
    import os

    s = GuruxSession(secured.port(0), secured.options.transport,
                     physical_address=secured.identity(0).hdlc_physical_address, max_pdu=256,
                     secure=onboarding(secured), invocation_counter=invocation_counter(secured) + 1)
    if secured.options.security_suite == 2:
        s.client.ciphering.dedicatedKey = os.urandom(32)
    else:
        s.client.ciphering.dedicatedKey = os.urandom(16)
    s.open()
    try:
        if secured.options.transport is Transport.WRAPPER:  # (over HDLC a frame built and not sent
            # would put gurux's send sequence out of step)
            request = bytes(s.client.read(GXDLMSClock("0.0.1.0.0.255"), 2)[0])
            assert request[8] == 0xDC  # general-ded-ciphering
        s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
        pg = GXDLMSProfileGeneric(BLOCK)
        s.read(pg, 3)
        pg.buffer = []
        reply = s.exchange(s.client.readRowsByEntry(pg, 1, 5))
        s.client.updateValue(pg, 2, reply.value)
        assert len(gurux_rows(pg)) == 5
        s.close()
    finally:
        s.sock.close()
