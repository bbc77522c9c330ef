"""The load model: reproducible, energy = integral of the reported power, never decreasing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter_core.device.datagen import DAY, LoadModel, meter_params
from meter_core.device.identity import MeterKind

EPOCH = 1767205800.0  # 2026-01-01 00:00 IST


def model(meter_id: int = 7, kind: MeterKind = MeterKind.THREE_PHASE, seed: int = 1) -> LoadModel:
    return LoadModel(meter_params(seed, meter_id, kind, EPOCH))


@pytest.mark.parametrize("kind", list(MeterKind))
def test_energy_is_the_integral_of_reported_power(kind):
    m = model(kind=kind)
    t0 = EPOCH + 5 * DAY + 1230.0  # on the 10 s grid, so interval edges fall between samples
    n = 2 * 86400
    step = 10.0
    numeric = math.fsum(m.active_power(t0 + (i + 0.5) * step) for i in range(int(n / step))) * step / 3600
    exact = m.energy(t0 + n).active_import_wh - m.energy(t0).active_import_wh
    # Midpoint rule on a smooth curve with steps at interval edges (which the 10 s grid hits exactly).
    assert numeric == pytest.approx(exact, rel=1e-6)


@given(st.lists(st.floats(min_value=EPOCH - 400 * DAY, max_value=EPOCH + 400 * DAY), min_size=2, max_size=50),
       st.integers(0, 10_000), st.sampled_from(list(MeterKind)))
@settings(max_examples=60, deadline=None)
def test_energy_never_decreases(times, meter_id, kind):
    m = model(meter_id, kind)
    values = [m.energy(t) for t in sorted(times)]
    for a, b in zip(values, values[1:]):
        assert b.active_import_wh >= a.active_import_wh
        assert b.apparent_import_vah >= a.apparent_import_vah
        assert b.reactive_q1_varh >= a.reactive_q1_varh
        assert b.apparent_import_vah >= b.active_import_wh


def test_values_are_pure_functions_of_seed_meter_and_time():
    t = EPOCH + 1000.0
    assert model(3).instant(t) == model(3).instant(t)
    assert model(3).energy(t) == model(3).energy(t)
    assert model(3).instant(t) != model(4).instant(t)
    assert model(3, seed=1).energy(t) != model(3, seed=2).energy(t)
    # Reading other times first does not change the answer (no hidden history).
    m = model(3)
    m.energy(t + 86400 * 30)
    m.instant(t - 86400 * 3)
    assert m.energy(t) == model(3).energy(t)


@pytest.mark.parametrize("kind", list(MeterKind))
def test_instant_values_are_plausible_and_consistent(kind):
    m = model(11, kind)
    for i in range(200):
        t = EPOCH + i * 3637.0
        v = m.instant(t)
        assert v.active_power >= 0  # an irrigation pump is off outside its supply hours
        assert 49.8 < v.frequency < 50.2
        assert 0.8 < v.pf_total <= 1.0
        assert v.apparent_power == pytest.approx(math.hypot(v.active_power, v.reactive_power))
        phases = 1 if kind is MeterKind.SINGLE_PHASE else 3
        nominal = 230.0 if kind is not MeterKind.CT_PT else 11000 / math.sqrt(3)
        for p in range(phases):
            assert 0.94 * nominal < v.voltage[p] < 1.04 * nominal
        # Per-phase V * I * pf adds up to the total active power.
        total = sum(v.voltage[p] * v.current[p] * v.pf[p] for p in range(phases))
        assert total == pytest.approx(v.active_power, rel=1e-9)


def test_a_day_of_a_household_looks_like_one():
    m = model(5, MeterKind.SINGLE_PHASE)
    day = EPOCH + 10 * DAY
    kwh = (m.energy(day + DAY).active_import_wh - m.energy(day).active_import_wh) / 1000
    assert 2.0 < kwh < 30.0
    evening = m.active_power(day + 19.5 * 3600)
    small_hours = m.active_power(day + 3.5 * 3600)
    assert evening > small_hours


def test_registers_are_zero_before_installation():
    p = meter_params(1, 9, MeterKind.THREE_PHASE, EPOCH)
    m = LoadModel(p)
    assert p.install_time < EPOCH
    assert m.energy(p.install_time - 10).active_import_wh == 0.0
    assert m.energy(p.install_time + 3600).active_import_wh > 0.0


# -- templates, categories, calendar ------------------------------------------------------------------


def meter_of(category: str, kind: MeterKind):
    for i in range(500):
        p = meter_params(1, i, kind, EPOCH)
        if p.category == category:
            return LoadModel(p)
    raise AssertionError(category)


def day_kwh(m: LoadModel, date) -> float:
    import datetime as dt

    t = dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone(dt.timedelta(minutes=330))).timestamp()
    return (m.energy(t + DAY).active_import_wh - m.energy(t).active_import_wh) / 1000


def test_seasons_day_types_and_holidays_shape_the_load():
    import datetime as dt

    home = meter_of("residential", MeterKind.SINGLE_PHASE)
    summer = sum(day_kwh(home, dt.date(2026, 5, d)) for d in range(4, 9))
    winter = sum(day_kwh(home, dt.date(2026, 1, d)) for d in range(5, 10))
    assert summer > 1.3 * winter  # air-conditioning
    shop = meter_of("commercial", MeterKind.THREE_PHASE)
    assert day_kwh(shop, dt.date(2026, 8, 15)) < 0.4 * day_kwh(shop, dt.date(2026, 8, 14))  # Independence Day
    assert day_kwh(shop, dt.date(2026, 8, 16)) < 0.4 * day_kwh(shop, dt.date(2026, 8, 17))  # a Sunday
    pump = meter_of("agricultural_pump", MeterKind.THREE_PHASE)
    t = dt.datetime(2026, 5, 6, tzinfo=dt.timezone(dt.timedelta(minutes=330))).timestamp()
    assert pump.active_power(t + 3 * 3600) == 0.0 and pump.active_power(t + 12 * 3600) > 0
    assert day_kwh(pump, dt.date(2026, 8, 5)) < 0.5 * day_kwh(pump, dt.date(2026, 5, 5))  # rain in the monsoon


@pytest.mark.parametrize("category, kind, low, high", [
    ("residential", MeterKind.SINGLE_PHASE, 1.5, 45),
    ("commercial", MeterKind.THREE_PHASE, 5, 400),
    ("industrial", MeterKind.CT_PT, 1000, 60000),
])
def test_daily_energy_is_plausible_per_category(category, kind, low, high):
    import datetime as dt

    m = meter_of(category, kind)
    days = [day_kwh(m, dt.date(2026, 1, 1) + dt.timedelta(days=i)) for i in range(0, 365, 5)]
    assert all(low < d < high for d in days if d > 0.1 * max(days)), (min(days), max(days))
    assert len({round(d, 3) for d in days}) > 50  # days differ


@given(st.floats(min_value=EPOCH - 300 * DAY, max_value=EPOCH + 400 * DAY), st.integers(0, 2000),
       st.sampled_from(list(MeterKind)))
@settings(max_examples=40, deadline=None)
def test_energy_is_the_integral_of_power_across_any_day(t, meter_id, kind):
    m = LoadModel(meter_params(1, meter_id, kind, EPOCH))
    t0 = math.floor(t / 10.0) * 10.0
    n = 86400 + 3600
    step = 10.0
    numeric = math.fsum(m.active_power(t0 + (i + 0.5) * step) for i in range(int(n / step))) * step / 3600
    exact = m.energy(t0 + n).active_import_wh - m.energy(t0).active_import_wh
    assert numeric == pytest.approx(exact, rel=1e-4, abs=1e-3)
