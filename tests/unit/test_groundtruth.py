"""Ground-truth rows equal what a head-end reads over DLMS, value for value."""

from __future__ import annotations

import datetime as dt

import pytest

from meter_core.device.groundtruth import billing_records, block_records, daily_records
from meter_core.device.identity import MeterKind
from tests.unit.test_profiles import (
    BILLING,
    BLOCK,
    DAILY,
    IST,
    T0,
    _capture_obis,
    by_range,
    reader,
    rows,
    stamp,
)


def utc(local: dt.datetime) -> float:
    return (local - IST).replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize("kind", list(MeterKind), ids=lambda k: k.value)
def test_block_daily_and_billing_records_match_the_dlms_profiles(kind):
    p = reader(kind, now=T0 + 16 * 86400)
    m, now = p.meter, p.now
    day = (dt.datetime.fromtimestamp(now, dt.UTC).replace(tzinfo=None) + IST).replace(hour=0, minute=0) - dt.timedelta(days=2)
    served = rows(p, BLOCK, by_range(day + dt.timedelta(minutes=30), day + dt.timedelta(days=1)))
    cols = _capture_obis(p, BLOCK)
    recs = list(block_records(m, utc(day), utc(day + dt.timedelta(days=1))))
    assert len(recs) == len(served) == 48
    scale = 1000 if kind is MeterKind.CT_PT else 1
    for rec, row in zip(recs, served):
        assert stamp(row[0]) == dt.datetime.fromtimestamp(rec.capture_time, dt.UTC).replace(tzinfo=None) + IST
        assert row[cols.index("1.0.1.29.0.255")] * scale == rec.energy_wh[0]
        assert row[cols.index("1.0.9.29.0.255")] * scale == rec.energy_wh[2]
        volts = "1.0.12.27.0.255" if kind is MeterKind.SINGLE_PHASE else "1.0.32.27.0.255"
        assert row[cols.index(volts)] == rec.avg_voltage_cv[0]

    daily = list(daily_records(m, utc(day) - 1, utc(day + dt.timedelta(days=1))))
    served = rows(p, DAILY, by_range(day, day + dt.timedelta(days=1)))
    dcols = _capture_obis(p, DAILY)
    assert [r[dcols.index("1.0.1.8.0.255")] * scale for r in served] == [d.energy_wh[0] for d in daily]
    assert sum(r.energy_wh[0] for r in recs) == daily[1].energy_wh[0] - daily[0].energy_wh[0]

    bills = list(billing_records(m, 0, now + 1))
    served = rows(p, BILLING)
    bcols = _capture_obis(p, BILLING)
    assert [b.billing_count for b in bills[-len(served):]] == list(range(bills[-1].billing_count - len(served) + 1,
                                                                         bills[-1].billing_count + 1))
    for b, row in zip(bills[-len(served):], served):
        assert row[bcols.index("1.0.1.6.0.255")] == b.md_w
        assert row[bcols.index("1.0.1.8.0.255")] * scale == b.energy_wh[0]
        assert stamp(row[0]) == dt.datetime.fromtimestamp(b.billing_time, dt.UTC).replace(tzinfo=None) + IST
