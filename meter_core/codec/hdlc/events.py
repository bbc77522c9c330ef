"""Events of an HDLC station (IEC 62056-46): what the layer above must know. Immutable, no subclassing."""

from __future__ import annotations

from dataclasses import dataclass

from meter_core.codec.hdlc.parameters import HdlcParameters


@dataclass(frozen=True, slots=True)
class ApduReceived:
    """A whole APDU arrived (segments reassembled, LLC header removed)."""

    client_address: int
    apdu: bytes


@dataclass(frozen=True, slots=True)
class LinkConnected:
    """The link entered NRM (SNRM answered by UA); ``parameters`` from the emitting station's view."""

    client_address: int
    parameters: HdlcParameters


@dataclass(frozen=True, slots=True)
class LinkDisconnected:
    """The link went back to NDM: DISC, DM, or the inactivity timeout."""

    client_address: int


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """The server answered a frame with FRMR (ISO/IEC 13239 clause 5.5.3.4.2); ``reason`` says why."""

    reason: str
