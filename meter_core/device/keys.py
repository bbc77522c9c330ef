"""A meter's keys, HLS secrets and invocation counters, derived from the fleet secret and meter_id.

IS 15959 meters keep one security setup (class 64) per secured association: #3 utility settings
(client 48), #4 push (64), #5 firmware upgrade (80) (Gurux's India.txt). Each has its global unicast
encryption key (EK) and authentication key (AK); the master key (KEK) wraps new keys. Until a head-end
changes one, every key is a pure function of (fleet secret, meter_id), so an idle meter stores none:
`MeterSecurity` is created on a meter's first secured association and holds the counters from then on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)

from meter_core.codec import crypto as sec
from meter_core.codec.apdu.codes import ActionResult
from meter_core.codec.axdr import Data, DataType, encode_octets, encode_value
from meter_core.codec.crypto import KEY_LENGTH, SecurityError, private_key_from_scalar, unwrap_key
from meter_core.device import certs
from meter_core.device.identity import FleetConfig, derive_secret
from meter_core.device.logbook import TRANSACTION

# client SAP -> security setup number e of 0.0.43.0.e.255 and of its invocation counter 0.0.43.1.e.255
SETUP_OF_CLIENT = {32: 2, 48: 3, 64: 4, 80: 5}
SECURED_CLIENTS = (48, 64, 80)


def client_system_title(fleet: FleetConfig) -> bytes:
    """The system title the onboarding file suggests to head-ends (any 8 bytes are accepted)."""
    return b"HES" + derive_secret(fleet, -1, "client-system-title", 5)


@dataclass(slots=True)
class KeySet:
    """The keys of one security setup, and its invocation counters."""

    ek: bytes
    ak: bytes
    suite: int = 0
    rx_ic: int = 0  # the highest invocation counter accepted from a client under these keys
    tx_ic: int = 0  # the last invocation counter the meter used
    client_system_title: bytes = b""
    # Counters accepted from clients up to ``rx_durable`` are in the meter's durable store (the fleet's
    # meter_keys), which keeps ``rx_reserved``: the meter comes back from a crash refusing everything up to
    # it, so it never accepts a counter twice. A counter past ``rx_durable`` is made durable (a new
    # reservation, `RX_RESERVE` ahead) before the meter answers the request that carried it.
    rx_reserved: int = 0
    rx_durable: int = 0

    def next_tx(self) -> int:
        self.tx_ic += 1
        return self.tx_ic


@dataclass(slots=True)
class MeterSecurity:
    kek: bytes
    sets: dict[int, KeySet]
    hls: dict[int, bytes]  # client SAP -> HLS secret
    changed: set = field(default_factory=set)  # what a head-end changed: ("key", e), ("hls", sap), ...
    # suites 1 and 2: the meter's signing and key-agreement keys, the head-end's signing public key
    # (derived on first use), the certificates held (`meter_core.device.certs.Held`), and which key pairs a
    # head-end had regenerated (those are stored, the derived ones are not)
    signing: object = None
    client_public: object = None
    agreement: object = None
    certs: list | None = None
    certs_changed: bool = False
    generated: set = field(default_factory=set)
    lls_password: bytes | None = None  # the meter reader's, when a head-end changed it


def signing_key(fleet: FleetConfig, meter_id: int, suite: int):
    """The meter's ECDSA key (P-256 for suite 1, P-384 for suite 2), derived from the fleet secret."""
    return private_key_from_scalar(suite, derive_secret(fleet, meter_id, f"signing-{suite}", 64))


def agreement_key(fleet: FleetConfig, meter_id: int, suite: int):
    """The meter's ECDH key (static, for key_agreement and general-ciphering), derived like the signing key."""
    return private_key_from_scalar(suite, derive_secret(fleet, meter_id, f"agreement-{suite}", 64))


def client_signing_key(fleet: FleetConfig, suite: int):
    """The head-end's ECDSA key the meters trust (one per fleet; the onboarding file hands it over)."""
    return signing_key(fleet, -1, suite)


CLIENT_OF_SETUP = {e: sap for sap, e in SETUP_OF_CLIENT.items()}
# A worker that starts again continues each sent counter this far above the last one it wrote (it
# writes them about once a second, and no meter sends a million APDUs in a second).
TX_RESTART_MARGIN = 1 << 20


def derived_keys(fleet: FleetConfig, meter_id: int, suite: int = 0, tx_start: int = 0) -> MeterSecurity:
    """The keys a meter starts with; its sent counters start at ``tx_start`` (the fleet gives a
    floor that grows with wall-clock time, so a meter whose counters were never stored cannot reuse
    one after a restart)."""
    size = 32 if suite == 2 else 16
    sets = {
        e: KeySet(derive_secret(fleet, meter_id, f"guek-{e}", size), derive_secret(fleet, meter_id, f"gak-{e}", size),
                  suite, tx_ic=tx_start)
        for e in (3, 4, 5)
    }
    hls = {sap: derive_secret(fleet, meter_id, f"hls-{sap}", 16) for sap in SECURED_CLIENTS}
    return MeterSecurity(derive_secret(fleet, meter_id, "kek", size), sets, hls)


def _pkcs8(key) -> bytes:
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def rows(meter_id: int, sec: MeterSecurity) -> list[tuple]:
    """`meter_keys` rows (without timestamps) of ``sec``: meter_id, setup, client SAP, suite, EK, AK,
    KEK, HLS secret, client system title, received and sent counters, keys changed, and (on setup 3)
    the key pairs a head-end had regenerated."""
    out = []
    for e, ks in sec.sets.items():
        sap = CLIENT_OF_SETUP[e]
        changed = any(c[0] == "key" and c[1] == e for c in sec.changed) or ("hls", sap) in sec.changed
        signing = _pkcs8(sec.signing) if e == 3 and 0 in sec.generated else None
        agreement = _pkcs8(sec.agreement) if e == 3 and 1 in sec.generated else None
        out.append((meter_id, e, sap, ks.suite, ks.ek, ks.ak, sec.kek, sec.hls.get(sap) if sap != 64 else None,
                    ks.client_system_title or None, max(ks.rx_ic, ks.rx_reserved), ks.tx_ic, changed, signing, agreement,
                    sec.lls_password if e == 3 else None))
    return out


def certificate_rows(meter_id: int, sec: MeterSecurity) -> list[tuple]:
    """`certificates` rows of the certificates ``sec`` holds."""
    return [(meter_id, h.entity, h.type, str(h.cert.serial_number), h.cert.issuer.rfc4514_string(),
             h.cert.subject.rfc4514_string(), h.der) for h in sec.certs or ()]


# How far ahead of the counters accepted a meter reserves in its durable store: one synchronous write per
# this many protected requests of a client, and at most this many counters a client must skip after the
# meter crashed (it reads the counter object 0.0.43.1.e.255 and adds one, as after any restart).
RX_RESERVE = 1000


def counters_to_reserve(sec: MeterSecurity) -> bool:
    """Whether a counter accepted from a client is past what is durable (the answer must wait for it)."""
    for ks in sec.sets.values():
        if ks.rx_ic > ks.rx_durable:
            return True
    return False


def reserve_counters(sec: MeterSecurity) -> None:
    """Move each reservation ahead of the counters accepted (before writing the meter's keys)."""
    for ks in sec.sets.values():
        if ks.rx_ic > ks.rx_reserved - RX_RESERVE // 2:
            ks.rx_reserved = min(ks.rx_ic + RX_RESERVE, 0xFFFFFFFF)


def counters_written(sec: MeterSecurity, written: list[tuple]) -> None:
    """The rows ``written`` (`rows`) are committed: their received counters are durable."""
    for r in written:
        ks = sec.sets.get(r[1])
        if ks is not None and r[9] > ks.rx_durable:
            ks.rx_durable = r[9]


def from_rows(fleet: FleetConfig, meter_id: int, stored: list, tx_floor: int = 0) -> MeterSecurity:
    """A meter's security state from its `meter_keys` rows (dict-like: column -> value)."""
    sec = derived_keys(fleet, meter_id, fleet.security_suite, tx_floor)
    for r in stored:
        e = r["security_setup"]
        ks = sec.sets[e]
        ks.ek, ks.ak, ks.suite = bytes(r["block_key"]), bytes(r["auth_key"]), r["security_suite"]
        # the counters a client may have used are refused: everything up to the reservation kept
        ks.rx_ic = ks.rx_reserved = ks.rx_durable = r["rx_invocation_counter"]
        ks.tx_ic = min(max(ks.tx_ic, r["tx_invocation_counter"] + TX_RESTART_MARGIN), 0xFFFFFFFF)
        ks.client_system_title = bytes(r["client_system_title"] or b"")
        sec.kek = bytes(r["master_key"])
        sap = CLIENT_OF_SETUP[e]
        if r["hls_secret"] is not None:
            sec.hls[sap] = bytes(r["hls_secret"])
        if r["keys_changed_at"] is not None:
            sec.changed.update({("key", e, KEY_EK), ("hls", sap)})
        if r.get("lls_password") is not None:
            sec.lls_password = bytes(r["lls_password"])
        for column, kind in (("signing_key", 0), ("agreement_key", 1)):
            if r.get(column) is not None:
                key = load_der_private_key(bytes(r[column]), None)
                if kind == 0:
                    sec.signing = key
                else:
                    sec.agreement = key
                sec.generated.add(kind)
    return sec


def install_certificates(sec: MeterSecurity, stored: list) -> None:
    """The certificates a meter held, from its `certificates` rows (dict-like)."""
    sec.certs = [certs.Held(r["certificate_entity"], r["certificate_type"], bytes(r["der"])) for r in stored]
    for h in sec.certs:
        if h.entity == certs.CLIENT and h.type == certs.SIGNATURE:
            sec.client_public = h.cert.public_key()


__all__ = ["KeySet", "MeterSecurity", "SECURED_CLIENTS", "SETUP_OF_CLIENT", "TX_RESTART_MARGIN", "client_system_title",
           "derived_keys", "from_rows", "rows"]


# -- key management (Security setup v1 methods) -------------------------------------------------------

KEY_EK, KEY_BROADCAST, KEY_AK, KEY_MASTER = 0, 1, 2, 3
# transaction events (Gurux's India.txt; gurux.fi/forum/15949)
EV_HLS_US, EV_HLS_FW, EV_GLOBAL_KEY = 162, 163, 164


def key_transfer(meter, e: int, params, now: float):
    """key_transfer: array of {key_id enum, key_wrapped octet-string}, each unwrapped with the master key
    (RFC 3394). All or nothing: one bad entry and no key changes. New keys start with fresh invocation
    counters and take effect from the next APDU (the response to this one is still protected with the
    old keys)."""
    if params is None or params.tag is not DataType.ARRAY or not params.value:
        return ActionResult.TYPE_UNMATCHED, None
    sec = meter.keys()
    ks = sec.sets[e]
    new = {}
    for item in params.value:
        if (item.tag is not DataType.STRUCTURE or len(item.value) != 2 or item.value[0].tag is not DataType.ENUM
                or item.value[1].tag is not DataType.OCTET_STRING):
            return ActionResult.TYPE_UNMATCHED, None
        key_id, wrapped = item.value[0].value, item.value[1].value
        if key_id not in (KEY_EK, KEY_AK, KEY_MASTER):  # no broadcast key on IS 15959 meters
            return ActionResult.OTHER_REASON, None
        try:
            key = unwrap_key(sec.kek, wrapped)
        except SecurityError:
            return ActionResult.OTHER_REASON, None
        if len(key) != KEY_LENGTH[ks.suite]:
            return ActionResult.OTHER_REASON, None
        new[key_id] = key
    _install(meter, sec, e, new, now)
    return ActionResult.SUCCESS, None


def _install(meter, sec: MeterSecurity, e: int, new: dict[int, bytes], now: float) -> None:
    """New keys of security setup ``e`` (key id -> key) in force from the next APDU: a new EK starts its
    counters again; the change is a transaction event (164) and is stored."""
    ks = sec.sets[e]
    if KEY_EK in new:
        ks.ek = new[KEY_EK]
        ks.rx_ic = ks.tx_ic = ks.rx_reserved = ks.rx_durable = 0
    if KEY_AK in new:
        ks.ak = new[KEY_AK]
    if KEY_MASTER in new:
        sec.kek = new[KEY_MASTER]
    sec.changed.update(("key", e, k) for k in new)
    meter.record_event(TRANSACTION, EV_GLOBAL_KEY, now)


def change_hls_secret(meter, client_sap: int, params, now: float):
    """change_HLS_secret (Association LN method 2): octet-string, the new secret (mechanism 2)."""
    if params is None or params.tag is not DataType.OCTET_STRING:
        return ActionResult.TYPE_UNMATCHED, None
    if not 1 <= len(params.value) <= 32:
        return ActionResult.OTHER_REASON, None
    sec = meter.keys()
    sec.hls[client_sap] = bytes(params.value)
    sec.changed.add(("hls", client_sap))
    meter.record_event(TRANSACTION, EV_HLS_US if client_sap == 48 else EV_HLS_FW, now)
    return ActionResult.SUCCESS, None


# -- certificates and key pairs (Security setup v1 methods 4-8, attribute 6) ------------------------------


def pki(meter, suite: int, clock_time: float):
    """The meter's keys and certificates of suite ``suite``, made on first use: its signing and
    key-agreement certificates, issued by the fleet CA, and the CA's own."""
    sec = meter.keys()
    fleet, mid = meter.fleet, meter.identity.meter_id
    if sec.signing is None:
        sec.signing = signing_key(fleet, mid, suite)
    if sec.agreement is None:
        sec.agreement = agreement_key(fleet, mid, suite)
    if sec.certs is None:
        subject = certs.subject_for(meter.identity.system_title)
        _, ca = certs.fleet_ca(fleet, suite)

        sec.certs = [
            certs.Held(certs.SERVER, certs.SIGNATURE, certs.issue(
                fleet, suite, sec.signing.public_key(), subject, certs.SIGNATURE, clock_time).public_bytes(Encoding.DER)),
            certs.Held(certs.SERVER, certs.KEY_AGREEMENT, certs.issue(
                fleet, suite, sec.agreement.public_key(), subject, certs.KEY_AGREEMENT, clock_time
            ).public_bytes(Encoding.DER)),
            certs.Held(certs.CA, certs.SIGNATURE, ca.public_bytes(Encoding.DER)),
        ]
        sec.certs_changed = True
    return sec


def certificate_info(sec) -> bytes:
    """Attribute 6, certificates: array of {entity, type, serial, issuer, subject, subject_alt_name}."""
    return encode_value(Data(DataType.ARRAY, tuple(
        Data(DataType.STRUCTURE, (
            Data(DataType.ENUM, h.entity), Data(DataType.ENUM, h.type), Data(DataType.OCTET_STRING, h.serial_der),
            Data(DataType.OCTET_STRING, h.issuer_der), Data(DataType.OCTET_STRING, h.subject_der),
            Data(DataType.OCTET_STRING, b""),
        )) for h in sec.certs)))


def _key_pair_type(params) -> int | None:
    if params is None or params.tag is not DataType.ENUM:
        return None
    return params.value


def generate_key_pair(meter, suite: int, params, clock_time: float):
    """generate_key_pair(key_pair enum): a new random signing (0) or key-agreement (1) key; the meter's
    certificate for the old key is dropped (a head-end asks for a request and imports a new one)."""
    kind = _key_pair_type(params)
    if kind is None:
        return ActionResult.TYPE_UNMATCHED, None
    if kind not in (certs.SIGNATURE, certs.KEY_AGREEMENT):
        return ActionResult.OTHER_REASON, None  # no TLS on this meter
    sec = pki(meter, suite, clock_time)
    key = ec.generate_private_key(ec.SECP256R1() if suite == 1 else ec.SECP384R1())
    if kind == certs.SIGNATURE:
        sec.signing = key
    else:
        sec.agreement = key
    sec.generated.add(kind)
    sec.certs = [h for h in sec.certs if not (h.entity == certs.SERVER and h.type == kind)]
    sec.certs_changed = True
    return ActionResult.SUCCESS, None


def generate_certificate_request(meter, suite: int, params, clock_time: float):
    """generate_certificate_request(key_pair enum): octet-string, a PKCS #10 request for that key."""
    kind = _key_pair_type(params)
    if kind is None:
        return ActionResult.TYPE_UNMATCHED, None
    if kind not in (certs.SIGNATURE, certs.KEY_AGREEMENT):
        return ActionResult.OTHER_REASON, None
    sec = pki(meter, suite, clock_time)
    key = sec.signing if kind == certs.SIGNATURE else sec.agreement
    return ActionResult.SUCCESS, encode_octets(certs.csr(key, certs.subject_for(meter.identity.system_title), suite))


def import_certificate(meter, suite: int, params, clock_time: float):
    """import_certificate(octet-string DER): accepted when the fleet CA issued it. A certificate of one
    of the meter's own keys becomes its server certificate; any other is a client's, and a client
    signing certificate is the key HLS mechanism 7 then checks."""
    if params is None or params.tag is not DataType.OCTET_STRING:
        return ActionResult.TYPE_UNMATCHED, None
    cert = certs.load(bytes(params.value))
    if cert is None or not certs.issued_by_fleet_ca(meter.fleet, suite, cert):
        return ActionResult.OTHER_REASON, None
    sec = pki(meter, suite, clock_time)
    key = cert.public_key()
    if certs.same_key(key, sec.signing.public_key()):
        entity, kind = certs.SERVER, certs.SIGNATURE
    elif certs.same_key(key, sec.agreement.public_key()):
        entity, kind = certs.SERVER, certs.KEY_AGREEMENT
    else:
        entity, kind = certs.CLIENT, certs.kind_of(cert)
    held = certs.Held(entity, kind, bytes(params.value))
    sec.certs = [h for h in sec.certs if not (h.entity == entity and h.type == kind
                                              and h.subject_der == held.subject_der)] + [held]
    if entity == certs.CLIENT and kind == certs.SIGNATURE:
        sec.client_public = key
    sec.certs_changed = True
    return ActionResult.SUCCESS, None


def _find(meter, sec, params):
    """The held certificates a certificate_identification names (by entity or by serial), or None if
    the parameter is malformed."""
    if params is None or params.tag is not DataType.STRUCTURE or len(params.value) != 2:
        return None
    how, what = params.value
    if how.tag is not DataType.ENUM or what.tag is not DataType.STRUCTURE:
        return None
    fields = what.value
    if how.value == 0 and len(fields) == 3:  # entity, type, system title
        entity, kind, title = (f.value for f in fields)
        if not isinstance(title, bytes | bytearray):
            return None
        title = bytes(title)
        return [h for h in sec.certs if h.entity == entity and h.type == kind
                and (h.names_title(title) or (entity == certs.SERVER and title == meter.identity.system_title)
                     or entity == certs.CA)]
    if how.value == 1 and len(fields) == 2:  # serial number, issuer
        serial, issuer = (bytes(f.value) if isinstance(f.value, bytes | bytearray) else None for f in fields)
        if serial is None or issuer is None:
            return None
        return [h for h in sec.certs if _same_serial(h, serial) and _same_issuer(h, issuer)]
    return None


def _same_serial(h, serial: bytes) -> bool:
    n = h.cert.serial_number
    if serial == h.serial_der:
        return True
    if serial.isdigit() and int(serial) == n:  # the decimal text some head-ends send
        return True
    return int.from_bytes(serial, "big") == n


def _same_issuer(h, issuer: bytes) -> bool:
    if issuer == h.issuer_der:
        return True
    try:
        return issuer.decode() in (h.cert.issuer.rfc4514_string(), "")
    except UnicodeDecodeError:
        return False


def export_certificate(meter, suite: int, params, clock_time: float):
    sec = pki(meter, suite, clock_time)
    found = _find(meter, sec, params)
    if found is None:
        return ActionResult.TYPE_UNMATCHED, None
    if not found:
        return ActionResult.OTHER_REASON, None
    return ActionResult.SUCCESS, encode_octets(found[-1].der)


def remove_certificate(meter, suite: int, params, clock_time: float):
    sec = pki(meter, suite, clock_time)
    found = _find(meter, sec, params)
    if found is None:
        return ActionResult.TYPE_UNMATCHED, None
    if not found or any(h.entity == certs.CA for h in found):
        return ActionResult.OTHER_REASON, None  # unknown, or the CA the meter trusts
    sec.certs = [h for h in sec.certs if h not in found]
    if any(h.entity == certs.CLIENT and h.type == certs.SIGNATURE for h in found):
        sec.client_public = None  # back to the fleet's head-end key
    sec.certs_changed = True
    return ActionResult.SUCCESS, None


# -- key_agreement (Security setup v1 method 3), suites 1 and 2 ---------------------------------------------


_KDF_FIRST_ROUND = (1).to_bytes(4, "big")  # the KDF's 32-bit round counter
_ALGORITHM_ARC = bytes((0x60, 0x85, 0x74, 0x05, 0x08, 0x03))  # OID 2.16.756.5.8.3 (DLMS UA algorithm ids), BER


def kdf(suite: int, z: bytes, other_info: bytes, size: int) -> bytes:
    """NIST SP 800-56A concatenation KDF, one round: H(00000001 || Z || OtherInfo), cut to ``size``."""
    h = hashlib.sha256 if suite == 1 else hashlib.sha384
    return h(_KDF_FIRST_ROUND + z + other_info).digest()[:size]


def algorithm_id(suite: int, key_id: int) -> bytes:
    """OID 2.16.756.5.8.3.x of the algorithm the agreed key serves: AES-GCM-128/256 for EK and AK,
    AES key wrap 128/256 for the master key."""
    wide = suite == 2
    last = (3 if wide else 2) if key_id == KEY_MASTER else (1 if wide else 0)
    return _ALGORITHM_ARC + bytes((last,))


def key_agreement(meter, e: int, suite: int, params, now: float, client_title: bytes):
    """key_agreement: array of {key_id, key_data}, key_data = the head-end's ephemeral public key (x || y)
    and its ECDSA signature of key_id || x || y. The meter answers, per key, with its own ephemeral key
    and signature; both sides take KDF(ECDH(ephemerals), AlgorithmID || client title || meter title)
    as the new key (Ephemeral Unified Model, C(2e, 0s)). The layout follows public DLMS implementations
    (the Green Book text is not public: UNCONFIRMED)."""
    if params is None or params.tag is not DataType.ARRAY or not params.value:
        return ActionResult.TYPE_UNMATCHED, None
    state = meter.keys()
    if state.client_public is None:
        state.client_public = client_signing_key(meter.fleet, suite).public_key()
    if state.signing is None:
        state.signing = signing_key(meter.fleet, meter.identity.meter_id, suite)
    size = 32 if suite == 1 else 48
    curve = ec.SECP256R1() if suite == 1 else ec.SECP384R1()
    server_title = meter.identity.system_title
    agreed, answers = {}, []
    for item in params.value:
        if (item.tag is not DataType.STRUCTURE or len(item.value) != 2 or item.value[0].tag is not DataType.ENUM
                or item.value[1].tag is not DataType.OCTET_STRING):
            return ActionResult.TYPE_UNMATCHED, None
        key_id, data = item.value[0].value, bytes(item.value[1].value)
        if key_id not in (KEY_EK, KEY_AK, KEY_MASTER) or len(data) != 4 * size:
            return ActionResult.OTHER_REASON, None
        client_point, signature = data[:2 * size], data[2 * size:]
        if not sec.ecdsa_verify(suite, state.client_public, signature, bytes((key_id,)) + client_point):
            return ActionResult.OTHER_REASON, None
        try:
            client_eph = sec.public_key_from_bytes(suite, client_point)
        except sec.SecurityError:
            return ActionResult.OTHER_REASON, None
        mine = ec.generate_private_key(curve)
        my_point = sec.public_bytes(mine)[1:]
        z = sec.ecdh(mine, client_eph)
        agreed[key_id] = kdf(suite, z, algorithm_id(suite, key_id) + client_title + server_title,
                             sec.KEY_LENGTH[suite])
        answers.append(Data(DataType.OCTET_STRING, my_point + sec.ecdsa_sign(
            suite, state.signing, bytes((key_id,)) + my_point)))
    _install(meter, state, e, agreed, now)
    return ActionResult.SUCCESS, encode_value(Data(DataType.ARRAY, tuple(answers)))
