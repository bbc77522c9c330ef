"""HDLC, the data link layer of DLMS over serial lines and "HDLC over TCP" (IEC 62056-46)."""

from meter_core.codec.hdlc._link import LLC_COMMAND, LLC_RESPONSE
from meter_core.codec.hdlc.client import ClientLinkState, HdlcClientStation
from meter_core.codec.hdlc.events import ApduReceived, FrameRejected, LinkConnected, LinkDisconnected
from meter_core.codec.hdlc.frames import (
    CRC_TABLE,
    FLAG,
    MAX_FRAME_LENGTH,
    Deframer,
    Frame,
    FrameKind,
    HdlcAddress,
    control_field,
    crc16,
    crc16_reference,
)
from meter_core.codec.hdlc.parameters import HdlcParameters
from meter_core.codec.hdlc.server import (
    MAX_INFO_FIELD,
    HdlcServerConnection,
    HdlcServerSettings,
    LinkState,
    RejectReason,
)

__all__ = [
    "CRC_TABLE",
    "FLAG",
    "LLC_COMMAND",
    "LLC_RESPONSE",
    "MAX_FRAME_LENGTH",
    "MAX_INFO_FIELD",
    "ApduReceived",
    "ClientLinkState",
    "Deframer",
    "Frame",
    "FrameKind",
    "FrameRejected",
    "HdlcAddress",
    "HdlcClientStation",
    "HdlcParameters",
    "HdlcServerConnection",
    "HdlcServerSettings",
    "LinkConnected",
    "LinkDisconnected",
    "LinkState",
    "RejectReason",
    "control_field",
    "crc16",
    "crc16_reference",
]
