"""APDU codecs: vectors from real meters and independent clients, round trips, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_core.codec.apdu import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    ActionRequestNormal,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    InitiateRequest,
    InitiateResponse,
    SetRequestNormal,
    decode_apdu,
    encode_apdu,
)
from meter_core.codec.apdu.codes import (
    ApplicationContextName,
    AuthenticationMechanism,
    Conformance,
    DataAccessResult,
)
from meter_core.codec.axdr import Reader, data_from_bytes
from meter_core.codec.errors import RemoteProtocolError
from meter_core.codec.obis import Obis
from tests.strategies import apdus
from tests.vectors import load_vectors

VECTORS = {v.name: v for v in load_vectors("apdu")}


@pytest.mark.parametrize("v", list(VECTORS.values()), ids=lambda v: v.name)
def test_vector_round_trip(v):
    apdu = decode_apdu(v.wire)
    assert encode_apdu(apdu) == v.wire


def test_real_meter_aarq_fields():
    aarq = decode_apdu(VECTORS["aarq-ln-no-auth"].wire)
    assert isinstance(aarq, AARQ)
    assert aarq.context is ApplicationContextName.LOGICAL_NAME
    assert aarq.mechanism_name is None
    initiate = InitiateRequest.decode(Reader(aarq.user_information))
    assert initiate.proposed_dlms_version_number == 6
    assert initiate.client_max_receive_pdu_size == 0xFFFF
    assert initiate.proposed_conformance == (
        Conformance.GENERAL_PROTECTION | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
        | Conformance.BLOCK_TRANSFER_WITH_SET_OR_WRITE | Conformance.BLOCK_TRANSFER_WITH_ACTION
        | Conformance.MULTIPLE_REFERENCES | Conformance.GET | Conformance.SET | Conformance.SELECTIVE_ACCESS
        | Conformance.ACTION
    )


def test_real_meter_aare_fields():
    aare = decode_apdu(VECTORS["aare-accepted-get-only-pdu-560"].wire)
    assert isinstance(aare, AARE)
    assert aare.result == 0 and aare.result_source_diagnostic == (1, 0)
    initiate = InitiateResponse.decode(Reader(aare.user_information))
    assert initiate.negotiated_conformance == Conformance.GET
    assert initiate.server_max_receive_pdu_size == 560
    assert initiate.vaa_name == 7


def test_real_meter_lls_aarq_fields():
    aarq = decode_apdu(VECTORS["aarq-lls-calling-ap-title-glo-initiate"].wire)
    assert aarq.context is ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING
    assert aarq.mechanism is AuthenticationMechanism.LOW
    assert aarq.authentication_requested
    assert aarq.calling_ap_title == b"HPL72998"
    assert aarq.calling_authentication_value == b"1" * 16
    assert aarq.user_information[0] == 0x21  # glo-initiateRequest, ciphered
    aare = decode_apdu(VECTORS["aare-responding-ap-title-glo-initiate-response"].wire)
    assert aare.responding_ap_title == bytes.fromhex("48504C000010F447")
    assert aare.user_information[0] == 0x28


def test_real_meter_get_fields():
    req = decode_apdu(VECTORS["get-request-ic-value"].wire)
    assert isinstance(req, GetRequestNormal)
    assert req.invoke_id_and_priority == 0xC1
    assert (req.attribute.class_id, Obis.from_bytes(req.attribute.instance), req.attribute.attribute_id) == (
        1, Obis(0, 0, 43, 1, 3, 255), 2)
    assert req.access_selection is None
    resp = decode_apdu(VECTORS["get-response-double-long-unsigned"].wire)
    assert isinstance(resp, GetResponseNormal)
    assert data_from_bytes(resp.data).value == 1715


# -- vectors produced at test time by the independent clients --------------------------------------

gurux = pytest.importorskip("gurux_dlms")


def _gurux_client(client_address=16, authentication=None, password=None):
    from gurux_dlms import GXDLMSClient
    from gurux_dlms.enums import Authentication, InterfaceType

    c = GXDLMSClient(True, client_address, 1, authentication or Authentication.NONE, password,
                     InterfaceType.WRAPPER)
    return c


def _payloads(frames) -> list[bytes]:
    # strip the 8-byte wrapper header gurux put in front (readList nests a list per message)
    out = []
    for f in frames:
        if isinstance(f, list):
            out += _payloads(f)
        else:
            out.append(bytes(f)[8:])
    return out


def test_gurux_aarq_lls_and_release():
    from gurux_dlms.enums import Authentication

    c = _gurux_client(32, Authentication.LOW, "12345678")
    (raw,) = _payloads(c.aarqRequest())
    aarq = decode_apdu(raw)
    assert isinstance(aarq, AARQ)
    assert encode_apdu(aarq) == raw
    assert aarq.mechanism is AuthenticationMechanism.LOW
    assert aarq.calling_authentication_value == b"12345678"
    initiate = InitiateRequest.decode(Reader(aarq.user_information))
    assert initiate.client_max_receive_pdu_size == c.getMaxReceivePDUSize()
    from gurux_dlms.ConnectionState import ConnectionState

    c.settings.connected |= ConnectionState.DLMS  # as after a successful AARE
    for raw in _payloads(c.releaseRequest()):
        rlrq = decode_apdu(raw)
        assert isinstance(rlrq, RLRQ)
        assert encode_apdu(rlrq) == raw


def test_gurux_get_set_action_requests():
    from gurux_dlms.enums import Conformance as GxConformance
    from gurux_dlms.enums import DataType
    from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSRegister

    c = _gurux_client(32)
    c.setNegotiatedConformance(c.getProposedConformance() | GxConformance.MULTIPLE_REFERENCES)
    reg = GXDLMSRegister("1.0.1.8.0.255")
    (raw,) = _payloads(c.read(reg, 3))
    req = decode_apdu(raw)
    assert isinstance(req, GetRequestNormal) and encode_apdu(req) == raw
    assert (req.attribute.class_id, req.attribute.instance, req.attribute.attribute_id) == (
        3, Obis.parse("1.0.1.8.0.255").to_bytes(), 3)

    (raw,) = _payloads(c.readList([(reg, 2), (GXDLMSData("0.0.96.1.0.255"), 2)]))
    req = decode_apdu(raw)
    assert isinstance(req, GetRequestWithList) and encode_apdu(req) == raw
    assert [a.attribute.class_id for a in req.attributes] == [3, 1]

    clock = GXDLMSClock("0.0.1.0.0.255")
    (raw,) = _payloads(c.method(clock, 6, 5, DataType.INT16))
    req = decode_apdu(raw)
    assert isinstance(req, ActionRequestNormal) and encode_apdu(req) == raw
    assert req.method.method_id == 6
    assert data_from_bytes(req.parameters).value == 5

    data = GXDLMSData("0.0.96.1.2.255")
    data.value = 7
    data.setDataType(2, DataType.UINT16)
    (raw,) = _payloads(c.write(data, 2))
    req = decode_apdu(raw)
    assert isinstance(req, SetRequestNormal) and encode_apdu(req) == raw
    assert data_from_bytes(req.value).value == 7


def test_dlms_cosem_requests():
    dc = pytest.importorskip("dlms_cosem")
    from dlms_cosem import cosem, enumerations
    from dlms_cosem.protocol import xdlms

    attr = cosem.CosemAttribute(
        interface=enumerations.CosemInterface.CLOCK, instance=cosem.Obis(0, 0, 1, 0, 0, 255), attribute=2
    )
    raw = xdlms.GetRequestNormal(cosem_attribute=attr).to_bytes()
    req = decode_apdu(raw)
    assert isinstance(req, GetRequestNormal) and encode_apdu(req) == raw
    raw = xdlms.GetRequestNext(block_number=3).to_bytes()
    req = decode_apdu(raw)
    assert isinstance(req, GetRequestNext) and req.block_number == 3 and encode_apdu(req) == raw
    assert dc is not None


# -- properties --------------------------------------------------------------------------------------


@given(apdus())
def test_round_trip(apdu):
    assert decode_apdu(encode_apdu(apdu)) == apdu


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_remote_error(data):
    try:
        apdu = decode_apdu(data)
    except RemoteProtocolError:
        return
    assert encode_apdu(apdu) is not None


@given(apdus(), st.data())
def test_mutated_apdus_decode_or_remote_error(apdu, data):
    raw = bytearray(encode_apdu(apdu))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode_apdu(bytes(raw[:cut]))
    except RemoteProtocolError:
        pass


def test_get_response_requires_one_result():
    from meter_core.codec.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        GetResponseNormal(invoke_id_and_priority=0xC1)
    with pytest.raises(LocalProtocolError):
        GetResponseNormal(invoke_id_and_priority=0xC1, data=b"\x00", error=DataAccessResult.OBJECT_UNDEFINED)


def test_rlre_reason_encoding():
    # RLRE with reason normal: 63 03 80 01 00 (BER [0] IMPLICIT INTEGER 0)
    assert encode_apdu(RLRE(reason=b"\x00")) == bytes.fromhex("6303800100")
    assert decode_apdu(bytes.fromhex("6303800100")) == RLRE(reason=b"\x00")
