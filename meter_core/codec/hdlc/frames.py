"""HDLC frames of format type 3 and a deframer (IEC 62056-46 clause 6.4, after ISO/IEC 13239).

Primer. A frame sits between two 0x7E flags; two frames sent back to back may share one flag.

    7E | format (2) | destination (1, 2 or 4) | source (1, 2 or 4) | control (1)
       | [HCS (2) | information (n)] | FCS (2) | 7E

The format field is ``0xA000 | S << 11 | length``: type 3, the segmentation bit S (more segments
of this APDU follow) and the 11-bit frame length, flags excluded. Type 3 frames are not
byte-stuffed, so the length is the only way to find the closing flag; a 0x7E inside the
information field is ordinary data. An address is a sequence of bytes, 7 bits each in the high
bits, the low bit set on the last byte. The server (meter) address has 1 byte (upper, the logical
device), 2 bytes (upper, lower) or 4 bytes (two bytes each, 14 bits each); the lower part is the
physical address. A client address has one byte. HCS and FCS are CRC-16/X.25 (ISO/IEC 13239
clause 4.2.5.2), sent least significant byte first. HCS covers format, addresses and control and
exists only when an information field follows; FCS covers everything between the flags.

Control field (ISO/IEC 13239 clause 5.3, IEC 62056-46 clause 6.4.3), bit 1 sent first::

    I      N(R) N(R) N(R) P  N(S) N(S) N(S) 0
    RR     N(R) N(R) N(R) P/F 0 0 0 1        RNR  ... P/F 0 1 0 1
    SNRM   1 0 0 P 0 0 1 1 (0x83)  DISC 0x43  UA 0x63  DM 0x0F  FRMR 0x87  UI 0x03   (| 0x10 for P/F)
"""

from __future__ import annotations

from binascii import crc_hqx
from dataclasses import dataclass
from enum import Enum

from meter_core.codec._util import NEED_DATA, Sentinel
from meter_core.codec.axdr import Reader, Writer
from meter_core.codec.errors import DecodeError, LocalProtocolError

FLAG = 0x7E
_FLAG_BYTE = b"\x7e"
_FORMAT_TYPE_3 = 0xA000
_FORMAT_TYPE_MASK = 0xF000
SEGMENTATION_BIT = 0x0800
_LENGTH_MASK = 0x07FF
MAX_FRAME_LENGTH = _LENGTH_MASK
"""The largest frame the 11-bit length field can describe (flags excluded)."""
_MIN_FRAME_LENGTH = 7  # format 2, destination 1, source 1, control 1, FCS 2
_COMPACT_AT = 8192  # bytes already returned that the deframer drops from its buffer

# -- CRC-16/X.25 -------------------------------------------------------------------------------
#
# CRC-16/X.25: polynomial 0x1021 reflected (0x8408), initial value 0xFFFF, reflected input and
# output, final XOR 0xFFFF; check value 0x906E over b"123456789". A reflected CRC equals the bit
# reversal of the plain (MSB-first) CRC over bit-reversed bytes with the same initial value, so
# the work is done by C code: ``bytes.translate`` with the bit-reversal table and
# ``binascii.crc_hqx`` (plain CRC-CCITT, polynomial 0x1021). Both tables are built once here.

_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))

def _crc_table() -> tuple[int, ...]:
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


CRC_TABLE = _crc_table()
"""The byte-wise table of the reflected algorithm, for `crc16_reference` (tests, documentation)."""


def _crc_final(register: int) -> int:
    rev = _BIT_REVERSED
    return ((rev[register & 0xFF] << 8) | rev[register >> 8]) ^ 0xFFFF


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X.25 of ``data`` (ISO/IEC 13239 clause 4.2.5.2): the HCS/FCS value."""
    return _crc_final(crc_hqx(bytes(data).translate(_BIT_REVERSED), 0xFFFF))


def crc16_reference(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X.25 computed byte by byte with `CRC_TABLE`; slow, kept to cross-check `crc16`."""
    crc = 0xFFFF
    table = CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFF


# -- addresses ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HdlcAddress:
    """An HDLC address and the size of its encoding (IEC 62056-46 clause 6.4.2.2).

    ``size`` 1: ``upper`` only (a client address, or a server's logical device in the 1-byte
    form); 2: one byte each for ``upper`` (logical) and ``lower`` (physical), 7 bits each; 4: two
    bytes each, 14 bits each.
    """

    upper: int
    lower: int | None
    size: int

    def __post_init__(self) -> None:
        size, upper, lower = self.size, self.upper, self.lower
        if size == 1:
            if lower is not None or not 0 <= upper <= 0x7F:
                raise LocalProtocolError(f"1-byte HDLC address needs upper 0..127 and no lower: {self}")
        elif size in (2, 4):
            top = 0x7F if size == 2 else 0x3FFF
            if lower is None or not (0 <= upper <= top and 0 <= lower <= top):
                raise LocalProtocolError(f"{size}-byte HDLC address needs upper and lower 0..{top}: {self}")
        else:
            raise LocalProtocolError(f"HDLC address size must be 1, 2 or 4, not {size}")

    def to_bytes(self) -> bytes:
        """The address field: 7 bits a byte in the high bits, the low bit set on the last byte."""
        upper, lower = self.upper, self.lower
        if self.size == 1:
            return bytes(((upper << 1) | 1,))
        if self.size == 2:
            return bytes((upper << 1, (lower << 1) | 1))
        return bytes(((upper >> 6) & 0xFE, (upper << 1) & 0xFE, (lower >> 6) & 0xFE, ((lower << 1) & 0xFE) | 1))


def _pull_address(buf: bytes | bytearray, pos: int, end: int) -> tuple[HdlcAddress, int]:
    """Decode the address field starting at ``pos``: (address, position after it)."""
    n = 0
    while True:
        if pos + n >= end:
            raise DecodeError("HDLC frame ends inside an address field")
        last = buf[pos + n]
        n += 1
        if last & 1:
            break
        if n == 4:
            raise DecodeError("HDLC address field longer than 4 bytes")
    if n == 1:
        return HdlcAddress(upper=last >> 1, lower=None, size=1), pos + 1
    if n == 2:
        return HdlcAddress(upper=buf[pos] >> 1, lower=last >> 1, size=2), pos + 2
    if n == 4:
        upper = ((buf[pos] >> 1) << 7) | (buf[pos + 1] >> 1)
        lower = ((buf[pos + 2] >> 1) << 7) | (last >> 1)
        return HdlcAddress(upper=upper, lower=lower, size=4), pos + 4
    raise DecodeError("HDLC address field of 3 bytes")


# -- control field -----------------------------------------------------------------------------


class FrameKind(Enum):
    """Frame types by control field (ISO/IEC 13239 clause 5.3; the subset of IEC 62056-46 6.4.3)."""

    I = "I"  # noqa: E741 - the standard's name
    RR = "RR"
    RNR = "RNR"
    SNRM = "SNRM"
    DISC = "DISC"
    UA = "UA"
    DM = "DM"
    FRMR = "FRMR"
    UI = "UI"


POLL_FINAL = 0x10
_UNNUMBERED = {
    FrameKind.SNRM: 0x83,
    FrameKind.DISC: 0x43,
    FrameKind.UA: 0x63,
    FrameKind.DM: 0x0F,
    FrameKind.FRMR: 0x87,
    FrameKind.UI: 0x03,
}
_SUPERVISORY = {FrameKind.RR: 0x01, FrameKind.RNR: 0x05}


def _classify(control: int) -> FrameKind | None:
    if not control & 1:
        return FrameKind.I
    if control & 3 == 1:
        low = control & 0x0F
        return next((k for k, v in _SUPERVISORY.items() if v == low), None)  # REJ, SREJ: unsupported
    base = control & ~POLL_FINAL
    return next((k for k, v in _UNNUMBERED.items() if v == base), None)


_KIND_BY_CONTROL: tuple[FrameKind | None, ...] = tuple(_classify(c) for c in range(256))


def control_field(kind: FrameKind, *, pf: bool = True, ns: int = 0, nr: int = 0) -> int:
    """The control byte of a frame of ``kind`` (N(S) only for I, N(R) for I, RR and RNR)."""
    p = POLL_FINAL if pf else 0
    if kind is FrameKind.I:
        return ((nr & 7) << 5) | p | ((ns & 7) << 1)
    if kind in _SUPERVISORY:
        return ((nr & 7) << 5) | p | _SUPERVISORY[kind]
    return _UNNUMBERED[kind] | p


# -- frames ------------------------------------------------------------------------------------


class _BadCheck(DecodeError):
    """HCS or FCS does not match: the standard says discard the frame silently."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One HDLC frame of format type 3 (IEC 62056-46 clause 6.4).

    ``control`` is the raw control byte, so that a frame with a control field we do not know
    still decodes (the server answers it with FRMR); `kind`, `pf`, `ns` and `nr` read it.
    """

    destination: HdlcAddress
    source: HdlcAddress
    control: int
    info: bytes = b""
    segmented: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.control <= 0xFF:
            raise LocalProtocolError(f"control field {self.control} out of range")
        if self.length > MAX_FRAME_LENGTH:
            raise LocalProtocolError(f"HDLC frame of {self.length} octets exceeds {MAX_FRAME_LENGTH}")

    @property
    def kind(self) -> FrameKind | None:
        """The frame type, or None for a control field outside IEC 62056-46 (REJ, SREJ, ...)."""
        return _KIND_BY_CONTROL[self.control]

    @property
    def pf(self) -> bool:
        """The poll (command) or final (response) bit."""
        return bool(self.control & POLL_FINAL)

    @property
    def ns(self) -> int:
        """N(S), the send sequence number of an I-frame."""
        return (self.control >> 1) & 7

    @property
    def nr(self) -> int:
        """N(R), the receive sequence number of an I, RR or RNR frame."""
        return self.control >> 5

    @property
    def length(self) -> int:
        """The frame length field: octets between the flags."""
        n = 5 + self.destination.size + self.source.size
        return n + len(self.info) + 2 if self.info else n

    def to_bytes(self) -> bytes:
        """The frame with both flags, ready for the wire."""
        length = self.length
        head = bytearray(_FLAG_BYTE)
        head += (_FORMAT_TYPE_3 | (SEGMENTATION_BIT if self.segmented else 0) | length).to_bytes(2, "big")
        head += self.destination.to_bytes()
        head += self.source.to_bytes()
        head.append(self.control)
        info = self.info
        register = crc_hqx(bytes(head[1:]).translate(_BIT_REVERSED), 0xFFFF)
        if info:
            hcs = _crc_final(register).to_bytes(2, "little")
            register = crc_hqx(hcs.translate(_BIT_REVERSED), register)
            register = crc_hqx(info.translate(_BIT_REVERSED), register)
            head += hcs
            head += info
        head += _crc_final(register).to_bytes(2, "little")
        head.append(FLAG)
        return bytes(head)

    def encode(self, w: Writer) -> None:
        w.push_bytes(self.to_bytes())

    @classmethod
    def decode(cls, r: Reader) -> Frame:
        """One frame, opening and closing flag included; `DecodeError` if it is not a valid frame."""
        if r.pull_u8() != FLAG:
            raise DecodeError("HDLC frame does not start with a flag")
        fmt = r.pull_u16()
        body = fmt.to_bytes(2, "big") + r.pull_bytes(max((fmt & _LENGTH_MASK) - 2, 0))
        if r.pull_u8() != FLAG:
            raise DecodeError("HDLC frame length does not reach the closing flag")
        return _parse(body, 0, len(body))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Frame:
        """Decode exactly one flagged frame."""
        r = Reader(data)
        frame = cls.decode(r)
        if not r.eof():
            raise DecodeError(f"{r.remaining()} bytes after the HDLC frame")
        return frame


def _parse(buf: bytes | bytearray, start: int, end: int) -> Frame:
    """The frame in ``buf[start:end]`` (format field to FCS, flags excluded)."""
    length = end - start
    if length < _MIN_FRAME_LENGTH:
        raise DecodeError(f"HDLC frame of {length} octets is too short")
    fmt = (buf[start] << 8) | buf[start + 1]
    if fmt & _FORMAT_TYPE_MASK != _FORMAT_TYPE_3:
        raise DecodeError(f"HDLC format field {fmt:#06x} is not frame format type 3")
    if fmt & _LENGTH_MASK != length:
        raise DecodeError(f"HDLC length field {fmt & _LENGTH_MASK} but the frame has {length} octets")
    destination, pos = _pull_address(buf, start + 2, end - 3)
    source, pos = _pull_address(buf, pos, end - 3)
    control = buf[pos]
    header = pos + 1 - start
    info_size = length - header - 4
    if info_size == -2:
        info_size = 0
    elif info_size <= 0:
        raise DecodeError("HDLC frame with an HCS but no information field")
    # One pass over the bit-reversed frame computes HCS and FCS.
    view = memoryview(bytes(buf[start:end]).translate(_BIT_REVERSED))
    register = crc_hqx(view[:header], 0xFFFF)
    if info_size:
        if _crc_final(register) != buf[start + header] | (buf[start + header + 1] << 8):
            raise _BadCheck("HDLC HCS mismatch")
        register = crc_hqx(view[header : length - 2], register)
    if _crc_final(register) != buf[end - 2] | (buf[end - 1] << 8):
        raise _BadCheck("HDLC FCS mismatch")
    info = bytes(buf[start + header + 2 : end - 2]) if info_size else b""
    return Frame(
        destination=destination, source=source, control=control, info=info, segmented=bool(fmt & SEGMENTATION_BIT)
    )


class Deframer:
    """Cuts a byte stream into HDLC frames, whatever the chunking (IEC 62056-46 clause 6.4.1).

    Bytes before a flag are skipped; a closing flag may open the next frame. A frame whose HCS or
    FCS does not match is discarded silently, as the standard requires, and counted in
    ``discarded``. When the length field does not lead to a closing flag, the opening flag was
    not one and the search for a frame start moves on by one byte. A frame whose checks pass but
    whose fields do not decode (a 3-byte address, ...) is consumed and `DecodeError` raised; the
    next call goes on with the bytes after it.
    """

    __slots__ = ("_buf", "_pos", "discarded")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.discarded = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame or skipped."""
        return len(self._buf) - self._pos

    def next_frame(self) -> Frame | Sentinel:
        """The next whole valid `Frame`, or NEED_DATA."""
        buf = self._buf
        n = len(buf)
        pos = self._pos
        while True:
            start = buf.find(_FLAG_BYTE, pos)
            if start < 0:
                self._drop(n)
                return NEED_DATA
            # A run of flags (an empty frame, or closing and opening flags both sent): the frame
            # starts after the last one. A format field never begins with 0x7E.
            while start + 1 < n and buf[start + 1] == FLAG:
                start += 1
            if start + 3 > n:
                self._drop(start)
                return NEED_DATA
            fmt = (buf[start + 1] << 8) | buf[start + 2]
            length = fmt & _LENGTH_MASK
            if fmt & _FORMAT_TYPE_MASK != _FORMAT_TYPE_3 or length < _MIN_FRAME_LENGTH:
                pos = start + 1
                continue
            close = start + 1 + length
            if close >= n:
                self._drop(start)
                return NEED_DATA
            if buf[close] != FLAG:
                pos = start + 1  # the length does not reach a flag: resynchronise
                continue
            try:
                frame = _parse(buf, start + 1, close)
            except _BadCheck:
                self.discarded += 1
                pos = close
                continue
            except DecodeError:
                self._advance(close)
                raise
            self._advance(close)
            return frame

    def _advance(self, pos: int) -> None:
        # Keep the closing flag: it may open the next frame.
        if pos >= _COMPACT_AT:
            del self._buf[:pos]
            pos = 0
        self._pos = pos

    def _drop(self, pos: int) -> None:
        del self._buf[:pos]
        self._pos = 0
