"""X.509 certificates of suites 1 and 2: a fleet test CA, meter certificates, certificate_info.

Security setup v1 (class 64) holds certificates per entity (0 server, 1 client, 2 certification
authority, 3 other) and type (0 digital signature, 1 key agreement, 2 TLS, 3 other). A meter starts
with certificates for its signing and key-agreement keys, issued by the fleet's test CA, whose key is
derived from the fleet secret (so every process and a head-end test can act as that CA). Subjects name
the system title as DLMS does: CN = the 16 hex digits of the system title.

All made and checked with `cryptography`'s x509 module; the validity dates come from the caller.
"""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meter_core.codec.crypto import private_key_from_scalar
from meter_core.device.identity import FleetConfig, derive_secret

SERVER, CLIENT, CA, OTHER = 0, 1, 2, 3  # certificate_entity
SIGNATURE, KEY_AGREEMENT, TLS = 0, 1, 2  # certificate_type (and key_pair of generate_key_pair)
_VALID_FOR = _dt.timedelta(days=3650)
_DER_INTEGER = 0x02  # the DER tag of an INTEGER


def _hash(suite: int):
    return hashes.SHA256() if suite == 1 else hashes.SHA384()


def subject_for(system_title: bytes, organisation: str = "cosem-fleet") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, system_title.hex().upper()),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)])


@functools.lru_cache(maxsize=8)
def fleet_ca(fleet: FleetConfig, suite: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The fleet's test CA: its key (derived from the fleet secret) and self-signed certificate."""
    key = private_key_from_scalar(suite, derive_secret(fleet, -2, f"ca-{suite}", 64))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cosem-fleet test CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cosem-fleet")])
    start = _dt.datetime(2025, 1, 1, tzinfo=_dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(int.from_bytes(derive_secret(fleet, -2, f"ca-serial-{suite}", 8), "big") >> 1)
        .not_valid_before(start).not_valid_after(start + 20 * _VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, _hash(suite))
    )
    return key, cert


def issue(fleet: FleetConfig, suite: int, public_key, subject: x509.Name, kind: int, now: float,
          serial: int | None = None) -> x509.Certificate:
    """A certificate for ``public_key`` (``kind`` SIGNATURE or KEY_AGREEMENT) signed by the fleet CA."""
    ca_key, ca = fleet_ca(fleet, suite)
    start = _dt.datetime.fromtimestamp(now, _dt.UTC).replace(microsecond=0)
    usage = x509.KeyUsage(kind == SIGNATURE, False, False, False, kind == KEY_AGREEMENT, False, False, False, False)
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject).public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start - _dt.timedelta(days=1)).not_valid_after(start + _VALID_FOR)
        .add_extension(usage, critical=True)
        .sign(ca_key, _hash(suite))
    )


@dataclass(frozen=True)
class Held:
    """A certificate a security setup holds, with what certificate_info and identification need."""

    entity: int
    type: int
    der: bytes

    @functools.cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @property
    def serial_der(self) -> bytes:
        """The serial number as DER INTEGER (how head-ends identify a certificate by serial)."""
        n = self.cert.serial_number
        body = n.to_bytes(n.bit_length() // 8 + 1, "big")
        return bytes((_DER_INTEGER, len(body))) + body

    @property
    def issuer_der(self) -> bytes:
        return self.cert.issuer.public_bytes()

    @property
    def subject_der(self) -> bytes:
        return self.cert.subject.public_bytes()

    def names_title(self, system_title: bytes) -> bool:
        cn = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return bool(cn) and cn[0].value.upper() == system_title.hex().upper()


def load(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def issued_by_fleet_ca(fleet: FleetConfig, suite: int, cert: x509.Certificate) -> bool:
    _, ca = fleet_ca(fleet, suite)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends: not ours
        return False
    return True


def kind_of(cert: x509.Certificate) -> int:
    """SIGNATURE or KEY_AGREEMENT, from the key usage extension (signature when it has none)."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return SIGNATURE
    return KEY_AGREEMENT if usage.key_agreement and not usage.digital_signature else SIGNATURE


def csr(private_key, subject: x509.Name, suite: int) -> bytes:
    """A PKCS #10 request (DER) for ``private_key``'s public key."""
    return (x509.CertificateSigningRequestBuilder().subject_name(subject).sign(private_key, _hash(suite))
            .public_bytes(serialization.Encoding.DER))


def same_key(a, b) -> bool:
    fmt = (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    try:
        return a.public_bytes(*fmt) == b.public_bytes(*fmt)
    except (AttributeError, ValueError):
        return False


__all__ = ["CA", "CLIENT", "Held", "KEY_AGREEMENT", "OTHER", "SERVER", "SIGNATURE", "TLS", "csr", "fleet_ca",
           "issue", "issued_by_fleet_ca", "kind_of", "load", "same_key", "subject_for"]
