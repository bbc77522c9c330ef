"""A-XDR: the encoding of COSEM data (IEC 62056-6-2 clause 4.1.6, IEC 61334-6).

Primer. A COSEM value travels as a one-byte type tag followed by its contents. Integers are
big-endian and of fixed size; strings and arrays carry a variable-length count first: one byte up to
0x7F, otherwise 0x80 | n followed by an n-byte big-endian count. A structure or an array is its
element count followed by the elements, each with its own tag. A bit-string gives its length in
*bits*, then the bytes, first bit in the most significant bit of the first byte.

`Reader` is a cursor over a memoryview that raises `DecodeError` on underrun; `Writer` appends to
a bytearray. A decoded value is a `Data` (tag, value); composite values hold tuples of `Data`.
"""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

from meter_core.codec.errors import DecodeError, LocalProtocolError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")


class DataType(IntEnum):
    """Data type tags of the COSEM Data CHOICE (IEC 62056-6-2 clause 4.1.5, Table 2)."""

    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27


class Reader:
    """A cursor over bytes; every ``pull_*`` raises `DecodeError` when the data runs out."""

    __slots__ = ("_buf", "_pos", "_end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None) -> None:
        self._buf = memoryview(data)
        self._pos = pos
        self._end = len(self._buf) if end is None else end

    def tell(self) -> int:
        return self._pos

    def remaining(self) -> int:
        return self._end - self._pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def _need(self, n: int) -> int:
        pos = self._pos
        if pos + n > self._end:
            raise DecodeError(f"truncated: need {n} bytes at offset {pos}, have {self._end - pos}")
        self._pos = pos + n
        return pos

    def pull_u8(self) -> int:
        pos = self._pos
        if pos >= self._end:
            raise DecodeError(f"truncated: need 1 byte at offset {pos}")
        self._pos = pos + 1
        return self._buf[pos]

    def peek_u8(self) -> int:
        if self._pos >= self._end:
            raise DecodeError(f"truncated: need 1 byte at offset {self._pos}")
        return self._buf[self._pos]

    def pull_u16(self) -> int:
        return _U16.unpack_from(self._buf, self._need(2))[0]

    def pull_u32(self) -> int:
        return _U32.unpack_from(self._buf, self._need(4))[0]

    def pull_u64(self) -> int:
        return _U64.unpack_from(self._buf, self._need(8))[0]

    def pull_i8(self) -> int:
        return _I8.unpack_from(self._buf, self._need(1))[0]

    def pull_i16(self) -> int:
        return _I16.unpack_from(self._buf, self._need(2))[0]

    def pull_i32(self) -> int:
        return _I32.unpack_from(self._buf, self._need(4))[0]

    def pull_i64(self) -> int:
        return _I64.unpack_from(self._buf, self._need(8))[0]

    def pull_f32(self) -> float:
        return _F32.unpack_from(self._buf, self._need(4))[0]

    def pull_f64(self) -> float:
        return _F64.unpack_from(self._buf, self._need(8))[0]

    def pull_bytes(self, n: int) -> bytes:
        pos = self._need(n)
        return bytes(self._buf[pos : pos + n])

    def pull_rest(self) -> bytes:
        pos = self._pos
        self._pos = self._end
        return bytes(self._buf[pos : self._end])

    def pull_length(self) -> int:
        """A-XDR length or element count: one byte up to 0x7F, else 0x8n and n big-endian bytes."""
        first = self.pull_u8()
        if first < 0x80:
            return first
        n = first & 0x7F
        if n == 0 or n > 4:
            raise DecodeError(f"unsupported length-of-length {n}")
        pos = self._need(n)
        return int.from_bytes(self._buf[pos : pos + n], "big")

    def skip(self, n: int) -> None:
        self._need(n)

    def slice_since(self, start: int) -> bytes:
        """The bytes consumed since offset ``start`` (to keep a decoded element's raw form)."""
        return bytes(self._buf[start : self._pos])


class Writer:
    """An append-only byte buffer with A-XDR helpers."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self.buf)

    def __len__(self) -> int:
        return len(self.buf)

    def push_u8(self, v: int) -> None:
        self.buf.append(v)

    def push_u16(self, v: int) -> None:
        self.buf += _U16.pack(v)

    def push_u32(self, v: int) -> None:
        self.buf += _U32.pack(v)

    def push_u64(self, v: int) -> None:
        self.buf += _U64.pack(v)

    def push_i8(self, v: int) -> None:
        self.buf += _I8.pack(v)

    def push_i16(self, v: int) -> None:
        self.buf += _I16.pack(v)

    def push_i32(self, v: int) -> None:
        self.buf += _I32.pack(v)

    def push_i64(self, v: int) -> None:
        self.buf += _I64.pack(v)

    def push_f32(self, v: float) -> None:
        self.buf += _F32.pack(v)

    def push_f64(self, v: float) -> None:
        self.buf += _F64.pack(v)

    def push_bytes(self, b: bytes | bytearray | memoryview) -> None:
        self.buf += b

    def push_length(self, n: int) -> None:
        self.buf += encode_length(n)


def encode_length(n: int) -> bytes:
    """The A-XDR length prefix for ``n``."""
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return b"\x82" + _U16.pack(n)
    if n <= 0xFFFFFFFF:
        return b"\x84" + _U32.pack(n)
    raise LocalProtocolError(f"length {n} too large")


# -- date and time ---------------------------------------------------------------------------------

DEVIATION_NOT_SPECIFIED = -0x8000
NOT_SPECIFIED = 0xFF  # a byte field of a date, time or date-time that is not specified (a wildcard)
YEAR_NOT_SPECIFIED = 0xFFFF
# The 12 bytes of a date-time with every field not specified (0xFF, deviation 0x8000, status 0xFF).
DATETIME_NOT_SPECIFIED = b"\xff" * 9 + b"\x80\x00\xff"
DATETIME_LENGTH = 12
DATETIME_HEAD = bytes((DataType.OCTET_STRING, DATETIME_LENGTH))  # a date-time as data: an octet-string of 12


class ClockStatus(IntEnum):
    """Bits of the clock status byte (IEC 62056-6-2 clause 4.1.6.1, date-time)."""

    INVALID_VALUE = 0x01
    DOUBTFUL_VALUE = 0x02
    DIFFERENT_CLOCK_BASE = 0x04
    INVALID_CLOCK_STATUS = 0x08
    DAYLIGHT_SAVING_ACTIVE = 0x80


@dataclass(frozen=True, slots=True)
class CosemDateTime:
    """The 12-byte COSEM date-time (IEC 62056-6-2 clause 4.1.6.1).

    Fields hold the wire values, so "not specified" markers (0xFFFF year, 0xFF elsewhere, deviation
    -0x8000) survive a round trip. ``deviation`` is signed minutes; ``status`` is the clock status byte.
    """

    year: int = YEAR_NOT_SPECIFIED
    month: int = NOT_SPECIFIED
    day: int = NOT_SPECIFIED
    weekday: int = NOT_SPECIFIED
    hour: int = NOT_SPECIFIED
    minute: int = NOT_SPECIFIED
    second: int = NOT_SPECIFIED
    hundredths: int = NOT_SPECIFIED
    deviation: int = DEVIATION_NOT_SPECIFIED
    status: int = NOT_SPECIFIED

    def __post_init__(self) -> None:
        for name in ("month", "day", "weekday", "hour", "minute", "second", "hundredths", "status"):
            v = getattr(self, name)
            if not 0 <= v <= 0xFF:
                raise LocalProtocolError(f"date-time {name} {v} out of range")
        if not 0 <= self.year <= 0xFFFF:
            raise LocalProtocolError(f"date-time year {self.year} out of range")
        if not -0x8000 <= self.deviation <= 0x7FFF:
            raise LocalProtocolError(f"date-time deviation {self.deviation} out of range")

    def to_bytes(self) -> bytes:
        return _DATETIME.pack(
            self.year, self.month, self.day, self.weekday, self.hour, self.minute,
            self.second, self.hundredths, self.deviation, self.status,
        )

    @classmethod
    def from_bytes(cls, b: bytes) -> CosemDateTime:
        if len(b) != 12:
            raise DecodeError(f"date-time must be 12 bytes, got {len(b)}")
        return cls(*_DATETIME.unpack(b))

    @classmethod
    def from_datetime(
        cls, dt: _dt.datetime, *, deviation: int | None = None, status: int = 0
    ) -> CosemDateTime:
        """Encode a wall-clock ``dt``; ``deviation`` in minutes, or None for not specified."""
        return cls(
            dt.year, dt.month, dt.day, dt.isoweekday(), dt.hour, dt.minute, dt.second,
            dt.microsecond // 10000,
            DEVIATION_NOT_SPECIFIED if deviation is None else deviation,
            status,
        )

    def to_datetime(self) -> _dt.datetime:
        """The wall-clock time as a naive datetime; raises `DecodeError` if a field is wildcarded."""
        try:
            return _dt.datetime(
                self.year, self.month, self.day, self.hour, self.minute, self.second,
                0 if self.hundredths == NOT_SPECIFIED else self.hundredths * 10000,
            )
        except ValueError as e:
            raise DecodeError(f"date-time is not a point in time: {e}") from None


_DATETIME = struct.Struct(">HBBBBBBBhB")


def encode_datetime_at(epoch: float, utc_offset_min: int, deviation: int | None, status: int = 0) -> bytes:
    """12-byte date-time of the wall clock at UTC offset ``utc_offset_min`` for ``epoch`` seconds."""
    secs = int(epoch // 1)
    t = _dt.datetime.fromtimestamp(secs + utc_offset_min * 60, _dt.UTC)
    return _DATETIME.pack(
        t.year, t.month, t.day, t.isoweekday(), t.hour, t.minute, t.second,
        min(99, int((epoch - secs) * 100 + 1e-3)),  # a hundredth stays itself through float rounding
        DEVIATION_NOT_SPECIFIED if deviation is None else deviation,
        status,
    )


# -- typed values ----------------------------------------------------------------------------------


class BitString(NamedTuple):
    """A bit-string value: ``bits`` bits, first bit in the MSB of ``data[0]``."""

    bits: int
    data: bytes

    @classmethod
    def from_bits(cls, bits: list[bool] | tuple[bool, ...]) -> BitString:
        out = bytearray((len(bits) + 7) // 8)
        for i, b in enumerate(bits):
            if b:
                out[i >> 3] |= 0x80 >> (i & 7)
        return cls(len(bits), bytes(out))

    def bit(self, n: int) -> bool:
        return bool(self.data[n >> 3] & (0x80 >> (n & 7)))


class Data(NamedTuple):
    """A decoded COSEM value: its tag and a Python value.

    Values by tag: NULL_DATA None; ARRAY and STRUCTURE a tuple of `Data`; BOOLEAN bool; BIT_STRING
    `BitString`; integers, ENUM and BCD int; FLOAT32/64 float; OCTET_STRING bytes; VISIBLE_STRING str
    (latin-1, so any byte survives); UTF8_STRING str; DATE_TIME `CosemDateTime`; DATE and TIME bytes.
    """

    tag: DataType
    value: Any


_INT_CODECS: dict[DataType, tuple[struct.Struct, int, int]] = {
    DataType.DOUBLE_LONG: (_I32, -(2**31), 2**31 - 1),
    DataType.DOUBLE_LONG_UNSIGNED: (_U32, 0, 2**32 - 1),
    DataType.INTEGER: (_I8, -128, 127),
    DataType.LONG: (_I16, -(2**15), 2**15 - 1),
    DataType.UNSIGNED: (struct.Struct(">B"), 0, 255),
    DataType.LONG_UNSIGNED: (_U16, 0, 0xFFFF),
    DataType.LONG64: (_I64, -(2**63), 2**63 - 1),
    DataType.LONG64_UNSIGNED: (_U64, 0, 2**64 - 1),
    DataType.ENUM: (struct.Struct(">B"), 0, 255),
    DataType.BCD: (struct.Struct(">B"), 0, 255),
}

# Nesting deeper than this is refused: a peer must not make us recurse without bound.
MAX_DEPTH = 16


def decode_data(r: Reader, _depth: int = 0) -> Data:
    """Decode one tagged COSEM value."""
    tag_byte = r.pull_u8()
    try:
        tag = DataType(tag_byte)
    except ValueError:
        raise DecodeError(f"unknown data type tag {tag_byte}") from None
    codec = _INT_CODECS.get(tag)
    if codec is not None:
        st = codec[0]
        return Data(tag, st.unpack_from(r._buf, r._need(st.size))[0])
    if tag is DataType.OCTET_STRING:
        return Data(tag, r.pull_bytes(r.pull_length()))
    if tag is DataType.STRUCTURE or tag is DataType.ARRAY:
        if _depth >= MAX_DEPTH:
            raise DecodeError("data nested too deeply")
        n = r.pull_length()
        if n > r.remaining():
            raise DecodeError(f"{n} elements announced, {r.remaining()} bytes left")
        return Data(tag, tuple(decode_data(r, _depth + 1) for _ in range(n)))
    if tag is DataType.NULL_DATA:
        return Data(tag, None)
    if tag is DataType.BOOLEAN:
        return Data(tag, r.pull_u8() != 0)
    if tag is DataType.VISIBLE_STRING:
        return Data(tag, r.pull_bytes(r.pull_length()).decode("latin-1"))
    if tag is DataType.UTF8_STRING:
        raw = r.pull_bytes(r.pull_length())
        try:
            return Data(tag, raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DecodeError("utf8-string is not valid UTF-8") from None
    if tag is DataType.BIT_STRING:
        bits = r.pull_length()
        return Data(tag, BitString(bits, r.pull_bytes((bits + 7) // 8)))
    if tag is DataType.FLOAT32:
        return Data(tag, r.pull_f32())
    if tag is DataType.FLOAT64:
        return Data(tag, r.pull_f64())
    if tag is DataType.DATE_TIME:
        return Data(tag, CosemDateTime.from_bytes(r.pull_bytes(12)))
    if tag is DataType.DATE:
        return Data(tag, r.pull_bytes(5))
    if tag is DataType.TIME:
        return Data(tag, r.pull_bytes(4))
    raise DecodeError(f"data type {tag.name} is not supported")


def encode_data(w: Writer, d: Data) -> None:
    """Encode one tagged COSEM value."""
    tag, value = d
    codec = _INT_CODECS.get(tag)
    w.push_u8(tag)
    if codec is not None:
        st, lo, hi = codec
        if not isinstance(value, int) or isinstance(value, bool):
            raise LocalProtocolError(f"{tag.name} needs an int, got {value!r}")
        if not lo <= value <= hi:
            raise LocalProtocolError(f"{value} out of range for {tag.name}")
        w.buf += st.pack(value)
    elif tag is DataType.OCTET_STRING:
        w.push_length(len(value))
        w.push_bytes(value)
    elif tag is DataType.STRUCTURE or tag is DataType.ARRAY:
        w.push_length(len(value))
        for item in value:
            encode_data(w, item)
    elif tag is DataType.NULL_DATA:
        pass
    elif tag is DataType.BOOLEAN:
        w.push_u8(0xFF if value else 0x00)
    elif tag is DataType.VISIBLE_STRING:
        raw = value.encode("latin-1")
        w.push_length(len(raw))
        w.push_bytes(raw)
    elif tag is DataType.UTF8_STRING:
        raw = value.encode("utf-8")
        w.push_length(len(raw))
        w.push_bytes(raw)
    elif tag is DataType.BIT_STRING:
        if len(value.data) != (value.bits + 7) // 8:
            raise LocalProtocolError("bit-string data does not match its bit count")
        w.push_length(value.bits)
        w.push_bytes(value.data)
    elif tag is DataType.FLOAT32:
        w.push_f32(value)
    elif tag is DataType.FLOAT64:
        w.push_f64(value)
    elif tag is DataType.DATE_TIME:
        w.push_bytes(value.to_bytes())
    elif tag is DataType.DATE or tag is DataType.TIME:
        size = 5 if tag is DataType.DATE else 4
        if len(value) != size:
            raise LocalProtocolError(f"{tag.name} must be {size} bytes")
        w.push_bytes(value)
    else:
        raise LocalProtocolError(f"data type {tag.name} is not supported")


def data_to_bytes(d: Data) -> bytes:
    w = Writer()
    encode_data(w, d)
    return w.getvalue()


def data_from_bytes(b: bytes | memoryview) -> Data:
    """Decode exactly one value; trailing bytes are an error."""
    r = Reader(b)
    d = decode_data(r)
    if not r.eof():
        raise DecodeError(f"{r.remaining()} trailing bytes after data")
    return d


def skip_data(r: Reader) -> None:
    """Advance past one tagged value, checking it is whole (used to find item boundaries)."""
    decode_data(r)


# -- constructors that validate (for building values in code) -------------------------------------


def _int(tag: DataType):
    _, lo, hi = _INT_CODECS[tag]

    def make(v: int) -> Data:
        if not lo <= v <= hi:
            raise LocalProtocolError(f"{v} out of range for {tag.name}")
        return Data(tag, v)

    make.__name__ = tag.name.lower()
    return make


integer = _int(DataType.INTEGER)
long = _int(DataType.LONG)
double_long = _int(DataType.DOUBLE_LONG)
unsigned = _int(DataType.UNSIGNED)
long_unsigned = _int(DataType.LONG_UNSIGNED)
double_long_unsigned = _int(DataType.DOUBLE_LONG_UNSIGNED)
long64 = _int(DataType.LONG64)
long64_unsigned = _int(DataType.LONG64_UNSIGNED)
enum = _int(DataType.ENUM)
NULL = Data(DataType.NULL_DATA, None)


def octet_string(b: bytes) -> Data:
    return Data(DataType.OCTET_STRING, bytes(b))


def visible_string(s: str) -> Data:
    s.encode("latin-1")
    return Data(DataType.VISIBLE_STRING, s)


def boolean(v: bool) -> Data:
    return Data(DataType.BOOLEAN, bool(v))


def structure(*items: Data) -> Data:
    return Data(DataType.STRUCTURE, tuple(items))


def array(items) -> Data:
    return Data(DataType.ARRAY, tuple(items))


def bit_string(bits: int, data: bytes) -> Data:
    v = BitString(bits, bytes(data))
    if len(v.data) != (bits + 7) // 8:
        raise LocalProtocolError("bit-string data does not match its bit count")
    return Data(DataType.BIT_STRING, v)


# -- encoders of attribute values (the hot paths: one struct per type, no Data built) -----------------

_PACK = {
    DataType.DOUBLE_LONG: (struct.Struct(">bi"), -(2**31), 2**31 - 1),
    DataType.DOUBLE_LONG_UNSIGNED: (struct.Struct(">BI"), 0, 2**32 - 1),
    DataType.INTEGER: (struct.Struct(">Bb"), -128, 127),
    DataType.LONG: (struct.Struct(">Bh"), -(2**15), 2**15 - 1),
    DataType.UNSIGNED: (struct.Struct(">BB"), 0, 255),
    DataType.LONG_UNSIGNED: (struct.Struct(">BH"), 0, 0xFFFF),
    DataType.LONG64: (struct.Struct(">Bq"), -(2**63), 2**63 - 1),
    DataType.LONG64_UNSIGNED: (struct.Struct(">BQ"), 0, 2**64 - 1),
    DataType.ENUM: (struct.Struct(">BB"), 0, 255),
}


def int_encoder(dtype: DataType) -> Callable[[int], bytes]:
    """A fast encoder of an int as ``dtype``, clamping to the type's range (a meter saturates)."""
    st, lo, hi = _PACK[dtype]
    tag = int(dtype)
    pack = st.pack

    def encode(v: int) -> bytes:
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        return pack(tag, v)

    return encode


def encode_octets(b: bytes) -> bytes:
    return bytes((DataType.OCTET_STRING,)) + encode_length(len(b)) + b


def encode_value(d: Data) -> bytes:
    w = Writer()
    encode_data(w, d)
    return w.getvalue()
