"""The bytes a meter serves and the rows it captures, recorded before a redesign, checked after (issue 13).

One meter of each kind answers a fixed script of requests: the public client (AARQ, GETs, GET-with-list,
RLRQ), the meter reader (LLS; selective access by range and by entry, a profile in GET blocks at a 256-byte
PDU, RLRQ), utility settings (HLS mechanism 2, ciphered: AARQ, the HLS pass, ciphered GET, SETs of the demand
period and the clock, ACTIONs: MD reset and disconnect, a ciphered profile read); a 3ph meter also over HDLC;
and each kind's instant and alert pushes as a dial-mode call sends them. Every byte the meters send is kept
in tests/vectors/golden/answers.json; so are digests of the ground-truth rows a fixed backfill computes
(three kinds, drifting clocks, two days holding a billing date).

Randomness is fixed (the HLS challenges); time is fixed. A change of what is served fails here with the
step that changed. Regenerate only for an intended change of behaviour:
``FLEET_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_golden.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest

from meter_core import NEED_DATA, notification
from meter_core.client import ClientSecurity, ClientSettings, DlmsClient, LinkUp
from meter_core.codec.apdu.codes import AuthenticationMechanism
from meter_core.codec.axdr import Data, DataType, encode_datetime_at
from meter_core.connection import MeterConnection, Transport
from meter_core.device import config as device_config
from meter_core.device.identity import FleetConfig, MeterKind, meter_identity
from meter_core.device.keys import client_system_title, derived_keys
from meter_core.device.meter import Meter
from tests.unit.test_profiles import by_entry, by_range

GOLDEN = Path(__file__).resolve().parent.parent / "vectors" / "golden" / "answers.json"
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
T0 = dt.datetime(2026, 12, 1, 6, 40, tzinfo=dt.UTC).timestamp()  # 12:10 IST on a billing date
IST = dt.timedelta(minutes=330)
FLEET = {kind: FleetConfig(seed=3, kind=kind) for kind in MeterKind}


class Recorder:
    """Our client and a meter connection back to back, keeping every byte the meter sends."""

    def __init__(self, meter: Meter, transport: Transport, settings: ClientSettings, now: float) -> None:
        self.now = now
        self.conn = MeterConnection(meter, transport, now=now)
        self.client = DlmsClient(settings)
        self.sent: list[str] = []

    def exchange(self):
        for _ in range(5000):
            out = self.client.data_to_send()
            if not out:
                break
            self.conn.receive_data(out, self.now)
            while self.conn.next_event() is not NEED_DATA:
                pass
            back = self.conn.data_to_send()
            if back:
                self.sent.append(back.hex())
                self.client.receive_data(back, self.now)
        ev = self.client.next_event()
        assert ev is not NEED_DATA, "no answer"
        return ev


def _fixed_challenge(n: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def script(kind: MeterKind, transport: Transport) -> dict[str, list[str]]:
    """Run the fixed script on a fresh meter of ``kind``; the meter's bytes per session."""
    fleet = FLEET[kind]
    meter = Meter(fleet, 2, epoch_start=EPOCH)
    ident = meter_identity(fleet, 2)
    out: dict[str, list[str]] = {}

    def session(name: str, settings: ClientSettings, steps) -> None:
        r = Recorder(meter, transport, settings, T0)
        if transport is Transport.HDLC:
            r.client.connect()
            assert isinstance(r.exchange(), LinkUp)
        r.client.associate()
        r.exchange()
        for step in steps:
            step(r.client)
            r.exchange()
        r.client.release()
        r.exchange()
        out[name] = r.sent

    session("public", ClientSettings(client_sap=16, transport=transport), [
        lambda c: c.get(8, "0.0.1.0.0.255", 2),
        lambda c: c.get(1, "0.0.96.1.0.255", 2),
        lambda c: c.get(15, "0.0.40.0.0.255", 2),
        lambda c: c.get_with_list([(1, "0.0.42.0.0.255", 2), (1, "0.0.43.1.3.255", 2), (8, "0.0.1.0.0.255", 3)]),
    ])
    day = (dt.datetime.fromtimestamp(T0, dt.UTC).replace(tzinfo=None) + IST).replace(hour=0, minute=0)
    session("reader", ClientSettings(client_sap=32, password=ident.lls_password.encode(), transport=transport,
                                     max_receive_pdu_size=256), [
        lambda c: c.get(7, "1.0.99.1.0.255", 2, by_range(day - dt.timedelta(days=1), day)),
        lambda c: c.get(7, "1.0.98.1.0.255", 2, by_entry(1, 2)),
        lambda c: c.get(7, "1.0.99.2.0.255", 2, by_entry(1, 0, 1, 3)),
        lambda c: c.get(7, "0.0.99.98.0.255", 2),
        lambda c: c.get(7, "1.0.94.91.0.255", 2),
        lambda c: c.get(3, "1.0.1.8.0.255", 2),
        lambda c: c.get(4, "1.0.1.6.0.255", 5),
    ])
    keys = derived_keys(fleet, 2, fleet.security_suite)
    ks = keys.sets[3]
    security = ClientSecurity(mechanism=AuthenticationMechanism(fleet.hls_mechanism), block_key=ks.ek,
                              auth_key=ks.ak, system_title=client_system_title(fleet), suite=fleet.security_suite,
                              hls_secret=keys.hls[48], invocation_counter=1, challenge=_fixed_challenge(16))
    programming = [
        lambda c: c.get(8, "0.0.1.0.0.255", 2),
        lambda c: c.set(1, "1.0.0.8.0.255", 2, Data(DataType.LONG_UNSIGNED, 900)),
        lambda c: c.action(9, "0.0.10.0.1.255", 1, Data(DataType.LONG_UNSIGNED, 1)),
        lambda c: c.set(8, "0.0.1.0.0.255", 2, Data(DataType.OCTET_STRING, encode_datetime_at(T0 + 300, 330, None, 0))),
        lambda c: c.get(7, "1.0.99.1.0.255", 2, by_entry(1, 2)),
        lambda c: c.get(7, "1.0.98.1.0.255", 2, by_entry(0, 0)),
    ]
    if kind is not MeterKind.CT_PT:
        programming.append(lambda c: c.action(70, "0.0.96.3.10.255", 1, Data(DataType.INTEGER, 0)))
    session("utility", ClientSettings(client_sap=48, transport=transport, security=security), programming)

    from meter_core.device import pushes as push

    for name in (device_config.INSTANT_PUSH, device_config.ALERT_PUSH):
        apdu = notification.data_notification(meter, name, T0 + 600, push.invoke_id_for(T0 + 600))
        out[f"push {name}"] = [notification.frame(meter, notification.protect(meter, apdu), transport is Transport.HDLC).hex()]
    return out


def backfill_digests() -> dict[str, dict]:
    """Digests of the rows `fleet backfill` computes for a fixed window (each kind, drifting clocks)."""
    from fleet.settings import FleetOptions
    from fleet.tools import backfill as bf
    from meter_core.device.identity import parse_mix

    end = dt.datetime(2026, 11, 2, tzinfo=dt.timezone(IST)).timestamp()
    options = FleetOptions(meters=6, seed=3, mix=parse_mix("1ph=0.34,3ph=0.33,ctpt=0.33"))
    plan = bf.plan("unused", options, EPOCH, 2, end, range(6), drift_ppm=5.0)
    rows = bf.chunk_rows(plan, 0, 6)
    return {table: {"rows": len(r), "sha256": hashlib.sha256(repr(r).encode()).hexdigest()}
            for table, r in sorted(rows.items())}


def record(monkeypatch) -> dict:
    from meter_core.session import association

    monkeypatch.setattr(association, "_random", _fixed_challenge)
    answers = {f"{kind.value} wrapper": script(kind, Transport.WRAPPER) for kind in MeterKind}
    answers["3ph hdlc"] = script(MeterKind.THREE_PHASE, Transport.HDLC)
    return {"answers": answers, "backfill": backfill_digests()}


def test_the_meters_serve_and_capture_what_they_did_before(monkeypatch):
    got = record(monkeypatch)
    if os.environ.get("FLEET_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    for name, sessions in expected["answers"].items():
        for session, sent in sessions.items():
            now = got["answers"][name][session]
            for i, (a, b) in enumerate(zip(sent, now, strict=True)):
                assert a == b, f"{name}, {session}: answer {i} differs"
    assert got["backfill"] == expected["backfill"]


@pytest.mark.parametrize("kind", list(MeterKind), ids=lambda k: k.value)
def test_the_script_is_deterministic(kind, monkeypatch):
    from meter_core.session import association

    monkeypatch.setattr(association, "_random", _fixed_challenge)
    assert script(kind, Transport.WRAPPER) == script(kind, Transport.WRAPPER)
