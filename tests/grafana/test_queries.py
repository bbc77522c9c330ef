"""Every query of every dashboard, run for real: a fleet of two pods (one in dial mode pushing to a real
`fleet hes-sink`, one in listen mode that a head-end here talks to, right and wrong), scraped once a second
by Debian's Prometheus, which also evaluates grafana/rules/fleet.rules.yml; the SQL panels against the
fleet's PostgreSQL. Each Prometheus panel query must give at least one series with a value, each SQL query
must run (and give rows), and a misspelt query must give nothing, so the check can fail.

No Grafana here: the queries are taken from the committed JSON, with Grafana's variables and macros filled
in as Grafana does (tests/grafana/support.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import _admin, _fresh_database, with_database
from tests.fleet.test_fleet_run import FleetProcess
from tests.fleet.test_fleet_run import query as fetch
from tests.grafana.support import (
    POSTGRES_TYPE,
    PROMETHEUS_TYPE,
    RULES,
    promql,
    queries,
    recorded_names,
    require_tool,
    sql,
    variable_queries,
)
from tests.servers import free_port_base

pytestmark = [pytest.mark.fleet, pytest.mark.integration]

METERS = 24  # one fleet in two pods: ids 0-11 call the head-end (--shard 0/2), 12-23 listen (--shard 1/2)
DIAL = range(0, 12)
LISTEN = range(12, 24)
LINK_DOWN = range(6, 13)  # meters 6-11 cannot call the sink (failed pushes), meter 12 refuses connections
SPEED = 600.0  # an instant push every 1.5 s, a block load push every 3 s
# an hour before a day's and a month's end (6 s at SPEED, about what the pods take to start): daily load and
# billing pushes fall due soon after the start (not asserted: a slow start leaves them out)
START = "2026-03-31T23:00:00+05:30"
MIX = "1ph=0.5,3ph=0.3,ctpt=0.2"
PATIENCE = 30.0  # seconds a query may take to show what the fleet did (scrapes once a second)
PORTS = 17  # our block of ports in 21000-21999: the listening meters, the sink, three metrics ports, Prometheus


def _get(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class Prometheus:
    """Debian's prometheus binary, on loopback, with its data in a temporary folder."""

    def __init__(self, binary: str, folder, port: int, targets: list[str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        config = folder / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "fleet", "static_configs": [{"targets": targets}]}],
        }))
        self.log = open(folder / "prometheus.log", "w")  # closed in stop()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params) -> dict:
        got = _get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}")
        assert got["status"] == "success", got
        return got["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), data
        return data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]

    def wait_ready(self, targets: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        up: list = []
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.proc.returncode}"
            with contextlib.suppress(OSError, ValueError):
                up = [t for t in self.api("targets")["activeTargets"] if t["health"] == "up"]
                if len(up) == targets:
                    return
            time.sleep(0.2)
        raise AssertionError(f"prometheus: {len(up)} of {targets} targets up after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class HeadEnd(threading.Thread):
    """A head-end at the listening pod, over and over until stopped: a good read, a wrong LLS password, a
    wrong HLS secret, a wrong block key, a replayed invocation counter, bytes that are no wrapper frame, and
    a call to a meter whose link is down; so every panel has something to show."""

    def __init__(self, port_base: int) -> None:
        super().__init__(name="head-end", daemon=True)
        from fleet.settings import FleetOptions
        from fleet.tools.export import meter_record
        from meter_core.device.identity import parse_mix

        self.options = FleetOptions(meters=METERS, seed=1, mix=parse_mix(MIX), port_base=port_base, shard=(1, 2))
        self.records = {mid: meter_record(self.options, mid) for mid in LISTEN}
        self.stopping = threading.Event()
        self.rounds = 0
        self.counter = 1_000_000  # invocation counters above any the meters saw (wrong secret, wrong key)
        self.errors: list[str] = []
        self.link_down = threading.Event()  # set once meter 12's link is down: then call it too

    def port(self, meter_id: int) -> int:
        return self.options.address(meter_id)[1]

    def client(self, meter_id: int, sap: int, **changes) -> dict:
        c = next(c for c in self.records[meter_id]["clients"] if c["client_sap"] == sap)
        return {**c, **changes}

    def run(self) -> None:
        while not self.stopping.is_set():
            for step in (self.good_read, self.wrong_password, self.wrong_secret, self.wrong_key,
                         self.replayed_counter, self.garbage, self.refused):
                try:
                    step()
                except Exception as e:  # the meters refuse most of these on purpose
                    if step is self.good_read:
                        self.errors.append(repr(e))
            self.rounds += 1
            self.stopping.wait(1.0)

    def session(self, meter_id: int, **kw):
        from meter_core.connection import Transport
        from tests.interop.clients import GuruxSession

        return GuruxSession(self.port(meter_id), Transport.WRAPPER, **kw)

    def good_read(self) -> None:
        from gurux_dlms.objects import GXDLMSClock, GXDLMSData

        s = self.session(18)
        s.open()
        s.read(GXDLMSData("0.0.96.1.0.255"), 2)
        s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
        s.close()

    def attempt(self, meter_id: int, **kw) -> None:
        s = self.session(meter_id, **kw)
        try:
            s.open()
            s.close()
        finally:
            s.sock.close()

    def wrong_password(self) -> None:  # AARQ rejected: associations{client="32", result="rejected"}
        self.attempt(19, client_sap=32, password="not-the-password")

    def next_counter(self) -> int:
        self.counter += 1000
        return self.counter

    def wrong_secret(self) -> None:  # HLS pass 3 fails: security failure "authentication"
        self.attempt(20, secure=self.client(20, 48, hls_secret=os.urandom(16).hex()),
                     invocation_counter=self.next_counter())

    def wrong_key(self) -> None:  # the tag does not verify: security failure "deciphering"
        self.attempt(21, secure=self.client(21, 48, block_key=os.urandom(16).hex()),
                     invocation_counter=self.next_counter())

    def replayed_counter(self) -> None:  # accepted once, then "invocation-counter" every time
        self.attempt(22, secure=self.client(22, 48), invocation_counter=5)

    def garbage(self) -> None:  # a wrapper header of version 9: protocol violation "wrapper"
        with socket.create_connection(("127.0.0.1", self.port(23)), timeout=5) as s:
            s.sendall(b"\x00\x09\x00\x10\x00\x01\x00\x02\xc0\x01")
            s.recv(100)

    def refused(self) -> None:  # connections_refused{reason="link-down"}
        if self.link_down.is_set():
            with socket.create_connection(("127.0.0.1", self.port(LINK_DOWN[-1])), timeout=5) as s:
                s.recv(100)


def _issue_link_down(url: str) -> None:
    """`fleet inject link-down` for LINK_DOWN, as the command does, without starting another Python."""
    from fleet.store import commands

    command = asyncio.run(commands.issue(url, "link-down", first=LINK_DOWN[0], last=LINK_DOWN[-1], share=1.0,
                                         params={}))
    deadline = time.monotonic() + PATIENCE
    while asyncio.run(commands.results(url, command))[0] < 2:  # a worker in each pod
        assert time.monotonic() < deadline, "the fleet's workers did not apply link-down"
        time.sleep(0.2)


def _stop(processes: list[FleetProcess]) -> None:
    """SIGTERM to all at once (each stops its workers and writers), then wait for each; SIGKILL if late."""
    for p in processes:
        if p.proc.poll() is None:
            p.proc.terminate()
    for p in processes:
        try:
            p.proc.wait(30)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()


class Stack:
    def __init__(self, prometheus: Prometheus, database_url: str, head_end: HeadEnd) -> None:
        self.prometheus = prometheus
        self.database_url = database_url
        self.head_end = head_end
        self.deadline = time.monotonic() + PATIENCE

    def series(self, expr: str) -> list[dict]:
        """The series ``expr`` gives once it gives one with a value (a number, not NaN), or what it gives
        when the stack's patience is over."""
        while True:
            got = self.prometheus.query(expr)
            if any(math.isfinite(float(s["value"][1])) for s in got) or time.monotonic() > self.deadline:
                return got
            time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    prometheus_binary = require_tool("prometheus")  # before the database fixtures start a PostgreSQL
    postgres_url = request.getfixturevalue("postgres_url")
    template_database = request.getfixturevalue("template_database")
    folder = tmp_path_factory.mktemp("grafana-queries")
    name = _fresh_database(postgres_url, template_database)
    url = with_database(postgres_url, name)
    base = free_port_base(PORTS, low=21000, high=22000)
    port_base = base - LISTEN[0]  # meter 12 on our first port
    sink_port, dial_metrics, listen_metrics, prometheus_port, sink_metrics = (base + len(LISTEN) + i
                                                                              for i in range(5))
    env = {**os.environ, "TMPDIR": str(folder)}
    fleet = ("--meters", str(METERS), "--mix", MIX)
    pod = (*fleet, "--workers", "1", "--speed", str(SPEED), "--start", START, "--port-base", str(port_base),
           "--database-url", url)
    processes: list[FleetProcess] = []
    prometheus = head_end = None
    try:
        sink = FleetProcess("hes-sink", *fleet, "--listen", f"127.0.0.1:{sink_port}", "--metrics-port",
                            str(sink_metrics), "--database-url", url, env=env)
        processes.append(sink)
        sink.wait_for("hes-sink listening")
        dial = FleetProcess("run", *pod, "--mode", "dial", "--shard", "0/2", "--hes", f"127.0.0.1:{sink_port}",
                            "--dial-idle", "0.3", "--metrics-port", str(dial_metrics),
                            "--spool-dir", str(folder / "spool-dial"), env=env)
        processes.append(dial)
        listen = FleetProcess("run", *pod, "--mode", "listen", "--shard", "1/2", "--metrics-port", str(listen_metrics),
                              "--spool-dir", str(folder / "spool-listen"), env=env)
        processes.append(listen)
        dial.wait_for(rf"{len(DIAL)} meters ready", timeout=90)
        listen.wait_for(rf"{len(LISTEN)} meters ready", timeout=90)
        prometheus = Prometheus(prometheus_binary, folder, prometheus_port,
                                [f"127.0.0.1:{dial_metrics}", f"127.0.0.1:{listen_metrics}",
                                 f"127.0.0.1:{sink_metrics}"])
        head_end = HeadEnd(port_base)
        head_end.start()
        _issue_link_down(url)
        head_end.link_down.set()
        prometheus.wait_ready(targets=3)
        yield Stack(prometheus, url, head_end)
        assert head_end.rounds > 0 and not head_end.errors, head_end.errors[:5]
    finally:
        if head_end is not None:
            head_end.stopping.set()
            head_end.join(15)
        if prometheus is not None:
            prometheus.stop()
        _stop(processes)
        asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


PROMQL = queries(PROMETHEUS_TYPE)
SQL = queries(POSTGRES_TYPE)


@pytest.mark.parametrize("query", PROMQL, ids=lambda q: q.name)
def test_a_prometheus_panel_query_gives_data(stack, query):
    expr = promql(query.text)
    got = stack.series(expr)
    assert got, f"{query.name}: no series for {expr}"
    assert any(math.isfinite(float(s["value"][1])) for s in got), f"{query.name}: only NaN for {expr}: {got}"


@pytest.mark.parametrize("query", SQL, ids=lambda q: q.name)
def test_a_postgresql_panel_query_runs_and_gives_rows(stack, query):
    text = sql(query.text)
    deadline = stack.deadline
    while not (rows := fetch(stack.database_url, text)) and time.monotonic() < deadline:
        time.sleep(0.5)  # pushes settle and are written within seconds; failures after their retries
    assert rows, f"{query.name}: no rows from {text}"


def test_push_success_has_rows_and_the_sink_received_pushes(stack):
    rows = fetch(stack.database_url, "SELECT push_logical_name, sum(pushes_due) AS due, sum(pushes_received) AS got "
                                     "FROM push_success GROUP BY 1")
    assert rows and sum(r["got"] for r in rows) > 0
    failed = fetch(stack.database_url, "SELECT DISTINCT meter_id FROM push_due WHERE outcome = 'FAILED'")
    assert {r["meter_id"] for r in failed} <= set(LINK_DOWN)  # only the meters whose link is down fail


def test_a_misspelt_query_gives_no_data(stack):
    """The checks above can fail: the same query with a metric name that does not exist gives nothing, and a
    wrong column is an error, while the real ones (waited for above) give data."""
    real = next(q for q in PROMQL if "fleet_pushes_total" in q.text)
    assert stack.series(promql(real.text))
    assert stack.prometheus.query(promql(real.text.replace("fleet_pushes_total", "fleet_pushes_totl"))) == []
    import asyncpg

    listing = next(q for q in SQL if "push_due" in q.text)
    with pytest.raises(asyncpg.UndefinedColumnError):
        fetch(stack.database_url, sql(listing.text.replace("d.attempts", "d.attempt")))


def test_the_variable_queries_find_the_fleet_job(stack):
    for dashboard, query in variable_queries():
        metric, label = query.removeprefix("label_values(").removesuffix(")").split(", ")
        values = stack.prometheus.api(f"label/{label}/values", **{"match[]": metric})
        assert values == ["fleet"], (dashboard, query, values)


def test_every_rule_evaluates_and_every_recording_rule_records(stack):
    groups = stack.prometheus.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(recorded_names()) + sum(r["type"] == "alerting" for r in rules) > 0
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    for name in recorded_names():
        assert stack.series(name), f"recording rule {name} recorded nothing"
