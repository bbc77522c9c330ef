"""A worker killed right after a head-end's ciphered requests (issue 12): nothing it answered is lost,
no invocation counter it accepted is accepted again.

`fleet run` serves two meters from one worker on a real database. A head-end (our sans-I/O client,
client 48: HLS, ciphered) associates, sets the demand integration period and reads the clock; the
worker is SIGKILLed the moment the last answer arrives, and the supervisor brings it back. Then:

- the same bytes sent again (a replay of the association: its AARQ carries the invocation counter
  it was accepted with) are refused;
- a head-end that reads the counter object and adds one, as head-ends do, associates and finds the
  demand period it set: the meter answered only once the SET was in the database;
- the block-load rows of both meters run from the run's start to well past the kill, every half hour
  once (the fleet runs at 900x: the restarted worker resumes where the rows end).
"""

from __future__ import annotations

import datetime as dt
import os
import signal

import pytest

from fleet.settings import FleetOptions
from fleet.tools.export import meter_record
from meter_core.client import (
    Associated,
    AssociationFailed,
    ClientSecurity,
    ClientSettings,
    GetResult,
    SetResult,
)
from meter_core.codec.axdr import Data, DataType
from meter_core.connection import Transport
from tests.fleet.test_fleet_run import FleetProcess, ports, query
from tests.servers import Head, counter_to_use, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.integration]

START = "2026-11-20T10:00:00+05:30"
START_TIME = dt.datetime.fromisoformat(START).timestamp()


def test_a_worker_killed_after_ciphered_requests_loses_nothing_it_answered_and_takes_no_counter_twice(database_url):
    base, metrics_port = ports(2)
    options = FleetOptions(meters=2, port_base=base)
    client = next(c for c in meter_record(options, 0)["clients"] if c["client_sap"] == 48)
    f = FleetProcess("run", "--meters", "2", "--workers", "1", "--port-base", str(base), "--metrics-port",
                     str(metrics_port), "--database-url", database_url, "--speed", "900", "--start", START)
    try:
        pid = int(f.wait_for(r"worker 0 \(meters 0-1\) ready, pid (\d+)").group(1))
        security = ClientSecurity.from_onboarding(client, counter_to_use(base))
        settings = ClientSettings(client_sap=48, transport=Transport.WRAPPER, security=security)
        h = Head(base, settings)
        h.client.associate()
        h.until(Associated)
        h.client.set(1, "1.0.0.8.0.255", 2, Data(DataType.LONG_UNSIGNED, 900))
        assert h.until(SetResult).result == 0
        h.client.get(8, "0.0.1.0.0.255", 2)
        h.until(GetResult)
        os.kill(pid, signal.SIGKILL)  # the moment the answers are in
        h.close()
        f.wait_for(r"worker 0 \(meters 0-1\) back", timeout=30)

        # The same head-end's bytes again: the association they open was accepted with a counter the meter
        # has taken; it refuses them.
        last = h.client._ic  # the last counter the meter accepted (the GET's)
        replay = Head(base, settings)
        try:
            replay.sock.sendall(h.sent[0])  # the AARQ: its initiate request is ciphered with the first counter
            replay.client.receive_data(replay.sock.recv(65536))
            assert isinstance(replay.client.next_event(), AssociationFailed)
        finally:
            replay.close()
        # ... and so is any association that uses a counter it accepted before the kill, the last included
        for used in (last - 1, last):
            old = Head(base, ClientSettings(client_sap=48, transport=Transport.WRAPPER,
                                           security=ClientSecurity.from_onboarding(client, used)))
            try:
                old.client.associate()
                assert isinstance(old.until(Associated, AssociationFailed), AssociationFailed), used
            finally:
                old.close()

        # A head-end that reads the counter and adds one: the SET answered before the kill is in force.
        fresh = counter_to_use(base)
        assert fresh > last
        again = Head(base, ClientSettings(client_sap=48, transport=Transport.WRAPPER,
                                         security=ClientSecurity.from_onboarding(client, fresh)))
        try:
            again.client.associate()
            again.until(Associated)
            again.client.get(1, "1.0.0.8.0.255", 2)
            assert again.until(GetResult).value.value == 900
        finally:
            again.close()
        # the ground truth: the blocks of both meters, from the run's start to well after the kill, every one
        # once and none missing (the restarted worker resumes where the rows end)
        # where the rows had got to when the worker was killed: the run's start if the writer had not yet
        # recorded any progress (the kill comes a few tens of milliseconds after "ready")
        killed_at = query(database_url, "SELECT max(captured_until) AS t FROM capture_progress")[0]["t"] or START_TIME
        wait_for("the writer past the kill", lambda: (query(
            database_url, "SELECT min(captured_until) AS t FROM capture_progress")[0]["t"] or 0.0) > killed_at + 7200)
    finally:
        code = f.stop()
    assert code == 0, "\n".join(f.lines)
    for meter_id in (0, 1):
        times = [r["capture_time"].timestamp() for r in query(
            database_url, f"SELECT capture_time FROM block_load_profile WHERE meter_id = {meter_id} ORDER BY 1")]
        assert times[0] <= START_TIME + 1800 and times[-1] > killed_at + 3600
        assert {b - a for a, b in zip(times, times[1:])} == {1800.0}, f"meter {meter_id}: a block missing or twice"
