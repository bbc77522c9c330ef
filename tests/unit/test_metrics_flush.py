"""WorkerMetrics.flush adds exactly the tallies a worker kept: counters by label set, histograms by bucket and
sum (what as many observe() calls would add), and forgets them."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from fleet import metrics
from fleet.metrics import WorkerMetrics


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_flush_adds_the_tallies_once():
    m = WorkerMetrics()
    m.associations[(16, "accepted")] = 2
    m.refused["no-supply"] = 3
    m.pushes[("0.0.25.9.0.255", "sent")] = 5
    m.dials["connected"] = 4
    m.observe_latency(0.0003)
    m.observe_latency(0.0003)
    m.observe_latency(7.0)  # beyond the last bound: +Inf
    m.push_latency += [0.7, 20.0]
    before = {
        "assoc": value("fleet_associations_total", client="16", result="accepted"),
        "refused": value("fleet_connections_refused_total", reason="no-supply"),
        "pushes": value("fleet_pushes_total", push="0.0.25.9.0.255", outcome="sent"),
        "dials": value("fleet_dials_total", outcome="connected"),
        "lat_le_0005": value("fleet_request_latency_seconds_bucket", le="0.0005"),
        "lat_inf": value("fleet_request_latency_seconds_bucket", le="+Inf"),
        "lat_count": value("fleet_request_latency_seconds_count"),
        "lat_sum": value("fleet_request_latency_seconds_sum"),
        "push_le_1": value("fleet_push_latency_seconds_bucket", le="1.0"),
        "push_le_30": value("fleet_push_latency_seconds_bucket", le="30.0"),
        "push_sum": value("fleet_push_latency_seconds_sum"),
    }
    m.flush({})
    m.flush({})  # nothing new: adds nothing
    assert value("fleet_associations_total", client="16", result="accepted") - before["assoc"] == 2
    assert value("fleet_connections_refused_total", reason="no-supply") - before["refused"] == 3
    assert value("fleet_pushes_total", push="0.0.25.9.0.255", outcome="sent") - before["pushes"] == 5
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
