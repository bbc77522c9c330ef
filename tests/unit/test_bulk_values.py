"""Values computed in bulk (backfill, ground truth) are bit for bit the values computed one at a time.

`Meter.batch` keeps days of the load model and of supply events, and readings, while a block of rows
is computed; `Meter.readings_many`, `LoadModel.active_energies` and `LoadModel.instant_values` are the
one-pass forms of `readings`, `energy` and `instant`. None of them may change a value: compared here
with `==` on floats and with `repr` on Decimals (same exponent), against the plain paths and against
the load model's jitter written the way it was first written (`random.uniform` on a splitmix64).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import pytest

from fleet.store import truth as fg
from fleet.store.writer import timestamp
from meter_core.codec._util import mix64
from meter_core.device import history
from meter_core.device import powerquality as pq
from meter_core.device.clock import SimClock, day_of
from meter_core.device.datagen import _TWO_PI, INTERVAL, LoadModel, meter_params
from meter_core.device.groundtruth import billing_records, block_records, daily_records
from meter_core.device.identity import FleetConfig, MeterKind
from meter_core.device.meter import Meter
from meter_core.device.state import MeterState

EPOCH = 1767205800.0  # 2026-01-01 00:00 IST
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
END = dt.datetime(2026, 12, 3, tzinfo=IST).timestamp()
KINDS = list(MeterKind)


def meter(meter_id: int, kind: MeterKind, *, drift: float = 0.0, state: MeterState | None = None) -> Meter:
    return Meter(FleetConfig(seed=3, kind=kind), meter_id, epoch_start=EPOCH,
                 clock=SimClock(start=END, drift_ppm=drift), state=state)


def times(n: int = 400) -> list[float]:
    """Period ends, off-grid seconds and fractions over five weeks, in order."""
    out = [END - 35 * 86400 + i * 1800.0 for i in range(35 * 48)]
    out += [END - 35 * 86400 + i * 7919.37 for i in range(n)]
    return sorted(out)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_readings_many_and_batch_equal_readings_one_at_a_time(kind):
    ts = times()
    for meter_id in range(6):
        one = [meter(meter_id, kind).readings(t) for t in ts]  # a fresh meter per pass: no state shared
        assert meter(meter_id, kind).readings_many(ts) == one
        m = meter(meter_id, kind)
        with m.batch():
            assert [m.readings(t) for t in ts] == one
            assert m.readings_many(ts[::-1]) == one[::-1]  # kept readings, any order
        assert m.load._batch is None and len(m._pq.days) <= 3  # nothing kept after the block


def test_readings_many_follows_the_relay_and_the_limiter_as_readings_does():
    ts = times(50)
    for setup in ("relay", "limiter"):
        meters = []
        for _ in range(2):
            m = meter(4, MeterKind.THREE_PHASE)
            if setup == "relay":
                m.set_disconnected(True, -20 * 86400.0)
                m.set_disconnected(False, -19.5 * 86400.0)
            else:
                m.state.load_limits = ((-math.inf, 0), (END - 10 * 86400.0, 300))
                m.state.limit_since = m.state.limit_scanned = END - 10 * 86400.0
            meters.append(m)
        assert meters[0].readings_many(ts) == [meters[1].readings(t) for t in ts]
        assert meters[0].state.disconnections == meters[1].state.disconnections


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_active_energies_equal_energy(kind):
    ts = times()
    lm = LoadModel(meter_params(5, 11, kind, EPOCH))
    expected = [lm.energy(t).active_import_wh for t in ts]
    assert LoadModel(meter_params(5, 11, kind, EPOCH)).active_energies(ts) == expected
    install = lm.params.install_time
    early = [install - 3600.0, install, install + 0.5, install + INTERVAL]
    assert lm.active_energies(early) == [lm.energy(t).active_import_wh for t in early]


def _reference_instant(lm: LoadModel, t: float) -> tuple:
    """`LoadModel.instant` as first written: `random.uniform`-style draws from repeated `mix64`."""
    p = lm.params
    power = lm.active_power(t)
    h = mix64((p.seed * 0x100000001B3) ^ (p.meter_id << 34) ^ (int(t) & 0x3FFFFFFFF))

    def uniform(a: float, b: float) -> float:
        nonlocal h
        h = mix64(h)
        return a + (b - a) * (h / 18446744073709551616.0)

    volts = tuple(p.nominal_voltage * (1.0 + off + uniform(-0.006, 0.006)) for off in p.voltage_offset)
    if p.kind is MeterKind.SINGLE_PHASE:
        volts = (volts[0], 0.0, 0.0)
    currents = [power * s / (v * pf) if s > 0 and v > 0 else 0.0
                for v, s, pf in zip(volts, p.phase_share, p.phase_pf, strict=True)]
    if p.kind is MeterKind.SINGLE_PHASE:
        neutral = currents[0] * (1.0 - uniform(0.0, 0.004))
    else:
        re = im = 0.0
        for i, (c, pf) in enumerate(zip(currents, p.phase_pf, strict=True)):
            angle = -i * _TWO_PI / 3.0 - math.acos(pf)
            re += c * math.cos(angle)
            im += c * math.sin(angle)
        neutral = math.hypot(re, im)
    apparent = lm._s_over_p * power
    return (volts, tuple(currents), p.phase_pf, power / apparent if apparent > 0 else 1.0,
            50.0 + uniform(-0.08, 0.08), power, lm._k * power, apparent, neutral)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_instant_values_are_the_jitter_as_first_written(kind):
    lm = LoadModel(meter_params(2, 9, kind, EPOCH))
    ts = times(300)
    for t in ts:
        assert lm.instant_values(t) == _reference_instant(lm, t)
    with lm.batch():
        assert [lm.instant_values(t) for t in ts] == [_reference_instant(lm, t) for t in ts]
    inst = lm.instant(ts[7])
    assert (inst.voltage, inst.current, inst.frequency, inst.current_neutral) == (
        lm.instant_values(ts[7])[0], lm.instant_values(ts[7])[1], lm.instant_values(ts[7])[4],
        lm.instant_values(ts[7])[8])


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_profile_records_are_the_same_in_a_batch(kind):
    for meter_id, drift in ((1, 0.0), (2, 25.0), (3, 0.0)):
        state = MeterState(demand_periods=((-math.inf, 900),), capture_periods=((-math.inf, 900),)) if meter_id == 3 else None
        plain, bulk = meter(meter_id, kind, drift=drift, state=state), meter(meter_id, kind, drift=drift, state=state)
        c0, c1 = END - 40 * 86400, END
        expected = (list(block_records(plain, c0, c1)), list(daily_records(plain, c0, c1)),
                    list(billing_records(plain, c0, c1)))
        with bulk.batch():
            got = (list(block_records(bulk, c0, c1)), list(daily_records(bulk, c0, c1)),
                   list(billing_records(bulk, c0, c1)))
        assert got == expected
        assert bulk.demand_between(c0, c1) == plain.demand_between(c0, c1)


def test_day_cache_holds_every_day_in_a_block_then_keeps_three():
    cache = pq.DayCache(1, 2, MeterKind.THREE_PHASE)
    with cache.hold():
        with cache.hold():
            for day in range(20000, 20010):
                cache.get(day)
        assert len(cache.days) == 10
    assert list(cache.days) == [20007, 20008, 20009]
    cache.get(20010)
    assert list(cache.days) == [20008, 20009, 20010]


def test_row_decimals_equal_dec():
    d2, d3 = fg._Decimals(2), fg._Decimals(3)
    for v in (0, 1, -1, 7, 10, 999, 1000, -1234, 23012, 10**26, -(10**26), 10**27, -(10**30)):
        for got, places in ((d2[v], 2), (d3[v], 3), (fg._milli(v), 3)):
            want = fg._dec(v, places)
            assert repr(got) == repr(want) and got.as_tuple() == want.as_tuple()
    assert fg._dec(5, 3, False) is None and isinstance(d3[5], Decimal)


def test_capture_rows_equal_the_rows_computed_without_a_batch():
    """capture_rows (in a batch) against its own parts computed one value at a time."""
    for kind in KINDS:
        m = meter(8, kind)
        rows = fg.capture_rows(m, END - 3 * 86400, END, 0.0)
        plain = meter(8, kind)
        phases = tuple(s > 0 for s in plain.load.params.phase_share)
        recs = list(block_records(plain, END - 3 * 86400, END))
        assert rows["instant_profile"] == [fg.instant_row(plain, r.captured_at, phases) for r in recs]
        assert [repr(x) for x in rows["instant_profile"][5]] == [
            repr(x) for x in fg.instant_row(plain, recs[5].captured_at, phases)]
        assert [r[1:3] for r in rows["block_load_profile"]] == [
            (timestamp(r.capture_time), r.interval_seconds) for r in recs]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_has_interruption_agrees_with_day_events(kind):
    configs = [pq.DEFAULT_CONFIG, (*pq.DEFAULT_CONFIG[1:], pq.DEFAULT_CONFIG[0]),  # interruptions drawn last
               tuple(pq.PowerQualityConfig(c.event_type, c.probability_per_day * 4, c.min_duration_s,
                                           c.max_duration_s, c.magnitude_min, c.magnitude_max, c.phases)
                     for c in pq.DEFAULT_CONFIG),
               (pq.PowerQualityConfig("INTERRUPTION", 2.0, 60, 600, 0.0, 0.0, "ALL", enabled=False),
                *pq.DEFAULT_CONFIG[1:])]
    for config in configs:
        seen = set()
        for day in range(20300, 20700):
            events = pq.day_events(1, 3, kind, day, config)
            has = any(e.kind == "INTERRUPTION" for e in events)
            assert pq.has_interruption(1, 3, kind, day, config) == has
            seen.add(has)
        assert seen == ({False} if config is configs[3] else {False, True})


def _demand_by_definition(meter: Meter, start: float, end: float) -> tuple:
    """The maximum demands over the demand periods ending in (start, end], from the definition: each
    period's register difference (`Meter.readings`, one time at a time) over its length, the integration
    period at least; a period that began before ``start`` counted from ``start``; the first maximum wins."""
    caps = meter.demand_captures()
    scale = 3600.0 * meter.energy_divisor
    best = [0.0, math.nan, 0.0, math.nan]  # (as `_DemandCache` starts)
    for _n, stamp, t, t0, period in caps.entries(caps.count(start), caps.count(end)):
        t0 = max(t0, start)
        r0, r1 = meter.readings(t0), meter.readings(t)
        length = max(t - t0, period)
        for i, reg in ((0, 0), (2, 2)):
            value = (r1[reg] - r0[reg]) * scale / length
            if value > best[i]:
                best[i], best[i + 1] = value, stamp
    return tuple(best)


@pytest.mark.parametrize("kind", list(MeterKind))
def test_the_maximum_demand_is_the_definitions_over_months_with_outages_and_programming(kind):
    """`demand_between` (registers computed in bulk) equals the definition, for plain meters over two
    months (days with interruptions among them), and for a meter whose clock was set back, whose demand
    period changed and whose supply an injected failure cut (the general path)."""
    fleet = FleetConfig(seed=3, kind=kind)
    t1 = EPOCH + 200 * 86400
    for meter_id in range(3):
        m = Meter(fleet, meter_id, epoch_start=EPOCH)
        start, end = t1 - 61 * 86400, t1
        assert any(m._interrupted(day) for day in range(day_of(start), day_of(end) + 1)) or meter_id
        d = m.demand_between(start, end)
        assert (d.max_active, d.max_active_stamp, d.max_apparent, d.max_apparent_stamp) == \
            _demand_by_definition(m, start, end)
    m = Meter(fleet, 7, epoch_start=EPOCH)
    m.set_clock(t1 - 20 * 86400 - 5000, now=t1 - 20 * 86400)  # back 83 minutes
    change = t1 - 10 * 86400 + 1000  # (mid-period: the integration restarts)
    m.state.demand_periods = history.changed(m.state.demand_periods, change, 900)
    m.reset_demand_cache()
    for start, end in ((t1 - 30 * 86400, t1), (change - 3600, change + 3600)):
        d = m.demand_between(start, end)
        assert (d.max_active, d.max_active_stamp, d.max_apparent, d.max_apparent_stamp) == \
            _demand_by_definition(m, start, end)
    start, end = t1 - 30 * 86400, t1
    m.change_supply(0.0, now=t1 - 5 * 86400, duration=3600.0)
    m.reset_demand_cache()
    d = m.demand_between(start, end)
    assert (d.max_active, d.max_active_stamp, d.max_apparent, d.max_apparent_stamp) == \
        _demand_by_definition(m, start, end)
