"""Key pairs and certificates of suite 1 with gurux-dlms: read them, export, regenerate a key pair and
import its new certificate, import a head-end's own signing certificate and authenticate with it.

The test plays the fleet's test CA (its key is derived from the fleet secret, as every process of the
fleet derives it) to sign what the meter asks for.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSSecuritySetup

from fleet.tools.export import meter_record
from meter_core.connection import Transport
from meter_core.device import certs
from tests.interop.clients import GuruxError, GuruxSession
from tests.servers import running_meters

pytestmark = pytest.mark.interop
US_SETUP = "0.0.43.0.3.255"


@pytest.fixture(scope="module")
def meters():
    with running_meters(2, Transport.WRAPPER, hls_mechanism=7, security_suite=1) as running:
        yield running


def client48(meters, meter_id: int = 0) -> dict:
    return next(c for c in meter_record(meters.options, meter_id)["clients"] if c["client_sap"] == 48)


def session(meters, client: dict | None = None, meter_id: int = 0) -> GuruxSession:
    """Client 48 on ``meter_id`` (meter 0 gets a new signing key below; meter 1 keeps its own)."""
    p = GuruxSession(meters.port(meter_id), Transport.WRAPPER)
    p.open()
    ic = int(p.read(GXDLMSData("0.0.43.1.3.255"), 2))
    p.close()
    s = GuruxSession(meters.port(meter_id), Transport.WRAPPER, secure=client or client48(meters, meter_id),
                     invocation_counter=ic + 1)
    s.open()
    return s


def invoke(s: GuruxSession, request):
    reply = s.exchange(request)
    if reply.error:
        raise GuruxError(reply.error)
    return reply.value


class Encoded:
    """What GXDLMSSecuritySetup.importCertificate sends: the certificate's DER (``.encoded``). gurux's own
    X.509 parser (GXx509Certificate) fails on a critical KeyUsage extension, which RFC 5280 asks for."""

    def __init__(self, cert: x509.Certificate) -> None:
        self.encoded = cert.public_bytes(Encoding.DER)


def held(s: GuruxSession) -> list:
    setup = GXDLMSSecuritySetup(US_SETUP)
    s.read(setup, 6)
    return [(int(c.entity), int(c.type_)) for c in setup.certificates]


def test_the_meter_holds_ca_issued_certificates_of_its_own_keys(meters):
    s = session(meters)
    try:
        assert sorted(held(s)) == [(certs.SERVER, certs.SIGNATURE), (certs.SERVER, certs.KEY_AGREEMENT),
                                   (certs.CA, certs.SIGNATURE)]
        setup = GXDLMSSecuritySetup(US_SETUP)
        der = invoke(s, setup.exportCertificateByEntity(s.client, certs.SERVER, certs.SIGNATURE,
                                                        meters.identity(0).system_title))
        s.close()
    finally:
        s.sock.close()
    cert = x509.load_der_x509_certificate(bytes(der))
    _, ca = certs.fleet_ca(meters.fleet, 1)
    cert.verify_directly_issued_by(ca)
    point = cert.public_key().public_bytes(Encoding.X962, certs.serialization.PublicFormat.UncompressedPoint)
    assert point.hex() == client48(meters)["server_signing_public_key"]


def test_a_new_key_pair_gets_a_certificate_from_its_request_and_signs_the_next_association(meters):
    ca_key, ca = certs.fleet_ca(meters.fleet, 1)
    s = session(meters)
    try:
        setup = GXDLMSSecuritySetup(US_SETUP)
        invoke(s, setup.generateKeyPair(s.client, certs.SIGNATURE))
        assert (certs.SERVER, certs.SIGNATURE) not in held(s)
        request = x509.load_der_x509_csr(bytes(invoke(s, setup.generateCertificate(s.client, certs.SIGNATURE))))
        assert request.is_signature_valid
        new_cert = certs.issue(meters.fleet, 1, request.public_key(), request.subject, certs.SIGNATURE,
                               dt.datetime.now(dt.UTC).timestamp())
        invoke(s, setup.importCertificate(s.client, Encoded(new_cert)))
        assert (certs.SERVER, certs.SIGNATURE) in held(s)
        s.close()
    finally:
        s.sock.close()
    # the next mechanism-7 association: gurux checks the meter's signature with the new public key
    new_point = request.public_key().public_bytes(Encoding.X962, certs.serialization.PublicFormat.UncompressedPoint)
    client = dict(client48(meters), server_signing_public_key=new_point.hex())
    s = session(meters, client)
    s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    s.close()
    # with the old public key gurux refuses the meter's signature (pass 4): the meter itself accepted pass 3
    before = meters.worker.stats.all_security_failures["authentication"]
    with pytest.raises(Exception):  # noqa: B017 - gurux's mismatch branch for ECDSA raises UnboundLocalError
        session(meters)
    assert meters.worker.stats.all_security_failures["authentication"] == before


def test_an_imported_head_end_certificate_decides_who_may_sign(meters):
    hes_key = ec.generate_private_key(ec.SECP256R1())
    title = bytes.fromhex(client48(meters, 1)["client_system_title"])
    hes_cert = certs.issue(meters.fleet, 1, hes_key.public_key(), certs.subject_for(title, "head-end"),
                           certs.SIGNATURE, dt.datetime.now(dt.UTC).timestamp())
    server_point = None
    s = session(meters, meter_id=1)
    try:
        setup = GXDLMSSecuritySetup(US_SETUP)
        der = invoke(s, setup.exportCertificateByEntity(s.client, certs.SERVER, certs.SIGNATURE,
                                                        meters.identity(1).system_title))
        server_point = x509.load_der_x509_certificate(bytes(der)).public_key().public_bytes(
            Encoding.X962, certs.serialization.PublicFormat.UncompressedPoint)
        # a certificate the fleet CA did not issue is refused (other-reason)
        stranger = ec.generate_private_key(ec.SECP256R1())
        self_signed = (x509.CertificateBuilder().subject_name(certs.subject_for(title)).issuer_name(
            certs.subject_for(title)).public_key(stranger.public_key()).serial_number(7)
            .not_valid_before(dt.datetime(2025, 1, 1)).not_valid_after(dt.datetime(2035, 1, 1))
            .sign(stranger, certs._hash(1)))
        with pytest.raises(GuruxError) as refused:
            invoke(s, setup.importCertificate(s.client, Encoded(self_signed)))
        assert refused.value.code == 250
        invoke(s, setup.importCertificate(s.client, Encoded(hes_cert)))
        assert (certs.CLIENT, certs.SIGNATURE) in held(s)
        s.close()
    finally:
        s.sock.close()
    raw = hes_key.private_numbers().private_value.to_bytes(32, "big")
    mine = dict(client48(meters, 1), client_signing_key=raw.hex(), server_signing_public_key=server_point.hex())
    s = session(meters, mine, 1)  # the head-end's own key now authenticates it
    s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    setup = GXDLMSSecuritySetup(US_SETUP)
    invoke(s, setup.removeCertificateBySerial(s.client, str(hes_cert.serial_number), hes_cert.issuer.rfc4514_string()))
    assert (certs.CLIENT, certs.SIGNATURE) not in held(s)
    s.close()
    before = meters.worker.stats.all_security_failures["authentication"]
    with pytest.raises(Exception):  # noqa: B017 - with its certificate removed, that key is no longer trusted
        session(meters, mine, 1)
    assert meters.worker.stats.all_security_failures["authentication"] == before + 1  # refused at HLS pass 3
