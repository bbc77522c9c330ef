"""The meter's side of an application association: state table, AARQ checks, GET/SET/ACTION.

IEC 62056-5-3 clauses 6 (services) and 7.3 (ACSE). One `Association` exists per client SAP on a
connection. Transitions live in `TRANSITIONS`; the side effects (building answers) are in the
methods, so the table stays the single statement of what may follow what (h11 ``_state`` style).
"""

from __future__ import annotations

import hmac
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from meter_core.codec import crypto as sec
from meter_core.codec.apdu import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    ActionOutcome,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithList,
    ConfirmedServiceError,
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
    ResultSourceDiagnostic,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    SetRequestWithListAndFirstDatablock,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseLastDatablockWithList,
    SetResponseNormal,
    SetResponseWithList,
    ciphered,
    decode_apdu,
    encode_apdu,
)
from meter_core.codec.apdu.acse import ACSE_AUTHENTICATION, context_oid, mechanism_oid, release_reason
from meter_core.codec.apdu.codes import (
    AcseServiceUser,
    ActionResult,
    ApduTag,
    ApplicationContextName,
    AssociationResult,
    AuthenticationMechanism,
    ConfirmedServiceErrorChoice,
    Conformance,
    DataAccessResult,
    GetRequestChoice,
    GetResponseChoice,
    InitiateError,
    ServiceErrorType,
)
from meter_core.codec.axdr import DataType, Reader, data_from_bytes, encode_length, encode_octets, skip_data
from meter_core.codec.errors import DecodeError, ExceptionServiceError, ExceptionStateError
from meter_core.cosem.buffer import Stream
from meter_core.cosem.build import model_of
from meter_core.cosem.model import AssociationView, MeterModel
from meter_core.device import keys as keymod
from meter_core.events import (
    AssociationEstablished,
    AssociationRejected,
    AssociationReleased,
    Programmed,
    ReleaseReason,
    SecurityFailure,
    WorkNeeded,
)
from meter_core.session.journal import replayable

DLMS_VERSION = 6
# Smallest client-max-receive-pdu-size we can answer in: an AARE-sized GET block needs this much.
MIN_CLIENT_PDU_SIZE = 16


class AssociationState(Enum):
    """Server-side states of an application association (IEC 62056-5-3 clause 7.3)."""

    IDLE = "idle"  # no association: only AARQ (and RLRQ) make sense
    AUTHENTICATING = "authenticating"  # HLS: AARE sent, the client's reply_to_HLS_authentication awaited
    ASSOCIATED = "associated"

    __hash__ = object.__hash__  # members are singletons; Enum's hash of the name costs a Python call


class Input(Enum):
    """What happened to an association."""

    __hash__ = object.__hash__

    AARQ_ACCEPTED = "aarq-accepted"
    AARQ_HLS = "aarq-hls"  # accepted pending HLS pass 3
    HLS_PASSED = "hls-passed"
    HLS_FAILED = "hls-failed"
    AARQ_REJECTED = "aarq-rejected"
    RLRQ = "rlrq"
    REQUEST = "request"  # GET / SET / ACTION
    ABORT = "abort"  # the link or connection went away


TRANSITIONS: dict[tuple[AssociationState, Input], AssociationState] = {
    (AssociationState.IDLE, Input.AARQ_ACCEPTED): AssociationState.ASSOCIATED,
    (AssociationState.IDLE, Input.AARQ_HLS): AssociationState.AUTHENTICATING,
    # HLS pass 3 and 4: only reply_to_HLS_authentication is served; failing it ends the association.
    (AssociationState.AUTHENTICATING, Input.HLS_PASSED): AssociationState.ASSOCIATED,
    (AssociationState.AUTHENTICATING, Input.HLS_FAILED): AssociationState.IDLE,
    (AssociationState.AUTHENTICATING, Input.AARQ_REJECTED): AssociationState.AUTHENTICATING,
    (AssociationState.AUTHENTICATING, Input.RLRQ): AssociationState.IDLE,
    (AssociationState.AUTHENTICATING, Input.REQUEST): AssociationState.AUTHENTICATING,
    (AssociationState.AUTHENTICATING, Input.ABORT): AssociationState.IDLE,
    (AssociationState.IDLE, Input.AARQ_REJECTED): AssociationState.IDLE,
    (AssociationState.IDLE, Input.RLRQ): AssociationState.IDLE,
    (AssociationState.IDLE, Input.REQUEST): AssociationState.IDLE,  # answered by exception-response
    (AssociationState.IDLE, Input.ABORT): AssociationState.IDLE,
    # A second AARQ on an open association is refused; the association stays as it was.
    (AssociationState.ASSOCIATED, Input.AARQ_REJECTED): AssociationState.ASSOCIATED,
    (AssociationState.ASSOCIATED, Input.RLRQ): AssociationState.IDLE,
    (AssociationState.ASSOCIATED, Input.REQUEST): AssociationState.ASSOCIATED,
    (AssociationState.ASSOCIATED, Input.ABORT): AssociationState.IDLE,
}


class ServiceStats:
    """Requests served, by (service, result), and protected exchanges refused, by reason; shared by the
    connections of a worker and read by metrics. Each client SAP the meter has an association for counts
    in a `ServiceStats` of its own (`of_client`), so metrics can show requests by client; what no
    association served (an unknown client) counts here."""

    __slots__ = ("counts", "security_failures", "clients")

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.security_failures: Counter[str] = Counter()
        self.clients: dict[int, ServiceStats] = {}

    def of_client(self, client_sap: int) -> ServiceStats:
        """The stats of ``client_sap``'s associations (a client the meter has an association for)."""
        stats = self.clients.get(client_sap)
        if stats is None:
            stats = self.clients[client_sap] = ServiceStats()
        return stats

    @property
    def all_counts(self) -> Counter[tuple[str, str]]:
        """Requests served by every client, added up."""
        total = Counter(self.counts)
        for stats in self.clients.values():
            total.update(stats.counts)
        return total

    @property
    def all_security_failures(self) -> Counter[str]:
        """Protected exchanges refused, every client added up."""
        total = Counter(self.security_failures)
        for stats in self.clients.values():
            total.update(stats.security_failures)
        return total


class SecurityContext:
    """What a ciphered association knows of its client: system title, challenges, dedicated key."""

    __slots__ = ("client_title", "ctos", "stoc", "dedicated_key", "dedicated_rx")

    def __init__(self, client_title: bytes, ctos: bytes, dedicated_key: bytes | None) -> None:
        self.client_title = client_title
        self.ctos = ctos
        self.stoc = b""
        self.dedicated_key = dedicated_key
        self.dedicated_rx = 0


# Overhead of protecting a response: tag, length (up to 3), SC, IC, GCM tag; general-glo adds the title.
CIPHER_OVERHEAD = 1 + 3 + sec.HEADER_LENGTH + sec.TAG_LENGTH + 1 + sec.SYSTEM_TITLE_LENGTH
_PLAIN_REQUESTS = frozenset({ApduTag.GET_REQUEST, ApduTag.SET_REQUEST, ApduTag.ACTION_REQUEST,
                             ApduTag.ACCESS_REQUEST, ApduTag.GENERAL_BLOCK_TRANSFER})
_SERVER_REQUESTS = ciphered.GLO_REQUESTS | ciphered.DED_REQUESTS | {ApduTag.GENERAL_GLO_CIPHERING,
                                                          ApduTag.GENERAL_DED_CIPHERING}
_random = os.urandom


_OK = "ok"
_EXCEPTION_NOT_ASSOCIATED = encode_apdu(
    ExceptionResponse(
        state_error=ExceptionStateError.SERVICE_NOT_ALLOWED,
        service_error=ExceptionServiceError.OPERATION_NOT_POSSIBLE,
    )
)
_EXCEPTION_NOT_NEGOTIATED = encode_apdu(
    ExceptionResponse(
        state_error=ExceptionStateError.SERVICE_NOT_ALLOWED,
        service_error=ExceptionServiceError.SERVICE_NOT_SUPPORTED,
    )
)
_EXCEPTION_PDU_TOO_LONG = encode_apdu(
    ExceptionResponse(
        state_error=ExceptionStateError.SERVICE_NOT_ALLOWED, service_error=ExceptionServiceError.PDU_TOO_LONG
    )
)
_RLRE_NORMAL = encode_apdu(RLRE(reason=release_reason(0)))
_CURRENT_ASSOCIATION = bytes((0, 0, 40, 0, 0, 255))
_GET_NORMAL_OK = bytes((ApduTag.GET_RESPONSE, GetResponseChoice.NORMAL))
_RESULT_DATA = b"\x00"  # Get-Data-Result CHOICE: data [0]
_GET_REQUEST, _GET_NORMAL = int(ApduTag.GET_REQUEST), int(GetRequestChoice.NORMAL)
_AARQ_TAG = bytes((ApduTag.AARQ,))
_NO_CONFORMANCE = Conformance(0)

# Accepted AARQs of an association without authentication or ciphering (`AssociationView.accepted`, by
# AARQ bytes): what the answer depends on is all in the key and the view (its spec is frozen and shared by
# every meter of a kind), so a head-end that opens association after association with the same AARQ gets
# the same AARE without decoding and encoding BER each time. Bounded: emptied when full (a client varying
# its AARQ gets the uncached path, never more memory).
_ACCEPTED_MAX = 256
# RLRQs that decoded before (the release is answered whatever the RLRQ carries): bounded the same way
_RELEASES: set[bytes] = set()
_RLRQ_TAG = bytes((ApduTag.RLRQ,))
_RELEASED: dict[int, AssociationReleased] = {}  # the (frozen) event of a release by RLRQ, by client SAP
_PLAIN_OF_GLO = ciphered.PLAIN_OF_GLO
_SHORT_LENGTH = 0x80  # A-XDR lengths below this take one byte
_AUTHENTICATED_AND_ENCRYPTED = sec.AUTHENTICATED_AND_ENCRYPTED
_TAG_LENGTH = sec.TAG_LENGTH
_GCM_TAG_CUT = sec.TAG_LENGTH - 16  # AES-GCM's 16-byte tag, cut to the 12 bytes DLMS sends
# security_policy of the security setup (IC 64 version 1, IEC 62056-6-2 clause 4.4.7)
POLICY_AUTHENTICATED_REQUEST, POLICY_ENCRYPTED_REQUEST = 0x04, 0x08
POLICY_AUTHENTICATED_RESPONSE, POLICY_ENCRYPTED_RESPONSE = 0x20, 0x40


def exception_response(state: ExceptionStateError, service: ExceptionServiceError,
                       counter: int | None = None) -> bytes:
    return encode_apdu(ExceptionResponse(state_error=state, service_error=service, invocation_counter=counter))


_SECURITY_ANSWERS = {
    sec.Failure.POLICY: exception_response(ExceptionStateError.SERVICE_NOT_ALLOWED,
                                           ExceptionServiceError.OPERATION_NOT_POSSIBLE),
}
_EXCEPTION_DECIPHERING = exception_response(ExceptionStateError.SERVICE_NOT_ALLOWED,
                                            ExceptionServiceError.DECIPHERING_ERROR)


def _datablock_overhead(limit: int) -> int:
    # C4 02 iip last(1) block-number(4) choice(1) length(1..3): everything but the raw data
    return 9 + len(encode_length(limit))


@dataclass(slots=True)
class _LongGet:
    """A GET answered in blocks (IEC 62056-5-3 block transfer): what is left to send and the last block's
    number; rows still to encode come from ``chunks`` (a profile buffer streamed)."""

    invoke_id_and_priority: int
    pending: bytearray
    chunks: Iterator[bytes] | None
    block_number: int = 0


@dataclass(slots=True)
class _LongSet:
    """A SET whose value arrives in blocks: the first request (normal or with-list) and what came."""

    request: SetRequestWithFirstDatablock | SetRequestWithListAndFirstDatablock
    received: bytearray
    block_number: int = 1


@dataclass(slots=True)
class _LongAction:
    """An ACTION whose parameters arrive in blocks: the method and what came."""

    method: CosemMethodDescriptor
    received: bytearray
    block_number: int = 1


# The most a long SET or ACTION may send in all (its data is decoded as one value afterwards).
_MAX_BLOCKS_DATA = 0xFFFF


def _append_block(transfer: _LongSet | _LongAction, block) -> str | None:
    """Add the next block of a long SET or ACTION; None, or why the transfer ends ("block-number": not
    the next one, "too-long": more than `_MAX_BLOCKS_DATA` in all)."""
    if block.block_number != transfer.block_number + 1:
        return "block-number"
    transfer.received += block.raw_data
    transfer.block_number += 1
    return "too-long" if len(transfer.received) > _MAX_BLOCKS_DATA else None


class Association:
    """One client's association with the meter over one connection."""

    __slots__ = (
        "meter", "view", "spec", "stats", "state", "context", "conformance", "max_send_pdu_size",
        "max_receive_pdu_size", "_long_get", "_long_set", "events", "_get_ok", "send_limit", "_sec",
        "_expected_sc", "defer_work",
    )

    def __init__(self, meter, view: AssociationView, stats: ServiceStats | None = None, events=None,
                 defer_work: bool = False) -> None:
        self.meter = meter
        # Getters whose answer takes long to compute (a first billing read) raise `WorkNeeded` instead of
        # computing it inline; `handle_apdu` leaves the association as the request found it.
        self.defer_work = defer_work
        self.view = view
        self.spec = view.spec
        self.stats = stats if stats is not None else ServiceStats()
        self.state = AssociationState.IDLE
        self.context: int | None = None
        self.conformance = _NO_CONFORMANCE
        self._get_ok = False  # GET negotiated (a plain bool for the fast path; IntFlag & is slow)
        self.max_send_pdu_size = view.spec.server_max_receive_pdu_size
        self.max_receive_pdu_size = view.spec.server_max_receive_pdu_size
        # The largest plain response APDU: max_send_pdu_size less what protecting it adds.
        self.send_limit = self.max_send_pdu_size
        self._sec: SecurityContext | None = None
        self._expected_sc = -1  # the security control byte the policy asks for (checked once per value)
        # long GET in progress: [invoke id, bytes not yet sent, chunks still to come or None, last block
        # number]
        self._long_get: _LongGet | None = None
        # long SET in progress: [request, collected raw bytes, last block number]
        self._long_set: _LongSet | _LongAction | None = None
        # what happened, oldest first: the caller's queue if it gives one (a connection's), else a list
        self.events = [] if events is None else events

    # -- state table ---------------------------------------------------------------------------------

    def _transition(self, event: Input) -> None:
        # Every (state, input) pair is in the table; a missing pair is a bug in the table.
        self.state = TRANSITIONS[(self.state, event)]

    @property
    def associated(self) -> bool:
        return self.state is AssociationState.ASSOCIATED

    @property
    def model(self) -> MeterModel:
        """The object model of the meter this association serves (Association LN reads the others')."""
        return model_of(self.meter)

    @property
    def status_code(self) -> int:
        """association_status of Association LN attribute 8: 0 non-associated, 2 associated."""
        return 2 if self.state is AssociationState.ASSOCIATED else 0

    def abort(self, reason: ReleaseReason) -> None:
        """The link under the association is gone."""
        if self.state is AssociationState.ASSOCIATED:
            self.events.append(AssociationReleased(self.spec.client_sap, reason))
        self._long_get = self._long_set = None
        self._sec = None
        self._transition(Input.ABORT)

    # -- entry point -------------------------------------------------------------------------------

    def handle_apdu(self, apdu: bytes, now: float) -> bytes | None:
        """The response APDU to ``apdu`` (None when the standard gives no answer). With ``defer_work``,
        may raise `WorkNeeded`: a protected request's invocation counters are then as it found them, so it
        can be served again later."""
        if self._sec is not None and self.state is not AssociationState.IDLE and apdu:
            if not self.defer_work:
                return self._handle_protected(apdu, now)
            ks, ctx = self._keyset(), self._sec
            counters = ks.rx_ic, ks.tx_ic, ctx.dedicated_rx
            try:
                return self._handle_protected(apdu, now)
            except WorkNeeded:
                ks.rx_ic, ks.tx_ic, ctx.dedicated_rx = counters
                raise
        return self._handle_plain(apdu, now)

    def _handle_protected(self, apdu: bytes, now: float) -> bytes | None:
        """An APDU in an association whose policy protects its requests."""
        if len(apdu) > self.max_receive_pdu_size:
            self.stats.counts[("other", "pdu-too-long")] += 1
            return _EXCEPTION_PDU_TOO_LONG
        if apdu[0] == ApduTag.GENERAL_CIPHERING:
            return self._on_general_ciphering(apdu, now)
        if apdu[0] == ApduTag.GENERAL_SIGNING:
            return self._on_general_signing(apdu, now)
        if apdu[0] in ciphered.CIPHERED_TAGS:
            return self._on_ciphered(apdu, now)
        if apdu[0] in _PLAIN_REQUESTS:  # the policy demands protected requests
            return self._security_refusal(sec.Failure.POLICY)
        return self._handle_plain(apdu, now)

    def _handle_plain(self, apdu: bytes, now: float) -> bytes | None:
        if self.state is AssociationState.ASSOCIATED:
            if len(apdu) > self.max_receive_pdu_size:
                self.stats.counts[("other", "pdu-too-long")] += 1
                return _EXCEPTION_PDU_TOO_LONG
            # Fast path: GET-Request-Normal without selective access, the bulk of all traffic.
            if len(apdu) == 13 and apdu[0] == _GET_REQUEST and apdu[1] == _GET_NORMAL and apdu[12] == 0:
                attr = self.view.readable.get(apdu[3:12])
                if attr is not None and self._get_ok:
                    get = attr.get
                    value = get if type(get) is bytes else get(self.meter, self, now)
                    if len(value) + 4 <= self.send_limit:
                        self._long_get = None
                        self.stats.counts[("get", _OK)] += 1
                        return _GET_NORMAL_OK + apdu[2:3] + _RESULT_DATA + value
            if apdu[:1] == _RLRQ_TAG and type(apdu) is bytes and apdu in _RELEASES:
                return self._on_rlrq(None, now)
        elif apdu[:1] == _AARQ_TAG and type(apdu) is bytes and self.state is AssociationState.IDLE:
            accepted = self.view.accepted.get(apdu)
            if accepted is not None:
                return self._accept(*accepted)
        try:
            request = decode_apdu(apdu)
        except DecodeError as e:
            if apdu[:1] == _AARQ_TAG:
                return self._reject(AcseServiceUser.NO_REASON_GIVEN, f"AARQ does not decode: {e}")
            self.stats.counts[("other", "undecodable")] += 1
            state, service = e.exception_response
            return exception_response(state, service)
        handler = _HANDLERS.get(type(request))
        if handler is None:
            self.stats.counts[("other", "unexpected-apdu")] += 1
            return _EXCEPTION_NOT_NEGOTIATED
        answer = handler(self, request, now)
        if type(request) is RLRQ and type(apdu) is bytes:
            if len(_RELEASES) >= _ACCEPTED_MAX:
                _RELEASES.clear()
            _RELEASES.add(apdu)
        elif (type(request) is AARQ and self.state is AssociationState.ASSOCIATED and type(apdu) is bytes
                and self.spec.mechanism is AuthenticationMechanism.NONE and not self.spec.setup):
            accepted = self.view.accepted
            if len(accepted) >= _ACCEPTED_MAX:
                accepted.clear()
            spec = self.spec  # events are frozen: one instance serves every association it describes
            established = AssociationEstablished(spec.client_sap, spec.name, spec.mechanism, self.context)
            accepted[apdu] = (self.context, self.conformance, self._get_ok, self.max_send_pdu_size, answer,
                              established)
        return answer

    # -- protected APDUs -------------------------------------------------------------------------

    def _keyset(self):
        return self.meter.keys().sets[self.spec.setup]

    def _on_ciphered(self, apdu: bytes, now: float) -> bytes | None:
        """A glo-/ded- or general-glo/ded-ciphering request: check, decipher, serve, protect the answer."""
        ctx = self._sec
        ks = self._keyset()
        tag = apdu[0]
        # Fast path, the bulk of a head-end's traffic: a glo- request with a one-byte length, the security
        # control byte the policy asks for (authenticated and encrypted), a fresh counter, a tag that
        # verifies. Anything else goes the long way below, which gives each refusal its answer.
        sc = self._expected_sc
        n = len(apdu)
        if (tag in ciphered.GLO_REQUESTS and 20 <= n < _SHORT_LENGTH + 2 and apdu[1] == n - 2 and apdu[2] == sc
                and sc & _AUTHENTICATED_AND_ENCRYPTED == _AUTHENTICATED_AND_ENCRYPTED):
            ic = int.from_bytes(apdu[3:7], "big")
            if ic > ks.rx_ic:
                aead, aad = sec.aead_of(ks.ek), bytes((sc,)) + ks.ak
                iv = ctx.client_title + apdu[3:7]
                body = apdu[7:-_TAG_LENGTH]
                m = len(body)
                inner = aead.encrypt(iv, body, None)[:m]
                if (hmac.compare_digest(aead.encrypt(iv, inner, aad)[m:m + _TAG_LENGTH], apdu[-_TAG_LENGTH:])
                        and inner[0] == _PLAIN_OF_GLO[tag]):
                    ks.rx_ic = ic
                    tx = ks.next_tx()
                    response = self._handle_plain(inner, now)
                    out_tag = ciphered.GLO_OF.get(response[0]) if response else None
                    if out_tag is None:
                        return response
                    header = bytes((sc,)) + tx.to_bytes(4, "big")
                    sealed = aead.encrypt(self.meter.identity.system_title + header[1:], response, aad)
                    return bytes((out_tag,)) + encode_length(len(sealed) + 1) + header + sealed[:_GCM_TAG_CUT]
        env = None
        try:
            if tag in ciphered.GLO_REQUESTS and len(apdu) > 2 and apdu[1] == len(apdu) - 2 and apdu[1] < _SHORT_LENGTH:
                payload, dedicated, general = apdu[2:], False, False  # the common case: glo-, short length
            else:
                env = ciphered.open_envelope(apdu) if tag in _SERVER_REQUESTS else None
                if env is None:
                    self.stats.counts[("other", "unexpected-apdu")] += 1
                    return _EXCEPTION_NOT_NEGOTIATED
                payload, dedicated, general = env.payload, env.dedicated, env.general
                if general and env.system_title != ctx.client_title:
                    raise sec.SecurityError(sec.Failure.SYSTEM_TITLE, "system title is not the client's")
                if dedicated and ctx.dedicated_key is None:
                    raise sec.SecurityError(sec.Failure.DECIPHERING, "no dedicated key in this association")
            key = ctx.dedicated_key if dedicated else ks.ek
            sc, ic, _ = sec.split_header(payload)
            if sc != self._expected_sc:
                sec.check_sc(sc, ks.suite)
                needed = _request_protection(self.spec.policy)
                if sc & needed != needed:
                    raise sec.SecurityError(sec.Failure.POLICY, f"security control {sc:#04x} below the policy")
            last = ctx.dedicated_rx if dedicated else ks.rx_ic
            if ic <= last:
                raise sec.SecurityError(sec.Failure.INVOCATION_COUNTER, f"invocation counter {ic} not above {last}")
            _, _, inner = sec.unprotect(payload, ctx.client_title, key, ks.ak)
            if not inner or (not general and
                             (ciphered.PLAIN_OF_DED if dedicated else ciphered.PLAIN_OF_GLO)[tag] != inner[0]):
                raise sec.SecurityError(sec.Failure.DECIPHERING, "ciphered APDU holds another service")
        except sec.SecurityError as e:
            last = ctx.dedicated_rx if env is not None and env.dedicated else ks.rx_ic
            return self._security_refusal(e.failure, last)
        if dedicated:
            ctx.dedicated_rx = ic
        else:
            ks.rx_ic = ic
        # The answer goes out under the keys in force now, with a counter taken now: a key_transfer
        # served by this very request changes the keys only for the APDUs after it.
        ak, tx = ks.ak, ks.next_tx()
        title = self.meter.identity.system_title
        response = self._handle_plain(inner, now)
        if response is None or response[0] == ApduTag.EXCEPTION_RESPONSE:
            return response
        resp_sc = sc if sc == self._expected_sc else ks.suite | _response_protection(self.spec.policy, sc)
        payload = sec.protect(resp_sc, tx, title, key, ak, response)
        if general:
            return ciphered.seal(tag, payload, title)
        out_tag = (ciphered.DED_OF if dedicated else ciphered.GLO_OF).get(response[0])
        if out_tag is None:  # an answer with no ciphered form (cannot happen for GET/SET/ACTION)
            return response
        return ciphered.seal(out_tag, payload)

    def _on_general_ciphering(self, apdu: bytes, now: float) -> bytes | None:
        """general-ciphering: the addressed form of suites 1 and 2 (also taken under suite 0). The key is
        the global one (no key-info, or identified key 0) or one wrapped under the master key for this
        APDU (wrapped-key); the answer goes back in the same form under the same key."""
        ctx, ks = self._sec, self._keyset()
        title = self.meter.identity.system_title
        try:
            g = ciphered.parse_general_ciphering(apdu)
            if g.originator != ctx.client_title or (g.recipient and g.recipient != title):
                raise sec.SecurityError(sec.Failure.SYSTEM_TITLE, "general-ciphering between other parties")
            key = ks.ek
            if g.key_info is not None:
                kind = g.key_info[0]
                if kind == ciphered.IDENTIFIED_KEY and g.key_info[1] == 0:
                    key = ks.ek
                elif kind == ciphered.WRAPPED_KEY and g.key_info[1] == 0:
                    key = sec.unwrap_key(self.meter.keys().kek, g.key_info[2])
                    if len(key) != sec.KEY_LENGTH[ks.suite]:
                        raise sec.SecurityError(sec.Failure.DECIPHERING, "wrapped key of the wrong length")
                else:  # broadcast key, or key agreement (not offered by this meter)
                    raise sec.SecurityError(sec.Failure.SECURITY_CONTROL, f"key-info {g.key_info[:2]} not supported")
            sc, ic, _ = sec.split_header(g.content)
            sec.check_sc(sc, ks.suite)
            needed = _request_protection(self.spec.policy)
            if sc & needed != needed:
                raise sec.SecurityError(sec.Failure.POLICY, f"security control {sc:#04x} below the policy")
            if ic <= ks.rx_ic:
                raise sec.SecurityError(sec.Failure.INVOCATION_COUNTER, f"invocation counter {ic} not above {ks.rx_ic}")
            _, _, inner = sec.unprotect_aad(g.content, ctx.client_title, key, ks.ak, g.aad_extra(ks.suite))
            if not inner or inner[0] not in _PLAIN_REQUESTS:
                raise sec.SecurityError(sec.Failure.DECIPHERING, "general-ciphering holds no request")
        except sec.SecurityError as e:
            return self._security_refusal(e.failure, ks.rx_ic)
        ks.rx_ic = ic
        ak, tx = ks.ak, ks.next_tx()
        response = self._handle_plain(inner, now)
        if response is None or response[0] == ApduTag.EXCEPTION_RESPONSE:
            return response
        out = ciphered.GeneralCiphering(tx.to_bytes(8, "big"), title, ctx.client_title, b"", b"", None, b"")
        resp_sc = ks.suite | _response_protection(self.spec.policy, sc)
        content = sec.protect_aad(resp_sc, tx, title, key, ak, response, out.aad_extra(ks.suite))
        return ciphered.GeneralCiphering(out.transaction_id, title, ctx.client_title, b"", b"", None, content).encode()

    def _on_general_signing(self, apdu: bytes, now: float) -> bytes | None:
        """general-signing (suites 1 and 2): the head-end's signature is checked with its signing key,
        the content (a glo-/ded- request) is served as if it came alone, and the answer goes back signed
        by the meter's key."""
        ctx, ks = self._sec, self._keyset()
        meter, title = self.meter, self.meter.identity.system_title
        try:
            if not ks.suite:
                raise sec.SecurityError(sec.Failure.SECURITY_CONTROL, "suite 0 has no signatures")
            g = ciphered.parse_general_signing(apdu)
            if g.originator != ctx.client_title or (g.recipient and g.recipient != title):
                raise sec.SecurityError(sec.Failure.SYSTEM_TITLE, "general-signing between other parties")
            state = meter.keys()
            if state.client_public is None:
                state.client_public = keymod.client_signing_key(meter.fleet, ks.suite).public_key()
            if not sec.ecdsa_verify(ks.suite, state.client_public, g.signature, g.signed_data()):
                raise sec.SecurityError(sec.Failure.AUTHENTICATION, "general-signing signature does not verify")
            if not g.content or g.content[0] not in _SERVER_REQUESTS:
                raise sec.SecurityError(sec.Failure.POLICY, "general-signing content is not a ciphered request")
        except sec.SecurityError as e:
            return self._security_refusal(e.failure, ks.rx_ic)
        content = self._on_ciphered(g.content, now)
        if content is None or content[0] == ApduTag.EXCEPTION_RESPONSE:
            return content
        if state.signing is None:
            state.signing = keymod.signing_key(meter.fleet, meter.identity.meter_id, ks.suite)
        out = ciphered.GeneralSigning(ks.tx_ic.to_bytes(8, "big"), title, ctx.client_title, b"", b"", content)
        return ciphered.GeneralSigning(out.transaction_id, title, ctx.client_title, b"", b"", content,
                                  sec.ecdsa_sign(ks.suite, state.signing, out.signed_data())).encode()

    def _security_refusal(self, failure: sec.Failure, counter: int = 0) -> bytes:
        """Count and report a refused protected exchange; the exception-response for it. An
        invocation-counter-error carries the counter the next request must exceed."""
        self.stats.security_failures[failure.value] += 1
        self.events.append(SecurityFailure(self.spec.client_sap, failure.value))
        if failure is sec.Failure.INVOCATION_COUNTER:
            return exception_response(ExceptionStateError.SERVICE_NOT_ALLOWED,
                                      ExceptionServiceError.INVOCATION_COUNTER_ERROR, counter)
        return _SECURITY_ANSWERS.get(failure, _EXCEPTION_DECIPHERING)

    # -- ACSE -------------------------------------------------------------------------------------

    def _on_aarq(self, aarq: AARQ, now: float) -> bytes:
        spec = self.spec
        if self.state is not AssociationState.IDLE:
            return self._reject(AcseServiceUser.NO_REASON_GIVEN, "already associated", transient=True)
        context = aarq.context
        if context is None or context not in spec.contexts:
            return self._reject(AcseServiceUser.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED,
                                "application context not supported")
        mechanism = aarq.mechanism
        if spec.mechanism is AuthenticationMechanism.NONE:
            if aarq.mechanism_name is not None and mechanism is not AuthenticationMechanism.NONE:
                return self._reject(AcseServiceUser.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED,
                                    "this association takes no authentication")
        else:
            if aarq.mechanism_name is None:
                return self._reject(AcseServiceUser.AUTHENTICATION_MECHANISM_NAME_REQUIRED,
                                    "mechanism name required")
            if mechanism is not spec.mechanism:
                return self._reject(AcseServiceUser.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED,
                                    "mechanism not offered by this association")
            if mechanism is AuthenticationMechanism.LOW:
                password = self.meter.lls_secret()
                if not hmac.compare_digest(aarq.calling_authentication_value or b"", password):
                    return self._reject(AcseServiceUser.AUTHENTICATION_FAILURE, "wrong LLS password")
        ctx = None
        user_information = aarq.user_information
        if spec.setup:
            title = aarq.calling_ap_title
            if title is None or len(title) != sec.SYSTEM_TITLE_LENGTH:
                return self._reject(AcseServiceUser.CALLING_AP_TITLE_NOT_RECOGNIZED,
                                    "a ciphered association needs the client's 8-byte system title")
            ctos = aarq.calling_authentication_value
            if ctos is None or not 8 <= len(ctos) <= 64:
                return self._reject(AcseServiceUser.AUTHENTICATION_FAILURE, "client challenge missing or not 8-64 bytes")
            if user_information is None or user_information[:1] != bytes((ApduTag.GLO_INITIATE_REQUEST,)):
                self._security_refusal(sec.Failure.POLICY)
                return self._reject_initiate(InitiateError.OTHER, "the policy demands a ciphered InitiateRequest")
            ks = self._keyset()
            try:
                env = ciphered.open_envelope(user_information)
                sc, ic, _ = sec.split_header(env.payload)
                sec.check_sc(sc, ks.suite)
                needed = _request_protection(spec.policy)
                if sc & needed != needed:
                    raise sec.SecurityError(sec.Failure.POLICY, "InitiateRequest less protected than the policy")
                if ic <= ks.rx_ic:
                    raise sec.SecurityError(sec.Failure.INVOCATION_COUNTER, "stale invocation counter")
                _, _, user_information = sec.unprotect(env.payload, title, ks.ek, ks.ak)
            except sec.SecurityError as e:
                self._security_refusal(e.failure)
                return self._reject_initiate(InitiateError.OTHER, f"InitiateRequest refused: {e}")
            ks.rx_ic = ic
            ks.client_system_title = title
            ctx = SecurityContext(title, ctos, None)
            request_sc = sc
        if user_information is None:
            return self._reject(AcseServiceUser.NO_REASON_GIVEN, "no InitiateRequest in user-information")
        try:
            initiate = InitiateRequest.decode(Reader(user_information))
        except DecodeError:
            return self._reject_initiate(InitiateError.OTHER, "InitiateRequest does not decode")
        if initiate.proposed_dlms_version_number < DLMS_VERSION:
            return self._reject_initiate(InitiateError.DLMS_VERSION_TOO_LOW, "DLMS version too low")
        conformance = initiate.proposed_conformance & spec.conformance
        if not conformance:
            return self._reject_initiate(InitiateError.INCOMPATIBLE_CONFORMANCE, "no common service")
        client_max = initiate.client_max_receive_pdu_size or 0xFFFF
        if client_max < MIN_CLIENT_PDU_SIZE + (CIPHER_OVERHEAD if ctx else 0):
            return self._reject_initiate(InitiateError.PDU_SIZE_TOO_SHORT, "client PDU size too small")
        if ctx is not None and initiate.dedicated_key is not None:
            if len(initiate.dedicated_key) != sec.KEY_LENGTH[ks.suite]:
                return self._reject_initiate(InitiateError.OTHER, "dedicated key of the wrong length")
            ctx.dedicated_key = initiate.dedicated_key

        self.context = int(context)
        self.conformance = Conformance(conformance)
        self._get_ok = bool(self.conformance & Conformance.GET)
        self.max_send_pdu_size = min(client_max, spec.server_max_receive_pdu_size)
        self.send_limit = self.max_send_pdu_size - (CIPHER_OVERHEAD if ctx else 0)
        self.max_receive_pdu_size = spec.server_max_receive_pdu_size
        self._long_get = self._long_set = None
        self._sec = ctx
        if ctx is not None:
            self._expected_sc = ks.suite | _request_protection(spec.policy)
        self.stats.counts[("aarq", _OK)] += 1
        response = encode_apdu(InitiateResponse(
            negotiated_conformance=self.conformance,
            server_max_receive_pdu_size=spec.server_max_receive_pdu_size,
            negotiated_dlms_version_number=DLMS_VERSION,
        ))
        if ctx is None:
            self._transition(Input.AARQ_ACCEPTED)
            self.events.append(AssociationEstablished(spec.client_sap, spec.name, spec.mechanism, self.context))
            return encode_apdu(AARE(
                application_context_name=context_oid(context),
                result=AssociationResult.ACCEPTED,
                result_source_diagnostic=ResultSourceDiagnostic.user(AcseServiceUser.NULL),
                user_information=response,
            ))
        # HLS: accepted pending pass 3, with the server's challenge and the InitiateResponse ciphered.
        ctx.stoc = _random(16)
        self._transition(Input.AARQ_HLS)
        title = self.meter.identity.system_title
        resp_sc = ks.suite | _response_protection(spec.policy, request_sc)
        return encode_apdu(AARE(
            application_context_name=context_oid(context),
            result=AssociationResult.ACCEPTED,
            result_source_diagnostic=ResultSourceDiagnostic.user(AcseServiceUser.AUTHENTICATION_REQUIRED),
            responding_ap_title=title,
            responder_acse_requirements=ACSE_AUTHENTICATION,
            mechanism_name=mechanism_oid(spec.mechanism),
            responding_authentication_value=ctx.stoc,
            user_information=ciphered.seal(ApduTag.GLO_INITIATE_RESPONSE,
                                      sec.protect(resp_sc, ks.next_tx(), title, ks.ek, ks.ak, response)),
        ))

    def _accept(self, context: int, conformance: Conformance, get_ok: bool, max_send: int, aare: bytes,
                established: AssociationEstablished) -> bytes:
        """Accept an AARQ accepted before with the same bytes (no authentication, no ciphering): the
        same negotiation as `_on_aarq`'s, the same AARE."""
        spec = self.spec
        self.context = context
        self.conformance = conformance
        self._get_ok = get_ok
        self.max_send_pdu_size = self.send_limit = max_send
        self.max_receive_pdu_size = spec.server_max_receive_pdu_size
        self._long_get = self._long_set = None
        self.stats.counts[("aarq", _OK)] += 1
        self._transition(Input.AARQ_ACCEPTED)
        self.events.append(established)
        return aare

    def _ecdsa_passes(self, value: bytes, title: bytes) -> bytes | None:
        """Mechanism 7: the client signed client title || server title || StoC || CtoS; the meter
        answers with its signature of server title || client title || CtoS || StoC (IEC 62056-5-3 HLS)."""
        ctx, meter = self._sec, self.meter
        state = meter.keys()
        suite = self._keyset().suite
        if state.client_public is None:
            state.client_public = keymod.client_signing_key(meter.fleet, suite).public_key()
        if not sec.ecdsa_verify(suite, state.client_public, value, ctx.client_title + title + ctx.stoc + ctx.ctos):
            return None
        if state.signing is None:
            state.signing = keymod.signing_key(meter.fleet, meter.identity.meter_id, suite)
        return sec.ecdsa_sign(suite, state.signing, title + ctx.client_title + ctx.ctos + ctx.stoc)

    def _reply_to_hls(self, iip: int, raw: bytes | None) -> bytes:
        """HLS pass 3 (the client's f(StoC)) and pass 4 (the meter's f(CtoS)) (IEC 62056-5-3 HLS)."""
        ctx, ks, spec = self._sec, self._keyset(), self.spec
        value = None
        if raw is not None:
            try:
                data = data_from_bytes(raw)
                if data.tag is DataType.OCTET_STRING:
                    value = bytes(data.value)
            except DecodeError:
                pass
        title = self.meter.identity.system_title
        answer = None
        if value is not None:
            if spec.mechanism is AuthenticationMechanism.HIGH:
                secret = self.meter.keys().hls[spec.client_sap]
                if hmac.compare_digest(value, sec.hls_aes(secret, ctx.stoc)):
                    answer = sec.hls_aes(secret, ctx.ctos)
            elif spec.mechanism is AuthenticationMechanism.HIGH_ECDSA:
                answer = self._ecdsa_passes(value, title)
            elif spec.mechanism is AuthenticationMechanism.HIGH_GMAC and len(value) == 1 + 4 + sec.TAG_LENGTH:
                sc, ic = value[0], int.from_bytes(value[1:5], "big")
                expected = sec.gmac(sc, ic, ctx.client_title, ks.ek, ks.ak, ctx.stoc)
                if sc == sec.AUTHENTICATION | ks.suite and hmac.compare_digest(value, expected):
                    answer = sec.gmac(sc, ks.next_tx(), title, ks.ek, ks.ak, ctx.ctos)
        if answer is None:
            self._transition(Input.HLS_FAILED)
            self._sec = None
            self._security_refusal(sec.Failure.AUTHENTICATION)
            self.events.append(AssociationRejected(spec.client_sap, AssociationResult.REJECTED_PERMANENT, 1,
                                                   AcseServiceUser.AUTHENTICATION_FAILURE, "HLS pass 3 failed"))
            self.stats.counts[("action", "hls-failed")] += 1
            return encode_apdu(ActionResponseNormal(invoke_id_and_priority=iip,
                                                    outcome=ActionOutcome(ActionResult.READ_WRITE_DENIED)))
        self._transition(Input.HLS_PASSED)
        self.events.append(AssociationEstablished(spec.client_sap, spec.name, spec.mechanism, self.context))
        self.stats.counts[("action", _OK)] += 1
        return encode_apdu(ActionResponseNormal(invoke_id_and_priority=iip,
                                                outcome=ActionOutcome(ActionResult.SUCCESS, encode_octets(answer))))

    def _reject(self, diagnostic: AcseServiceUser, reason: str, *, transient: bool = False,
                user_information: bytes | None = None) -> bytes:
        result = AssociationResult.REJECTED_TRANSIENT if transient else AssociationResult.REJECTED_PERMANENT
        self.events.append(AssociationRejected(self.spec.client_sap, result, 1, diagnostic, reason))
        self.stats.counts[("aarq", "rejected")] += 1
        self._transition(Input.AARQ_REJECTED)
        return reject_aarq(self.spec.contexts, diagnostic, result=result, user_information=user_information)

    def _reject_initiate(self, error: InitiateError, reason: str) -> bytes:
        cse = ConfirmedServiceError(
            service=ConfirmedServiceErrorChoice.INITIATE_ERROR, error_type=ServiceErrorType.INITIATE, value=error
        )
        return self._reject(AcseServiceUser.NO_REASON_GIVEN, reason, user_information=encode_apdu(cse))

    def _on_rlrq(self, rlrq: RLRQ | None, now: float) -> bytes:
        if self.state is AssociationState.ASSOCIATED:
            client = self.spec.client_sap
            released = _RELEASED.get(client)
            if released is None:
                released = _RELEASED[client] = AssociationReleased(client, ReleaseReason.RELEASED)
            self.events.append(released)
        self._long_get = self._long_set = None
        self._sec = None
        self._transition(Input.RLRQ)
        self.stats.counts[("rlrq", _OK)] += 1
        return _RLRE_NORMAL

    # -- GET ----------------------------------------------------------------------------------------

    def _check_service(self, needed: Conformance, service: str) -> bytes | None:
        """The exception-response when the association is not up or ``needed`` was not negotiated."""
        if self.state is not AssociationState.ASSOCIATED:
            self._transition(Input.REQUEST)
            self.stats.counts[(service, "not-associated")] += 1
            return _EXCEPTION_NOT_ASSOCIATED
        if self.conformance & needed != needed:
            self.stats.counts[(service, "not-negotiated")] += 1
            return _EXCEPTION_NOT_NEGOTIATED
        return None

    def _read(self, class_id: int, instance: bytes, attribute_id: int, selection, now: float):
        """Encoded value of one attribute, or the DataAccessResult that says why not."""
        found = self.view.lookup(class_id, instance)
        if isinstance(found, DataAccessResult):
            return found
        obj, rights = found
        if not 1 <= attribute_id <= obj.ic.attribute_count:
            return DataAccessResult.OBJECT_UNDEFINED
        if not rights.attributes[attribute_id - 1].readable:
            return DataAccessResult.READ_WRITE_DENIED
        attr = obj.attributes[attribute_id - 1]
        if selection is not None:
            if attr.select is None or selection.selector not in (attr.selectors or ()):
                return DataAccessResult.SCOPE_OF_ACCESS_VIOLATED
            try:
                parameters = data_from_bytes(selection.parameters)
            except DecodeError:
                return DataAccessResult.TYPE_UNMATCHED
            return attr.select(self.meter, self, now, selection.selector, parameters)
        get = attr.get
        return get if type(get) is bytes else get(self.meter, self, now)

    def _on_get_normal(self, req: GetRequestNormal, now: float) -> bytes:
        needed = Conformance.GET
        if req.access_selection is not None:
            needed |= Conformance.SELECTIVE_ACCESS
        refused = self._check_service(needed, "get")
        if refused is not None:
            return refused
        self._long_get = None
        a = req.attribute
        value = self._read(a.class_id, a.instance, a.attribute_id, req.access_selection, now)
        iip = req.invoke_id_and_priority
        if isinstance(value, DataAccessResult):
            self.stats.counts[("get", value.name.lower())] += 1
            return encode_apdu(GetResponseNormal(invoke_id_and_priority=iip, error=value))
        self.stats.counts[("get", _OK)] += 1
        if type(value) is Stream:
            return self._send_stream(iip, value)
        if len(value) + 4 <= self.send_limit:
            return _GET_NORMAL_OK + bytes((iip, 0)) + value
        return self._start_long_get(iip, value)

    def _send_stream(self, iip: int, stream: Stream) -> bytes:
        """A value produced in chunks: one normal response if it fits, else GET blocks, pulled lazily."""
        limit = self.send_limit - 4
        buf = bytearray()
        chunks = stream.chunks
        for chunk in chunks:
            buf += chunk
            if len(buf) > limit:
                return self._start_long_get(iip, buf, chunks)
        return _GET_NORMAL_OK + bytes((iip, 0)) + buf

    def _on_get_with_list(self, req: GetRequestWithList, now: float) -> bytes:
        refused = self._check_service(Conformance.GET | Conformance.MULTIPLE_REFERENCES, "get-list")
        if refused is not None:
            return refused
        self._long_get = None
        results = []
        for item in req.attributes:
            if item.access_selection is not None and not self.conformance & Conformance.SELECTIVE_ACCESS:
                results.append(DataAccessResult.SCOPE_OF_ACCESS_VIOLATED)
                continue
            a = item.attribute
            value = self._read(a.class_id, a.instance, a.attribute_id, item.access_selection, now)
            results.append(value.materialise() if type(value) is Stream else value)
        self.stats.counts[("get-list", _OK)] += 1
        response = encode_apdu(
            GetResponseWithList(invoke_id_and_priority=req.invoke_id_and_priority, results=tuple(results))
        )
        if len(response) <= self.send_limit:
            return response
        # Long response: the blocks carry the list part (count and results) as raw data.
        return self._start_long_get(req.invoke_id_and_priority, response[3:])

    def _start_long_get(self, iip: int, raw: bytes | bytearray, chunks=None) -> bytes:
        if not self.conformance & Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ:
            self.stats.counts[("get", "too-long")] += 1
            return encode_apdu(GetResponseNormal(invoke_id_and_priority=iip, error=DataAccessResult.OTHER_REASON))
        self._long_get = _LongGet(iip, bytearray(raw), chunks)
        return self._next_block()

    def _next_block(self) -> bytes:
        lg = self._long_get
        buf, chunks = lg.pending, lg.chunks
        size = self.send_limit - _datablock_overhead(self.send_limit)
        # Pull rows until there is more than a block (so "last" is known) or the value is complete.
        while chunks is not None and len(buf) <= size:
            chunk = next(chunks, None)
            if chunk is None:
                chunks = lg.chunks = None
            else:
                buf += chunk
        data = bytes(buf[:size])
        del buf[:size]
        lg.block_number += 1
        last = chunks is None and not buf
        if last:
            self._long_get = None
        return encode_apdu(
            GetResponseWithDatablock(invoke_id_and_priority=lg.invoke_id_and_priority, last_block=last,
                                     block_number=lg.block_number, raw_data=data)
        )

    def _on_get_next(self, req: GetRequestNext, now: float) -> bytes:
        refused = self._check_service(Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ, "get-next")
        if refused is not None:
            return refused
        lg = self._long_get
        iip = req.invoke_id_and_priority
        if lg is None:
            self.stats.counts[("get-next", "no-long-get-in-progress")] += 1
            return encode_apdu(GetResponseWithDatablock(
                invoke_id_and_priority=iip, last_block=True, block_number=req.block_number,
                error=DataAccessResult.NO_LONG_GET_IN_PROGRESS))
        if req.block_number != lg.block_number:
            self._long_get = None
            self.stats.counts[("get-next", "data-block-number-invalid")] += 1
            return encode_apdu(GetResponseWithDatablock(
                invoke_id_and_priority=iip, last_block=True, block_number=req.block_number,
                error=DataAccessResult.DATA_BLOCK_NUMBER_INVALID))
        self.stats.counts[("get-next", _OK)] += 1
        return self._next_block()

    # -- SET ----------------------------------------------------------------------------------------

    def _write(self, class_id: int, instance: bytes, attribute_id: int, selection, raw: bytes,
               now: float) -> DataAccessResult:
        found = self.view.lookup(class_id, instance)
        if isinstance(found, DataAccessResult):
            return found
        obj, rights = found
        if not 1 <= attribute_id <= obj.ic.attribute_count:
            return DataAccessResult.OBJECT_UNDEFINED
        attr = obj.attributes[attribute_id - 1]
        if not rights.attributes[attribute_id - 1].writable or attr.set is None:
            return DataAccessResult.READ_WRITE_DENIED
        if selection is not None:
            return DataAccessResult.SCOPE_OF_ACCESS_VIOLATED
        try:
            value = data_from_bytes(raw)
        except DecodeError:
            return DataAccessResult.TYPE_UNMATCHED
        meter = self.meter
        t, shown = meter.sim(now), meter.clock(now)
        result = attr.set(meter, self, value, now)
        self.events.append(Programmed(
            self.spec.client_sap, "set", class_id, bytes(instance), attribute_id, bytes(raw), int(result), t, shown,
            result is DataAccessResult.SUCCESS and replayable("set", class_id, attribute_id)))
        return result

    def _on_set_normal(self, req: SetRequestNormal, now: float) -> bytes:
        refused = self._check_service(Conformance.SET, "set")
        if refused is not None:
            return refused
        a = req.attribute
        result = self._write(a.class_id, a.instance, a.attribute_id, req.access_selection, req.value, now)
        self.stats.counts[("set", result.name.lower() if result else _OK)] += 1
        return encode_apdu(SetResponseNormal(invoke_id_and_priority=req.invoke_id_and_priority, result=result))

    def _on_set_with_list(self, req: SetRequestWithList, now: float) -> bytes:
        refused = self._check_service(Conformance.SET | Conformance.MULTIPLE_REFERENCES, "set-list")
        if refused is not None:
            return refused
        if len(req.values) != len(req.attributes):
            results = (DataAccessResult.TYPE_UNMATCHED,) * len(req.attributes)
        else:
            results = tuple(
                self._write(i.attribute.class_id, i.attribute.instance, i.attribute.attribute_id,
                            i.access_selection, v, now)
                for i, v in zip(req.attributes, req.values)
            )
        self.stats.counts[("set-list", _OK)] += 1
        return encode_apdu(SetResponseWithList(invoke_id_and_priority=req.invoke_id_and_priority, results=results))

    def _on_set_first_block(self, req, now: float) -> bytes:
        refused = self._check_service(Conformance.SET | Conformance.BLOCK_TRANSFER_WITH_SET_OR_WRITE, "set")
        if refused is not None:
            return refused
        if req.block.block_number != 1:
            self._long_set = None
            return self._set_block_error(req, DataAccessResult.DATA_BLOCK_NUMBER_INVALID)
        self._long_set = _LongSet(req, bytearray(req.block.raw_data))
        return self._set_block_progress(req.invoke_id_and_priority, req.block, now)

    def _on_set_next_block(self, req: SetRequestWithDatablock, now: float) -> bytes:
        refused = self._check_service(Conformance.BLOCK_TRANSFER_WITH_SET_OR_WRITE, "set")
        if refused is not None:
            return refused
        ls = self._long_set
        if type(ls) is not _LongSet:  # none, or a long ACTION in progress
            return self._set_block_error(req, DataAccessResult.NO_LONG_SET_IN_PROGRESS)
        ended = _append_block(ls, req.block)
        if ended is not None:
            self._long_set = None
            return self._set_block_error(req, DataAccessResult.DATA_BLOCK_NUMBER_INVALID if ended == "block-number"
                                         else DataAccessResult.LONG_SET_ABORTED)
        return self._set_block_progress(req.invoke_id_and_priority, req.block, now)

    def _set_block_progress(self, iip: int, block, now: float) -> bytes:
        if not block.last_block:
            return encode_apdu(SetResponseDatablock(invoke_id_and_priority=iip, block_number=block.block_number))
        ls = self._long_set
        first, raw, number = ls.request, ls.received, ls.block_number
        self._long_set = None
        if type(first) is SetRequestWithFirstDatablock:
            a = first.attribute
            result = self._write(a.class_id, a.instance, a.attribute_id, first.access_selection, bytes(raw), now)
            self.stats.counts[("set", result.name.lower() if result else _OK)] += 1
            return encode_apdu(SetResponseLastDatablock(invoke_id_and_priority=iip, result=result, block_number=number))
        # with-list: the raw data is the values array
        r = Reader(bytes(raw))
        try:
            count = r.pull_length()
            values = []
            for _ in range(count):
                start = r.tell()
                skip_data(r)
                values.append(r.slice_since(start))
        except DecodeError:
            values = []
        if len(values) != len(first.attributes):
            results = (DataAccessResult.TYPE_UNMATCHED,) * len(first.attributes)
        else:
            results = tuple(
                self._write(i.attribute.class_id, i.attribute.instance, i.attribute.attribute_id,
                            i.access_selection, v, now)
                for i, v in zip(first.attributes, values)
            )
        return encode_apdu(
            SetResponseLastDatablockWithList(invoke_id_and_priority=iip, results=results, block_number=number)
        )

    def _set_block_error(self, req, result: DataAccessResult) -> bytes:
        self.stats.counts[("set", result.name.lower())] += 1
        number = req.block.block_number
        return encode_apdu(
            SetResponseLastDatablock(invoke_id_and_priority=req.invoke_id_and_priority, result=result,
                                     block_number=number)
        )

    # -- ACTION -------------------------------------------------------------------------------------

    def _invoke(self, class_id: int, instance: bytes, method_id: int, raw: bytes | None,
                now: float) -> ActionOutcome:
        found = self.view.lookup(class_id, instance)
        if isinstance(found, DataAccessResult):
            return ActionOutcome(ActionResult(found))
        obj, rights = found
        if not 1 <= method_id <= obj.ic.method_count:
            return ActionOutcome(ActionResult.OBJECT_UNDEFINED)
        method = obj.methods[method_id - 1] if obj.methods else None
        if not rights.methods[method_id - 1] or method is None:
            return ActionOutcome(ActionResult.READ_WRITE_DENIED)
        params = None
        if raw is not None:
            try:
                params = data_from_bytes(raw)
            except DecodeError:
                return ActionOutcome(ActionResult.TYPE_UNMATCHED)
        meter = self.meter
        t, shown = meter.sim(now), meter.clock(now)
        result, data = method(meter, self, params, now)
        self.events.append(Programmed(
            self.spec.client_sap, "action", class_id, bytes(instance), method_id, bytes(raw or b""), int(result), t,
            shown, result is ActionResult.SUCCESS and replayable("action", class_id, method_id)))
        return ActionOutcome(result, data)

    def _on_action_normal(self, req: ActionRequestNormal, now: float) -> bytes:
        if self.state is AssociationState.AUTHENTICATING:
            m = req.method
            if m.class_id == 15 and m.method_id == 1 and m.instance in (_CURRENT_ASSOCIATION, self.spec.ln):
                return self._reply_to_hls(req.invoke_id_and_priority, req.parameters)
        refused = self._check_service(Conformance.ACTION, "action")
        if refused is not None:
            return refused
        m = req.method
        outcome = self._invoke(m.class_id, m.instance, m.method_id, req.parameters, now)
        self.stats.counts[("action", outcome.result.name.lower() if outcome.result else _OK)] += 1
        response = encode_apdu(ActionResponseNormal(invoke_id_and_priority=req.invoke_id_and_priority,
                                                    outcome=outcome))
        if len(response) > self.send_limit:
            return encode_apdu(ActionResponseNormal(invoke_id_and_priority=req.invoke_id_and_priority,
                                                    outcome=ActionOutcome(ActionResult.OTHER_REASON)))
        return response

    def _on_action_with_list(self, req: ActionRequestWithList, now: float) -> bytes:
        refused = self._check_service(Conformance.ACTION | Conformance.MULTIPLE_REFERENCES, "action-list")
        if refused is not None:
            return refused
        if len(req.parameters) != len(req.methods):
            outcomes = tuple(ActionOutcome(ActionResult.TYPE_UNMATCHED) for _ in req.methods)
        else:
            outcomes = tuple(
                self._invoke(m.class_id, m.instance, m.method_id, p, now) for m, p in zip(req.methods, req.parameters)
            )
        self.stats.counts[("action-list", _OK)] += 1
        return encode_apdu(ActionResponseWithList(invoke_id_and_priority=req.invoke_id_and_priority,
                                                  outcomes=outcomes))

    def _on_action_first_pblock(self, req: ActionRequestWithFirstPblock, now: float) -> bytes:
        """Long ACTION parameters, first block: collected until the last block, then invoked."""
        refused = self._check_service(Conformance.ACTION | Conformance.BLOCK_TRANSFER_WITH_ACTION, "action")
        if refused is not None:
            return refused
        iip = req.invoke_id_and_priority
        if req.block.block_number != 1:
            self._long_set = None
            return self._action_error(iip, ActionResult.LONG_ACTION_ABORTED)
        self._long_set = _LongAction(req.method, bytearray(req.block.raw_data))
        return self._action_block_progress(iip, req.block.last_block, now)

    def _on_action_pblock(self, req: ActionRequestWithPblock, now: float) -> bytes:
        refused = self._check_service(Conformance.ACTION | Conformance.BLOCK_TRANSFER_WITH_ACTION, "action")
        if refused is not None:
            return refused
        iip = req.invoke_id_and_priority
        ls = self._long_set
        if type(ls) is not _LongAction:  # none, or a long SET in progress
            return self._action_error(iip, ActionResult.NO_LONG_ACTION_IN_PROGRESS)
        if _append_block(ls, req.block) is not None:
            self._long_set = None
            return self._action_error(iip, ActionResult.LONG_ACTION_ABORTED)
        return self._action_block_progress(iip, req.block.last_block, now)

    def _action_block_progress(self, iip: int, last: bool, now: float) -> bytes:
        la = self._long_set
        method, raw, number = la.method, la.received, la.block_number
        if not last:
            return encode_apdu(ActionResponseNextPblock(invoke_id_and_priority=iip, block_number=number))
        self._long_set = None
        outcome = self._invoke(method.class_id, method.instance, method.method_id, bytes(raw), now)
        self.stats.counts[("action", outcome.result.name.lower() if outcome.result else _OK)] += 1
        return encode_apdu(ActionResponseNormal(invoke_id_and_priority=iip, outcome=outcome))

    def _action_error(self, iip: int, result: ActionResult) -> bytes:
        self.stats.counts[("action", result.name.lower())] += 1
        return encode_apdu(ActionResponseNormal(invoke_id_and_priority=iip, outcome=ActionOutcome(result)))


_HANDLERS = {
    AARQ: Association._on_aarq,
    RLRQ: Association._on_rlrq,
    GetRequestNormal: Association._on_get_normal,
    GetRequestWithList: Association._on_get_with_list,
    GetRequestNext: Association._on_get_next,
    SetRequestNormal: Association._on_set_normal,
    SetRequestWithList: Association._on_set_with_list,
    SetRequestWithFirstDatablock: Association._on_set_first_block,
    SetRequestWithListAndFirstDatablock: Association._on_set_first_block,
    SetRequestWithDatablock: Association._on_set_next_block,
    ActionRequestNormal: Association._on_action_normal,
    ActionRequestWithList: Association._on_action_with_list,
    ActionRequestWithFirstPblock: Association._on_action_first_pblock,
    ActionRequestWithPblock: Association._on_action_pblock,
}


def _request_protection(policy: int) -> int:
    """SC bits a request must carry under security_policy (v1): bit 2 authenticated, bit 3 encrypted."""
    return ((sec.AUTHENTICATION if policy & POLICY_AUTHENTICATED_REQUEST else 0)
            | (sec.ENCRYPTION if policy & POLICY_ENCRYPTED_REQUEST else 0))


def _response_protection(policy: int, request_sc: int) -> int:
    """SC bits of a response: what the policy demands (bits 5, 6), and at least what the request had."""
    bits = ((sec.AUTHENTICATION if policy & POLICY_AUTHENTICATED_RESPONSE else 0)
            | (sec.ENCRYPTION if policy & POLICY_ENCRYPTED_RESPONSE else 0))
    return bits | (request_sc & (sec.AUTHENTICATION | sec.ENCRYPTION))


def reject_aarq(contexts, diagnostic: AcseServiceUser, *, result: AssociationResult = AssociationResult.REJECTED_PERMANENT,
                user_information: bytes | None = None) -> bytes:
    """An AARE refusing an association (also used for client SAPs the meter does not know)."""
    context = min(contexts) if contexts else ApplicationContextName.LOGICAL_NAME
    return encode_apdu(
        AARE(
            application_context_name=context_oid(context),
            result=result,
            result_source_diagnostic=ResultSourceDiagnostic.user(diagnostic),
            user_information=user_information,
        )
    )


__all__ = ["Association", "AssociationState", "Input", "ServiceStats", "TRANSITIONS", "reject_aarq"]
