"""loadtests/locustfile.py against a real fleet: what locust counts is what the fleet's /metrics counted.

A small `fleet run` (PostgreSQL from the `database_url` fixture), its onboarding file from `fleet meters
export`, then locust headless for 10 s with 20 users, as loadtests/README.md runs it. Every request
must succeed, and the deltas of the fleet's counters over the run must be locust's counts: associations
accepted per client, and requests per service (GET, SET, ACTION, AARQ, RLRQ).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fleet.test_fleet_run import FleetProcess
from tests.servers import free_port_base

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust is not installed (test extra)"),
]

ROOT = Path(__file__).resolve().parents[2]
METERS = 24
MIX = "1ph=0.5,3ph=0.3,ctpt=0.2"  # CT/PT meters have no relay: the relay task must leave them alone


def metrics(port: int) -> Counter:
    """The fleet's counters now, by (sample name, sorted labels)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] += s.value
    return out


def delta(after: Counter, before: Counter, name: str, **labels: str) -> float:
    """How much ``name`` grew over the samples whose labels include ``labels`` (others added up)."""
    def total(counts: Counter) -> float:
        return sum(v for (n, ls), v in counts.items() if n == name and labels.items() <= dict(ls).items())
    return total(after) - total(before)


def locust_stats(prefix: Path) -> list[dict]:
    """Locust's final count per request (type and name): its JSON file, written once every user has
    stopped (the CSV files are written as the time limit strikes, before the users end their tasks)."""
    with open(f"{prefix}.json") as f:
        return json.load(f)


def test_locust_counts_match_the_fleet_metrics(database_url, tmp_path):
    base = free_port_base(METERS + 1, 22000, 23000)
    metrics_port = base + METERS
    placement = ["--meters", str(METERS), "--mix", MIX, "--port-base", str(base)]
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    fleet = FleetProcess("run", *placement, "--workers", "1", "--metrics-port", str(metrics_port),
                         "--database-url", database_url, env=env)
    try:
        fleet.wait_for(rf"{METERS} meters ready")
        export = tmp_path / "meters.json"
        proc = subprocess.run([sys.executable, "-m", "fleet", "meters", "export", *placement, "--format", "json",
                               "-o", str(export), "--database-url", database_url],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
        kinds = Counter(m["kind"] for m in json.loads(export.read_text()))
        assert kinds["ctpt"] and kinds["1ph"] + kinds["3ph"], kinds
        before = metrics(metrics_port)

        prefix = tmp_path / "locust"
        proc = subprocess.run([sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
                               "--headless", "-u", "20", "-r", "10", "-t", "10s", "--stop-timeout", "10s",
                               "--only-summary", "--json-file", str(prefix), "--csv", str(prefix),
                               "--export", str(export)],
                              capture_output=True, text=True, timeout=45, cwd=ROOT, env=env)
        report = proc.stdout + proc.stderr
        rows = locust_stats(prefix) if Path(f"{prefix}.json").exists() else []
        failed = {(r["method"], r["name"]): r["num_failures"] for r in rows if r["num_failures"]}
        # the failures CSV has the messages (of the failures until the time limit)
        assert not failed, (failed, Path(f"{prefix}_failures.csv").read_text(), report)
        assert proc.returncode == 0 and rows, report
        count: Counter = Counter()
        per_client: Counter = Counter()
        for r in rows:
            count[r["method"]] += r["num_requests"]
            if r["method"] == "AARQ":
                per_client[re.match(r"client (\d+) ", r["name"]).group(1)] += r["num_requests"]
        # Each user's first task runs as it starts: 8 daily and 8 on-demand readers (client 32), 4 utility
        # settings users (client 48, after reading the invocation counter as client 16); each of the
        # latter's tasks is a SET (clock) or ACTIONs (relay).
        assert per_client["16"] and per_client["32"] and per_client["48"], per_client
        assert count["SET"] + count["ACTION"] > 0, count

        # Workers flush their counters once a second: wait for the last request of every session.
        deadline = time.monotonic() + 15
        while True:
            after = metrics(metrics_port)
            if delta(after, before, "fleet_requests_total", service="rlrq", result="ok") >= count["RLRQ"]:
                break
            assert time.monotonic() < deadline, (count, after)
            time.sleep(0.3)

        for client in ("16", "32", "48", "64", "80"):
            assert delta(after, before, "fleet_associations_total", client=client, result="accepted") == \
                per_client[client], client
            assert delta(after, before, "fleet_associations_total", client=client, result="rejected") == 0
        served: Counter = Counter()
        for name, labels in after:
            if name == "fleet_requests_total":
                ls = dict(labels)
                served[(ls["service"], ls["result"])] += after[(name, labels)] - before[(name, labels)]
        # by client too: each client's associations and releases are its own
        for client in ("32", "48"):
            assert delta(after, before, "fleet_requests_total", client=client, service="aarq", result="ok") == \
                per_client[client], client
        assert {k: n for k, n in served.items() if k[1] != "ok" and n} == {}, served
        assert served.get(("aarq", "ok"), 0) == count["AARQ"]
        assert served.get(("rlrq", "ok"), 0) == count["RLRQ"]
        assert served.get(("get", "ok"), 0) == count["GET"]  # block transfers: get-next, counted apart
        assert served.get(("set", "ok"), 0) == count["SET"]
        # HLS pass 3 (reply_to_HLS_authentication of the current association) is an ACTION too.
        assert served.get(("action", "ok"), 0) == count["ACTION"] + per_client["48"]
        assert sum(n for (name, _), n in after.items() if name == "fleet_security_failures_total") == \
            sum(n for (name, _), n in before.items() if name == "fleet_security_failures_total")
    finally:
        code = fleet.stop()
    assert code == 0, "\n".join(fleet.lines)
