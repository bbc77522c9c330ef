"""DLMS/COSEM security, suite 0 to 2: ciphered APDUs, HLS functions, key wrap (IEC 62056-5-3 clause 9).

Primer. A protected APDU carries a security header, SC (1 byte) and the invocation counter IC (4 bytes,
big-endian), then the payload and, when authenticated, a 12-byte GCM tag:

    SC IC [plaintext | ciphertext] [T]

SC bits 0-3 are the suite, 0x10 authentication, 0x20 encryption, 0x40 broadcast key, 0x80 compression.
GCM runs with IV = sender system title (8) || IC (4) and the block-cipher key (EK); the additional
authenticated data is SC || AK, followed by the plaintext when only authentication is applied (then the
cipher runs over nothing and only the tag is sent). Layouts: IEC 62056-5-3 security, as Gurux and
dlms-cosem implement it.

Everything here is a pure function of its arguments: the cipher itself is `cryptography`'s AES (GCM,
CTR for encryption-only payloads, ECB for HLS mechanism 2, RFC 3394 key wrap), never our own.
"""

from __future__ import annotations

import functools
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meter_core.codec.errors import Failure, SecurityError

TAG_LENGTH = 12
HEADER_LENGTH = 5  # SC + IC
SYSTEM_TITLE_LENGTH = 8

AUTHENTICATION = 0x10
ENCRYPTION = 0x20
BROADCAST = 0x40
COMPRESSION = 0x80
SUITE_MASK = 0x0F  # the security suite in the low nibble of the security control byte
AUTHENTICATED_AND_ENCRYPTED = AUTHENTICATION | ENCRYPTION
KNOWN_SC_BITS = SUITE_MASK | AUTHENTICATION | ENCRYPTION | BROADCAST

KEY_LENGTH = {0: 16, 1: 16, 2: 32}  # suite -> EK/AK/KEK length (IEC 62056-5-3 security suites 0-2)


# -- GCM ----------------------------------------------------------------------------------------------


def _iv(system_title: bytes, ic: int) -> bytes:
    return system_title + ic.to_bytes(4, "big")


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    # GCM's keystream starts at counter 2 (J0 = IV || 00000001 is kept for the tag).
    c = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor()
    return c.update(data) + c.finalize()


@functools.lru_cache(maxsize=4096)
def aead_of(key: bytes) -> AESGCM:
    """The AES-GCM context of ``key`` (its key schedule), kept for the keys of the meters in use."""
    return AESGCM(key)


def protect(sc: int, ic: int, system_title: bytes, ek: bytes, ak: bytes, plaintext: bytes) -> bytes:
    """SC || IC || payload [|| T]: ``plaintext`` protected as ``sc`` says, by the sender ``system_title``."""
    header = bytes((sc,)) + ic.to_bytes(4, "big")
    iv = system_title + header[1:]
    auth, enc = sc & AUTHENTICATION, sc & ENCRYPTION
    if auth and enc:
        sealed = aead_of(ek).encrypt(iv, plaintext, header[:1] + ak)
        return header + sealed[:-16] + sealed[-16:-16 + TAG_LENGTH]
    if auth:
        tag = aead_of(ek).encrypt(iv, b"", header[:1] + ak + plaintext)
        return header + plaintext + tag[:TAG_LENGTH]
    if enc:
        return header + _ctr(ek, iv, plaintext)
    return header + plaintext


def _verify(key: bytes, iv: bytes, aad: bytes, ciphertext: bytes, tag: bytes) -> bytes:
    """The plaintext of ``ciphertext`` if ``tag`` (12 bytes) is its GCM tag, else `SecurityError`.

    cryptography's one-shot AESGCM takes only 16-byte tags, so the 12-byte tag is checked by
    recomputing it: GCM encryption is a keystream XOR, so encrypting the ciphertext under the same IV
    gives the plaintext, and encrypting that plaintext gives the full tag, whose first 12 bytes must
    match. Both passes are cryptography's GCM; the comparison is constant-time.
    """
    aead = aead_of(key)
    n = len(ciphertext)
    plain = aead.encrypt(iv, ciphertext, None)[:n] if n else b""
    full = aead.encrypt(iv, plain, aad)
    if not hmac.compare_digest(full[n:n + TAG_LENGTH], tag):
        raise SecurityError(Failure.DECIPHERING, "authentication tag does not verify")
    return plain


def split_header(data: bytes) -> tuple[int, int, bytes]:
    """(SC, IC, the rest) of a protected payload."""
    if len(data) < HEADER_LENGTH:
        raise SecurityError(Failure.TRUNCATED, "security header truncated")
    return data[0], int.from_bytes(data[1:5], "big"), data[5:]


def check_sc(sc: int, suite: int) -> None:
    """Refuse a security control byte with unknown bits, compression, or another suite."""
    if sc & ~KNOWN_SC_BITS or sc & COMPRESSION:
        raise SecurityError(Failure.SECURITY_CONTROL, f"security control {sc:#04x} not supported")
    if sc & SUITE_MASK != suite:
        raise SecurityError(Failure.SECURITY_CONTROL, f"security suite {sc & SUITE_MASK} is not the meter's {suite}")


def unprotect(data: bytes, system_title: bytes, ek: bytes, ak: bytes) -> tuple[int, int, bytes]:
    """(SC, IC, plaintext) of SC || IC || payload [|| T] from ``system_title``; the tag is checked."""
    sc, ic, rest = split_header(data)
    iv = _iv(system_title, ic)
    auth, enc = sc & AUTHENTICATION, sc & ENCRYPTION
    if auth:
        if len(rest) < TAG_LENGTH:
            raise SecurityError(Failure.TRUNCATED, "authentication tag truncated")
        body, tag = rest[:-TAG_LENGTH], rest[-TAG_LENGTH:]
        if enc:
            return sc, ic, _verify(ek, iv, bytes((sc,)) + ak, body, tag)
        _verify(ek, iv, bytes((sc,)) + ak + body, b"", tag)
        return sc, ic, body
    if enc:
        return sc, ic, _ctr(ek, iv, rest)
    return sc, ic, rest


def gmac(sc: int, ic: int, system_title: bytes, ek: bytes, ak: bytes, challenge: bytes) -> bytes:
    """HLS mechanism 5 f(challenge): SC || IC || GMAC tag over SC || AK || challenge (IEC 62056-5-3 HLS, as
    traced on gurux.fi/comment/16477)."""
    tag = aead_of(ek).encrypt(_iv(system_title, ic), b"", bytes((sc,)) + ak + challenge)
    return bytes((sc,)) + ic.to_bytes(4, "big") + tag[:TAG_LENGTH]


def hls_aes(secret: bytes, challenge: bytes) -> bytes:
    """HLS mechanism 2 f(challenge) as IS 15959 meters run it: AES-ECB of the challenge, zero-padded to
    whole blocks, under the HLS secret zero-padded to 16 bytes (IEC 62056-5-3; Gurux and
    dlms-cosem agree)."""
    if not 1 <= len(secret) <= 32:
        raise ValueError("HLS secret must be 1 to 32 bytes")
    key = secret.ljust(16 if len(secret) <= 16 else 32, b"\x00")
    data = challenge.ljust(-(-len(challenge) // 16) * 16, b"\x00")
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update(data) + e.finalize()


def wrap_key(kek: bytes, key: bytes) -> bytes:
    """RFC 3394 AES key wrap of ``key`` under ``kek`` (the master key)."""
    return aes_key_wrap(kek, key)


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes:
    try:
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        raise SecurityError(Failure.DECIPHERING, "wrapped key does not unwrap under the master key") from None


__all__ = [
    "AUTHENTICATION", "BROADCAST", "COMPRESSION", "ENCRYPTION", "Failure", "KEY_LENGTH", "SYSTEM_TITLE_LENGTH",
    "SecurityError", "TAG_LENGTH", "check_sc", "ecdh", "ecdsa_sign", "ecdsa_verify", "gmac", "hls_aes",
    "private_key_from_scalar", "protect", "protect_aad", "public_bytes", "public_key_from_bytes", "split_header",
    "unprotect", "unprotect_aad", "unwrap_key", "wrap_key",
]


# -- suites 1 and 2: ECDSA and ECDH (IEC 62056-5-3 security suites) ---------------------------------


def _curve(suite: int):
    if suite == 1:
        return ec.SECP256R1(), hashes.SHA256(), 32
    if suite == 2:
        return ec.SECP384R1(), hashes.SHA384(), 48
    raise ValueError(f"security suite {suite} has no public-key algorithms")


def private_key_from_scalar(suite: int, seed: bytes):
    """A private key of the suite's curve whose scalar is ``seed`` reduced into [1, n-1]."""
    curve, _, size = _curve(suite)
    n = {32: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
         48: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973}[size]
    return ec.derive_private_key(int.from_bytes(seed, "big") % (n - 1) + 1, curve)


def public_bytes(key) -> bytes:
    """The uncompressed point (04 || x || y) of a public or private key."""
    pub = key.public_key() if hasattr(key, "private_numbers") else key
    return pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def public_key_from_bytes(suite: int, data: bytes):
    """A public key from its point: 04 || x || y, or x || y (DLMS often drops the 04)."""
    curve, _, size = _curve(suite)
    if len(data) == 2 * size:
        data = b"\x04" + data
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, data)
    except ValueError:
        raise SecurityError(Failure.AUTHENTICATION, "not a point of the suite's curve") from None


def ecdsa_sign(suite: int, private_key, data: bytes) -> bytes:
    """ECDSA signature of ``data`` as DLMS carries it: r || s, each the curve's size."""
    _, hash_, size = _curve(suite)
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hash_)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def ecdsa_verify(suite: int, public_key, signature: bytes, data: bytes) -> bool:
    _, hash_, size = _curve(suite)
    if len(signature) != 2 * size:
        return False
    der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
    try:
        public_key.verify(der, data, ec.ECDSA(hash_))
    except InvalidSignature:
        return False
    return True


def ecdh(private_key, public_key) -> bytes:
    """The ECDH shared secret Z (the x coordinate) of our private key and the peer's public key."""
    return private_key.exchange(ec.ECDH(), public_key)


# -- general-ciphering (0xDD) -------------------------------------------------------------------------------

def unprotect_aad(data: bytes, system_title: bytes, ek: bytes, ak: bytes, extra: bytes) -> tuple[int, int, bytes]:
    """`unprotect` with ``extra`` appended to the AAD (general-ciphering, suites 1 and 2)."""
    if not extra:
        return unprotect(data, system_title, ek, ak)
    sc, ic, rest = split_header(data)
    if not sc & AUTHENTICATION:
        return unprotect(data, system_title, ek, ak)
    if len(rest) < TAG_LENGTH:
        raise SecurityError(Failure.TRUNCATED, "authentication tag truncated")
    body, tag = rest[:-TAG_LENGTH], rest[-TAG_LENGTH:]
    iv = _iv(system_title, ic)
    aad = bytes((sc,)) + ak + extra
    if sc & ENCRYPTION:
        return sc, ic, _verify(ek, iv, aad, body, tag)
    _verify(ek, iv, aad + body, b"", tag)
    return sc, ic, body


def protect_aad(sc: int, ic: int, system_title: bytes, ek: bytes, ak: bytes, plaintext: bytes, extra: bytes) -> bytes:
    if not extra or not sc & AUTHENTICATION:
        return protect(sc, ic, system_title, ek, ak, plaintext)
    header = bytes((sc,)) + ic.to_bytes(4, "big")
    iv = system_title + header[1:]
    aad = header[:1] + ak + extra
    if sc & ENCRYPTION:
        sealed = aead_of(ek).encrypt(iv, plaintext, aad)
        return header + sealed[:-16] + sealed[-16:-16 + TAG_LENGTH]
    return header + plaintext + aead_of(ek).encrypt(iv, b"", aad + plaintext)[:TAG_LENGTH]


