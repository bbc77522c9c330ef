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
