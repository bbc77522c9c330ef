"""A meter's keys, HLS secrets and invocation counters, derived from the fleet secret and meter_id.

IS 15959 meters keep one security setup (class 64) per secured association: #3 utility settings
(client 48), #4 push (64), #5 firmware upgrade (80) (facts 5.6). Each has its global unicast
encryption key (EK) and authentication key (AK); the master key (KEK) wraps new keys. Until a head-end
changes one, every key is a pure function of (fleet secret, meter_id), so an idle meter stores none:
`MeterSecurity` is created on a meter's first secured association and holds the counters from then on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meter_core.identity import FleetConfig, derive_secret

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

    def next_tx(self) -> int:
        self.tx_ic += 1
        return self.tx_ic


@dataclass(slots=True)
class MeterSecurity:
    kek: bytes
    sets: dict[int, KeySet]
    hls: dict[int, bytes]  # client SAP -> HLS secret
    changed: set = field(default_factory=set)  # what a head-end changed: ("key", e), ("hls", sap), ...
    # suites 1 and 2: the meter's signing key and the head-end's public key (derived on first use)
    signing: object = None
    client_public: object = None


def signing_key(fleet: FleetConfig, meter_id: int, suite: int):
    """The meter's ECDSA key (P-256 for suite 1, P-384 for suite 2), derived from the fleet secret."""
    from meter_core.security import private_key_from_scalar

    return private_key_from_scalar(suite, derive_secret(fleet, meter_id, f"signing-{suite}", 64))


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


def rows(meter_id: int, sec: MeterSecurity) -> list[tuple]:
    """`meter_keys` rows (without timestamps) of ``sec``: meter_id, setup, client SAP, suite, EK, AK,
    KEK, HLS secret, client system title, received and sent counters, keys changed."""
    out = []
    for e, ks in sec.sets.items():
        sap = CLIENT_OF_SETUP[e]
        changed = any(c[0] == "key" and c[1] == e for c in sec.changed) or ("hls", sap) in sec.changed
        out.append((meter_id, e, sap, ks.suite, ks.ek, ks.ak, sec.kek, sec.hls.get(sap) if sap != 64 else None,
                    ks.client_system_title or None, ks.rx_ic, ks.tx_ic, changed))
    return out


def from_rows(fleet: FleetConfig, meter_id: int, stored: list, tx_floor: int = 0) -> MeterSecurity:
    """A meter's security state from its `meter_keys` rows (dict-like: column -> value)."""
    sec = derived_keys(fleet, meter_id, fleet.security_suite, tx_floor)
    for r in stored:
        e = r["security_setup"]
        ks = sec.sets[e]
        ks.ek, ks.ak, ks.suite = bytes(r["block_key"]), bytes(r["auth_key"]), r["security_suite"]
        ks.rx_ic = r["rx_invocation_counter"]
        ks.tx_ic = min(max(ks.tx_ic, r["tx_invocation_counter"] + TX_RESTART_MARGIN), 0xFFFFFFFF)
        ks.client_system_title = bytes(r["client_system_title"] or b"")
        sec.kek = bytes(r["master_key"])
        sap = CLIENT_OF_SETUP[e]
        if r["hls_secret"] is not None:
            sec.hls[sap] = bytes(r["hls_secret"])
        if r["keys_changed_at"] is not None:
            sec.changed.update({("key", e, KEY_EK), ("hls", sap)})
    return sec


__all__ = ["KeySet", "MeterSecurity", "SECURED_CLIENTS", "SETUP_OF_CLIENT", "TX_RESTART_MARGIN", "client_system_title",
           "derived_keys", "from_rows", "rows"]


# -- key management (Security setup v1 methods) -------------------------------------------------------

KEY_EK, KEY_BROADCAST, KEY_AK, KEY_MASTER = 0, 1, 2, 3
EV_HLS_US, EV_HLS_FW, EV_GLOBAL_KEY = 162, 163, 164  # transaction events (facts section 10)


def key_transfer(meter, e: int, params, now: float):
    """key_transfer: array of {key_id enum, key_wrapped octet-string}, each unwrapped with the master key
    (RFC 3394). All or nothing: one bad entry and no key changes. New keys start with fresh invocation
    counters and take effect from the next APDU (the response to this one is still protected with the
    old keys)."""
    from meter_core.apdu.codes import ActionResult
    from meter_core.axdr import DataType
    from meter_core.eventlog import TRANSACTION
    from meter_core.security import KEY_LENGTH, SecurityError, unwrap_key

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
    if KEY_EK in new:
        ks.ek = new[KEY_EK]
        ks.rx_ic = ks.tx_ic = 0
    if KEY_AK in new:
        ks.ak = new[KEY_AK]
    if KEY_MASTER in new:
        sec.kek = new[KEY_MASTER]
    sec.changed.update(("key", e, k) for k in new)
    meter.record_event(TRANSACTION, EV_GLOBAL_KEY, now)
    return ActionResult.SUCCESS, None


def change_hls_secret(meter, client_sap: int, params, now: float):
    """change_HLS_secret (Association LN method 2): octet-string, the new secret (mechanism 2)."""
    from meter_core.apdu.codes import ActionResult
    from meter_core.axdr import DataType
    from meter_core.eventlog import TRANSACTION

    if params is None or params.tag is not DataType.OCTET_STRING:
        return ActionResult.TYPE_UNMATCHED, None
    if not 1 <= len(params.value) <= 32:
        return ActionResult.OTHER_REASON, None
    sec = meter.keys()
    sec.hls[client_sap] = bytes(params.value)
    sec.changed.add(("hls", client_sap))
    meter.record_event(TRANSACTION, EV_HLS_US if client_sap == 48 else EV_HLS_FW, now)
    return ActionResult.SUCCESS, None
