"""ACSE APDUs as DLMS uses them: AARQ, AARE, RLRQ, RLRE (ISO/IEC 8650-1; IEC 62056-5-3 clause 7.3 and 8.2).

Primer. ACSE APDUs are BER encoded: every field is tag, length, contents. DLMS uses context tags:
explicit ones (0xA_) wrap a whole inner TLV - the application context name is
``A1 09 06 07 60 85 74 05 08 01 01`` (an OBJECT IDENTIFIER 2.16.756.5.8.1.1 inside [1]); implicit ones
(0x8_) carry the contents directly - the mechanism name is ``8B 07 60 85 74 05 08 02 01``. The
xDLMS InitiateRequest/Response travels in user-information ``BE len 04 len <apdu>``.

Each APDU keeps the contents of its fields as bytes (an OID's contents, an AP title's octets) so
that whatever a client sends re-encodes byte for byte; properties interpret them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, NamedTuple

from meter_core.codec.apdu.codes import (
    AcseServiceProvider,
    AcseServiceUser,
    ApplicationContextName,
    AssociationResult,
    AuthenticationMechanism,
)
from meter_core.codec.axdr import Reader, Writer
from meter_core.codec.errors import DecodeError, LocalProtocolError

# OID 2.16.756.5.8 = joint-iso-ccitt(2) country(16) country-name(756) identified-organization(5)
# DLMS-UA(8); then 1 = application context, 2 = authentication mechanism.
DLMS_CONTEXT_PREFIX = bytes.fromhex("608574050801")
DLMS_MECHANISM_PREFIX = bytes.fromhex("608574050802")
# ACSE-requirements (IEC 62056-5-3 clause 8.2): BIT STRING {authentication (0)}, 7 unused bits, bit 0 set
ACSE_AUTHENTICATION = b"\x07\x80"
_AUTHENTICATION_BIT = 0x80  # bit 0 of the requirements, the first bit after the unused-bits count

# BER tags (ITU-T X.690): universal INTEGER, OCTET STRING, OBJECT IDENTIFIER; the [0] IMPLICIT
# GraphicString of an authentication-value (charstring); a context-specific constructed tag's class bits.
_BER_INTEGER, _BER_OCTET_STRING, _BER_OID = 0x02, 0x04, 0x06
_GRAPHIC_STRING = 0x80
_CONTEXT_CONSTRUCTED = 0xA0
_TAG_NUMBER = 0x1F


def context_oid(name: ApplicationContextName) -> bytes:
    """Contents of the application-context-name OID for ``name``."""
    return DLMS_CONTEXT_PREFIX + bytes((name,))


def mechanism_oid(mechanism: AuthenticationMechanism) -> bytes:
    """Contents of the mechanism-name OID for ``mechanism``."""
    return DLMS_MECHANISM_PREFIX + bytes((mechanism,))


# -- BER primitives --------------------------------------------------------------------------------


def _pull_ber_length(r: Reader) -> int:
    first = r.pull_u8()
    if first < 0x80:
        return first
    n = first & 0x7F
    if n == 0 or n > 3:
        raise DecodeError(f"BER length of {n} bytes is not supported")
    value = 0
    for _ in range(n):
        value = (value << 8) | r.pull_u8()
    return value


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return bytes((0x82, n >> 8, n & 0xFF))
    raise LocalProtocolError(f"BER length {n} too large")


def _tlv(tag: int, contents: bytes) -> bytes:
    return bytes((tag,)) + _ber_length(len(contents)) + contents


def _pull_tlv(r: Reader) -> tuple[int, bytes]:
    tag = r.pull_u8()
    return tag, r.pull_bytes(_pull_ber_length(r))


def _inner(contents: bytes, tag: int, what: str) -> bytes:
    """The contents of the single TLV with ``tag`` that makes up ``contents``."""
    r = Reader(contents)
    got, inner = _pull_tlv(r)
    if got != tag or not r.eof():
        raise DecodeError(f"{what}: expected one TLV with tag {tag:#04x}")
    return inner


class _Kind(IntEnum):
    IMPLICIT = 0  # contents stored as is (bit strings, mechanism-name OID)
    OID = 1  # [n] { OBJECT IDENTIFIER } -> OID contents
    OCTETS = 2  # [n] { OCTET STRING } -> octets
    INTEGER = 3  # [n] { INTEGER } -> int
    CHARSTRING = 4  # [n] { [0] GraphicString } -> octets (authentication value)
    USER_INFO = 5  # [30] { OCTET STRING } -> octets (the xDLMS APDU)
    DIAGNOSTIC = 6  # [3] { [1|2] { INTEGER } } -> ResultSourceDiagnostic


def _decode_integer(contents: bytes, what: str) -> int:
    if not 1 <= len(contents) <= 4:
        raise DecodeError(f"{what}: INTEGER of {len(contents)} bytes")
    return int.from_bytes(contents, "big", signed=True)


def _encode_integer(v: int) -> bytes:
    n = max(1, (v.bit_length() + 8) // 8)
    return v.to_bytes(n, "big", signed=True)


class ResultSourceDiagnostic(NamedTuple):
    """Result-source-diagnostic of the AARE: which ACSE user gave ``value``."""

    source: int  # 1 acse-service-user, 2 acse-service-provider
    value: int

    @classmethod
    def user(cls, value: AcseServiceUser) -> ResultSourceDiagnostic:
        return cls(1, value)

    @classmethod
    def provider(cls, value: AcseServiceProvider) -> ResultSourceDiagnostic:
        return cls(2, value)


def _decode_field(kind: _Kind, tag: int, contents: bytes, name: str):
    if kind is _Kind.IMPLICIT:
        return contents
    if kind is _Kind.OID:
        return _inner(contents, _BER_OID, name)
    if kind is _Kind.OCTETS or kind is _Kind.USER_INFO:
        return _inner(contents, _BER_OCTET_STRING, name)
    if kind is _Kind.INTEGER:
        return _decode_integer(_inner(contents, _BER_INTEGER, name), name)
    if kind is _Kind.CHARSTRING:
        return _inner(contents, _GRAPHIC_STRING, name)
    if kind is _Kind.DIAGNOSTIC:
        r = Reader(contents)
        source_tag, inner = _pull_tlv(r)
        if source_tag not in (_CONTEXT_CONSTRUCTED | 1, _CONTEXT_CONSTRUCTED | 2) or not r.eof():
            raise DecodeError(f"{name}: expected [1] or [2]")
        return ResultSourceDiagnostic(source_tag & _TAG_NUMBER, _decode_integer(_inner(inner, _BER_INTEGER, name), name))
    raise AssertionError(kind)


def _encode_field(kind: _Kind, tag: int, value) -> bytes:
    if kind is _Kind.IMPLICIT:
        return _tlv(tag, value)
    if kind is _Kind.OID:
        return _tlv(tag, _tlv(_BER_OID, value))
    if kind is _Kind.OCTETS or kind is _Kind.USER_INFO:
        return _tlv(tag, _tlv(_BER_OCTET_STRING, value))
    if kind is _Kind.INTEGER:
        return _tlv(tag, _tlv(_BER_INTEGER, _encode_integer(value)))
    if kind is _Kind.CHARSTRING:
        return _tlv(tag, _tlv(_GRAPHIC_STRING, value))
    if kind is _Kind.DIAGNOSTIC:
        source, v = value
        return _tlv(tag, _tlv(_CONTEXT_CONSTRUCTED | source, _tlv(_BER_INTEGER, _encode_integer(v))))
    raise AssertionError(kind)


class _AcseApdu:
    """Shared BER codec: each subclass lists (tag, field name, kind) in encoding order."""

    __slots__ = ()
    TAG: ClassVar[int]
    FIELDS: ClassVar[tuple[tuple[int, str, _Kind], ...]]
    REQUIRED: ClassVar[frozenset[str]] = frozenset()
    _BY_TAG: ClassVar[dict[int, tuple[str, _Kind]]]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._BY_TAG = {tag: (name, kind) for tag, name, kind in cls.FIELDS}

    def encode(self, w: Writer) -> None:
        body = b"".join(
            _encode_field(kind, tag, getattr(self, name))
            for tag, name, kind in self.FIELDS
            if getattr(self, name) is not None
        )
        w.push_bytes(_tlv(self.TAG, body))

    @classmethod
    def decode(cls, r: Reader):
        tag = r.pull_u8()
        if tag != cls.TAG:
            raise DecodeError(f"expected {cls.__name__} tag {cls.TAG:#04x}, got {tag:#04x}")
        body = Reader(r.pull_bytes(_pull_ber_length(r)))
        values: dict[str, object] = {}
        while not body.eof():
            ftag, contents = _pull_tlv(body)
            spec = cls._BY_TAG.get(ftag)
            if spec is None:
                raise DecodeError(f"{cls.__name__}: unknown field tag {ftag:#04x}")
            name, kind = spec
            if name in values:
                raise DecodeError(f"{cls.__name__}: field {name} twice")
            values[name] = _decode_field(kind, ftag, contents, name)
        missing = sorted(cls.REQUIRED.difference(values))
        if missing:
            raise DecodeError(f"{cls.__name__}: missing {', '.join(missing)}")
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class AARQ(_AcseApdu):
    """A-ASSOCIATE request (ISO/IEC 8650-1; IEC 62056-5-3 clause 8.2, AARQ-apdu)."""

    TAG: ClassVar[int] = 0x60
    FIELDS: ClassVar[tuple[tuple[int, str, _Kind], ...]] = (
        (0x80, "protocol_version", _Kind.IMPLICIT),
        (0xA1, "application_context_name", _Kind.OID),
        (0xA2, "called_ap_title", _Kind.OCTETS),
        (0xA3, "called_ae_qualifier", _Kind.OCTETS),
        (0xA4, "called_ap_invocation_id", _Kind.INTEGER),
        (0xA5, "called_ae_invocation_id", _Kind.INTEGER),
        (0xA6, "calling_ap_title", _Kind.OCTETS),
        (0xA7, "calling_ae_qualifier", _Kind.OCTETS),
        (0xA8, "calling_ap_invocation_id", _Kind.INTEGER),
        (0xA9, "calling_ae_invocation_id", _Kind.INTEGER),
        (0x8A, "sender_acse_requirements", _Kind.IMPLICIT),
        (0x8B, "mechanism_name", _Kind.IMPLICIT),
        (0xAC, "calling_authentication_value", _Kind.CHARSTRING),
        (0xBD, "implementation_information", _Kind.IMPLICIT),
        (0xBE, "user_information", _Kind.USER_INFO),
    )
    REQUIRED: ClassVar[frozenset[str]] = frozenset({"application_context_name"})

    application_context_name: bytes = b""
    protocol_version: bytes | None = None
    called_ap_title: bytes | None = None
    called_ae_qualifier: bytes | None = None
    called_ap_invocation_id: int | None = None
    called_ae_invocation_id: int | None = None
    calling_ap_title: bytes | None = None
    calling_ae_qualifier: bytes | None = None
    calling_ap_invocation_id: int | None = None
    calling_ae_invocation_id: int | None = None
    sender_acse_requirements: bytes | None = None
    mechanism_name: bytes | None = None
    calling_authentication_value: bytes | None = None
    implementation_information: bytes | None = None
    user_information: bytes | None = None

    @property
    def context(self) -> ApplicationContextName | None:
        """The DLMS application context asked for, or None if the OID is not a DLMS one."""
        return _dlms_arc(self.application_context_name, DLMS_CONTEXT_PREFIX, ApplicationContextName)

    @property
    def mechanism(self) -> AuthenticationMechanism | None:
        """The authentication mechanism named, or None when absent or not a DLMS one."""
        if self.mechanism_name is None:
            return None
        return _dlms_arc(self.mechanism_name, DLMS_MECHANISM_PREFIX, AuthenticationMechanism)

    @property
    def authentication_requested(self) -> bool:
        """True when sender-acse-requirements has the authentication functional unit (bit 0)."""
        req = self.sender_acse_requirements
        return req is not None and len(req) >= 2 and bool(req[1] & _AUTHENTICATION_BIT)


@dataclass(frozen=True, slots=True, kw_only=True)
class AARE(_AcseApdu):
    """A-ASSOCIATE response (ISO/IEC 8650-1; IEC 62056-5-3 clause 8.2, AARE-apdu)."""

    TAG: ClassVar[int] = 0x61
    FIELDS: ClassVar[tuple[tuple[int, str, _Kind], ...]] = (
        (0x80, "protocol_version", _Kind.IMPLICIT),
        (0xA1, "application_context_name", _Kind.OID),
        (0xA2, "result", _Kind.INTEGER),
        (0xA3, "result_source_diagnostic", _Kind.DIAGNOSTIC),
        (0xA4, "responding_ap_title", _Kind.OCTETS),
        (0xA5, "responding_ae_qualifier", _Kind.OCTETS),
        (0xA6, "responding_ap_invocation_id", _Kind.INTEGER),
        (0xA7, "responding_ae_invocation_id", _Kind.INTEGER),
        (0x88, "responder_acse_requirements", _Kind.IMPLICIT),
        (0x89, "mechanism_name", _Kind.IMPLICIT),
        (0xAA, "responding_authentication_value", _Kind.CHARSTRING),
        (0xBD, "implementation_information", _Kind.IMPLICIT),
        (0xBE, "user_information", _Kind.USER_INFO),
    )
    REQUIRED: ClassVar[frozenset[str]] = frozenset(
        {"application_context_name", "result", "result_source_diagnostic"}
    )

    application_context_name: bytes = b""
    result: int = AssociationResult.ACCEPTED
    result_source_diagnostic: ResultSourceDiagnostic = ResultSourceDiagnostic(1, AcseServiceUser.NULL)
    protocol_version: bytes | None = None
    responding_ap_title: bytes | None = None
    responding_ae_qualifier: bytes | None = None
    responding_ap_invocation_id: int | None = None
    responding_ae_invocation_id: int | None = None
    responder_acse_requirements: bytes | None = None
    mechanism_name: bytes | None = None
    responding_authentication_value: bytes | None = None
    implementation_information: bytes | None = None
    user_information: bytes | None = None

    @property
    def context(self) -> ApplicationContextName | None:
        return _dlms_arc(self.application_context_name, DLMS_CONTEXT_PREFIX, ApplicationContextName)


@dataclass(frozen=True, slots=True, kw_only=True)
class RLRQ(_AcseApdu):
    """A-RELEASE request (ISO/IEC 8650-1; IEC 62056-5-3 clause 8.2, RLRQ-apdu)."""

    TAG: ClassVar[int] = 0x62
    FIELDS: ClassVar[tuple[tuple[int, str, _Kind], ...]] = (
        (0x80, "reason", _Kind.IMPLICIT),
        (0xBE, "user_information", _Kind.USER_INFO),
    )

    reason: bytes | None = None
    user_information: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RLRE(_AcseApdu):
    """A-RELEASE response (ISO/IEC 8650-1; IEC 62056-5-3 clause 8.2, RLRE-apdu)."""

    TAG: ClassVar[int] = 0x63
    FIELDS: ClassVar[tuple[tuple[int, str, _Kind], ...]] = (
        (0x80, "reason", _Kind.IMPLICIT),
        (0xBE, "user_information", _Kind.USER_INFO),
    )

    reason: bytes | None = None
    user_information: bytes | None = None


def release_reason(value: int) -> bytes:
    """Contents of an RLRQ/RLRE reason field ([0] IMPLICIT INTEGER)."""
    return _encode_integer(value)


def _dlms_arc(oid: bytes, prefix: bytes, enum: type[IntEnum]):
    if len(oid) != len(prefix) + 1 or not oid.startswith(prefix):
        return None
    try:
        return enum(oid[-1])
    except ValueError:
        return None


# The system title is 8 octets (IEC 62056-5-3 clause 9.2.4.8.3.4).
SYSTEM_TITLE_LENGTH = 8
