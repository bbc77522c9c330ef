"""The `fleet` command line: help everywhere, one-line errors, the onboarding file."""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import socket
import subprocess
import sys

import pytest

from meter_core.device.identity import FleetConfig, meter_identity


def fleet(*args: str, timeout: float = 60, env=None, nofile: int | None = None) -> subprocess.CompletedProcess:
    """``python -m fleet ARGS``; ``nofile``: the descriptor limit (soft and hard) of that process."""
    limit = None if nofile is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=limit)


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("command", [[], ["run"], ["db"], ["db", "migrate"], ["meters"], ["meters", "export"],
                                     ["backfill"], ["hes-sink"], ["inject"]])
def test_every_command_has_help(command):
    proc = fleet(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout


@pytest.mark.parametrize("args, words", [
    (["meters", "export", "--mix", "1ph=0.5"], ["--mix", "add up"]),
    (["meters", "export", "--mix", "@/no/such/mix.toml"], ["--mix", "cannot read"]),
    (["run", "--mix", "2ph=1"], ["--mix", "unknown"]),
    (["run", "--meters", "0"], ["--meters"]),
    (["run", "--port-base", "70000"], ["--port-base"]),
    (["run", "--transport", "serial"], ["--transport"]),
    (["run", "--mode", "gateway"], ["--mode", "gateway"]),  # offered once it works (issue 13)
    (["run", "--host", "not-an-ip"], ["not-an-ip"]),
    (["run", "--meters", "70000", "--port-base", "62000"], ["ports", "--host"]),
    (["run", "--port-base", "40000"], ["--port-base", "ephemeral"]),  # inside Linux's default 32768-60999
    (["run", "--shard", "3/2"], ["--shard"]),
    (["run", "--start", "yesterday"], ["--start"]),
    (["run", "--nonsense"], ["--nonsense"]),
    (["meters", "export", "--format", "xml"], ["--format"]),
    (["meters", "export", "-o", "/nonexistent-dir/x.json"], ["/nonexistent-dir/x.json"]),
    (["run", "--hls-mechanism", "high-ecdsa"], ["--security-suite"]),
    (["hes-sink", "--listen", "nowhere"], ["--listen"]),
    (["inject", "explode"], ["explode"]),
    (["inject", "power-failure", "--share", "1.5"], ["--share"]),
    (["inject", "power-failure", "--region", "9-2"], ["--region"]),
    (["inject", "power-failure", "--region", "north"], ["--region"]),
    (["inject", "load-change"], ["--factor"]),
    (["inject", "tamper", "--factor", "2"], ["--factor"]),
])
def test_user_mistakes_get_one_line_and_a_nonzero_exit(args, words):
    assert_one_line_error(fleet(*args), *words)


def test_too_few_descriptors_for_the_workers_is_one_line_with_the_way_out():
    # 10 000 listening meters in one worker under a limit of 4 096: each worker holds at most
    # 4 096 - 64 (its own) - 256 (connections) = 3 776 listeners, so three workers are needed
    proc = fleet("run", "--meters", "10000", "--workers", "1", "--port-base", "10000", nofile=4096)
    assert_one_line_error(proc, "--workers 3", "RLIMIT_NOFILE", "ulimit -n")
    proc = fleet("run", "--meters", "10000", "--workers", "1", "--mode", "dial", "--hes", "127.0.0.1:9",
                 "--database-url", "postgresql://127.0.0.1:1/none", nofile=4096)
    assert "RLIMIT_NOFILE" not in proc.stderr  # dial mode listens nowhere: it fails on the database instead


def test_unreachable_database_is_one_line():
    proc = fleet("db", "migrate", "--database-url", "postgresql://fleet@127.0.0.1:1/fleet")
    assert_one_line_error(proc, "database")


def test_inject_without_a_running_fleet_says_so(database_url):
    proc = fleet("inject", "power-failure", "--share", "0.3", "--database-url", database_url, "--wait", "1")
    assert_one_line_error(proc, "no fleet worker", "command 1")


def test_metrics_port_in_use_is_one_line():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        proc = fleet("run", "--meters", "1", "--metrics-port", str(port),
                     "--database-url", "postgresql://fleet@127.0.0.1:1/fleet")
    finally:
        s.close()
    assert_one_line_error(proc, str(port))


def test_export_json_and_csv_follow_the_contract():
    proc = fleet("meters", "export", "--meters", "5", "--seed", "7", "--format", "json", "--port-base", "5000",
                 "--transport", "hdlc", "--derived-keys")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert [r["meter_id"] for r in records] == list(range(5))
    fleet_cfg = FleetConfig(seed=7)
    for r in records:
        ident = meter_identity(fleet_cfg, r["meter_id"])
        assert r["serial"] == ident.serial
        assert r["logical_device_name"] == ident.logical_device_name
        assert bytes.fromhex(r["system_title"]) == ident.system_title
        assert (r["host"], r["port"], r["transport"]) == ("127.0.0.1", 5000 + r["meter_id"], "hdlc")
        assert r["server_logical_address"] == 1
        assert r["server_physical_address"] == ident.hdlc_physical_address
        clients = {c["client_sap"]: c for c in r["clients"]}
        assert clients[16]["association"] == "0.0.40.0.1.255" and clients[16]["authentication"] == "none"
        assert clients[32]["association"] == "0.0.40.0.2.255" and clients[32]["authentication"] == "low"
        assert clients[32]["password"] == ident.lls_password
        for sap, ln in ((48, "0.0.40.0.3.255"), (64, "0.0.40.0.4.255"), (80, "0.0.40.0.5.255")):
            c = clients[sap]
            assert (c["association"], c["authentication"], c["security_suite"]) == (ln, "high", 0)
            for key in ("hls_secret", "block_key", "auth_key", "master_key"):
                assert len(bytes.fromhex(c[key])) == 16, (sap, key)
            assert len(bytes.fromhex(c["client_system_title"])) == 8
        assert clients[48]["block_key"] != clients[80]["block_key"]  # one security setup each
    proc = fleet("meters", "export", "--meters", "5", "--seed", "7", "--format", "csv", "--derived-keys")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 25  # one per meter and client
    assert {(int(r["meter_id"]), int(r["client_sap"])) for r in rows} == {
        (m, c) for m in range(5) for c in (16, 32, 48, 64, 80)}


@pytest.mark.integration
def test_meter_port_in_use_stops_the_fleet_with_one_line(database_url, tmp_path):
    from tests.servers import free_port_base

    base = free_port_base(4)
    s = socket.socket()
    s.bind(("127.0.0.1", base + 2))
    s.listen()
    try:
        proc = fleet("run", "--meters", "4", "--workers", "2", "--port-base", str(base), "--metrics-port", "0",
                     "--database-url", database_url, timeout=60, env={**os.environ, "TMPDIR": str(tmp_path)})
    finally:
        s.close()
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fleet: error:") and f"127.0.0.1:{base + 2}" in last and "in use" in last, proc.stderr
    assert list(tmp_path.glob("fleet-metrics-*")) == []  # a stop on an error takes its metrics folder too


def test_export_writes_part_of_a_large_fleet_by_ids_or_shard():
    proc = fleet("meters", "export", "--meters", "1000000", "--mode", "address", "--ids", "999998-999999",
                 "--derived-keys")
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)
    assert [(e["meter_id"], e["host"], e["port"]) for e in entries] == [
        (999998, "127.16.66.63", 4059), (999999, "127.16.66.64", 4059)]
    assert entries[0]["serial"] == meter_identity(FleetConfig(seed=1), 999998).serial
    proc = fleet("meters", "export", "--meters", "100", "--shard", "3/4", "--derived-keys", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert sorted({int(r["meter_id"]) for r in csv.DictReader(io.StringIO(proc.stdout))}) == list(range(75, 100))
    assert_one_line_error(fleet("meters", "export", "--meters", "100", "--shard", "3/4", "--ids", "0-10"),
                          "--ids", "no meter in common")
