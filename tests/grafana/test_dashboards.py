"""The committed dashboards are what grafana/build.py generates, and are dashboards Grafana can provision:
a uid and a title, panels on the grid with queries, every data source named by a template variable."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.grafana.support import (
    BUILD,
    DASHBOARDS,
    DATASOURCE_UIDS,
    POSTGRES_TYPE,
    PROMETHEUS_TYPE,
    dashboard_files,
    load,
    panels,
    queries,
)


def test_regenerating_gives_the_committed_files_byte_for_byte(tmp_path):
    proc = subprocess.run([sys.executable, str(BUILD), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    generated = sorted(p.name for p in tmp_path.iterdir())
    assert generated == [p.name for p in dashboard_files()], "run: python grafana/build.py"
    for name in generated:
        assert (tmp_path / name).read_bytes() == (DASHBOARDS / name).read_bytes(), \
            f"grafana/dashboards/{name} is stale: run python grafana/build.py"


def test_check_mode_says_whether_the_committed_files_are_current(tmp_path):
    assert subprocess.run([sys.executable, str(BUILD), "--check"], capture_output=True, timeout=60).returncode == 0
    (tmp_path / "fleet-overview.json").write_text("{}\n")
    stale = subprocess.run([sys.executable, str(BUILD), "--check", "--out", str(tmp_path)], capture_output=True,
                           text=True, timeout=60)
    assert stale.returncode == 1 and "fleet-overview.json" in stale.stderr


def test_the_three_dashboards_are_there():
    titles = {load(p)["uid"]: load(p)["title"] for p in dashboard_files()}
    assert set(titles) == {"cosem-fleet-overview", "cosem-fleet-security", "cosem-fleet-pushes"}
    assert len(set(titles.values())) == 3


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_a_dashboard_is_structurally_valid(path):
    d = load(path)
    assert d["uid"] and len(d["uid"]) <= 40 and d["title"]
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["id"] is None  # provisioning gives it one
    variables = {v["name"]: v for v in d["templating"]["list"]}
    used = {t["datasource"]["type"] for p in panels(d) for t in p["targets"]}
    assert used <= {PROMETHEUS_TYPE, POSTGRES_TYPE}
    # one data source variable per data source type the panels use, of that type
    for kind, uid in DATASOURCE_UIDS.items():
        name = uid[2:-1]
        if kind in used:
            assert variables[name]["type"] == "datasource" and variables[name]["query"] == kind
    if PROMETHEUS_TYPE in used:
        job = variables["job"]
        assert job["type"] == "query" and job["datasource"] == {"type": PROMETHEUS_TYPE, "uid": "${prometheus}"}
        assert job["includeAll"] and job["allValue"] == ".*"
    ids, cells = set(), set()
    rows = [p for p in d["panels"] if p["type"] == "row"]
    assert rows, "panels are grouped in rows"
    for panel in d["panels"]:
        assert isinstance(panel["id"], int) and panel["id"] not in ids
        ids.add(panel["id"])
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0 and g["y"] >= 0
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cell & cells, f"panel {panel['title']!r} overlaps another"
        cells |= cell
    for panel in panels(d):
        assert panel["title"] and panel["description"], panel
        assert panel["type"] in {"timeseries", "stat", "table"}
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == DATASOURCE_UIDS[panel["datasource"]["type"]]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs) and all(refs)
        for t in panel["targets"]:
            assert t["datasource"] == panel["datasource"], "a query reads its panel's data source"
            if t["datasource"]["type"] == PROMETHEUS_TYPE:
                assert t["expr"].strip() and 'job=~"$job"' in t["expr"]
            else:
                assert t["rawSql"].strip() and t["rawQuery"] is True and t["editorMode"] == "code"
                assert t["format"] in {"table", "time_series"}


def test_the_push_dashboard_reads_push_success_and_lists_failed_and_late_pushes():
    sqls = queries(POSTGRES_TYPE)
    assert {q.dashboard for q in sqls} == {"cosem-fleet-pushes"}
    assert any("FROM push_success" in q.text for q in sqls)
    listing = next(q for q in sqls if q.panel == "Failed, late and lost pushes")
    assert "outcome = 'FAILED'" in listing.text and "attempts > 1" in listing.text


def test_every_metric_a_query_reads_is_one_the_fleet_defines():
    """A misspelt metric would show "No data" for ever; the real-Prometheus test (test_queries) catches it
    too, this one without Prometheus."""
    from fleet import metrics

    defined = {"up"}
    for name in dir(metrics):
        m = getattr(metrics, name)
        if isinstance(m, metrics.BatchedHistogram):
            defined |= {m.name + "_bucket", m.name + "_sum", m.name + "_count"}
        elif isinstance(m, metrics.Counter | metrics.Gauge):
            family = m.describe()[0]
            defined.add(family.name + "_total" if family.type == "counter" else family.name)
    assert {"fleet_pushes_total", "fleet_workers_up", "fleet_request_latency_seconds_bucket"} <= defined
    # the hes-sink's own metrics (fleet/tools/sink.py: SinkCollector), read from a sink at scrape time
    from fleet.settings import FleetOptions
    from fleet.tools.sink import Directory, PushSink, SinkCollector

    sink = SinkCollector(PushSink("postgresql://unused@127.0.0.1:1/none", Directory(FleetOptions(meters=1))))
    for family in sink.collect():
        defined.add(family.name + "_total" if family.type == "counter" else family.name)
    assert "fleet_sink_pushes_received_total" in defined
    for q in queries(PROMETHEUS_TYPE):
        for metric in re.findall(r"\b([a-z_:]+)\{", q.text):
            assert metric in defined, f"{q.name}: {metric} is no metric of fleet/metrics.py or the sink"


def test_the_provisioning_examples_match_the_dashboards():
    """The provider serves a folder of JSON files; the example data sources are of the types the dashboards'
    data source variables list (a PostgreSQL data source of another type id would not be offered)."""
    provisioning = BUILD.parent / "provisioning"
    provider = (provisioning / "dashboards" / "cosem-fleet.yml").read_text()
    assert "type: file" in provider and "path: /var/lib/grafana/dashboards/cosem-fleet" in provider
    sources = (provisioning / "datasources" / "cosem-fleet.yml").read_text()
    types = set(re.findall(r"^\s+type: (\S+)$", sources, re.M))
    variables = {v["query"] for p in dashboard_files() for v in load(p)["templating"]["list"]
                 if v["type"] == "datasource"}
    assert types == variables == {PROMETHEUS_TYPE, POSTGRES_TYPE}
