"""Ciphered xDLMS APDUs taken apart and put together (IEC 62056-5-3 clause 8.3).

The service-specific glo- and ded- forms of each plain APDU, general-glo/ded-ciphering, general-ciphering
and general-signing: which tags they are, and the envelope around the protected payload (SC || IC ||
ciphertext || tag, produced and checked by `meter_core.codec.crypto`). A malformed envelope raises
`SecurityError` with `Failure.TRUNCATED`, which the meter answers as the policy says.
"""

from __future__ import annotations

from dataclasses import dataclass

from meter_core.codec.apdu.codes import ApduTag
from meter_core.codec.axdr import Reader, encode_length
from meter_core.codec.errors import DecodeError, Failure, SecurityError

# -- service-specific ciphered tags ------------------------------------------------------------------
# glo- and ded- forms of each plain service tag (IEC 62056-5-3 clause 8.3, xDLMS-APDU CHOICE).

GLO_OF = {
    ApduTag.INITIATE_REQUEST: ApduTag.GLO_INITIATE_REQUEST,
    ApduTag.INITIATE_RESPONSE: ApduTag.GLO_INITIATE_RESPONSE,
    ApduTag.CONFIRMED_SERVICE_ERROR: 0x2E,
    ApduTag.GET_REQUEST: ApduTag.GLO_GET_REQUEST,
    ApduTag.SET_REQUEST: ApduTag.GLO_SET_REQUEST,
    ApduTag.EVENT_NOTIFICATION_REQUEST: ApduTag.GLO_EVENT_NOTIFICATION_REQUEST,
    ApduTag.ACTION_REQUEST: ApduTag.GLO_ACTION_REQUEST,
    ApduTag.GET_RESPONSE: ApduTag.GLO_GET_RESPONSE,
    ApduTag.SET_RESPONSE: ApduTag.GLO_SET_RESPONSE,
    ApduTag.ACTION_RESPONSE: ApduTag.GLO_ACTION_RESPONSE,
}
DED_OF = {
    ApduTag.GET_REQUEST: ApduTag.DED_GET_REQUEST,
    ApduTag.SET_REQUEST: ApduTag.DED_SET_REQUEST,
    ApduTag.EVENT_NOTIFICATION_REQUEST: ApduTag.DED_EVENT_NOTIFICATION_REQUEST,
    ApduTag.ACTION_REQUEST: ApduTag.DED_ACTION_REQUEST,
    ApduTag.GET_RESPONSE: ApduTag.DED_GET_RESPONSE,
    ApduTag.SET_RESPONSE: ApduTag.DED_SET_RESPONSE,
    ApduTag.ACTION_RESPONSE: ApduTag.DED_ACTION_RESPONSE,
}
PLAIN_OF_GLO = {v: k for k, v in GLO_OF.items()}
PLAIN_OF_DED = {v: k for k, v in DED_OF.items()}
# The ciphered request tags a server takes on an open association.
GENERAL_GLO_CIPHERING_TAG = bytes((ApduTag.GENERAL_GLO_CIPHERING,))
GLO_REQUESTS = frozenset({ApduTag.GLO_GET_REQUEST, ApduTag.GLO_SET_REQUEST, ApduTag.GLO_ACTION_REQUEST})
DED_REQUESTS = frozenset({ApduTag.DED_GET_REQUEST, ApduTag.DED_SET_REQUEST, ApduTag.DED_ACTION_REQUEST})
CIPHERED_TAGS = frozenset(PLAIN_OF_GLO) | frozenset(PLAIN_OF_DED) | {
    ApduTag.GENERAL_GLO_CIPHERING, ApduTag.GENERAL_DED_CIPHERING, ApduTag.GENERAL_CIPHERING,
    ApduTag.GENERAL_SIGNING,
}


# -- ciphered APDU envelopes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A ciphered APDU taken apart: its tag, the sender's system title when it carries one, and the
    protected payload (SC || IC || ...)."""

    tag: int
    payload: bytes
    system_title: bytes | None = None

    @property
    def general(self) -> bool:
        return self.tag in (ApduTag.GENERAL_GLO_CIPHERING, ApduTag.GENERAL_DED_CIPHERING)

    @property
    def dedicated(self) -> bool:
        return self.tag in PLAIN_OF_DED or self.tag == ApduTag.GENERAL_DED_CIPHERING


def open_envelope(apdu: bytes) -> Envelope:
    """Parse a glo-/ded- service APDU or a general-glo/ded-ciphering APDU (IEC 62056-5-3; as Gurux and
    dlms-cosem parse it)."""
    try:
        r = Reader(apdu)
        tag = r.pull_u8()
        st = None
        if tag in (ApduTag.GENERAL_GLO_CIPHERING, ApduTag.GENERAL_DED_CIPHERING):
            n = r.pull_length()
            st = r.pull_bytes(n)
        elif tag not in PLAIN_OF_GLO and tag not in PLAIN_OF_DED:
            raise DecodeError(f"APDU tag {tag:#04x} is not a ciphered APDU this meter takes")
        payload = r.pull_bytes(r.pull_length())
        if not r.eof():
            raise DecodeError("trailing bytes after a ciphered APDU")
    except DecodeError as e:
        raise SecurityError(Failure.TRUNCATED, f"ciphered APDU does not decode: {e}") from None
    return Envelope(tag, payload, st)


def seal(tag: int, payload: bytes, system_title: bytes | None = None) -> bytes:
    """The ciphered APDU ``tag`` carrying ``payload`` (and, for general ciphering, the system title)."""
    head = bytes((tag,))
    if system_title is not None:
        head += encode_length(len(system_title)) + system_title
    return head + encode_length(len(payload)) + payload


# -- general-ciphering (0xDD), suites 0 to 2 ----------------------------------------------------------

IDENTIFIED_KEY, WRAPPED_KEY, AGREED_KEY = 0, 1, 2  # key-info CHOICE


@dataclass(frozen=True, slots=True)
class GeneralCiphering:
    """general-ciphering (IEC 62056-5-3 clause 8.3): who sends to whom, how the key is given, and the
    protected content (SC || IC || ... as for the other forms)."""

    transaction_id: bytes
    originator: bytes
    recipient: bytes
    date_time: bytes
    other_information: bytes
    key_info: tuple | None  # (IDENTIFIED_KEY, key_id) | (WRAPPED_KEY, kek_id, data) | (AGREED_KEY, params, data)
    content: bytes

    def aad_extra(self, suite: int) -> bytes:
        """What suites 1 and 2 add to the AAD after SC || AK: the APDU's addressing fields, each with
        its length (as gurux-dlms does; the Green Book text is not public: UNCONFIRMED)."""
        if suite == 0:
            return b""
        return b"".join(encode_length(len(f)) + f for f in (
            self.transaction_id, self.originator, self.recipient, self.date_time, self.other_information))

    def encode(self) -> bytes:
        out = bytearray((ApduTag.GENERAL_CIPHERING,))
        for f in (self.transaction_id, self.originator, self.recipient, self.date_time, self.other_information):
            out += encode_length(len(f)) + f
        if self.key_info is None:
            out.append(0)
        else:
            out += b"\x01" + bytes((self.key_info[0],))
            if self.key_info[0] == IDENTIFIED_KEY:
                out.append(self.key_info[1])
            else:
                first, data = self.key_info[1], self.key_info[2]
                out += (bytes((first,)) if self.key_info[0] == WRAPPED_KEY else encode_length(len(first)) + first)
                out += encode_length(len(data)) + data
        out += encode_length(len(self.content)) + self.content
        return bytes(out)


def parse_general_ciphering(apdu: bytes) -> GeneralCiphering:
    try:
        r = Reader(apdu)
        if r.pull_u8() != ApduTag.GENERAL_CIPHERING:
            raise DecodeError("not general-ciphering")
        fields = [r.pull_bytes(r.pull_length()) for _ in range(5)]
        key_info = None
        if r.pull_u8():
            choice = r.pull_u8()
            if choice == IDENTIFIED_KEY:
                key_info = (IDENTIFIED_KEY, r.pull_u8())
            elif choice == WRAPPED_KEY:
                kek_id = r.pull_u8()
                key_info = (WRAPPED_KEY, kek_id, r.pull_bytes(r.pull_length()))
            elif choice == AGREED_KEY:
                params = r.pull_bytes(r.pull_length())
                key_info = (AGREED_KEY, params, r.pull_bytes(r.pull_length()))
            else:
                raise DecodeError(f"key-info choice {choice}")
        content = r.pull_bytes(r.pull_length())
        if not r.eof():
            raise DecodeError("trailing bytes after general-ciphering")
    except DecodeError as e:
        raise SecurityError(Failure.TRUNCATED, f"general-ciphering does not decode: {e}") from None
    if len(fields[0]) != 8:
        raise SecurityError(Failure.TRUNCATED, "transaction-id must be 8 bytes")
    return GeneralCiphering(*fields, key_info, content)


# -- general-signing (0xDF), suites 1 and 2 ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeneralSigning:
    """general-signing: addressing fields, the content (an xDLMS APDU, usually glo-/ded- ciphered) and
    an ECDSA signature of everything after the tag up to the content, the content's own length left out
    (as gurux-dlms signs it; the Green Book text is not public - UNCONFIRMED)."""

    transaction_id: bytes
    originator: bytes
    recipient: bytes
    date_time: bytes
    other_information: bytes
    content: bytes
    signature: bytes = b""

    def signed_data(self) -> bytes:
        return b"".join(encode_length(len(f)) + f for f in (
            self.transaction_id, self.originator, self.recipient, self.date_time, self.other_information)
        ) + self.content

    def encode(self) -> bytes:
        head = bytes((ApduTag.GENERAL_SIGNING,)) + b"".join(encode_length(len(f)) + f for f in (
            self.transaction_id, self.originator, self.recipient, self.date_time, self.other_information))
        return (head + encode_length(len(self.content)) + self.content + encode_length(len(self.signature))
                + self.signature)


def parse_general_signing(apdu: bytes) -> GeneralSigning:
    try:
        r = Reader(apdu)
        if r.pull_u8() != ApduTag.GENERAL_SIGNING:
            raise DecodeError("not general-signing")
        fields = [r.pull_bytes(r.pull_length()) for _ in range(6)]
        signature = r.pull_bytes(r.pull_length())
        if not r.eof():
            raise DecodeError("trailing bytes after general-signing")
    except DecodeError as e:
        raise SecurityError(Failure.TRUNCATED, f"general-signing does not decode: {e}") from None
    return GeneralSigning(*fields, signature)


__all__ = [
    "AGREED_KEY", "CIPHERED_TAGS", "DED_OF", "DED_REQUESTS", "Envelope", "GLO_OF", "GLO_REQUESTS", "GeneralCiphering",
    "GeneralSigning", "IDENTIFIED_KEY", "PLAIN_OF_DED", "PLAIN_OF_GLO", "WRAPPED_KEY", "open_envelope",
    "parse_general_ciphering", "parse_general_signing", "seal",
]
