"""Keys in force and invocation counters, end to end: a key transfer over DLMS, the database, the
onboarding export, and a worker restart.

gurux-dlms wraps the new keys itself (GXDLMSSecuritySetup.globalKeyTransfer, its own AES key wrap), so
the meter's unwrap is checked against an independent implementation.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import asyncpg
import pytest
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSSecuritySetup
from gurux_dlms.objects.enums import GlobalKeyType

from fleet.tools.export import meter_record, records, stored_keys
from meter_core.connection import Transport
from tests.interop.clients import GuruxSession
from tests.servers import running_meters

pytestmark = pytest.mark.integration


def client48(rec: dict) -> dict:
    return next(c for c in rec["clients"] if c["client_sap"] == 48)


def read_public(m, obis: str):
    s = GuruxSession(m.port(0), Transport.WRAPPER)
    s.open()
    try:
        return s.read(GXDLMSData(obis), 2)
    finally:
        s.close()


def session(m, client: dict) -> GuruxSession:
    ic = int(read_public(m, "0.0.43.1.3.255"))
    s = GuruxSession(m.port(0), Transport.WRAPPER, secure=client, invocation_counter=ic + 1)
    s.open()
    return s


async def key_row(url: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow("SELECT * FROM meter_keys WHERE meter_id = 0 AND security_setup = 3")
    finally:
        await conn.close()


def wait_for_row(url: str, check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        row = asyncio.run(key_row(url))
        if row is not None and check(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"meter_keys never showed the expected row: {row}")
        time.sleep(0.2)


def test_key_transfer_takes_effect_and_the_database_and_export_show_the_new_key(database_url):
    new_ek, new_ak = os.urandom(16), os.urandom(16)
    with running_meters(1, Transport.WRAPPER, database_url=database_url) as m:
        old = client48(meter_record(m.options, 0))
        s = session(m, old)
        try:
            setup = GXDLMSSecuritySetup("0.0.43.0.3.255")
            reply = s.exchange(setup.globalKeyTransfer(s.client, bytes.fromhex(old["master_key"]), [
                (GlobalKeyType.UNICAST_ENCRYPTION, new_ek), (GlobalKeyType.AUTHENTICATION, new_ak)]))
            assert reply.error == 0
        finally:
            s.sock.close()  # the old keys are gone: no release under them
        new = dict(old, block_key=new_ek.hex(), auth_key=new_ak.hex())

        # a new association with the new keys works; counters under the new key start again
        assert int(read_public(m, "0.0.43.1.3.255")) == 0
        s = session(m, new)
        s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
        # the key change is in the transaction log: last event code 164 (global key changed)
        assert s.read(GXDLMSData("0.0.96.11.3.255"), 2) == 164
        s.close()
        # the old keys fail: the meter cannot decipher the AARQ and refuses it
        before = m.worker.stats.all_security_failures["deciphering"]
        with pytest.raises(Exception):  # noqa: B017 - gurux raises its own error types for a refused AARE
            session(m, old)
        assert m.worker.stats.all_security_failures["deciphering"] == before + 1
        row = wait_for_row(database_url, lambda r: bytes(r["block_key"]) == new_ek)
        assert bytes(row["auth_key"]) == new_ak and row["keys_changed_at"] is not None
        assert row["rx_invocation_counter"] >= 2

    # the onboarding export reads the keys in force: in code and through the CLI
    stored = asyncio.run(stored_keys(database_url, range(1)))
    assert client48(next(records(m.options, stored)))["block_key"] == new_ek.hex()
    proc = subprocess.run([sys.executable, "-m", "fleet", "meters", "export", "--meters", "1", "--database-url",
                           database_url], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    exported = client48(json.loads(proc.stdout)[0])
    assert (exported["block_key"], exported["auth_key"]) == (new_ek.hex(), new_ak.hex())
    assert exported["master_key"] == old["master_key"]


def test_a_restarted_worker_keeps_the_counters_and_the_keys(database_url):
    with running_meters(1, Transport.WRAPPER, database_url=database_url) as m:
        c = client48(meter_record(m.options, 0))
        for _ in range(2):
            s = session(m, c)
            s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
            s.close()
        rx = int(read_public(m, "0.0.43.1.3.255"))
        # what is stored is a reservation ahead of the counters accepted, made before the answers went out
        row = wait_for_row(database_url, lambda r: r["rx_invocation_counter"] > rx)
        reserved = row["rx_invocation_counter"]
        tx_before = row["tx_invocation_counter"]
    with running_meters(1, Transport.WRAPPER, database_url=database_url) as m:
        # the received counter survived, and everything up to the reservation with it (a crash could have
        # accepted any of it): an old counter is refused, the one after the reservation is accepted
        assert int(read_public(m, "0.0.43.1.3.255")) == reserved
        s = GuruxSession(m.port(0), Transport.WRAPPER, secure=c, invocation_counter=rx)
        with pytest.raises(Exception):  # noqa: B017 - the AARQ under a used counter is refused
            s.open()
        s.sock.close()
        assert m.worker.stats.all_security_failures["invocation-counter"] == 1
        s = session(m, c)
        s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
        s.close()
        # the meter's own counter went on above everything it may have sent before the restart
        row = wait_for_row(database_url, lambda r: r["tx_invocation_counter"] > tx_before)
        assert row["tx_invocation_counter"] > tx_before + (1 << 20) - 1


def test_change_hls_secret_takes_effect_and_is_recorded(database_url):
    from gurux_dlms.enums import DataType as GXType
    from gurux_dlms.objects import GXDLMSAssociationLogicalName

    new_secret = os.urandom(16)
    with running_meters(1, Transport.WRAPPER, database_url=database_url) as m:
        old = client48(meter_record(m.options, 0))
        s = session(m, old)
        try:
            current = GXDLMSAssociationLogicalName("0.0.40.0.0.255")
            assert s.exchange(s.client.method(current, 2, new_secret, GXType.OCTET_STRING)).error == 0
            s.close()
        finally:
            s.sock.close()
        new = dict(old, hls_secret=new_secret.hex())
        s = session(m, new)
        # the transaction log says so: 162, HLS key of the utility-settings association changed
        assert s.read(GXDLMSData("0.0.96.11.3.255"), 2) == 162
        s.close()
        with pytest.raises(Exception):  # noqa: B017 - the old secret fails pass 3
            session(m, old)
        assert m.worker.stats.all_security_failures["authentication"] == 1
        row = wait_for_row(database_url, lambda r: bytes(r["hls_secret"] or b"") == new_secret)
        assert row["keys_changed_at"] is not None
    stored = asyncio.run(stored_keys(database_url, range(1)))
    assert client48(next(records(m.options, stored)))["hls_secret"] == new_secret.hex()


def test_a_regenerated_key_pair_and_its_certificate_survive_a_restart(database_url):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from meter_core.device import certs
    from tests.interop.test_certificates import Encoded, held, invoke

    def certificate_rows(url):
        async def fetch():
            conn = await asyncpg.connect(url)
            try:
                return await conn.fetch("SELECT * FROM certificates WHERE meter_id = 0")
            finally:
                await conn.close()
        return asyncio.run(fetch())

    kw = dict(database_url=database_url, hls_mechanism=7, security_suite=1)
    with running_meters(1, Transport.WRAPPER, **kw) as m:
        c = client48(meter_record(m.options, 0))
        s = session(m, c)
        try:
            setup = GXDLMSSecuritySetup("0.0.43.0.3.255")
            invoke(s, setup.generateKeyPair(s.client, certs.SIGNATURE))
            request = x509.load_der_x509_csr(bytes(invoke(s, setup.generateCertificate(s.client, certs.SIGNATURE))))
            new_cert = certs.issue(m.fleet, 1, request.public_key(), request.subject, certs.SIGNATURE,
                                   dt.datetime.now(dt.UTC).timestamp())
            invoke(s, setup.importCertificate(s.client, Encoded(new_cert)))
            s.close()
        finally:
            s.sock.close()
        wait_for_row(database_url, lambda r: r["signing_key"] is not None)
        deadline = time.monotonic() + 10
        while str(new_cert.serial_number) not in {r["serial_number"] for r in certificate_rows(database_url)}:
            assert time.monotonic() < deadline, "certificate never written"
            time.sleep(0.2)
    point = request.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint).hex()
    with running_meters(1, Transport.WRAPPER, **kw) as m:
        s = session(m, dict(c, server_signing_public_key=point))  # the meter signs with the stored new key
        assert (certs.SERVER, certs.SIGNATURE) in held(s)
        setup = GXDLMSSecuritySetup("0.0.43.0.3.255")
        der = invoke(s, setup.exportCertificateByEntity(s.client, certs.SERVER, certs.SIGNATURE,
                                                        m.identity(0).system_title))
        assert x509.load_der_x509_certificate(bytes(der)).serial_number == new_cert.serial_number
        s.close()


def test_a_changed_meter_reader_password_is_stored_exported_and_survives_a_restart(database_url):
    from gurux_dlms.objects import GXDLMSAssociationLogicalName

    with running_meters(1, Transport.WRAPPER, database_url=database_url) as m:
        s = session(m, client48(meter_record(m.options, 0)))
        try:
            mr = GXDLMSAssociationLogicalName("0.0.40.0.2.255")
            mr.secret = b"HESPASS2026"
            assert s.exchange(s.client.write(mr, 7)).error == 0
            s.close()
        finally:
            s.sock.close()
        wait_for_row(database_url, lambda r: bytes(r["lls_password"] or b"") == b"HESPASS2026")
    with running_meters(1, Transport.WRAPPER, database_url=database_url) as m:
        s = GuruxSession(m.port(0), Transport.WRAPPER, client_sap=32, password="HESPASS2026")
        s.open()
        s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
        s.close()
    stored = asyncio.run(stored_keys(database_url, range(1)))
    rec = next(records(m.options, stored))
    assert next(c for c in rec["clients"] if c["client_sap"] == 32)["password"] == "HESPASS2026"
