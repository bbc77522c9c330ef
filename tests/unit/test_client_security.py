"""Our sans-I/O client on secured associations: HLS mechanisms 2, 5 and 7, suites 0-2, both framings,
driven from the onboarding file's entry, against a meter connection in memory."""

from __future__ import annotations

import pytest

from fleet.export import meter_record
from fleet.settings import FleetOptions
from meter_core.axdr import Data, DataType
from meter_core.client import ActionDone, Associated, AssociationFailed, ClientSecurity, GetResult, SetResult
from meter_core.connection import Transport
from meter_core.meter import Meter
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
