"""WorkerMetrics.flush adds exactly the tallies a worker kept: counters by label set, histograms by bucket and
sum (what as many observe() calls would add), and forgets them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from fleet import metrics
from fleet.metrics import WorkerMetrics
from meter_core.session.association import ServiceStats


def value(name: str, **labels) -> float:
    """A sample as /metrics shows it (the registry `metrics.serve` exposes, here over this process's metrics)."""
    return metrics.registry(REGISTRY).get_sample_value(name, labels) or 0.0


def test_flush_adds_the_tallies_once():
    m = WorkerMetrics()
    m.associations[(16, "accepted")] = 2
    m.refused["no-supply"] = 3
    m.pushes[("0.0.25.9.0.255", "3ph", "sent")] = 5
    m.dials["connected"] = 4
    m.observe_latency(0.0003)
    m.observe_latency(0.0003)
    m.observe_latency(7.0)  # beyond the last bound: +Inf
    m.push_latency += [0.7, 20.0]
    before = {
        "assoc": value("fleet_associations_total", client="16", result="accepted"),
        "refused": value("fleet_connections_refused_total", reason="no-supply"),
        "pushes": value("fleet_pushes_total", push="0.0.25.9.0.255", group="3ph", outcome="sent"),
        "dials": value("fleet_dials_total", outcome="connected"),
        "lat_le_0005": value("fleet_request_latency_seconds_bucket", le="0.0005"),
        "lat_inf": value("fleet_request_latency_seconds_bucket", le="+Inf"),
        "lat_count": value("fleet_request_latency_seconds_count"),
        "lat_sum": value("fleet_request_latency_seconds_sum"),
        "push_le_1": value("fleet_push_latency_seconds_bucket", le="1.0"),
        "push_le_30": value("fleet_push_latency_seconds_bucket", le="30.0"),
        "push_sum": value("fleet_push_latency_seconds_sum"),
    }
    m.associations_open["16"] = 3
    stats = ServiceStats()
    stats.of_client(16).counts[("get", "ok")] += 4
    stats.counts[("aarq", "unknown-client")] += 1
    before["get16"] = value("fleet_requests_total", client="16", service="get", result="ok")
    before["unknown"] = value("fleet_requests_total", client="other", service="aarq", result="unknown-client")
    m.flush(stats, 7)
    m.associations_open["16"] -= 1
    m.flush(stats, 5)  # nothing new counted: adds nothing; the open gauges show what is open now
    assert value("fleet_requests_total", client="16", service="get", result="ok") - before["get16"] == 4
    assert value("fleet_requests_total", client="other", service="aarq", result="unknown-client") - before[
        "unknown"] == 1
    assert value("fleet_connections_open") == 5
    assert value("fleet_associations_open", client="16") == 2
    assert value("fleet_associations_total", client="16", result="accepted") - before["assoc"] == 2
    assert value("fleet_connections_refused_total", reason="no-supply") - before["refused"] == 3
    assert value("fleet_pushes_total", push="0.0.25.9.0.255", group="3ph", outcome="sent") - before["pushes"] == 5
    assert value("fleet_dials_total", outcome="connected") - before["dials"] == 4
    assert value("fleet_request_latency_seconds_bucket", le="0.0005") - before["lat_le_0005"] == 2
    assert value("fleet_request_latency_seconds_bucket", le="+Inf") - before["lat_inf"] == 3
    assert value("fleet_request_latency_seconds_count") - before["lat_count"] == 3
    assert value("fleet_request_latency_seconds_sum") - before["lat_sum"] == pytest.approx(7.0006)
    assert value("fleet_push_latency_seconds_bucket", le="1.0") - before["push_le_1"] == 1
    assert value("fleet_push_latency_seconds_bucket", le="30.0") - before["push_le_30"] == 2
    assert value("fleet_push_latency_seconds_sum") - before["push_sum"] == pytest.approx(20.7)
    assert not (m.associations or m.refused or m.pushes or m.dials or m.push_latency or any(m.latency_counts))
    assert metrics.LATENCY_BUCKETS[-1] < 7.0


WORKER = """
import json, sys
from prometheus_client import generate_latest
from fleet import metrics
m = metrics.WorkerMetrics()
for x in json.loads(sys.argv[1]):
    m.observe_latency(x)
m.push_latency += [0.7]
from meter_core.session.association import ServiceStats
m.flush(ServiceStats(), 0)
if len(sys.argv) > 2:
    sys.stdout.write(generate_latest(metrics.registry()).decode())
"""


def test_histograms_from_two_worker_processes_in_multiprocess_mode(tmp_path):
    """Two worker processes add latencies; the supervisor's registry shows one histogram, cumulative by
    bucket, as ``observe()`` would give, and no tally counters."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", WORKER, json.dumps([0.0003, 0.002])], env=env, check=True)
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps([0.0003, 5.0]), "show"], env=env, check=True,
                         capture_output=True, text=True).stdout
    families = {f.name: f for f in text_string_to_metric_families(out)}
    assert not any("tally" in name for name in families)
    lat = families["fleet_request_latency_seconds"]
    assert lat.type == "histogram"
    samples = {(s.name, s.labels.get("le")): s.value for s in lat.samples}
    assert samples[("fleet_request_latency_seconds_bucket", "0.0001")] == 0
    assert samples[("fleet_request_latency_seconds_bucket", "0.0005")] == 2
    assert samples[("fleet_request_latency_seconds_bucket", "0.0025")] == 3
    assert samples[("fleet_request_latency_seconds_bucket", "1.0")] == 3
    assert samples[("fleet_request_latency_seconds_bucket", "+Inf")] == 4
    assert samples[("fleet_request_latency_seconds_count", None)] == 4
    assert samples[("fleet_request_latency_seconds_sum", None)] == pytest.approx(5.0026)
    push = {(s.name, s.labels.get("le")): s.value for s in families["fleet_push_latency_seconds"].samples}
    assert push[("fleet_push_latency_seconds_bucket", "1.0")] == 2
    assert push[("fleet_push_latency_seconds_sum", None)] == pytest.approx(1.4)


def test_show_zeros_starts_the_known_label_sets_at_zero_and_no_others():
    """Each label set a dashboard rates is there before its first event; only the known values (a
    dialling worker's push setups and meter groups; the ground-truth writer's error reasons)."""
    push = "0.0.25.9.0.251"  # (a push setup name no other test counts)
    assert value("fleet_pushes_total", push=push, group="1ph", outcome="failed") == 0.0
    sample = metrics.registry(REGISTRY).get_sample_value
    assert sample("fleet_pushes_total", {"push": push, "group": "1ph", "outcome": "failed"}) is None
    metrics.show_zeros(pushes=[push], groups=["1ph"], groundtruth=True)
    for outcome in metrics.PUSH_OUTCOMES:
        assert sample("fleet_pushes_total", {"push": push, "group": "1ph", "outcome": outcome}) == 0.0
    assert sample("fleet_pushes_total", {"push": push, "group": "3ph", "outcome": "sent"}) is None
    assert sample("fleet_push_failures_total", {"push": push, "reason": "timeout"}) == 0.0
    assert sample("fleet_dials_total", {"outcome": "timeout"}) is not None
    assert sample("fleet_groundtruth_errors_total", {"reason": "spool"}) is not None
    for client in ("16", "32", "48", "other"):
        assert sample("fleet_associations_total", {"client": client, "result": "rejected"}) is not None
        assert sample("fleet_association_releases_total", {"client": client, "reason": "timeout"}) is not None
        assert sample("fleet_security_failures_total", {"client": client, "reason": "policy"}) is not None
    assert sample("fleet_connections_refused_total", {"reason": "fd-budget"}) is not None
    assert sample("fleet_protocol_violations_total", {"layer": "hdlc"}) is not None
