"""Small shared pieces: sentinels (as in h11's ``_util``)."""

from __future__ import annotations


class Sentinel:
    """A named singleton value, compared with ``is``."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


NEED_DATA = Sentinel("NEED_DATA")
"""Returned by ``next_event``/``next_frame`` when nothing more can be produced without more bytes."""


_M64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash of an integer, the same in every process.

    For values drawn per second or per row, where seeding a ``random.Random`` would cost more than the
    value itself."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)
