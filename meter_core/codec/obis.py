"""OBIS codes, the six-part logical names of COSEM objects (IEC 62056-6-1 clause 4)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from meter_core.codec.errors import DecodeError, LocalProtocolError

# "1.0.1.8.0.255", "1-0:1.8.0.255", "1-0:1.8.0*255", "1.0.1.8.0" (F defaults to 255)
_OBIS_RE = re.compile(
    r"^\s*(\d{1,3})[.\-](\d{1,3})[.:](\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[.*&](\d{1,3}))?\s*$"
)


@dataclass(frozen=True, slots=True, order=True)
class Obis:
    """A logical name A.B.C.D.E.F, each group 0..255; hashable, usable as a dict key."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __post_init__(self) -> None:
        for v in (self.a, self.b, self.c, self.d, self.e, self.f):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255:
                raise LocalProtocolError(f"OBIS group {v!r} is not in 0..255")

    @classmethod
    def parse(cls, text: str) -> Obis:
        """Parse dotted (``1.0.1.8.0.255``) or IEC (``1-0:1.8.0*255``) notation."""
        m = _OBIS_RE.match(text)
        if m is None:
            raise LocalProtocolError(f"not an OBIS code: {text!r}")
        groups = [int(g) for g in m.groups(default="255")]
        return cls(*groups)

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview) -> Obis:
        if len(raw) != 6:
            raise DecodeError(f"a logical name is 6 bytes, got {len(raw)}")
        return cls(*bytes(raw))

    def to_bytes(self) -> bytes:
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    def __str__(self) -> str:
        return f"{self.a}.{self.b}.{self.c}.{self.d}.{self.e}.{self.f}"


def ln(text: str) -> bytes:
    """The 6-byte logical name of a dotted OBIS string (for tables written as data)."""
    return Obis.parse(text).to_bytes()
