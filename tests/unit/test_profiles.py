"""Profiles over the sans-I/O meter: buffers, selective access, block transfer, consistency rules.

The consistency rules of issue 4: the blocks of a day add up to the daily profile's delta and to the
register delta; the billing profile's maximum demand and its time come from the block demands; the
billing count follows the billing dates. tests/interop reads the same profiles with gurux-dlms and
dlms-cosem over TCP.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter_core.client import GetResult, SetResult
from meter_core.codec.apdu import SelectiveAccess
from meter_core.codec.apdu.codes import DataAccessResult
from meter_core.codec.axdr import CosemDateTime, Data, DataType, data_from_bytes, encode_value
from meter_core.codec.obis import ln
from meter_core.connection import Transport
from meter_core.cosem.buffer import Stream
from meter_core.cosem.build import model_of
from meter_core.device.identity import FleetConfig, MeterKind
from meter_core.device.meter import Meter
from tests.unit.test_meter import EPOCH, Pair

T0 = dt.datetime(2026, 11, 24, 6, 40, tzinfo=dt.UTC).timestamp()  # 12:10 IST
IST = dt.timedelta(minutes=330)
BLOCK, DAILY, BILLING = "1.0.99.1.0.255", "1.0.99.2.0.255", "1.0.98.1.0.255"
CLOCK_DEF = (8, "0.0.1.0.0.255", 2)


def meter_of(kind: MeterKind, meter_id: int = 3) -> Meter:
    return Meter(FleetConfig(seed=7, kind=kind), meter_id, epoch_start=EPOCH)


def reader(kind: MeterKind = MeterKind.THREE_PHASE, max_pdu: int = 0xFFFF, now: float = T0) -> Pair:
    meter = meter_of(kind)
    from meter_core.device.identity import meter_identity

    password = meter_identity(FleetConfig(seed=7, kind=kind), 3).lls_password.encode()
    p = Pair(Transport.WRAPPER, client_sap=32, password=password, max_pdu=max_pdu, meter=meter, now=now)
    p.associate()
    return p


def definition(class_id: int, obis: str, attr: int) -> Data:
    return Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, class_id), Data(DataType.OCTET_STRING, ln(obis)),
                                     Data(DataType.INTEGER, attr), Data(DataType.LONG_UNSIGNED, 0)))


def ist_octets(local: dt.datetime) -> Data:
    return Data(DataType.OCTET_STRING, CosemDateTime.from_datetime(local, deviation=None).to_bytes())


def by_range(local_from: dt.datetime, local_to: dt.datetime, columns=()) -> SelectiveAccess:
    value = Data(DataType.STRUCTURE, (
        definition(*CLOCK_DEF), ist_octets(local_from), ist_octets(local_to),
        Data(DataType.ARRAY, tuple(definition(*c) for c in columns)),
    ))
    return SelectiveAccess(1, encode_value(value))


def by_entry(first: int, last: int, col_from: int = 1, col_to: int = 0) -> SelectiveAccess:
    value = Data(DataType.STRUCTURE, (
        Data(DataType.DOUBLE_LONG_UNSIGNED, first), Data(DataType.DOUBLE_LONG_UNSIGNED, last),
        Data(DataType.LONG_UNSIGNED, col_from), Data(DataType.LONG_UNSIGNED, col_to),
    ))
    return SelectiveAccess(2, encode_value(value))


def read(p: Pair, obis: str, attr: int = 2, selection=None):
    p.client.get(7, obis, attr, selection)
    ev = p.exchange()
    assert isinstance(ev, GetResult), ev
    return ev


def rows(p: Pair, obis: str, selection=None) -> list[tuple]:
    ev = read(p, obis, 2, selection)
    assert ev.value is not None, ev.error
    assert ev.value.tag is DataType.ARRAY
    return [tuple(c.value for c in r.value) for r in ev.value.value]


def stamp(raw: bytes) -> dt.datetime:
    """IST wall time of a 12-byte date-time column."""
    return CosemDateTime.from_bytes(raw).to_datetime()


def today_ist(now: float = T0) -> dt.datetime:
    return (dt.datetime.fromtimestamp(now, dt.UTC).replace(tzinfo=None) + IST).replace(hour=0, minute=0)


# -- buffers and selective access ------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MeterKind), ids=lambda k: k.value)
def test_block_load_by_range_gives_the_blocks_of_the_range(kind):
    p = reader(kind)
    day = today_ist() - dt.timedelta(days=1)
    got = rows(p, BLOCK, by_range(day, day + dt.timedelta(days=1)))
    # blocks end at 00:00 .. 24:00 of the day, inclusive at both ends: 49 entries
    assert [stamp(r[0]) for r in got] == [day + dt.timedelta(minutes=30 * i) for i in range(49)]
    assert read(p, BLOCK, 7).value.value == 2208  # entries_in_use: 46 days of half-hour blocks


def test_whole_block_load_buffer_arrives_in_blocks_and_lazily(monkeypatch):
    from meter_core.session.association import Association

    held = []
    original = Association._next_block

    def watched(self):
        held.append(len(self._long_get.pending))
        return original(self)

    monkeypatch.setattr(Association, "_next_block", watched)
    p = reader(max_pdu=256)
    ev = read(p, BLOCK)
    assert len(ev.value.value) == 2208
    assert len(held) > 200  # many GET blocks
    assert max(held) < 2 * 256  # the meter held a block and a row at a time, never the buffer
    times = [stamp(r.value[0].value) for r in ev.value.value]
    assert all(b - a == dt.timedelta(minutes=30) for a, b in zip(times, times[1:]))
    assert times[-1] == today_ist() + dt.timedelta(hours=12)  # the last block ended at 12:00 IST


def test_entries_and_columns_by_entry():
    p = reader()
    full = rows(p, BLOCK, by_entry(1, 0))
    assert len(full) == 2208
    assert rows(p, BLOCK, by_entry(1, 3)) == full[:3]
    assert rows(p, BLOCK, by_entry(2206, 0)) == full[-3:]
    assert rows(p, BLOCK, by_entry(10, 12, 1, 2)) == [r[:2] for r in full[9:12]]
    assert rows(p, BLOCK, by_entry(5000, 6000)) == []
    assert rows(p, BLOCK, by_entry(9, 3)) == []  # inverted: empty, not an error


def test_range_with_selected_columns_and_empty_or_inverted_ranges():
    p = reader()
    day = today_ist() - dt.timedelta(days=2)
    cols = (CLOCK_DEF, (3, "1.0.1.29.0.255", 2))
    got = rows(p, BLOCK, by_range(day, day + dt.timedelta(hours=2), cols))
    full = rows(p, BLOCK, by_range(day, day + dt.timedelta(hours=2)))
    assert [len(r) for r in got] == [2] * 5
    assert [r[0] for r in got] == [r[0] for r in full]
    assert [r[1] for r in got] == [r[7] for r in full]  # block kWh import is column 8 of the 3ph list
    assert rows(p, BLOCK, by_range(day + dt.timedelta(hours=2), day)) == []
    future = today_ist() + dt.timedelta(days=3)
    assert rows(p, BLOCK, by_range(future, future + dt.timedelta(days=1))) == []


def test_bad_selections_get_data_access_results_and_the_association_goes_on():
    p = reader()
    day = today_ist() - dt.timedelta(days=1)
    unknown = SelectiveAccess(3, encode_value(Data(DataType.NULL_DATA, None)))
    assert read(p, BLOCK, 2, unknown).error == DataAccessResult.SCOPE_OF_ACCESS_VIOLATED
    wrong = SelectiveAccess(1, encode_value(Data(DataType.LONG_UNSIGNED, 5)))
    assert read(p, BLOCK, 2, wrong).error == DataAccessResult.TYPE_UNMATCHED
    not_a_column = by_range(day, day + dt.timedelta(hours=1), [(3, "1.0.1.8.0.255", 2)])
    assert read(p, BLOCK, 2, not_a_column).error == DataAccessResult.OBJECT_UNAVAILABLE
    assert len(rows(p, BLOCK, by_entry(1, 2))) == 2


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=80))
def test_fuzzed_selective_access_never_breaks_the_meter(selector, raw):
    m = meter_of(MeterKind.THREE_PHASE)
    obj = next(o for o in model_of(m).objects if o.ln == ln(BLOCK))
    try:
        params = data_from_bytes(raw)
    except Exception:  # noqa: BLE001 - the association answers type-unmatched before calling select
        return
    got = obj.attributes[1].select(m, None, T0, selector, params)
    if isinstance(got, Stream):
        list(zip(range(10), got.chunks))
    else:
        assert isinstance(got, DataAccessResult)


# -- consistency -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MeterKind), ids=lambda k: k.value)
def test_blocks_of_a_day_add_up_to_the_daily_delta_and_the_register_delta(kind):
    p = reader(kind)
    day = today_ist() - dt.timedelta(days=3)
    blocks = rows(p, BLOCK, by_range(day + dt.timedelta(minutes=30), day + dt.timedelta(days=1)))
    assert len(blocks) == 48
    daily = rows(p, DAILY, by_range(day, day + dt.timedelta(days=1)))
    assert [stamp(r[0]) for r in daily] == [day, day + dt.timedelta(days=1)]
    names = _capture_obis(p, BLOCK)
    kwh_col = names.index("1.0.1.29.0.255")
    daily_cols = _capture_obis(p, DAILY)
    kwh_daily = daily_cols.index("1.0.1.8.0.255")
    block_sum = sum(r[kwh_col] for r in blocks)
    assert block_sum == daily[1][kwh_daily] - daily[0][kwh_daily]
    m = p.meter
    t0 = (day - IST).replace(tzinfo=dt.UTC).timestamp()
    assert block_sum == m.readings(t0 + 86400)[0] - m.readings(t0)[0]
    assert block_sum > 0


def _capture_obis(p: Pair, obis: str) -> list[str]:
    ev = read(p, obis, 3)
    return [".".join(str(b) for b in d.value[1].value) for d in ev.value.value]


def test_billing_profile_md_comes_from_the_block_demands_and_counts_follow():
    now = T0 + 16 * 86400  # 10 December: November's blocks are all still in the 46-day buffer
    p = reader(MeterKind.THREE_PHASE, now=now)
    cols = _capture_obis(p, BILLING)
    bills = rows(p, BILLING)
    assert len(bills) == 7
    md_col = cols.index("1.0.1.6.0.255")  # value, then its capture time
    kwh_col = cols.index("1.0.1.8.0.255")
    last = bills[-1]
    billed_at = stamp(last[0])
    assert (billed_at.day, billed_at.hour, billed_at.minute) == (1, 0, 0)
    month_start = (billed_at.replace(month=billed_at.month - 1) if billed_at.month > 1
                   else billed_at.replace(year=billed_at.year - 1, month=12))
    blocks = rows(p, BLOCK, by_range(month_start + dt.timedelta(minutes=30), billed_at))
    kwh = _capture_obis(p, BLOCK).index("1.0.1.29.0.255")
    demands = [(r[kwh] * 2, stamp(r[0])) for r in blocks]  # 30-min blocks: W = Wh * 2
    best = max(d for d, _ in demands)
    assert last[md_col] == best
    assert stamp(last[md_col + 1]) in [t for d, t in demands if d == best]
    assert sum(r[kwh] for r in blocks) == last[kwh_col] - bills[-2][kwh_col]
    count = p.get(1, "0.0.0.1.0.255", 2).value.value
    later = reader(now=now + 31 * 86400)
    assert later.get(1, "0.0.0.1.0.255", 2).value.value == count + 1
    assert stamp(rows(later, BILLING)[-1][0]) == billed_at.replace(year=billed_at.year + 1, month=1)


def test_capture_period_set_to_15_minutes_restarts_the_block_buffer():
    from tests.unit.test_meter import us_pair

    p = us_pair(meter=meter_of(MeterKind.THREE_PHASE), now=T0)  # programming: the utility-settings client
    p.associate()
    p.client.set(7, BLOCK, 4, Data(DataType.DOUBLE_LONG_UNSIGNED, 900))
    assert p.exchange().result == DataAccessResult.SUCCESS
    assert read(p, BLOCK, 4).value.value == 900
    assert read(p, BLOCK, 8).value.value == 46 * 96
    assert read(p, BLOCK, 7).value.value == 0
    password = p.meter.identity.lls_password.encode()
    later = Pair(Transport.WRAPPER, client_sap=32, password=password, meter=p.meter, now=T0 + 3600)  # a reader
    later.associate()
    got = rows(later, BLOCK)
    assert len(got) == 4 and stamp(got[1][0]) - stamp(got[0][0]) == dt.timedelta(minutes=15)
    for bad, result in ((600, DataAccessResult.OTHER_REASON),):
        p.client.set(7, BLOCK, 4, Data(DataType.DOUBLE_LONG_UNSIGNED, bad))
        assert p.exchange().result == result
    p.client.set(7, BLOCK, 4, Data(DataType.LONG_UNSIGNED, 1800))
    ev = p.exchange()
    assert isinstance(ev, SetResult) and ev.result == DataAccessResult.TYPE_UNMATCHED
    assert read(p, BLOCK, 4).value.value == 900


# -- a drifting clock -------------------------------------------------------------------------------


def drifting_meter(meter_id: int = 3) -> Meter:
    from meter_core.device.clock import SimClock

    return Meter(FleetConfig(seed=7), meter_id, epoch_start=EPOCH, clock=SimClock(start=0.0, drift_ppm=5.0))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10_000), st.floats(EPOCH - 3e7, EPOCH + 3e7))
def test_drift_is_seeded_bounded_and_invertible(meter_id, t):
    m = drifting_meter(meter_id)
    assert abs(m.drift) <= 5e-6
    assert m.drift == drifting_meter(meter_id).drift
    assert m.clock_at_sim(t) - t == pytest.approx(m.drift * (t - EPOCH), abs=1e-6)
    clock = m.meter_clock()
    assert clock.inverse(clock.index(t), m.clock_at_sim(t)) == pytest.approx(t, abs=1e-6)


def test_a_drifting_clock_is_set_by_a_head_end_and_profiles_follow_the_meter_clock():
    m = drifting_meter(11)
    assert m.drift != 0
    assert abs(m.clock(T0) - T0) > 1  # eleven months of a few ppm
    m.set_clock(T0, T0)
    assert m.clock(T0) == pytest.approx(T0)
    later = T0 + 86400
    assert m.clock(later) - later == pytest.approx(m.drift * 86400)
    from meter_core.device.profiles import SOURCES

    block = SOURCES["block"]
    keys = block.keys(m, later)
    # entries are stamped on the meter clock's half hours, whatever the drift
    assert all(block.time_of(m, k, later) % 1800 == 0 for k in keys[-5:])
    row = block.last_row(m, later)
    assert row.clock == block.time_of(m, keys[-1], later)
