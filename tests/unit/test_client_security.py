"""Our sans-I/O client on secured associations: HLS mechanisms 2, 5 and 7, suites 0-2, both framings,
driven from the onboarding file's entry, against a meter connection in memory."""

from __future__ import annotations

import pytest

from fleet.settings import FleetOptions
from fleet.tools.export import meter_record
from meter_core.client import ActionDone, Associated, AssociationFailed, ClientSecurity, GetResult, SetResult
from meter_core.codec.apdu import ciphered
from meter_core.codec.axdr import Data, DataType
from meter_core.connection import Transport
from meter_core.device.meter import Meter
from tests.unit.test_meter import EPOCH, Pair

CASES = [(2, 0), (5, 0), (5, 1), (5, 2), (7, 1), (7, 2)]


def _pair(mechanism: int, suite: int, transport: Transport, **changes) -> Pair:
    options = FleetOptions(meters=4, seed=7, hls_mechanism=mechanism, security_suite=suite)
    client = next(c for c in meter_record(options, 3)["clients"] if c["client_sap"] == 48)
    client.update(changes)
    meter = Meter(options.fleet, 3, epoch_start=EPOCH)
    return Pair(transport, client_sap=48, meter=meter, max_pdu=512, security=ClientSecurity.from_onboarding(client))


@pytest.mark.parametrize("transport", [Transport.WRAPPER, Transport.HDLC], ids=["wrapper", "hdlc"])
@pytest.mark.parametrize(("mechanism", "suite"), CASES, ids=[f"mech{m}-suite{s}" for m, s in CASES])
def test_secured_client_reads_writes_and_invokes(mechanism, suite, transport):
    p = _pair(mechanism, suite, transport)
    assert isinstance(p.associate(), Associated)
    clock = p.get(8, "0.0.1.0.0.255", 2)
    assert isinstance(clock, GetResult) and clock.value is not None
    whole = p.get(7, "1.0.99.1.0.255", 2)  # the whole block load buffer: many ciphered GET blocks
    assert isinstance(whole, GetResult) and whole.blocks > 5 and len(whole.value.value) > 100
    p.client.set(1, "1.0.0.8.0.255", 2, Data(DataType.LONG_UNSIGNED, 900))
    assert isinstance(p.exchange(), SetResult)
    p.client.action(7, "1.0.94.91.0.255", 2, Data(DataType.INTEGER, 0))
    done = p.exchange()
    assert isinstance(done, ActionDone) and done.result == 0


@pytest.mark.parametrize(("mechanism", "suite"), CASES, ids=[f"mech{m}-suite{s}" for m, s in CASES])
def test_secured_client_with_the_wrong_secret_is_refused(mechanism, suite):
    wrong = {"hls_secret": "00" * 16} if mechanism == 2 else {"auth_key": "11" * (32 if suite == 2 else 16)}
    if mechanism == 7:
        wrong = {"client_signing_key": "22" * (32 if suite == 1 else 48)}
    p = _pair(mechanism, suite, Transport.WRAPPER, **wrong)
    assert isinstance(p.associate(), AssociationFailed)


@pytest.mark.parametrize("suite", [1, 2])
def test_key_agreement_gives_both_sides_the_same_new_key(suite):
    """Method 3 with the head-end's ephemeral key signed by its signing key; the test derives the key
    on its side with cryptography's ECDH and hashlib (NIST SP 800-56A, one KDF round) and uses it."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import ec

    from meter_core.codec import crypto as sec
    from meter_core.device.keys import client_signing_key, client_system_title, signing_key

    p = _pair(5, suite, Transport.WRAPPER)
    assert isinstance(p.associate(), Associated)
    fleet, size = p.meter.fleet, 32 if suite == 1 else 48
    curve = ec.SECP256R1() if suite == 1 else ec.SECP384R1()
    mine = ec.generate_private_key(curve)
    point = sec.public_bytes(mine)[1:]
    signature = sec.ecdsa_sign(suite, client_signing_key(fleet, suite), b"\x00" + point)
    item = Data(DataType.STRUCTURE, (Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, point + signature)))
    p.client.action(64, "0.0.43.0.3.255", 3, Data(DataType.ARRAY, (item,)))
    done = p.exchange()
    assert isinstance(done, ActionDone) and done.result == 0
    answer = done.value.value[0].value
    meter_point, meter_sig = answer[:2 * size], answer[2 * size:]
    meter_public = signing_key(fleet, 3, suite).public_key()
    assert sec.ecdsa_verify(suite, meter_public, meter_sig, b"\x00" + meter_point)
    z = mine.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + meter_point))
    other = bytes((0x60, 0x85, 0x74, 0x05, 0x08, 0x03, 0 if suite == 1 else 1))
    other += client_system_title(fleet) + p.meter.identity.system_title
    digest = (hashlib.sha256 if suite == 1 else hashlib.sha384)(b"\x00\x00\x00\x01" + z + other).digest()
    new_ek = digest[:16 if suite == 1 else 32]
    assert p.meter.keys().sets[3].ek == new_ek
    # a new association under the agreed key works (counters start again)
    options = FleetOptions(meters=4, seed=7, hls_mechanism=5, security_suite=suite)
    client = next(c for c in meter_record(options, 3)["clients"] if c["client_sap"] == 48)
    client["block_key"] = new_ek.hex()
    again = Pair(Transport.WRAPPER, client_sap=48, meter=p.meter, security=ClientSecurity.from_onboarding(client))
    assert isinstance(again.associate(), Associated)
    # a signature by anyone but the head-end is refused, and nothing changes
    stranger = ec.generate_private_key(curve)
    forged = Data(DataType.STRUCTURE, (Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, point + sec.ecdsa_sign(
        suite, stranger, b"\x00" + point))))
    again.client.action(64, "0.0.43.0.3.255", 3, Data(DataType.ARRAY, (forged,)))
    assert again.exchange().result == 250 and p.meter.keys().sets[3].ek == new_ek


@pytest.mark.parametrize("suite", [1, 2])
def test_general_signing_is_checked_and_answered_signed(suite):
    """general-signing around a glo-get-request: the head-end's signature over the fields after the tag
    and the content (without its length), checked; the answer signed by the meter."""
    from meter_core.codec import crypto as sec
    from meter_core.codec.apdu import decode_apdu
    from meter_core.device.keys import client_signing_key, signing_key

    p = _pair(5, suite, Transport.WRAPPER)
    assert isinstance(p.associate(), Associated)
    c, fleet, a = p.client, p.meter.fleet, p.conn._assocs[48]
    me, server = c.settings.security.system_title, p.meter.identity.system_title

    def signed(signer) -> bytes:
        content = ciphered.seal(0xC8, c._protect(bytes.fromhex("c001c100080000010000ff0200")))
        g = ciphered.GeneralSigning(c._ic.to_bytes(8, "big"), me, server, b"", b"", content)
        return ciphered.GeneralSigning(g.transaction_id, me, server, b"", b"", content,
                                  sec.ecdsa_sign(suite, signer, g.signed_data())).encode()

    answer = ciphered.parse_general_signing(a.handle_apdu(signed(client_signing_key(fleet, suite)), p.now))
    assert (answer.originator, answer.recipient) == (server, me)
    assert sec.ecdsa_verify(suite, signing_key(fleet, 3, suite).public_key(), answer.signature, answer.signed_data())
    inner = decode_apdu(c._unprotect(answer.content))
    assert inner.error is None and len(inner.data) == 14  # the clock, octet-string of 12
    refused = decode_apdu(a.handle_apdu(signed(signing_key(fleet, 9, suite)), p.now))  # someone else's key
    assert refused.service_error == 5
