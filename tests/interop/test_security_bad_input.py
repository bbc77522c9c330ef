"""A head-end that gets security wrong, over TCP: each bad input gets the answer the standard gives,
is counted by reason, and the meter goes on serving (this association where it survives, a new one,
and the other meters).

The requests are built here byte by byte (with meter_core.security for the good parts): no proper
client sends a bad tag or a replayed counter on purpose.
"""

from __future__ import annotations

import socket

import pytest

from fleet.tools.export import meter_record
from meter_core.codec import crypto as sec
from meter_core.codec.apdu import (
    AARE,
    AARQ,
    ActionResponseNormal,
    ConfirmedServiceError,
    ExceptionResponse,
    GetResponseNormal,
    InitiateRequest,
    ciphered,
    decode_apdu,
    encode_apdu,
)
from meter_core.codec.apdu.acse import context_oid, mechanism_oid
from meter_core.codec.apdu.codes import (
    AcseServiceUser,
    ActionResult,
    ApplicationContextName,
    AssociationResult,
    AuthenticationMechanism,
    Conformance,
)
from meter_core.codec.errors import ExceptionServiceError, ExceptionStateError
from meter_core.codec.wrapper import wrap
from meter_core.connection import Transport
from tests.servers import running_meters

pytestmark = pytest.mark.interop

GET_CLOCK = bytes.fromhex("c001c1000800000100 00ff0200".replace(" ", ""))
CONFORMANCE = (Conformance.GET | Conformance.SET | Conformance.ACTION | Conformance.SELECTIVE_ACCESS
               | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ)


class SecuredRaw:
    """Client 48 over the wrapper, speaking mechanism 2 and suite 0 with hand-built APDUs."""

    ic = 1000  # the head-end's invocation counter, one for all its connections (as the meter's is per key)

    def __init__(self, meters, meter_id: int = 0) -> None:
        rec = meter_record(meters.options, meter_id)
        c = next(c for c in rec["clients"] if c["client_sap"] == 48)
        self.ek, self.ak = bytes.fromhex(c["block_key"]), bytes.fromhex(c["auth_key"])
        self.secret = bytes.fromhex(c["hls_secret"])
        self.title = bytes.fromhex(c["client_system_title"])
        self.server_title = bytes.fromhex(rec["system_title"])
        self.sock = socket.create_connection(("127.0.0.1", meters.port(meter_id)), timeout=5)
        self.stoc = b""
        self.ctos = b"K56iVagYP6wRJ21F"

    def close(self) -> None:
        self.sock.close()

    def send(self, apdu: bytes) -> bytes:
        self.sock.sendall(wrap(48, 1, apdu))
        head = self._recv(8)
        return self._recv(int.from_bytes(head[6:8], "big"))

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("meter closed the connection")
            buf += chunk
        return buf

    def next_ic(self) -> int:
        SecuredRaw.ic += 1
        return SecuredRaw.ic

    def aarq(self, *, ek: bytes | None = None, sc: int = 0x30, ic: int | None = None):
        initiate = encode_apdu(InitiateRequest(proposed_conformance=CONFORMANCE, client_max_receive_pdu_size=1024))
        payload = sec.protect(sc, self.next_ic() if ic is None else ic, self.title, ek or self.ek, self.ak, initiate)
        aarq = AARQ(
            application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING),
            calling_ap_title=self.title, sender_acse_requirements=b"\x07\x80",
            mechanism_name=mechanism_oid(AuthenticationMechanism.HIGH), calling_authentication_value=self.ctos,
            user_information=ciphered.seal(0x21, payload),
        )
        aare = decode_apdu(self.send(encode_apdu(aarq)))
        assert isinstance(aare, AARE)
        if aare.result == AssociationResult.ACCEPTED:
            self.stoc = aare.responding_authentication_value
        return aare

    def protected(self, plain: bytes, *, sc: int = 0x30, ic: int | None = None, ek: bytes | None = None) -> bytes:
        tag = ciphered.GLO_OF[plain[0]]
        return ciphered.seal(tag, sec.protect(sc, self.next_ic() if ic is None else ic, self.title, ek or self.ek,
                                         self.ak, plain))

    def request(self, plain: bytes, **kw):
        """Send ``plain`` ciphered; the deciphered answer (or the plain exception-response)."""
        answer = self.send(self.protected(plain, **kw))
        if answer[0] == 0xD8:
            return decode_apdu(answer)
        env = ciphered.open_envelope(answer)
        _, _, inner = sec.unprotect(env.payload, self.server_title, self.ek, self.ak)
        return decode_apdu(inner)

    def hls(self, reply: bytes | None = None):
        value = sec.hls_aes(self.secret, self.stoc) if reply is None else reply
        action = bytes.fromhex("c301c1000f0000280000ff0101") + b"\x09" + bytes((len(value),)) + value
        return self.request(action)

    def associate(self) -> None:
        assert self.aarq().result == AssociationResult.ACCEPTED
        response = self.hls()
        assert isinstance(response, ActionResponseNormal) and response.outcome.result == ActionResult.SUCCESS
        # pass 4: the meter proves it knows the secret too
        assert response.outcome.return_data == b"\x09\x10" + sec.hls_aes(self.secret, self.ctos)

    def read_clock(self):
        answer = self.request(GET_CLOCK)
        assert isinstance(answer, GetResponseNormal) and answer.error is None, answer
        return answer


@pytest.fixture(scope="module")
def meters():
    with running_meters(2, Transport.WRAPPER) as running:
        yield running


def exception(service: ExceptionServiceError) -> ExceptionResponse:
    return ExceptionResponse(state_error=ExceptionStateError.SERVICE_NOT_ALLOWED, service_error=service)


def failures(meters) -> dict:
    return dict(meters.worker.stats.all_security_failures)


def test_a_wrong_key_in_the_aarq_is_refused_and_the_next_aarq_works(meters):
    c = SecuredRaw(meters)
    try:
        before = failures(meters).get("deciphering", 0)
        aare = c.aarq(ek=bytes(16))
        assert aare.result == AssociationResult.REJECTED_PERMANENT
        assert decode_apdu(aare.user_information) == ConfirmedServiceError(service=1, error_type=6, value=0)
        assert failures(meters)["deciphering"] == before + 1
        # no system title: the AARQ is refused with calling-AP-title-not-recognized
        aarq = AARQ(application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING),
                    mechanism_name=mechanism_oid(AuthenticationMechanism.HIGH), calling_authentication_value=c.ctos,
                    user_information=b"\x21\x00")
        aare = decode_apdu(c.send(encode_apdu(aarq)))
        assert aare.result_source_diagnostic.value == AcseServiceUser.CALLING_AP_TITLE_NOT_RECOGNIZED
        # an unciphered context: not offered to client 48
        aarq = AARQ(application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME),
                    mechanism_name=mechanism_oid(AuthenticationMechanism.HIGH), calling_authentication_value=c.ctos)
        aare = decode_apdu(c.send(encode_apdu(aarq)))
        assert aare.result_source_diagnostic.value == AcseServiceUser.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED
        c.associate()
        c.read_clock()
    finally:
        c.close()
    # a stale counter in the AARQ (below what the association above used): refused, counted as such
    c = SecuredRaw(meters)
    try:
        before = failures(meters).get("invocation-counter", 0)
        aare = c.aarq(ic=1)
        assert aare.result == AssociationResult.REJECTED_PERMANENT
        assert failures(meters)["invocation-counter"] == before + 1
    finally:
        c.close()


def test_a_wrong_hls_reply_ends_the_association_and_serves_nothing(meters):
    c = SecuredRaw(meters)
    try:
        assert c.aarq().result == AssociationResult.ACCEPTED
        # before pass 3, nothing but reply_to_HLS_authentication is served
        assert c.request(GET_CLOCK) == exception(ExceptionServiceError.OPERATION_NOT_POSSIBLE)
        before = failures(meters).get("authentication", 0)
        response = c.hls(reply=bytes(16))
        assert isinstance(response, ActionResponseNormal)
        assert response.outcome.result == ActionResult.READ_WRITE_DENIED and response.outcome.return_data is None
        assert failures(meters)["authentication"] == before + 1
        # the association is gone: a request is refused, in clear, as to anyone not associated
        answer = decode_apdu(c.send(c.protected(GET_CLOCK)))
        assert isinstance(answer, ExceptionResponse)
        c.associate()  # a new AARQ on the same connection
        c.read_clock()
    finally:
        c.close()


def test_bad_protected_requests_get_the_standard_answers_and_the_association_stays(meters):
    c = SecuredRaw(meters)
    try:
        c.associate()
        c.read_clock()
        counts = failures(meters)

        # a bad tag
        apdu = bytearray(c.protected(GET_CLOCK))
        apdu[-1] ^= 0x01
        assert decode_apdu(c.send(bytes(apdu))) == exception(ExceptionServiceError.DECIPHERING_ERROR)
        c.read_clock()
        # a wrong key
        assert c.request(GET_CLOCK, ek=bytes(range(16))) == exception(ExceptionServiceError.DECIPHERING_ERROR)
        c.read_clock()
        # a replayed counter, and a stale one
        # (the answer carries the counter the next request must exceed: the last one accepted)
        last = c.ic  # the last read of the clock
        for ic in (last, last - 5):
            answer = c.request(GET_CLOCK, ic=ic)
            assert answer == ExceptionResponse(state_error=ExceptionStateError.SERVICE_NOT_ALLOWED,
                                               service_error=ExceptionServiceError.INVOCATION_COUNTER_ERROR,
                                               invocation_counter=last)
        c.read_clock()
        # an unciphered request where the policy demands ciphering
        assert decode_apdu(c.send(GET_CLOCK)) == exception(ExceptionServiceError.OPERATION_NOT_POSSIBLE)
        # authentication only, where the policy demands encryption too
        assert c.request(GET_CLOCK, sc=0x10) == exception(ExceptionServiceError.OPERATION_NOT_POSSIBLE)
        c.read_clock()
        # unknown security control bytes: compression, another suite, an unknown key set
        for sc in (0xB0, 0x33, 0x3F):
            assert c.request(GET_CLOCK, sc=sc) == exception(ExceptionServiceError.DECIPHERING_ERROR), hex(sc)
        c.read_clock()
        # truncated: header cut, tag cut, a length longer than the APDU
        good = c.protected(GET_CLOCK)
        for bad in (good[:5], good[:-4], good[:1] + bytes((good[1] + 10,)) + good[2:]):
            assert decode_apdu(c.send(bad)) == exception(ExceptionServiceError.DECIPHERING_ERROR), bad.hex()
        c.read_clock()

        after = failures(meters)
        delta = {k: after.get(k, 0) - counts.get(k, 0) for k in after}
        assert delta["deciphering"] == 2
        assert delta["invocation-counter"] == 2
        assert delta["policy"] == 2
        assert delta["security-control"] == 3
        assert delta["truncated"] == 3
    finally:
        c.close()


def test_the_other_meter_and_the_other_associations_keep_serving(meters):
    from tests.interop.clients import GuruxSession

    c = SecuredRaw(meters, 1)
    try:
        c.associate()
        c.read_clock()
    finally:
        c.close()
    s = GuruxSession(meters.port(0), Transport.WRAPPER)
    s.open()
    from gurux_dlms.objects import GXDLMSClock

    s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    s.close()
    assert meters.worker.metrics.internal_errors == 0
