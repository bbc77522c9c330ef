"""The HES onboarding file: every meter, where to reach it, and how to associate with it.

Names and layout are the contract in DESIGN.md ("Onboarding file"). Rows are produced one meter at a
time and written as they come, so exporting a million meters needs no more memory than one.
"""

from __future__ import annotations

import bisect
import csv
import json
from collections.abc import Callable, Iterator
from typing import TextIO

from fleet.errors import FleetError
from fleet.settings import FleetOptions, split_range
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


def pod_dns(options: FleetOptions, template: str, pods: int) -> Callable[[int], str]:
    """Meter id -> the DNS name of the pod that serves it when the fleet runs as ``pods`` pods, pod k with
    ``--shard k/pods`` (deploy/kustomize: a StatefulSet behind a headless Service): ``template`` with
    ``{k}`` the pod's ordinal, e.g. ``cosem-fleet-{k}.cosem-fleet.meters.svc.cluster.local``. Listen mode
    only: there a meter's port is the same in whichever pod serves it."""
    if options.mode != "listen":
        raise FleetError(f"--pod-dns is for --mode listen (each meter on its port in its pod), not {options.mode}")
    if pods < 1:
        raise FleetError(f"--pods {pods}: need at least one pod")
    try:
        names = {template.format(k=k) for k in (0, 1)}
    except (KeyError, IndexError, ValueError) as e:
        raise FleetError(f"--pod-dns {template!r}: a host name with {{k}} for the pod ordinal ({e})") from None
    if len(names) != 2:
        raise FleetError(f"--pod-dns {template!r} has no {{k}}: every pod would get the same name")
    # pod k serves the k-th of the split the supervisor makes (FleetOptions.pod_range with shard k/pods)
    starts = [r.start for r in split_range(range(options.meters), pods)]
    return lambda meter_id: template.format(k=bisect.bisect_right(starts, meter_id) - 1)


def meter_record(options: FleetOptions, meter_id: int, keys=None, host: str | None = None) -> dict:
    """The onboarding entry of one meter; ``keys`` (a `MeterSecurity`) are the keys in force when a
    head-end changed them, else the ones derived from the fleet secret; ``host`` replaces the address the
    meter listens on (its pod's DNS name, `pod_dns`)."""
    fleet = options.fleet
    ident = meter_identity(fleet, meter_id)
    listen_host, port = options.address(meter_id)
    host = listen_host if host is None else host
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


def records(options: FleetOptions, stored: dict | None = None, ids: range | None = None,
            host: Callable[[int], str] | None = None) -> Iterator[dict]:
    """The entries of the meters ``ids`` (all by default); ``stored`` maps meter_id to its `meter_keys` rows
    (keys in force); ``host`` gives a meter's host instead of its listen address (`pod_dns`)."""
    fleet = options.fleet
    for meter_id in range(options.meters) if ids is None else ids:
        rows = stored.get(meter_id) if stored else None
        keys = from_rows(fleet, meter_id, rows) if rows else None
        yield meter_record(options, meter_id, keys, None if host is None else host(meter_id))


async def stored_keys(url: str, meter_ids: range) -> dict[int, list]:
    """The `meter_keys` rows of ``meter_ids``, by meter (an unmigrated database has none)."""
    out: dict[int, list] = {}
    for r in await pg.fetch_all(url, sql.SELECT_KEYS, meter_ids.start, meter_ids.stop):
        out.setdefault(r["meter_id"], []).append(r)
    return out


def write_json(options: FleetOptions, out: TextIO, progress=None, stored: dict | None = None,
               ids: range | None = None, host: Callable[[int], str] | None = None) -> int:
    """One JSON array, one object per meter (of ``ids``); returns the number of meters written."""
    n = 0
    out.write("[")
    for rec in records(options, stored, ids, host):
        out.write(",\n" if n else "\n")
        out.write(json.dumps(rec, separators=(",", ":")))
        n += 1
        if progress is not None:
            progress(n)
    out.write("\n]\n")
    return n


def write_csv(options: FleetOptions, out: TextIO, progress=None, stored: dict | None = None,
              ids: range | None = None, host: Callable[[int], str] | None = None) -> int:
    """One row per meter (of ``ids``) and client, columns `CSV_COLUMNS`; returns the number of meters written."""
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    n = 0
    for rec in records(options, stored, ids, host):
        base = {k: v for k, v in rec.items() if k != "clients"}
        for client in rec["clients"]:
            w.writerow({**base, **client})
        n += 1
        if progress is not None:
            progress(n)
    return n
