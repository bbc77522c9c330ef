"""A fleet worker programmed by a head-end at random, restarted at random: nothing it served changes, and
what it serves is what PostgreSQL holds (issue 12).

A hypothesis state machine runs a real worker (uvloop, sockets, the journal, the ground-truth writer) on a
real database, at a speed of 1, 60 or 900, for one meter of each kind, its clock drifting or not. Rules,
in any order: time passes; a head-end (our client, as client 48: HLS, ciphered, over TCP) sets the clock
by random amounts, synchronises it, changes the demand and capture periods, resets MD, moves the billing
date, disconnects and reconnects, sets a load limit; an operator injects a power failure or a restore
(`fleet inject`'s table); the worker stops and another starts on the same database and clock. After
every step, read as the meter reader (client 32):

- no entry of the block, daily and billing profiles and the seven event logs served before has changed
  (a log's oldest entries may roll out; a reset or a period change empties a buffer);
- every served entry the writer has reached (its capture time is at or before `capture_progress`) is in
  its table, every mapped column equal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import time
import uuid
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from fleet.tools.export import meter_record
from meter_core.client import ActionDone, Associated, ClientSecurity, ClientSettings, GetResult, SetResult
from meter_core.codec.axdr import CosemDateTime, Data, DataType, encode_datetime_at
from meter_core.connection import Transport
from meter_core.cosem.ic.profile_generic import _register_spec
from meter_core.device import eventprofiles, logbook
from meter_core.device.clock import local_to_utc
from meter_core.device.identity import MeterKind
from tests.conftest import _admin, _fresh_database, with_database
from tests.database import fetch
from tests.servers import Head, counter_to_use, running_meters, wait_for

pytestmark = pytest.mark.integration

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
START = dt.datetime(2026, 11, 30, 22, 0, tzinfo=IST).timestamp()  # two hours before a billing date
BLOCK, DAILY, BILLING = "1.0.99.1.0.255", "1.0.99.2.0.255", "1.0.98.1.0.255"
LOGS = tuple(f"0.0.99.98.{c}.255" for c in range(7))


def utc_of(raw: bytes) -> float:
    return round(local_to_utc(CosemDateTime.from_bytes(bytes(raw))), 2)


def ts(row_time: dt.datetime) -> float:
    return round(row_time.timestamp(), 2)


# -- served columns -> table columns ----------------------------------------------------------------------

_BLOCK_COLUMN = {"block_active_import": "active_import_wh", "block_active_export": "active_export_wh",
                 "block_apparent_import": "apparent_import_vah", "block_apparent_export": "apparent_export_vah",
                 "block_reactive_q1": "reactive_q1_varh", "block_reactive_q2": "reactive_q2_varh",
                 "block_reactive_q3": "reactive_q3_varh", "block_reactive_q4": "reactive_q4_varh",
                 "block_net_active": "net_active_wh"}
_CUMULATIVE_COLUMN = {"active_import": "active_import_wh", "active_export": "active_export_wh",
                      "apparent_import": "apparent_import_vah", "apparent_export": "apparent_export_vah",
                      "reactive_q1": "reactive_q1_varh", "reactive_q2": "reactive_q2_varh",
                      "reactive_q3": "reactive_q3_varh", "reactive_q4": "reactive_q4_varh", "net_active": "net_active_wh"}


def _column_of(kind: MeterKind, class_id: int, obis: str, attribute: int, table: str) -> tuple[str, int] | None:
    """(table column, scaler) a served column maps to; None if the table does not keep it."""
    if class_id == 8:
        return {"block": "capture_time", "daily": "capture_time"}[table], 0
    if obis == "1.0.0.1.2.255":
        return "billing_time", 0
    if class_id == 1 and obis.startswith("0.0.96.11."):
        return "event_code", 0
    spec = _register_spec(kind, class_id, obis)
    if spec is None:
        return None
    source = spec.source
    if table == "block":
        name = _BLOCK_COLUMN.get(source) or (source if source.startswith("avg_") else None)
        return (name, spec.scaler) if name else None
    if table == "daily":
        return (_CUMULATIVE_COLUMN[source], spec.scaler) if source in _CUMULATIVE_COLUMN else None
    if table == "billing":
        if class_id == 4:
            column = {"md_active_import": "md_active_import", "md_apparent_import": "md_apparent_import"}.get(source)
            if column is None:
                return None
            return (column + ("_w" if "active" in column else "_va"), spec.scaler) if attribute == 2 else (
                column + "_time", 0)
        if source == "period_average_pf":
            return "average_power_factor", spec.scaler
        if source == "period_power_on_minutes":
            return "power_on_minutes", 0
        if source == "net_active":
            return None  # the billing table keeps no net energy
        return (_CUMULATIVE_COLUMN[source], spec.scaler) if source in _CUMULATIVE_COLUMN else None
    # event logs: the snapshot at the event (a single-phase meter's power factor is its phase's)
    if source in _CUMULATIVE_COLUMN:
        return _CUMULATIVE_COLUMN[source], spec.scaler
    if source == "pf_total":
        return "power_factor_l1", spec.scaler
    name, _, phase = source.rpartition("_")
    return {"current": "current_", "voltage": "voltage_", "pf": "power_factor_"}[name] + phase, spec.scaler


def same(served, stored, scaler: int) -> bool:
    if isinstance(served, bytes | bytearray):  # a date-time
        return stored is None if bytes(served)[:2] == b"\xff\xff" else utc_of(served) == ts(stored)
    if stored is None:
        return served == 0
    return Decimal(served).scaleb(scaler) == Decimal(stored)


class FleetHistory(RuleBasedStateMachine):
    postgres_url: str = ""
    template: str = ""

    @initialize(kind=st.sampled_from(list(MeterKind)), speed=st.sampled_from([1.0, 60.0, 900.0]),
                drift=st.sampled_from([0.0, 5.0]))
    def start(self, kind, speed, drift):
        self.kind, self.speed, self.drift = kind, speed, drift
        name = _fresh_database(self.postgres_url, self.template)
        self.url = with_database(self.postgres_url, name)
        self.db_name = name
        self.sim_t0 = time.monotonic()
        self.spool = f"/tmp/fleet-history-{uuid.uuid4().hex[:8]}"
        self.ctx = None
        self._start_worker()
        self.seen: dict[str, list] = {}
        self.command = 0

    def _start_worker(self):
        self.ctx = running_meters(1, kind=self.kind, database_url=self.url, sim_start=START, sim_t0=self.sim_t0,
                                  speed=self.speed, drift_ppm=self.drift, spool_dir=self.spool)
        self.fleet = self.ctx.__enter__()
        self.port = self.fleet.port(0)
        self.client48 = next(c for c in meter_record(self.fleet.options, 0)["clients"] if c["client_sap"] == 48)

    def teardown(self):
        if self.ctx is not None:
            self.ctx.__exit__(None, None, None)
            self.ctx = None
        if getattr(self, "db_name", None):
            asyncio.run(_admin(self.postgres_url, f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))

    # -- a head-end and an operator --------------------------------------------------------------------------

    def _program(self, request, expect):
        """One SET or ACTION by a head-end; a meter without supply refuses the connection (nothing done)."""
        try:
            security = ClientSecurity.from_onboarding(self.client48, counter_to_use(self.port))
            h = Head(self.port, ClientSettings(client_sap=48, transport=Transport.WRAPPER, security=security))
        except (ConnectionError, AttributeError):
            assert self._dark(), "the meter refused a head-end while it had supply"
            return
        try:
            h.client.associate()
            if h.until(Associated) is None:
                assert self._dark(), "the meter hung up on a head-end while it had supply"
                return
            request(h.client)
            ev = h.until(expect)
            assert ev.result == 0, ev
        finally:
            h.close()

    def _dark(self) -> bool:
        return self.fleet.call(lambda: self.fleet.worker.admit(0) == "no-supply")

    def _set(self, class_id, obis, attr, value: Data):
        self._program(lambda c: c.set(class_id, obis, attr, value), SetResult)

    def _act(self, class_id, obis, method, params: Data):
        self._program(lambda c: c.action(class_id, obis, method, params), ActionDone)

    def _inject(self, action: str, params: dict):
        async def issue():
            conn = await asyncpg.connect(self.url)
            try:
                return await conn.fetchval("INSERT INTO fleet_commands (action, params) VALUES ($1, $2::jsonb) "
                                           "RETURNING command_id", action, json.dumps(params))
            finally:
                await conn.close()

        cid = asyncio.run(issue())
        wait_for(f"command {cid} applied", lambda: fetch(self.url, "SELECT 1 FROM fleet_command_results "
                                                                   "WHERE command_id = $1", cid))

    # -- rules ------------------------------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.2, 0.7, 1.5, 3.0]))
    def time_passes(self, seconds):
        time.sleep(seconds)

    @rule(delta=st.sampled_from([-3600, -301, -5, 5, 299, 1801, 7200]))
    def set_clock(self, delta):
        shown = self.fleet.call(lambda: self.fleet.worker.meters.for_rows(0).clock(time.monotonic()))
        self._set(8, "0.0.1.0.0.255", 2, Data(DataType.OCTET_STRING, encode_datetime_at(shown + delta, 330, None, 0)))

    @rule()
    def synchronise_clock(self):
        value = Data(DataType.OCTET_STRING, encode_datetime_at(self.fleet.sim_now(), 330, None, 0))
        self._set(8, "0.0.1.0.0.255", 2, value)

    @rule(period=st.sampled_from([900, 1800]))
    def demand_period(self, period):
        self._set(1, "1.0.0.8.0.255", 2, Data(DataType.LONG_UNSIGNED, period))

    @rule(period=st.sampled_from([900, 1800]))
    def capture_period(self, period):
        self._set(7, BLOCK, 4, Data(DataType.DOUBLE_LONG_UNSIGNED, period))

    @rule()
    def md_reset(self):
        self._act(9, "0.0.10.0.1.255", 1, Data(DataType.LONG_UNSIGNED, 1))

    @rule(day=st.integers(1, 28), hour=st.integers(0, 23))
    def billing_date(self, day, hour):
        self._set(22, "0.0.15.0.0.255", 4, Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.OCTET_STRING, bytes((hour, 0, 0, 0))),
            Data(DataType.OCTET_STRING, b"\xff\xff\xff" + bytes((day, 0xFF))))),)))

    @precondition(lambda self: self.kind is not MeterKind.CT_PT)
    @rule(method=st.sampled_from([1, 2]))
    def relay(self, method):
        self._act(70, "0.0.96.3.10.255", method, Data(DataType.INTEGER, 0))

    @precondition(lambda self: self.kind is not MeterKind.CT_PT)
    @rule(watts=st.sampled_from([300, 2000, 20000]))
    def load_limit(self, watts):
        self._set(71, "0.0.17.0.0.255", 4, Data(DataType.DOUBLE_LONG, watts))

    @rule(duration=st.sampled_from([None, 600.0, 7200.0]))
    def power_failure(self, duration):
        self._inject("power-failure", {} if duration is None else {"duration_s": duration})

    @rule()
    def restore(self):
        self._inject("restore", {})

    @rule()
    def restart(self):
        self.ctx.__exit__(None, None, None)
        self.ctx = None
        self._start_worker()

    # -- what must hold ---------------------------------------------------------------------------------------

    def _served(self) -> dict[str, list[tuple]]:
        ident = self.fleet.identity(0)
        try:
            h = Head(self.port, ClientSettings(client_sap=32, password=ident.lls_password.encode(),
                                               transport=Transport.WRAPPER))
        except ConnectionError:
            return {}
        out = {}
        try:
            h.client.associate()
            try:
                if h.until(Associated) is None:
                    return {}  # no supply: the meter refuses connections
            except ConnectionError:
                return {}
            for obis in (BLOCK, DAILY, BILLING, *LOGS):
                h.client.get(7, obis, 3)
                columns = h.until(GetResult).value.value
                h.client.get(7, obis, 2)
                rows = h.until(GetResult).value.value
                out[obis] = ([(c.value[0].value, ".".join(str(b) for b in c.value[1].value), c.value[2].value)
                              for c in columns],
                             [tuple(bytes(v.value) if v.tag is DataType.OCTET_STRING else v.value for v in r.value)
                              for r in rows])
        finally:
            h.close()
        return out

    @invariant()
    def served_entries_never_change_and_equal_the_database(self):
        served = self._served()
        if not served:
            return
        for obis, (_, rows) in served.items():
            old = self.seen.get(obis, [])
            if obis in (BLOCK, DAILY, BILLING):
                before = {r[0]: r for r in old}
                for r in rows:
                    if r[0] in before:
                        assert r == before[r[0]], f"{obis}: the entry of {utc_of(r[0])} changed"
            else:
                kept = next(k for k in range(len(old), -1, -1) if old[len(old) - k:] == rows[:k])
                full = len(rows) == logbook.DEPTH[LOGS.index(obis)]
                assert kept == len(old) or full, f"{obis}: an entry served before changed"
            self.seen[obis] = rows
        self._compare_with_database(served)

    def _compare_with_database(self, served):
        progress = fetch(self.url, "SELECT captured_until FROM capture_progress")
        if not progress:
            return
        until = min(r["captured_until"] for r in progress)

        def captured():  # what the meter captured up to the writer's progress, by stamp (computed in the worker)
            m = self.fleet.worker.meters.for_rows(0)
            out = {}
            for name, caps in (("block", m.block_captures()), ("daily", m.daily_captures())):
                out[name] = {round(stamp, 2) for _, stamp, t, _, _ in caps.entries(0, caps.count(until))
                             if t > START}  # the run writes from its start
            out["billing"] = {round(s, 2) for s, t in m.billing_closures().upto(until, 20)[1] if t > START}
            out["events"] = [(float(math.floor(m.clock_at_sim(e.time))), e.code, e.category)
                             for e in eventprofiles.events_between(m, START, until)]
            return out

        reached = self.fleet.call(captured)
        for obis, table, name in ((BLOCK, "block_load_profile", "block"), (DAILY, "daily_load_profile", "daily"),
                                  (BILLING, "billing_profile", "billing")):
            columns, rows = served[obis]
            mapped = [_column_of(self.kind, c, o, a, name) for c, o, a in columns]
            key = "billing_time" if name == "billing" else "capture_time"
            stored = {ts(r[key]): r for r in fetch(self.url, f"SELECT * FROM {table} WHERE meter_id = 0")}
            for row in rows:
                stamp = utc_of(row[0])
                if stamp not in reached[name]:
                    continue  # the writer has not reached it yet
                db = stored.get(stamp)
                assert db is not None, f"{table}: the entry of {stamp} served is not in the database"
                for value, m in zip(row, mapped):
                    if m is not None:
                        assert same(value, db[m[0]], m[1]), f"{table} {stamp}: {m[0]} served {value}, stored {db[m[0]]}"
        events = fetch(self.url, "SELECT * FROM event_logs WHERE meter_id = 0 ORDER BY occurred_at")
        by_key: dict = {}
        for r in events:
            by_key.setdefault((ts(r["occurred_at"]), r["event_code"], r["category"]), []).append(r)
        names = logbook.CATEGORY_NAMES
        done = {(s, code, names[c]) for s, code, c in reached["events"]}
        for c, obis in enumerate(LOGS):
            columns, rows = served[obis]
            mapped = [_column_of(self.kind, cl, o, a, "events") if cl != 8 else None for cl, o, a in columns]
            for row in rows:
                k = (utc_of(row[0]), row[1], names[c])
                if k not in done:
                    continue
                assert k in by_key, f"event {k} served is not in the database"
                db = by_key[k][0]
                for value, m in zip(row[2:], mapped[2:]):
                    if m is not None:
                        assert same(value, db[m[0]], m[1]), f"event {k}: {m[0]} served {value}, stored {db[m[0]]}"


@pytest.mark.timeout(600)
def test_programming_and_restarts_never_change_what_was_served_and_the_database_agrees(postgres_url,
                                                                                       template_database):
    FleetHistory.postgres_url, FleetHistory.template = postgres_url, template_database
    # no shrinking: each step runs a real fleet for seconds; the failing sequence is printed as found
    # (FLEET_HISTORY_EXAMPLES=50 for a deeper run than CI's)
    run_state_machine_as_test(FleetHistory, settings=settings(
        max_examples=int(os.environ.get("FLEET_HISTORY_EXAMPLES", "4")), stateful_step_count=6, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
