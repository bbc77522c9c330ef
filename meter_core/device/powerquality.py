"""Power-quality events and supply interruptions, as pure functions of (seed, meter_id, day).

Each IST day of each meter draws its events from `PowerQualityConfig` rows (the seed table
``power_quality_events_config``): for every enabled event type, a Poisson number of events with the
configured mean per day, each with a start, a duration and a magnitude drawn uniformly, kept inside
the day and not overlapping others of its type. A day's events are computed when first needed and
cached for that day, like the load model's deviations, so an idle meter stores nothing.

What the events do (event codes and ESW bits as above; the ground-truth columns of README):

- INTERRUPTION: the supply is off: voltages, currents and power read zero, power-failure events
  101/102 go to the power log, ESW bit 85 (last gasp) is set while it lasts and bit 86 (first
  breath) for an hour after. The energy the consumer would have used during the outage is used
  after it instead, spread over up to two hours ("cold load pickup": thermostatic loads catching up),
  so a day's energy is the load model's and energy stays a closed form. Interruptions end by 23:00
  so the pickup fits in the day; a block inside an outage has zero energy and zero voltage.
- VOLTAGE_SAG / VOLTAGE_SWELL: voltages times the magnitude (constant-power loads: currents rise or
  fall, power unchanged); low- / over-voltage events 9/10 and 7/8, ESW bits 4 and 3.
- VOLTAGE_UNBALANCE (polyphase meters): one phase down by the magnitude, the others up by half of it;
  events 11/12, ESW bit 5.
- FREQUENCY_VARIATION, HARMONIC_DISTORTION: IS 15959 has no event code for them; the first shifts the
  frequency register, the second changes nothing a meter of these kinds reports (no THD object).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
from dataclasses import dataclass

from meter_core.device.clock import DAY, IST_S
from meter_core.device.identity import MeterKind, stable_hash

LAST_END = 23 * 3600  # interruptions end by 23:00 so the pickup after them stays in the day
PICKUP = 7200.0


@dataclass(frozen=True, slots=True)
class PowerQualityConfig:
    """One row of ``power_quality_events_config``."""

    event_type: str
    probability_per_day: float  # mean number of events per day
    min_duration_s: float
    max_duration_s: float
    magnitude_min: float
    magnitude_max: float
    phases: str = "ANY"  # ANY (one phase drawn) or ALL
    enabled: bool = True


# Defaults for a rural/semi-urban Indian distribution feeder (order of magnitude of published
# reliability indices: a few interruptions a week, frequent sustained low voltage in the evening).
DEFAULT_CONFIG: tuple[PowerQualityConfig, ...] = (
    PowerQualityConfig("INTERRUPTION", 0.25, 60, 5400, 0.0, 0.0, "ALL"),
    PowerQualityConfig("VOLTAGE_SAG", 0.5, 120, 1800, 0.72, 0.88),
    PowerQualityConfig("VOLTAGE_SWELL", 0.12, 60, 900, 1.10, 1.20),
    PowerQualityConfig("VOLTAGE_UNBALANCE", 0.1, 300, 3600, 0.05, 0.15),
    PowerQualityConfig("FREQUENCY_VARIATION", 0.3, 60, 600, -0.6, 0.6, "ALL"),
    PowerQualityConfig("HARMONIC_DISTORTION", 0.2, 600, 7200, 0.05, 0.12, "ALL"),
)

def from_rows(rows: list[dict]) -> tuple[PowerQualityConfig, ...]:
    """The supply-event configuration of rows of ``power_quality_events_config``, in the defaults' order."""
    return tuple(
        PowerQualityConfig(r["event_type"], float(r["probability_per_day"]), float(r["min_duration_s"]),
                           float(r["max_duration_s"]), float(r["magnitude_min"]), float(r["magnitude_max"]),
                           r.get("phases", "ANY"), bool(r.get("enabled", True)))
        for r in sorted(rows, key=lambda r: _TYPE_ORDER.index(r["event_type"]))
    )


# Fewer supply events for bigger connections (an 11 kV consumer sits on a stiffer, better-kept feeder).
KIND_FACTOR = {MeterKind.SINGLE_PHASE: 1.0, MeterKind.THREE_PHASE: 0.7, MeterKind.CT_PT: 0.3}
_TYPE_INDEX = {c.event_type: i for i, c in enumerate(DEFAULT_CONFIG)}
_TYPE_ORDER = [c.event_type for c in DEFAULT_CONFIG]


@dataclass(frozen=True, slots=True)
class PqEvent:
    """One event of one meter: simulated start and end (UTC seconds), magnitude, phase (0-2, or -1 all)."""

    kind: str
    start: float
    end: float
    magnitude: float
    phase: int


def _poisson(r: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= r.random()
        if p <= limit:
            return k
        k += 1


def day_events(seed: int, meter_id: int, kind: MeterKind, day: int,
               config: tuple[PowerQualityConfig, ...] = DEFAULT_CONFIG) -> tuple[PqEvent, ...]:
    """The events of IST day number ``day`` for a meter, sorted by start."""
    r = random.Random(stable_hash("pq-day", seed, meter_id, day))
    factor = KIND_FACTOR[kind]
    midnight = day * DAY - IST_S
    out: list[PqEvent] = []
    for c in config:
        count = _poisson(r, c.probability_per_day * factor)  # always drawn: keeps streams aligned
        if not c.enabled or (c.event_type == "VOLTAGE_UNBALANCE" and kind is MeterKind.SINGLE_PHASE):
            continue
        chosen: list[PqEvent] = []
        for _ in range(count):
            # whole seconds, as meters time-stamp events
            duration = float(round(r.uniform(c.min_duration_s, c.max_duration_s)))
            latest = (LAST_END if c.event_type == "INTERRUPTION" else DAY) - duration
            start = float(math.floor(r.uniform(0.0, max(0.0, latest))))
            magnitude = r.uniform(c.magnitude_min, c.magnitude_max)
            phase = -1 if c.phases == "ALL" or kind is MeterKind.SINGLE_PHASE else r.randrange(3)
            e = PqEvent(c.event_type, midnight + start, midnight + start + duration, magnitude, phase)
            if all(e.end <= o.start or e.start >= o.end for o in chosen):
                chosen.append(e)
        out += chosen
    out.sort(key=lambda e: (e.start, _TYPE_INDEX.get(e.kind, 99)))
    return tuple(out)


def has_interruption(seed: int, meter_id: int, kind: MeterKind, day: int,
                     config: tuple[PowerQualityConfig, ...] = DEFAULT_CONFIG) -> bool:
    """Whether `day_events` of the day holds an interruption, drawing the day's events only as far as
    that is decided (up to the interruption rows of the configuration: the first, by default)."""
    last = max((i for i, c in enumerate(config) if c.event_type == "INTERRUPTION"), default=-1)
    r = random.Random(stable_hash("pq-day", seed, meter_id, day))
    factor = KIND_FACTOR[kind]
    for c in config[:last + 1]:
        count = _poisson(r, c.probability_per_day * factor)  # the same draws as `day_events`
        if not c.enabled or (c.event_type == "VOLTAGE_UNBALANCE" and kind is MeterKind.SINGLE_PHASE):
            continue
        if c.event_type == "INTERRUPTION" and count:
            return True  # the first event of a type is always kept
        for _ in range(count):
            duration = float(round(r.uniform(c.min_duration_s, c.max_duration_s)))
            r.uniform(0.0, max(0.0, (LAST_END if c.event_type == "INTERRUPTION" else DAY) - duration))
            r.uniform(c.magnitude_min, c.magnitude_max)
            if not (c.phases == "ALL" or kind is MeterKind.SINGLE_PHASE):
                r.randrange(3)
    return False


class DayCache:
    """A meter's events of the last few IST days in use (a block or a day read spans two; kept small)."""

    __slots__ = ("seed", "meter_id", "kind", "config", "days", "held", "quiet")

    def __init__(self, seed: int, meter_id: int, kind: MeterKind,
                 config: tuple[PowerQualityConfig, ...] = DEFAULT_CONFIG) -> None:
        self.seed, self.meter_id, self.kind, self.config = seed, meter_id, kind, config
        # day -> [events, interruptions with their energies (filled by the meter) or None]
        self.days: dict[int, list] = {}
        self.held = False
        self.quiet: set[int] = set()  # while held: days found to have no interruption (their events not drawn)

    def entry(self, day: int) -> list:
        e = self.days.get(day)
        if e is None:
            if len(self.days) >= 3 and not self.held:
                del self.days[next(iter(self.days))]
            e = self.days[day] = [day_events(self.seed, self.meter_id, self.kind, day, self.config), None]
        return e

    @contextlib.contextmanager
    def hold(self):
        """Within the block every day computed is kept (values computed in bulk over weeks compute
        each day once); on exit the cache is cut back to its last three days."""
        if self.held:  # nested: the outer block cuts back
            yield self
            return
        self.held = True
        try:
            yield self
        finally:
            self.held = False
            self.quiet.clear()
            while len(self.days) > 3:
                del self.days[next(iter(self.days))]

    def get(self, day: int) -> tuple[PqEvent, ...]:
        return self.entry(day)[0]


def active_at(events: tuple[PqEvent, ...], t: float) -> list[PqEvent]:
    return [e for e in events if e.start <= t < e.end]


def apply(inst, events: list[PqEvent], pickup_w: float, disconnected: bool, params):
    """``inst`` (a `meter_core.device.datagen.Instant`) as the events active at its time make it."""
    volts = list(inst.voltage)
    freq = inst.frequency
    power = inst.active_power + pickup_w
    for e in events:
        if e.kind == "INTERRUPTION":
            return dataclasses.replace(inst, voltage=(0.0, 0.0, 0.0), current=(0.0, 0.0, 0.0), active_power=0.0,
                                       reactive_power=0.0, apparent_power=0.0, current_neutral=0.0, frequency=0.0)
        if e.kind in ("VOLTAGE_SAG", "VOLTAGE_SWELL"):
            for i in range(3) if e.phase < 0 else (e.phase,):
                volts[i] *= e.magnitude
        elif e.kind == "VOLTAGE_UNBALANCE":
            for i in range(3):
                volts[i] *= (1.0 - e.magnitude) if i == e.phase else (1.0 + e.magnitude / 2)
        elif e.kind == "FREQUENCY_VARIATION":
            freq += e.magnitude
    if params.kind is MeterKind.SINGLE_PHASE:
        volts[1] = volts[2] = 0.0
    if disconnected:
        power = 0.0
    scale = power / inst.active_power if inst.active_power > 0 else 0.0
    currents = tuple(
        (power * share / (v * pf)) if v > 0 and share > 0 and power > 0 else 0.0
        for v, share, pf in zip(volts, params.phase_share, params.phase_pf)
    )
    return dataclasses.replace(
        inst, voltage=tuple(volts), current=currents, frequency=freq, active_power=power,
        reactive_power=inst.reactive_power * scale, apparent_power=inst.apparent_power * scale,
        current_neutral=inst.current_neutral * scale,
    )


def scale_load(inst, factor: float):
    """``inst`` with the load drawn ``factor`` times what the model draws (an injected load change)."""
    return dataclasses.replace(
        inst, current=tuple(c * factor for c in inst.current), active_power=inst.active_power * factor,
        reactive_power=inst.reactive_power * factor, apparent_power=inst.apparent_power * factor,
        current_neutral=inst.current_neutral * factor)


def _off_intervals(events, t0: float, t1: float) -> list[tuple[float, float]]:
    """The parts of [t0, t1] without supply (interruptions merged), in order."""
    spans = sorted((max(e.start, t0), min(e.end, t1)) for e in events
                   if e.kind == "INTERRUPTION" and e.start < t1 and e.end > t0)
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def off_seconds(events, t0: float, t1: float) -> float:
    """Seconds of [t0, t1] without supply."""
    return sum(b - a for a, b in _off_intervals(events, t0, t1))


def supplied_voltage_factors(events, t0: float, t1: float) -> tuple[tuple[float, float, float], float]:
    """(mean factor on each phase voltage over the parts of [t0, t1] with supply, seconds with supply).

    A block's averages are those of the time the meter was powered: an interruption shortens the time
    averaged over instead of pulling the mean voltage down."""
    off = _off_intervals(events, t0, t1)
    supplied = (t1 - t0) - sum(b - a for a, b in off)
    f = [1.0, 1.0, 1.0]
    if supplied <= 0:
        return (0.0, 0.0, 0.0), 0.0
    for e in events:
        if e.kind == "INTERRUPTION":
            continue
        lo, hi = max(e.start, t0), min(e.end, t1)
        if hi <= lo:
            continue
        overlap = (hi - lo) - sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in off)
        if overlap <= 0:
            continue
        w = overlap / supplied
        for i in range(3):
            if e.kind in ("VOLTAGE_SAG", "VOLTAGE_SWELL") and (e.phase < 0 or e.phase == i):
                f[i] += w * (e.magnitude - 1.0)
            elif e.kind == "VOLTAGE_UNBALANCE":
                f[i] += w * (-e.magnitude if i == e.phase else e.magnitude / 2)
    return (max(0.0, f[0]), max(0.0, f[1]), max(0.0, f[2])), supplied
