"""xDLMS APDUs for logical name referencing (IEC 62056-5-3 clause 8.3, COSEMpdu ASN.1 module).

All are A-XDR encoded. COSEM values inside them are kept as their encoded bytes (``data``,
``value``, ``parameters``): the APDU layer checks that a value is whole, and the layer that knows the
attribute decodes it. That keeps a response byte-exact and lets a meter send values it encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from meter_core.codec.apdu.codes import (
    ActionRequestChoice,
    ActionResponseChoice,
    ActionResult,
    ApduTag,
    Conformance,
    DataAccessResult,
    GetRequestChoice,
    GetResponseChoice,
    SetRequestChoice,
    SetResponseChoice,
)
from meter_core.codec.axdr import Reader, Writer, skip_data
from meter_core.codec.errors import (
    DecodeError,
    ExceptionServiceError,
    ExceptionStateError,
    LocalProtocolError,
)

# -- pieces shared by several APDUs -----------------------------------------------------------------


def _pull_enum(r: Reader, enum, what: str):
    v = r.pull_u8()
    try:
        return enum(v)
    except ValueError:
        raise DecodeError(f"unknown {what} {v}") from None


def _pull_bool(r: Reader) -> bool:
    return r.pull_u8() != 0


def _pull_data(r: Reader) -> bytes:
    """One whole encoded COSEM value, as bytes."""
    start = r.tell()
    skip_data(r)
    return r.slice_since(start)


def _pull_octets(r: Reader) -> bytes:
    return r.pull_bytes(r.pull_length())


def _push_octets(w: Writer, b: bytes) -> None:
    w.push_length(len(b))
    w.push_bytes(b)


def _pull_count(r: Reader, min_item_size: int) -> int:
    n = r.pull_length()
    if n * min_item_size > r.remaining():
        raise DecodeError(f"{n} items announced, {r.remaining()} bytes left")
    return n


@dataclass(frozen=True, slots=True)
class CosemAttributeDescriptor:
    """Cosem-Attribute-Descriptor: class id, instance id (6-byte logical name), attribute index."""

    class_id: int
    instance: bytes
    attribute_id: int

    def encode(self, w: Writer) -> None:
        w.push_u16(self.class_id)
        w.push_bytes(self.instance)
        w.push_i8(self.attribute_id)

    @classmethod
    def decode(cls, r: Reader) -> CosemAttributeDescriptor:
        return cls(r.pull_u16(), r.pull_bytes(6), r.pull_i8())


@dataclass(frozen=True, slots=True)
class CosemMethodDescriptor:
    """Cosem-Method-Descriptor: class id, instance id, method index."""

    class_id: int
    instance: bytes
    method_id: int

    def encode(self, w: Writer) -> None:
        w.push_u16(self.class_id)
        w.push_bytes(self.instance)
        w.push_i8(self.method_id)

    @classmethod
    def decode(cls, r: Reader) -> CosemMethodDescriptor:
        return cls(r.pull_u16(), r.pull_bytes(6), r.pull_i8())


@dataclass(frozen=True, slots=True)
class SelectiveAccess:
    """Selective-Access-Descriptor: access selector and its parameters (one encoded value)."""

    selector: int
    parameters: bytes


def _pull_selection(r: Reader) -> SelectiveAccess | None:
    if r.pull_u8() == 0:
        return None
    return SelectiveAccess(r.pull_u8(), _pull_data(r))


def _push_selection(w: Writer, s: SelectiveAccess | None) -> None:
    if s is None:
        w.push_u8(0)
    else:
        w.push_u8(1)
        w.push_u8(s.selector)
        w.push_bytes(s.parameters)


@dataclass(frozen=True, slots=True)
class AttributeWithSelection:
    """Cosem-Attribute-Descriptor-With-Selection (an item of a with-list request)."""

    attribute: CosemAttributeDescriptor
    access_selection: SelectiveAccess | None = None

    def encode(self, w: Writer) -> None:
        self.attribute.encode(w)
        _push_selection(w, self.access_selection)

    @classmethod
    def decode(cls, r: Reader) -> AttributeWithSelection:
        return cls(CosemAttributeDescriptor.decode(r), _pull_selection(r))


@dataclass(frozen=True, slots=True)
class DataBlock:
    """DataBlock-SA (and the raw-data form of DataBlock-G): last-block, block-number, raw-data."""

    last_block: bool
    block_number: int
    raw_data: bytes

    def encode(self, w: Writer) -> None:
        w.push_u8(1 if self.last_block else 0)
        w.push_u32(self.block_number)
        _push_octets(w, self.raw_data)

    @classmethod
    def decode(cls, r: Reader) -> DataBlock:
        return cls(_pull_bool(r), r.pull_u32(), _pull_octets(r))


# [APPLICATION 31] IMPLICIT BIT STRING (SIZE(24)), BER inside A-XDR: 5F 1F, length 04, 00 unused bits, 3 octets
_CONFORMANCE_TAG = b"\x5f\x1f"
_CONFORMANCE_HEAD = _CONFORMANCE_TAG + b"\x04\x00"


def _push_conformance(w: Writer, c: int) -> None:
    w.push_bytes(_CONFORMANCE_HEAD)
    w.push_bytes(c.to_bytes(3, "big"))


def _pull_conformance(r: Reader) -> Conformance:
    if r.pull_bytes(2) != _CONFORMANCE_TAG:
        raise DecodeError("conformance block tag is not 5F 1F")
    length = r.pull_u8()
    if length != 4:
        raise DecodeError(f"conformance block length {length}, expected 4")
    r.pull_u8()  # unused bits in the last octet: always 0 for SIZE(24)
    return Conformance(int.from_bytes(r.pull_bytes(3), "big"))


# -- initiate ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiateRequest:
    """InitiateRequest, carried in the AARQ user-information (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.INITIATE_REQUEST

    proposed_conformance: Conformance
    client_max_receive_pdu_size: int
    proposed_dlms_version_number: int = 6
    dedicated_key: bytes | None = None
    response_allowed: bool = True
    proposed_quality_of_service: int | None = None

    def encode(self, w: Writer) -> None:
        w.push_u8(self.TAG)
        if self.dedicated_key is None:
            w.push_u8(0)
        else:
            w.push_u8(1)
            _push_octets(w, self.dedicated_key)
        # response-allowed BOOLEAN DEFAULT TRUE: 00 = the default
        if self.response_allowed:
            w.push_u8(0)
        else:
            w.push_u8(1)
            w.push_u8(0)
        if self.proposed_quality_of_service is None:
            w.push_u8(0)
        else:
            w.push_u8(1)
            w.push_i8(self.proposed_quality_of_service)
        w.push_u8(self.proposed_dlms_version_number)
        _push_conformance(w, self.proposed_conformance)
        w.push_u16(self.client_max_receive_pdu_size)

    @classmethod
    def decode(cls, r: Reader) -> InitiateRequest:
        if r.pull_u8() != cls.TAG:
            raise DecodeError("not an InitiateRequest")
        dedicated_key = _pull_octets(r) if r.pull_u8() else None
        response_allowed = _pull_bool(r) if r.pull_u8() else True
        qos = r.pull_i8() if r.pull_u8() else None
        version = r.pull_u8()
        conformance = _pull_conformance(r)
        return cls(
            dedicated_key=dedicated_key,
            response_allowed=response_allowed,
            proposed_quality_of_service=qos,
            proposed_dlms_version_number=version,
            proposed_conformance=conformance,
            client_max_receive_pdu_size=r.pull_u16(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiateResponse:
    """InitiateResponse, carried in the AARE user-information (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.INITIATE_RESPONSE
    VAA_NAME_LN: ClassVar[int] = 0x0007

    negotiated_conformance: Conformance
    server_max_receive_pdu_size: int
    negotiated_dlms_version_number: int = 6
    negotiated_quality_of_service: int | None = None
    vaa_name: int = 0x0007

    def encode(self, w: Writer) -> None:
        w.push_u8(self.TAG)
        if self.negotiated_quality_of_service is None:
            w.push_u8(0)
        else:
            w.push_u8(1)
            w.push_i8(self.negotiated_quality_of_service)
        w.push_u8(self.negotiated_dlms_version_number)
        _push_conformance(w, self.negotiated_conformance)
        w.push_u16(self.server_max_receive_pdu_size)
        w.push_u16(self.vaa_name)

    @classmethod
    def decode(cls, r: Reader) -> InitiateResponse:
        if r.pull_u8() != cls.TAG:
            raise DecodeError("not an InitiateResponse")
        qos = r.pull_i8() if r.pull_u8() else None
        return cls(
            negotiated_quality_of_service=qos,
            negotiated_dlms_version_number=r.pull_u8(),
            negotiated_conformance=_pull_conformance(r),
            server_max_receive_pdu_size=r.pull_u16(),
            vaa_name=r.pull_u16(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfirmedServiceError:
    """ConfirmedServiceError (IEC 62056-5-3 clause 8.3): which service failed, and why.

    ``service`` is a ConfirmedServiceErrorChoice, ``error_type`` a ServiceErrorType, ``value`` the
    enumerated reason within that type (an InitiateError for initiate errors).
    """

    TAG: ClassVar[int] = ApduTag.CONFIRMED_SERVICE_ERROR

    service: int
    error_type: int
    value: int

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.service, self.error_type, self.value)))

    @classmethod
    def decode(cls, r: Reader) -> ConfirmedServiceError:
        if r.pull_u8() != cls.TAG:
            raise DecodeError("not a ConfirmedServiceError")
        return cls(service=r.pull_u8(), error_type=r.pull_u8(), value=r.pull_u8())


@dataclass(frozen=True, slots=True, kw_only=True)
class ExceptionResponse:
    """ExceptionResponse (IEC 62056-5-3 clause 8.3): the answer to an APDU the server cannot serve.

    ``invocation_counter`` follows the service error when that is invocation-counter-error.
    """

    TAG: ClassVar[int] = ApduTag.EXCEPTION_RESPONSE

    state_error: ExceptionStateError
    service_error: ExceptionServiceError
    invocation_counter: int | None = None

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.state_error, self.service_error)))
        if self.service_error == ExceptionServiceError.INVOCATION_COUNTER_ERROR:
            w.push_u32(self.invocation_counter or 0)

    @classmethod
    def decode(cls, r: Reader) -> ExceptionResponse:
        if r.pull_u8() != cls.TAG:
            raise DecodeError("not an ExceptionResponse")
        state = _pull_enum(r, ExceptionStateError, "state-error")
        service = _pull_enum(r, ExceptionServiceError, "service-error")
        counter = r.pull_u32() if service == ExceptionServiceError.INVOCATION_COUNTER_ERROR else None
        return cls(state_error=state, service_error=service, invocation_counter=counter)


# -- GET --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GetRequestNormal:
    """Get-Request-Normal (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.GET_REQUEST
    CHOICE: ClassVar[int] = GetRequestChoice.NORMAL

    invoke_id_and_priority: int
    attribute: CosemAttributeDescriptor
    access_selection: SelectiveAccess | None = None

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        self.attribute.encode(w)
        _push_selection(w, self.access_selection)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> GetRequestNormal:
        return cls(
            invoke_id_and_priority=iip,
            attribute=CosemAttributeDescriptor.decode(r),
            access_selection=_pull_selection(r),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GetRequestNext:
    """Get-Request-Next: ask for the block after ``block_number`` (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.GET_REQUEST
    CHOICE: ClassVar[int] = GetRequestChoice.NEXT

    invoke_id_and_priority: int
    block_number: int

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_u32(self.block_number)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> GetRequestNext:
        return cls(invoke_id_and_priority=iip, block_number=r.pull_u32())


@dataclass(frozen=True, slots=True, kw_only=True)
class GetRequestWithList:
    """Get-Request-With-List (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.GET_REQUEST
    CHOICE: ClassVar[int] = GetRequestChoice.WITH_LIST

    invoke_id_and_priority: int
    attributes: tuple[AttributeWithSelection, ...]

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_length(len(self.attributes))
        for a in self.attributes:
            a.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> GetRequestWithList:
        n = _pull_count(r, 10)
        return cls(
            invoke_id_and_priority=iip,
            attributes=tuple(AttributeWithSelection.decode(r) for _ in range(n)),
        )


def _push_get_data_result(w: Writer, data: bytes | None, error: DataAccessResult | None) -> None:
    if error is None:
        w.push_u8(0)
        w.push_bytes(data)
    else:
        w.push_u8(1)
        w.push_u8(error)


def _pull_get_data_result(r: Reader) -> tuple[bytes | None, DataAccessResult | None]:
    if r.pull_u8() == 0:
        return _pull_data(r), None
    return None, _pull_enum(r, DataAccessResult, "data-access-result")


def _check_result(data, error, name: str) -> None:
    if (data is None) == (error is None):
        raise LocalProtocolError(f"{name}: give exactly one of data and error")


@dataclass(frozen=True, slots=True, kw_only=True)
class GetResponseNormal:
    """Get-Response-Normal: one encoded value, or a data-access-result (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.GET_RESPONSE
    CHOICE: ClassVar[int] = GetResponseChoice.NORMAL

    invoke_id_and_priority: int
    data: bytes | None = None
    error: DataAccessResult | None = None

    def __post_init__(self) -> None:
        _check_result(self.data, self.error, "GetResponseNormal")

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        _push_get_data_result(w, self.data, self.error)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> GetResponseNormal:
        data, error = _pull_get_data_result(r)
        return cls(invoke_id_and_priority=iip, data=data, error=error)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetResponseWithDatablock:
    """Get-Response-With-Datablock: one block of a long response (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.GET_RESPONSE
    CHOICE: ClassVar[int] = GetResponseChoice.WITH_DATABLOCK

    invoke_id_and_priority: int
    last_block: bool
    block_number: int
    raw_data: bytes | None = None
    error: DataAccessResult | None = None

    def __post_init__(self) -> None:
        _check_result(self.raw_data, self.error, "GetResponseWithDatablock")

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority, 1 if self.last_block else 0)))
        w.push_u32(self.block_number)
        if self.error is None:
            w.push_u8(0)
            _push_octets(w, self.raw_data)
        else:
            w.push_u8(1)
            w.push_u8(self.error)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> GetResponseWithDatablock:
        last, number = _pull_bool(r), r.pull_u32()
        if r.pull_u8() == 0:
            return cls(invoke_id_and_priority=iip, last_block=last, block_number=number, raw_data=_pull_octets(r))
        error = _pull_enum(r, DataAccessResult, "data-access-result")
        return cls(invoke_id_and_priority=iip, last_block=last, block_number=number, error=error)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetResponseWithList:
    """Get-Response-With-List: one result per requested attribute (IEC 62056-5-3 clause 8.3).

    Each result is the encoded value (bytes) or a DataAccessResult.
    """

    TAG: ClassVar[int] = ApduTag.GET_RESPONSE
    CHOICE: ClassVar[int] = GetResponseChoice.WITH_LIST

    invoke_id_and_priority: int
    results: tuple[bytes | DataAccessResult, ...]

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_length(len(self.results))
        for res in self.results:
            if isinstance(res, DataAccessResult):
                _push_get_data_result(w, None, res)
            else:
                _push_get_data_result(w, res, None)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> GetResponseWithList:
        n = _pull_count(r, 2)
        results = []
        for _ in range(n):
            data, error = _pull_get_data_result(r)
            results.append(error if data is None else data)
        return cls(invoke_id_and_priority=iip, results=tuple(results))


# -- SET --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRequestNormal:
    """Set-Request-Normal (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_REQUEST
    CHOICE: ClassVar[int] = SetRequestChoice.NORMAL

    invoke_id_and_priority: int
    attribute: CosemAttributeDescriptor
    value: bytes
    access_selection: SelectiveAccess | None = None

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        self.attribute.encode(w)
        _push_selection(w, self.access_selection)
        w.push_bytes(self.value)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetRequestNormal:
        attribute = CosemAttributeDescriptor.decode(r)
        selection = _pull_selection(r)
        return cls(invoke_id_and_priority=iip, attribute=attribute, access_selection=selection, value=_pull_data(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRequestWithFirstDatablock:
    """Set-Request-With-First-Datablock (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_REQUEST
    CHOICE: ClassVar[int] = SetRequestChoice.WITH_FIRST_DATABLOCK

    invoke_id_and_priority: int
    attribute: CosemAttributeDescriptor
    block: DataBlock
    access_selection: SelectiveAccess | None = None

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        self.attribute.encode(w)
        _push_selection(w, self.access_selection)
        self.block.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetRequestWithFirstDatablock:
        attribute = CosemAttributeDescriptor.decode(r)
        selection = _pull_selection(r)
        return cls(invoke_id_and_priority=iip, attribute=attribute, access_selection=selection,
                   block=DataBlock.decode(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRequestWithDatablock:
    """Set-Request-With-Datablock: a following block of a long SET (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_REQUEST
    CHOICE: ClassVar[int] = SetRequestChoice.WITH_DATABLOCK

    invoke_id_and_priority: int
    block: DataBlock

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        self.block.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetRequestWithDatablock:
        return cls(invoke_id_and_priority=iip, block=DataBlock.decode(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRequestWithList:
    """Set-Request-With-List (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_REQUEST
    CHOICE: ClassVar[int] = SetRequestChoice.WITH_LIST

    invoke_id_and_priority: int
    attributes: tuple[AttributeWithSelection, ...]
    values: tuple[bytes, ...]

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_length(len(self.attributes))
        for a in self.attributes:
            a.encode(w)
        w.push_length(len(self.values))
        for v in self.values:
            w.push_bytes(v)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetRequestWithList:
        attributes = tuple(AttributeWithSelection.decode(r) for _ in range(_pull_count(r, 10)))
        values = tuple(_pull_data(r) for _ in range(_pull_count(r, 1)))
        return cls(invoke_id_and_priority=iip, attributes=attributes, values=values)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRequestWithListAndFirstDatablock:
    """Set-Request-With-List-And-First-Datablock (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_REQUEST
    CHOICE: ClassVar[int] = SetRequestChoice.WITH_LIST_AND_FIRST_DATABLOCK

    invoke_id_and_priority: int
    attributes: tuple[AttributeWithSelection, ...]
    block: DataBlock

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_length(len(self.attributes))
        for a in self.attributes:
            a.encode(w)
        self.block.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetRequestWithListAndFirstDatablock:
        attributes = tuple(AttributeWithSelection.decode(r) for _ in range(_pull_count(r, 10)))
        return cls(invoke_id_and_priority=iip, attributes=attributes, block=DataBlock.decode(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class SetResponseNormal:
    """Set-Response-Normal (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_RESPONSE
    CHOICE: ClassVar[int] = SetResponseChoice.NORMAL

    invoke_id_and_priority: int
    result: DataAccessResult

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority, self.result)))

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetResponseNormal:
        return cls(invoke_id_and_priority=iip, result=_pull_enum(r, DataAccessResult, "data-access-result"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SetResponseDatablock:
    """Set-Response-Datablock: block ``block_number`` received (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_RESPONSE
    CHOICE: ClassVar[int] = SetResponseChoice.DATABLOCK

    invoke_id_and_priority: int
    block_number: int

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_u32(self.block_number)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetResponseDatablock:
        return cls(invoke_id_and_priority=iip, block_number=r.pull_u32())


@dataclass(frozen=True, slots=True, kw_only=True)
class SetResponseLastDatablock:
    """Set-Response-Last-Datablock (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_RESPONSE
    CHOICE: ClassVar[int] = SetResponseChoice.LAST_DATABLOCK

    invoke_id_and_priority: int
    result: DataAccessResult
    block_number: int

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority, self.result)))
        w.push_u32(self.block_number)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetResponseLastDatablock:
        result = _pull_enum(r, DataAccessResult, "data-access-result")
        return cls(invoke_id_and_priority=iip, result=result, block_number=r.pull_u32())


@dataclass(frozen=True, slots=True, kw_only=True)
class SetResponseLastDatablockWithList:
    """Set-Response-Last-Datablock-With-List (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_RESPONSE
    CHOICE: ClassVar[int] = SetResponseChoice.LAST_DATABLOCK_WITH_LIST

    invoke_id_and_priority: int
    results: tuple[DataAccessResult, ...]
    block_number: int

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_length(len(self.results))
        w.push_bytes(bytes(self.results))
        w.push_u32(self.block_number)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetResponseLastDatablockWithList:
        n = _pull_count(r, 1)
        results = tuple(_pull_enum(r, DataAccessResult, "data-access-result") for _ in range(n))
        return cls(invoke_id_and_priority=iip, results=results, block_number=r.pull_u32())


@dataclass(frozen=True, slots=True, kw_only=True)
class SetResponseWithList:
    """Set-Response-With-List (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.SET_RESPONSE
    CHOICE: ClassVar[int] = SetResponseChoice.WITH_LIST

    invoke_id_and_priority: int
    results: tuple[DataAccessResult, ...]

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_length(len(self.results))
        w.push_bytes(bytes(self.results))

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> SetResponseWithList:
        n = _pull_count(r, 1)
        return cls(
            invoke_id_and_priority=iip,
            results=tuple(_pull_enum(r, DataAccessResult, "data-access-result") for _ in range(n)),
        )


# -- ACTION -----------------------------------------------------------------------------------------


def _pull_optional_data(r: Reader) -> bytes | None:
    return _pull_data(r) if r.pull_u8() else None


def _push_optional_data(w: Writer, data: bytes | None) -> None:
    if data is None:
        w.push_u8(0)
    else:
        w.push_u8(1)
        w.push_bytes(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequestNormal:
    """Action-Request-Normal (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_REQUEST
    CHOICE: ClassVar[int] = ActionRequestChoice.NORMAL

    invoke_id_and_priority: int
    method: CosemMethodDescriptor
    parameters: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        self.method.encode(w)
        _push_optional_data(w, self.parameters)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionRequestNormal:
        method = CosemMethodDescriptor.decode(r)
        return cls(invoke_id_and_priority=iip, method=method, parameters=_pull_optional_data(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequestNextPblock:
    """Action-Request-Next-Pblock (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_REQUEST
    CHOICE: ClassVar[int] = ActionRequestChoice.NEXT_PBLOCK

    invoke_id_and_priority: int
    block_number: int

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_u32(self.block_number)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionRequestNextPblock:
        return cls(invoke_id_and_priority=iip, block_number=r.pull_u32())


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequestWithList:
    """Action-Request-With-List (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_REQUEST
    CHOICE: ClassVar[int] = ActionRequestChoice.WITH_LIST

    invoke_id_and_priority: int
    methods: tuple[CosemMethodDescriptor, ...]
    parameters: tuple[bytes, ...]

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_length(len(self.methods))
        for m in self.methods:
            m.encode(w)
        w.push_length(len(self.parameters))
        for p in self.parameters:
            w.push_bytes(p)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionRequestWithList:
        methods = tuple(CosemMethodDescriptor.decode(r) for _ in range(_pull_count(r, 9)))
        parameters = tuple(_pull_data(r) for _ in range(_pull_count(r, 1)))
        return cls(invoke_id_and_priority=iip, methods=methods, parameters=parameters)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequestWithFirstPblock:
    """Action-Request-With-First-Pblock (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_REQUEST
    CHOICE: ClassVar[int] = ActionRequestChoice.WITH_FIRST_PBLOCK

    invoke_id_and_priority: int
    method: CosemMethodDescriptor
    block: DataBlock

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        self.method.encode(w)
        self.block.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionRequestWithFirstPblock:
        method = CosemMethodDescriptor.decode(r)
        return cls(invoke_id_and_priority=iip, method=method, block=DataBlock.decode(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequestWithListAndFirstPblock:
    """Action-Request-With-List-And-First-Pblock (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_REQUEST
    CHOICE: ClassVar[int] = ActionRequestChoice.WITH_LIST_AND_FIRST_PBLOCK

    invoke_id_and_priority: int
    methods: tuple[CosemMethodDescriptor, ...]
    block: DataBlock

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_length(len(self.methods))
        for m in self.methods:
            m.encode(w)
        self.block.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionRequestWithListAndFirstPblock:
        methods = tuple(CosemMethodDescriptor.decode(r) for _ in range(_pull_count(r, 9)))
        return cls(invoke_id_and_priority=iip, methods=methods, block=DataBlock.decode(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequestWithPblock:
    """Action-Request-With-Pblock: a following block of long parameters (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_REQUEST
    CHOICE: ClassVar[int] = ActionRequestChoice.WITH_PBLOCK

    invoke_id_and_priority: int
    block: DataBlock

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        self.block.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionRequestWithPblock:
        return cls(invoke_id_and_priority=iip, block=DataBlock.decode(r))


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """Action-Response-With-Optional-Data: a result and optional return data or data-access-result."""

    result: ActionResult
    return_data: bytes | None = None
    return_error: DataAccessResult | None = None

    def encode(self, w: Writer) -> None:
        w.push_u8(self.result)
        if self.return_data is None and self.return_error is None:
            w.push_u8(0)
        else:
            w.push_u8(1)
            _push_get_data_result(w, self.return_data, self.return_error)

    @classmethod
    def decode(cls, r: Reader) -> ActionOutcome:
        result = _pull_enum(r, ActionResult, "action-result")
        if r.pull_u8() == 0:
            return cls(result)
        data, error = _pull_get_data_result(r)
        return cls(result, data, error)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionResponseNormal:
    """Action-Response-Normal (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_RESPONSE
    CHOICE: ClassVar[int] = ActionResponseChoice.NORMAL

    invoke_id_and_priority: int
    outcome: ActionOutcome

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        self.outcome.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionResponseNormal:
        return cls(invoke_id_and_priority=iip, outcome=ActionOutcome.decode(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionResponseWithPblock:
    """Action-Response-With-Pblock (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_RESPONSE
    CHOICE: ClassVar[int] = ActionResponseChoice.WITH_PBLOCK

    invoke_id_and_priority: int
    block: DataBlock

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        self.block.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionResponseWithPblock:
        return cls(invoke_id_and_priority=iip, block=DataBlock.decode(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionResponseWithList:
    """Action-Response-With-List (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_RESPONSE
    CHOICE: ClassVar[int] = ActionResponseChoice.WITH_LIST

    invoke_id_and_priority: int
    outcomes: tuple[ActionOutcome, ...]

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_length(len(self.outcomes))
        for o in self.outcomes:
            o.encode(w)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionResponseWithList:
        n = _pull_count(r, 2)
        return cls(invoke_id_and_priority=iip, outcomes=tuple(ActionOutcome.decode(r) for _ in range(n)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionResponseNextPblock:
    """Action-Response-Next-Pblock (IEC 62056-5-3 clause 8.3)."""

    TAG: ClassVar[int] = ApduTag.ACTION_RESPONSE
    CHOICE: ClassVar[int] = ActionResponseChoice.NEXT_PBLOCK

    invoke_id_and_priority: int
    block_number: int

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)))
        w.push_u32(self.block_number)

    @classmethod
    def decode_body(cls, r: Reader, iip: int) -> ActionResponseNextPblock:
        return cls(invoke_id_and_priority=iip, block_number=r.pull_u32())


# -- push -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DataNotification:
    """Data-Notification, the push APDU (IEC 62056-5-3 clause 8.3).

    ``date_time`` is the 12-byte date-time or None; ``body`` one encoded value.
    """

    TAG: ClassVar[int] = ApduTag.DATA_NOTIFICATION

    long_invoke_id_and_priority: int
    body: bytes
    date_time: bytes | None = None

    def encode(self, w: Writer) -> None:
        _push_notification_head(w, self.TAG, self.long_invoke_id_and_priority, self.date_time)
        w.push_bytes(self.body)

    @classmethod
    def decode(cls, r: Reader) -> DataNotification:
        iip, date_time = _pull_notification_head(r, cls.TAG, "data-notification")
        return cls(long_invoke_id_and_priority=iip, date_time=date_time, body=_pull_data(r))


def _push_notification_head(w: Writer, tag: int, iip: int, date_time: bytes | None) -> None:
    """Tag, long-invoke-id-and-priority and the optional 12-byte date-time of a (confirm of a) push."""
    w.push_u8(tag)
    w.push_u32(iip)
    if date_time is None:
        w.push_u8(0)
    else:
        _push_octets(w, date_time)


def _pull_notification_head(r: Reader, tag: int, what: str) -> tuple[int, bytes | None]:
    if r.pull_u8() != tag:
        raise DecodeError(f"not a {what}")
    iip = r.pull_u32()
    n = r.pull_u8()
    if n not in (0, 12):
        raise DecodeError(f"{what} date-time of {n} bytes")
    return iip, (r.pull_bytes(12) if n else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataNotificationConfirm:
    """Data-Notification-Confirm [16]: a head-end's confirmation of a confirmed push (push setup v2,
    push_operation_method 2): the push's long-invoke-id-and-priority and, optionally, a date-time.
    Encoded as the Data-Notification's first two fields (IEC 62056-5-3; layout UNCONFIRMED against the
    Green Book)."""

    TAG: ClassVar[int] = ApduTag.DATA_NOTIFICATION_CONFIRM

    long_invoke_id_and_priority: int
    date_time: bytes | None = None

    def encode(self, w: Writer) -> None:
        _push_notification_head(w, self.TAG, self.long_invoke_id_and_priority, self.date_time)

    @classmethod
    def decode(cls, r: Reader) -> DataNotificationConfirm:
        iip, date_time = _pull_notification_head(r, cls.TAG, "data-notification-confirm")
        return cls(long_invoke_id_and_priority=iip, date_time=date_time)


# -- one table from (tag, choice) to type --------------------------------------------------------

CHOICE_TYPES: dict[tuple[int, int], type] = {
    (t.TAG, t.CHOICE): t
    for t in (
        GetRequestNormal, GetRequestNext, GetRequestWithList,
        GetResponseNormal, GetResponseWithDatablock, GetResponseWithList,
        SetRequestNormal, SetRequestWithFirstDatablock, SetRequestWithDatablock, SetRequestWithList,
        SetRequestWithListAndFirstDatablock,
        SetResponseNormal, SetResponseDatablock, SetResponseLastDatablock, SetResponseLastDatablockWithList,
        SetResponseWithList,
        ActionRequestNormal, ActionRequestNextPblock, ActionRequestWithList, ActionRequestWithFirstPblock,
        ActionRequestWithListAndFirstPblock, ActionRequestWithPblock,
        ActionResponseNormal, ActionResponseWithPblock, ActionResponseWithList, ActionResponseNextPblock,
    )
}
