"""`fleet run` end to end: several workers, PostgreSQL, metrics, a killed worker, a killed embedded
PostgreSQL, a clean stop."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gurux_dlms import GXDLMSException
from gurux_dlms.objects import GXDLMSClock, GXDLMSData

from meter_core.connection import Transport
from meter_core.device.identity import FleetConfig, kind_of, meter_identity, parse_mix
from tests.interop.clients import GuruxSession
from tests.servers import free_port_base

pytestmark = [pytest.mark.fleet, pytest.mark.integration]

METERS, WORKERS = 30, 3


class FleetProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "fleet", *args], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                seen += 1
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None and seen == len(self.lines):
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in fleet output:\n" + "\n".join(self.lines))

    def stop(self, timeout: float = 20, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def ports(count: int) -> tuple[int, int]:
    """A base port for ``count`` meters and a metrics port after them, all free and below 32768."""
    base = free_port_base(count + 1)
    return base, base + count


def scrape(port: int, pattern: str, timeout: float = 10) -> str:
    """/metrics once it matches ``pattern`` (workers flush once a second); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        if re.search(pattern, text, re.M):
            return text
        assert time.monotonic() < deadline, f"no {pattern!r} in /metrics:\n{text}"
        time.sleep(0.2)


def read_serial(port: int, meter_id: int, fleet_cfg: FleetConfig, *, client_sap=16, password=None) -> str:
    ident = meter_identity(fleet_cfg, meter_id)
    s = GuruxSession(port, Transport.WRAPPER, client_sap=client_sap, password=password)
    s.open()
    serial = s.read(GXDLMSData("0.0.96.1.0.255"), 2)
    s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    s.close()
    value = bytes(serial).decode()
    assert value == ident.serial
    return value


async def _query(url: str, sql: str):
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def health(port: int) -> tuple[int, str]:
    """(status, text) of GET /health."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()


def query(url: str, sql: str):
    import asyncio

    return asyncio.run(_query(url, sql))


def test_fleet_serves_records_and_brings_a_killed_worker_back(database_url, tmp_path):
    base, metrics_port = ports(METERS)
    fleet_cfg = FleetConfig(seed=1)
    f = FleetProcess("run", "--meters", str(METERS), "--workers", str(WORKERS), "--port-base", str(base),
                     "--metrics-port", str(metrics_port), "--database-url", database_url,
                     "--mix", "1ph=0.5,3ph=0.3,ctpt=0.2", env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        f.wait_for(r"30 meters ready")
        pids = {int(m.group(1)): int(m.group(2)) for m in
                (f.wait_for(rf"worker ({i}) \(meters [0-9-]+\) ready, pid (\d+)") for i in range(WORKERS))}

        # Associations of both clients on meters of every worker, and one refused.
        for meter_id in (0, 12, 25):
            read_serial(base + meter_id, meter_id, fleet_cfg)
            ident = meter_identity(fleet_cfg, meter_id)
            read_serial(base + meter_id, meter_id, fleet_cfg, client_sap=32, password=ident.lls_password)
        bad = GuruxSession(base + 5, Transport.WRAPPER, client_sap=32, password="WRONG")
        with pytest.raises(GXDLMSException):
            bad.open()
        bad.sock.close()

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = query(database_url, "SELECT meter_id, client_sap, result, released_at FROM client_associations")
            if len(rows) >= 7 and all(r["released_at"] is not None for r in rows if r["result"] == "accepted"):
                break
            time.sleep(0.3)
        accepted = sorted((r["meter_id"], r["client_sap"]) for r in rows if r["result"] == "accepted")
        assert accepted == [(0, 16), (0, 32), (12, 16), (12, 32), (25, 16), (25, 32)]
        assert all(r["released_at"] is not None for r in rows if r["result"] == "accepted")
        assert [(r["meter_id"], r["client_sap"]) for r in rows if r["result"] != "accepted"] == [(5, 32)]
        kinds = {r["meter_id"]: r["kind"] for r in query(database_url, "SELECT meter_id, kind FROM meters")}
        mixed = FleetConfig(seed=1, mix=parse_mix("1ph=0.5,3ph=0.3,ctpt=0.2"))
        assert kinds == {i: kind_of(mixed, i).value for i in range(METERS)}
        assert len(set(kinds.values())) == 3  # a mixed fleet, each meter of the kind the mix gives it

        # Workers flush their counters once a second; poll until this run's associations show.
        deadline = time.monotonic() + 10
        while True:
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            if 'fleet_associations_total{client="16",result="accepted"} 3.0' in metrics or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert re.search(r"^fleet_meters_online(\{\})? 30\.0$", metrics, re.M), metrics
        assert 'fleet_associations_total{client="16",result="accepted"} 3.0' in metrics, metrics
        assert 'fleet_associations_total{client="32",result="accepted"} 3.0' in metrics, metrics
        # counters a dashboard rates are there at 0 before their first event (not missing from rate())
        assert 'fleet_connections_refused_total{reason="no-supply"} 0.0' in metrics, metrics
        assert 'fleet_security_failures_total{client="48",reason="deciphering"} 0.0' in metrics, metrics
        assert 'fleet_associations_total{client="other",result="rejected"} 0.0' in metrics, metrics

        # /health next to /metrics: ready (every worker is); both only on 127.0.0.1 by default.
        assert health(metrics_port) == (200, f"{WORKERS} of {WORKERS} workers ready")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", metrics_port), timeout=2).close()

        # Kill the worker of meters 10-19: the others keep serving, and it is back within seconds.
        killed_at = time.monotonic()
        os.kill(pids[1], signal.SIGKILL)
        read_serial(base + 0, 0, fleet_cfg)
        read_serial(base + 25, 25, fleet_cfg)
        f.wait_for(r"worker 1 \(meters 10-19\) back", timeout=20)
        assert health(metrics_port) == (200, f"{WORKERS} of {WORKERS} workers ready")
        scrape(metrics_port, r"^fleet_worker_restarts_total 1\.0$")
        while True:
            try:
                read_serial(base + 12, 12, fleet_cfg)
                break
            except OSError:
                assert time.monotonic() - killed_at < 15, "killed shard did not come back"
                time.sleep(0.1)
        assert time.monotonic() - killed_at < 15

        # `fleet inject` reaches the workers through the database: meter 12 loses its supply (its
        # connections are refused), the others serve on; a restore brings it back.
        proc = subprocess.run([sys.executable, "-m", "fleet", "inject", "power-failure", "--region", "12-12",
                               "--database-url", database_url, "--wait", "5"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert re.search(r"applied by 3 worker\(s\) to 1 meter\(s\)", proc.stdout), proc.stdout
        with pytest.raises((OSError, GXDLMSException)):
            read_serial(base + 12, 12, fleet_cfg)
        read_serial(base + 13, 13, fleet_cfg)
        proc = subprocess.run([sys.executable, "-m", "fleet", "inject", "restore", "--region", "10-19",
                               "--database-url", database_url], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert read_serial(base + 12, 12, fleet_cfg) == meter_identity(fleet_cfg, 12).serial
    finally:
        code = f.stop(sig=signal.SIGINT)  # Ctrl-C
    assert code == 0, "\n".join(f.lines)
    assert any("stopped" in line for line in f.lines)
    assert list(tmp_path.glob("fleet-metrics-*")) == []


EMBEDDED_METERS = 6
FIXED_START = "2026-06-01T00:00:00+05:30"  # the ground truth is then the same rows in every run


def _block_times(url: str) -> dict[int, list]:
    rows = query(url, "SELECT meter_id, capture_time FROM block_load_profile ORDER BY meter_id, capture_time")
    times: dict[int, list] = {}
    for r in rows:
        times.setdefault(r["meter_id"], []).append(r["capture_time"])
    return times


def _wait_rows(url: str, done, timeout: float, what: str) -> dict[int, list]:
    deadline = time.monotonic() + timeout
    while True:
        times = _block_times(url)
        if len(times) == EMBEDDED_METERS and done(times):
            return times
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s: {times}"
        time.sleep(0.3)


def test_fleet_restarts_its_embedded_database_when_killed(tmp_path):
    import psutil

    # The embedded server's folder must be traversable by the pgserver user when we are root, which
    # pytest's own tmp_path is not; TMPDIR is a private one, to see what `fleet run` leaves there.
    base = Path(tempfile.mkdtemp(prefix="cosem-fleet-restart-"))
    base.chmod(0o755)
    data, tmp = base / "pgdata", tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("FLEET_DATABASE_URL", "FLEET_SPOOL_DIR")}
    env.update(FLEET_DATA_DIR=str(data), TMPDIR=str(tmp))
    port_base, metrics_port = ports(EMBEDDED_METERS)
    f = FleetProcess("run", "--meters", str(EMBEDDED_METERS), "--workers", "2", "--port-base", str(port_base),
                     "--metrics-port", str(metrics_port), "--speed", "900", "--start", FIXED_START, env=env)
    try:
        f.wait_for(r"6 meters ready .* database embedded", timeout=90)
        url = f"postgresql://postgres@/postgres?host={data.resolve()}"
        worker_pid = int(f.wait_for(r"worker 1 \(meters 3-5\) (?:ready|back), pid (\d+)").group(1))
        _wait_rows(url, lambda t: all(len(v) >= 2 for v in t.values()), 30, "block load rows")

        # A killed worker is counted by the supervisor, on the /metrics the supervisor serves.
        os.kill(worker_pid, signal.SIGKILL)
        f.wait_for(r"worker 1 \(meters 3-5\) back", timeout=20)
        scrape(metrics_port, r"^fleet_worker_restarts_total 1\.0$")

        # SIGKILL the postmaster: no shutdown, a stale postmaster.pid and socket lock left behind.
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        killed_at = time.monotonic()
        f.wait_for(rf"embedded PostgreSQL in \S+ lost \(postmaster pid {postmaster} gone\)", timeout=10)
        new_pid = int(f.wait_for(r"embedded PostgreSQL in \S+ back, postmaster pid (\d+)", timeout=45).group(1))
        assert time.monotonic() - killed_at < 45
        assert new_pid != postmaster
        assert int((data / "postmaster.pid").read_text().split()[0]) == new_pid
        assert psutil.Process(new_pid).status() != psutil.STATUS_ZOMBIE
        metrics = scrape(metrics_port, r"^fleet_database_restarts_total 1\.0$")
        assert re.search(r"^fleet_worker_restarts_total 1\.0$", metrics, re.M), metrics

        # The workers write again, at the same URL: blocks captured after the restart appear, and
        # those captured while the server was away (spooled) are there too: no meter misses a block.
        back = _block_times(url)
        last = max(max(v) for v in back.values())
        times = _wait_rows(url, lambda t: all(len([x for x in v if x > last]) >= 2 for v in t.values()), 30,
                           "block load rows after the restart")
        for meter_id, stamps in times.items():
            steps = {(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])}
            assert steps == {1800.0}, (meter_id, stamps)
    finally:
        code = f.stop()
        try:
            assert code == 0, "\n".join(f.lines)
            assert any(line.endswith("fleet: stopped") for line in f.lines), "\n".join(f.lines)
            # The restarted server is the one `fleet run` stops as it ends (pg_ctl -w removes the pid file).
            assert not (data / "postmaster.pid").exists(), "\n".join(f.lines)
            assert list(tmp.glob("fleet-metrics-*")) == []
        finally:
            _stop_leftover_server(data)
            shutil.rmtree(base, ignore_errors=True)


def _stop_leftover_server(data: Path) -> None:
    """Fast shutdown of a server a failed test left running in ``data`` (none after a passing one)."""
    import psutil

    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        process = psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
        return
    if process.status() != psutil.STATUS_ZOMBIE and Path(process.cwd()) == data.resolve():
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except psutil.TimeoutExpired:
            process.kill()


def test_address_mode_two_workers_one_port_and_a_killed_worker_keeps_its_socket(database_url, tmp_path):
    """`fleet run --mode address`: 2 000 meters at 127.11.0.1 + i on one port, two workers with one socket
    each in a reuseport group steered by address. Meters of both shards answer by address; while a
    killed worker is down its connections wait in the backlog of the socket the supervisor keeps, and
    are served once it is back; the database and the export give each meter's address."""
    meters, port = 2000, free_port_base(1)
    fleet_cfg = FleetConfig(seed=1)

    def read(meter_id: int) -> str:
        s = GuruxSession(port, Transport.WRAPPER, host=f"127.11.{(1 + meter_id) // 256}.{(1 + meter_id) % 256}")
        try:
            s.open()
            serial = bytes(s.read(GXDLMSData("0.0.96.1.0.255"), 2)).decode()
            s.close()
        finally:
            s.sock.close()
        assert serial == meter_identity(fleet_cfg, meter_id).serial
        return serial

    f = FleetProcess("run", "--meters", str(meters), "--workers", "2", "--mode", "address", "--address-base",
                     "127.11.0.1", "--port-base", str(port), "--metrics-port", "0", "--database-url", database_url,
                     env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        f.wait_for(rf"2000 meters ready .* on 127\.11\.0\.1:{port} \.\. 127\.11\.7\.208:{port}")
        pids = {int(m.group(1)): int(m.group(2)) for m in
                (f.wait_for(rf"worker ({i}) \(meters [0-9-]+\) ready, pid (\d+)") for i in range(2))}
        for meter_id in (0, 999, 1000, 1999):
            read(meter_id)
        os.kill(pids[1], signal.SIGKILL)
        read(5)  # the other worker serves on
        served: list = []
        waiting = threading.Thread(target=lambda: served.append(read(1500)))  # connects while its worker is down
        waiting.start()
        f.wait_for(r"worker 1 \(meters 1000-1999\) back", timeout=20)
        waiting.join(20)
        assert served == [meter_identity(fleet_cfg, 1500).serial]
        read(1001)
        rows = query(database_url, "SELECT meter_id, host, port FROM meters WHERE meter_id IN (0, 1999)")
        assert sorted((r["meter_id"], r["host"], r["port"]) for r in rows) == [
            (0, "127.11.0.1", port), (1999, "127.11.7.208", port)]
    finally:
        code = f.stop()
    assert code == 0, "\n".join(f.lines)
