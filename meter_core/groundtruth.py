"""The rows a meter's profiles hold, as plain values for the ground-truth tables (and backfill).

Rows come from the same row sources that answer DLMS reads (`meter_core.profiles`), with the same
rounding, so a row in PostgreSQL equals the entry a head-end reads, value for value. Values are in
SI units as exact integers of the register resolution: energies in Wh (a CT/PT meter counts whole
kWh, so its energies are multiples of 1000), currents in mA, voltages in cV (centivolts), power
factor in thousandths, demands in W/VA. Times are meter-clock UTC seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from meter_core.profiles import IST_S, SOURCES, BillingRow, BlockRow, billing_closures

if TYPE_CHECKING:
    from meter_core.meter import Meter

DAY = 86400


class BlockRecord(NamedTuple):
    capture_time: float
    interval_seconds: int
    avg_current_ma: tuple[int, int, int]
    avg_voltage_cv: tuple[int, int, int]
    energy_wh: tuple[int, ...]  # the 8 block energies of `meter_core.meter.ENERGY_FIELDS`
    cumulative_wh: tuple[int, ...]  # the 8 cumulative registers at the end of the block


class DailyRecord(NamedTuple):
    capture_time: float
    energy_wh: tuple[int, ...]  # the 8 cumulative registers at midnight


class BillingRecord(NamedTuple):
    billing_time: float
    billing_count: int
    energy_wh: tuple[int, ...]
    md_w: int
    md_w_time: float  # NaN when no demand period ended in the billing period
    md_va: int
    md_va_time: float
    average_pf_milli: int
    power_on_minutes: int


def _block_record(meter: Meter, period: int, row: BlockRow) -> BlockRecord:
    d = meter.energy_divisor
    c, v, r1 = row.currents, row.volts, row.r1
    return BlockRecord(
        row.clock, period,
        (round(c[0] * 1000), round(c[1] * 1000), round(c[2] * 1000)),
        (round(v[0] * 100), round(v[1] * 100), round(v[2] * 100)),
        tuple([int((b - a) * d) for a, b in zip(row.r0, r1)]),
        tuple([int(b * d) for b in r1]),
    )


def block_records(meter: Meter, clock_from: float, clock_to: float, now: float) -> Iterator[BlockRecord]:
    """Block-load entries captured in (clock_from, clock_to] (meter clock), computed as DLMS serves them."""
    source = SOURCES["block"]
    period = source.period(meter)
    start = max(meter.install_clock, meter.state.block_profile_start, clock_from)
    k0 = math.floor((start + IST_S) / period) + 1
    k1 = math.floor((min(clock_to, meter.clock(now)) + IST_S) / period)
    for row in source.rows(meter, range(k0, k1 + 1), now, None):
        yield _block_record(meter, period, row)


def daily_records(meter: Meter, clock_from: float, clock_to: float, now: float) -> Iterator[DailyRecord]:
    start = max(meter.install_clock, meter.state.daily_profile_start, clock_from)
    d0 = math.floor((start + IST_S) / DAY) + 1
    d1 = math.floor((min(clock_to, meter.clock(now)) + IST_S) / DAY)
    div = meter.energy_divisor
    for clock, readings in SOURCES["daily"].rows(meter, range(d0, d1 + 1), now, None):
        yield DailyRecord(clock, tuple(int(r * div) for r in readings))


def billing_records(meter: Meter, clock_from: float, clock_to: float, now: float,
                    limit: int = 120) -> Iterator[BillingRecord]:
    """Billing entries closed in (clock_from, clock_to], at most the last ``limit`` of them."""
    from meter_core.profiles import billing_row

    until = min(clock_to, meter.clock(now))
    count, recent = billing_closures(meter, until, limit + 1)
    first_number = count - len(recent) + 1
    div = meter.energy_divisor
    for i, end in enumerate(recent):
        if end <= clock_from:
            continue
        start = recent[i - 1] if i > 0 else meter.install_clock
        row: BillingRow = billing_row(meter, start, end)
        d = row.demand
        yield BillingRecord(
            end, first_number + i, tuple(int(r * div) for r in row.readings),
            round(d.max_active), meter.clock_at_sim(d.max_active_time),
            round(d.max_apparent), meter.clock_at_sim(d.max_apparent_time),
            round(row.pf * 1000), row.power_on_minutes,
        )


__all__ = ["BillingRecord", "BlockRecord", "DailyRecord", "billing_records", "block_records", "daily_records"]
