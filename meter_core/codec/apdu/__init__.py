"""ACSE and xDLMS APDUs, and the one table from tag to type (IEC 62056-5-3 clause 8)."""

from __future__ import annotations

from meter_core.codec.apdu.acse import AARE, AARQ, RLRE, RLRQ, ResultSourceDiagnostic
from meter_core.codec.apdu.codes import ApduTag
from meter_core.codec.apdu.xdlms import (
    CHOICE_TYPES,
    ActionOutcome,
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
    ActionRequestWithListAndFirstPblock,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithList,
    ActionResponseWithPblock,
    AttributeWithSelection,
    ConfirmedServiceError,
    CosemAttributeDescriptor,
    CosemMethodDescriptor,
    DataBlock,
    DataNotification,
    DataNotificationConfirm,
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
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    SetRequestWithListAndFirstDatablock,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseLastDatablockWithList,
    SetResponseNormal,
    SetResponseWithList,
)
from meter_core.codec.axdr import Reader, Writer
from meter_core.codec.errors import DecodeError

# APDUs whose second byte selects the type (the service CHOICE); the third is invoke-id-and-priority.
_CHOICE_TAGS = frozenset(
    (
        ApduTag.GET_REQUEST, ApduTag.SET_REQUEST, ApduTag.ACTION_REQUEST,
        ApduTag.GET_RESPONSE, ApduTag.SET_RESPONSE, ApduTag.ACTION_RESPONSE,
    )
)

# APDUs identified by their tag alone.
TAG_TYPES: dict[int, type] = {
    t.TAG: t
    for t in (
        AARQ, AARE, RLRQ, RLRE,
        InitiateRequest, InitiateResponse, ConfirmedServiceError, ExceptionResponse, DataNotification,
        DataNotificationConfirm,
    )
}


def decode_apdu(data: bytes | bytearray | memoryview):
    """Decode one whole APDU; an unknown tag or choice, or trailing bytes, raise `DecodeError`."""
    r = Reader(data)
    tag = r.peek_u8()
    if tag in _CHOICE_TAGS:
        r.skip(1)
        choice = r.pull_u8()
        cls = CHOICE_TYPES.get((tag, choice))
        if cls is None:
            raise DecodeError(f"unknown choice {choice} of APDU {ApduTag(tag).name}")
        apdu = cls.decode_body(r, r.pull_u8())
    else:
        cls = TAG_TYPES.get(tag)
        if cls is None:
            name = ApduTag(tag).name if tag in ApduTag._value2member_map_ else f"{tag:#04x}"
            raise DecodeError(f"APDU {name} is not supported")
        apdu = cls.decode(r)
    if not r.eof():
        raise DecodeError(f"{r.remaining()} trailing bytes after {type(apdu).__name__}")
    return apdu


def encode_apdu(apdu) -> bytes:
    """The bytes of one APDU."""
    w = Writer()
    apdu.encode(w)
    return w.getvalue()


__all__ = [
    "AARE", "AARQ", "RLRE", "RLRQ", "ResultSourceDiagnostic",
    "ActionOutcome", "ActionRequestNextPblock", "ActionRequestNormal", "ActionRequestWithFirstPblock",
    "ActionRequestWithList", "ActionRequestWithListAndFirstPblock", "ActionRequestWithPblock",
    "ActionResponseNextPblock", "ActionResponseNormal", "ActionResponseWithList", "ActionResponseWithPblock",
    "AttributeWithSelection", "ConfirmedServiceError", "CosemAttributeDescriptor", "CosemMethodDescriptor",
    "DataBlock", "DataNotification", "DataNotificationConfirm", "ExceptionResponse", "GetRequestNext", "GetRequestNormal",
    "GetRequestWithList", "GetResponseNormal", "GetResponseWithDatablock", "GetResponseWithList",
    "InitiateRequest", "InitiateResponse", "SelectiveAccess", "SetRequestNormal", "SetRequestWithDatablock",
    "SetRequestWithFirstDatablock", "SetRequestWithList", "SetRequestWithListAndFirstDatablock",
    "SetResponseDatablock", "SetResponseLastDatablock", "SetResponseLastDatablockWithList",
    "SetResponseNormal", "SetResponseWithList", "decode_apdu", "encode_apdu",
]
