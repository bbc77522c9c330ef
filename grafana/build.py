"""Grafana dashboards of the fleet, as code (grafanalib): writes ``grafana/dashboards/*.json``.

    python grafana/build.py              # regenerate the committed JSON
    python grafana/build.py --check      # exit 1 if the committed JSON is not what this file generates

Every panel reads a data source chosen by a template variable (``$prometheus``, ``$postgres``), so the
same JSON provisions into any Grafana; ``$job`` picks the Prometheus job(s) scraping the fleet. The metric
names and labels are those of ``fleet/metrics.py``; the SQL reads the views and tables of ``migrations/``
(``push_success``, ``push_due``, ``push_received``, ``meters``, ``push_setups``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import attr
from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    TABLE_TARGET_FORMAT,
    Dashboard,
    GridPos,
    RowPanel,
    SqlTarget,
    Stat,
    Table,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

PROMETHEUS = {"type": "prometheus", "uid": "${prometheus}"}
# Grafana's built-in PostgreSQL plugin: its id since Grafana 10.2.3 ("postgres" before, kept as an alias)
POSTGRES_TYPE = "grafana-postgresql-datasource"
POSTGRES = {"type": POSTGRES_TYPE, "uid": "${postgres}"}
SCHEMA_VERSION = 39  # Grafana 10.4 / 11


# -- building blocks ------------------------------------------------------------------------------


def sel(metric: str, matchers: str = "") -> str:
    """``metric`` of the chosen job(s), with more label ``matchers``."""
    return f'{metric}{{job=~"$job"{", " + matchers if matchers else ""}}}'


def rate(metric: str, matchers: str = "", window: str = "$__rate_interval") -> str:
    return f"rate({sel(metric, matchers)}[{window}])"


def increase(metric: str, matchers: str = "") -> str:
    return f"increase({sel(metric, matchers)}[$__range])"


def quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le) ({rate(histogram + '_bucket')}))"


def prom(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> Target:
    return Target(expr=expr, legendFormat=legend, datasource=PROMETHEUS, instant=instant,
                  format=TABLE_TARGET_FORMAT if table else "time_series")


@attr.s
class Sql(SqlTarget):
    """A raw SQL query of the PostgreSQL data source, opened in the code editor."""

    def to_json_data(self):
        data = super().to_json_data()
        data["editorMode"] = "code"
        return data


def sql(query: str, *, series: bool = False) -> Sql:
    return Sql(rawSql=" ".join(query.split()), datasource=POSTGRES, format="time_series" if series else "table")


def _with_ref_ids(targets: list) -> list:
    return [attr.evolve(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)]


def series(title: str, description: str, *targets, unit: str = "short", stack: bool = False) -> TimeSeries:
    source = targets[0].datasource
    return TimeSeries(title=title, description=description, dataSource=source, targets=_with_ref_ids(list(targets)),
                      unit=unit, fillOpacity=10, legendDisplayMode="table", legendCalcs=["lastNotNull", "max"],
                      stacking={"mode": "normal", "group": "A"} if stack else {})


def stat(title: str, description: str, target, unit: str = "short", thresholds=None) -> Stat:
    return Stat(title=title, description=description, dataSource=target.datasource, targets=_with_ref_ids([target]),
                format=unit, reduceCalc="lastNotNull", graphMode="none", noValue="no data",
                thresholds=thresholds or [{"color": "green", "value": None}])


def table(title: str, description: str, target) -> Table:
    return Table(title=title, description=description, dataSource=target.datasource, targets=_with_ref_ids([target]),
                 filterable=True)


def red_below(limit: float) -> list:
    return [{"color": "red", "value": None}, {"color": "green", "value": limit}]


def red_above(limit: float) -> list:
    return [{"color": "green", "value": None}, {"color": "red", "value": limit}]


def layout(sections) -> list:
    """Panels laid out on Grafana's 24-column grid: ``sections`` is [(row title, [(panel, width, height)])]."""
    panels, y = [], 0
    for title, items in sections:
        panels.append(RowPanel(title=title, gridPos=GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        x = height = 0
        for panel, w, h in items:
            if x + w > 24:
                x, y, height = 0, y + height, 0
            panels.append(attr.evolve(panel, gridPos=GridPos(h=h, w=w, x=x, y=y)))
            x, height = x + w, max(height, h)
        y += height
    return panels


@attr.s
class MultiTemplate(Template):
    """A query variable of several values, "All" of them to start with (Grafana keeps a multi-value
    variable's current text and value as lists)."""

    def to_json_data(self):
        data = super().to_json_data()
        data["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        return data


def variables(*, prometheus: bool = True, postgres: bool = False) -> Templating:
    out = []
    if prometheus:
        out.append(Template(name="prometheus", label="Prometheus", query="prometheus", type="datasource"))
        out.append(MultiTemplate(name="job", label="Job", query="label_values(fleet_workers_up, job)",
                                 dataSource=PROMETHEUS, includeAll=True, multi=True, allValue=".*", refresh=2))
    if postgres:
        out.append(Template(name="postgres", label="PostgreSQL", query=POSTGRES_TYPE, type="datasource"))
    return Templating(list=out)


def dashboard(uid: str, title: str, description: str, sections, **templating) -> Dashboard:
    return Dashboard(uid=uid, title=title, description=description, tags=["cosem-fleet"], timezone="browser",
                     refresh="30s", time=Time("now-1h", "now"), schemaVersion=SCHEMA_VERSION,
                     panels=layout(sections), templating=variables(**templating)).auto_panel_ids()


# -- a. fleet overview ------------------------------------------------------------------------------


def overview() -> Dashboard:
    fleet = [
        (stat("Meters online", "Meters listening for a head-end (fleet_meters_online; 0 in dial mode, where the "
              "meters call out)", prom(f"sum({sel('fleet_meters_online')})")), 4, 4),
        (stat("Workers up", "Worker processes running (fleet_workers_up)", prom(f"sum({sel('fleet_workers_up')})"),
              thresholds=red_below(1)), 4, 4),
        (stat("Fleet processes scraped", "Fleet metrics endpoints Prometheus reaches (up)",
              prom(f"sum({sel('up')})"), thresholds=red_below(1)), 4, 4),
        (stat("Connections open", "TCP connections open to meters (fleet_connections_open)",
              prom(f"sum({sel('fleet_connections_open')})")), 4, 4),
        (stat("Worker restarts", "Workers the supervisor restarted in the time range (fleet_worker_restarts)",
              prom(f"sum({increase('fleet_worker_restarts_total')})"), thresholds=red_above(1)), 4, 4),
        (stat("Database restarts", "Embedded PostgreSQL restarts in the time range (fleet_database_restarts)",
              prom(f"sum({increase('fleet_database_restarts_total')})"), thresholds=red_above(1)), 4, 4),
    ]
    associations = [
        (series("Associations by client and result", "AARQs answered per second, by client SAP and result "
                "(fleet_associations)", prom(f"sum by (client, result) ({rate('fleet_associations_total')})",
                                             "client {{client}} {{result}}"), unit="ops"), 12, 8),
        (series("Associations open by client", "Application associations open (fleet_associations_open)",
                prom(f"sum by (client) ({sel('fleet_associations_open')})", "client {{client}}")), 12, 8),
        (series("Association releases by client and reason", "Associations ended per second "
                "(fleet_association_releases)", prom(f"sum by (client, reason) "
                                                     f"({rate('fleet_association_releases_total')})",
                                                     "client {{client}} {{reason}}"), unit="ops"), 12, 8),
        (series("Requests by client, service and result", "xDLMS requests served per second (fleet_requests; "
                "client other: requests no association of the meter took)",
                prom(f"sum by (client, service, result) ({rate('fleet_requests_total')})",
                     "client {{client}} {{service}} {{result}}"), unit="reqps"), 12, 8),
        (series("Connections open", "TCP connections open to meters, per fleet process (fleet_connections_open)",
                prom(f"sum by (instance) ({sel('fleet_connections_open')})", "{{instance}}")), 12, 8),
        (series("Connections refused by reason", "Connections accepted and closed at once "
                "(fleet_connections_refused: fd-budget, max-connections, no-supply, link-down, not-a-meter)",
                prom(f"sum by (reason) ({rate('fleet_connections_refused_total')})", "{{reason}}"),
                unit="ops"), 12, 8),
    ]
    latency = [
        (series("Request latency", "Time a meter takes to answer one chunk of requests "
                "(fleet_request_latency_seconds)",
                prom(quantile(0.5, "fleet_request_latency_seconds"), "p50"),
                prom(quantile(0.99, "fleet_request_latency_seconds"), "p99"), unit="s"), 12, 8),
        (series("Bytes in and out", "Bytes received from and sent to head-ends (fleet_bytes_received, "
                "fleet_bytes_sent)", prom(f"sum({rate('fleet_bytes_received_total')})", "received"),
                prom(f"sum({rate('fleet_bytes_sent_total')})", "sent"), unit="Bps"), 12, 8),
        (series("Protocol violations and internal errors", "Bad input answered or dropped, by layer "
                "(fleet_protocol_violations), and faults inside a meter (fleet_internal_errors)",
                prom(f"sum by (layer) ({rate('fleet_protocol_violations_total')})", "violations: {{layer}}"),
                prom(f"sum({rate('fleet_internal_errors_total')})", "internal errors"), unit="ops"), 24, 8),
    ]
    truth = [
        (series("Ground-truth writer lag", "Simulated seconds of captures due that the writer has not computed "
                "yet, per worker shard (fleet_groundtruth_lag_seconds)",
                prom(f"max by (shard) ({sel('fleet_groundtruth_lag_seconds')})", "shard {{shard}}"), unit="s"),
         12, 8),
        (series("Ground-truth rows waiting", "Profile rows computed and not yet written, and those in the spool "
                "(fleet_groundtruth_rows_waiting, fleet_groundtruth_spool_rows, fleet_groundtruth_spool_files)",
                prom(f"sum by (shard) ({sel('fleet_groundtruth_rows_waiting')})", "waiting {{shard}}"),
                prom(f"sum by (shard) ({sel('fleet_groundtruth_spool_rows')})", "spooled {{shard}}"),
                prom(f"sum by (shard) ({sel('fleet_groundtruth_spool_files')})", "spool files {{shard}}")), 12, 8),
        (series("Rows written by table", "Rows written to PostgreSQL per second (fleet_db_rows_written)",
                prom(f"sum by (table) ({rate('fleet_db_rows_written_total')})", "{{table}}"), unit="rowsps",
                stack=True), 12, 8),
        (series("Writer trouble", "Failed writer steps (retried), rows spooled, ground-truth writer restarts, "
                "back-pressure and batches refused for good, per second",
                prom(f"sum({rate('fleet_db_writer_errors_total')})", "writer errors"),
                prom(f"sum({rate('fleet_groundtruth_spooled_rows_total')})", "rows spooled"),
                prom(f"sum({rate('fleet_groundtruth_restarts_total')})", "ground-truth restarts"),
                prom(f"sum({rate('fleet_db_writer_backpressure_total')})", "back-pressure"),
                prom(f"sum({rate('fleet_db_writer_discarded_total')})", "discarded"), unit="ops"), 12, 8),
        (series("Connection recorder", "Connection and association events waiting, and the age of the oldest "
                "(fleet_db_writer_queue_depth, fleet_db_writer_lag_seconds)",
                prom(f"sum({sel('fleet_db_writer_queue_depth')})", "events waiting"),
                prom(f"max({sel('fleet_db_writer_lag_seconds')})", "oldest (s)")), 24, 8),
    ]
    return dashboard("cosem-fleet-overview", "COSEM fleet: overview",
                     "Meters, workers, associations, requests, latency, traffic and the database writers "
                     "(fleet_* metrics of `fleet run`).",
                     [("Fleet", fleet), ("Associations and requests", associations),
                      ("Latency and traffic", latency), ("Ground truth and database writers", truth)])


# -- b. security ------------------------------------------------------------------------------------


def security() -> Dashboard:
    failures = "fleet_security_failures_total"
    rejected = 'result="rejected"'
    summary = [
        (stat("Security failures", "Protected requests and HLS replies refused in the time range "
              "(fleet_security_failures)", prom(f"sum({increase(failures)})"), thresholds=red_above(1)), 6, 4),
        (stat("Associations rejected", "AARQs rejected in the time range (fleet_associations, result rejected: "
              "wrong password, unknown client, ...)", prom(f"sum({increase('fleet_associations_total', rejected)})"),
              thresholds=red_above(1)), 6, 4),
        (stat("Protocol violations", "Bad input answered or dropped in the time range "
              "(fleet_protocol_violations)", prom(f"sum({increase('fleet_protocol_violations_total')})"),
              thresholds=red_above(1)), 6, 4),
        (stat("Connections refused", "Connections closed at once in the time range (fleet_connections_refused)",
              prom(f"sum({increase('fleet_connections_refused_total')})")), 6, 4),
    ]
    detail = [
        (series("Security failures by reason", "Per second, by reason: deciphering, invocation-counter, "
                "security-control, truncated, policy, authentication, system-title, push-confirm",
                prom(f"sum by (reason) ({rate(failures)})", "{{reason}}"), unit="ops", stack=True), 12, 8),
        (series("Security failures by client", "Per second, by client SAP (other: a SAP the meters have no "
                "association for)", prom(f"sum by (client) ({rate(failures)})", "client {{client}}"), unit="ops",
                stack=True), 12, 8),
        (table("Security failures by client and reason", "Failures in the time range",
               prom(f"sum by (client, reason) ({increase(failures)})", instant=True, table=True)), 12, 8),
        (series("Associations rejected by client", "AARQs rejected per second (fleet_associations)",
                prom(f"sum by (client) ({rate('fleet_associations_total', rejected)})", "client {{client}}"),
                unit="ops"), 12, 8),
        (series("Protocol violations by layer", "Bad input per second (fleet_protocol_violations)",
                prom(f"sum by (layer) ({rate('fleet_protocol_violations_total')})", "{{layer}}"), unit="ops"), 12, 8),
        (series("Connections refused by reason", "Connections closed at once per second "
                "(fleet_connections_refused)", prom(f"sum by (reason) ({rate('fleet_connections_refused_total')})",
                                                    "{{reason}}"), unit="ops"), 12, 8),
    ]
    return dashboard("cosem-fleet-security", "COSEM fleet: security failures",
                     "Refused protected exchanges by reason and client, rejected associations, bad input.",
                     [("In the time range", summary), ("Over time", detail)])


# -- c. pushes --------------------------------------------------------------------------------------

SENT, FAILED, CONNECTED = 'outcome="sent"', 'outcome="failed"', 'outcome="connected"'
_PUSH_NAME = ("LEFT JOIN push_setups ps ON ps.meter_id IS NULL AND ps.logical_name = {table}.push_logical_name")


def pushes() -> Dashboard:
    pushes_total = "fleet_pushes_total"

    def settled_ratio(by: str, window: str) -> str:
        sent = f"sum{by} ({rate(pushes_total, SENT, window)})"
        failed = f"sum{by} ({rate(pushes_total, FAILED, window)})"
        return f"{sent} / ({sent} + ({failed} or {sent} * 0))"

    meters = [
        (stat("Pushes sent / settled", "Pushes sent over pushes settled (sent or failed after the retries) in the "
              "time range, as the meters count them (fleet_pushes)",
              prom(f"sum({increase(pushes_total, SENT)}) / (sum({increase(pushes_total, SENT)})"
                   f" + (sum({increase(pushes_total, FAILED)}) or vector(0)))"),
              unit="percentunit", thresholds=red_below(0.95)), 6, 4),
        (stat("Pushes failed", "Pushes failed for good in the time range (fleet_push_failures)",
              prom(f"sum({increase('fleet_push_failures_total')})"), thresholds=red_above(1)), 6, 4),
        (stat("Push latency p99", "Simulated seconds from due time to send, retries included "
              "(fleet_push_latency_seconds)", prom(quantile(0.99, "fleet_push_latency_seconds")), unit="s"), 6, 4),
        (stat("Calls connected", "Share of the meters' calls to the head-end that connected (fleet_dials)",
              prom(f"sum({rate('fleet_dials_total', CONNECTED)}) / sum({rate('fleet_dials_total')})"),
              unit="percentunit", thresholds=red_below(0.95)), 6, 4),
        (series("Pushes by push setup and outcome", "Per second (fleet_pushes: due, attempted, sent, retried, failed, "
                "queue-full, confirmed, unconfirmed, no-supply)",
                prom(f"sum by (push, outcome) ({rate(pushes_total)})", "{{push}} {{outcome}}"), unit="ops"), 12, 8),
        (series("Push success per push setup", "Sent over settled (sent + failed) per push setup (fleet_pushes)",
                prom(settled_ratio(" by (push)", "$__rate_interval"), "{{push}}"), unit="percentunit"), 12, 8),
        (series("Pushes the head-end sink received", "Per second, by push setup, as fleet hes-sink took them "
                "(fleet_sink_pushes_received; hes-sink --metrics-port), with those written to push_received and "
                "those it dropped", prom(f"sum by (push) ({rate('fleet_sink_pushes_received_total')})", "{{push}}"),
                prom(f"sum({rate('fleet_sink_pushes_recorded_total')})", "recorded"),
                prom(f"sum by (reason) ({rate('fleet_sink_pushes_refused_total')})", "refused {{reason}}"),
                unit="ops"), 12, 8),
        (series("Push success per meter group", "Sent over settled (sent + failed) per meter group, the meters' "
                "kind: 1ph, 3ph, ctpt (fleet_pushes)",
                prom(settled_ratio(" by (group)", "$__rate_interval"), "{{group}}"), unit="percentunit"), 12, 8),
        (series("Push failures by push setup and reason", "Pushes failed for good per second, by the last "
                "attempt's reason (fleet_push_failures: refused, timeout, link-down, unconfirmed, queue-full)",
                prom(f"sum by (push, reason) ({rate('fleet_push_failures_total')})", "{{push}} {{reason}}"),
                unit="ops"), 12, 8),
        (series("Push latency", "Simulated seconds from a push's due time (randomisation included) to its send "
                "(fleet_push_latency_seconds)", prom(quantile(0.5, "fleet_push_latency_seconds"), "p50"),
                prom(quantile(0.99, "fleet_push_latency_seconds"), "p99"), unit="s"), 12, 8),
        (series("Calls by outcome", "Calls the meters placed to the head-end per second (fleet_dials: connected, "
                "refused, timeout, link-down)", prom(f"sum by (outcome) ({rate('fleet_dials_total')})", "{{outcome}}"),
                unit="ops", stack=True), 12, 8),
    ]
    head_end = [
        (stat("Push success rate (push_success)", "Pushes the head-end received over pushes the meters owed, "
              "whole history (view push_success)",
              sql("SELECT sum(pushes_received)::float8 / nullif(sum(pushes_due), 0) AS success_rate "
                  "FROM push_success"), unit="percentunit", thresholds=red_below(0.95)), 8, 4),
        (stat("Pushes due", "Pushes the meters owed (push_due)",
              sql("SELECT coalesce(sum(pushes_due), 0) AS pushes_due FROM push_success")), 8, 4),
        (stat("Pushes received", "Pushes fleet hes-sink recorded for them (push_received)",
              sql("SELECT coalesce(sum(pushes_received), 0) AS pushes_received FROM push_success")), 8, 4),
        (table("Success per push setup", "push_success summed per push setup",
               sql(f"""SELECT s.push_logical_name AS push, coalesce(ps.name, s.push_logical_name) AS name,
                   sum(s.pushes_due) AS due, sum(s.pushes_received) AS received,
                   round(100 * sum(s.pushes_received)::numeric / sum(s.pushes_due), 2) AS success_pct
                   FROM push_success s {_PUSH_NAME.format(table="s")}
                   GROUP BY 1, 2 ORDER BY 1""")), 12, 8),
        (table("Success per meter group", "push_success summed per meter kind and push setup",
               sql("""SELECT coalesce(m.kind, '?') AS meter_group, s.push_logical_name AS push,
                   count(DISTINCT s.meter_id) AS meters, sum(s.pushes_due) AS due,
                   sum(s.pushes_received) AS received,
                   round(100 * sum(s.pushes_received)::numeric / sum(s.pushes_due), 2) AS success_pct
                   FROM push_success s LEFT JOIN meters m ON m.meter_id = s.meter_id
                   GROUP BY 1, 2 ORDER BY 1, 2""")), 12, 8),
        (table("Meters with the lowest success", "The 50 meter and push setup pairs with the lowest rate "
               "(push_success)",
               sql("""SELECT s.meter_id, m.serial, m.kind, s.push_logical_name AS push, s.pushes_due AS due,
                   s.pushes_received AS received, round(100 * s.success_rate, 2) AS success_pct
                   FROM push_success s LEFT JOIN meters m ON m.meter_id = s.meter_id
                   ORDER BY s.success_rate, s.pushes_due DESC, s.meter_id LIMIT 50""")), 12, 8),
        (series("Pushes received per minute", "Pushes fleet hes-sink recorded, by push setup (push_received, by "
                "wall-clock receive time)",
                sql("""SELECT $__timeGroupAlias(received_at, '1m'), push_logical_name AS metric, count(*) AS value
                    FROM push_received WHERE $__timeFilter(received_at) GROUP BY 1, 2 ORDER BY 1""", series=True)),
         12, 8),
        (table("Failed, late and lost pushes", "Pushes settled in the time range that failed after their retries "
               "(failed), were sent after a retry (late) or were sent but never recorded by the head-end (lost); "
               "due_at is simulated time, settled_at wall-clock time",
               sql(f"""SELECT d.meter_id, m.serial, d.push_logical_name AS push, ps.name, d.due_at, d.settled_at,
                   d.attempts, CASE WHEN d.outcome = 'FAILED' THEN 'failed' WHEN r.meter_id IS NULL THEN 'lost'
                   ELSE 'late' END AS status, r.received_at
                   FROM push_due d
                   LEFT JOIN push_received r ON r.meter_id = d.meter_id
                        AND r.push_logical_name = d.push_logical_name AND r.long_invoke_id = d.long_invoke_id
                   LEFT JOIN meters m ON m.meter_id = d.meter_id {_PUSH_NAME.format(table="d")}
                   WHERE $__timeFilter(d.settled_at)
                     AND (d.outcome = 'FAILED' OR d.attempts > 1 OR r.meter_id IS NULL)
                   ORDER BY d.settled_at DESC, d.meter_id LIMIT 500""")), 24, 10),
    ]
    return dashboard("cosem-fleet-pushes", "COSEM fleet: pushes",
                     "Dial mode: pushes per push setup as the meters count them (Prometheus), and as the head-end "
                     "received them (PostgreSQL: push_success, push_due, push_received).",
                     [("As the meters count them (Prometheus)", meters),
                      ("As the head-end received them (PostgreSQL)", head_end)], postgres=True)


DASHBOARDS = {"fleet-overview": overview, "fleet-security": security, "fleet-pushes": pushes}


def render(build) -> str:
    """One dashboard's JSON file, as committed."""
    return json.dumps(build().to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="folder to write (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    args = ap.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.out / f"{name}.json"
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in stale:
        print(f"{path} is not what grafana/build.py generates: run python grafana/build.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
