"""The TCP-UDP wrapper: an 8-byte header before every APDU (IEC 62056-47 clause 5, wrapper protocol).

    version (2) = 0x0001 | source wPort (2) | destination wPort (2) | length (2) | APDU (length bytes)

A client's wPort is its client SAP (16 public client, 32 meter reader, ...); the meter's is the
server SAP of the logical device (1, the management logical device). The deframer accepts any
chunking and keeps bytes that follow a frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from meter_core.codec._util import NEED_DATA, Sentinel
from meter_core.codec.axdr import Reader, Writer
from meter_core.codec.errors import DecodeError

WRAPPER_VERSION = 1
HEADER_SIZE = 8
_HEADER = struct.Struct(">HHHH")


@dataclass(frozen=True, slots=True, kw_only=True)
class WrapperFrame:
    """One wrapper PDU (IEC 62056-47 clause 5.2)."""

    source: int
    destination: int
    payload: bytes
    version: int = WRAPPER_VERSION

    def encode(self, w: Writer) -> None:
        w.push_bytes(_HEADER.pack(self.version, self.source, self.destination, len(self.payload)))
        w.push_bytes(self.payload)

    @classmethod
    def decode(cls, r: Reader) -> WrapperFrame:
        version = r.pull_u16()
        if version != WRAPPER_VERSION:
            raise DecodeError(f"wrapper version {version}, expected {WRAPPER_VERSION}")
        source, destination, length = r.pull_u16(), r.pull_u16(), r.pull_u16()
        return cls(source=source, destination=destination, payload=r.pull_bytes(length), version=version)

    def to_bytes(self) -> bytes:
        return wrap(self.source, self.destination, self.payload)


def wrap(source: int, destination: int, payload: bytes | bytearray) -> bytes:
    """Header plus payload, ready for the socket."""
    return _HEADER.pack(WRAPPER_VERSION, source, destination, len(payload)) + payload


class WrapperDeframer:
    """Cuts a byte stream into wrapper frames, whatever the chunking.

    After a `DecodeError` (a header with another version) the stream has lost framing and the
    caller should close the connection; the deframer stays broken.
    """

    __slots__ = ("_buf", "_broken")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._broken = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame (a partial frame, when not zero)."""
        return len(self._buf)

    def whole_frame(self, data: bytes) -> tuple[int, int, bytes] | None:
        """(source, destination, payload) if nothing is buffered and ``data`` is exactly one frame.

        The common case on a request/response link; anything else returns None and the caller
        falls back to `feed` and `next_payload`.
        """
        if self._buf or len(data) < HEADER_SIZE:
            return None
        version, source, destination, length = _HEADER.unpack_from(data, 0)
        if version != WRAPPER_VERSION or HEADER_SIZE + length != len(data):
            return None
        return source, destination, data[HEADER_SIZE:]

    def next_payload(self) -> tuple[int, int, bytes] | Sentinel:
        """(source, destination, payload) of the next whole frame, or NEED_DATA."""
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return NEED_DATA
        if self._broken:
            raise DecodeError("wrapper stream lost framing")
        version, source, destination, length = _HEADER.unpack_from(buf, 0)
        if version != WRAPPER_VERSION:
            self._broken = True
            raise DecodeError(f"wrapper version {version}, expected {WRAPPER_VERSION}")
        end = HEADER_SIZE + length
        if len(buf) < end:
            return NEED_DATA
        payload = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        return source, destination, payload

    def next_frame(self) -> WrapperFrame | Sentinel:
        """The next whole `WrapperFrame`, or NEED_DATA."""
        got = self.next_payload()
        if got is NEED_DATA:
            return NEED_DATA
        source, destination, payload = got
        return WrapperFrame(source=source, destination=destination, payload=payload)
