"""fleet hes-sink's /metrics: its tallies read at each scrape, bounded label sets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleet.settings import FleetOptions
from fleet.tools.sink import Directory, PushSink, SinkCollector


def samples(registry) -> dict:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_sink_collector_shows_what_the_sink_counted():
    sink = PushSink("postgresql://unused@127.0.0.1:1/none", Directory(FleetOptions(meters=2)))
    registry = CollectorRegistry()
    registry.register(SinkCollector(sink))
    first = samples(registry)
    assert first[("fleet_sink_pushes_refused_total", (("reason", "undecodable"),))] == 0  # shown before any
    assert first[("fleet_sink_pushes_recorded_total", ())] == 0
    sink.by_push["0.0.25.9.0.255"] += 3
    sink.received += 3
    sink.refused["framing"] += 1
    sink.confirmed += 2
    sink.connections = 4
    now = samples(registry)
    assert now[("fleet_sink_pushes_received_total", (("push", "0.0.25.9.0.255"),))] == 3
    assert now[("fleet_sink_pushes_refused_total", (("reason", "framing"),))] == 1
    assert now[("fleet_sink_confirms_sent_total", ())] == 2
    assert now[("fleet_sink_connections_open", ())] == 4
    assert now[("fleet_sink_pushes_waiting", ())] == 0
