"""Hypothesis strategies for COSEM data and APDUs (one per wire type)."""

from __future__ import annotations

from hypothesis import strategies as st

from meter_core.codec.apdu import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    ActionOutcome,
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
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
    ResultSourceDiagnostic,
    SelectiveAccess,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
    SetResponseWithList,
)
from meter_core.codec.apdu.codes import ActionResult, Conformance, DataAccessResult
from meter_core.codec.axdr import BitString, CosemDateTime, Data, DataType, data_to_bytes
from meter_core.codec.errors import ExceptionServiceError, ExceptionStateError

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
i8 = st.integers(-128, 127)

_INT_RANGES = {
    DataType.DOUBLE_LONG: (-(2**31), 2**31 - 1),
    DataType.DOUBLE_LONG_UNSIGNED: (0, 2**32 - 1),
    DataType.INTEGER: (-128, 127),
    DataType.LONG: (-(2**15), 2**15 - 1),
    DataType.UNSIGNED: (0, 255),
    DataType.LONG_UNSIGNED: (0, 0xFFFF),
    DataType.LONG64: (-(2**63), 2**63 - 1),
    DataType.LONG64_UNSIGNED: (0, 2**64 - 1),
    DataType.ENUM: (0, 255),
    DataType.BCD: (0, 255),
}


def _bitstrings():
    return st.integers(0, 64).flatmap(
        lambda n: st.binary(min_size=(n + 7) // 8, max_size=(n + 7) // 8).map(lambda b: BitString(n, b))
    )


def _datetimes():
    return st.builds(
        CosemDateTime, u16, u8, u8, u8, u8, u8, u8, u8, st.integers(-0x8000, 0x7FFF), u8
    )


def scalar_data():
    ints = [st.integers(lo, hi).map(lambda v, t=t: Data(t, v)) for t, (lo, hi) in _INT_RANGES.items()]
    return st.one_of(
        *ints,
        st.just(Data(DataType.NULL_DATA, None)),
        st.booleans().map(lambda v: Data(DataType.BOOLEAN, v)),
        st.binary(max_size=40).map(lambda v: Data(DataType.OCTET_STRING, v)),
        st.text(st.characters(max_codepoint=255), max_size=20).map(lambda v: Data(DataType.VISIBLE_STRING, v)),
        st.text(max_size=20).map(lambda v: Data(DataType.UTF8_STRING, v)),
        _bitstrings().map(lambda v: Data(DataType.BIT_STRING, v)),
        st.floats(width=32, allow_nan=False).map(lambda v: Data(DataType.FLOAT32, v)),
        st.floats(allow_nan=False).map(lambda v: Data(DataType.FLOAT64, v)),
        _datetimes().map(lambda v: Data(DataType.DATE_TIME, v)),
        st.binary(min_size=5, max_size=5).map(lambda v: Data(DataType.DATE, v)),
        st.binary(min_size=4, max_size=4).map(lambda v: Data(DataType.TIME, v)),
    )


def data_values():
    """Any COSEM value, nested a few levels."""
    return st.recursive(
        scalar_data(),
        lambda children: st.one_of(
            st.lists(children, max_size=5).map(lambda v: Data(DataType.STRUCTURE, tuple(v))),
            st.lists(children, max_size=5).map(lambda v: Data(DataType.ARRAY, tuple(v))),
        ),
        max_leaves=12,
    )


encoded = data_values().map(data_to_bytes)
ln6 = st.binary(min_size=6, max_size=6)
attrs = st.builds(CosemAttributeDescriptor, u16, ln6, i8)
methods = st.builds(CosemMethodDescriptor, u16, ln6, i8)
selections = st.none() | st.builds(SelectiveAccess, u8, encoded)
blocks = st.builds(DataBlock, st.booleans(), u32, st.binary(max_size=60))
dars = st.sampled_from(DataAccessResult)
oid_ctx = st.sampled_from([bytes.fromhex("60857405080101"), bytes.fromhex("60857405080103")])
mech = st.none() | st.sampled_from([bytes.fromhex("60857405080201"), bytes.fromhex("60857405080205")])
opt_octets = st.none() | st.binary(max_size=40)


def _result(data_or_error):
    return data_or_error


def apdus():
    """One of every APDU type meter_core encodes."""
    get_result = st.one_of(encoded, dars)
    return st.one_of(
        st.builds(AARQ, application_context_name=oid_ctx, calling_ap_title=opt_octets,
                  sender_acse_requirements=st.none() | st.just(b"\x07\x80"), mechanism_name=mech,
                  calling_authentication_value=opt_octets, user_information=opt_octets),
        st.builds(AARE, application_context_name=oid_ctx, result=st.integers(0, 2),
                  result_source_diagnostic=st.builds(ResultSourceDiagnostic, st.integers(1, 2), st.integers(0, 14)),
                  responding_ap_title=opt_octets, responding_authentication_value=opt_octets,
                  user_information=opt_octets),
        st.builds(RLRQ, reason=st.none() | st.just(b"\x00"), user_information=opt_octets),
        st.builds(RLRE, reason=st.none() | st.just(b"\x00"), user_information=opt_octets),
        st.builds(InitiateRequest, proposed_conformance=st.integers(0, 2**24 - 1).map(Conformance),
                  client_max_receive_pdu_size=u16, proposed_dlms_version_number=u8,
                  dedicated_key=opt_octets, response_allowed=st.booleans(),
                  proposed_quality_of_service=st.none() | i8),
        st.builds(InitiateResponse, negotiated_conformance=st.integers(0, 2**24 - 1).map(Conformance),
                  server_max_receive_pdu_size=u16, negotiated_dlms_version_number=u8,
                  negotiated_quality_of_service=st.none() | i8, vaa_name=u16),
        st.builds(ConfirmedServiceError, service=u8, error_type=u8, value=u8),
        st.builds(ExceptionResponse, state_error=st.sampled_from(ExceptionStateError),
                  service_error=st.sampled_from(ExceptionServiceError)).map(
            lambda e: e if e.service_error != ExceptionServiceError.INVOCATION_COUNTER_ERROR else
            ExceptionResponse(state_error=e.state_error, service_error=e.service_error, invocation_counter=7)),
        st.builds(GetRequestNormal, invoke_id_and_priority=u8, attribute=attrs, access_selection=selections),
        st.builds(GetRequestNext, invoke_id_and_priority=u8, block_number=u32),
        st.builds(GetRequestWithList, invoke_id_and_priority=u8,
                  attributes=st.lists(st.builds(AttributeWithSelection, attrs, selections), max_size=4).map(tuple)),
        st.one_of(
            st.builds(GetResponseNormal, invoke_id_and_priority=u8, data=encoded),
            st.builds(GetResponseNormal, invoke_id_and_priority=u8, error=dars),
        ),
        st.one_of(
            st.builds(GetResponseWithDatablock, invoke_id_and_priority=u8, last_block=st.booleans(),
                      block_number=u32, raw_data=st.binary(max_size=50)),
            st.builds(GetResponseWithDatablock, invoke_id_and_priority=u8, last_block=st.booleans(),
                      block_number=u32, error=dars),
        ),
        st.builds(GetResponseWithList, invoke_id_and_priority=u8,
                  results=st.lists(get_result, max_size=4).map(tuple)),
        st.builds(SetRequestNormal, invoke_id_and_priority=u8, attribute=attrs, value=encoded,
                  access_selection=selections),
        st.builds(SetRequestWithFirstDatablock, invoke_id_and_priority=u8, attribute=attrs, block=blocks,
                  access_selection=selections),
        st.builds(SetRequestWithDatablock, invoke_id_and_priority=u8, block=blocks),
        st.lists(st.tuples(st.builds(AttributeWithSelection, attrs, selections), encoded), max_size=3).map(
            lambda items: SetRequestWithList(invoke_id_and_priority=0xC1, attributes=tuple(a for a, _ in items),
                                             values=tuple(v for _, v in items))),
        st.builds(SetResponseNormal, invoke_id_and_priority=u8, result=dars),
        st.builds(SetResponseDatablock, invoke_id_and_priority=u8, block_number=u32),
        st.builds(SetResponseLastDatablock, invoke_id_and_priority=u8, result=dars, block_number=u32),
        st.builds(SetResponseWithList, invoke_id_and_priority=u8, results=st.lists(dars, max_size=4).map(tuple)),
        st.builds(ActionRequestNormal, invoke_id_and_priority=u8, method=methods, parameters=st.none() | encoded),
        st.builds(ActionRequestNextPblock, invoke_id_and_priority=u8, block_number=u32),
        st.lists(st.tuples(methods, encoded), max_size=3).map(
            lambda items: ActionRequestWithList(invoke_id_and_priority=0xC1, methods=tuple(m for m, _ in items),
                                                parameters=tuple(p for _, p in items))),
        st.builds(ActionRequestWithFirstPblock, invoke_id_and_priority=u8, method=methods, block=blocks),
        st.builds(ActionRequestWithPblock, invoke_id_and_priority=u8, block=blocks),
        st.builds(ActionResponseNormal, invoke_id_and_priority=u8, outcome=st.one_of(
            st.builds(ActionOutcome, st.sampled_from(ActionResult)),
            st.builds(ActionOutcome, st.sampled_from(ActionResult), encoded),
            st.builds(ActionOutcome, st.sampled_from(ActionResult), st.none(), dars),
        )),
        st.builds(ActionResponseWithPblock, invoke_id_and_priority=u8, block=blocks),
        st.builds(ActionResponseWithList, invoke_id_and_priority=u8,
                  outcomes=st.lists(st.builds(ActionOutcome, st.sampled_from(ActionResult)), max_size=3).map(tuple)),
        st.builds(ActionResponseNextPblock, invoke_id_and_priority=u8, block_number=u32),
        st.builds(DataNotificationConfirm, long_invoke_id_and_priority=u32,
                  date_time=st.none() | st.binary(min_size=12, max_size=12)),
        st.builds(DataNotification, long_invoke_id_and_priority=u32, body=encoded,
                  date_time=st.none() | st.binary(min_size=12, max_size=12)),
    )
