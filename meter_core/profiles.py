"""The IS 15959 profiles of a meter, and the registers whose values come from the same rows.

Every row is computed from (seed, meter_id, time) and the meter's small state when it is sent:

- block load: one entry per capture period, stamped with the meter clock at the end of the block;
  block energies are differences of the cumulative register readings at the block's ends (so the
  blocks of a day add up exactly to the day's register delta), average voltage and current are those
  of the block's mean power;
- daily load: the cumulative registers at each midnight (IST);
- billing: at each billing date (00:00 on the 1st of the month), the cumulative registers, the
  maximum demands of the closed month with their times (from the same demand periods the demand
  registers use), the average power factor and the power-on duration of the month;
- instantaneous and name plate: one entry, the objects' values at the moment of the read;
- scaler profiles: one entry, the scaler_unit of each register of the matching profile.

A profile's keys are integers (block number, IST day number, month number) so that entry ``i`` of
the buffer and its capture time are computed in O(1), and a range selection bisects on them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from meter_core.codec._util import mix64
from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import DataType, encode_datetime_at, encode_octets, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.ic import PROFILE_GENERIC
from meter_core.cosem.model import Attribute, CosemObject, ln_attribute, static
from meter_core.cosem.profile import (
    SELECTORS,
    SORT_FIFO,
    Column,
    Selection,
    Stream,
    buffer_stream,
    capture_objects_value,
    encode_u32,
    select,
)
from meter_core.device import history
from meter_core.device import powerquality as pq
from meter_core.device.identity import MeterKind
from meter_core.eventlog import CATEGORY_NAMES, DEPTH, LOG_OBIS, EventLogSource, log_columns, snapshot_columns

if TYPE_CHECKING:
    from meter_core.meter import Meter

IST_S = cat.IST_OFFSET_MINUTES * 60
DAY = 86400
_OCTET12 = b"\x09\x0c"
_UNSPECIFIED_DATETIME = encode_octets(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff")
BLOCK_PROFILE_DAYS = cat.BLOCK_LOAD_PROFILE.depth
ENERGY_INDEX = {
    "active_import": 0, "active_export": 1, "apparent_import": 2, "apparent_export": 3,
    "reactive_q1": 4, "reactive_q2": 5, "reactive_q3": 6, "reactive_q4": 7,
}
_PHASE = {"l1": 0, "l2": 1, "l3": 2}


def clock_stamp(clock_time: float) -> bytes:
    """The encoded date-time (octet-string 12) of a meter-clock time, IST, deviation not specified."""
    if math.isnan(clock_time):
        return _UNSPECIFIED_DATETIME
    return _OCTET12 + encode_datetime_at(clock_time, cat.IST_OFFSET_MINUTES, None, 0)


# -- row sources ---------------------------------------------------------------------------------------


class BlockRow:
    """One block-load entry: stamp (meter clock), register readings at both ends, block averages, and
    the true times the block began and was captured."""

    __slots__ = ("clock", "r0", "r1", "volts", "currents", "t0", "t1", "period")

    def __init__(self, clock, r0, r1, volts, currents, t0=math.nan, t1=math.nan, period=0) -> None:
        self.clock, self.r0, self.r1, self.volts, self.currents = clock, r0, r1, volts, currents
        self.t0, self.t1, self.period = t0, t1, period


def block_averages(meter: Meter, key: int, t0: float, t1: float, e0: float, e1: float) -> tuple[tuple, tuple]:
    """Average phase voltages and currents over the part of a block the meter had supply (pure in meter
    and key), as a meter integrates them: the active energy drawn (``e0``, ``e1``: Wh at the block's
    ends, before any register resolution) over that time, at the block's mean voltage then."""
    p = meter.load.params
    factors, supplied = _event_factors(meter, t0, t1)
    power = (e1 - e0) * 3600.0 / supplied if supplied > 0 else 0.0
    # A block's mean voltage wanders a little around the feeder level: 21 seeded bits per phase.
    h = mix64((p.seed * 0x100000001B3) ^ (p.meter_id << 32) ^ (key & 0xFFFFFFFF))
    nominal = p.nominal_voltage
    volts = []
    currents = []
    for shift, share, pf, offset, factor in zip(_SHIFTS, p.phase_share, p.phase_pf, p.voltage_offset, factors):
        if share <= 0:
            volts.append(0.0)
            currents.append(0.0)
            continue
        wander = (((h >> shift) & 0x1FFFFF) / 2097152.0 - 0.5) * 0.006
        v = nominal * (1.0 + offset + wander) * factor
        volts.append(v)
        currents.append(power * share / (v * pf) if v > 0 else 0.0)
    return tuple(volts), tuple(currents)


_NO_EVENTS = (1.0, 1.0, 1.0)
_BLOCKS_AT_ONCE = 96
_SHIFTS = (0, 21, 42)  # the 21 bits of each phase's wander


def _events_in(meter: Meter, t0: float, t1: float) -> tuple:
    """The supply events of the days of [t0, t1], with the injected power failures as interruptions."""
    d0, d1 = math.floor((t0 + IST_S) / DAY), math.floor((t1 + IST_S) / DAY)  # pq.day_of
    cache = meter._pq
    kept = cache.days.get(d0) if cache is not None else None  # meter.pq_events(d0), from its cache
    events = kept[0] if kept is not None else meter.pq_events(d0)
    for d in range(d0 + 1, d1 + 1):
        events = (*events, *meter.pq_events(d))
    if meter.state.supply:  # injected power failures take the supply off like generated interruptions
        events = (*events, *(pq.PqEvent("INTERRUPTION", s, math.inf if e is None else e, 0.0, -1)
                             for s, e, f in meter.state.supply if f == 0.0))
    return events


def _event_factors(meter: Meter, t0: float, t1: float) -> tuple[tuple[float, float, float], float]:
    """(mean factor on each phase voltage while the supply was on, seconds it was on) over [t0, t1]."""
    events = _events_in(meter, t0, t1)
    # only events overlapping the block move it (min(end, t1) - max(start, t0) > 0)
    for e in events:
        if e.start < t1 and e.end > t0:
            return pq.supplied_voltage_factors(events, t0, t1)
    return _NO_EVENTS, t1 - t0


def off_seconds(meter: Meter, t0: float, t1: float) -> float:
    """Seconds of (t0, t1] the meter had no supply (generated interruptions, injected power failures)."""
    if t1 <= t0:
        return 0.0
    return pq.off_seconds(_events_in(meter, t0, t1), t0, t1)


class BlockLoad:
    """Block load profile: entry n is the n-th block captured since installation (`Meter.block_captures`)."""

    def period(self, meter: Meter) -> int:
        return meter.state.profile_capture_period

    def depth(self, meter: Meter) -> int:
        return BLOCK_PROFILE_DAYS * DAY // self.period(meter)

    def keys(self, meter: Meter, now: float) -> range:
        caps = meter.block_captures()
        last = caps.count(meter.sim(now))
        first = caps.count(meter.state.block_profile_start)
        return range(max(first, last - self.depth(meter)), last)

    def time_of(self, meter: Meter, key: int, now: float) -> float:
        return meter.block_captures().entry(key)[0]

    def rows(self, meter: Meter, keys: range, now: float, assoc) -> Iterator[BlockRow]:
        return block_rows(meter, keys)

    def last_row(self, meter: Meter, now: float) -> BlockRow | None:
        n = meter.block_captures().count(meter.sim(now))
        if n == 0:
            return None
        return next(block_rows(meter, range(n - 1, n)))


def block_rows(meter: Meter, keys: range) -> Iterator[BlockRow]:
    """The block-load entries ``keys`` (ordinals of `Meter.block_captures`), in order."""
    caps = meter.block_captures()
    many = meter.readings_and_energy_many
    entries = caps.entries(keys.start, keys.stop)
    prev_t = prev_r = prev_e = None
    while part := list(itertools.islice(entries, _BLOCKS_AT_ONCE)):
        # the readings of up to a day of blocks at a time, in one pass
        times = [e[2] for e in part]
        fresh = prev_r is None or part[0][3] != prev_t
        if fresh:
            times.insert(0, part[0][3])
        readings, energies = many(times)
        if fresh:
            prev_t, prev_r, prev_e = times[0], readings[0], energies[0]
            del readings[0], energies[0]
        for (_n, stamp, t1, t0, period), r1, e1 in zip(part, readings, energies):
            if t0 != prev_t:  # a restarted period (not for blocks; kept general)
                (prev_r,), (prev_e,) = many((t0,))
            k = round((stamp + IST_S) / period)
            volts, currents = block_averages(meter, k, t0, t1, prev_e, e1)
            yield BlockRow(stamp, prev_r, r1, volts, currents, t0, t1, period)
            prev_t, prev_r, prev_e = t1, r1, e1


class DailyLoad:
    """Daily load profile: entry n is the n-th IST midnight the meter clock reached since installation."""

    depth = cat.DAILY_LOAD_PROFILE.depth

    def keys(self, meter: Meter, now: float) -> range:
        caps = meter.daily_captures()
        last = caps.count(meter.sim(now))
        first = caps.count(meter.state.daily_profile_start)
        return range(max(first, last - self.depth), last)

    def time_of(self, meter: Meter, key: int, now: float) -> float:
        return meter.daily_captures().entry(key)[0]

    def rows(self, meter: Meter, keys: range, now: float, assoc) -> Iterator[tuple]:
        return daily_rows(meter, keys)


def daily_rows(meter: Meter, keys: range) -> Iterator[tuple]:
    """(stamp, readings, capture time) of daily entries ``keys``, in order."""
    for _n, stamp, t, _prev, _period in meter.daily_captures().entries(keys.start, keys.stop):
        yield stamp, meter.readings(t), t


class BillingRow:
    __slots__ = ("clock", "readings", "demand", "pf", "power_on_minutes", "end", "start")

    def __init__(self, clock, readings, demand, pf, power_on_minutes, end=None, start=None) -> None:
        self.clock, self.readings, self.demand, self.pf, self.power_on_minutes = (
            clock, readings, demand, pf, power_on_minutes)
        self.end = end  # true time of the close
        self.start = start  # true time the period began


class Billing:
    """Billing profile: key n is the n-th billing period closed since installation (1-based)."""

    depth = cat.BILLING_PROFILE.depth

    def keys(self, meter: Meter, now: float) -> range:
        count, recent = meter.billing_closures().upto(meter.sim(now), self.depth)
        return range(count - len(recent) + 1, count + 1)

    def time_of(self, meter: Meter, key: int, now: float) -> float:
        count, recent = meter.billing_closures().upto(meter.sim(now), self.depth)
        return recent[key - (count - len(recent) + 1)][0]

    def rows(self, meter: Meter, keys: range, now: float, assoc) -> Iterator[BillingRow]:
        count, recent = meter.billing_closures().upto(meter.sim(now), self.depth + 1)
        first = count - len(recent) + 1
        for key in keys:
            i = key - first
            start = recent[i - 1][1] if i > 0 else meter.install_time
            yield billing_row(meter, start, recent[i])


def billing_row(meter: Meter, start: float, close: tuple[float, float]) -> BillingRow:
    """The billing entry of the period from true time ``start`` to ``close`` ((stamp, true time))."""
    stamp, end = close
    start = max(start, meter.install_time)
    r0, r1 = meter.readings(start), meter.readings(end)
    kwh, kvah = r1[0] - r0[0], r1[2] - r0[2]
    pf = kwh / kvah if kvah > 0 else 1.0
    on = max(0, int((end - start - off_seconds(meter, start, end)) // 60))
    return BillingRow(stamp, r1, meter.demand_between(start, end), pf, on, end, start)


class Live:
    """One entry: the captured objects' values at the moment of the read."""

    def keys(self, meter: Meter, now: float) -> range:
        return range(1)

    def time_of(self, meter: Meter, key: int, now: float) -> float:
        return meter.clock(now)

    def rows(self, meter: Meter, keys: range, now: float, assoc) -> Iterator[tuple]:
        for _ in keys:
            yield assoc, now


SOURCES = {"block": BlockLoad(), "daily": DailyLoad(), "billing": Billing(), "live": Live(), "scaler": Live()}
for _c in range(7):
    SOURCES[f"event{_c}"] = EventLogSource(_c)


# -- columns -------------------------------------------------------------------------------------------


def _register_spec(kind: MeterKind, class_id: int, obis: str) -> cat.RegisterSpec | None:
    for spec in (*cat.INSTANT_REGISTERS, *cat.ENERGY_REGISTERS, *cat.TOD_REGISTERS, *cat.NET_ENERGY_REGISTERS,
                 *cat.BLOCK_REGISTERS, *cat.DURATION_REGISTERS, *cat.DEMAND_REGISTERS):
        if spec.obis == obis and spec.class_id == class_id and kind in spec.kinds:
            return spec
    return None


def _block_value(spec: cat.RegisterSpec):
    encode = int_encoder(spec.type)
    source = spec.source
    if source == "block_net_active":
        return lambda m, row: encode((row.r1[0] - row.r0[0]) - (row.r1[1] - row.r0[1]))
    if source.startswith("block_"):
        i = ENERGY_INDEX[source[len("block_"):]]
        return lambda m, row: encode(row.r1[i] - row.r0[i])
    factor = 10.0 ** -spec.scaler
    what, _, phase = source.rpartition("_")
    i = _PHASE[phase]
    if what == "avg_voltage":
        return lambda m, row: encode(round(row.volts[i] * factor))
    return lambda m, row: encode(round(row.currents[i] * factor))


def _cumulative_value(spec: cat.RegisterSpec, readings_of):
    encode = int_encoder(spec.type)
    if spec.source == "net_active":
        return lambda m, row: encode(readings_of(row)[0] - readings_of(row)[1])
    i = ENERGY_INDEX[spec.source]
    return lambda m, row: encode(readings_of(row)[i])


def _billing_value(kind: MeterKind, class_id: int, obis: str, attribute: int):
    if obis == "1.0.0.1.2.255":
        return lambda m, row: clock_stamp(row.clock)
    spec = _register_spec(kind, class_id, obis)
    if spec is None:
        raise ValueError(f"billing column {obis} has no register for {kind}")
    encode = int_encoder(spec.type)
    if spec.class_id == 4:
        active = spec.source == "md_active_import"
        apparent = spec.source == "md_apparent_import"
        if attribute == 5:
            if not (active or apparent):
                return lambda m, row: _UNSPECIFIED_DATETIME
            return lambda m, row: clock_stamp(
                row.demand.max_active_stamp if active else row.demand.max_apparent_stamp)
        if not (active or apparent):
            return lambda m, row: encode(0)  # the load model exports nothing
        return lambda m, row: encode(round(row.demand.max_active if active else row.demand.max_apparent))
    if spec.source == "period_average_pf":
        return lambda m, row: encode(round(row.pf * 1000))
    if spec.source.startswith("tod_"):
        from meter_core.device import tod

        _, quantity, zone = spec.source.split("_")
        index = (int(zone) - 1) + (tod.ZONES if quantity == "apparent" else 0)
        divisor = 10.0 ** spec.scaler
        return lambda m, row: encode(int(tod.totals_at(m, row.end)[index] // divisor))
    if spec.source == "period_power_on_minutes":
        return lambda m, row: encode(row.power_on_minutes)
    return _cumulative_value(spec, lambda row: row.readings)


def _columns(kind: MeterKind, spec: cat.ProfileSpec, objects: dict[tuple[int, bytes], CosemObject]) -> tuple[Column, ...]:
    out = []
    for class_id, obis, attribute in spec.columns[kind]:
        raw = ln(obis)
        if spec.rows in ("live", "scaler"):
            obj = objects[(class_id, raw)]
            attr = obj.attributes[attribute - 1]
            get = attr.get
            if type(get) is bytes:
                value = (lambda b: lambda m, row: b)(get)
            else:
                value = (lambda g: lambda m, row: g(m, row[0], row[1]))(get)
        elif spec.rows.startswith("event"):
            value = _event_value(kind, class_id, obis)
        elif class_id == 8:
            value = (lambda m, row: clock_stamp(row.clock)) if spec.rows == "block" else (
                lambda m, row: clock_stamp(row[0]))
        elif spec.rows == "block":
            value = _block_value(_register_spec(kind, class_id, obis))
        elif spec.rows == "daily":
            value = _cumulative_value(_register_spec(kind, class_id, obis), lambda row: row[1])
        else:
            value = _billing_value(kind, class_id, obis, attribute)
        out.append(Column(class_id, raw, attribute, value))
    return tuple(out)


def _event_value(kind: MeterKind, class_id: int, obis: str):
    """Columns of an event log: clock, event code, and the snapshot at the event (as served live)."""
    if class_id == 8:
        return lambda m, row: clock_stamp(row.clock)
    if class_id == 1:
        enc = int_encoder(DataType.LONG_UNSIGNED)
        return lambda m, row: enc(row.code)
    spec = _register_spec(kind, class_id, obis)
    encode = int_encoder(spec.type)
    if spec.source in ENERGY_INDEX:
        i = ENERGY_INDEX[spec.source]
        return lambda m, row: encode(m.readings(row.t)[i])
    factor = 10.0 ** -spec.scaler
    name, _, phase = spec.source.rpartition("_")
    if phase in _PHASE:
        field, i = {"current": "current", "voltage": "voltage", "pf": "pf"}[name], _PHASE[phase]
        return lambda m, row: encode(round(getattr(m.instant_at(row.t), field)[i] * factor))
    return lambda m, row: encode(round(getattr(m.instant_at(row.t), spec.source) * factor))


def event_log_object(kind: MeterKind, category: int, objects) -> CosemObject:
    """The event log 0.0.99.98.<category>.255 of meters of ``kind``."""
    spec = cat.ProfileSpec(LOG_OBIS[category], f"Event log, {CATEGORY_NAMES[category]} events", f"event{category}",
                           {kind: log_columns(category, kind)}, depth=DEPTH[category])
    return profile_object(kind, spec, objects)


def event_scaler_profile(kind: MeterKind, objects) -> CosemObject:
    spec = cat.ProfileSpec("1.0.94.91.7.255", "Scaler profile - events", "scaler",
                           {kind: tuple((c, o, 3) for c, o, _a in snapshot_columns(kind))})
    return profile_object(kind, spec, objects)


# -- the profile objects ------------------------------------------------------------------------------


def profile_object(kind: MeterKind, spec: cat.ProfileSpec, objects: dict[tuple[int, bytes], CosemObject]) -> CosemObject:
    """The class 7 object of ``spec`` for meters of ``kind``."""
    source = SOURCES[spec.rows]
    columns = _columns(kind, spec, objects)
    raw_ln = ln(spec.obis)
    clock_def = (8, ln(cat.CLOCK), 2, 0)
    time_columns = frozenset({clock_def, columns[0].key}) if spec.rows != "scaler" else frozenset()

    def buffer(m: Meter, assoc, now: float):
        return Stream(buffer_stream(m, source, source.keys(m, now), columns, now, assoc))

    def buffer_selected(m: Meter, assoc, now: float, selector: int, params):
        chosen = select(m, source, columns, time_columns, now, selector, params)
        if isinstance(chosen, DataAccessResult):
            return chosen
        assert isinstance(chosen, Selection)
        return Stream(buffer_stream(m, source, chosen.keys, chosen.columns, now, assoc))

    if spec.rows == "block":
        capture_period = Attribute(lambda m, a, now: encode_u32(m.state.profile_capture_period),
                                   _set_capture_period)
        entries = Attribute(lambda m, a, now: encode_u32(source.depth(m)))
    else:
        period = {"daily": DAY}.get(spec.rows, 0)
        capture_period = Attribute(encode_u32(period))
        entries = Attribute(encode_u32(spec.depth if spec.rows.startswith(("daily", "billing", "event")) else 1))
    timed = spec.rows in ("block", "daily") or spec.rows.startswith("event")
    sort_object = static(_definition(clock_def if timed else (0, bytes(6), 0, 0)))
    return CosemObject(
        PROFILE_GENERIC, raw_ln, spec.name,
        (
            ln_attribute(raw_ln),
            Attribute(buffer, select=buffer_selected, selectors=SELECTORS, streamed=True),
            Attribute(capture_objects_value(columns)),
            capture_period,
            static(SORT_FIFO, DataType.ENUM),
            sort_object,
            Attribute(lambda m, a, now: encode_u32(len(source.keys(m, now)))),
            entries,
        ),
        (_reset_method(spec.rows), _capture_method(spec.rows)),
    )


def _reset_method(rows: str):
    """reset(): empty the buffer (block and daily load; the others have nothing kept to clear)."""
    if rows not in ("block", "daily"):
        return None
    field = "block_profile_start" if rows == "block" else "daily_profile_start"

    def reset(m: Meter, assoc, params, now: float):
        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        setattr(m.state, field, m.sim(now))
        return ActionResult.SUCCESS, None

    return reset


def _capture_method(rows: str):
    """capture(): the one-entry profiles capture on every read, so capture() succeeds and changes
    nothing. Block and daily entries are computed on their period's boundaries, so an off-period
    capture can't be kept: refused with other-reason."""

    def capture(m: Meter, assoc, params, now: float):
        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        if rows in ("live", "scaler"):
            return ActionResult.SUCCESS, None
        return ActionResult.OTHER_REASON, None

    return capture


def _definition(key):
    from meter_core.codec.axdr import Data

    class_id, raw, attr, index = key
    return Data(DataType.STRUCTURE, (
        Data(DataType.LONG_UNSIGNED, class_id), Data(DataType.OCTET_STRING, raw),
        Data(DataType.INTEGER, attr), Data(DataType.LONG_UNSIGNED, index),
    ))


def _set_capture_period(m: Meter, assoc, value, now: float) -> DataAccessResult:
    """capture_period of the block load profile: 15 or 30 minutes; a change restarts the buffer."""
    if value.tag is not DataType.DOUBLE_LONG_UNSIGNED:
        return DataAccessResult.TYPE_UNMATCHED
    return set_block_period(m, value.value, now)


def set_block_period(m: Meter, seconds: int, now: float) -> DataAccessResult:
    if seconds not in (900, 1800):
        return DataAccessResult.OTHER_REASON
    if seconds != m.state.profile_capture_period:
        state = m.state
        t = m.sim(now)
        state.capture_periods = history.changed(state.capture_periods, t, seconds)
        # Blocks of the old length and the new don't mix: the buffer restarts, as in meters that clear the
        # load survey when its interval changes.
        state.block_profile_start = t
    from meter_core.control import EV_CAPTURE_PERIOD, programmed

    programmed(m, EV_CAPTURE_PERIOD, now)
    return DataAccessResult.SUCCESS


# -- registers fed by the same rows -------------------------------------------------------------------


def block_register_getter(spec: cat.RegisterSpec):
    """Value of a block register (1.0.x.29.0.255, 1.0.x.27.0.255): the last completed block."""
    value = _block_value(spec)
    encode = int_encoder(spec.type)
    source: BlockLoad = SOURCES["block"]  # type: ignore[assignment]

    def get(m: Meter, assoc, now: float) -> bytes:
        row = source.last_row(m, now)
        return encode(0) if row is None else value(m, row)

    return get


def last_billing_clock(m: Meter, now: float) -> float:
    """Meter-clock time of the most recent billing (NaN before the first)."""
    last = m.billing_closures().last_before(m.sim(now))
    return math.nan if last is None else last[0]


def period_start_sim(m: Meter, now: float) -> float:
    """Simulated time the current billing period began (or installation)."""
    return m.billing_period_start(m.sim(now))
