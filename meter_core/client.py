"""A sans-I/O DLMS client for our own tests, benchmarks and load tests.

    client = DlmsClient(ClientSettings(client_sap=32, password=b"..."))
    client.associate()
    sock.sendall(client.data_to_send())
    client.receive_data(sock.recv(4096), now)
    while (ev := client.next_event()) is not NEED_DATA: ...

It assembles GET block transfers itself (asking for each next block), so a `GetResult` always carries
the whole value. Interop tests use independent clients (gurux-dlms, dlms-cosem) instead of this one.
"""

from __future__ import annotations

import hmac
import os
from collections import deque
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from meter_core.codec import crypto as sec
from meter_core.codec._util import NEED_DATA
from meter_core.codec.apdu import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    ActionRequestNormal,
    ActionResponseNormal,
    AttributeWithSelection,
    CosemAttributeDescriptor,
    CosemMethodDescriptor,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
    SelectiveAccess,
    SetRequestNormal,
    SetResponseNormal,
    ciphered,
    decode_apdu,
    encode_apdu,
)
from meter_core.codec.apdu.acse import ACSE_AUTHENTICATION, context_oid, mechanism_oid, release_reason
from meter_core.codec.apdu.codes import (
    INVOKE_ID_MASK,
    PRIORITY_HIGH,
    SERVICE_CLASS_CONFIRMED,
    ActionResult,
    ApduTag,
    ApplicationContextName,
    AssociationResult,
    AuthenticationMechanism,
    Conformance,
    DataAccessResult,
)
from meter_core.codec.axdr import Data, DataType, Reader, data_from_bytes, data_to_bytes
from meter_core.codec.errors import LocalProtocolError, RemoteProtocolError
from meter_core.codec.hdlc import (
    ApduReceived,
    HdlcAddress,
    HdlcClientStation,
    HdlcParameters,
    LinkConnected,
    LinkDisconnected,
)
from meter_core.codec.obis import Obis
from meter_core.codec.wrapper import WrapperDeframer, wrap
from meter_core.connection import MANAGEMENT_LOGICAL_DEVICE, Transport

DEFAULT_CONFORMANCE = (
    Conformance.GET | Conformance.SET | Conformance.ACTION | Conformance.SELECTIVE_ACCESS
    | Conformance.MULTIPLE_REFERENCES | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
    | Conformance.BLOCK_TRANSFER_WITH_SET_OR_WRITE | Conformance.BLOCK_TRANSFER_WITH_ACTION
)

# What a ciphering client seals (glo-) and opens (glo- or ded- answers, general-glo/ded-ciphering).
_PLAIN_REQUESTS = frozenset({ApduTag.GET_REQUEST, ApduTag.SET_REQUEST, ApduTag.ACTION_REQUEST})
_CIPHERED_ANSWERS = frozenset({
    ApduTag.GLO_GET_RESPONSE, ApduTag.GLO_SET_RESPONSE, ApduTag.GLO_ACTION_RESPONSE, ApduTag.DED_GET_RESPONSE,
    ApduTag.DED_SET_RESPONSE, ApduTag.DED_ACTION_RESPONSE, ApduTag.GENERAL_GLO_CIPHERING, ApduTag.GENERAL_DED_CIPHERING,
})
# HLS pass 3: method 1 (reply_to_HLS_authentication) of the current association (IC 15, 0.0.40.0.0.255).
_ASSOCIATION_LN = 15
_CURRENT_ASSOCIATION = "0.0.40.0.0.255"
_REPLY_TO_HLS_AUTHENTICATION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSecurity:
    """HLS and suite 0-2 ciphering of a secured client (48, 64, 80): the onboarding file's entry."""

    mechanism: AuthenticationMechanism
    block_key: bytes
    auth_key: bytes
    system_title: bytes
    suite: int = 0
    hls_secret: bytes | None = None
    signing_key: object = None  # mechanism 7: our private key
    server_public: object = None  # mechanism 7: the meter's public key
    invocation_counter: int = 1  # the first counter to use (read 0.0.43.1.e.255 first and add one)
    challenge: bytes = field(default_factory=lambda: os.urandom(16))

    @classmethod
    def from_onboarding(cls, client: dict, invocation_counter: int = 1) -> ClientSecurity:
        mechanism = {"high": AuthenticationMechanism.HIGH, "high-gmac": AuthenticationMechanism.HIGH_GMAC,
                     "high-ecdsa": AuthenticationMechanism.HIGH_ECDSA}[client["authentication"]]
        suite = client.get("security_suite", 0)
        signing = server = None
        if mechanism is AuthenticationMechanism.HIGH_ECDSA:
            curve = ec.SECP256R1() if suite == 1 else ec.SECP384R1()
            signing = ec.derive_private_key(int(client["client_signing_key"], 16), curve)
            server = sec.public_key_from_bytes(suite, bytes.fromhex(client["server_signing_public_key"]))
        return cls(mechanism=mechanism, block_key=bytes.fromhex(client["block_key"]),
                   auth_key=bytes.fromhex(client["auth_key"]),
                   system_title=bytes.fromhex(client["client_system_title"]), suite=suite,
                   hls_secret=bytes.fromhex(client["hls_secret"]) if "hls_secret" in client else None,
                   signing_key=signing, server_public=server, invocation_counter=invocation_counter)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """Who the client is and what it proposes."""

    client_sap: int = 16
    server_sap: int = MANAGEMENT_LOGICAL_DEVICE
    transport: Transport = Transport.WRAPPER
    password: bytes | None = None
    max_receive_pdu_size: int = 0xFFFF
    conformance: Conformance = DEFAULT_CONFORMANCE
    hdlc_server_address: HdlcAddress | None = None
    hdlc_parameters: HdlcParameters = HdlcParameters()
    security: ClientSecurity | None = None


@dataclass(frozen=True, slots=True)
class Associated:
    """The meter accepted the association."""

    response: AARE
    initiate: InitiateResponse


@dataclass(frozen=True, slots=True)
class AssociationFailed:
    """The meter refused the association."""

    response: AARE


@dataclass(frozen=True, slots=True)
class GetResult:
    """The value of one GET (all blocks assembled), or why it failed."""

    invoke_id: int
    value: Data | None
    error: DataAccessResult | None
    blocks: int = 0


@dataclass(frozen=True, slots=True)
class GetListResult:
    invoke_id: int
    results: tuple[Data | DataAccessResult, ...]
    blocks: int = 0


@dataclass(frozen=True, slots=True)
class SetResult:
    invoke_id: int
    result: DataAccessResult


@dataclass(frozen=True, slots=True)
class ActionDone:
    invoke_id: int
    result: ActionResult
    value: Data | None


@dataclass(frozen=True, slots=True)
class Released:
    response: RLRE


@dataclass(frozen=True, slots=True)
class ExceptionReceived:
    response: ExceptionResponse


@dataclass(frozen=True, slots=True)
class Unexpected:
    """An APDU the client did not expect (kept for the test to look at)."""

    apdu: object


@dataclass(frozen=True, slots=True)
class LinkUp:
    """HDLC: the meter answered SNRM with UA."""

    parameters: HdlcParameters


@dataclass(frozen=True, slots=True)
class LinkDown:
    """HDLC: the link is gone (UA to DISC, or DM)."""


class DlmsClient:
    """A sans-I/O client: requests in, bytes out; bytes in, events out."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._invoke = 0
        self._events: deque = deque()
        self._out: list[bytes] = []
        self._blocks: dict[int, tuple[bytearray, int]] = {}
        self._list_requests: set[int] = set()
        self.negotiated: InitiateResponse | None = None
        sec = settings.security
        self._ic = sec.invocation_counter - 1 if sec else 0  # the last invocation counter used
        self._server_title = b""
        self._stoc = b""
        self._ciphering = False  # requests go out protected (from the AARQ on, until released)
        self._hls: tuple | None = None  # (invoke id, AARE, InitiateResponse) while pass 3 is out
        if settings.transport is Transport.WRAPPER:
            self._wrapper = WrapperDeframer()
            self._hdlc = None
        else:
            self._wrapper = None
            address = settings.hdlc_server_address or HdlcAddress(upper=settings.server_sap, lower=None, size=1)
            self._hdlc = HdlcClientStation(client_address=settings.client_sap, server_address=address)

    # -- requests ---------------------------------------------------------------------------------

    def connect(self) -> None:
        """HDLC: send SNRM (nothing to do over the wrapper)."""
        if self._hdlc is not None:
            self._hdlc.connect(self.settings.hdlc_parameters)

    def disconnect(self) -> None:
        if self._hdlc is not None:
            self._hdlc.disconnect()

    def aarq(self) -> AARQ:
        s = self.settings
        initiate = encode_apdu(
            InitiateRequest(proposed_conformance=s.conformance, client_max_receive_pdu_size=s.max_receive_pdu_size)
        )
        if s.security is not None:

            c = s.security
            return AARQ(
                application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING),
                calling_ap_title=c.system_title,
                sender_acse_requirements=ACSE_AUTHENTICATION,
                mechanism_name=mechanism_oid(c.mechanism),
                calling_authentication_value=c.challenge,
                user_information=ciphered.seal(ApduTag.GLO_INITIATE_REQUEST, self._protect(initiate)),
            )
        if s.password is None:
            return AARQ(application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME),
                        user_information=initiate)
        return AARQ(
            application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME),
            sender_acse_requirements=ACSE_AUTHENTICATION,
            mechanism_name=mechanism_oid(AuthenticationMechanism.LOW),
            calling_authentication_value=s.password,
            user_information=initiate,
        )

    def associate(self, aarq: AARQ | None = None) -> None:
        self._ciphering = False
        self._send(encode_apdu(aarq or self.aarq()))

    def release(self) -> None:
        self._send(encode_apdu(RLRQ(reason=release_reason(0))))
        self._ciphering = False

    # -- protection (secured clients) -------------------------------------------------------------

    def _sc(self) -> int:
        return sec.AUTHENTICATED_AND_ENCRYPTED | self.settings.security.suite

    def _protect(self, apdu: bytes) -> bytes:
        c = self.settings.security
        self._ic += 1
        return sec.protect(self._sc(), self._ic, c.system_title, c.block_key, c.auth_key, apdu)

    def _unprotect(self, raw: bytes) -> bytes:
        c = self.settings.security
        env = ciphered.open_envelope(raw)
        _, _, inner = sec.unprotect(env.payload, self._server_title, c.block_key, c.auth_key)
        return inner

    def _hls_reply(self) -> bytes:
        """f(StoC), HLS pass 3."""
        c = self.settings.security
        if c.mechanism is AuthenticationMechanism.HIGH:
            return sec.hls_aes(c.hls_secret, self._stoc)
        if c.mechanism is AuthenticationMechanism.HIGH_GMAC:
            self._ic += 1
            return sec.gmac(sec.AUTHENTICATION | c.suite, self._ic, c.system_title, c.block_key, c.auth_key, self._stoc)
        return sec.ecdsa_sign(c.suite, c.signing_key, c.system_title + self._server_title + self._stoc + c.challenge)

    def _hls_answer_ok(self, value: bytes) -> bool:
        """Is ``value`` the meter's f(CtoS) (pass 4)?"""
        c = self.settings.security
        if c.mechanism is AuthenticationMechanism.HIGH:
            return hmac.compare_digest(value, sec.hls_aes(c.hls_secret, c.challenge))
        if c.mechanism is AuthenticationMechanism.HIGH_GMAC:
            if len(value) != 17:
                return False
            expected = sec.gmac(value[0], int.from_bytes(value[1:5], "big"), self._server_title, c.block_key,
                                c.auth_key, c.challenge)
            return hmac.compare_digest(value, expected)
        return sec.ecdsa_verify(c.suite, c.server_public, value,
                                self._server_title + c.system_title + c.challenge + self._stoc)

    def _next_iip(self) -> int:
        self._invoke = (self._invoke + 1) & INVOKE_ID_MASK
        return PRIORITY_HIGH | SERVICE_CLASS_CONFIRMED | self._invoke

    def get(self, class_id: int, obis: str | Obis, attribute: int, selection: SelectiveAccess | None = None) -> int:
        """Queue a GET; returns the invoke id its result will carry."""
        iip = self._next_iip()
        o = obis if isinstance(obis, Obis) else Obis.parse(obis)
        self._send(encode_apdu(GetRequestNormal(
            invoke_id_and_priority=iip,
            attribute=CosemAttributeDescriptor(class_id, o.to_bytes(), attribute),
            access_selection=selection,
        )))
        return iip & INVOKE_ID_MASK

    def get_with_list(self, items: list[tuple[int, str, int]]) -> int:
        iip = self._next_iip()
        self._list_requests.add(iip & INVOKE_ID_MASK)
        self._send(encode_apdu(GetRequestWithList(
            invoke_id_and_priority=iip,
            attributes=tuple(
                AttributeWithSelection(CosemAttributeDescriptor(c, Obis.parse(o).to_bytes(), a)) for c, o, a in items
            ),
        )))
        return iip & INVOKE_ID_MASK

    def set(self, class_id: int, obis: str, attribute: int, value: Data) -> int:
        iip = self._next_iip()
        self._send(encode_apdu(SetRequestNormal(
            invoke_id_and_priority=iip,
            attribute=CosemAttributeDescriptor(class_id, Obis.parse(obis).to_bytes(), attribute),
            value=data_to_bytes(value),
        )))
        return iip & INVOKE_ID_MASK

    def action(self, class_id: int, obis: str, method: int, parameters: Data | None = None) -> int:
        iip = self._next_iip()
        self._send(encode_apdu(ActionRequestNormal(
            invoke_id_and_priority=iip,
            method=CosemMethodDescriptor(class_id, Obis.parse(obis).to_bytes(), method),
            parameters=None if parameters is None else data_to_bytes(parameters),
        )))
        return iip & INVOKE_ID_MASK

    def send_raw_apdu(self, apdu: bytes) -> None:
        """Send any APDU bytes as they are (for tests of bad input)."""
        self._send(apdu)

    def _send(self, apdu: bytes) -> None:
        if self._ciphering and apdu and apdu[0] in _PLAIN_REQUESTS:

            apdu = ciphered.seal(ciphered.GLO_OF[apdu[0]], self._protect(apdu))
        if self._hdlc is not None:
            self._hdlc.send_apdu(apdu)
        else:
            self._out.append(wrap(self.settings.client_sap, self.settings.server_sap, apdu))

    # -- bytes ------------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        if self._hdlc is not None:
            return self._hdlc.data_to_send()
        data = b"".join(self._out)
        self._out.clear()
        return data

    def receive_data(self, data: bytes, now: float = 0.0) -> None:
        if self._hdlc is not None:
            self._hdlc.receive_data(data, now)
            while (ev := self._hdlc.next_event()) is not NEED_DATA:
                if type(ev) is ApduReceived:
                    self._on_apdu(ev.apdu)
                elif type(ev) is LinkConnected:
                    self._events.append(LinkUp(ev.parameters))
                elif type(ev) is LinkDisconnected:
                    self._events.append(LinkDown())
            return
        self._wrapper.feed(data)
        while (got := self._wrapper.next_payload()) is not NEED_DATA:
            source, destination, payload = got
            if destination != self.settings.client_sap:
                raise RemoteProtocolError(f"wrapper frame for wPort {destination}, we are {self.settings.client_sap}")
            self._on_apdu(payload)

    def next_event(self):
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    # -- responses --------------------------------------------------------------------------------

    def _on_apdu(self, raw: bytes) -> None:
        if self._ciphering and raw and raw[0] in _CIPHERED_ANSWERS:
            raw = self._unprotect(raw)
        apdu = decode_apdu(raw)
        t = type(apdu)
        ev: object
        if self._hls is not None and t is ActionResponseNormal and (apdu.invoke_id_and_priority & INVOKE_ID_MASK) == self._hls[0]:
            _, aare, initiate = self._hls
            self._hls = None
            data = apdu.outcome.return_data
            value = data_from_bytes(data).value if data else None
            if apdu.outcome.result == ActionResult.SUCCESS and isinstance(value, bytes) and self._hls_answer_ok(value):
                self.negotiated = initiate
                self._events.append(Associated(aare, initiate))
            else:
                self._ciphering = False
                self._events.append(AssociationFailed(aare))
            return
        if t is GetResponseNormal:
            value = None if apdu.data is None else data_from_bytes(apdu.data)
            ev = GetResult(apdu.invoke_id_and_priority & INVOKE_ID_MASK, value, apdu.error)
        elif t is GetResponseWithDatablock:
            ev = self._on_block(apdu)
            if ev is None:
                return
        elif t is GetResponseWithList:
            self._list_requests.discard(apdu.invoke_id_and_priority & INVOKE_ID_MASK)
            ev = GetListResult(apdu.invoke_id_and_priority & INVOKE_ID_MASK, tuple(
                r if isinstance(r, DataAccessResult) else data_from_bytes(r) for r in apdu.results))
        elif t is SetResponseNormal:
            ev = SetResult(apdu.invoke_id_and_priority & INVOKE_ID_MASK, apdu.result)
        elif t is ActionResponseNormal:
            o = apdu.outcome
            ev = ActionDone(apdu.invoke_id_and_priority & INVOKE_ID_MASK, o.result,
                            None if o.return_data is None else data_from_bytes(o.return_data))
        elif t is AARE:
            if apdu.result == AssociationResult.ACCEPTED and self.settings.security is not None:
                # HLS: decipher the InitiateResponse, answer the meter's challenge (pass 3)
                self._server_title = apdu.responding_ap_title or b""
                self._stoc = apdu.responding_authentication_value or b""
                initiate = InitiateResponse.decode(Reader(self._unprotect(apdu.user_information)))
                self._ciphering = True
                reply = self._hls_reply()
                self._hls = (self.action(_ASSOCIATION_LN, _CURRENT_ASSOCIATION, _REPLY_TO_HLS_AUTHENTICATION, Data(DataType.OCTET_STRING, reply)), apdu, initiate)
                return
            if apdu.result == AssociationResult.ACCEPTED and apdu.user_information:
                self.negotiated = InitiateResponse.decode(Reader(apdu.user_information))
                ev = Associated(apdu, self.negotiated)
            else:
                ev = AssociationFailed(apdu)
        elif t is RLRE:
            ev = Released(apdu)
        elif t is ExceptionResponse:
            ev = ExceptionReceived(apdu)
        else:
            ev = Unexpected(apdu)
        self._events.append(ev)

    def _on_block(self, apdu: GetResponseWithDatablock):
        invoke = apdu.invoke_id_and_priority & INVOKE_ID_MASK
        if apdu.error is not None:
            self._blocks.pop(invoke, None)
            self._list_requests.discard(invoke)
            return GetResult(invoke, None, apdu.error, apdu.block_number)
        buf, count = self._blocks.get(invoke, (bytearray(), 0))
        buf += apdu.raw_data
        count += 1
        if not apdu.last_block:
            self._blocks[invoke] = (buf, count)
            self._send(encode_apdu(GetRequestNext(invoke_id_and_priority=apdu.invoke_id_and_priority,
                                                  block_number=apdu.block_number)))
            return None
        self._blocks.pop(invoke, None)
        raw = bytes(buf)
        # The raw data of a long GET is one value; of a long GET-with-list, the list of results.
        if invoke not in self._list_requests:
            return GetResult(invoke, data_from_bytes(raw), None, count)
        self._list_requests.discard(invoke)
        results = GetResponseWithList.decode_body(Reader(raw), apdu.invoke_id_and_priority).results
        return GetListResult(invoke, tuple(
            r if isinstance(r, DataAccessResult) else data_from_bytes(r) for r in results), count)


def require(ev, cls):
    """``ev`` if it is a ``cls``, else raise (for scripted conversations in tests)."""
    if not isinstance(ev, cls):
        raise LocalProtocolError(f"expected {cls.__name__}, got {ev!r}")
    return ev
