"""What the Grafana tests share: the committed dashboards and rules, their queries with Grafana's variables
and macros filled in as Grafana would, and the Prometheus tools (Debian's ``prometheus`` package)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
BUILD = GRAFANA / "build.py"
DASHBOARDS = GRAFANA / "dashboards"
RULES = GRAFANA / "rules" / "fleet.rules.yml"
RULES_TEST = GRAFANA / "rules" / "fleet.rules.test.yml"

PROMETHEUS_TYPE = "prometheus"
POSTGRES_TYPE = "grafana-postgresql-datasource"
# the data source each panel and query names: the dashboard's template variables, never a fixed uid
DATASOURCE_UIDS = {PROMETHEUS_TYPE: "${prometheus}", POSTGRES_TYPE: "${postgres}"}

# What Grafana puts in place of its variables in a PromQL query (the $job variable at "All", whose value
# is .*): windows long enough for a scrape a second and a test that lasts a minute.
PROMQL_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$job": ".*"}


def require_tool(name: str) -> str:
    """The path of ``name``; skip the test if it is not installed, or fail if FLEET_REQUIRE_TOOLS=1."""
    path = shutil.which(name)
    if path is None:
        why = f"{name} is not on PATH (Debian: apt-get install --no-install-recommends prometheus)"
        if os.environ.get("FLEET_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{why}; FLEET_REQUIRE_TOOLS=1 says it must be", pytrace=False)
        pytest.skip(why)
    return path


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel but the rows (and the panels folded into a collapsed row)."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


@dataclass(frozen=True)
class Query:
    dashboard: str  # uid
    panel: str  # title
    ref_id: str
    kind: str  # data source type
    text: str  # PromQL or SQL, as committed

    @property
    def name(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref_id}"


def queries(kind: str | None = None) -> list[Query]:
    """Every panel query of every committed dashboard (of data source type ``kind``)."""
    out = []
    for path in dashboard_files():
        d = load(path)
        for panel in panels(d):
            for t in panel["targets"]:
                ds = t["datasource"]["type"]
                text = t["expr"] if ds == PROMETHEUS_TYPE else t["rawSql"]
                if kind is None or ds == kind:
                    out.append(Query(d["uid"], panel["title"], t["refId"], ds, text))
    return out


def variable_queries() -> list[tuple[str, str]]:
    """(dashboard uid, query) of the Prometheus query variables."""
    return [(d["uid"], v["query"]) for d in map(load, dashboard_files()) for v in d["templating"]["list"]
            if v["type"] == "query"]


def promql(text: str) -> str:
    """A panel's PromQL as Grafana sends it to Prometheus."""
    for name, value in sorted(PROMQL_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(name, value)
    assert "$" not in text, f"a variable the tests do not know in {text!r}"
    return text


_INTERVALS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def sql(text: str, window: str = "1 hour") -> str:
    """A panel's SQL with Grafana's PostgreSQL macros expanded as Grafana expands them, the dashboard's time
    range being the last ``window``."""

    def time_filter(m: re.Match) -> str:
        return f"{m[1]} BETWEEN now() - interval '{window}' AND now()"

    def time_group_alias(m: re.Match) -> str:
        seconds = int(m[2][:-1]) * _INTERVALS[m[2][-1]]
        return f'floor(extract(epoch from {m[1]})/{seconds})*{seconds} AS "time"'

    text = re.sub(r"\$__timeFilter\(\s*([\w.]+)\s*\)", time_filter, text)
    text = re.sub(r"\$__timeGroupAlias\(\s*([\w.]+)\s*,\s*'(\d+[smhd])'\s*\)", time_group_alias, text)
    assert "$" not in text, f"a macro the tests do not know in {text!r}"
    return text


def recorded_names() -> list[str]:
    """The series the recording rules of fleet.rules.yml record."""
    return re.findall(r"^\s*- record:\s*(\S+)\s*$", RULES.read_text(), re.M)
