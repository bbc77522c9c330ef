"""What a meter measures: a load model whose values are pure functions of (seed, meter_id, time).

The model is built so that energy is exactly the integral of the power the meter reports, and can
be computed at any instant in constant time (a meter's history is never stored):

    P(t) = base * F(day) * S(h) * (1 + e[day][k])

- ``F(day)`` is the level of the day for the meter's consumer category: the mean load of the day's
  template (`meter_core.templates`: season, weekday/weekend/holiday) over the category's weekday
  average; the sums of F over days come from a table shared by all meters of a category;
- ``S(h)`` is the day's shape, hour of day ``h`` (IST): the template's hourly shape (mean 1) blended
  with a small smooth per-meter shape (two harmonics, mean 1) so meters of one category differ; its
  integral has a closed form;
- ``e[day][k]`` is a seeded deviation per 15-minute interval ``k``, centred so that the day's
  energy is exactly ``24 * base * F(day)`` (drawn from a ``random.Random`` seeded by meter and
  day, and cached for the day in use).

Reactive and apparent energy follow from a power factor fixed per meter and phase: ``Q = k * P`` and
``S = sqrt(1 + k**2) * P`` for the totals. Voltages, frequency and the jitter of the instantaneous
values do not enter energy and are drawn per second, seeded the same way.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import random
import struct
from dataclasses import dataclass

from meter_core import templates as tpl
from meter_core._util import mix64
from meter_core.identity import MeterKind

DAY = 86400.0
INTERVAL = 900.0  # seconds of one deviation step
INTERVALS_PER_DAY = 96
IST_SECONDS = 330 * 60
_TWO_PI = 2.0 * math.pi
_SQRT3 = math.sqrt(3.0)


def _rng(*parts: int) -> random.Random:
    """A ``random.Random`` seeded by a hash of integer ``parts`` (stable across processes)."""
    digest = hashlib.blake2b(struct.pack(f">{len(parts)}q", *parts), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


# Stream numbers keep the draws for different purposes apart.
_PARAMS, _DEVIATIONS, _WEATHER, _DAY_NOISE = 1, 2, 4, 5


@dataclass(frozen=True, slots=True)
class MeterParams:
    """The constants of one meter's load, drawn once from (seed, meter_id)."""

    seed: int
    meter_id: int
    kind: MeterKind
    install_time: float  # Unix time the meter started counting (its registers were 0 then)
    base_power: float  # W, mean over a day of a weekday
    harmonic1: tuple[float, float]  # (amplitude, hour of the peak)
    harmonic2: tuple[float, float]
    deviation: float  # half-width of the per-interval deviation before centring
    phase_share: tuple[float, float, float]  # share of active power per phase, summing to 1
    phase_pf: tuple[float, float, float]  # lagging power factor per phase
    nominal_voltage: float  # phase-to-neutral, V (primary for CT/PT meters)
    voltage_offset: tuple[float, float, float]  # per phase, fraction of nominal (feeder position)
    ct_ratio: int
    pt_ratio: int
    category: str = "residential"  # consumer category of the templates
    blend: float = 0.2  # share of the meter's own smooth shape in its daily shape


def meter_params(seed: int, meter_id: int, kind: MeterKind, epoch_start: float) -> MeterParams:
    """The load constants of meter ``meter_id`` of the fleet with ``seed``.

    Installation falls in the three years before ``epoch_start``, at midnight IST.
    """
    r = _rng(seed, meter_id, _PARAMS)
    install_day = math.floor((epoch_start + IST_SECONDS) / DAY) - r.randrange(30, 3 * 365)
    install_time = install_day * DAY - IST_SECONDS
    if kind is MeterKind.SINGLE_PHASE:
        base = r.uniform(150.0, 900.0)  # a household: 3.6-21.6 kWh a day
        nominal, ct, pt = 230.0, 1, 1
        share = (1.0, 0.0, 0.0)
    elif kind is MeterKind.THREE_PHASE:
        base = r.uniform(1500.0, 9000.0)  # shops, small offices and workshops
        nominal, ct, pt = 230.0, 1, 1
        a, b = r.uniform(0.25, 0.4), r.uniform(0.25, 0.4)
        share = (a, b, 1.0 - a - b)
    else:
        base = r.uniform(120_000.0, 1_200_000.0)  # an 11 kV HT consumer
        nominal = 11000.0 / _SQRT3
        ct = r.choice((10, 20, 40, 60, 80))  # 50/5 .. 400/5
        pt = 100  # 11000/110
        a, b = r.uniform(0.3, 0.36), r.uniform(0.3, 0.36)
        share = (a, b, 1.0 - a - b)
    category = _draw_category(r, kind)
    if category == "residential" and kind is MeterKind.THREE_PHASE:
        base = r.uniform(400.0, 2000.0)  # a large house on three phases
    elif category == "agricultural_pump" and kind is not MeterKind.CT_PT:
        base = r.uniform(400.0, 900.0) if kind is MeterKind.SINGLE_PHASE else r.uniform(1200.0, 2500.0)
    a1 = r.uniform(0.25, 0.45)
    a2 = r.uniform(0.1, 0.25)  # a1 + a2 <= 0.7 keeps s(h) >= 0.3
    pf = tuple(r.uniform(0.86, 0.99) if s > 0 else 1.0 for s in share)
    return MeterParams(
        seed=seed,
        meter_id=meter_id,
        kind=kind,
        install_time=install_time,
        base_power=base,
        harmonic1=(a1, r.uniform(18.0, 21.0)),  # evening peak
        harmonic2=(a2, r.uniform(8.0, 11.0)),  # morning bump
        deviation=r.uniform(0.05, 0.1),
        phase_share=share,
        phase_pf=pf,
        nominal_voltage=nominal,
        voltage_offset=tuple(r.uniform(-0.04, 0.03) for _ in range(3)),
        ct_ratio=ct,
        pt_ratio=pt,
        category=category,
        # pumps run on or off with the supply hours; other loads keep some of their own rhythm
        blend=0.0 if category == "agricultural_pump" else r.uniform(0.1, 0.3),
    )


# Consumer categories per meter kind (shares): households on single phase, shops and workshops on
# three phase, HT industry and large commercial on CT/PT.
_CATEGORY_SHARES = {
    MeterKind.SINGLE_PHASE: (("residential", 0.85), ("commercial", 0.10), ("agricultural_pump", 0.05)),
    MeterKind.THREE_PHASE: (("commercial", 0.45), ("residential", 0.25), ("industrial", 0.15),
                            ("agricultural_pump", 0.15)),
    MeterKind.CT_PT: (("industrial", 0.7), ("commercial", 0.3)),
}


def _draw_category(r: random.Random, kind: MeterKind) -> str:
    u = r.random()
    acc = 0.0
    for name, share in _CATEGORY_SHARES[kind]:
        acc += share
        if u < acc:
            return name
    return _CATEGORY_SHARES[kind][-1][0]


# -- the calendar of a category, shared by every meter of it -------------------------------------------

_D0 = (_dt.date(2019, 1, 1) - _dt.date(1970, 1, 1)).days  # first IST day the tables cover (a Tuesday)
_CATEGORY_SEED = {name: i for i, name in enumerate(tpl.CATEGORIES)}


class CategoryDays:
    """Per IST day: the template in force, its level F and the running sum of F (from `_D0`)."""

    _all: dict[str, CategoryDays] = {}

    def __init__(self, category: str) -> None:
        self.category = category
        self.ref = tpl.weekday_mean_kw(category)
        self.levels: list[float] = []
        self.prefix: list[float] = [0.0]
        self.shapes: list[tuple] = []  # (hourly shape, its cumulative integral at each hour)
        self._cache: dict[tuple, tuple] = {}

    @classmethod
    def of(cls, category: str) -> CategoryDays:
        days = cls._all.get(category)
        if days is None:
            days = cls._all[category] = cls(category)
        return days

    def _extend(self, day: int) -> None:
        while _D0 + len(self.levels) <= day:
            date = _dt.date(1970, 1, 1) + _dt.timedelta(days=_D0 + len(self.levels))
            key = (tpl.season_of(date), tpl.day_type_of(date, self.category))
            entry = self._cache.get(key)
            if entry is None:
                t = tpl.TEMPLATES[(self.category, *key)]
                shape = t.shape
                cum = [0.0]
                for v in shape:
                    cum.append(cum[-1] + v)
                cum[-1] = 24.0
                entry = self._cache[key] = (t.mean_kw / self.ref, shape, tuple(cum))
            # the weather: a day's level moves for the whole category (seeded by category and day)
            weather = 1.0 + _rng(_CATEGORY_SEED[self.category], _D0 + len(self.levels), _WEATHER).uniform(-0.06, 0.06)
            level = entry[0] * weather
            self.levels.append(level)
            self.prefix.append(self.prefix[-1] + level)
            self.shapes.append(entry[1:])

    def day(self, day: int) -> tuple[float, float, tuple, tuple]:
        """(F(day), sum of F before day, hourly shape, its cumulative integral) of IST day ``day``."""
        i = max(day, _D0) - _D0
        if i >= len(self.levels):
            self._extend(day)
        shape, cum = self.shapes[i]
        return self.levels[i], self.prefix[i], shape, cum


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

    __slots__ = ("params", "_seed", "_meter", "_days", "_day", "_dev", "_cum", "_shape", "_tcum", "_level",
                 "_before", "_k", "_s_over_p", "_origin", "_week_no", "_week_levels", "_week_run")

    def __init__(self, params: MeterParams) -> None:
        self.params = params
        self._seed = params.seed
        self._meter = params.meter_id
        self._days = CategoryDays.of(params.category)
        self._day = None
        self._dev: list[float] = []
        self._cum: list[float] = []
        self._shape: tuple = ()
        self._tcum: tuple = ()
        self._level = 1.0
        self._before = 0.0
        self._week_no = None
        self._week_levels: list[float] = []
        self._week_run: list[float] = []
        share, pf = params.phase_share, params.phase_pf
        # Q = k * P with k = sum(share_i * tan(phi_i)); S of the totals is sqrt(P^2 + Q^2).
        self._k = sum(s * math.tan(math.acos(p)) for s, p in zip(share, pf, strict=True))
        self._s_over_p = math.sqrt(1.0 + self._k * self._k)
        self._origin = 0.0
        self._origin = self._active_integral(params.install_time)

    # -- the shape ----------------------------------------------------------------------------------

    def _own(self, h: float) -> float:
        (a1, p1), (a2, p2) = self.params.harmonic1, self.params.harmonic2
        return 1.0 + a1 * math.cos(_TWO_PI * (h - p1) / 24.0) + a2 * math.cos(2 * _TWO_PI * (h - p2) / 24.0)

    def _own_integral(self, h: float) -> float:
        """Integral of the meter's own shape from hour 0 to hour ``h``, in hours."""
        (a1, p1), (a2, p2) = self.params.harmonic1, self.params.harmonic2
        c1 = 24.0 / _TWO_PI
        c2 = 12.0 / _TWO_PI
        return (
            h
            + a1 * c1 * (math.sin(_TWO_PI * (h - p1) / 24.0) - math.sin(-_TWO_PI * p1 / 24.0))
            + a2 * c2 * (math.sin(2 * _TWO_PI * (h - p2) / 24.0) - math.sin(-2 * _TWO_PI * p2 / 24.0))
        )

    def _shape_at(self, h: float) -> float:
        b = self.params.blend
        hour = min(int(h), 23)
        return (1.0 - b) * self._shape[hour] + (b * self._own(h) if b else 0.0)

    def _shape_integral(self, h: float) -> float:
        """Integral of the day's shape from hour 0 to ``h`` (the current day must be loaded)."""
        b = self.params.blend
        hour = min(int(h), 23)
        template = self._tcum[hour] + self._shape[hour] * (h - hour)
        return (1.0 - b) * template + (b * self._own_integral(h) if b else 0.0)

    def _week(self, week: int) -> tuple[list[float], list[float]]:
        """The meter's own level factor of each day of a week (weeks of 7 days from the tables' first day),
        centred so the week's energy is the category's, and their running sum (cached per week)."""
        if week != self._week_no:
            first = _D0 + 7 * week
            levels = [self._days.day(first + i)[0] for i in range(7)]
            r = _rng(self._seed, self._meter, _DAY_NOISE, week)
            noise = [r.uniform(-0.08, 0.08) for _ in range(7)]
            total = math.fsum(levels)
            mean = math.fsum(f * n for f, n in zip(levels, noise)) / total if total > 0 else 0.0
            own = [f * (1.0 + n - mean) for f, n in zip(levels, noise)]
            run = [0.0]
            for f in own:
                run.append(run[-1] + f)
            self._week_no, self._week_levels, self._week_run = week, own, run
        return self._week_levels, self._week_run

    def _load_day(self, day: int) -> None:
        """The day's level, shape, centred deviations and their running energy (cached per day)."""
        if day == self._day:
            return
        _, before, self._shape, self._tcum = self._days.day(day)
        week, i = divmod(max(day, _D0) - _D0, 7)
        levels, run = self._week(week)
        # whole weeks come from the shared table; the days of this week before ``day`` from the meter's own
        self._level = levels[i]
        self._before = self._days.day(_D0 + 7 * week)[1] + run[i]
        self._day = day  # _shape_integral below reads the new shape
        r = _rng(self._seed, self._meter, _DEVIATIONS, day)
        d = self.params.deviation
        dev = [r.uniform(-d, d) for _ in range(INTERVALS_PER_DAY)]
        edges = [self._shape_integral(k * 0.25) for k in range(INTERVALS_PER_DAY + 1)]
        weights = [edges[k + 1] - edges[k] for k in range(INTERVALS_PER_DAY)]
        total = math.fsum(weights)
        mean = math.fsum(w * x for w, x in zip(weights, dev)) / total if total > 0 else 0.0
        dev = [x - mean for x in dev]  # weighted mean zero: the day's energy is its shape's, 24 h
        cum = [0.0]
        acc = 0.0
        for w, x in zip(weights, dev):
            acc += w * (1.0 + x)
            cum.append(acc)
        cum[-1] = 24.0  # exactly, by construction; drop the rounding
        self._dev, self._cum = dev, cum

    def _active_integral(self, t: float) -> float:
        """Active energy (Wh) from the tables' first day to ``t``, minus the value at installation."""
        local = t + IST_SECONDS
        day = math.floor(local / DAY)
        seconds = local - day * DAY
        self._load_day(day)
        k = min(int(seconds // INTERVAL), INTERVALS_PER_DAY)
        partial = self._cum[k]
        if k < INTERVALS_PER_DAY and seconds != k * INTERVAL:  # on an interval edge the running sum is all
            h = seconds / 3600.0
            partial += (self._shape_integral(h) - self._shape_integral(k * 0.25)) * (1.0 + self._dev[k])
        return self.params.base_power * (24.0 * self._before + self._level * partial) - self._origin

    # -- what the meter reports ----------------------------------------------------------------------

    def active_power(self, t: float) -> float:
        """Total active power (W) at ``t``: the derivative of `energy`'s active import."""
        if t < self.params.install_time:
            return 0.0
        local = t + IST_SECONDS
        day = math.floor(local / DAY)
        seconds = local - day * DAY
        self._load_day(day)
        k = min(int(seconds // INTERVAL), INTERVALS_PER_DAY - 1)
        return self.params.base_power * self._level * self._shape_at(seconds / 3600.0) * (1.0 + self._dev[k])

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
        # per-second jitter: five seeded uniforms from a 64-bit mix (a Random per second costs more)
        h = mix64((self._seed * 0x100000001B3) ^ (self._meter << 34) ^ (int(t) & 0x3FFFFFFFF))
        r = _Uniforms(h)
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


class _Uniforms:
    """``uniform(a, b)`` draws from successive 64-bit mixes of a seed (enough for a handful of values)."""

    __slots__ = ("h",)

    def __init__(self, h: int) -> None:
        self.h = h

    def uniform(self, a: float, b: float) -> float:
        self.h = mix64(self.h)
        return a + (b - a) * (self.h / 18446744073709551616.0)


def _neutral_current(currents, pfs) -> float:
    """Magnitude of the phasor sum of three phase currents 120 degrees apart, each lagging by phi."""
    re = im = 0.0
    for i, (c, pf) in enumerate(zip(currents, pfs, strict=True)):
        angle = -i * _TWO_PI / 3.0 - math.acos(pf)
        re += c * math.cos(angle)
        im += c * math.sin(angle)
    return math.hypot(re, im)
