"""The meter's side of an HDLC link: a secondary station (IEC 62056-46 clause 6.4.4, ISO/IEC 13239 NRM).

One link at a time, with one client; an SNRM from another client takes the link over. The meter
speaks only when polled: every command with P=1 gets exactly one burst of frames whose last has
F=1. An I-frame completing an APDU with P=1 is answered by the I-frames of the response
(`HdlcServerConnection.send_apdu`); if the layer above has consumed its events and sent nothing
by the time it calls `data_to_send`, the poll is answered with RR.

Choices where the standard leaves room, documented here once:

- Frames for another station (logical address, or physical address unless
  ``accept_any_physical``), broadcast addresses included, and frames whose source is not a 1-byte
  client address, are ignored, as on a multidrop line.
- An APDU whose first segment does not start with the LLC header E6 E6 00 is dropped silently
  (its frames are still acknowledged); so is an APDU longer than ``max_apdu_size``.
- An SNRM whose parameter field does not decode is refused with DM.
- In NDM, I, RR, RNR and DISC with P=1 are answered with DM; without P they are ignored.
- A DISC is accepted even with an information field.
- The FRMR information field follows ISO/IEC 13239 clause 5.5.3.4.2: rejected control byte,
  ``V(S) << 1 | V(R) << 5``, then the W X Y Z bits (X is sent together with W, as that clause
  requires). Until SNRM or DISC, further polls are answered with the same FRMR.
- A frame that passes HCS/FCS but does not decode (a 3-byte address, ...) is dropped like a frame
  with a bad FCS; nothing ever escapes `receive_data`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum, IntFlag
from typing import Any

from meter_core.codec._util import NEED_DATA, Sentinel
from meter_core.codec.errors import DecodeError, LocalProtocolError
from meter_core.codec.hdlc._link import LLC_COMMAND, LLC_RESPONSE, LLC_SIZE, SendWindow
from meter_core.codec.hdlc.events import ApduReceived, FrameRejected, LinkConnected, LinkDisconnected
from meter_core.codec.hdlc.frames import Deframer, Frame, FrameKind, HdlcAddress, control_field
from meter_core.codec.hdlc.parameters import HdlcParameters

MAX_INFO_FIELD = 2030
"""The largest information field we agree to: the 11-bit frame length (2047) less the largest header."""
MAX_WINDOW = 7


class LinkState(Enum):
    """Modes of a secondary station (ISO/IEC 13239 clauses 5.6 and 6.11.4.1)."""

    NDM = "NDM"  # normal disconnected mode
    NRM = "NRM"  # normal response mode
    FRAME_REJECT = "FRMR"  # NRM after we sent FRMR, until the client sends SNRM or DISC


class RejectReason(IntFlag):
    """The W, X, Y, Z bits of the FRMR information field (ISO/IEC 13239 clause 5.5.3.4.2)."""

    W = 0x01  # control field undefined or not implemented
    X = 0x02  # information field not permitted with this frame (sent with W)
    Y = 0x04  # information field longer than the maximum agreed
    Z = 0x08  # invalid N(R)


_REASON_TEXT = {
    RejectReason.W: "control field {:#04x} undefined or not implemented",
    RejectReason.W | RejectReason.X: "control field {:#04x} with an information field it may not carry",
    RejectReason.Y: "control field {:#04x}: information field longer than max_info_rx",
    RejectReason.Z: "control field {:#04x} with an invalid N(R)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HdlcServerSettings:
    """Who the meter is on the HDLC link and the limits it will agree to (IEC 62056-46 clause 6.4.4.4.3.2)."""

    physical_address: int
    logical_address: int = 1
    accept_any_physical: bool = False
    max_info_tx: int = MAX_INFO_FIELD
    max_info_rx: int = MAX_INFO_FIELD
    window_tx: int = 1
    window_rx: int = 1
    inactivity_timeout: float = 120.0
    max_apdu_size: int = 0x10000

    def __post_init__(self) -> None:
        if not 0 <= self.physical_address <= 0x3FFF or not 0 <= self.logical_address <= 0x3FFF:
            raise LocalProtocolError("HDLC addresses are 14-bit numbers")
        if not (1 <= self.max_info_tx <= MAX_INFO_FIELD and 1 <= self.max_info_rx <= MAX_INFO_FIELD):
            raise LocalProtocolError(f"maximum information field lengths are 1..{MAX_INFO_FIELD}")
        if not (1 <= self.window_tx <= MAX_WINDOW and 1 <= self.window_rx <= MAX_WINDOW):
            raise LocalProtocolError(f"window sizes are 1..{MAX_WINDOW}")
        if not self.inactivity_timeout > 0:
            raise LocalProtocolError("inactivity_timeout must be positive")


# (state, frame kind) -> handler. Anything else: ignored in NDM, FRMR W in NRM, FRMR repeated in
# the frame-reject condition.
_HANDLERS: dict[tuple[LinkState, FrameKind | None], str] = {
    (LinkState.NDM, FrameKind.SNRM): "_on_snrm",
    (LinkState.NDM, FrameKind.I): "_answer_dm",
    (LinkState.NDM, FrameKind.RR): "_answer_dm",
    (LinkState.NDM, FrameKind.RNR): "_answer_dm",
    (LinkState.NDM, FrameKind.DISC): "_answer_dm",
    (LinkState.NRM, FrameKind.SNRM): "_on_snrm",
    (LinkState.NRM, FrameKind.I): "_on_i",
    (LinkState.NRM, FrameKind.RR): "_on_rr",
    (LinkState.NRM, FrameKind.RNR): "_on_rnr",
    (LinkState.NRM, FrameKind.DISC): "_on_disc",
    (LinkState.NRM, FrameKind.UI): "_ignore",
    (LinkState.FRAME_REJECT, FrameKind.SNRM): "_on_snrm",
    (LinkState.FRAME_REJECT, FrameKind.DISC): "_on_disc",
    (LinkState.FRAME_REJECT, FrameKind.UI): "_ignore",
}
_DEFAULT_HANDLER = {
    LinkState.NDM: "_ignore",
    LinkState.NRM: "_reject_control",
    LinkState.FRAME_REJECT: "_repeat_frmr",
}


class HdlcServerConnection:
    """The meter's end of one HDLC link over a byte stream (sans-I/O)."""

    __slots__ = (
        "settings", "_state", "_deframer", "_events", "_out", "_dispatch", "_client", "_peer", "_address",
        "_params", "_window", "_vr", "_rx", "_rx_active", "_rx_bad", "_poll_owed", "_peer_busy", "_last_rx",
        "_frmr",
    )

    def __init__(self, settings: HdlcServerSettings) -> None:
        self.settings = settings
        self._state = LinkState.NDM
        self._deframer = Deframer()
        self._events: deque[Any] = deque()
        self._out: list[bytes] = []
        self._dispatch = {key: getattr(self, name) for key, name in _HANDLERS.items()}
        for state, name in _DEFAULT_HANDLER.items():
            for kind in (*FrameKind, None):
                self._dispatch.setdefault((state, kind), getattr(self, name))
        self._client = 0
        self._peer = HdlcAddress(upper=0, lower=None, size=1)
        self._address = HdlcAddress(upper=settings.logical_address & 0x7F, lower=None, size=1)
        self._params = HdlcParameters()
        self._window = SendWindow()
        self._vr = 0
        self._rx = bytearray()
        self._rx_active = False
        self._rx_bad = False
        self._poll_owed = False
        self._peer_busy = False
        self._last_rx = 0.0
        self._frmr = b""

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def parameters(self) -> HdlcParameters:
        """The negotiated parameters, from the meter's view (valid in NRM)."""
        return self._params

    # -- the sans-I/O surface -------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the client. Never raises: bad frames are answered or dropped."""
        if not data:
            return
        deframer = self._deframer
        deframer.feed(data)
        while True:
            try:
                frame = deframer.next_frame()
            except DecodeError:
                continue
            if frame is NEED_DATA:
                return
            self._on_frame(frame, now)

    def next_event(self) -> ApduReceived | LinkConnected | LinkDisconnected | FrameRejected | Sentinel:
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    def data_to_send(self) -> bytes:
        if self._poll_owed and not self._events:
            self._answer_poll(retransmit=False)
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send_apdu(self, apdu: bytes) -> None:
        """Queue a response APDU; it goes out as I-frames when the client polls.

        Dropped when the link is no longer in NRM (a DISC or SNRM may have been processed after the
        request that this answers).
        """
        if self._state is not LinkState.NRM:
            return
        self._window.push_apdu(LLC_RESPONSE + apdu, self._params.max_info_tx)
        if self._poll_owed:
            self._answer_poll(retransmit=False)

    def next_deadline(self) -> float | None:
        if self._state is LinkState.NDM:
            return None
        return self._last_rx + self.settings.inactivity_timeout

    def handle_timer(self, now: float) -> None:
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self._events.append(LinkDisconnected(self._client))
            self._reset(LinkState.NDM)

    # -- frames ---------------------------------------------------------------------------------

    def _on_frame(self, f: Frame, now: float) -> None:
        dest = f.destination
        s = self.settings
        if dest.upper != s.logical_address or f.source.size != 1:
            return
        if dest.size != 1 and not s.accept_any_physical and dest.lower != s.physical_address:
            return
        kind = f.kind
        if self._state is not LinkState.NDM and f.source.upper != self._client and kind is not FrameKind.SNRM:
            return
        self._last_rx = now
        self._dispatch[self._state, kind](f)

    def _ignore(self, f: Frame) -> None:
        pass

    def _on_snrm(self, f: Frame) -> None:
        previous = self._client if self._state is not LinkState.NDM else None
        try:
            proposal = HdlcParameters.from_bytes(f.info)
        except DecodeError:
            self._reset(LinkState.NDM)
            if previous is not None:
                self._events.append(LinkDisconnected(previous))
            self._send_to(f.source, f.destination, FrameKind.DM, f.pf)
            return
        s = self.settings
        params = HdlcParameters(
            max_info_tx=min(proposal.max_info_rx, s.max_info_tx),
            max_info_rx=min(proposal.max_info_tx, s.max_info_rx),
            window_tx=min(proposal.window_rx, s.window_tx),
            window_rx=min(proposal.window_tx, s.window_rx),
        )
        if previous is not None and previous != f.source.upper:
            self._events.append(LinkDisconnected(previous))
        self._reset(LinkState.NRM)
        self._client = f.source.upper
        self._peer = f.source
        self._address = f.destination
        self._params = params
        self._send(FrameKind.UA, f.pf, info=params.to_bytes())
        self._events.append(LinkConnected(self._client, params))

    def _answer_dm(self, f: Frame) -> None:
        if f.pf:
            self._send_to(f.source, f.destination, FrameKind.DM, True)

    def _on_disc(self, f: Frame) -> None:
        self._send(FrameKind.UA, f.pf)
        self._events.append(LinkDisconnected(self._client))
        self._reset(LinkState.NDM)

    def _on_i(self, f: Frame) -> None:
        info = f.info
        if len(info) > self._params.max_info_rx:
            return self._reject(f, RejectReason.Y)
        if not self._window.acknowledge(f.nr):
            return self._reject(f, RejectReason.Z)
        if f.ns != self._vr:
            # Out of sequence (a retransmission, or a frame lost before it): report V(R), drop.
            if f.pf:
                self._send(FrameKind.RR, True)
            return
        self._vr = (self._vr + 1) & 7
        if not self._rx_active:
            if not f.segmented:
                # The common case: a whole APDU in one frame.
                if info[:LLC_SIZE] == LLC_COMMAND:
                    self._events.append(ApduReceived(self._client, info[LLC_SIZE:]))
                if f.pf:
                    self._poll_owed = True
                return
            self._rx_active = True
            self._rx_bad = info[:LLC_SIZE] != LLC_COMMAND
            self._rx.clear()
            if not self._rx_bad:
                self._rx += memoryview(info)[LLC_SIZE:]
        elif not self._rx_bad:
            if len(self._rx) + len(info) > self.settings.max_apdu_size:
                self._rx_bad = True
                self._rx.clear()
            else:
                self._rx += info
        if f.segmented:
            if f.pf:
                self._send(FrameKind.RR, True)
            return
        self._rx_active = False
        if not self._rx_bad:
            self._events.append(ApduReceived(self._client, bytes(self._rx)))
        self._rx.clear()
        if f.pf:
            self._poll_owed = True

    def _on_rr(self, f: Frame) -> None:
        if f.info:
            return self._reject(f, RejectReason.W | RejectReason.X)
        if not self._window.acknowledge(f.nr):
            return self._reject(f, RejectReason.Z)
        self._peer_busy = False
        if f.pf:
            self._answer_poll(retransmit=True)

    def _on_rnr(self, f: Frame) -> None:
        if f.info:
            return self._reject(f, RejectReason.W | RejectReason.X)
        if not self._window.acknowledge(f.nr):
            return self._reject(f, RejectReason.Z)
        self._peer_busy = True
        if f.pf:
            self._poll_owed = False
            self._send(FrameKind.RR, True)

    def _reject_control(self, f: Frame) -> None:
        self._reject(f, RejectReason.W)

    def _reject(self, f: Frame, reason: RejectReason) -> None:
        self._frmr = bytes((f.control, (self._window.vs << 1) | (self._vr << 5), reason))
        self._state = LinkState.FRAME_REJECT
        self._poll_owed = False
        if f.pf:
            self._send(FrameKind.FRMR, True, info=self._frmr)
        self._events.append(FrameRejected(_REASON_TEXT[reason].format(f.control)))

    def _repeat_frmr(self, f: Frame) -> None:
        if f.pf:
            self._send(FrameKind.FRMR, True, info=self._frmr)

    # -- output ---------------------------------------------------------------------------------

    def _answer_poll(self, retransmit: bool) -> None:
        """Answer the client's poll: I-frames (the last with F=1) if any may go, else RR."""
        self._poll_owed = False
        frames = [] if self._peer_busy else self._window.frames(
            self._peer, self._address, self._vr, self._params.window_tx, retransmit
        )
        if frames:
            self._out.extend(frames)
        else:
            self._send(FrameKind.RR, True)

    def _send(self, kind: FrameKind, pf: bool, info: bytes = b"") -> None:
        control = control_field(kind, pf=pf, nr=self._vr)
        self._out.append(Frame(destination=self._peer, source=self._address, control=control, info=info).to_bytes())

    def _send_to(self, destination: HdlcAddress, source: HdlcAddress, kind: FrameKind, pf: bool) -> None:
        control = control_field(kind, pf=pf)
        self._out.append(Frame(destination=destination, source=source, control=control).to_bytes())

    def _reset(self, state: LinkState) -> None:
        self._state = state
        self._window.reset()
        self._vr = 0
        self._rx.clear()
        self._rx_active = False
        self._rx_bad = False
        self._poll_owed = False
        self._peer_busy = False
        self._frmr = b""
