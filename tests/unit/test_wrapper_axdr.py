"""TCP wrapper framing, A-XDR data, and an associated meter under random APDUs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter_core import NEED_DATA
from meter_core.client import Associated
from meter_core.codec.apdu import decode_apdu, encode_apdu
from meter_core.codec.axdr import data_from_bytes, data_to_bytes
from meter_core.codec.errors import DecodeError, RemoteProtocolError
from meter_core.codec.wrapper import WrapperDeframer, wrap
from meter_core.connection import Transport
from meter_core.events import InternalError
from tests.strategies import apdus, data_values
from tests.unit.test_meter import Pair

# Wrapper frames as dlms-cosem's TcpTransport wrapped them (captured from its output, see
# test_dlms_cosem_wrapper_frames below) and a real HES exchange quoted on gurux.fi/node/13928
# (client 16 -> server 1, an AARQ of 0x1D bytes; header 0001 0010 0001 001F).
DLMS_COSEM_AARQ_FRAME = bytes.fromhex(
    "000100100001001f601da109060760857405080101be10040e01000000065f1f040060fe1fffff")


def feed_all(deframer: WrapperDeframer, chunks) -> list:
    out = []
    for c in chunks:
        deframer.feed(c)
        while (got := deframer.next_payload()) is not NEED_DATA:
            out.append(got)
    return out


@pytest.mark.parametrize("split", ["whole", "bytes", "trailing"])
def test_wrapper_frame_any_chunking(split):
    frame = DLMS_COSEM_AARQ_FRAME
    if split == "whole":
        chunks = [frame]
    elif split == "bytes":
        chunks = [frame[i:i + 1] for i in range(len(frame))]
    else:
        chunks = [frame + frame[:5], frame[5:]]
    got = feed_all(WrapperDeframer(), chunks)
    assert got[0] == (16, 1, frame[8:])
    assert decode_apdu(got[0][2]).application_context_name == bytes.fromhex("60857405080101")
    assert wrap(16, 1, got[0][2]) == frame
    assert len(got) == (2 if split == "trailing" else 1)


def test_dlms_cosem_wrapper_frames():
    """dlms-cosem's own wrapper output (made here, by it) deframes to what it wrapped."""
    from dlms_cosem.io import TcpTransport

    t = TcpTransport(client_logical_address=32, server_logical_address=1, io=None)
    apdu = bytes.fromhex("c001c100080000010000ff0200")
    frame = t.wrap(apdu)
    assert feed_all(WrapperDeframer(), [frame]) == [(32, 1, apdu)]
    assert WrapperDeframer().whole_frame(frame) == (32, 1, apdu)


def test_wrong_version_breaks_the_stream():
    d = WrapperDeframer()
    d.feed(b"\x00\x02\x00\x10\x00\x01\x00\x01\x60")
    with pytest.raises(DecodeError):
        d.next_payload()
    with pytest.raises(DecodeError):
        d.next_payload()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_fuzz_wrapper_deframer(chunks):
    d = WrapperDeframer()
    try:
        feed_all(d, chunks)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(data_values())
def test_data_round_trip(value):
    raw = data_to_bytes(value)
    assert data_from_bytes(raw) == value
    assert data_to_bytes(data_from_bytes(raw)) == raw


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_fuzz_data_decoder(raw):
    try:
        data_from_bytes(raw)
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(apdus() | st.binary(max_size=60), min_size=1, max_size=6),
       st.sampled_from([Transport.WRAPPER, Transport.HDLC]))
def test_associated_meter_answers_random_apdus_without_internal_errors(items, transport):
    p = Pair(transport)
    assert isinstance(p.associate(), Associated)
    for item in items:
        raw = item if isinstance(item, bytes) else encode_apdu(item)
        if not raw:
            continue
        p.client.send_raw_apdu(raw)
        p.pump()
        while p.client.next_event() is not NEED_DATA:
            pass
    assert not [e for e in p.meter_events if isinstance(e, InternalError)]
    # And it still serves (a random RLRQ may have released the association: associate again).
    if not p.conn.associations[16].associated:
        assert isinstance(p.associate(), Associated)
    assert p.get(1, "0.0.42.0.0.255", 2).error is None
