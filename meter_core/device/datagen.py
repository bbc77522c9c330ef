"""What a meter measures: a load model whose values are pure functions of (seed, meter_id, time).

The model is built so that energy is exactly the integral of the power the meter reports, and can
be computed at any instant in constant time (a meter's history is never stored):

    P(t) = base * F(day) * S(h) * (1 + e[day][k])

- ``F(day)`` is the level of the day for the meter's consumer category: the mean load of the day's
  template (`meter_core.device.templates`: season, weekday/weekend/holiday) over the category's weekday
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

import contextlib
import datetime as _dt
import hashlib
import math
import operator
import random
import struct
from dataclasses import dataclass
from itertools import accumulate as _accumulate

from meter_core.device import templates as tpl
from meter_core.device.clock import DAY as _DAY
from meter_core.device.clock import IST_S
from meter_core.device.identity import MeterKind

DAY = float(_DAY)  # the load model does its day arithmetic in floats
INTERVAL = 900.0  # seconds of one deviation step
INTERVALS_PER_DAY = 96
IST_SECONDS = IST_S
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
_DEFAULT_TABLE = tpl.table(tpl.DEFAULT_TEMPLATES)
_DEFAULT_DAYS: dict[str, CategoryDays] = {}


class CategoryDays:
    """Per IST day: the template in force, its level F and the running sum of F (from `_D0`)."""

    def __init__(self, category: str, templates: dict | None = None) -> None:
        self.category = category
        self.templates = templates if templates is not None else _DEFAULT_TABLE
        self.ref = tpl.weekday_mean_kw(self.templates, category)
        self.levels: list[float] = []
        self.prefix: list[float] = [0.0]
        self.shapes: list[tuple] = []  # (hourly shape, its cumulative integral at each hour)
        self._cache: dict[tuple, tuple] = {}

    @classmethod
    def of(cls, category: str) -> CategoryDays:
        """The days of ``category`` under the default templates (computed once per process: they are
        a function of constants)."""
        days = _DEFAULT_DAYS.get(category)
        if days is None:
            days = _DEFAULT_DAYS[category] = cls(category)
        return days

    def _extend(self, day: int) -> None:
        while _D0 + len(self.levels) <= day:
            date = _dt.date(1970, 1, 1) + _dt.timedelta(days=_D0 + len(self.levels))
            key = (tpl.season_of(date), tpl.day_type_of(date, self.category))
            entry = self._cache.get(key)
            if entry is None:
                t = self.templates[(self.category, *key)]
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
                 "_before", "_k", "_s_over_p", "_origin", "_week_no", "_week_levels", "_week_run", "_batch")

    def __init__(self, params: MeterParams, days: CategoryDays | None = None) -> None:
        """``days``: the meter's category under the fleet's templates (default: the default templates)."""
        self.params = params
        self._seed = params.seed
        self._meter = params.meter_id
        self._days = days if days is not None else CategoryDays.of(params.category)
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
        self._batch: _Batch | None = None
        share, pf = params.phase_share, params.phase_pf
        # Q = k * P with k = sum(share_i * tan(phi_i)); S of the totals is sqrt(P^2 + Q^2).
        self._k = sum(s * math.tan(math.acos(p)) for s, p in zip(share, pf, strict=True))
        self._s_over_p = math.sqrt(1.0 + self._k * self._k)
        self._origin = 0.0
        self._origin = self._active_integral(params.install_time)

    # -- many values at once ------------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self):
        """Within the block, days loaded once are kept (with the meter's own shape on the quarter-hour
        grid), so computing many values over a few weeks loads each day once; all dropped on exit.

        Values are the same with or without: only repeated work is saved (for history computed in bulk:
        ground truth, backfill)."""
        if self._batch is not None:  # nested: the outer block keeps the days
            yield self
            return
        self._batch = _Batch()
        try:
            yield self
        finally:
            self._batch = None

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

    def _own_grid(self) -> list[float]:
        """`_own_integral` at each quarter hour 0, 0.25, ..., 24 (the same operations, in one pass)."""
        (a1, p1), (a2, p2) = self.params.harmonic1, self.params.harmonic2
        k1 = a1 * (24.0 / _TWO_PI)
        k2 = a2 * (12.0 / _TWO_PI)
        s1 = math.sin(-_TWO_PI * p1 / 24.0)
        s2 = math.sin(-2 * _TWO_PI * p2 / 24.0)
        sin = math.sin
        return [h + k1 * (sin(_TWO_PI * (h - p1) / 24.0) - s1) + k2 * (sin(2 * _TWO_PI * (h - p2) / 24.0) - s2)
                for h in _GRID_H]

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
        batch = self._batch
        if batch is not None:
            kept = batch.days.get(day)
            if kept is not None:
                self._shape, self._tcum, self._level, self._before, self._dev, self._cum = kept
                self._day = day
                return
        _, before, shape, tcum = self._days.day(day)
        self._shape, self._tcum = shape, tcum
        week, i = divmod(max(day, _D0) - _D0, 7)
        levels, run = self._week(week)
        # whole weeks come from the shared table; the days of this week before ``day`` from the meter's own
        self._level = levels[i]
        self._before = self._days.day(_D0 + 7 * week)[1] + run[i]
        self._day = day
        r = _rng(self._seed, self._meter, _DEVIATIONS, day)
        d = self.params.deviation
        # r.uniform(-d, d), INTERVALS_PER_DAY times: -d + (d - -d) * r.random()
        lo, width, rand = -d, d - -d, r.random
        dev = [lo + width * rand() for _ in range(INTERVALS_PER_DAY)]
        # the share of the day's shape in each interval, and their sum (the same for every day of a template)
        kept = batch.weights.get(id(tcum)) if batch is not None else None
        if kept is not None and kept[0] is shape and kept[1] is tcum:
            weights, total = kept[2], kept[3]
        else:
            weights = self._weights(shape, tcum)
            total = math.fsum(weights)
            if batch is not None:
                batch.weights[id(tcum)] = (shape, tcum, weights, total)
        mean = math.fsum(map(_mul, weights, dev)) / total if total > 0 else 0.0
        dev = [x - mean for x in dev]  # weighted mean zero: the day's energy is its shape's, 24 h
        cum = list(_accumulate([w * (1.0 + x) for w, x in zip(weights, dev)], initial=0.0))
        cum[-1] = 24.0  # exactly, by construction; drop the rounding
        self._dev, self._cum = dev, cum
        if batch is not None:
            batch.days[day] = (shape, tcum, self._level, self._before, dev, cum)

    def _weights(self, shape: tuple, tcum: tuple) -> list[float]:
        """The day's shape integral over each interval, from the integral at each quarter hour
        (`_shape_integral(k * 0.25)`, term for term, for the template ``shape``, ``tcum``)."""
        b = self.params.blend
        ob = 1.0 - b
        if b:
            batch = self._batch
            own = batch.own if batch is not None else None
            if own is None:
                own = self._own_grid()
                if batch is not None:
                    batch.own = own
            edges = [ob * (tcum[hr] + shape[hr] * fr) + b * o for hr, fr, o in zip(_GRID_HOUR, _GRID_FRAC, own)]
        else:
            edges = [ob * (tcum[hr] + shape[hr] * fr) + 0.0 for hr, fr in zip(_GRID_HOUR, _GRID_FRAC)]
        return list(map(_sub, edges[1:], edges[:-1]))

    def _active_integral(self, t: float) -> float:
        """Active energy (Wh) from the tables' first day to ``t``, minus the value at installation."""
        local = t + IST_SECONDS
        day = math.floor(local / DAY)
        seconds = local - day * DAY
        if day != self._day:
            self._load_day(day)
        k = int(seconds // INTERVAL)
        if k >= INTERVALS_PER_DAY:
            k = INTERVALS_PER_DAY
            partial = self._cum[k]
        else:
            partial = self._cum[k]
            if seconds != k * INTERVAL:  # on an interval edge the running sum is all
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

    def active_energy(self, t: float) -> float:
        """`energy`'s active import alone (Wh), without building the other registers."""
        if t > self.params.install_time:
            e = self._active_integral(t)
            return e if e > 0.0 else 0.0  # max(0.0, e)
        return 0.0

    def active_energies(self, ts) -> list[float]:
        """[`active_energy(t)` for t in ts], in one pass (times in order load each day once)."""
        install = self.params.install_time
        base = self.params.base_power
        origin = self._origin
        floor = math.floor
        out: list[float] = []
        append = out.append
        day_now = None
        cum: list[float] = []
        level = b24 = 0.0
        for t in ts:
            if not t > install:
                append(0.0)
                continue
            local = t + IST_SECONDS
            day = floor(local / DAY)
            seconds = local - day * DAY
            if day != day_now:
                self._load_day(day)
                day_now, cum, level, b24 = day, self._cum, self._level, 24.0 * self._before
            k = int(seconds // INTERVAL)
            if k >= INTERVALS_PER_DAY:
                partial = cum[INTERVALS_PER_DAY]
            else:
                partial = cum[k]
                if seconds != k * INTERVAL:  # as in `_active_integral`
                    h = seconds / 3600.0
                    partial += (self._shape_integral(h) - self._shape_integral(k * 0.25)) * (1.0 + self._dev[k])
            e = base * (b24 + level * partial) - origin
            append(e if e > 0.0 else 0.0)
        return out

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
        return Instant(*self.instant_values(t))

    def instant_values(self, t: float) -> tuple:
        """`instant`'s fields as a plain tuple, in `Instant`'s order: `active_power` and the per-second
        jitter (five seeded uniforms from a 64-bit mix: `mix64`, and ``a + (b - a) * u`` as
        ``random.uniform`` draws them) written out, operation for operation."""
        batch = self._batch
        c = batch.instant if batch is not None else None
        if c is None:
            c = self._instant_constants()
            if batch is not None:
                batch.instant = c
        install, base, blend, (a1, p1), (a2, p2), mix0, nominal, w1, w2, w3, s1, s2, s3, f1, f2, f3, single, \
            neutral_trig = c
        # active_power(t)
        if t < install:
            power = 0.0
        else:
            local = t + IST_SECONDS
            day = math.floor(local / DAY)
            seconds = local - day * DAY
            if day != self._day:
                self._load_day(day)
            k = int(seconds // INTERVAL)
            if k > INTERVALS_PER_DAY - 1:
                k = INTERVALS_PER_DAY - 1
            h = seconds / 3600.0
            hour = int(h)
            if hour > 23:
                hour = 23
            if blend:
                own = 1.0 + a1 * math.cos(_TWO_PI * (h - p1) / 24.0) + a2 * math.cos(2 * _TWO_PI * (h - p2) / 24.0)
                shape = (1.0 - blend) * self._shape[hour] + blend * own
            else:
                shape = (1.0 - blend) * self._shape[hour] + 0.0
            power = base * self._level * shape * (1.0 + self._dev[k])
        # the jitter: h = mix64(seed mix), then uniform draws each mixing again
        x = (mix0 ^ (int(t) & 0x3FFFFFFFF)) + _GOLDEN & _M64
        x = ((x ^ (x >> 30)) * _MIX1) & _M64
        x = ((x ^ (x >> 27)) * _MIX2) & _M64
        x ^= x >> 31
        x = (x + _GOLDEN) & _M64
        x = ((x ^ (x >> 30)) * _MIX1) & _M64
        x = ((x ^ (x >> 27)) * _MIX2) & _M64
        x ^= x >> 31
        v1 = nominal * (w1 + (-0.006 + _V_WIDTH * (x / 18446744073709551616.0)))
        x = (x + _GOLDEN) & _M64
        x = ((x ^ (x >> 30)) * _MIX1) & _M64
        x = ((x ^ (x >> 27)) * _MIX2) & _M64
        x ^= x >> 31
        v2 = nominal * (w2 + (-0.006 + _V_WIDTH * (x / 18446744073709551616.0)))
        x = (x + _GOLDEN) & _M64
        x = ((x ^ (x >> 30)) * _MIX1) & _M64
        x = ((x ^ (x >> 27)) * _MIX2) & _M64
        x ^= x >> 31
        v3 = nominal * (w3 + (-0.006 + _V_WIDTH * (x / 18446744073709551616.0)))
        if single:
            v2 = v3 = 0.0
        c1 = power * s1 / (v1 * f1) if s1 > 0 and v1 > 0 else 0.0
        c2 = power * s2 / (v2 * f2) if s2 > 0 and v2 > 0 else 0.0
        c3 = power * s3 / (v3 * f3) if s3 > 0 and v3 > 0 else 0.0
        if single:
            # Whole current through the phase returns on the neutral, less a little leakage.
            x = (x + _GOLDEN) & _M64
            x = ((x ^ (x >> 30)) * _MIX1) & _M64
            x = ((x ^ (x >> 27)) * _MIX2) & _M64
            x ^= x >> 31
            neutral = c1 * (1.0 - (0.0 + (0.004 - 0.0) * (x / 18446744073709551616.0)))
        else:
            # `_neutral_current`: the phasor sum of the three currents, 120 degrees apart, each lagging
            cos1, sin1, cos2, sin2, cos3, sin3 = neutral_trig
            neutral = math.hypot(0.0 + c1 * cos1 + c2 * cos2 + c3 * cos3, 0.0 + c1 * sin1 + c2 * sin2 + c3 * sin3)
        x = (x + _GOLDEN) & _M64
        x = ((x ^ (x >> 30)) * _MIX1) & _M64
        x = ((x ^ (x >> 27)) * _MIX2) & _M64
        x ^= x >> 31
        frequency = 50.0 + (-0.08 + _F_WIDTH * (x / 18446744073709551616.0))
        reactive = self._k * power
        apparent = self._s_over_p * power
        pf_total = power / apparent if apparent > 0 else 1.0
        return ((v1, v2, v3), (c1, c2, c3), self.params.phase_pf, pf_total, frequency, power, reactive, apparent,
                neutral)

    def _instant_constants(self) -> tuple:
        p = self.params
        o1, o2, o3 = p.voltage_offset
        s1, s2, s3 = p.phase_share
        f1, f2, f3 = p.phase_pf
        trig = []
        for i, pf in enumerate(p.phase_pf):
            angle = -i * _TWO_PI / 3.0 - math.acos(pf)
            trig += (math.cos(angle), math.sin(angle))
        return (p.install_time, p.base_power, p.blend, p.harmonic1, p.harmonic2,
                (self._seed * 0x100000001B3) ^ (self._meter << 34), p.nominal_voltage, 1.0 + o1, 1.0 + o2, 1.0 + o3,
                s1, s2, s3, f1, f2, f3, p.kind is MeterKind.SINGLE_PHASE, tuple(trig))


class _Batch:
    """What `LoadModel.batch` keeps: loaded days, the meter's own shape on the quarter-hour grid, and
    the interval weights of each day template met."""

    __slots__ = ("days", "own", "weights", "instant", "readings", "active")

    def __init__(self) -> None:
        self.days: dict[int, tuple] = {}
        # the meter's register readings by simulated time (`Meter.readings`, while its relay never opened),
        # and its active import energy there before the register floors it (Wh)
        self.readings: dict[float, tuple] = {}
        self.active: dict[float, float] = {}
        self.own: list[float] | None = None
        self.instant: tuple | None = None  # `LoadModel._instant_constants`
        self.weights: dict[int, tuple] = {}  # id(template's cumulative shape) -> (shape, tcum, weights, sum)


# The quarter hours of a day: h = k * 0.25, its hour (the last is 24.0 in hour 23) and h - hour.
_GRID_H = tuple(k * 0.25 for k in range(INTERVALS_PER_DAY + 1))
_GRID_HOUR = tuple(min(int(h), 23) for h in _GRID_H)
_GRID_FRAC = tuple(h - hour for h, hour in zip(_GRID_H, _GRID_HOUR, strict=True))
_sub, _mul = operator.sub, operator.mul
# mix64's constants, and the widths of the jitter draws (b - a of `_Uniforms.uniform(a, b)`)
_M64 = (1 << 64) - 1
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_V_WIDTH = 0.006 - -0.006
_F_WIDTH = 0.08 - -0.08


def _neutral_current(currents, pfs) -> float:
    """Magnitude of the phasor sum of three phase currents 120 degrees apart, each lagging by phi."""
    re = im = 0.0
    for i, (c, pf) in enumerate(zip(currents, pfs, strict=True)):
        angle = -i * _TWO_PI / 3.0 - math.acos(pf)
        re += c * math.cos(angle)
        im += c * math.sin(angle)
    return math.hypot(re, im)
