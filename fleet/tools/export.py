"""The HES onboarding file: every meter, where to reach it, and how to associate with it.

Names and layout are the contract in DESIGN.md ("Onboarding file"). Rows are produced one meter at a
time and written as they come, so exporting a million meters needs no more memory than one.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import TextIO

from fleet.settings import FleetOptions
from fleet.store import pg, sql
from meter_core.codec.apdu.codes import AuthenticationMechanism
from meter_core.codec.crypto import public_bytes
from meter_core.cosem.is15959 import ASSOCIATIONS, POLICY_AUTH_ENC, SECURED_SAPS
from meter_core.device.identity import meter_identity
from meter_core.device.keys import (
    SETUP_OF_CLIENT,
    client_signing_key,
    client_system_title,
    derived_keys,
    from_rows,
    signing_key,
)

AUTHENTICATION_NAMES = {
    AuthenticationMechanism.NONE: "none",
    AuthenticationMechanism.LOW: "low",
    AuthenticationMechanism.HIGH: "high",
    AuthenticationMechanism.HIGH_GMAC: "high-gmac",
    AuthenticationMechanism.HIGH_ECDSA: "high-ecdsa",
}

CSV_COLUMNS = (
    "meter_id", "kind", "serial", "logical_device_name", "system_title", "host", "port", "transport",
    "server_logical_address", "server_physical_address", "client_sap", "association", "authentication",
    "password", "hls_secret", "security_suite", "security_policy", "block_key", "auth_key", "master_key",
    "client_system_title", "client_signing_key", "server_signing_public_key",
)


def meter_record(options: FleetOptions, meter_id: int, keys=None) -> dict:
    """The onboarding entry of one meter; ``keys`` (a `MeterSecurity`) are the keys in force when a
    head-end changed them, else the ones derived from the fleet secret."""
    fleet = options.fleet
    ident = meter_identity(fleet, meter_id)
    host, port = options.address(meter_id)
    keys = keys if keys is not None else derived_keys(fleet, meter_id, fleet.security_suite)
    clients = []
    for a in ASSOCIATIONS:
        secured = a.client_sap in SECURED_SAPS
        mechanism = AuthenticationMechanism(fleet.hls_mechanism) if secured else a.mechanism
        client = {
            "client_sap": a.client_sap,
            "association": a.obis,
            "authentication": AUTHENTICATION_NAMES[mechanism],
        }
        if a.mechanism is AuthenticationMechanism.LOW:
            client["password"] = keys.lls_password.decode("ascii") if keys.lls_password else ident.lls_password
        if secured:
            ks = keys.sets[SETUP_OF_CLIENT[a.client_sap]]
            if mechanism is AuthenticationMechanism.HIGH:
                client["hls_secret"] = keys.hls[a.client_sap].hex()
            client.update(
                security_suite=ks.suite, security_policy=POLICY_AUTH_ENC, block_key=ks.ek.hex(), auth_key=ks.ak.hex(),
                master_key=keys.kek.hex(), client_system_title=client_system_title(fleet).hex(),
            )
            if ks.suite:  # the public-key half of suites 1 and 2 (P-256 / P-384)
                client.update(
                    client_signing_key=_scalar(client_signing_key(fleet, ks.suite), ks.suite),
                    server_signing_public_key=public_bytes(signing_key(fleet, meter_id, ks.suite)).hex(),
                )
        clients.append(client)
    return {
        "meter_id": meter_id,
        "kind": ident.kind.value,
        "serial": ident.serial,
        "logical_device_name": ident.logical_device_name,
        "system_title": ident.system_title.hex(),
        "host": host,
        "port": port,
        "transport": options.transport.value,
        "server_logical_address": 1,
        "server_physical_address": ident.hdlc_physical_address,
        "clients": clients,
    }


def _scalar(private_key, suite: int) -> str:
    """A private key as its raw scalar, hex (32 bytes for P-256, 48 for P-384)."""
    return private_key.private_numbers().private_value.to_bytes(32 if suite == 1 else 48, "big").hex()


def records(options: FleetOptions, stored: dict | None = None, ids: range | None = None) -> Iterator[dict]:
    """The entries of the meters ``ids`` (all by default); ``stored`` maps meter_id to its `meter_keys` rows
    (keys in force)."""
    fleet = options.fleet
    for meter_id in range(options.meters) if ids is None else ids:
        rows = stored.get(meter_id) if stored else None
        keys = from_rows(fleet, meter_id, rows) if rows else None
        yield meter_record(options, meter_id, keys)


async def stored_keys(url: str, meter_ids: range) -> dict[int, list]:
    """The `meter_keys` rows of ``meter_ids``, by meter (an unmigrated database has none)."""
    out: dict[int, list] = {}
    for r in await pg.fetch_all(url, sql.SELECT_KEYS, meter_ids.start, meter_ids.stop):
        out.setdefault(r["meter_id"], []).append(r)
    return out


def write_json(options: FleetOptions, out: TextIO, progress=None, stored: dict | None = None,
               ids: range | None = None) -> int:
    """One JSON array, one object per meter (of ``ids``); returns the number of meters written."""
    n = 0
    out.write("[")
    for rec in records(options, stored, ids):
        out.write(",\n" if n else "\n")
        out.write(json.dumps(rec, separators=(",", ":")))
        n += 1
        if progress is not None:
            progress(n)
    out.write("\n]\n")
    return n


def write_csv(options: FleetOptions, out: TextIO, progress=None, stored: dict | None = None,
              ids: range | None = None) -> int:
    """One row per meter (of ``ids``) and client, columns `CSV_COLUMNS`; returns the number of meters written."""
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    n = 0
    for rec in records(options, stored, ids):
        base = {k: v for k, v in rec.items() if k != "clients"}
        for client in rec["clients"]:
            w.writerow({**base, **client})
        n += 1
        if progress is not None:
            progress(n)
    return n
