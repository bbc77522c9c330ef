"""The meter in memory: scripted conversations between our client and a MeterConnection.

These check the behaviour issue 3 names (associations, rejections, GET/SET/ACTION, blocks, bad
input) without sockets; tests/interop does the same over TCP with independent clients.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter_core import NEED_DATA
from meter_core.client import (
    ActionDone,
    Associated,
    AssociationFailed,
    ClientSettings,
    DlmsClient,
    ExceptionReceived,
    GetListResult,
    GetResult,
    LinkUp,
    Released,
    SetResult,
)
from meter_core.codec.apdu.codes import AcseServiceUser, Conformance, DataAccessResult
from meter_core.codec.axdr import CosemDateTime, Data, DataType
from meter_core.codec.errors import ExceptionServiceError
from meter_core.codec.obis import Obis
from meter_core.connection import MeterConnection, Transport
from meter_core.device.identity import FleetConfig
from meter_core.device.meter import Meter
from meter_core.events import AssociationEstablished, AssociationRejected, AssociationReleased
from meter_core.session.association import TRANSITIONS, AssociationState, Input

T0 = dt.datetime(2026, 11, 24, 6, 30, tzinfo=dt.UTC).timestamp()
FLEET = FleetConfig(seed=7)
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()


class Pair:
    """A client and a meter connection wired back to back (h11 ConnectionPair style)."""

    def __init__(self, transport: Transport, client_sap: int = 16, password: bytes | None = None,
                 max_pdu: int = 0xFFFF, meter: Meter | None = None, now: float = T0, security=None) -> None:
        self.now = now
        self.meter = meter or Meter(FLEET, 3, epoch_start=EPOCH)
        self.conn = MeterConnection(self.meter, transport, now=now)
        self.client = DlmsClient(ClientSettings(client_sap=client_sap, password=password, transport=transport,
                                                max_receive_pdu_size=max_pdu, security=security))
        self.meter_events: list = []
        if transport is Transport.HDLC:
            self.client.connect()
            assert isinstance(self.exchange(), LinkUp)

    def pump(self) -> None:
        for _ in range(5000):  # a whole profile in 256-byte GET blocks takes hundreds of turns
            out = self.client.data_to_send()
            if not out:
                return
            self.conn.receive_data(out, self.now)
            while (ev := self.conn.next_event()) is not NEED_DATA:
                self.meter_events.append(ev)
            back = self.conn.data_to_send()
            if back:
                self.client.receive_data(back, self.now)
        raise AssertionError("conversation did not settle")

    def exchange(self):
        self.pump()
        ev = self.client.next_event()
        assert ev is not NEED_DATA, "no answer"
        return ev

    def associate(self):
        self.client.associate()
        return self.exchange()

    def get(self, class_id, obis, attr):
        self.client.get(class_id, obis, attr)
        return self.exchange()


TRANSPORTS = [Transport.WRAPPER, Transport.HDLC]


@pytest.fixture(params=TRANSPORTS, ids=lambda t: t.value)
def transport(request):
    return request.param


def us_security(meter: Meter):
    """Client 48 (utility settings) of ``meter``: its keys, and the next invocation counter it takes."""
    from meter_core.client import ClientSecurity
    from meter_core.codec.apdu.codes import AuthenticationMechanism
    from meter_core.device.keys import client_system_title, derived_keys

    fleet = meter.fleet
    keys = meter.state.security or derived_keys(fleet, meter.identity.meter_id, fleet.security_suite)
    ks = keys.sets[3]
    return ClientSecurity(mechanism=AuthenticationMechanism(fleet.hls_mechanism), block_key=ks.ek, auth_key=ks.ak,
                          system_title=client_system_title(fleet), suite=fleet.security_suite,
                          hls_secret=keys.hls[48], invocation_counter=ks.rx_ic + 1)


def us_pair(transport: Transport = Transport.WRAPPER, meter: Meter | None = None, **kw) -> Pair:
    """A utility-settings (client 48, HLS, ciphered) client on ``meter``: the association that programs."""
    meter = meter or Meter(FLEET, 3, epoch_start=EPOCH)
    return Pair(transport, client_sap=48, meter=meter, security=us_security(meter), **kw)


def mr_password(meter_id: int = 3) -> bytes:
    from meter_core.device.identity import meter_identity

    return meter_identity(FLEET, meter_id).lls_password.encode()


def test_state_table_is_complete():
    # Left out on purpose: accepting an AARQ on an association that is not idle, and an HLS outcome
    # outside the authenticating state; every other pair has its row.
    impossible = {(s, e) for s in (AssociationState.ASSOCIATED, AssociationState.AUTHENTICATING)
                  for e in (Input.AARQ_ACCEPTED, Input.AARQ_HLS)}
    impossible |= {(s, e) for s in (AssociationState.IDLE, AssociationState.ASSOCIATED)
                   for e in (Input.HLS_PASSED, Input.HLS_FAILED)}
    for state in AssociationState:
        for event in Input:
            assert ((state, event) in TRANSITIONS) != ((state, event) in impossible), (state, event)


def test_public_client_reads_identity_and_clock(transport):
    p = Pair(transport)
    ev = p.associate()
    assert isinstance(ev, Associated)
    assert ev.initiate.negotiated_conformance & Conformance.GET
    assert not ev.initiate.negotiated_conformance & Conformance.SET  # public client only reads
    assert any(isinstance(e, AssociationEstablished) and e.client_sap == 16 for e in p.meter_events)

    ldn = p.get(1, "0.0.42.0.0.255", 2)
    assert ldn.value.tag is DataType.OCTET_STRING
    assert ldn.value.value == p.meter.identity.logical_device_name.encode()
    assert len(ldn.value.value) <= 16
    serial = p.get(1, "0.0.96.1.0.255", 2)
    assert serial.value.value.decode() == p.meter.identity.serial

    clock = p.get(8, "0.0.1.0.0.255", 2)
    assert clock.value.tag is DataType.OCTET_STRING and len(clock.value.value) == 12
    shown = CosemDateTime.from_bytes(clock.value.value).to_datetime()
    ist = dt.datetime.fromtimestamp(T0, dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=330)
    assert abs((shown - ist).total_seconds()) < 1


def test_object_list_in_blocks_with_small_pdu(transport):
    p = Pair(transport, max_pdu=256)
    assert isinstance(p.associate(), Associated)
    ev = p.get(15, "0.0.40.0.0.255", 2)
    assert isinstance(ev, GetResult) and ev.error is None
    assert ev.blocks > 1
    entries = ev.value.value
    lns = {Obis.from_bytes(e.value[2].value) for e in entries}
    assert Obis.parse("0.0.1.0.0.255") in lns and Obis.parse("0.0.42.0.0.255") in lns
    # the public client does not see the energy registers
    assert Obis.parse("1.0.1.8.0.255") not in lns
    for entry in entries:
        class_id, version, ln, rights = (x.value for x in entry.value)
        attr_rights, method_rights = rights
        assert len(attr_rights.value) >= 2
        for a in attr_rights.value:
            assert a.value[1].value in (0, 1, 2, 3)


def test_meter_reader_lls_wrong_then_right_password(transport):
    p = Pair(transport, client_sap=32, password=b"WRONGPASSWORD123")
    ev = p.associate()
    assert isinstance(ev, AssociationFailed)
    assert ev.response.result == 1
    assert ev.response.result_source_diagnostic == (1, AcseServiceUser.AUTHENTICATION_FAILURE)
    assert any(isinstance(e, AssociationRejected) for e in p.meter_events)
    # a correct association right after, on the same connection
    p.client.settings = dataclasses.replace(p.client.settings, password=mr_password())
    ev = p.associate()
    assert isinstance(ev, Associated)
    kwh = p.get(3, "1.0.1.8.0.255", 2)
    assert kwh.value.tag is DataType.DOUBLE_LONG_UNSIGNED and kwh.value.value > 0
    su = p.get(3, "1.0.1.8.0.255", 3)
    assert su.value.value[1].value == 30  # Wh


def test_registers_scaler_unit_and_consistency():
    p = Pair(Transport.WRAPPER, client_sap=32, password=mr_password())
    assert isinstance(p.associate(), Associated)
    volts = p.get(3, "1.0.32.7.0.255", 2).value.value
    scaler, unit = (x.value for x in p.get(3, "1.0.32.7.0.255", 3).value.value)
    assert (scaler, unit) == (-2, 35)
    assert 200 < volts * 10**scaler < 260
    freq = p.get(3, "1.0.14.7.0.255", 2).value.value
    assert 49.5 < freq / 100 < 50.5
    e1 = p.get(3, "1.0.1.8.0.255", 2).value.value
    p.now += 3600
    e2 = p.get(3, "1.0.1.8.0.255", 2).value.value
    assert e2 >= e1


def test_unknown_client_and_context_rejected():
    p = Pair(Transport.WRAPPER, client_sap=48)
    ev = p.associate()
    assert isinstance(ev, AssociationFailed) and ev.response.result == 1
    p = Pair(Transport.WRAPPER)
    from meter_core.codec.apdu.acse import context_oid
    from meter_core.codec.apdu.codes import ApplicationContextName

    aarq = p.client.aarq()
    ciphered = type(aarq)(application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING),
                          user_information=aarq.user_information)
    p.client.associate(ciphered)
    ev = p.exchange()
    assert isinstance(ev, AssociationFailed)
    assert ev.response.result_source_diagnostic == (1, AcseServiceUser.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)


def test_missing_object_and_denied_attribute_keep_link(transport):
    p = Pair(transport, client_sap=32, password=mr_password())
    assert isinstance(p.associate(), Associated)
    assert p.get(1, "0.0.96.99.9.255", 2).error is DataAccessResult.OBJECT_UNDEFINED
    assert p.get(1, "0.0.1.0.0.255", 2).error is DataAccessResult.OBJECT_CLASS_INCONSISTENT
    assert p.get(8, "0.0.1.0.0.255", 42).error is DataAccessResult.OBJECT_UNDEFINED
    assert p.get(15, "0.0.40.0.0.255", 7).error is DataAccessResult.READ_WRITE_DENIED
    assert p.get(1, "0.0.42.0.0.255", 2).error is None  # still serving


def test_get_with_list_and_not_associated():
    p = Pair(Transport.WRAPPER)
    p.client.get(8, "0.0.1.0.0.255", 2)
    ev = p.exchange()
    assert isinstance(ev, ExceptionReceived)
    assert p.associate().__class__ is Associated
    p.client.get_with_list([(1, "0.0.42.0.0.255", 2), (1, "0.0.0.0.0.0", 2), (8, "0.0.1.0.0.255", 2)])
    ev = p.exchange()
    assert isinstance(ev, GetListResult)
    assert ev.results[0].tag is DataType.OCTET_STRING
    assert ev.results[1] is DataAccessResult.OBJECT_UNDEFINED
    assert len(ev.results[2].value) == 12


def test_set_clock_and_clock_methods():
    p = us_pair()
    assert isinstance(p.associate(), Associated)
    target = dt.datetime(2026, 12, 25, 10, 0, 0)
    value = Data(DataType.OCTET_STRING, CosemDateTime.from_datetime(target, deviation=None).to_bytes())
    p.client.set(8, "0.0.1.0.0.255", 2, value)
    ev = p.exchange()
    assert isinstance(ev, SetResult) and ev.result is DataAccessResult.SUCCESS
    shown = CosemDateTime.from_bytes(p.get(8, "0.0.1.0.0.255", 2).value.value).to_datetime()
    assert abs((shown - target).total_seconds()) < 1
    p.client.action(8, "0.0.1.0.0.255", 6, Data(DataType.LONG, 30))
    ev = p.exchange()
    assert isinstance(ev, ActionDone) and ev.result == 0
    shown = CosemDateTime.from_bytes(p.get(8, "0.0.1.0.0.255", 2).value.value).to_datetime()
    assert abs((shown - target).total_seconds() - 30) < 1
    # neither the public client nor the meter reader may set the clock
    q = Pair(Transport.WRAPPER)
    q.associate()
    q.client.set(8, "0.0.1.0.0.255", 2, value)
    ev = q.exchange()
    assert isinstance(ev, ExceptionReceived) or ev.result is DataAccessResult.READ_WRITE_DENIED
    r = Pair(Transport.WRAPPER, client_sap=32, password=mr_password())
    assert isinstance(r.associate(), Associated)
    r.client.set(8, "0.0.1.0.0.255", 2, value)
    assert r.exchange().result is DataAccessResult.READ_WRITE_DENIED
    r.client.action(8, "0.0.1.0.0.255", 6, Data(DataType.LONG, 30))
    assert r.exchange().result == 3  # read-write-denied


def test_release_then_requests_refused(transport):
    p = Pair(transport)
    assert isinstance(p.associate(), Associated)
    p.client.release()
    assert isinstance(p.exchange(), Released)
    assert any(isinstance(e, AssociationReleased) for e in p.meter_events)
    p.client.get(8, "0.0.1.0.0.255", 2)
    assert isinstance(p.exchange(), ExceptionReceived)


def test_bad_apdus_get_exception_responses():
    p = Pair(Transport.WRAPPER)
    assert isinstance(p.associate(), Associated)
    p.client.send_raw_apdu(b"\xc0\x09\xc1")  # unknown GET choice
    ev = p.exchange()
    assert isinstance(ev, ExceptionReceived)
    p.client.send_raw_apdu(b"\xee\x01\x02")  # unknown tag
    assert isinstance(p.exchange(), ExceptionReceived)
    p.client.send_raw_apdu(b"\xc0\x01\xc1" + b"\x00" * 2000)  # larger than the server's PDU
    ev = p.exchange()
    assert isinstance(ev, ExceptionReceived)
    assert ev.response.service_error is ExceptionServiceError.PDU_TOO_LONG
    assert p.get(1, "0.0.42.0.0.255", 2).error is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.sampled_from(TRANSPORTS))
def test_any_bytes_only_events(chunks, transport):
    meter = Meter(FLEET, 1, epoch_start=EPOCH)
    conn = MeterConnection(meter, transport, now=T0)
    for c in chunks:
        conn.receive_data(c, T0)
        while conn.next_event() is not NEED_DATA:
            pass
        conn.data_to_send()
    conn.handle_timer(T0 + 10_000)
    while conn.next_event() is not NEED_DATA:
        pass


def test_utility_settings_changes_the_meter_reader_password():
    p = us_pair()
    assert isinstance(p.associate(), Associated)
    p.client.set(15, "0.0.40.0.2.255", 7, Data(DataType.OCTET_STRING, b"NEWPASS2026"))
    assert p.exchange().result is DataAccessResult.SUCCESS
    p.client.set(15, "0.0.40.0.2.255", 7, Data(DataType.OCTET_STRING, b"has space"))
    assert p.exchange().result is DataAccessResult.OTHER_REASON  # not a password a meter takes
    assert p.get(15, "0.0.40.0.2.255", 7).error is DataAccessResult.READ_WRITE_DENIED  # write only
    assert p.get(1, "0.0.96.11.3.255", 2).value.value == 161  # LLS secret changed
    old = Pair(Transport.WRAPPER, client_sap=32, password=mr_password(), meter=p.meter)
    assert isinstance(old.associate(), AssociationFailed)
    new = Pair(Transport.WRAPPER, client_sap=32, password=b"NEWPASS2026", meter=p.meter)
    assert isinstance(new.associate(), Associated)
    # the meter reader cannot change its own password
    new.client.set(15, "0.0.40.0.2.255", 7, Data(DataType.OCTET_STRING, b"MINE"))
    assert new.exchange().result is DataAccessResult.READ_WRITE_DENIED


def test_an_aarq_accepted_again_gets_the_same_answer_and_negotiation_from_the_cache():
    """The accepted-AARQ cache (public client, no authentication) gives what decoding gives: the same
    AARE bytes, the same negotiated conformance and PDU sizes, the same events; a released association
    answers nothing more; another client PDU size is another AARQ, negotiated on its own."""
    from meter_core.cosem.build import model_of
    from meter_core.session import association as assoc_mod

    view = model_of(Meter(FLEET, 3, epoch_start=EPOCH)).associations[16]
    view.accepted.clear()
    assoc_mod._RELEASES.clear()
    runs = []
    for max_pdu in (512, 512, 1024):
        p = Pair(Transport.WRAPPER, max_pdu=max_pdu)
        first = p.client.associate() or p.client.data_to_send()
        p.conn.receive_data(first, p.now)
        aare = p.conn.data_to_send()
        p.client.receive_data(aare, p.now)
        assert isinstance(p.client.next_event(), Associated)
        a = p.conn.associations[16]
        assert a.view is view
        runs.append((first, aare, a.conformance, a.max_send_pdu_size, a.send_limit, a._get_ok))
        assert isinstance(p.get(8, "0.0.1.0.0.255", 2), GetResult)
        p.client.release()
        assert isinstance(p.exchange(), Released)
        p.client.get(8, "0.0.1.0.0.255", 2)
        assert isinstance(p.exchange(), ExceptionReceived)
        kinds = [type(e) for e in p.meter_events]
        assert kinds.count(AssociationEstablished) == 1 and kinds.count(AssociationReleased) == 1
    assert runs[0] == runs[1]  # the second came from the cache
    assert runs[0][3] == 512 and runs[2][3] == 1024 and runs[2][0] != runs[0][0]
    assert len(view.accepted) == 2 and len(assoc_mod._RELEASES) == 1


def test_an_lls_aarq_is_never_answered_from_the_cache():
    from meter_core.cosem.build import model_of

    view = model_of(Meter(FLEET, 3, epoch_start=EPOCH)).associations[32]
    for password, expected in ((mr_password(), Associated), (b"wrong", AssociationFailed), (mr_password(), Associated)):
        p = Pair(Transport.WRAPPER, client_sap=32, password=password)
        assert isinstance(p.associate(), expected)
    assert not view.accepted
