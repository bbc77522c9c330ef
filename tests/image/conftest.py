"""What the image tests share: the fleet image, built once a session (`pytest -m image`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.image import support


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltImage:
    name: str
    size: int  # bytes, the base included
    base_seconds: float | None  # building the Debian base (None: podman had it)
    build_seconds: float


@pytest.fixture(scope="session")
def fleet_image() -> BuiltImage:
    """The fleet image built from this tree on the local Debian base (both kept for the next run)."""
    support.require_tools()
    with support.build_lock():
        base_seconds = support.ensure_base()
        build_seconds = support.build_image()
    return BuiltImage(name=support.IMAGE, size=support.image_size(support.IMAGE), base_seconds=base_seconds,
                      build_seconds=build_seconds)
