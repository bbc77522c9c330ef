"""`fleet meters export --pod-dns`: each meter's host is the DNS name of the pod that serves it (pod k runs
`--shard k/N`), its port the one it listens on in that pod."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fleet.cli import cli
from fleet.errors import FleetError
from fleet.settings import FleetOptions

TEMPLATE = "cosem-fleet-{k}.cosem-fleet.meters.svc.cluster.local"
NO_ENV = {"FLEET_SHARD": None, "FLEET_SHARDS": None, "FLEET_DATABASE_URL": None}


def export(*args: str, env: dict | None = None):
    result = CliRunner().invoke(cli, ["meters", "export", "--derived-keys", *args], env={**NO_ENV, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def owner(meters: int, pods: int, meter_id: int) -> int:
    """The pod whose `--shard k/pods` holds ``meter_id``: the fleet's own split."""
    (k,) = [k for k in range(pods) if meter_id in FleetOptions(meters=meters, shard=(k, pods)).pod_range()]
    return k


def test_each_meter_gets_its_pods_name_and_keeps_its_port():
    plain = {r["meter_id"]: r for r in json.loads(export("--meters", "11"))}
    entries = json.loads(export("--meters", "11", "--pods", "3", "--pod-dns", TEMPLATE))
    assert [e["meter_id"] for e in entries] == list(range(11))
    for e in entries:
        assert e["host"] == TEMPLATE.format(k=owner(11, 3, e["meter_id"]))
        assert e["port"] == plain[e["meter_id"]]["port"] == 4059 + e["meter_id"]
        assert {k: v for k, v in e.items() if k != "host"} == {k: v for k, v in plain[e["meter_id"]].items()
                                                                if k != "host"}
    assert [e["host"][len("cosem-fleet-")] for e in entries] == list("00001111222")

    rows = list(csv.DictReader(io.StringIO(export("--meters", "11", "--pods", "3", "--pod-dns", TEMPLATE,
                                                  "--format", "csv"))))
    assert {(int(r["meter_id"]), r["host"]) for r in rows} == {(e["meter_id"], e["host"]) for e in entries}


def test_pods_default_to_the_shard_count_or_the_environment():
    # --shard 1/3: pod 1's part, named after pod 1; the pod count is M of --shard
    part = json.loads(export("--meters", "11", "--shard", "1/3", "--pod-dns", TEMPLATE))
    assert [(e["meter_id"], e["host"]) for e in part] == [(i, TEMPLATE.format(k=1)) for i in (4, 5, 6, 7)]
    # inside a pod: FLEET_SHARD (its part) and FLEET_SHARDS (the pod count) come from the environment
    inside = json.loads(export("--meters", "11", "--pod-dns", TEMPLATE, env={"FLEET_SHARD": "2/3",
                                                                            "FLEET_SHARDS": "3"}))
    assert [(e["meter_id"], e["host"]) for e in inside] == [(i, TEMPLATE.format(k=2)) for i in (8, 9, 10)]
    whole = json.loads(export("--meters", "11", "--shard", "0/1", "--pod-dns", TEMPLATE, env={"FLEET_SHARDS": "3"}))
    assert len(whole) == 11 and whole[10]["host"] == TEMPLATE.format(k=2)


@pytest.mark.parametrize("args, words", [
    (["--pod-dns", "cosem-fleet.meters.svc.cluster.local"], ["no {k}"]),
    (["--pod-dns", "pod-{k}.{namespace}.svc"], ["--pod-dns", "{k}"]),
    (["--pod-dns", TEMPLATE, "--mode", "address"], ["--pod-dns", "listen"]),
])
def test_a_wrong_template_or_mode_is_one_line(args, words):
    with pytest.raises(FleetError) as e:
        export("--meters", "11", "--pods", "3", *args)
    for w in words:
        assert w in str(e.value)
    proc = subprocess.run([sys.executable, "-m", "fleet", "meters", "export", "--derived-keys", "--meters", "11",
                           "--pods", "3", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("fleet: error: --pod-dns"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_pod_without_its_index_label_says_why():
    with pytest.raises(FleetError, match="apps.kubernetes.io/pod-index"):
        export("--meters", "11", env={"FLEET_SHARD": "/3"})
