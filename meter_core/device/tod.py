"""Time-of-day (TOD) energy registers: kWh and kVAh import per tariff zone, from the activity calendar.

The zones are the day profile of the active calendar (0.0.13.0.0.255): each action's start time
switches to tariff ``script_selector`` (zone 1-8). Registers 1.0.1.8.z.255 (kWh) and 1.0.9.8.z.255
(kVAh) count the energy used while zone z was in force, floored to the register resolution like the
totals. The meter walks its days since installation once, keeping the running totals up to its
last whole day (a few numbers), so a read only adds the days since. Each moment counts in the zone
of the calendar in force then: a calendar a head-end activates applies from its activation on.
Zones switch on IST time of day (true time, not the meter clock: a simplification).
"""

from __future__ import annotations

import math

from meter_core.codec.axdr import NOT_SPECIFIED, DataType, data_from_bytes
from meter_core.codec.errors import DecodeError
from meter_core.device.clock import DAY, IST_S
from meter_core.device.history import value_at
from meter_core.device.meter import Meter

ZONES = 4
DEFAULT_ZONES = ((0.0, 1), (6 * 3600.0, 2), (18 * 3600.0, 3), (22 * 3600.0, 4))


def zones_of(parts) -> tuple[tuple[float, int], ...]:
    """(seconds after midnight, zone) of a calendar's first day profile, sorted (``parts``: an active
    calendar as `MeterState.calendars` keeps it; None = the factory calendar)."""
    raw = parts[3] if parts is not None else None
    if raw is None:
        return DEFAULT_ZONES
    try:
        table = data_from_bytes(raw)
        actions = table.value[0].value[1].value
        out = []
        for a in actions:
            start, _script, selector = a.value
            h, m, s = bytes(start.value)[:3]
            zone = selector.value if selector.tag is DataType.LONG_UNSIGNED else 1
            out.append((h * 3600.0 + (0 if m == NOT_SPECIFIED else m) * 60 + (0 if s == NOT_SPECIFIED else s), max(1, min(zone, ZONES))))
    except (DecodeError, IndexError, AttributeError, TypeError, ValueError):
        return DEFAULT_ZONES
    out.sort()
    if not out or out[0][0] > 0:
        out.insert(0, (0.0, out[-1][1] if out else 1))  # before the first switch: the day's last zone
    return tuple(out)


def _day_zone_energy(meter: Meter, day: int, until: float, calendars: tuple, totals: list[float]) -> None:
    """Add the active and apparent energy of ``day`` up to simulated ``until`` per zone to ``totals``, each
    moment in the zone of the calendar in force then."""
    midnight = day * DAY - IST_S
    end_of_day = midnight + DAY
    switches = [s for s, _ in calendars[1:] if midnight < s < end_of_day]
    pieces = []  # (start, end, zone) of the day
    for start in (midnight, *switches):
        zones = zones_of(value_at(calendars, start))
        stop = next((s for s in switches if s > start), end_of_day)
        bounds = [midnight + z for z, _ in zones] + [end_of_day]
        for i, (_, zone) in enumerate(zones):
            lo, hi = max(bounds[i], start), min(bounds[i + 1], stop)
            if hi > lo:
                pieces.append((lo, hi, zone))
    prev_t = max(midnight, meter.install_time)
    prev = meter.energy_at(prev_t)
    for _lo, hi, zone in pieces:
        end = min(hi, until)
        if end <= prev_t:
            continue
        nxt = meter.energy_at(end)
        totals[zone - 1] += nxt.active_import_wh - prev.active_import_wh
        totals[ZONES + zone - 1] += nxt.apparent_import_vah - prev.apparent_import_vah
        prev_t, prev = end, nxt
        if end >= until:
            break


def totals_at(meter: Meter, t: float) -> list[float]:
    """Active (Wh) then apparent (VAh) import per zone, 1..4, from installation to simulated ``t``."""
    calendars = meter.state.calendars
    day_t = math.floor((t + IST_S) / DAY)
    start_day = math.floor((meter.install_time + IST_S) / DAY)
    cache = meter.tod_cache
    if cache is None or cache[0] > day_t or cache[2] is not calendars:
        cache = (start_day, [0.0] * (2 * ZONES), calendars)
    day, totals, _ = cache
    totals = list(totals)
    while day < day_t:
        _day_zone_energy(meter, day, math.inf, calendars, totals)
        day += 1
    meter.tod_cache = (day, list(totals), calendars)
    _day_zone_energy(meter, day_t, t, calendars, totals)
    return totals
