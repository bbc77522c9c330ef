"""The rows a meter's profiles hold, as plain values for the ground-truth tables (and backfill).

Rows come from the same row sources that answer DLMS reads (`meter_core.device.profiles`), with the same
rounding, so a row in PostgreSQL equals the entry a head-end reads, value for value. Windows are of
true (simulated) time: each entry belongs to the moment the meter captured it (`meter_core.device.history`),
so a window's rows never change, whatever a head-end does to the meter later. Values are in
SI units as exact integers of the register resolution: energies in Wh (a CT/PT meter counts whole
kWh, so its energies are multiples of 1000), currents in mA, voltages in cV (centivolts), power
factor in thousandths, demands in W/VA. Stamps are meter-clock UTC seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from meter_core.device.meter import Meter
from meter_core.device.profiles import BillingRow, BlockRow, billing_row, block_rows, daily_rows


class BlockRecord(NamedTuple):
    capture_time: float  # the entry's stamp: the meter clock at the end of the block
    interval_seconds: int  # the capture period in force when it was captured
    avg_current_ma: tuple[int, int, int]
    avg_voltage_cv: tuple[int, int, int]
    energy_wh: tuple[int, ...]  # the 8 block energies of `meter_core.device.meter.ENERGY_FIELDS`
    cumulative_wh: tuple[int, ...]  # the 8 cumulative registers at the end of the block
    captured_at: float  # true (simulated) time of the capture


class DailyRecord(NamedTuple):
    capture_time: float
    energy_wh: tuple[int, ...]  # the 8 cumulative registers at midnight
    captured_at: float


class BillingRecord(NamedTuple):
    billing_time: float  # the meter clock at the close (to the hundredth of a second)
    billing_count: int
    energy_wh: tuple[int, ...]
    md_w: int
    md_w_time: float  # NaN when no demand period ended in the billing period
    md_va: int
    md_va_time: float
    average_pf_milli: int
    power_on_minutes: int
    captured_at: float


def _block_record(meter: Meter, row: BlockRow) -> BlockRecord:
    d = meter.energy_divisor
    c, v, r1 = row.currents, row.volts, row.r1
    return BlockRecord(
        row.clock, row.period,
        (round(c[0] * 1000), round(c[1] * 1000), round(c[2] * 1000)),
        (round(v[0] * 100), round(v[1] * 100), round(v[2] * 100)),
        tuple([int((b - a) * d) for a, b in zip(row.r0, r1)]),
        tuple([int(b * d) for b in r1]),
        row.t1,
    )


def block_records(meter: Meter, sim_from: float, sim_to: float) -> Iterator[BlockRecord]:
    """Block-load entries the meter captured in true time (sim_from, sim_to], as DLMS serves them."""
    caps = meter.block_captures()
    for row in block_rows(meter, range(caps.count(sim_from), caps.count(sim_to))):
        yield _block_record(meter, row)


def daily_records(meter: Meter, sim_from: float, sim_to: float) -> Iterator[DailyRecord]:
    """Daily-load entries captured in true time (sim_from, sim_to]."""
    caps = meter.daily_captures()
    div = meter.energy_divisor
    for stamp, readings, t in daily_rows(meter, range(caps.count(sim_from), caps.count(sim_to))):
        yield DailyRecord(stamp, tuple(int(r * div) for r in readings), t)


def billing_records(meter: Meter, sim_from: float, sim_to: float, limit: int = 120) -> Iterator[BillingRecord]:
    """Billing entries closed in true time (sim_from, sim_to], at most the last ``limit`` of them."""
    closures = meter.billing_closures()
    new = closures.upto(sim_to, 0)[0] - closures.upto(sim_from, 0)[0]
    if new <= 0:
        return  # the common case of a writer's window: no close in it
    count, recent = closures.upto(sim_to, min(limit, new) + 1)
    first_number = count - len(recent) + 1
    div = meter.energy_divisor
    for i, close in enumerate(recent):
        if close[1] <= sim_from or (i == 0 and first_number > 1):
            continue  # before the window, or its period's start is not in ``recent``
        start = recent[i - 1][1] if i > 0 else meter.install_time
        row: BillingRow = billing_row(meter, start, close)
        d = row.demand
        yield BillingRecord(
            row.clock, first_number + i, tuple(int(r * div) for r in row.readings),
            round(d.max_active), d.max_active_stamp, round(d.max_apparent), d.max_apparent_stamp,
            round(row.pf * 1000), row.power_on_minutes, close[1],
        )


__all__ = ["BillingRecord", "BlockRecord", "DailyRecord", "billing_records", "block_records", "daily_records"]
