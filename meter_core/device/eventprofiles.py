"""The seven IS 15959 event profiles (the event logs), the last-event-code objects, event counters, ESW and ESWF.

Events come from two places, merged in time order per log (event codes as Gurux's India.txt
and gurux.fi/forum/15949 list them):

- the supply, a pure function of (seed, meter_id, day) (`meter_core.device.powerquality`): voltage events
  (low 9/10, over 7/8, unbalance 11/12) and power failures (101/102);
- what happened to this meter, kept in its small state (only for meters it happened to): clock set
  and other programming (transaction 151-166), relay (control 301/302), tampers a test or an
  operator injected (other 201-204, non-roll-over 251).

A log holds its last N entries (FIFO depths 70/70/40/20/60/1/1 of the Gurux India model,
UNCONFIRMED as normative). Entry keys count from the oldest entry in the buffer, so entry numbers are
what a head-end reads by entry; the log is found by walking back day by day from now, at most
`SCAN_DAYS` days (an entry older than that has been pushed out by newer ones, or the log is quiet).
Voltage, current and other logs capture the clock, the event code and a snapshot of the phase
currents, voltages, power factors and the cumulative kWh at the event.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

from meter_core.codec.apdu.codes import DataAccessResult
from meter_core.codec.axdr import BitString, Data, DataType, encode_value, int_encoder
from meter_core.device import history
from meter_core.device.clock import day_of
from meter_core.device.identity import MeterKind
from meter_core.device.logbook import (
    BILLING_BIT_S,
    CODE_OBIS,
    CURRENT,
    DEPTH,
    EV_ESWF,
    FIRST_BREATH_S,
    OTHER,
    POWER,
    PQ_CODES,
    VOLTAGE,
    Event,
    tamper_bits,
)
from meter_core.device.meter import Meter

SCAN_DAYS = 400

_enc_u16 = int_encoder(DataType.LONG_UNSIGNED)


def _day_events(meter: Meter, day: int) -> list[Event]:
    out = []
    for e in meter.pq_events(day):
        codes = PQ_CODES.get(e.kind)
        if codes is None:
            continue
        category, on, off, _bit = codes
        out.append(Event(e.start, category, on))
        out.append(Event(e.end, category, off))
    return out


def generated_between(meter: Meter, t0: float, t1: float, category: int | None = None) -> list[Event]:
    """Supply events in (t0, t1], in time order."""
    out = []
    for day in range(day_of(t0), day_of(t1) + 1):
        out += [e for e in _day_events(meter, day) if t0 < e.time <= t1 and (category is None or e.category == category)]
    out.sort()
    return out


def recorded_between(meter: Meter, t0: float, t1: float, category: int | None = None) -> list[Event]:
    """Events that happened to this meter in simulated (t0, t1]: the load limiter's trips up to ``t1``
    included (it logs them as it checks the load, so it checks up to ``t1`` first)."""
    state = meter.state
    if state.limit_since is not None and t1 < math.inf:
        meter.scan_limiter(t1)
    return [Event(*e) for e in state.events if t0 < e[0] <= t1 and (category is None or e[1] == category)]


def events_between(meter: Meter, t0: float, t1: float, category: int | None = None) -> list[Event]:
    """Every event of the meter in simulated (t0, t1], in time order."""
    events = generated_between(meter, max(t0, meter.install_time), t1, category)
    events += recorded_between(meter, t0, t1, category)
    events.sort()
    return events


def last_events(meter: Meter, category: int, t: float, n: int) -> list[Event]:
    """The last ``n`` events of ``category`` at or before simulated ``t``, oldest first."""
    found = recorded_between(meter, -math.inf, t, category)
    if category in (VOLTAGE, POWER):
        day = day_of(t)
        first_day = max(day_of(meter.install_time), day - SCAN_DAYS)
        generated: list[Event] = []
        while day >= first_day and len(generated) < n:
            generated = [e for e in _day_events(meter, day) if e.category == category and e.time <= t
                         and e.time > meter.install_time] + generated
            day -= 1
        found += generated
    found.sort()
    return found[-n:]


# -- counters -----------------------------------------------------------------------------------------


def outage_totals(meter: Meter, t: float) -> tuple[int, float]:
    """(power failures, seconds without supply) from installation to simulated ``t``.

    Walks every day since installation once per meter and keeps the running totals up to the last
    whole day (a few numbers), so later reads only add the days since.
    """
    cache = meter.outage_cache
    start_day = day_of(meter.install_time)
    day_t = day_of(t)
    if cache is None or cache[0] > day_t:
        cache = (start_day, 0, 0.0)
    day, count, seconds = cache
    while day < day_t:
        for e in meter.pq_events(day):
            if e.kind == "INTERRUPTION" and e.start > meter.install_time:
                count += 1
                seconds += e.end - e.start
        day += 1
    meter.outage_cache = (day, count, seconds)
    for e in meter.pq_events(day_t):
        if e.kind == "INTERRUPTION" and meter.install_time < e.start <= t:
            count += 1
            seconds += min(e.end, t) - e.start
    for start, end, factor in meter.state.supply:  # injected power failures
        if factor == 0.0 and start <= t:
            count += 1
            seconds += (t if end is None else min(end, t)) - start
    return count, seconds


# -- Event Status Word ----------------------------------------------------------------------------------


def esw_changes(meter: Meter, t0: float, t1: float) -> list[tuple[float, set[int], set[int]]]:
    """Each change of the Event Status Word in (t0, t1], simulated time: (time, bits before, bits after)."""
    points = {e.time for e in events_between(meter, t0 - FIRST_BREATH_S, t1)}
    points |= {t + FIRST_BREATH_S for t in points}
    out = []
    for t in sorted(t for t in points if t0 < t <= t1):
        before, after = esw_bits(meter, t - 0.001), esw_bits(meter, t)
        if before != after:
            out.append((t, before, after))
    return out


def esw_bits(meter: Meter, t: float) -> set[int]:
    """The ESW bits set at simulated ``t`` (bits as gurux.fi/forum/15949 and a public
    IS 15959 NIC firmware list them)."""
    bits: set[int] = set()
    day = day_of(t)
    for e in (*meter.pq_events(day - 1), *meter.pq_events(day)):
        codes = PQ_CODES.get(e.kind)
        if codes is None:
            continue
        if e.start <= t < e.end:
            bits.add(codes[3])
        if e.kind == "INTERRUPTION" and e.end <= t < e.end + FIRST_BREATH_S:
            bits.add(86)
    if meter.state.limit_since is not None:
        meter.scan_limiter(t)  # its trips up to ``t`` logged first
    bits |= tamper_bits(meter.state, t)
    for start, end, factor in meter.state.supply:  # injected power failures: last gasp, first breath
        if factor == 0.0 and start <= t:
            if end is None or t < end:
                bits.add(85)
            elif t < end + FIRST_BREATH_S:
                bits.add(86)
    if 85 in bits:
        bits.discard(86)  # no first breath while the supply is off (another interruption goes on)
    if meter.relay_open(t):
        bits.add(84)
    last = meter.billing_closures().last_before(t)
    if last is not None and t - last[1] < BILLING_BIT_S:
        bits.add(87)
    return bits


def bitstring(bits: set[int]) -> bytes:
    out = bytearray(16)
    for b in bits:
        out[b >> 3] |= 0x80 >> (b & 7)
    return bytes(out)


def esw_value(meter: Meter, assoc, now: float) -> bytes:
    return encode_value(Data(DataType.BIT_STRING, BitString(128, bitstring(esw_bits(meter, meter.sim(now))))))


def eswf_value(meter: Meter, assoc, now: float) -> bytes:
    return encode_value(Data(DataType.BIT_STRING, BitString(128, meter.state.eswf[-1][1] or b"\xff" * 16)))


def set_eswf(meter: Meter, assoc, value: Data, now: float) -> DataAccessResult:
    if value.tag is not DataType.BIT_STRING:
        return DataAccessResult.TYPE_UNMATCHED
    if value.value.bits != 128:
        return DataAccessResult.OTHER_REASON
    state = meter.state
    state.eswf = history.changed(state.eswf, meter.sim(now), bytes(value.value.data))
    meter.programmed(EV_ESWF, now)
    return DataAccessResult.SUCCESS


def last_code(category: int):
    def get(meter: Meter, assoc, now: float) -> bytes:
        found = last_events(meter, category, meter.sim(now), 1)
        return _enc_u16(found[-1].code if found else 0)

    return get


# -- the logs as profiles --------------------------------------------------------------------------------


class EventRow(NamedTuple):
    clock: float
    code: int
    t: float  # simulated time, for the snapshot


class EventLogSource:
    """Rows of one event log: keys 0.. count from the oldest entry in the buffer."""

    def __init__(self, category: int) -> None:
        self.category = category
        self._memo: tuple | None = None

    def _entries(self, meter: Meter, now: float) -> list[Event]:
        # the last read's entries, for the keys, times and rows of one request: the same meter (the object,
        # not its id, which a new meter may reuse), time and events
        t, events = meter.sim(now), meter.state.events
        memo = self._memo
        if memo is not None and memo[0] is meter and memo[1] == t and memo[2] is events:
            return memo[3]
        entries = last_events(meter, self.category, t, DEPTH[self.category])
        self._memo = (meter, t, meter.state.events, entries)
        return entries

    def keys(self, meter: Meter, now: float) -> range:
        return range(len(self._entries(meter, now)))

    def time_of(self, meter: Meter, key: int, now: float) -> float:
        return stamp_of(meter, self._entries(meter, now)[key].time)

    def rows(self, meter: Meter, keys: range, now: float, assoc) -> Iterator[EventRow]:
        entries = self._entries(meter, now)
        for k in keys:
            e = entries[k]
            yield EventRow(stamp_of(meter, e.time), e.code, e.time)


def stamp_of(meter: Meter, t: float) -> float:
    """The time stamp of an event at simulated ``t``: the meter clock, in whole seconds."""
    return float(math.floor(meter.clock_at_sim(t)))


def snapshot_columns(kind: MeterKind) -> tuple[tuple[int, str, int], ...]:
    if kind is MeterKind.SINGLE_PHASE:
        return tuple((3, o, 2) for o in ("1.0.11.7.0.255", "1.0.12.7.0.255", "1.0.13.7.0.255", "1.0.1.8.0.255"))
    return tuple((3, o, 2) for o in (
        "1.0.31.7.0.255", "1.0.51.7.0.255", "1.0.71.7.0.255", "1.0.32.7.0.255", "1.0.52.7.0.255",
        "1.0.72.7.0.255", "1.0.33.7.0.255", "1.0.53.7.0.255", "1.0.73.7.0.255", "1.0.1.8.0.255"))


def log_columns(category: int, kind: MeterKind) -> tuple[tuple[int, str, int], ...]:
    head = ((8, "0.0.1.0.0.255", 2), (1, CODE_OBIS[category], 2))
    if category in (VOLTAGE, CURRENT, OTHER):
        return (*head, *snapshot_columns(kind))
    return head
