"""When and what a meter pushes: the push setups' configuration, their schedules and triggers.

Push object lists follow a public IS 15959 NIC firmware (Wirepas DLMS NIC): every push starts with the
device ID (0.0.96.1.2.255), the push setup's own logical name and the clock, then the pushed data: the
instantaneous values (instant push), the Event Status Word (alert push), or a profile buffer (block
load and daily load pushes). Normative IS 15959 push object lists are not public (UNCONFIRMED); the
intervals are in seconds (UNCONFIRMED). The push setup objects are `meter_core.cosem.ic.push_setup`;
the APDU and its framing `meter_core.notification`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from meter_core.device import eventlog
from meter_core.device.clock import IST_S
from meter_core.device.eventlog import events_between
from meter_core.device.history import value_at
from meter_core.device.identity import MeterKind, stable_hash

# Schedules of the periodic pushes (the seed's push_schedules types): period in seconds, aligned to IST
# midnight. The alert push goes on an ESW change, not on a schedule.
SCHEDULE_SECONDS = {"FIFTEEN_MIN": 900, "THIRTY_MIN": 1800, "ONE_HOUR": 3600, "FOUR_HOUR": 14400,
                    "EIGHT_HOUR": 28800, "TWELVE_HOUR": 43200, "TWENTY_FOUR_HOUR": 86400}

INSTANT_PUSH = "0.0.25.9.0.255"
ALERT_PUSH = "0.4.25.9.0.255"
BLOCK_LOAD_PUSH = "0.5.25.9.0.255"
DAILY_LOAD_PUSH = "0.6.25.9.0.255"
# Billing push (the closed period's billing profile entry) and one push per event log (its new entry):
# OBIS codes as one IS 15959 communication module uses them (0.103 vs 0.132 for billing differ between
# sources,
# event-log pushes vendor-specific; UNCONFIRMED). Event-log pushes are off by default.
BILLING_PUSH = "0.103.25.9.0.255"
EVENT_PUSHES = tuple(f"0.{120 + c}.25.9.0.255" for c in range(7))
NAMES = {INSTANT_PUSH: "Instant push setup", ALERT_PUSH: "Alert push setup", BLOCK_LOAD_PUSH: "Block load push setup",
          DAILY_LOAD_PUSH: "Daily load push setup", BILLING_PUSH: "Billing push setup",
          **{p: f"Event log {c} push setup" for c, p in enumerate(EVENT_PUSHES)}}
PUSH_CLIENT_SAP = 64  # wPort / HDLC client of the push association 0.0.40.0.4.255 (Gurux's India.txt)
PUSH_SETUP_E = 4  # its security setup 0.0.43.0.4.255
# push_schedules types of the pushes that go on their trigger rather than a period
TRIGGERS = ("ON_ALARM", "ON_BILLING", "ON_EVENT")

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


@dataclass(frozen=True, slots=True)
class PushSetupConfig:
    """How one push setup pushes (a row of the seed's push_setups joined with push_schedules)."""

    logical_name: str
    schedule: str | None  # a `SCHEDULE_SECONDS` type, or None: on its trigger only (alarm, billing, event)
    randomisation_s: int  # randomisation_start_interval: each meter waits its own seeded share of it
    retries: int = 3  # number_of_retries
    repetition_delay_s: int = 60
    enabled: bool = True
    # push_operation_method (push setup v2): 0 unconfirmed (retry when the call fails), 1 unconfirmed
    # (retry on a missing lower-layer confirmation: over TCP the same), 2 confirmed (retry until the
    # head-end sends Data-Notification-Confirm). A push setup with 2 is shown as version 2.
    operation_method: int = 0
    # send_destination_and_method's destination: where the pushes go ("host:port", as Gurux writes it)
    destination: str = ""


# The fleet's defaults: every meter waits its own seeded share of the randomisation start interval after
# the instant a push falls due (a power failure across a feeder spreads its last gasps over a minute).
DEFAULT_CONFIG: tuple[PushSetupConfig, ...] = (
    PushSetupConfig(INSTANT_PUSH, "FIFTEEN_MIN", 60),
    PushSetupConfig(ALERT_PUSH, None, 60),
    PushSetupConfig(BLOCK_LOAD_PUSH, "THIRTY_MIN", 300),
    PushSetupConfig(DAILY_LOAD_PUSH, "TWENTY_FOUR_HOUR", 900),
    PushSetupConfig(BILLING_PUSH, None, 900),
    *(PushSetupConfig(p, None, 60, enabled=False) for p in EVENT_PUSHES),
)
TRIGGER_OF = {ALERT_PUSH: "ON_ALARM", BILLING_PUSH: "ON_BILLING", **{p: "ON_EVENT" for p in EVENT_PUSHES}}
# The configuration in force in this process (`install` replaces it with the database's rows).
CONFIG: dict[str, PushSetupConfig] = {c.logical_name: c for c in DEFAULT_CONFIG}


def install(rows: list[dict]) -> None:
    """Use these push setups from now on: rows of push_setups (fleet defaults) with their schedule type
    from push_schedules (``schedule_type``: a period, ON_ALARM, or None)."""
    config = dict(CONFIG)
    for r in rows:
        ln_ = r["logical_name"]
        if ln_ not in config:
            continue  # a push setup these meters do not have
        schedule = r.get("schedule_type")
        if schedule is not None and schedule not in TRIGGERS and schedule not in SCHEDULE_SECONDS:
            raise ValueError(f"push setup {ln_}: unknown schedule type {schedule!r}")
        method = int(r.get("push_operation_method") or 0)
        if method not in (0, 1, 2):
            raise ValueError(f"push setup {ln_}: push_operation_method {method} is not 0, 1 or 2")
        config[ln_] = PushSetupConfig(ln_, None if schedule in (None, *TRIGGERS) else schedule,
                                      int(r["randomisation_start_interval_s"]), int(r["number_of_retries"]),
                                      int(r["repetition_delay_s"]), bool(r.get("enabled", True)), method,
                                      r.get("destination") or "")
    CONFIG.clear()
    CONFIG.update(config)


def setting(meter, push: str, name: str):
    """Push setup ``push``'s ``name`` (destination, retries, repetition_delay_s, ...) for this meter: what
    a head-end wrote into it, else the fleet's configuration."""
    for p, n, value in meter.state.push_settings:
        if p == push and n == name:
            return value
    return getattr(CONFIG[push], name)


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


def set_destination(destination: str) -> None:
    """Push to ``destination`` ("host:port") wherever the configuration names none (dial mode's --hes)."""
    for k, c in list(CONFIG.items()):
        if not c.destination:
            CONFIG[k] = dataclasses.replace(c, destination=destination)


def scheduled() -> dict[str, str]:
    """The enabled push setups that push on a schedule, with their schedule types."""
    return {c.logical_name: c.schedule for c in CONFIG.values() if c.enabled and c.schedule is not None}


def confirmed(meter, push: str, t: float) -> None:
    """Push setup ``push``'s push was confirmed at simulated ``t`` (last_confirmation_date_time)."""
    state = meter.state
    state.push_confirmations = (*(e for e in state.push_confirmations if e[0] != push), (push, t))


# -- when a push is due ------------------------------------------------------------------------------------

def randomisation(seed: int, meter_id: int, push: str) -> float:
    """The meter's own delay (s) after each scheduled instant, within the push setup's randomisation
    start interval: seeded, so a fleet's pushes spread the same way every run."""
    c = CONFIG.get(push)
    interval = c.randomisation_s if c is not None else 0
    if not interval:
        return 0.0
    return (stable_hash("push-randomisation", seed, meter_id, push) % (interval * 1000)) / 1000.0


def next_due(seed: int, meter_id: int, push: str, after: float, schedule: str | None = None) -> float:
    """The first time (simulated, UTC seconds) strictly after ``after`` at which meter ``meter_id`` pushes
    ``push`` on its schedule: the schedule's instant plus the meter's randomisation delay."""
    period = SCHEDULE_SECONDS[schedule or CONFIG[push].schedule]
    delay = randomisation(seed, meter_id, push)
    k = (after - delay + IST_S) // period + 1
    return k * period - IST_S + delay


def alerts_between(meter, t0: float, t1: float) -> list[tuple[float, frozenset[int]]]:
    """The alert pushes the meter owes in (t0, t1]: each time ESW bits that the ESW filter enables are
    raised (a bit that clears raises nothing), with those bits."""
    filters = meter.state.eswf
    out = []
    for t, before, after in eventlog.esw_changes(meter, t0, t1):
        mask = value_at(filters, t) or b"\xff" * 16  # the filter in force when the bits rose
        raised = frozenset(b for b in after - before if mask[b // 8] & (0x80 >> (b % 8)))
        if raised:
            out.append((t, raised))
    return out


def triggered_between(meter, t0: float, t1: float) -> list[tuple[float, str, tuple[int, ...]]]:
    """The pushes the meter owes in (t0, t1] on their triggers, for the push setups enabled: (time of the
    trigger, push setup, ESW bits raised for an alert push). Alert pushes when ESW bits the ESW filter
    enables rise; the billing push when a billing period closes (scheduled date or MD reset); an
    event-log push for each event its log takes."""
    out = []
    if _enabled(ALERT_PUSH):
        out += [(t, ALERT_PUSH, tuple(sorted(bits))) for t, bits in alerts_between(meter, t0, t1)]
    if _enabled(BILLING_PUSH):
        _, recent = meter.billing_closures().upto(t1, 16)
        out += [(t, BILLING_PUSH, ()) for _stamp, t in recent if t0 < t <= t1]
    wanted = {c: p for c, p in enumerate(EVENT_PUSHES) if _enabled(p)}
    if wanted:
        out += [(e.time, wanted[e.category], ()) for e in events_between(meter, t0, t1) if e.category in wanted]
    out.sort()
    return out


def _enabled(push: str) -> bool:
    c = CONFIG.get(push)
    return c is not None and c.enabled


def invoke_id_for(due: float) -> int:
    """The long-invoke-id a push carries: the minute of its due time (mod 2^24), so a head-end's record of
    it meets the meter's record of what it owed."""
    return int(due // 60) & 0xFFFFFF


def due_between(seed: int, meter_id: int, push: str, t0: float, t1: float, schedule: str | None = None) -> list:
    """Every scheduled push of the meter in (t0, t1]."""
    out = []
    t = next_due(seed, meter_id, push, t0, schedule)
    while t <= t1:
        out.append(t)
        t = next_due(seed, meter_id, push, t, schedule)
    return out
