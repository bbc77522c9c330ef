"""Load profile templates: how a consumer category uses power by season and day type, and the calendar.

A template (one row of the seed table ``load_profile_templates``) gives, for a consumer category,
a season and a day type, the hourly load between a base and a peak: ``base + (peak - base) * p(h)``
with the variation pattern ``p`` (24 hourly values in [0, 1], constant through each hour). The load
model uses its shape (normalised to a mean of 1) and its level relative to the category's weekday
average over the year, so a meter's own size (its seeded mean power) stays its own.

Seasons (India Meteorological Department's usage, simplified to months): WINTER December-February,
SPRING March, SUMMER April-June, MONSOON July-September, AUTUMN October-November. Day types:
HOLIDAY (the national holidays and the major festivals below), WEEKEND (Sunday, the weekly off in
most of India; commercial establishments also close), WEEKDAY otherwise.

The shapes are this simulator's, written from the general pattern of Indian load curves (evening
residential peak, summer air-conditioning at night, shops 10:00-20:00, two-shift industry with a
weekly off, irrigation pumps running only in the supply hours the utility gives agriculture). They
are defaults for a realistic fleet, not measurements.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

SEASONS = ("WINTER", "SPRING", "SUMMER", "MONSOON", "AUTUMN")
DAY_TYPES = ("WEEKDAY", "WEEKEND", "HOLIDAY")
CATEGORIES = ("residential", "commercial", "industrial", "agricultural_pump")
_SEASON_OF_MONTH = (None, "WINTER", "WINTER", "SPRING", "SUMMER", "SUMMER", "SUMMER", "MONSOON", "MONSOON",
                    "MONSOON", "AUTUMN", "AUTUMN", "WINTER")

# Fixed national holidays (Republic Day, Independence Day, Gandhi Jayanti, Christmas) and the dates of
# major festivals as published in the central government's holiday lists (Holi, Eid al-Fitr,
# Dussehra, Diwali). Lunar festival dates are best effort: a day off by one changes one day's shape.
_FIXED = ((1, 26), (8, 15), (10, 2), (12, 25))
_FESTIVALS = {
    2023: ("03-08", "04-22", "10-24", "11-12"),
    2024: ("03-25", "04-11", "10-12", "10-31"),
    2025: ("03-14", "03-31", "10-02", "10-20"),
    2026: ("03-04", "03-21", "10-20", "11-08"),
    2027: ("03-22", "03-10", "10-09", "10-29"),
    2028: ("03-11", "02-27", "09-27", "10-17"),
}
HOLIDAYS: frozenset[_dt.date] = frozenset(
    {_dt.date(y, m, d) for y in range(2020, 2031) for m, d in _FIXED}
    | {_dt.date.fromisoformat(f"{y}-{md}") for y, mds in _FESTIVALS.items() for md in mds}
)


def season_of(date: _dt.date) -> str:
    return _SEASON_OF_MONTH[date.month]


def day_type_of(date: _dt.date, category: str) -> str:
    if date in HOLIDAYS:
        return "HOLIDAY"
    if date.isoweekday() == 7:
        return "WEEKEND"
    return "WEEKDAY"


@dataclass(frozen=True, slots=True)
class LoadProfileTemplate:
    """One row of ``load_profile_templates``."""

    category: str
    season: str
    day_type: str
    interval_minutes: int
    base_load_kw: float
    peak_load_kw: float
    variation_pattern: tuple[float, ...]  # 24 hourly values in [0, 1]

    @property
    def hourly_kw(self) -> tuple[float, ...]:
        return tuple(self.base_load_kw + (self.peak_load_kw - self.base_load_kw) * p for p in self.variation_pattern)

    @property
    def mean_kw(self) -> float:
        return sum(self.hourly_kw) / 24.0

    @property
    def shape(self) -> tuple[float, ...]:
        """Hourly factors with a mean of exactly 1 (0 where the load is off)."""
        m = self.mean_kw
        return tuple(v / m for v in self.hourly_kw) if m > 0 else (1.0,) * 24

    def as_row(self) -> dict:
        return {"category": self.category, "season": self.season, "day_type": self.day_type,
                "interval_minutes": self.interval_minutes, "base_load_kw": self.base_load_kw,
                "peak_load_kw": self.peak_load_kw, "variation_pattern": list(self.variation_pattern)}


def _pattern(*points: tuple[int, float]) -> tuple[float, ...]:
    """24 hourly values from (hour, value) points, linear between them, wrapping at midnight."""
    pts = sorted(points)
    out = []
    for h in range(24):
        before = max((p for p in pts if p[0] <= h), default=(pts[-1][0] - 24, pts[-1][1]))
        after = min((p for p in pts if p[0] > h), default=(pts[0][0] + 24, pts[0][1]))
        f = (h - before[0]) / (after[0] - before[0])
        out.append(round(before[1] + f * (after[1] - before[1]), 3))
    return tuple(out)


_RES_SUMMER = _pattern((0, 0.8), (4, 0.55), (7, 0.6), (10, 0.35), (14, 0.45), (18, 0.6), (21, 1.0), (23, 0.95))
_RES_WINTER = _pattern((0, 0.15), (5, 0.2), (7, 1.0), (9, 0.6), (12, 0.3), (17, 0.4), (19, 0.95), (22, 0.4))
_RES_MILD = _pattern((0, 0.35), (5, 0.3), (7, 0.7), (10, 0.4), (14, 0.35), (18, 0.6), (20, 1.0), (23, 0.5))
_RES_HOME = _pattern((0, 0.4), (6, 0.35), (9, 0.8), (13, 0.7), (16, 0.6), (20, 1.0), (23, 0.6))
_SHOP = _pattern((0, 0.05), (8, 0.05), (10, 0.8), (13, 1.0), (17, 1.0), (20, 0.9), (21, 0.1), (23, 0.05))
_SHOP_CLOSED = _pattern((0, 0.05), (12, 0.1), (23, 0.05))
_TWO_SHIFT = _pattern((0, 0.25), (5, 0.25), (6, 1.0), (21, 1.0), (22, 0.25))
_OFF = _pattern((0, 0.15), (12, 0.2), (23, 0.15))
_PUMP_DAY = tuple(1.0 if 9 <= h < 17 else 0.0 for h in range(24))  # daytime supply to agriculture

# (category, season) -> (base kW, peak kW) per day type, scaled per meter later; only the shape and the
# ratio between templates of one category matter to a meter.
_LEVELS = {
    ("residential", "SUMMER"): (0.25, 1.6), ("residential", "WINTER"): (0.15, 0.9),
    ("residential", "MONSOON"): (0.2, 1.2), ("residential", "SPRING"): (0.18, 1.0),
    ("residential", "AUTUMN"): (0.18, 1.0),
    ("commercial", "SUMMER"): (0.5, 9.0), ("commercial", "WINTER"): (0.4, 6.0),
    ("commercial", "MONSOON"): (0.45, 7.5), ("commercial", "SPRING"): (0.4, 6.5),
    ("commercial", "AUTUMN"): (0.4, 6.5),
    ("industrial", "SUMMER"): (15.0, 105.0), ("industrial", "WINTER"): (15.0, 100.0),
    ("industrial", "MONSOON"): (15.0, 95.0), ("industrial", "SPRING"): (15.0, 100.0),
    ("industrial", "AUTUMN"): (15.0, 100.0),
    ("agricultural_pump", "SUMMER"): (0.0, 5.5), ("agricultural_pump", "WINTER"): (0.0, 5.5),
    ("agricultural_pump", "MONSOON"): (0.0, 1.5), ("agricultural_pump", "SPRING"): (0.0, 5.0),
    ("agricultural_pump", "AUTUMN"): (0.0, 3.5),
}


def _shape_for(category: str, season: str, day_type: str) -> tuple[float, ...]:
    if category == "residential":
        if day_type != "WEEKDAY":
            return _RES_SUMMER if season == "SUMMER" else _RES_HOME
        return {"SUMMER": _RES_SUMMER, "WINTER": _RES_WINTER}.get(season, _RES_MILD)
    if category == "commercial":
        return _SHOP if day_type == "WEEKDAY" else _SHOP_CLOSED
    if category == "industrial":
        return _TWO_SHIFT if day_type == "WEEKDAY" else _OFF
    return _PUMP_DAY


def _build() -> dict[tuple[str, str, str], LoadProfileTemplate]:
    out = {}
    for category in CATEGORIES:
        for season in SEASONS:
            base, peak = _LEVELS[(category, season)]
            for day_type in DAY_TYPES:
                if category == "residential" and day_type != "WEEKDAY":
                    base, peak = base * 1.1, peak * 1.1  # people at home
                out[(category, season, day_type)] = LoadProfileTemplate(
                    category, season, day_type, 60, round(base, 3), round(peak, 3),
                    _shape_for(category, season, day_type))
                base, peak = _LEVELS[(category, season)]
    return out


# The defaults (``fleet db seed`` writes them); a fleet's own come in through `DeviceConfig`.
DEFAULT_TEMPLATES: tuple[LoadProfileTemplate, ...] = tuple(_build().values())


def table(templates: tuple[LoadProfileTemplate, ...]) -> dict[tuple[str, str, str], LoadProfileTemplate]:
    """The templates by (category, season, day type)."""
    return {(t.category, t.season, t.day_type): t for t in templates}


def weekday_mean_kw(templates: dict[tuple[str, str, str], LoadProfileTemplate], category: str) -> float:
    """The category's weekday mean load averaged over the seasons (weighted by their months)."""
    months = {"WINTER": 3, "SPRING": 1, "SUMMER": 3, "MONSOON": 3, "AUTUMN": 2}
    return sum(templates[(category, s, "WEEKDAY")].mean_kw * n for s, n in months.items()) / 12.0


def rows(templates: tuple[LoadProfileTemplate, ...] = DEFAULT_TEMPLATES) -> list[dict]:
    """Templates as rows for the ``load_profile_templates`` table."""
    return [t.as_row() for t in templates]


def from_rows(rows_: list[dict]) -> tuple[LoadProfileTemplate, ...]:
    """Templates from rows of ``load_profile_templates`` (e.g. as edited in PostgreSQL), in the defaults'
    order. Every (category, season, day type) must be present."""
    new = {}
    for r in rows_:
        t = LoadProfileTemplate(r["category"], r["season"], r["day_type"], int(r["interval_minutes"]),
                                float(r["base_load_kw"]), float(r["peak_load_kw"]),
                                tuple(float(x) for x in r["variation_pattern"]))
        if len(t.variation_pattern) != 24:
            raise ValueError(f"template {t.category}/{t.season}/{t.day_type}: 24 hourly values needed")
        new[(t.category, t.season, t.day_type)] = t
    keys = [(t.category, t.season, t.day_type) for t in DEFAULT_TEMPLATES]
    missing = [k for k in keys if k not in new]
    if missing:
        raise ValueError(f"templates missing for {', '.join('/'.join(k) for k in missing[:3])}")
    return tuple(new[k] for k in keys)
