"""HDLC (IEC 62056-46): frame vectors from real meters, independent clients, client/server pairs, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter_core.codec._util import NEED_DATA
from meter_core.codec.errors import LocalProtocolError, RemoteProtocolError
from meter_core.codec.hdlc import (
    LLC_COMMAND,
    ApduReceived,
    ClientLinkState,
    Deframer,
    Frame,
    FrameKind,
    FrameRejected,
    HdlcAddress,
    HdlcClientStation,
    HdlcParameters,
    HdlcServerConnection,
    HdlcServerSettings,
    LinkConnected,
    LinkDisconnected,
    LinkState,
    control_field,
    crc16,
    crc16_reference,
)
from tests.vectors import load_vectors

VECTORS = {v.name: v for v in load_vectors("hdlc")}
CLIENT = HdlcAddress(upper=16, lower=None, size=1)
SERVER1 = HdlcAddress(upper=1, lower=None, size=1)


def events(conn) -> list:
    out = []
    while (ev := conn.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


def frames_of(data: bytes) -> list[Frame]:
    d = Deframer()
    d.feed(data)
    out = []
    while (f := d.next_frame()) is not NEED_DATA:
        out.append(f)
    return out


def frame(kind: FrameKind, *, dst: HdlcAddress = SERVER1, src: HdlcAddress = CLIENT, pf: bool = True, ns: int = 0,
          nr: int = 0, info: bytes = b"", segmented: bool = False) -> bytes:
    return Frame(destination=dst, source=src, control=control_field(kind, pf=pf, ns=ns, nr=nr), info=info,
                 segmented=segmented).to_bytes()


# -- CRC ---------------------------------------------------------------------------------------


def test_crc_check_value():
    # CRC-16/X-25 catalogue check value (reveng CRC catalogue: "check=0x906e").
    assert crc16(b"123456789") == 0x906E
    assert crc16_reference(b"123456789") == 0x906E


@given(st.binary(max_size=300))
def test_crc_fast_path_matches_table(data):
    assert crc16(data) == crc16_reference(data)


# -- vectors -----------------------------------------------------------------------------------

# name -> (destination, source, kind, N(S), N(R), first info bytes)
EXPECTED = {
    "snrm-client16-server1": (SERVER1, CLIENT, FrameKind.SNRM, None, None, b""),
    "ua-max-info-128-window-1": (CLIENT, SERVER1, FrameKind.UA, None, None, b"\x81\x80\x12"),
    "i-frame-aarq": (SERVER1, CLIENT, FrameKind.I, 0, 0, LLC_COMMAND + b"\x60\x1d"),
    "i-frame-aare-doubled-llc": (CLIENT, SERVER1, FrameKind.I, 0, 1, b"\xe6\xe7\x00\xe6\xe7\x00\x61"),
    "i-frame-get-ic-attr1": (SERVER1, CLIENT, FrameKind.I, 1, 1, LLC_COMMAND + b"\xc0\x01"),
    "i-frame-get-response-ln": (CLIENT, SERVER1, FrameKind.I, 1, 2, b"\xe6\xe7\x00\xc4\x01"),
    "i-frame-get-ic-attr2": (SERVER1, CLIENT, FrameKind.I, 2, 2, LLC_COMMAND + b"\xc0\x01"),
    "i-frame-get-response-u32": (CLIENT, SERVER1, FrameKind.I, 2, 3, b"\xe6\xe7\x00\xc4\x01"),
    "disc": (SERVER1, CLIENT, FrameKind.DISC, None, None, b""),
    "i-frame-aarq-lls-glo-initiate": (
        SERVER1, HdlcAddress(upper=32, lower=None, size=1), FrameKind.I, 0, 0, LLC_COMMAND + b"\x60\x51"),
    "i-frame-aare-glo-initiate-response": (
        HdlcAddress(upper=32, lower=None, size=1), SERVER1, FrameKind.I, 0, 1, b"\xe6\xe7\x00\x61\x3c"),
}


def test_every_vector_has_expectations():
    assert set(VECTORS) == set(EXPECTED)


@pytest.mark.parametrize("v", list(VECTORS.values()), ids=lambda v: v.name)
def test_vector_decodes_and_reencodes(v):
    f = Frame.from_bytes(v.wire)
    dst, src, kind, ns, nr, info = EXPECTED[v.name]
    assert (f.destination, f.source, f.kind) == (dst, src, kind)
    assert f.pf and not f.segmented
    if ns is not None:
        assert (f.ns, f.nr) == (ns, nr)
    assert f.info.startswith(info) and (info or not f.info)
    assert f.to_bytes() == v.wire


@pytest.mark.parametrize("v", list(VECTORS.values()), ids=lambda v: v.name)
def test_vector_deframed_three_ways(v):
    expected = Frame.from_bytes(v.wire)
    # whole
    assert frames_of(v.wire) == [expected]
    # one byte at a time
    d = Deframer()
    got = []
    for b in v.wire:
        d.feed(bytes([b]))
        while (f := d.next_frame()) is not NEED_DATA:
            got.append(f)
    assert got == [expected]
    # with the start of the next frame behind it (sharing the closing flag), and garbage before
    d = Deframer()
    cut = len(v.wire) // 2
    d.feed(b"\x00\x13garbage" + v.wire + v.wire[1:cut])
    assert d.next_frame() == expected
    assert d.next_frame() is NEED_DATA
    d.feed(v.wire[cut:])
    assert d.next_frame() == expected


def test_vectors_back_to_back_shared_flag():
    wires = [v.wire for v in VECTORS.values()]
    shared = wires[0] + b"".join(w[1:] for w in wires[1:])
    assert frames_of(shared) == [Frame.from_bytes(w) for w in wires]


def test_vector_ua_parameters():
    ua = Frame.from_bytes(VECTORS["ua-max-info-128-window-1"].wire)
    p = HdlcParameters.from_bytes(ua.info)
    assert p == HdlcParameters(max_info_tx=128, max_info_rx=128, window_tx=1, window_rx=1)
    assert p.to_bytes() == ua.info


def test_replay_india_client_session_into_server():
    srv = HdlcServerConnection(HdlcServerSettings(physical_address=0x1234, logical_address=1))
    names = ["snrm-client16-server1", "i-frame-aarq", "i-frame-get-ic-attr1", "i-frame-get-ic-attr2", "disc"]
    responses = {  # what the real meter answered, to keep our sequence numbers in step with the trace
        "i-frame-aarq": "i-frame-aare-doubled-llc",
        "i-frame-get-ic-attr1": "i-frame-get-response-ln",
        "i-frame-get-ic-attr2": "i-frame-get-response-u32",
    }
    got = []
    for name in names:
        srv.receive_data(VECTORS[name].wire, now=0.0)
        evs = events(srv)
        got.extend(evs)
        for ev in evs:
            if isinstance(ev, ApduReceived):
                meter = Frame.from_bytes(VECTORS[responses[name]].wire)
                srv.send_apdu(meter.info[3:])
        out = frames_of(srv.data_to_send())
        assert len(out) == 1
        if name in responses:
            meter = Frame.from_bytes(VECTORS[responses[name]].wire)
            assert out[0].to_bytes() == meter.to_bytes()  # same control byte, same addresses
        elif name == "snrm-client16-server1":
            assert out[0].to_bytes() == VECTORS["ua-max-info-128-window-1"].wire
        else:
            assert out[0].kind is FrameKind.UA and not out[0].info
    kinds = [type(e) for e in got]
    assert kinds == [LinkConnected, ApduReceived, ApduReceived, ApduReceived, LinkDisconnected]
    assert got[1].apdu[:2] == b"\x60\x1d" and got[1].client_address == 16
    assert got[2].apdu == bytes.fromhex("C0 01 C1 00 01 00 00 2B 01 03 FF 01 00")


def test_replay_hpl_aarq_into_server():
    srv = HdlcServerConnection(HdlcServerSettings(physical_address=0x10))
    srv.receive_data(frame(FrameKind.SNRM, src=HdlcAddress(upper=32, lower=None, size=1)), 0.0)
    srv.receive_data(VECTORS["i-frame-aarq-lls-glo-initiate"].wire, 0.0)
    evs = events(srv)
    assert isinstance(evs[-1], ApduReceived) and evs[-1].client_address == 32
    assert evs[-1].apdu[0] == 0x60 and len(evs[-1].apdu) == 0x53


# -- frames and parameters -------------------------------------------------------------------

addresses = st.one_of(
    st.builds(HdlcAddress, upper=st.integers(0, 0x7F), lower=st.none(), size=st.just(1)),
    st.builds(HdlcAddress, upper=st.integers(0, 0x7F), lower=st.integers(0, 0x7F), size=st.just(2)),
    st.builds(HdlcAddress, upper=st.integers(0, 0x3FFF), lower=st.integers(0, 0x3FFF), size=st.just(4)),
)
frames = st.builds(
    Frame, destination=addresses, source=addresses, control=st.integers(0, 255),
    info=st.binary(max_size=300), segmented=st.booleans(),
)
parameters = st.builds(
    HdlcParameters, max_info_tx=st.integers(1, 0xFFFFFFFF), max_info_rx=st.integers(1, 0xFFFFFFFF),
    window_tx=st.integers(1, 0xFFFFFFFF), window_rx=st.integers(1, 0xFFFFFFFF),
)


@given(frames)
def test_frame_round_trip(f):
    wire = f.to_bytes()
    assert Frame.from_bytes(wire) == f
    assert frames_of(wire) == [f]


@given(st.lists(frames, min_size=1, max_size=5), st.booleans())
def test_frames_back_to_back(fs, share):
    wires = [f.to_bytes() for f in fs]
    data = wires[0] + b"".join(w[1:] if share else w for w in wires[1:])
    assert frames_of(data) == fs


@given(parameters)
def test_parameters_round_trip(p):
    assert HdlcParameters.from_bytes(p.to_bytes()) == p


def test_parameters_encoding_like_real_meters():
    assert HdlcParameters().to_bytes().hex(" ") == "81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01"
    assert HdlcParameters(max_info_tx=512, max_info_rx=1024).to_bytes()[:11].hex(" ") == (
        "81 80 14 05 02 02 00 06 02 04 00")


def test_parameters_any_length_and_defaults():
    # Gurux's SNRM leaves out window_tx and encodes the sizes on 2 bytes.
    p = HdlcParameters.from_bytes(bytes.fromhex("81 80 0e 05 02 02 00 06 02 04 00 08 04 00 00 00 07"))
    assert p == HdlcParameters(max_info_tx=512, max_info_rx=1024, window_tx=1, window_rx=7)
    assert HdlcParameters.from_bytes(b"") == HdlcParameters()
    with pytest.raises(RemoteProtocolError):
        HdlcParameters.from_bytes(bytes.fromhex("82 80 03 05 01 80"))
    with pytest.raises(RemoteProtocolError):
        HdlcParameters.from_bytes(bytes.fromhex("81 80 05 05 01 80"))


def test_address_validation():
    with pytest.raises(LocalProtocolError):
        HdlcAddress(upper=0x80, lower=None, size=1)
    with pytest.raises(LocalProtocolError):
        HdlcAddress(upper=1, lower=0x4000, size=4)
    with pytest.raises(LocalProtocolError):
        HdlcAddress(upper=1, lower=2, size=3)
    assert HdlcAddress(upper=1, lower=256, size=4).to_bytes().hex(" ") == "00 02 04 01"  # as Gurux encodes it


def test_bad_fcs_and_hcs_are_dropped():
    wire = bytearray(VECTORS["i-frame-aarq"].wire)
    bad_fcs = bytes(wire[:-2]) + bytes([wire[-2] ^ 1]) + b"\x7e"
    bad_hcs = bytearray(wire)
    bad_hcs[8] ^= 0xFF
    d = Deframer()
    d.feed(bad_fcs + bytes(bad_hcs) + VECTORS["disc"].wire)
    assert d.next_frame() == Frame.from_bytes(VECTORS["disc"].wire)
    assert d.next_frame() is NEED_DATA
    assert d.discarded == 2


def test_length_inconsistent_resyncs():
    disc = VECTORS["disc"].wire
    liar = b"\x7e\xa0\x50\x03\x21\x93\x00\x00"  # claims 0x50 octets but a flag comes sooner
    assert frames_of(liar + disc + b"\x00" * 0x50) == [Frame.from_bytes(disc)]


def test_unknown_control_decodes():
    wire = Frame(destination=SERVER1, source=CLIENT, control=0x19).to_bytes()  # REJ, P=1
    f = Frame.from_bytes(wire)
    assert f.kind is None and f.control == 0x19


def test_three_byte_address_is_decode_error():
    head = bytes.fromhex("a0 09 02 04 47 21 93")  # dlms-cosem's SNRM to physical 0x123
    fcs = crc16(head).to_bytes(2, "little")
    with pytest.raises(RemoteProtocolError):
        Frame.from_bytes(b"\x7e" + head + fcs + b"\x7e")
    d = Deframer()
    d.feed(b"\x7e" + head + fcs + VECTORS["disc"].wire)
    with pytest.raises(RemoteProtocolError):
        d.next_frame()
    assert d.next_frame() == Frame.from_bytes(VECTORS["disc"].wire)


# -- server ------------------------------------------------------------------------------------


def server(**kw) -> HdlcServerConnection:
    kw.setdefault("physical_address", 0x123)
    return HdlcServerConnection(HdlcServerSettings(**kw))


def exchange(srv: HdlcServerConnection, data: bytes, now: float = 0.0) -> tuple[list, list[Frame]]:
    srv.receive_data(data, now)
    evs = events(srv)
    return evs, frames_of(srv.data_to_send())


def connected_server(**kw) -> HdlcServerConnection:
    srv = server(**kw)
    evs, out = exchange(srv, frame(FrameKind.SNRM))
    assert isinstance(evs[0], LinkConnected) and out[0].kind is FrameKind.UA
    return srv


def test_server_ndm_answers_dm():
    srv = server()
    for kind in (FrameKind.I, FrameKind.RR, FrameKind.RNR, FrameKind.DISC):
        info = LLC_COMMAND + b"\x60" if kind is FrameKind.I else b""
        evs, out = exchange(srv, frame(kind, info=info))
        assert evs == [] and [f.kind for f in out] == [FrameKind.DM]
        assert out[0].destination == CLIENT and out[0].source == SERVER1 and out[0].pf
    evs, out = exchange(srv, frame(FrameKind.UI, info=b"x"))
    assert evs == [] and out == []


def test_server_ignores_other_addresses():
    srv = server(physical_address=0x123)
    for dst in (HdlcAddress(upper=2, lower=None, size=1), HdlcAddress(upper=1, lower=0x124, size=4),
                HdlcAddress(upper=0x7F, lower=None, size=1), HdlcAddress(upper=1, lower=0x3FFF, size=4),
                HdlcAddress(upper=1, lower=0x23, size=2)):
        assert exchange(srv, frame(FrameKind.SNRM, dst=dst)) == ([], [])
    assert srv.state is LinkState.NDM
    # a 2-byte client address is not a client
    assert exchange(srv, frame(FrameKind.SNRM, src=HdlcAddress(upper=16, lower=1, size=2))) == ([], [])


@pytest.mark.parametrize("dst", [
    HdlcAddress(upper=1, lower=None, size=1),
    HdlcAddress(upper=1, lower=0x23, size=2),
    HdlcAddress(upper=1, lower=0x123, size=4),
], ids=["1-byte", "2-byte", "4-byte"])
def test_server_answers_in_the_clients_address_form(dst):
    srv = server(physical_address=dst.lower if dst.lower is not None else 0x55)
    evs, out = exchange(srv, frame(FrameKind.SNRM, dst=dst))
    assert out[0].source == dst and out[0].destination == CLIENT
    srv.receive_data(frame(FrameKind.I, dst=dst, info=LLC_COMMAND + b"\x60\x00"), 0.0)
    assert events(srv) == [ApduReceived(16, b"\x60\x00")]
    srv.send_apdu(b"\x61\x00")
    (f,) = frames_of(srv.data_to_send())
    assert f.source == dst and f.info == b"\xe6\xe7\x00\x61\x00" and (f.ns, f.nr, f.pf) == (0, 1, True)


def test_server_accept_any_physical():
    srv = server(physical_address=0x123, accept_any_physical=True)
    evs, out = exchange(srv, frame(FrameKind.SNRM, dst=HdlcAddress(upper=1, lower=0x999, size=4)))
    assert isinstance(evs[0], LinkConnected)


def test_server_unknown_control_frmr():
    srv = connected_server()
    srv.receive_data(frame(FrameKind.I, ns=0, nr=0, info=LLC_COMMAND + b"\x60"), 0.0)
    events(srv)
    srv.send_apdu(b"\x61")
    srv.data_to_send()  # V(S) = 1, V(R) = 1
    rej = Frame(destination=SERVER1, source=CLIENT, control=0x39).to_bytes()  # REJ N(R)=1 P=1
    evs, out = exchange(srv, rej)
    assert [type(e) for e in evs] == [FrameRejected]
    assert out[0].kind is FrameKind.FRMR and out[0].pf
    assert out[0].info == bytes([0x39, (1 << 1) | (1 << 5), 0x01])
    assert srv.state is LinkState.FRAME_REJECT
    # further polls get the same FRMR, SNRM resets
    evs, out = exchange(srv, frame(FrameKind.RR, nr=1))
    assert out[0].kind is FrameKind.FRMR and out[0].info == bytes([0x39, 0x22, 0x01])
    evs, out = exchange(srv, frame(FrameKind.SNRM))
    assert isinstance(evs[0], LinkConnected) and srv.state is LinkState.NRM


def test_server_info_in_rr_frmr_x():
    srv = connected_server()
    evs, out = exchange(srv, frame(FrameKind.RR, info=b"\x01"))
    assert out[0].kind is FrameKind.FRMR and out[0].info == bytes([0x11, 0x00, 0x03])
    assert isinstance(evs[0], FrameRejected)


def test_server_info_too_long_frmr_y():
    srv = server()
    exchange(srv, frame(FrameKind.SNRM, info=HdlcParameters(max_info_tx=64).to_bytes()))
    assert srv.parameters.max_info_rx == 64
    assert exchange(srv, frame(FrameKind.I, info=LLC_COMMAND + bytes(61)))[0] == [ApduReceived(16, bytes(61))]
    evs, out = exchange(srv, frame(FrameKind.I, ns=1, info=LLC_COMMAND + bytes(62)))
    assert out[0].kind is FrameKind.FRMR and out[0].info[2] == 0x04
    assert isinstance(evs[0], FrameRejected)


def test_server_invalid_nr_frmr_z():
    srv = connected_server()
    evs, out = exchange(srv, frame(FrameKind.RR, nr=3))
    assert out[0].kind is FrameKind.FRMR and out[0].info == bytes([0x71, 0x00, 0x08])


def test_server_out_of_sequence_answers_rr():
    srv = connected_server()
    evs, out = exchange(srv, frame(FrameKind.I, ns=2, info=LLC_COMMAND + b"\x60"))
    assert evs == [] and out[0].kind is FrameKind.RR and out[0].nr == 0


def test_server_rr_with_nothing_pending():
    srv = connected_server()
    evs, out = exchange(srv, frame(FrameKind.RR))
    assert evs == [] and out[0].kind is FrameKind.RR and out[0].pf and out[0].nr == 0


def test_server_apdu_without_llc_is_dropped_and_poll_answered():
    srv = connected_server()
    evs, out = exchange(srv, frame(FrameKind.I, info=b"\x60\x00"))
    assert evs == [] and out[0].kind is FrameKind.RR and out[0].nr == 1


def test_server_bad_fcs_silence():
    srv = connected_server()
    wire = bytearray(frame(FrameKind.I, info=LLC_COMMAND + b"\x60\x00"))
    wire[-2] ^= 0x55
    assert exchange(srv, bytes(wire)) == ([], [])


def test_server_disc_and_snrm_reset():
    srv = connected_server()
    evs, out = exchange(srv, frame(FrameKind.SNRM))
    assert [type(e) for e in evs] == [LinkConnected] and out[0].kind is FrameKind.UA
    evs, out = exchange(srv, frame(FrameKind.DISC))
    assert evs == [LinkDisconnected(16)] and out[0].kind is FrameKind.UA and not out[0].info
    assert srv.state is LinkState.NDM
    evs, out = exchange(srv, frame(FrameKind.DISC))
    assert out[0].kind is FrameKind.DM


def test_server_inactivity_timeout():
    srv = server(inactivity_timeout=30.0)
    assert srv.next_deadline() is None
    exchange(srv, frame(FrameKind.SNRM), now=100.0)
    assert srv.next_deadline() == 130.0
    exchange(srv, frame(FrameKind.RR), now=110.0)
    assert srv.next_deadline() == 140.0
    srv.handle_timer(139.0)
    assert events(srv) == []
    srv.handle_timer(140.0)
    assert events(srv) == [LinkDisconnected(16)] and srv.state is LinkState.NDM
    assert srv.next_deadline() is None


def test_server_rnr_holds_output():
    srv = connected_server()
    srv.receive_data(frame(FrameKind.I, info=LLC_COMMAND + b"\xc0"), 0.0)
    events(srv)
    srv.receive_data(frame(FrameKind.RNR, nr=0), 0.0)  # before we answered: we may only say RR
    srv.send_apdu(b"\xc4")
    out = frames_of(srv.data_to_send())
    assert [f.kind for f in out] == [FrameKind.RR]
    evs, out = exchange(srv, frame(FrameKind.RR, nr=0))
    assert out[0].kind is FrameKind.I and out[0].info == b"\xe6\xe7\x00\xc4"


@pytest.mark.parametrize("proposal, expected", [
    (HdlcParameters(), HdlcParameters()),
    (HdlcParameters(max_info_tx=2048, max_info_rx=2048, window_tx=7, window_rx=7),
     HdlcParameters(max_info_tx=2030, max_info_rx=2030, window_tx=1, window_rx=1)),
    (HdlcParameters(max_info_tx=512, max_info_rx=256, window_tx=1, window_rx=1),
     HdlcParameters(max_info_tx=256, max_info_rx=512, window_tx=1, window_rx=1)),
    (HdlcParameters(max_info_tx=32, max_info_rx=1000, window_tx=3, window_rx=2),
     HdlcParameters(max_info_tx=1000, max_info_rx=32, window_tx=1, window_rx=1)),
])
def test_pair_negotiation(proposal, expected):
    srv, cli = pair()
    srv_params, cli_params = connect(srv, cli, proposal)
    assert srv_params == expected
    assert cli_params == expected.reversed()


def test_pair_negotiation_with_windows():
    srv, cli = pair(window_tx=7, window_rx=4)
    srv_params, cli_params = connect(srv, cli, HdlcParameters(window_tx=3, window_rx=7))
    assert (srv_params.window_tx, srv_params.window_rx) == (7, 3)
    assert (cli_params.window_tx, cli_params.window_rx) == (3, 7)


# -- client and server in memory ----------------------------------------------------------------


def pair(**kw) -> tuple[HdlcServerConnection, HdlcClientStation]:
    kw.setdefault("physical_address", 0x123)
    srv = HdlcServerConnection(HdlcServerSettings(**kw))
    cli = HdlcClientStation(client_address=16, server_address=HdlcAddress(upper=1, lower=0x123, size=4))
    return srv, cli


def pump(srv, cli, *, echo=None, now=0.0) -> tuple[list, list]:
    """Move bytes both ways until both are quiet; ``echo`` answers each server APDU."""
    s_events, c_events = [], []
    for _ in range(10_000):
        moved = False
        data = cli.data_to_send()
        if data:
            moved = True
            srv.receive_data(data, now)
        for ev in events(srv):
            s_events.append(ev)
            if echo is not None and isinstance(ev, ApduReceived):
                srv.send_apdu(echo(ev.apdu))
        data = srv.data_to_send()
        if data:
            moved = True
            cli.receive_data(data, now)
        c_events.extend(events(cli))
        if not moved:
            return s_events, c_events
    raise AssertionError("no quiescence")


def connect(srv, cli, proposal=None):
    cli.connect(proposal or HdlcParameters())
    s_ev, c_ev = pump(srv, cli)
    (s,), (c,) = s_ev, c_ev
    assert isinstance(s, LinkConnected) and isinstance(c, LinkConnected)
    return s.parameters, c.parameters


@pytest.mark.parametrize("window", [1, 3, 7])
def test_pair_5000_bytes_both_ways(window):
    srv, cli = pair(window_tx=window, window_rx=window)
    connect(srv, cli, HdlcParameters(max_info_tx=128, max_info_rx=128, window_tx=window, window_rx=window))
    request = bytes(range(256)) * 19 + b"\x01" * 136
    response = bytes(reversed(request))
    assert len(request) == 5000
    cli.send_apdu(request)
    s_ev, c_ev = pump(srv, cli, echo=lambda apdu: response)
    assert s_ev == [ApduReceived(16, request)]
    assert c_ev == [ApduReceived(16, response)]
    # a second exchange keeps the sequence numbers in step
    cli.send_apdu(b"\xc0\x01")
    s_ev, c_ev = pump(srv, cli, echo=lambda apdu: b"\xc4\x01")
    assert s_ev == [ApduReceived(16, b"\xc0\x01")] and c_ev == [ApduReceived(16, b"\xc4\x01")]


def test_pair_segment_sizes_respect_negotiation():
    srv, cli = pair()
    connect(srv, cli, HdlcParameters(max_info_tx=40, max_info_rx=128))
    cli.send_apdu(bytes(100))
    sent = frames_of(cli.data_to_send())
    assert len(sent) == 1 and len(sent[0].info) == 40 and sent[0].segmented and sent[0].pf
    srv.receive_data(sent[0].to_bytes(), 0.0)
    (rr,) = frames_of(srv.data_to_send())
    assert rr.kind is FrameKind.RR and rr.nr == 1


def test_pair_disconnect():
    srv, cli = pair()
    connect(srv, cli)
    cli.disconnect()
    s_ev, c_ev = pump(srv, cli)
    assert s_ev == [LinkDisconnected(16)] and c_ev == [LinkDisconnected(16)]
    assert srv.state is LinkState.NDM and cli.state is ClientLinkState.DISCONNECTED


def test_pair_i_frame_in_ndm_gets_dm():
    srv, cli = pair()
    connect(srv, cli)
    srv.receive_data(frame(FrameKind.DISC, dst=HdlcAddress(upper=1, lower=0x123, size=4)), 0.0)
    events(srv)
    srv.data_to_send()  # the UA the client never sees
    cli.send_apdu(b"\xc0\x01")
    s_ev, c_ev = pump(srv, cli)
    assert s_ev == [] and c_ev == [LinkDisconnected(16)]


def test_client_raises_on_frmr():
    srv, cli = pair()
    connect(srv, cli)
    srv.receive_data(frame(FrameKind.RR, dst=HdlcAddress(upper=1, lower=0x123, size=4), nr=5), 0.0)
    with pytest.raises(RemoteProtocolError):
        cli.receive_data(srv.data_to_send())


def test_client_send_before_connect():
    _, cli = pair()
    with pytest.raises(LocalProtocolError):
        cli.send_apdu(b"\x60")


def test_client_tolerates_doubled_llc():
    cli = HdlcClientStation(client_address=16, server_address=SERVER1)
    cli.connect(HdlcParameters())
    cli.data_to_send()
    cli.receive_data(VECTORS["ua-max-info-128-window-1"].wire)
    cli.send_apdu(Frame.from_bytes(VECTORS["i-frame-aarq"].wire).info[3:])
    assert cli.data_to_send() == VECTORS["i-frame-aarq"].wire  # what Gurux sent, byte for byte
    cli.receive_data(VECTORS["i-frame-aare-doubled-llc"].wire)
    evs = events(cli)
    assert isinstance(evs[0], LinkConnected)
    assert evs[1].apdu[:2] == b"\x61\x29"


# -- independent clients ------------------------------------------------------------------------

gurux = pytest.importorskip("gurux_dlms")


def gurux_client(server_address: int, address_size: int = 0):
    from gurux_dlms import GXDLMSClient
    from gurux_dlms.enums import Authentication, InterfaceType

    c = GXDLMSClient(True, 16, server_address, Authentication.NONE, None, InterfaceType.HDLC)
    if address_size:
        c.serverAddressSize = address_size
    return c


@pytest.mark.parametrize("logical, physical, size", [(1, None, 1), (1, 0x11, 2), (1, 0x100, 4), (1, 0x123, 4)])
@pytest.mark.parametrize("max_info", [128, 32])
def test_gurux_client_against_server(logical, physical, size, max_info):
    from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData

    address = logical if physical is None else GXDLMSClient.getServerAddress(logical, physical, size)
    c = gurux_client(address, size)
    c.hdlcSettings.maxInfoTX = max_info
    c.hdlcSettings.maxInfoRX = max_info
    srv = server(physical_address=physical if physical is not None else 0x55, logical_address=logical)
    evs, out = exchange(srv, bytes(c.snrmRequest()))
    assert isinstance(evs[0], LinkConnected)
    assert evs[0].parameters == HdlcParameters(max_info_tx=max_info, max_info_rx=max_info)
    ua = GXReplyData()
    assert c.getData(GXByteBuffer(out[0].to_bytes()), ua)
    c.parseUAResponse(ua.data)
    assert (c.hdlcSettings.maxInfoTX, c.hdlcSettings.maxInfoRX) == (max_info, max_info)
    requests = c.aarqRequest()
    assert len(requests) == (1 if max_info == 128 else 2)
    apdus = []
    for request in requests[:-1]:
        srv.receive_data(bytes(request), 0.0)
        assert events(srv) == []
        (rr,) = frames_of(srv.data_to_send())
        assert rr.kind is FrameKind.RR
        c.getData(GXByteBuffer(rr.to_bytes()), GXReplyData())  # as Gurux's readDLMSPacket would
    srv.receive_data(bytes(requests[-1]), 0.0)
    apdus = events(srv)
    assert len(apdus) == 1 and apdus[0].apdu[0] == 0x60
    # our AARE-sized answer, segmented to Gurux's max_info_rx, read back with Gurux's receiver-ready
    response = bytes([0x61, 0x81, 0xF0]) + bytes(range(240))
    srv.send_apdu(response)
    reply = GXReplyData()
    data = srv.data_to_send()
    for _ in range(50):
        assert c.getData(GXByteBuffer(data), reply)
        if not reply.isMoreData():
            break
        srv.receive_data(bytes(c.receiverReady(reply)), 0.0)
        data = srv.data_to_send()
    assert bytes(reply.data.array()[: reply.data.size]) == response
    srv.receive_data(bytes(c.disconnectRequest()), 0.0)
    assert events(srv) == [LinkDisconnected(16)]


def test_dlms_cosem_frames_against_server():
    frames_mod = pytest.importorskip("dlms_cosem.hdlc.frames")
    address_mod = pytest.importorskip("dlms_cosem.hdlc.address")
    for physical, extended in ((None, False), (0x11, False), (0x123, True)):
        srv_addr = address_mod.HdlcAddress(
            logical_address=1, physical_address=physical, address_type="server", extended_addressing=extended)
        cli_addr = address_mod.HdlcAddress(logical_address=16, physical_address=None, address_type="client")
        srv = server(physical_address=physical or 0x55)
        snrm = frames_mod.SetNormalResponseModeFrame(destination_address=srv_addr, source_address=cli_addr)
        evs, out = exchange(srv, snrm.to_bytes())
        assert isinstance(evs[0], LinkConnected), physical
        ua = frames_mod.UnNumberedAcknowledgmentFrame.from_bytes(out[0].to_bytes())
        assert ua.destination_address.logical_address == 16
        info = frames_mod.InformationFrame(
            destination_address=srv_addr, source_address=cli_addr, payload=LLC_COMMAND + b"\x60\x00",
            send_sequence_number=0, receive_sequence_number=0, segmented=False, final=True)
        srv.receive_data(info.to_bytes(), 0.0)
        assert events(srv) == [ApduReceived(16, b"\x60\x00")]
        srv.send_apdu(b"\x61\x00")
        answer = frames_mod.InformationFrame.from_bytes(srv.data_to_send())
        assert answer.payload == b"\xe6\xe7\x00\x61\x00"
        assert (answer.send_sequence_number, answer.receive_sequence_number) == (0, 1)
        rr = frames_mod.ReceiveReadyFrame(destination_address=srv_addr, source_address=cli_addr,
                                          receive_sequence_number=1)
        assert exchange(srv, rr.to_bytes())[1][0].kind is FrameKind.RR
        disc = frames_mod.DisconnectFrame(destination_address=srv_addr, source_address=cli_addr)
        assert exchange(srv, disc.to_bytes())[0] == [LinkDisconnected(16)]


# -- fuzzing ------------------------------------------------------------------------------------

VALID_CLIENT_FRAMES = [VECTORS[n].wire for n in (
    "snrm-client16-server1", "i-frame-aarq", "i-frame-get-ic-attr1", "i-frame-get-ic-attr2", "disc")]
chunks = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from(VALID_CLIENT_FRAMES), frames.map(Frame.to_bytes)),
    max_size=12,
)


def fuzz_server(data: list[bytes], connected: bool) -> None:
    srv = HdlcServerConnection(HdlcServerSettings(physical_address=0x55))
    if connected:
        srv.receive_data(VECTORS["snrm-client16-server1"].wire, 0.0)
    for i, chunk in enumerate(data):
        try:
            srv.receive_data(chunk, float(i))
        except RemoteProtocolError:
            pass
        for ev in events(srv):
            if isinstance(ev, ApduReceived):
                srv.send_apdu(ev.apdu[:300])
        srv.data_to_send()
        srv.handle_timer(float(i))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(chunks)
def test_fuzz_server_ndm(data):
    fuzz_server(data, connected=False)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(chunks)
def test_fuzz_server_nrm(data):
    fuzz_server(data, connected=True)


@given(st.lists(st.binary(max_size=60), max_size=10))
def test_fuzz_deframer(data):
    d = Deframer()
    for chunk in data:
        d.feed(chunk)
        while True:
            try:
                if d.next_frame() is NEED_DATA:
                    break
            except RemoteProtocolError:
                pass


@given(st.binary(max_size=80))
def test_fuzz_frame_decode(data):
    try:
        Frame.from_bytes(b"\x7e" + data)
    except RemoteProtocolError:
        pass


@given(st.binary(max_size=40))
def test_fuzz_parameters_decode(data):
    try:
        HdlcParameters.from_bytes(data)
    except RemoteProtocolError:
        pass


@given(chunks)
def test_fuzz_client(data):
    cli = HdlcClientStation(client_address=16, server_address=SERVER1)
    cli.connect(HdlcParameters())
    for chunk in data:
        try:
            cli.receive_data(chunk)
        except RemoteProtocolError:
            pass
        events(cli)
        cli.data_to_send()


def test_server_window_go_back_n():
    srv = server(window_tx=3)
    exchange(srv, frame(FrameKind.SNRM, info=HdlcParameters(max_info_rx=20, window_rx=3).to_bytes()))
    assert srv.parameters.window_tx == 3 and srv.parameters.max_info_tx == 20
    srv.receive_data(frame(FrameKind.I, info=LLC_COMMAND + b"\xc0"), 0.0)
    events(srv)
    srv.send_apdu(bytes(range(90)))  # 93 octets with the LLC header: 5 segments of 20
    out = frames_of(srv.data_to_send())
    assert [(f.ns, f.pf, f.segmented) for f in out] == [(0, False, True), (1, False, True), (2, True, True)]
    # the client got only the first: RR N(R)=1 asks for the rest again, and the window fills up
    evs, out = exchange(srv, frame(FrameKind.RR, nr=1))
    assert [(f.ns, f.pf) for f in out] == [(1, False), (2, False), (3, True)]
    evs, out = exchange(srv, frame(FrameKind.RR, nr=4))
    assert [(f.ns, f.pf, f.segmented) for f in out] == [(4, True, False)]
    assert out[0].info == bytes(range(77, 90))


def test_server_snrm_from_another_client_takes_over():
    srv = connected_server()
    other = HdlcAddress(upper=32, lower=None, size=1)
    assert exchange(srv, frame(FrameKind.I, src=other, info=LLC_COMMAND + b"\x60")) == ([], [])
    evs, out = exchange(srv, frame(FrameKind.SNRM, src=other))
    assert evs[0] == LinkDisconnected(16) and isinstance(evs[1], LinkConnected) and evs[1].client_address == 32
    assert out[0].destination == other
