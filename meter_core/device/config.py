"""What a fleet's settings say about every meter: its push setups, load templates and supply events.

`DeviceConfig` is one immutable value, built from the fleet's defaults in PostgreSQL
(`DeviceConfig.from_rows`) or left at the built-in defaults, and handed to each `Meter`; nothing of it
lives in a module global, and what is derived from it (template lookups, the days of each consumer
category) is kept on the value itself, so a new configuration needs no cache cleared.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from meter_core.device import powerquality
from meter_core.device import templates as tpl
from meter_core.device.datagen import CategoryDays
from meter_core.device.powerquality import PowerQualityConfig
from meter_core.device.templates import LoadProfileTemplate

# Schedules of the periodic pushes (the seed's push_schedules types): period in seconds, aligned to IST
# midnight. The alert push goes on an ESW change, not on a schedule.
SCHEDULE_SECONDS = {"FIFTEEN_MIN": 900, "THIRTY_MIN": 1800, "ONE_HOUR": 3600, "FOUR_HOUR": 14400,
                    "EIGHT_HOUR": 28800, "TWELVE_HOUR": 43200, "TWENTY_FOUR_HOUR": 86400}
# push_schedules types of the pushes that go on their trigger rather than a period
TRIGGERS = ("ON_ALARM", "ON_BILLING", "ON_EVENT")

INSTANT_PUSH = "0.0.25.9.0.255"
ALERT_PUSH = "0.4.25.9.0.255"
BLOCK_LOAD_PUSH = "0.5.25.9.0.255"
DAILY_LOAD_PUSH = "0.6.25.9.0.255"
# Billing push (the closed period's billing profile entry) and one push per event log (its new entry):
# OBIS codes as one IS 15959 communication module uses them (0.103 vs 0.132 for billing differ between
# sources; event-log pushes are vendor-specific; UNCONFIRMED). Event-log pushes are off by default.
BILLING_PUSH = "0.103.25.9.0.255"
EVENT_PUSHES = tuple(f"0.{120 + c}.25.9.0.255" for c in range(7))
NAMES = {INSTANT_PUSH: "Instant push setup", ALERT_PUSH: "Alert push setup",
         BLOCK_LOAD_PUSH: "Block load push setup", DAILY_LOAD_PUSH: "Daily load push setup",
         BILLING_PUSH: "Billing push setup", **{p: f"Event log {c} push setup" for c, p in enumerate(EVENT_PUSHES)}}
TRIGGER_OF = {ALERT_PUSH: "ON_ALARM", BILLING_PUSH: "ON_BILLING", **{p: "ON_EVENT" for p in EVENT_PUSHES}}


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
DEFAULT_PUSHES: tuple[PushSetupConfig, ...] = (
    PushSetupConfig(INSTANT_PUSH, "FIFTEEN_MIN", 60),
    PushSetupConfig(ALERT_PUSH, None, 60),
    PushSetupConfig(BLOCK_LOAD_PUSH, "THIRTY_MIN", 300),
    PushSetupConfig(DAILY_LOAD_PUSH, "TWENTY_FOUR_HOUR", 900),
    PushSetupConfig(BILLING_PUSH, None, 900),
    *(PushSetupConfig(p, None, 60, enabled=False) for p in EVENT_PUSHES),
)


def push_setups_from_rows(rows: list[dict], base: tuple[PushSetupConfig, ...] = DEFAULT_PUSHES,
                          ) -> tuple[PushSetupConfig, ...]:
    """``base`` with these rows of push_setups (fleet defaults) over it, each with its schedule type from
    push_schedules (``schedule_type``: a period, ON_ALARM, or None). A row for a push setup these meters
    do not have is ignored."""
    config = {c.logical_name: c for c in base}
    for r in rows:
        ln_ = r["logical_name"]
        if ln_ not in config:
            continue
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
    return tuple(config.values())


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """The fleet's settings every meter follows (see the module's docstring). Hashable: the object model
    of a kind is built once per push setups (`meter_core.cosem.build.model_for`)."""

    pushes: tuple[PushSetupConfig, ...] = DEFAULT_PUSHES
    templates: tuple[LoadProfileTemplate, ...] = tpl.DEFAULT_TEMPLATES
    power_quality: tuple[PowerQualityConfig, ...] = powerquality.DEFAULT_CONFIG
    # derived once per value: push setups by logical name, templates by key, category days in use
    push: dict[str, PushSetupConfig] = field(init=False, repr=False, compare=False, hash=False)
    _table: dict = field(init=False, repr=False, compare=False, hash=False)
    _days: dict = field(init=False, repr=False, compare=False, hash=False)
    _hash: int = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.pushes, self.templates, self.power_quality)))
        object.__setattr__(self, "push", {c.logical_name: c for c in self.pushes})
        default = self.templates is tpl.DEFAULT_TEMPLATES or self.templates == tpl.DEFAULT_TEMPLATES
        object.__setattr__(self, "_table", None if default else tpl.table(self.templates))
        object.__setattr__(self, "_days", {})

    def __hash__(self) -> int:  # computed once: the value keys the object model of every meter's requests
        return self._hash

    @classmethod
    def from_rows(cls, *, pushes: list[dict] | None = None, templates: list[dict] | None = None,
                  power_quality: list[dict] | None = None) -> DeviceConfig:
        """The configuration of the fleet's defaults as PostgreSQL holds them (rows of push_setups with
        their schedule types, load_profile_templates, power_quality_events_config); None: built-in."""
        return cls(
            DEFAULT_PUSHES if pushes is None else push_setups_from_rows(pushes),
            tpl.DEFAULT_TEMPLATES if templates is None else tpl.from_rows(templates),
            powerquality.DEFAULT_CONFIG if power_quality is None else powerquality.from_rows(power_quality),
        )

    def with_destination(self, destination: str) -> DeviceConfig:
        """Pushes to ``destination`` ("host:port") wherever a push setup names none (dial mode's --hes)."""
        return dataclasses.replace(self, pushes=tuple(
            c if c.destination else dataclasses.replace(c, destination=destination) for c in self.pushes))

    def scheduled(self) -> dict[str, str]:
        """The enabled push setups that push on a schedule, with their schedule types."""
        return {c.logical_name: c.schedule for c in self.pushes if c.enabled and c.schedule is not None}

    def enabled(self, push: str) -> bool:
        c = self.push.get(push)
        return c is not None and c.enabled

    def category_days(self, category: str) -> CategoryDays:
        """The load model's days of consumer ``category`` under these templates (computed once)."""
        if self._table is None:
            return CategoryDays.of(category)
        days = self._days.get(category)
        if days is None:
            days = self._days[category] = CategoryDays(category, self._table)
        return days


DEFAULT_DEVICE = DeviceConfig()
