"""When and what a meter pushes: the push setups' configuration, their schedules and triggers.

Push object lists follow a public IS 15959 NIC firmware (Wirepas DLMS NIC): every push starts with the
device ID (0.0.96.1.2.255), the push setup's own logical name and the clock, then the pushed data: the
instantaneous values (instant push), the Event Status Word (alert push), or a profile buffer (block
load and daily load pushes). Normative IS 15959 push object lists are not public (UNCONFIRMED); the
intervals are in seconds (UNCONFIRMED). The push setup objects are `meter_core.cosem.ic.push_setup`;
the APDU and its framing `meter_core.notification`.
"""

from __future__ import annotations

from meter_core.codec.apdu.codes import LONG_INVOKE_ID_MASK
from meter_core.device import eventprofiles
from meter_core.device.clock import IST_S
from meter_core.device.config import (
    ALERT_PUSH,
    BILLING_PUSH,
    BLOCK_LOAD_PUSH,
    DAILY_LOAD_PUSH,
    EVENT_PUSHES,
    INSTANT_PUSH,
    SCHEDULE_SECONDS,
    DeviceConfig,
)
from meter_core.device.history import value_at
from meter_core.device.identity import MeterKind, stable_hash

PUSH_CLIENT_SAP = 64  # wPort / HDLC client of the push association 0.0.40.0.4.255 (Gurux's India.txt)
PUSH_SETUP_E = 4  # its security setup 0.0.43.0.4.255

_HEAD = ((1, "0.0.96.1.2.255", 2),)
_INSTANT_POLY = tuple((3, o, 2) for o in (
    "1.0.31.7.0.255", "1.0.51.7.0.255", "1.0.71.7.0.255", "1.0.32.7.0.255", "1.0.52.7.0.255", "1.0.72.7.0.255",
    "1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.9.8.0.255", "1.0.10.8.0.255"))
_INSTANT_SINGLE = tuple((3, o, 2) for o in (
    "1.0.11.7.0.255", "1.0.12.7.0.255", "1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.9.8.0.255", "1.0.10.8.0.255"))


def _data_for(push: str, kind: MeterKind) -> tuple[tuple[int, str, int], ...]:
    if push == INSTANT_PUSH:
        return _INSTANT_SINGLE if kind is MeterKind.SINGLE_PHASE else _INSTANT_POLY
    if push == ALERT_PUSH:
        return ((1, "0.0.94.91.18.255", 2),)
    if push == BLOCK_LOAD_PUSH:
        return ((7, "1.0.99.1.0.255", 2),)
    if push == DAILY_LOAD_PUSH:
        return ((7, "1.0.99.2.0.255", 2),)
    if push == BILLING_PUSH:
        return ((7, "1.0.98.1.0.255", 2),)
    return ((7, f"0.0.99.98.{EVENT_PUSHES.index(push)}.255", 2),)


def object_list(push: str, kind: MeterKind) -> tuple[tuple[int, str, int], ...]:
    """The push object list of push setup ``push`` on a meter of ``kind``: (class, OBIS, attribute) of
    the device ID, the push setup's logical name, the clock, then the pushed data."""
    return (*_HEAD, (40, push, 1), (8, "0.0.1.0.0.255", 2), *_data_for(push, kind))


def setting(meter, push: str, name: str):
    """Push setup ``push``'s ``name`` (destination, retries, repetition_delay_s, ...) for this meter: what
    a head-end wrote into it, else the fleet's configuration."""
    for p, n, value in meter.state.push_settings:
        if p == push and n == name:
            return value
    return getattr(meter.config.push[push], name)


def write_setting(meter, push: str, name: str, value) -> None:
    """A head-end wrote push setup ``push``'s ``name`` on this meter (a programming change)."""
    state = meter.state
    state.push_settings = (*(e for e in state.push_settings if (e[0], e[1]) != (push, name)), (push, name, value))
    state.programming_count += 1


def parse_destination(text: str) -> tuple[str, int] | None:
    """("host", port) of a "host:port" destination, or None if it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def confirmed(meter, push: str, t: float) -> None:
    """Push setup ``push``'s push was confirmed at simulated ``t`` (last_confirmation_date_time)."""
    state = meter.state
    state.push_confirmations = (*(e for e in state.push_confirmations if e[0] != push), (push, t))


# -- when a push is due ------------------------------------------------------------------------------------

def randomisation(config: DeviceConfig, seed: int, meter_id: int, push: str) -> float:
    """The meter's own delay (s) after each scheduled instant, within the push setup's randomisation
    start interval: seeded, so a fleet's pushes spread the same way every run."""
    c = config.push.get(push)
    interval = c.randomisation_s if c is not None else 0
    if not interval:
        return 0.0
    return (stable_hash("push-randomisation", seed, meter_id, push) % (interval * 1000)) / 1000.0


def next_due(config: DeviceConfig, seed: int, meter_id: int, push: str, after: float,
             schedule: str | None = None) -> float:
    """The first time (simulated, UTC seconds) strictly after ``after`` at which meter ``meter_id`` pushes
    ``push`` on its schedule: the schedule's instant plus the meter's randomisation delay."""
    period = SCHEDULE_SECONDS[schedule or config.push[push].schedule]
    delay = randomisation(config, seed, meter_id, push)
    k = (after - delay + IST_S) // period + 1
    return k * period - IST_S + delay


_LAST_GASP = frozenset((85,))


def alerts_between(meter, t0: float, t1: float) -> list[tuple[float, frozenset[int]]]:
    """The alert pushes the meter owes in (t0, t1]: each time ESW bits that the ESW filter enables are
    raised (a bit that clears raises nothing), with those bits. A meter without supply detects nothing and
    raises nothing but its last gasp (bit 85): a condition that began while it was off is in the ESW the
    first breath's push carries, not an alert of its own."""
    filters = meter.state.eswf
    out = []
    for t, before, after in eventprofiles.esw_changes(meter, t0, t1):
        mask = value_at(filters, t) or b"\xff" * 16  # the filter in force when the bits rose
        rose = after - before
        if rose - _LAST_GASP and meter.supply_off(t):
            rose &= _LAST_GASP
        raised = frozenset(b for b in rose if mask[b // 8] & (0x80 >> (b % 8)))
        if raised:
            out.append((t, raised))
    return out


def triggered_between(meter, t0: float, t1: float) -> list[tuple[float, str, tuple[int, ...]]]:
    """The pushes the meter owes in (t0, t1] on their triggers, for the push setups enabled: (time of the
    trigger, push setup, ESW bits raised for an alert push). Alert pushes when ESW bits the ESW filter
    enables rise; the billing push when a billing period closes (scheduled date or MD reset); an
    event-log push for each event its log takes."""
    config = meter.config
    out = []
    if config.enabled(ALERT_PUSH):
        out += [(t, ALERT_PUSH, tuple(sorted(bits))) for t, bits in alerts_between(meter, t0, t1)]
    if config.enabled(BILLING_PUSH):
        _, recent = meter.billing_closures().upto(t1, 16)
        out += [(t, BILLING_PUSH, ()) for _stamp, t in recent if t0 < t <= t1]
    wanted = {c: p for c, p in enumerate(EVENT_PUSHES) if config.enabled(p)}
    if wanted:
        out += [(e.time, wanted[e.category], ()) for e in eventprofiles.events_between(meter, t0, t1)
                if e.category in wanted]
    out.sort()
    return out


def invoke_id_for(due: float) -> int:
    """The long-invoke-id a push carries: the minute of its due time (mod 2^24), so a head-end's record of
    it meets the meter's record of what it owed."""
    return int(due // 60) & LONG_INVOKE_ID_MASK


def due_between(config: DeviceConfig, seed: int, meter_id: int, push: str, t0: float, t1: float,
                schedule: str | None = None) -> list:
    """Every scheduled push of the meter in (t0, t1]."""
    out = []
    t = next_due(config, seed, meter_id, push, t0, schedule)
    while t <= t1:
        out.append(t)
        t = next_due(config, seed, meter_id, push, t, schedule)
    return out
