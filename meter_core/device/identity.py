"""A meter's identity: every name a head-end uses to reach it, derived from the fleet and meter_id.

Any process, pod or test recomputes the same identity from (fleet seed, fleet secret, meter_id),
so nothing about an idle meter has to be stored (DESIGN.md, "Identity, sharding, scale-out").
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from dataclasses import dataclass
from enum import Enum

DEFAULT_FLEET_SECRET = b"cosem-fleet-insecure-default-secret"

# Three-letter manufacturer id placed at the head of system titles and logical device names
# (IEC 62056-5-3 clause 4.3.4: the first three octets of a system title are the FLAG id). "CSF"
# is ours for the simulator; it is not a FLAG id registered with the DLMS UA.
DEFAULT_FLAG_ID = "CSF"

_PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class MeterKind(Enum):
    """The meter families of IS 15959: Part 2 whole-current (1- and 3-phase), Part 3 CT/PT."""

    SINGLE_PHASE = "1ph"
    THREE_PHASE = "3ph"
    CT_PT = "ctpt"


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """What every meter identity in a fleet derives from."""

    seed: int = 1
    secret: bytes = DEFAULT_FLEET_SECRET
    flag_id: str = DEFAULT_FLAG_ID
    kind: MeterKind = MeterKind.THREE_PHASE
    # Shares of meter kinds ((kind, share), ...) summing to 1; empty = every meter is ``kind``.
    mix: tuple[tuple[MeterKind, float], ...] = ()
    manufacturer: str = "COSEM-FLEET SIMULATED METERS"
    firmware_version: str = "CSF-IS15959-1.0"
    # Security of the utility-settings, push and firmware associations: suite 0 (AES-GCM-128), 1 or 2,
    # and the HLS mechanism client 48 and 80 authenticate with (2 = AES of the challenge, 5 = GMAC).
    security_suite: int = 0
    hls_mechanism: int = 2

    def __post_init__(self) -> None:
        if self.security_suite not in (0, 1, 2):
            raise ValueError(f"security suite must be 0, 1 or 2, not {self.security_suite}")
        if self.hls_mechanism not in (2, 5, 7):
            raise ValueError(f"HLS mechanism must be 2, 5 or 7, not {self.hls_mechanism}")
        if self.hls_mechanism == 7 and self.security_suite == 0:
            raise ValueError("HLS mechanism 7 (ECDSA) needs security suite 1 or 2")
        if self.mix:
            total = sum(share for _, share in self.mix)
            if abs(total - 1.0) > 1e-6 or any(share < 0 for _, share in self.mix):
                raise ValueError(f"meter kind shares must be >= 0 and add up to 1, not {total:g}")
        if len(self.flag_id) != 3 or not self.flag_id.isascii() or not self.flag_id.isalpha():
            raise ValueError(f"flag id must be three ASCII letters, got {self.flag_id!r}")
        if not 0 <= self.seed < 2**63:
            raise ValueError("seed must be in 0..2**63-1")


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterIdentity:
    """The names of one meter (values of 0.0.96.1.0.255, 0.0.42.0.0.255, the system title, ...)."""

    meter_id: int
    kind: MeterKind
    serial_number: int
    serial: str
    logical_device_name: str
    system_title: bytes
    device_id: str
    manufacturer: str
    firmware_version: str
    year_of_manufacture: int
    hdlc_physical_address: int
    lls_password: str


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is the same in every process (unlike ``hash()``)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x00")
    return struct.unpack(">Q", h.digest())[0]


def serial_base(seed: int) -> int:
    """The serial number of meter 0: an 8-digit number chosen by the seed."""
    return 10_000_000 + stable_hash("serial-base", seed) % 40_000_000


def hdlc_physical_address(serial_number: int) -> int:
    """HDLC lower (physical) address: 0x100 + the last four digits of the serial number.

    Unique among any 10 000 consecutive meters, and above 0x7F, so clients use the 4-byte server
    address form (IEC 62056-46 clause 6.4.2.2) that every HES supports.
    """
    return 0x100 + serial_number % 10_000


def derive_secret(fleet: FleetConfig, meter_id: int, purpose: str, size: int) -> bytes:
    """``size`` bytes bound to this fleet secret, meter and purpose (HMAC-SHA256 in counter mode)."""
    out = b""
    counter = 0
    while len(out) < size:
        msg = f"{purpose}:{meter_id}:{counter}".encode()
        out += hmac.new(fleet.secret, msg, hashlib.sha256).digest()
        counter += 1
    return out[:size]


def lls_password(fleet: FleetConfig, meter_id: int) -> str:
    """The meter-reader LLS password: 16 characters from an unambiguous alphabet."""
    raw = derive_secret(fleet, meter_id, "lls-mr", 16)
    return "".join(_PASSWORD_ALPHABET[b % len(_PASSWORD_ALPHABET)] for b in raw)


def kind_of(fleet: FleetConfig, meter_id: int) -> MeterKind:
    """The kind of meter ``meter_id``: drawn from the fleet's mix by a stable hash of (seed, meter_id),
    so any process gets the same answer and the shares hold over any large range of ids."""
    if not fleet.mix:
        return fleet.kind
    u = stable_hash("kind", fleet.seed, meter_id) / 2.0**64
    acc = 0.0
    for kind, share in fleet.mix:
        acc += share
        if u < acc:
            return kind
    return fleet.mix[-1][0]


def parse_mix(text: str) -> tuple[tuple[MeterKind, float], ...]:
    """``1ph=0.7,3ph=0.25,ctpt=0.05`` as ((kind, share), ...); ValueError with the reason if not."""
    out = []
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            kind = MeterKind(name.strip())
        except ValueError:
            raise ValueError(f"unknown meter kind {name.strip()!r} (use 1ph, 3ph, ctpt)") from None
        try:
            share = float(value) if sep else math.nan
        except ValueError:
            share = math.nan
        if not share == share or share < 0:
            raise ValueError(f"{part.strip()!r}: expected KIND=SHARE with a share >= 0")
        out.append((kind, share))
    if len({k for k, _ in out}) != len(out):
        raise ValueError("a meter kind is given twice")
    total = sum(s for _, s in out)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"shares add up to {total:g}, not 1")
    return tuple(out)


def meter_identity(fleet: FleetConfig, meter_id: int) -> MeterIdentity:
    """Every name of meter ``meter_id`` of ``fleet``."""
    if meter_id < 0:
        raise ValueError("meter_id must not be negative")
    serial_number = serial_base(fleet.seed) + meter_id
    serial = f"{serial_number:08d}"
    flag = fleet.flag_id.upper()
    return MeterIdentity(
        meter_id=meter_id,
        kind=kind_of(fleet, meter_id),
        serial_number=serial_number,
        serial=serial,
        # IS 15959 logical device name: FLAG id then 13 manufacturer-specific characters (16 in all).
        logical_device_name=f"{flag}{serial_number:013d}",
        system_title=flag.encode("ascii") + (serial_number % 2**40).to_bytes(5, "big"),
        device_id=serial,
        manufacturer=fleet.manufacturer,
        firmware_version=fleet.firmware_version,
        year_of_manufacture=2021 + stable_hash("year", fleet.seed, meter_id) % 5,
        hdlc_physical_address=hdlc_physical_address(serial_number),
        lls_password=lls_password(fleet, meter_id),
    )
