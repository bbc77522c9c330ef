"""What a meter captured stays captured; what a head-end programmed stays programmed (issue 12).

A hypothesis state machine programs a sans-I/O meter as a head-end does (client 48, HLS, ciphered):
clock sets by random amounts, synchronising a drifting clock, demand and capture period changes, MD
resets, billing date changes, disconnect and reconnect, load limits, injected power failures and
restores, and restarts (the meter built again from its journal), with time moving on by random
steps. After every step:

- no entry served before has changed (unless it rolled out of its buffer or a reset emptied it);
- block, daily and billing stamps only grow, and every served entry equals the ground-truth record
  computed for the window of true time it was captured in (what a worker writes to PostgreSQL);
- a meter built again from its journal serves exactly what the meter it replaces served.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import Data, DataType, data_from_bytes, encode_datetime_at
from meter_core.codec.obis import ln
from meter_core.cosem.build import model_of
from meter_core.device import eventprofiles, logbook
from meter_core.device.clock import SimClock
from meter_core.device.groundtruth import billing_records, block_records, daily_records
from meter_core.device.history import MeterClock
from meter_core.device.identity import FleetConfig, MeterKind
from meter_core.device.meter import Meter
from meter_core.events import Programmed
from meter_core.session import journal
from tests.unit.test_control import act, reader, set_
from tests.unit.test_meter import EPOCH

T0 = dt.datetime(2026, 11, 24, 6, 40, tzinfo=dt.UTC).timestamp()
BLOCK, DAILY, BILLING = "1.0.99.1.0.255", "1.0.99.2.0.255", "1.0.98.1.0.255"
PROFILES = (BLOCK, DAILY, BILLING)
LOGS = tuple(f"0.0.99.98.{c}.255" for c in range(7))
DEPTH = {f"0.0.99.98.{c}.255": logbook.DEPTH[c] for c in range(7)}


def served(meter: Meter, now: float) -> dict[str, list[tuple]]:
    """Every entry of every profile and event log, as the meter serves it (decoded columns)."""
    out = {}
    for obis in (*PROFILES, *LOGS):
        obj = model_of(meter).by_key[(7, ln(obis))]
        raw = obj.attributes[1].get(meter, None, now).materialise()
        out[obis] = [tuple(bytes(c.value) if isinstance(c.value, bytes | bytearray) else c.value for c in r.value)
                     for r in data_from_bytes(raw).value]
    return out


def columns(meter: Meter, obis: str) -> list[str]:
    obj = model_of(meter).by_key[(7, ln(obis))]
    raw = obj.attributes[2].get if type(obj.attributes[2].get) is bytes else obj.attributes[2].get(meter, None, 0)
    return [".".join(str(b) for b in d.value[1].value) for d in data_from_bytes(raw).value]


def utc_of(stamp: bytes) -> float:
    from meter_core.codec.axdr import CosemDateTime
    from meter_core.device.clock import local_to_utc

    return round(local_to_utc(CosemDateTime.from_bytes(stamp)), 2)


class ProgrammedMeter(RuleBasedStateMachine):
    """One meter programmed by a head-end while time goes by; its journal, its served entries."""

    @initialize(kind=st.sampled_from(list(MeterKind)), drift=st.sampled_from([0.0, 5.0, 60.0]),
                meter_id=st.integers(0, 50))
    def start(self, kind, drift, meter_id):
        self.fleet = FleetConfig(seed=11, kind=kind)
        self.kind, self.meter_id, self.drift = kind, meter_id, drift
        self.now = T0
        self.entries: list = []  # the journal: what a worker keeps in PostgreSQL
        self.meter = self._build()
        self.pair = reader(kind, now=self.now, meter=self.meter)
        self.seen = served(self.meter, self.now)
        self.truth: dict[str, dict[float, tuple]] = {"block": {}, "daily": {}, "billing": {}}
        self.truth_events: dict[int, list] = {c: [] for c in range(7)}
        # what a worker wrote before: the events since installation, the entries of 250 days (deeper
        # than any buffer: 46 days of blocks and days, 7 bills)
        for e in eventprofiles.events_between(self.meter, self.meter.install_time, self.now - 250 * 86400):
            self.truth_events[e.category].append((eventprofiles.stamp_of(self.meter, e.time), e.code))
        self.written_to = self.now
        self._write_truth(self.now - 250 * 86400)

    def _build(self) -> Meter:
        m = Meter(self.fleet, self.meter_id, epoch_start=EPOCH, clock=SimClock(start=0.0, drift_ppm=self.drift))
        journal.replay(m, self.entries)
        return m

    # -- what a worker does: keep the journal, write the captures of each window of true time ---------------

    def _keep(self):
        for ev in self.pair.meter_events:
            if type(ev) is Programmed and ev.replay:
                self.entries.append(journal.Operation(ev.sim_time, ev.service, ev.class_id, ev.obis, ev.index,
                                                      ev.value))
        self.pair.meter_events.clear()

    def _write_truth(self, since: float | None = None):
        m, lo, hi = self.meter, self.written_to if since is None else since, self.now
        for r in block_records(m, lo, hi):
            assert r.capture_time not in self.truth["block"], "a block captured twice"
            self.truth["block"][r.capture_time] = r
        for r in daily_records(m, lo, hi):
            assert r.capture_time not in self.truth["daily"], "a day captured twice"
            self.truth["daily"][r.capture_time] = r
        for r in billing_records(m, lo, hi):
            self.truth["billing"][round(r.billing_time, 2)] = r
        for e in eventprofiles.events_between(m, lo, hi):
            self.truth_events[e.category].append((eventprofiles.stamp_of(m, e.time), e.code))
        self.written_to = hi

    def _moment_later(self):
        """A head-end acts a moment after the writer's last window (true time always moves on)."""
        self.now += 0.25
        self.pair.now = self.now

    def _program(self, what):
        self._moment_later()
        result = what(self.pair)
        self._keep()
        return result

    # -- rules ------------------------------------------------------------------------------------------

    @rule(step=st.sampled_from([1.0, 7.0, 59.0, 299.0, 900.0, 1799.0, 3600.0, 6 * 3600.0, 86400.0, 3 * 86400.0]),
          jitter=st.floats(0.0, 1.0))
    def time_passes(self, step, jitter):
        self.now += step + jitter
        self.pair.now = self.now
        self._write_truth()

    @rule(delta=st.one_of(st.sampled_from([-7200.0, -1800.0, -300.0, -5.0, 5.0, 300.0, 1800.0, 3600.0, 90000.0]),
                          st.floats(-4000.0, 4000.0)))
    def set_clock(self, delta):
        self._moment_later()
        target = self.meter.clock(self.now) + delta
        value = Data(DataType.OCTET_STRING, encode_datetime_at(target, 330, None, 0))
        assert self._program(lambda p: set_(p, 8, "0.0.1.0.0.255", 2, value)) == DataAccessResult.SUCCESS

    @rule()
    def synchronise_clock(self):
        self._moment_later()
        value = Data(DataType.OCTET_STRING, encode_datetime_at(self.now, 330, None, 0))
        assert self._program(lambda p: set_(p, 8, "0.0.1.0.0.255", 2, value)) == DataAccessResult.SUCCESS

    @rule(period=st.sampled_from([900, 1800]))
    def demand_period(self, period):
        value = Data(DataType.LONG_UNSIGNED, period)
        assert self._program(lambda p: set_(p, 1, "1.0.0.8.0.255", 2, value)) == DataAccessResult.SUCCESS

    @rule(period=st.sampled_from([900, 1800]))
    def capture_period(self, period):
        value = Data(DataType.DOUBLE_LONG_UNSIGNED, period)
        assert self._program(lambda p: set_(p, 7, BLOCK, 4, value)) == DataAccessResult.SUCCESS

    @rule()
    def md_reset(self):
        params = Data(DataType.LONG_UNSIGNED, 1)
        assert self._program(lambda p: act(p, 9, "0.0.10.0.1.255", 1, params)) == ActionResult.SUCCESS

    @rule(day=st.integers(1, 28), hour=st.integers(0, 23))
    def billing_date(self, day, hour):
        value = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.OCTET_STRING, bytes((hour, 0, 0, 0))),
            Data(DataType.OCTET_STRING, b"\xff\xff\xff" + bytes((day, 0xFF))))),))
        assert self._program(lambda p: set_(p, 22, "0.0.15.0.0.255", 4, value)) == DataAccessResult.SUCCESS

    @precondition(lambda self: self.kind is not MeterKind.CT_PT)
    @rule(method=st.sampled_from([1, 2]))
    def relay(self, method):
        params = Data(DataType.INTEGER, 0)
        assert self._program(lambda p: act(p, 70, "0.0.96.3.10.255", method, params)) == ActionResult.SUCCESS

    @precondition(lambda self: self.kind is not MeterKind.CT_PT)
    @rule(watts=st.integers(100, 30_000))
    def load_limit(self, watts):
        value = Data(DataType.DOUBLE_LONG, watts)
        assert self._program(lambda p: set_(p, 71, "0.0.17.0.0.255", 4, value)) == DataAccessResult.SUCCESS

    @rule(duration=st.one_of(st.none(), st.floats(60.0, 86400.0)))
    def power_failure(self, duration):
        self._moment_later()
        e = journal.Injected(self.now, "power-failure", duration=duration)
        journal.replay(self.meter, [e])
        self.entries.append(e)

    @rule()
    def restore(self):
        self._moment_later()
        e = journal.Injected(self.now, "restore")
        journal.replay(self.meter, [e])
        self.entries.append(e)

    @rule()
    def restart(self):
        """The worker dies and another builds the meter again from its journal."""
        before = served(self.meter, self.now)
        self.meter = self._build()
        assert served(self.meter, self.now) == before
        self.pair = reader(self.kind, now=self.now, meter=self.meter)

    # -- what must hold after every step ------------------------------------------------------------------

    @invariant()
    def nothing_served_before_changed(self):
        now_served = served(self.meter, self.now)
        for obis in PROFILES:
            old = {r[0]: r for r in self.seen[obis]}
            stamps = [utc_of(r[0]) for r in now_served[obis]]
            assert stamps == sorted(set(stamps)), f"{obis}: stamps not strictly increasing"
            for r in now_served[obis]:
                if r[0] in old:
                    assert r == old[r[0]], f"{obis}: the entry of {utc_of(r[0])} changed"
        for obis in LOGS:
            old, new = self.seen[obis], now_served[obis]
            # a log only takes entries at its end, dropping its oldest when full
            kept = max((m for m in range(len(old) + 1) if old[len(old) - m:] == new[:m]), default=0)
            assert kept == len(old) or len(new) == DEPTH[obis] or len(new) >= len(old), (
                f"{obis}: earlier entries changed")
            assert old[len(old) - kept:] == new[:kept]
            if len(new) < DEPTH[obis]:
                assert kept == len(old), f"{obis}: an entry vanished from a log that is not full"
        self.seen = now_served

    @invariant()
    def served_equals_the_ground_truth(self):
        self._write_truth()  # the writer catches up with the clock
        m = self.meter
        now_served = self.seen
        scale = 1000 if self.kind is MeterKind.CT_PT else 1
        cols = columns(m, BLOCK)
        kwh = cols.index("1.0.1.29.0.255")
        volts = cols.index("1.0.12.27.0.255" if self.kind is MeterKind.SINGLE_PHASE else "1.0.32.27.0.255")
        for r in now_served[BLOCK]:
            rec = self.truth["block"].get(utc_of(r[0]))
            assert rec is not None, f"served block {utc_of(r[0])} was never captured"
            assert r[kwh] * scale == rec.energy_wh[0] and r[volts] == rec.avg_voltage_cv[0]
        dcols = columns(m, DAILY)
        dkwh = dcols.index("1.0.1.8.0.255")
        for r in now_served[DAILY]:
            rec = self.truth["daily"].get(utc_of(r[0]))
            assert rec is not None and r[dkwh] * scale == rec.energy_wh[0]
        bcols = columns(m, BILLING)
        bkwh, md = bcols.index("1.0.1.8.0.255"), bcols.index("1.0.1.6.0.255")
        for r in now_served[BILLING]:
            rec = self.truth["billing"].get(utc_of(r[0]))
            assert rec is not None, f"served billing {utc_of(r[0])} was never captured"
            assert r[bkwh] * scale == rec.energy_wh[0] and r[md] == rec.md_w
            if not math.isnan(rec.md_w_time):
                assert utc_of(r[md + 1]) == round(rec.md_w_time, 2)
        for c, obis in enumerate(LOGS):
            got = [(utc_of(r[0]), r[1]) for r in now_served[obis]]
            truth = [(round(s, 2), code) for s, code in self.truth_events[c]]
            assert got == truth[len(truth) - len(got):] if got else True, f"{obis} differs from the ground truth"


    @invariant()
    def the_readme_consistency_rules_hold(self):
        """README: registers never go backwards; the blocks between two daily entries add up to their
        difference; a bill's maximum demand is the highest block demand of its period (when the demand
        integration period is the capture period throughout); billing counts follow one another."""
        m = self.meter
        blocks = sorted(self.truth["block"].values(), key=lambda r: r.captured_at)
        days = sorted(self.truth["daily"].values(), key=lambda r: r.captured_at)
        bills = sorted(self.truth["billing"].values(), key=lambda r: r.captured_at)
        assert all(a.energy_wh[0] <= b.energy_wh[0] for a, b in zip(days, days[1:]))
        assert all(all(e >= 0 for e in b.energy_wh) for b in blocks)
        first = blocks[0].captured_at if blocks else math.inf
        at = [b.captured_at for b in blocks]

        def between(lo: float, hi: float) -> list:  # the blocks captured in (lo, hi]
            return blocks[bisect.bisect_right(at, lo):bisect.bisect_right(at, hi)]

        for d0, d1 in zip(days, days[1:]):
            if d0.captured_at < first:
                continue
            inside = [b.energy_wh[0] for b in between(d0.captured_at, d1.captured_at)]
            assert sum(inside) == d1.energy_wh[0] - d0.energy_wh[0], "a day's blocks do not add up"
        assert [b.billing_count for b in bills] == list(range(bills[0].billing_count, bills[0].billing_count
                                                              + len(bills))) if bills else True
        state = m.state
        changes = [t for t, _ in (*state.demand_periods[1:], *state.capture_periods[1:])]
        resets = set(state.billing_resets)
        starts = {b.captured_at: prev for prev, b in zip(blocks, blocks[1:])}
        for b0, b1 in zip(bills, bills[1:]):
            lo, hi = b0.captured_at, b1.captured_at
            if lo < first or lo in resets or any(lo - 1800 <= t <= hi for t in changes):
                continue  # an MD reset cuts a demand period the block goes on through; a period change
            if state.demand_integration_period != state.profile_capture_period:
                continue
            demands = [round(b.energy_wh[0] * 3600.0 / max(b.interval_seconds, b.captured_at - starts[b.captured_at]
                                                            .captured_at))
                       for b in between(lo, hi) if b.captured_at in starts]
            assert b1.md_w == max(demands, default=0), "a bill's maximum demand is not its highest block demand"


TestProgrammedMeter = ProgrammedMeter.TestCase
# No explain phase: on a failure it replays the shrunk example many times over, which took longer than the
# suite's per-test timeout and hid the counterexample behind a timeout.
TestProgrammedMeter.settings = settings(max_examples=10, stateful_step_count=8, deadline=None,
                                        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                                        suppress_health_check=[HealthCheck.too_slow])


# -- the clock and the capture rule, one case at a time ------------------------------------------------


def programmed(kind=MeterKind.THREE_PHASE, drift=0.0):
    m = Meter(FleetConfig(seed=11, kind=kind), 4, epoch_start=EPOCH, clock=SimClock(start=0.0, drift_ppm=drift))
    return m


def block_stamps(m: Meter, t0: float, t1: float) -> list[tuple[float, float]]:
    caps = m.block_captures()
    return [(stamp, t) for _, stamp, t, _, _ in caps.entries(caps.count(t0), caps.count(t1))]


def test_a_clock_set_forward_captures_once_at_the_set_and_skips_the_blocks_it_jumped():
    m = programmed()  # no drift: the meter clock is true time until set
    t = T0 + 600  # 12:20 IST
    m.set_clock(m.clock(t) + 3600, t)  # 13:20
    got = block_stamps(m, T0 - 1800, T0 + 7200)
    assert got[0] == (T0 - 600, T0 - 600)  # 12:00
    assert got[1] == (T0 + 3000, t)  # 13:00, captured at the set: 12:30 and 13:00's block have no entry
    assert got[2] == (T0 + 4800, T0 + 1200)  # 13:30 on the clock, 10 minutes of true time later


def test_a_clock_set_back_makes_a_long_block_and_never_repeats_a_stamp():
    m = programmed()
    t = T0 + 600  # 12:20 IST
    m.set_clock(m.clock(t) - 3600, t)  # 11:20
    got = block_stamps(m, T0 - 1800, T0 + 4 * 3600)
    stamps = [s for s, _ in got]
    assert stamps == sorted(set(stamps))
    assert got[0] == (T0 - 600, T0 - 600)  # 12:00
    assert got[1] == (T0 + 1200, T0 + 4800)  # 12:30 once the clock shows it again: a block of 80 minutes


def test_setting_the_clock_changes_nothing_captured_before_the_set():
    m = programmed(MeterKind.CT_PT, drift=5.0)
    before = served(m, T0)
    m.set_clock(m.clock(T0) + 300, T0)
    assert served(m, T0) == before
    m.set_clock(m.clock(T0 + 1) - 300, T0 + 1)
    assert served(m, T0 + 1) == before


def test_an_md_reset_while_a_clock_set_back_shows_an_earlier_time_is_stamped_after_the_last_close():
    m = programmed(MeterKind.CT_PT)
    t = T0 + 100.5
    m.md_reset(t)
    m.set_clock(m.clock(t + 0.25) - 2925.13, t + 0.25)
    m.md_reset(t + 0.5)
    _, closes = m.billing_closures().upto(t + 1, 3)
    first, second = closes[-2][0], closes[-1][0]
    assert first == math.floor(m.clock(t) * 100) / 100  # stamped with the clock, to the hundredth
    assert second == pytest.approx(first + 0.01)  # the clock says 48 minutes earlier: a hundredth after


def test_the_counterexample_hypothesis_found_holds():
    """The falsifying example of a CI run (2026-12-07): two MD resets around a backward clock set."""
    state = ProgrammedMeter()
    state.start(kind=MeterKind.CT_PT, meter_id=0, drift=0.0)
    state.capture_period(period=1800)
    state.md_reset()
    state.set_clock(delta=-2925.1347555629254)
    state.md_reset()
    state.nothing_served_before_changed()
    state.served_equals_the_ground_truth()
    state.the_readme_consistency_rules_hold()
    state.teardown()


def test_the_clock_is_one_piece_per_set_and_each_piece_is_increasing():
    c = MeterClock(1e-5, EPOCH, ((T0, 100.0, T0), (T0 + 10, -50.0, T0 + 10)))
    assert c.at(T0 - 1) == pytest.approx(T0 - 1 + 1e-5 * (T0 - 1 - EPOCH))
    assert c.at(T0) == T0 + 100.0 and c.at(T0 + 10) == T0 - 40.0
    assert c.inverse(1, c.at(T0 + 5)) == pytest.approx(T0 + 5)


def test_a_demand_period_change_leaves_the_past_billing_maximum_demand_as_it_was():
    m = programmed()
    t = T0 + 20 * 86400
    before = served(m, t)[BILLING]
    from meter_core.device.history import changed

    m.state.demand_periods = changed(m.state.demand_periods, t, 900)
    m.reset_demand_cache()
    assert served(m, t)[BILLING] == before


def test_a_billing_row_is_computed_once_per_meter_object_and_served_the_same():
    """Billing rows of closed periods are kept by the meter object (`Meter.captured`): a second read
    computes no maximum demand again and serves the same bytes; an MD reset adds a row, the others stay."""
    from meter_core.device import meter as meter_mod

    m = programmed(MeterKind.THREE_PHASE)
    t = T0 + 40 * 86400
    first = served(m, t)[BILLING]
    assert m._captured and len(m._captured) == len(first)
    calls = []
    original = meter_mod.Meter.demand_between
    meter_mod.Meter.demand_between = lambda self, *a: calls.append(a) or original(self, *a)
    try:
        assert served(m, t)[BILLING] == first and not calls
        m.md_reset(t)
        after = served(m, t + 1)[BILLING]
        assert len(calls) == 1  # the new row only
    finally:
        meter_mod.Meter.demand_between = original
    kept = first[1:] if len(after) == len(first) else first  # a full buffer drops its oldest row
    assert after[:-1] == kept and after[-1] not in first
