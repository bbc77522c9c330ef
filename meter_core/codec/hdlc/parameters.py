"""The HDLC parameter negotiation field of SNRM and UA (IEC 62056-46 clause 6.4.4.4.3.2, ISO/IEC 13239).

    81 (format identifier) 80 (group identifier: HDLC parameters) length
       05 n value   maximum information field length, transmit
       06 n value   maximum information field length, receive
       07 n value   window size, transmit
       08 n value   window size, receive

Each value is n = 1, 2 or 4 bytes, big-endian; a parameter left out takes its default (128 octets,
window 1). Values are from the sender's point of view: in an SNRM, ``max_info_tx`` is what the
client will send; in the UA, what the server will send. Real meters encode the information field
lengths on 1 or 2 bytes and the windows on 4, e.g. ``81 80 12 05 01 80 06 01 80 07 04 00 00 00 01
08 04 00 00 00 01``.
"""

from __future__ import annotations

from dataclasses import dataclass

from meter_core.codec.axdr import Reader, Writer
from meter_core.codec.errors import DecodeError, LocalProtocolError

FORMAT_IDENTIFIER = 0x81
GROUP_IDENTIFIER = 0x80
_MAX_INFO_TX = 0x05
_MAX_INFO_RX = 0x06
_WINDOW_TX = 0x07
_WINDOW_RX = 0x08
DEFAULT_MAX_INFO = 128
DEFAULT_WINDOW = 1
_U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class HdlcParameters:
    """Maximum information field lengths and window sizes, from one station's point of view."""

    max_info_tx: int = DEFAULT_MAX_INFO
    max_info_rx: int = DEFAULT_MAX_INFO
    window_tx: int = DEFAULT_WINDOW
    window_rx: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        for name in ("max_info_tx", "max_info_rx", "window_tx", "window_rx"):
            v = getattr(self, name)
            if type(v) is not int or not 1 <= v <= _U32_MAX:
                raise LocalProtocolError(f"HDLC parameter {name}={v!r} must be an integer 1..{_U32_MAX}")

    def reversed(self) -> HdlcParameters:
        """The same parameters seen from the peer: transmit and receive swapped."""
        return HdlcParameters(
            max_info_tx=self.max_info_rx, max_info_rx=self.max_info_tx, window_tx=self.window_rx,
            window_rx=self.window_tx,
        )

    def encode(self, w: Writer) -> None:
        w.push_bytes(self.to_bytes())

    def to_bytes(self) -> bytes:
        group = bytearray()
        for pid, value, size in (
            (_MAX_INFO_TX, self.max_info_tx, _info_size(self.max_info_tx)),
            (_MAX_INFO_RX, self.max_info_rx, _info_size(self.max_info_rx)),
            (_WINDOW_TX, self.window_tx, 4),
            (_WINDOW_RX, self.window_rx, 4),
        ):
            group.append(pid)
            group.append(size)
            group += value.to_bytes(size, "big")
        return bytes((FORMAT_IDENTIFIER, GROUP_IDENTIFIER, len(group))) + group

    @classmethod
    def decode(cls, r: Reader) -> HdlcParameters:
        """Parse the whole information field of an SNRM or UA (an empty one means all defaults)."""
        values = {
            _MAX_INFO_TX: DEFAULT_MAX_INFO, _MAX_INFO_RX: DEFAULT_MAX_INFO,
            _WINDOW_TX: DEFAULT_WINDOW, _WINDOW_RX: DEFAULT_WINDOW,
        }
        if r.eof():
            return cls()
        fmt = r.pull_u8()
        if fmt != FORMAT_IDENTIFIER:
            raise DecodeError(f"HDLC parameter format identifier {fmt:#04x}, expected 0x81")
        while not r.eof():
            gid = r.pull_u8()
            group = Reader(r.pull_bytes(r.pull_u8()))
            if gid != GROUP_IDENTIFIER:
                continue  # a user-defined group: nothing we can use
            while not group.eof():
                pid = group.pull_u8()
                size = group.pull_u8()
                if not 1 <= size <= 4:
                    raise DecodeError(f"HDLC parameter {pid:#04x} of {size} bytes")
                value = int.from_bytes(group.pull_bytes(size), "big")
                if pid in values:
                    if value == 0:
                        raise DecodeError(f"HDLC parameter {pid:#04x} is zero")
                    values[pid] = value
        return cls(
            max_info_tx=values[_MAX_INFO_TX], max_info_rx=values[_MAX_INFO_RX],
            window_tx=values[_WINDOW_TX], window_rx=values[_WINDOW_RX],
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> HdlcParameters:
        return cls.decode(Reader(data))


def _info_size(v: int) -> int:
    return 1 if v <= 0xFF else 2 if v <= 0xFFFF else 4
