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

from meter_core.codec._util import mix64
from meter_core.codec.apdu.codes import DataAccessResult
from meter_core.codec.axdr import DATETIME_HEAD, DATETIME_NOT_SPECIFIED, encode_datetime_at, encode_octets
from meter_core.device import history, logbook
from meter_core.device import powerquality as pq
from meter_core.device.clock import DAY, IST_OFFSET_MINUTES, IST_S
from meter_core.device.eventprofiles import EventLogSource
from meter_core.device.meter import Meter

# Depths of the buffers (entries a head-end can read back), block load in days; the catalogue's profile
# specs (`meter_core.cosem.is15959`) declare the same.
BLOCK_PROFILE_DAYS = 46
DAILY_PROFILE_DEPTH = 46
BILLING_PROFILE_DEPTH = 7

_UNSPECIFIED_DATETIME = encode_octets(DATETIME_NOT_SPECIFIED)
ENERGY_INDEX = {
    "active_import": 0, "active_export": 1, "apparent_import": 2, "apparent_export": 3,
    "reactive_q1": 4, "reactive_q2": 5, "reactive_q3": 6, "reactive_q4": 7,
}


def clock_stamp(clock_time: float) -> bytes:
    """The encoded date-time (octet-string 12) of a meter-clock time, IST, deviation not specified."""
    if math.isnan(clock_time):
        return _UNSPECIFIED_DATETIME
    return DATETIME_HEAD + encode_datetime_at(clock_time, IST_OFFSET_MINUTES, None, 0)


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
        events = (*events, *_injected_failures(meter))
    return events


def _injected_failures(meter: Meter) -> tuple:
    return tuple(pq.PqEvent("INTERRUPTION", s, math.inf if e is None else e, 0.0, -1)
                 for s, e, f in meter.state.supply if f == 0.0)


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
    d0, d1 = math.floor((t0 + IST_S) / DAY), math.floor((t1 + IST_S) / DAY)  # pq.day_of
    if d1 - d0 < 3:
        return pq.off_seconds(_events_in(meter, t0, t1), t0, t1)
    # a long span (a billing period): the days with an interruption are found without drawing every
    # day's events (an interruption starts and ends within its day)
    events = tuple(e for d in range(d0, d1 + 1) if meter._interrupted(d) for e in meter.pq_events(d))
    if meter.state.supply:
        events += _injected_failures(meter)
    return pq.off_seconds(events, t0, t1)


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

    depth = DAILY_PROFILE_DEPTH

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

    depth = BILLING_PROFILE_DEPTH

    def keys(self, meter: Meter, now: float) -> range:
        count, recent = meter.billing_closures().upto(meter.sim(now), self.depth)
        return range(count - len(recent) + 1, count + 1)

    def time_of(self, meter: Meter, key: int, now: float) -> float:
        count, recent = meter.billing_closures().upto(meter.sim(now), self.depth)
        return recent[key - (count - len(recent) + 1)][0]

    def rows(self, meter: Meter, keys: range, now: float, assoc) -> Iterator[BillingRow]:
        for start, close in self._periods(meter, keys, now):
            yield billing_row(meter, start, close)

    def _periods(self, meter: Meter, keys: range, now: float) -> list[tuple[float, tuple[float, float]]]:
        """(true start, (stamp, true close)) of the billing periods ``keys``."""
        count, recent = meter.billing_closures().upto(meter.sim(now), self.depth + 1)
        first = count - len(recent) + 1
        out = []
        for key in keys:
            i = key - first
            out.append((recent[i - 1][1] if i > 0 else meter.install_time, recent[i]))
        return out

    def pending(self, meter: Meter, keys: range, now: float) -> Iterator[None] | None:
        """The work before rows ``keys`` can be served without a long pause (their maximum demands: every
        demand period of each month), as an iterator doing a few days of it per step; None if the meter
        has them already."""
        todo = [(start, close) for start, close in self._periods(meter, keys, now)
                if not meter.has_captured(("billing", start, close))]
        return _computing(meter, todo) if todo else None


PENDING_STEP = 2 * DAY  # simulated time of demand periods one step of the deferred work scans (about 0.4 ms)


def _computing(meter: Meter, periods) -> Iterator[None]:
    for start, close in periods:
        key = ("billing", start, close)
        if meter.has_captured(key):
            continue
        begin, end = max(start, meter.install_time), close[1]
        demand = meter.demand_between(begin, begin)  # (nothing scanned yet)
        until = begin
        while until < end:
            until = min(until + PENDING_STEP, end)
            with meter.batch():
                meter.extend_demand(demand, until)
            yield
        row = _billing_row(meter, start, close, demand)
        meter.captured(key, lambda row=row: row)
        yield


def billing_row(meter: Meter, start: float, close: tuple[float, float]) -> BillingRow:
    """The billing entry of the period from true time ``start`` to ``close`` ((stamp, true time)):
    computed once per meter object (`Meter.captured`)."""
    return meter.captured(("billing", start, close), lambda: _billing_row(meter, start, close))


def _billing_row(meter: Meter, start: float, close: tuple[float, float], demand=None) -> BillingRow:
    """``demand``: the period's maximum demands if computed already (`Billing.pending`)."""
    stamp, end = close
    start = max(start, meter.install_time)
    with meter.batch():  # (the month's days are looked at twice: for its maximum demand and its outages)
        r0, r1 = meter.readings(start), meter.readings(end)
        kwh, kvah = r1[0] - r0[0], r1[2] - r0[2]
        pf = kwh / kvah if kvah > 0 else 1.0
        on = max(0, int((end - start - off_seconds(meter, start, end)) // 60))
        if demand is None:
            demand = meter.demand_between(start, end)
    return BillingRow(stamp, r1, demand, pf, on, end, start)


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
    m.programmed(logbook.EV_CAPTURE_PERIOD, now)
    return DataAccessResult.SUCCESS


def last_billing_clock(m: Meter, now: float) -> float:
    """Meter-clock time of the most recent billing (NaN before the first)."""
    last = m.billing_closures().last_before(m.sim(now))
    return math.nan if last is None else last[0]


def period_start_sim(m: Meter, now: float) -> float:
    """Simulated time the current billing period began (or installation)."""
    return m.billing_period_start(m.sim(now))
