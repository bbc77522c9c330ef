"""The events a meter logs: categories, codes, and the record of what happened to this meter.

Events come from two places, merged in time order per log (event codes as Gurux's India.txt
and gurux.fi/forum/15949 list them): the supply, a pure
function of (seed, meter_id, day) (`meter_core.device.powerquality`), and what happened to this meter,
kept in its state (`MeterState.events`) by `record` here. The queries over both live in
`meter_core.device.eventprofiles`.
"""

from __future__ import annotations

from typing import NamedTuple

from meter_core.device.state import MeterState

VOLTAGE, CURRENT, POWER, TRANSACTION, OTHER, NON_ROLLOVER, CONTROL = range(7)
CATEGORY_NAMES = ("voltage", "current", "power", "transaction", "other", "non_rollover", "control")
DEPTH = (70, 70, 40, 20, 60, 1, 1)
LOG_OBIS = tuple(f"0.0.99.98.{c}.255" for c in range(7))
CODE_OBIS = tuple(f"0.0.96.11.{c}.255" for c in range(7))
# (occurrence, restoration) code and ESW bit of each supply event kind with an IS 15959 event.
PQ_CODES = {
    "VOLTAGE_SAG": (VOLTAGE, 9, 10, 4),
    "VOLTAGE_SWELL": (VOLTAGE, 7, 8, 3),
    "VOLTAGE_UNBALANCE": (VOLTAGE, 11, 12, 5),
    "INTERRUPTION": (POWER, 101, 102, 85),
}
# Tampers that can be injected: code -> (category, restoration code or None, ESW bit).
TAMPERS = {
    201: (OTHER, 202, 81),  # magnet
    203: (OTHER, 204, 82),  # neutral disturbance
    251: (NON_ROLLOVER, None, 83),  # cover open (occurrence only)
}
FIRST_BREATH_S = 3600.0
# Events a meter keeps per category of what happened to it (its logs serve the last DEPTH): the ground-truth
# writer takes a window of at most a simulated day at a time, and a meter tripping its load limiter every six
# minutes logs 240 a day.
RETAINED = 1024
# The ESW billing bit stays set this long after a billing close (seconds).
BILLING_BIT_S = 3600.0

# Transaction and control event codes (as Gurux's India.txt and gurux.fi/forum/15949 list them) of what head-
# ends do to a meter.
EV_CLOCK_SET, EV_DEMAND_PERIOD, EV_CAPTURE_PERIOD, EV_BILLING_DATE, EV_CALENDAR = 151, 152, 153, 154, 155
EV_LOAD_LIMIT, EV_ESWF, EV_MD_RESET, EV_DISCONNECTED, EV_CONNECTED = 158, 165, 166, 301, 302


class Event(NamedTuple):
    time: float  # simulated time
    category: int
    code: int


def record(state: MeterState, category: int, code: int, t: float) -> None:
    """Keep an event that happened to this meter (the last `RETAINED` per category: more than its log
    holds, so that what is written to the ground truth a window at a time misses none)."""
    events = (*state.events, (t, category, code))
    mine = [e for e in events if e[1] == category]
    if len(mine) > RETAINED:
        drop = mine[0]
        events = tuple(e for e in events if e is not drop)
    state.events = events
    counts = dict(state.event_counts)
    counts[category] = counts.get(category, 0) + 1
    state.event_counts = tuple(sorted(counts.items()))


def withdraw_after(state: MeterState, category: int, code: int, t: float) -> None:
    """Take back the events of ``code`` logged ahead of simulated ``t`` (the end of a tamper or power
    failure injected with a duration, which a restore at ``t`` brought forward)."""
    later = [e for e in state.events if e[0] > t and e[1] == category and e[2] == code]
    if not later:
        return
    state.events = tuple(e for e in state.events if e not in later)
    counts = dict(state.event_counts)
    counts[category] = counts.get(category, 0) - len(later)
    state.event_counts = tuple(sorted(counts.items()))


def tamper_bits(state: MeterState, t: float) -> set[int]:
    """The ESW bits of the injected tampers in force at simulated ``t`` (occurred, not restored)."""
    active: set[int] = set()
    for time, _category, code in sorted(state.events):
        if time > t:
            break
        tamper = TAMPERS.get(code)
        if tamper is not None:
            active.add(tamper[2])
        for _occ, (_cat, restore, bit) in TAMPERS.items():
            if code == restore:
                active.discard(bit)
    return active
