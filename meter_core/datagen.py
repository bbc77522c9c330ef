"""What a meter measures: a load model whose values are pure functions of (seed, meter_id, time).

The model is built so that energy is exactly the integral of the power the meter reports, and can
be computed at any instant in constant time (a meter's history is never stored):

    P(t) = base * w(day) * (s(h) + e[day][k])

- ``s(h)`` is a smooth daily shape of the hour of day ``h`` (IST): 1 plus two harmonics, so its mean
  over a day is exactly 1 and its integral has a closed form;
- ``e[day][k]`` is a seeded deviation per 15-minute interval ``k`` whose sum over a day is exactly
  zero (drawn, then centred), so it changes the shape of a day but not its total;
- ``w(day)`` is the weekday/weekend factor of the meter's consumer.

So a whole day holds ``24 * base * w(day)`` Wh, whole weeks have a closed form, and the energy of a
part of a day needs one day's 96 deviations (drawn from a ``random.Random`` seeded by meter and
day, and cached for the day in use). Reactive and apparent energy follow from a power factor that
is fixed per meter and phase: ``Q = k * P`` and ``S = sqrt(1 + k**2) * P`` for the totals.

Voltages, frequency and the per-interval jitter of the instantaneous values do not enter energy and
are drawn per second, seeded the same way. Issue 4 replaces the single shape with the templates of
``load_profile_templates`` (season, day type, holidays, consumer categories) on this same frame.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from dataclasses import dataclass

from meter_core.identity import MeterKind

DAY = 86400.0
INTERVAL = 900.0  # seconds of one deviation step
INTERVALS_PER_DAY = 96
IST_SECONDS = 330 * 60
# 1970-01-01 was a Thursday; day 0 of our IST day count is that Thursday.
_THURSDAY = 3  # Monday = 0
_TWO_PI = 2.0 * math.pi
_SQRT3 = math.sqrt(3.0)


def _rng(*parts: int) -> random.Random:
    """A ``random.Random`` seeded by a hash of integer ``parts`` (stable across processes)."""
    digest = hashlib.blake2b(struct.pack(f">{len(parts)}q", *parts), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


# Stream numbers keep the draws for different purposes apart.
_PARAMS, _DEVIATIONS, _JITTER = 1, 2, 3


@dataclass(frozen=True, slots=True)
class MeterParams:
    """The constants of one meter's load, drawn once from (seed, meter_id)."""

    seed: int
    meter_id: int
    kind: MeterKind
    install_time: float  # Unix time the meter started counting (its registers were 0 then)
    base_power: float  # W, mean over a day of a weekday
    weekend_factor: float
    harmonic1: tuple[float, float]  # (amplitude, hour of the peak)
    harmonic2: tuple[float, float]
    deviation: float  # half-width of the per-interval deviation before centring
    phase_share: tuple[float, float, float]  # share of active power per phase, summing to 1
    phase_pf: tuple[float, float, float]  # lagging power factor per phase
    nominal_voltage: float  # phase-to-neutral, V (primary for CT/PT meters)
    voltage_offset: tuple[float, float, float]  # per phase, fraction of nominal (feeder position)
    ct_ratio: int
    pt_ratio: int


def meter_params(seed: int, meter_id: int, kind: MeterKind, epoch_start: float) -> MeterParams:
    """The load constants of meter ``meter_id`` of the fleet with ``seed``.

    Installation falls in the three years before ``epoch_start``, at midnight IST.
    """
    r = _rng(seed, meter_id, _PARAMS)
    install_day = math.floor((epoch_start + IST_SECONDS) / DAY) - r.randrange(30, 3 * 365)
    install_time = install_day * DAY - IST_SECONDS
    if kind is MeterKind.SINGLE_PHASE:
        base = r.uniform(150.0, 900.0)  # a household: 3.6-21.6 kWh a day
        weekend = r.uniform(1.0, 1.25)
        nominal, ct, pt = 230.0, 1, 1
        share = (1.0, 0.0, 0.0)
    elif kind is MeterKind.THREE_PHASE:
        base = r.uniform(1500.0, 9000.0)  # shops, small offices and workshops
        weekend = r.uniform(0.45, 1.0)
        nominal, ct, pt = 230.0, 1, 1
        a, b = r.uniform(0.25, 0.4), r.uniform(0.25, 0.4)
        share = (a, b, 1.0 - a - b)
    else:
        base = r.uniform(120_000.0, 1_200_000.0)  # an 11 kV HT consumer
        weekend = r.uniform(0.5, 0.95)
        nominal = 11000.0 / _SQRT3
        ct = r.choice((10, 20, 40, 60, 80))  # 50/5 .. 400/5
        pt = 100  # 11000/110
        a, b = r.uniform(0.3, 0.36), r.uniform(0.3, 0.36)
        share = (a, b, 1.0 - a - b)
    a1 = r.uniform(0.25, 0.45)
    a2 = r.uniform(0.1, 0.25)  # a1 + a2 <= 0.7 keeps s(h) >= 0.3
    pf = tuple(r.uniform(0.86, 0.99) if s > 0 else 1.0 for s in share)
    return MeterParams(
        seed=seed,
        meter_id=meter_id,
        kind=kind,
        install_time=install_time,
        base_power=base,
        weekend_factor=weekend,
        harmonic1=(a1, r.uniform(18.0, 21.0)),  # evening peak
        harmonic2=(a2, r.uniform(8.0, 11.0)),  # morning bump
        deviation=r.uniform(0.05, 0.1),
        phase_share=share,
        phase_pf=pf,
        nominal_voltage=nominal,
        voltage_offset=tuple(r.uniform(-0.04, 0.03) for _ in range(3)),
        ct_ratio=ct,
        pt_ratio=pt,
    )


@dataclass(frozen=True, slots=True)
class Instant:
    """Instantaneous quantities (per phase as 3-tuples; a single-phase meter uses index 0)."""

    voltage: tuple[float, float, float]
    current: tuple[float, float, float]
    pf: tuple[float, float, float]
    pf_total: float
    frequency: float
    active_power: float
    reactive_power: float
    apparent_power: float
    current_neutral: float


@dataclass(frozen=True, slots=True)
class Energy:
    """Cumulative energy registers since installation (Wh, varh, VAh)."""

    active_import_wh: float
    active_export_wh: float
    apparent_import_vah: float
    apparent_export_vah: float
    reactive_q1_varh: float
    reactive_q2_varh: float
    reactive_q3_varh: float
    reactive_q4_varh: float


class LoadModel:
    """Power and energy of one meter at any simulated time ``t`` (Unix seconds)."""

    __slots__ = ("params", "_seed", "_meter", "_day", "_dev", "_cum", "_k", "_s_over_p", "_origin", "_w")

    def __init__(self, params: MeterParams) -> None:
        self.params = params
        self._seed = params.seed
        self._meter = params.meter_id
        self._day = None
        self._dev: list[float] = []
        self._cum: list[float] = []
        share, pf = params.phase_share, params.phase_pf
        # Q = k * P with k = sum(share_i * tan(phi_i)); S of the totals is sqrt(P^2 + Q^2).
        self._k = sum(s * math.tan(math.acos(p)) for s, p in zip(share, pf, strict=True))
        self._s_over_p = math.sqrt(1.0 + self._k * self._k)
        self._w = (1.0, params.weekend_factor)
        self._origin = 0.0
        self._origin = self._active_integral(params.install_time)

    # -- the shape ----------------------------------------------------------------------------------

    def _weekday_factor(self, day: int) -> float:
        return self._w[(day + _THURSDAY) % 7 >= 5]

    def _shape(self, h: float) -> float:
        (a1, p1), (a2, p2) = self.params.harmonic1, self.params.harmonic2
        return 1.0 + a1 * math.cos(_TWO_PI * (h - p1) / 24.0) + a2 * math.cos(2 * _TWO_PI * (h - p2) / 24.0)

    def _shape_integral(self, h: float) -> float:
        """Integral of ``s`` from hour 0 to hour ``h``, in hours."""
        (a1, p1), (a2, p2) = self.params.harmonic1, self.params.harmonic2
        c1 = 24.0 / _TWO_PI
        c2 = 12.0 / _TWO_PI
        return (
            h
            + a1 * c1 * (math.sin(_TWO_PI * (h - p1) / 24.0) - math.sin(-_TWO_PI * p1 / 24.0))
            + a2 * c2 * (math.sin(2 * _TWO_PI * (h - p2) / 24.0) - math.sin(-2 * _TWO_PI * p2 / 24.0))
        )

    def _deviations(self, day: int) -> list[float]:
        """The day's 96 centred deviations and, in ``_cum``, their running sums (cached per day)."""
        if day != self._day:
            r = _rng(self._seed, self._meter, _DEVIATIONS, day)
            d = self.params.deviation
            dev = [r.uniform(-d, d) for _ in range(INTERVALS_PER_DAY)]
            mean = math.fsum(dev) / INTERVALS_PER_DAY
            dev = [x - mean for x in dev]
            cum = [0.0]
            acc = 0.0
            for x in dev:
                acc += x
                cum.append(acc)
            cum[-1] = 0.0  # exactly zero by construction; drop the rounding
            self._day, self._dev, self._cum = day, dev, cum
        return self._dev

    def _weeks_factor(self, day: int) -> float:
        """Sum of w(d) for d in [0, day)."""
        weeks, rest = divmod(day, 7)
        total = weeks * (5.0 + 2.0 * self.params.weekend_factor)
        for d in range(weeks * 7, day):
            total += self._weekday_factor(d)
        return total

    def _active_integral(self, t: float) -> float:
        """Active energy (Wh) from day 0 to ``t``, minus the value at installation."""
        local = t + IST_SECONDS
        day = math.floor(local / DAY)
        seconds = local - day * DAY
        h = seconds / 3600.0
        dev = self._deviations(day)
        k, frac = divmod(seconds, INTERVAL)
        k = int(k)
        partial_dev = self._cum[k] * 0.25
        if k < INTERVALS_PER_DAY:
            partial_dev += dev[k] * frac / 3600.0
        day_hours = 24.0 * self._weeks_factor(day)
        today = self._weekday_factor(day) * (self._shape_integral(h) + partial_dev)
        return self.params.base_power * (day_hours + today) - self._origin

    # -- what the meter reports ----------------------------------------------------------------------

    def active_power(self, t: float) -> float:
        """Total active power (W) at ``t``: the derivative of `energy`'s active import."""
        if t < self.params.install_time:
            return 0.0
        local = t + IST_SECONDS
        day = math.floor(local / DAY)
        seconds = local - day * DAY
        dev = self._deviations(day)
        k = min(int(seconds // INTERVAL), INTERVALS_PER_DAY - 1)
        return self.params.base_power * self._weekday_factor(day) * (self._shape(seconds / 3600.0) + dev[k])

    def energy(self, t: float) -> Energy:
        p = self.params
        e = max(0.0, self._active_integral(t)) if t > p.install_time else 0.0
        q = self._k * e
        return Energy(
            active_import_wh=e,
            active_export_wh=0.0,
            apparent_import_vah=self._s_over_p * e,
            apparent_export_vah=0.0,
            reactive_q1_varh=q,
            reactive_q2_varh=0.0,
            reactive_q3_varh=0.0,
            reactive_q4_varh=0.0,
        )

    def instant(self, t: float) -> Instant:
        p = self.params
        power = self.active_power(t)
        r = _rng(self._seed, self._meter, _JITTER, int(t))
        nominal = p.nominal_voltage
        volts = tuple(nominal * (1.0 + off + r.uniform(-0.006, 0.006)) for off in p.voltage_offset)
        if p.kind is MeterKind.SINGLE_PHASE:
            volts = (volts[0], 0.0, 0.0)
        currents = []
        for v, share, pf in zip(volts, p.phase_share, p.phase_pf, strict=True):
            currents.append(power * share / (v * pf) if share > 0 and v > 0 else 0.0)
        if p.kind is MeterKind.SINGLE_PHASE:
            # Whole current through the phase returns on the neutral, less a little leakage.
            neutral = currents[0] * (1.0 - r.uniform(0.0, 0.004))
        else:
            neutral = _neutral_current(currents, p.phase_pf)
        reactive = self._k * power
        apparent = self._s_over_p * power
        pf_total = power / apparent if apparent > 0 else 1.0
        return Instant(
            voltage=volts,
            current=tuple(currents),
            pf=p.phase_pf,
            pf_total=pf_total,
            frequency=50.0 + r.uniform(-0.08, 0.08),
            active_power=power,
            reactive_power=reactive,
            apparent_power=apparent,
            current_neutral=neutral,
        )


def _neutral_current(currents, pfs) -> float:
    """Magnitude of the phasor sum of three phase currents 120 degrees apart, each lagging by phi."""
    re = im = 0.0
    for i, (c, pf) in enumerate(zip(currents, pfs, strict=True)):
        angle = -i * _TWO_PI / 3.0 - math.acos(pf)
        re += c * math.cos(angle)
        im += c * math.sin(angle)
    return math.hypot(re, im)
