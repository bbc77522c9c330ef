"""The client's side of an HDLC link: a primary station (IEC 62056-46 clause 6.4.4, ISO/IEC 13239 NRM).

Used by tests and load tests to talk to our meters. The client polls: every burst it sends ends
with P=1, and it sends nothing more until a frame with F=1 comes back. It has no retransmission
timer; a lost frame stalls the link until the caller disconnects.
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import Any

from meter_core.codec._util import NEED_DATA, Sentinel
from meter_core.codec.errors import LocalProtocolError, RemoteProtocolError
from meter_core.codec.hdlc._link import LLC_COMMAND, LLC_RESPONSE, LLC_SIZE, SendWindow
from meter_core.codec.hdlc.events import ApduReceived, LinkConnected, LinkDisconnected
from meter_core.codec.hdlc.frames import Deframer, Frame, FrameKind, HdlcAddress, control_field
from meter_core.codec.hdlc.parameters import HdlcParameters


class ClientLinkState(Enum):
    """Where the client's link stands."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"  # SNRM sent
    CONNECTED = "connected"
    DISCONNECTING = "disconnecting"  # DISC sent


_DEFAULT_PARAMETERS = HdlcParameters()


class HdlcClientStation:
    """The client's end of one HDLC link (sans-I/O)."""

    __slots__ = (
        "client_address", "server_address", "_me", "_state", "_deframer", "_events", "_out", "_proposal",
        "_params", "_window", "_vr", "_rx", "_awaiting", "_peer_busy",
    )

    def __init__(self, client_address: int, server_address: HdlcAddress) -> None:
        self.client_address = client_address
        self.server_address = server_address
        self._me = HdlcAddress(upper=client_address, lower=None, size=1)
        self._state = ClientLinkState.DISCONNECTED
        self._deframer = Deframer()
        self._events: deque[Any] = deque()
        self._out: list[bytes] = []
        self._proposal = HdlcParameters()
        self._params = HdlcParameters()
        self._window = SendWindow()
        self._vr = 0
        self._rx = bytearray()
        self._awaiting = False
        self._peer_busy = False

    @property
    def state(self) -> ClientLinkState:
        return self._state

    @property
    def parameters(self) -> HdlcParameters:
        """The negotiated parameters, from the client's view (valid once connected)."""
        return self._params

    # -- requests -------------------------------------------------------------------------------

    def connect(self, parameters: HdlcParameters = _DEFAULT_PARAMETERS) -> None:
        """Queue SNRM proposing ``parameters`` (the client's view: max_info_tx is what it will send)."""
        self._reset(ClientLinkState.CONNECTING)
        self._proposal = parameters
        self._send(FrameKind.SNRM, info=parameters.to_bytes())

    def disconnect(self) -> None:
        """Queue DISC."""
        self._reset(ClientLinkState.DISCONNECTING)
        self._send(FrameKind.DISC)

    def send_apdu(self, apdu: bytes) -> None:
        """Queue an APDU; it goes out in I-frames of the negotiated size as the window allows."""
        if self._state is not ClientLinkState.CONNECTED:
            raise LocalProtocolError(f"cannot send an APDU: the HDLC link is {self._state.value}")
        self._window.push_apdu(LLC_COMMAND + apdu, self._params.max_info_tx)
        self._pump(retransmit=False)

    # -- the sans-I/O surface -------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float = 0.0) -> None:
        """Feed bytes from the server; raises `RemoteProtocolError` on a frame we cannot accept."""
        if not data:
            return
        deframer = self._deframer
        deframer.feed(data)
        while (frame := deframer.next_frame()) is not NEED_DATA:
            self._on_frame(frame)

    def next_event(self) -> ApduReceived | LinkConnected | LinkDisconnected | Sentinel:
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    # -- frames ---------------------------------------------------------------------------------

    def _on_frame(self, f: Frame) -> None:
        if f.destination != self._me or f.source != self.server_address:
            return
        if f.pf:
            self._awaiting = False
        kind = f.kind
        state = self._state
        if kind is FrameKind.I:
            if state is ClientLinkState.CONNECTED:
                self._on_i(f)
        elif kind is FrameKind.RR or kind is FrameKind.RNR:
            if state is ClientLinkState.CONNECTED:
                if not self._window.acknowledge(f.nr):
                    raise RemoteProtocolError(f"{kind.value} with invalid N(R) {f.nr}")
                self._peer_busy = kind is FrameKind.RNR
                if f.pf:
                    self._pump(retransmit=True)
        elif kind is FrameKind.UA:
            if state is ClientLinkState.CONNECTING:
                self._on_ua(f)
            elif state is ClientLinkState.DISCONNECTING:
                self._reset(ClientLinkState.DISCONNECTED)
                self._events.append(LinkDisconnected(self.client_address))
        elif kind is FrameKind.DM:
            if state is not ClientLinkState.DISCONNECTED:
                self._reset(ClientLinkState.DISCONNECTED)
                self._events.append(LinkDisconnected(self.client_address))
        elif kind is FrameKind.FRMR:
            self._reset(ClientLinkState.DISCONNECTED)
            self._events.append(LinkDisconnected(self.client_address))
            raise RemoteProtocolError(f"the server rejected a frame: FRMR {f.info.hex(' ')}")
        elif kind is None:
            raise RemoteProtocolError(f"control field {f.control:#04x} not implemented")

    def _on_ua(self, f: Frame) -> None:
        ua = HdlcParameters.from_bytes(f.info)  # the server's view
        p = self._proposal
        self._params = HdlcParameters(
            max_info_tx=min(ua.max_info_rx, p.max_info_tx),
            max_info_rx=min(ua.max_info_tx, p.max_info_rx),
            window_tx=min(ua.window_rx, p.window_tx),
            window_rx=min(ua.window_tx, p.window_rx),
        )
        self._reset(ClientLinkState.CONNECTED)
        self._events.append(LinkConnected(self.client_address, self._params))

    def _on_i(self, f: Frame) -> None:
        info = f.info
        if len(info) > self._params.max_info_rx:
            raise RemoteProtocolError(f"I-frame of {len(info)} octets exceeds max_info_rx {self._params.max_info_rx}")
        if not self._window.acknowledge(f.nr):
            raise RemoteProtocolError(f"I-frame with invalid N(R) {f.nr}")
        if f.ns != self._vr:
            if f.pf:
                self._send(FrameKind.RR)
            return
        self._vr = (self._vr + 1) & 7
        self._rx += info
        if f.segmented:
            if f.pf:
                self._send(FrameKind.RR)
            return
        apdu = bytes(self._rx)
        self._rx.clear()
        if apdu[:LLC_SIZE] != LLC_RESPONSE:
            raise RemoteProtocolError(f"response APDU without the LLC header E6 E7 00: {apdu[:3].hex(' ')}")
        apdu = apdu[LLC_SIZE:]
        if apdu[:LLC_SIZE] == LLC_RESPONSE:
            apdu = apdu[LLC_SIZE:]  # some meters send the LLC header twice
        self._events.append(ApduReceived(self.client_address, apdu))
        self._pump(retransmit=False)

    # -- output ---------------------------------------------------------------------------------

    def _pump(self, retransmit: bool) -> None:
        if self._awaiting or self._peer_busy:
            return
        frames = self._window.frames(
            self.server_address, self._me, self._vr, self._params.window_tx, retransmit
        )
        if frames:
            self._out.extend(frames)
            self._awaiting = True

    def _send(self, kind: FrameKind, info: bytes = b"") -> None:
        control = control_field(kind, pf=True, nr=self._vr)
        self._out.append(Frame(destination=self.server_address, source=self._me, control=control, info=info).to_bytes())
        self._awaiting = True

    def _reset(self, state: ClientLinkState) -> None:
        self._state = state
        self._window.reset()
        self._vr = 0
        self._rx.clear()
        self._awaiting = False
        self._peer_busy = False
