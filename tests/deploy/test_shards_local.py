"""The shards of deploy/kustomize as plain local processes: three `fleet run` on one database, shard k taking
`--shard k/3` from FLEET_SHARD as a pod does, each on an address of its own (127.0.0.k+1, as each pod has its
own) with the same fleet options, so the same meter ports.

Every meter answers at exactly one shard's address (its logical device name, read over DLMS), and the
database holds each meter's rows once: its `meters` row written by its shard, one association, its block-load
rows from its shard alone (a run at 900x).
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.error
import urllib.request

import pytest

from fleet.settings import FleetOptions
from meter_core.client import Associated, ClientSettings, GetResult
from meter_core.connection import Transport
from meter_core.device.identity import FleetConfig, meter_identity
from tests.fleet.test_fleet_run import FleetProcess, query
from tests.servers import Head, free_port_base, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.integration]

SHARDS, METERS = 3, 300
START = "2026-06-01T00:00:00+05:30"
HOSTS = [f"127.0.0.{k + 1}" for k in range(SHARDS)]
PORTS = range(23000, 24000)  # the ports these tests may use


def logical_device_name(host: str, port: int) -> str | None:
    """What the meter at host:port answers for 0.0.42.0.0.255 to the public client; None if nothing listens."""
    try:
        head = Head(port, ClientSettings(client_sap=16, transport=Transport.WRAPPER), host)
    except ConnectionRefusedError:
        return None
    with head:
        head.client.associate()
        head.until(Associated)
        head.client.get(1, "0.0.42.0.0.255", 2)
        return bytes(head.until(GetResult).value.value).decode()


def health(host: str, port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=5) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()


def test_three_shards_serve_and_record_every_meter_once(database_url, tmp_path):
    base = free_port_base(METERS, PORTS.start, PORTS.stop, hosts=tuple(HOSTS))
    # the same on every shard's address, as on every pod's
    metrics_port = free_port_base(1, base + METERS, PORTS.stop, hosts=tuple(HOSTS))
    fleet_cfg = FleetConfig(seed=1)
    pods = [FleetOptions(meters=METERS, shard=(k, SHARDS)).pod_range() for k in range(SHARDS)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    shards = []
    try:
        for k, host in enumerate(HOSTS):
            shards.append(FleetProcess(
                "run", "--meters", str(METERS), "--workers", "1", "--host", host, "--port-base", str(base),
                "--metrics-host", host, "--metrics-port", str(metrics_port), "--database-url", database_url,
                "--speed", "900", "--start", START, "--spool-dir", str(tmp_path / f"spool-{k}"),
                env={**env, "FLEET_SHARD": f"{k}/{SHARDS}", "TMPDIR": str(tmp_path)}))
        for shard, pod, host in zip(shards, pods, HOSTS):
            shard.wait_for(rf"{len(pod)} meters ready \(wrapper, ids {pod.start}-{pod.stop - 1}\) on "
                           rf"{host}:{base + pod.start} ", timeout=90)
            assert health(host, metrics_port) == (200, "1 of 1 workers ready")

        # Each meter at every shard's address: only its own shard answers, with the meter's name.
        for meter_id in range(METERS):
            answers = {k: logical_device_name(host, base + meter_id) for k, host in enumerate(HOSTS)}
            owner = next(k for k, pod in enumerate(pods) if meter_id in pod)
            assert answers == {k: meter_identity(fleet_cfg, meter_id).logical_device_name if k == owner else None
                               for k in range(SHARDS)}, meter_id

        # Three blocks of every meter written (the shards' clocks run at 900x: a block every 2 s).
        wait_for("three block-load rows of every meter", lambda: query(
            database_url, "SELECT count(*) AS n FROM (SELECT meter_id FROM block_load_profile GROUP BY meter_id "
                          "HAVING count(*) >= 3) m")[0]["n"] == METERS, timeout=60)
    finally:
        codes = [shard.stop() for shard in shards]
    assert codes == [0] * SHARDS, "\n".join(line for shard in shards for line in shard.lines)

    owners = {i: k for k, pod in enumerate(pods) for i in pod}
    meters = query(database_url, "SELECT meter_id, host, port FROM meters ORDER BY meter_id")
    assert [(r["meter_id"], r["host"], r["port"]) for r in meters] == [
        (i, HOSTS[owners[i]], base + i) for i in range(METERS)]
    progress = query(database_url, "SELECT meter_from, meter_to FROM capture_progress ORDER BY meter_from")
    assert [(r["meter_from"], r["meter_to"]) for r in progress] == [(p.start, p.stop) for p in pods]
    associations = query(database_url, "SELECT meter_id, count(*) AS n FROM client_associations "
                                       "WHERE result = 'accepted' GROUP BY meter_id ORDER BY meter_id")
    assert [(r["meter_id"], r["n"]) for r in associations] == [(i, 1) for i in range(METERS)]

    rows = query(database_url, "SELECT meter_id, capture_time FROM block_load_profile ORDER BY meter_id, capture_time")
    times: dict[int, list] = {}
    for r in rows:
        times.setdefault(r["meter_id"], []).append(r["capture_time"])
    assert sorted(times) == list(range(METERS))
    first = dt.datetime.fromisoformat(START) + dt.timedelta(minutes=30)
    for meter_id, stamps in times.items():
        assert len(stamps) == len(set(stamps)) >= 3, meter_id
        assert stamps[0] == first, (meter_id, stamps[0])
        assert {(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])} == {1800.0}, (meter_id, stamps)
