"""A meter's history: what was in force when, as functions of true (simulated) time.

A real meter captures a profile entry once, into memory, and never recomputes it; a setting a
head-end gave it holds from the moment it was given, and survives a power cycle. A meter of this
simulator computes its values from (seed, meter_id, time) instead of storing them, so it does the
same the other way round: every setting a head-end can change is a *timeline* (the value in force
from each moment on), the meter's clock is a piecewise function of true time (`MeterClock`), and
a profile entry is captured when the meter's clock reaches a boundary (`Captures`). An entry's
stamp, its capture time and its values are then fixed the moment it is captured, whatever a
head-end changes later, and any process can compute them again from the same history.

Capture rule of the periodic profiles (block load, daily load, demand integration periods): an
entry is captured at true time ``t`` when the last boundary (``k * period``, aligned on IST
midnight) that the meter's clock has reached is later than the stamp of the entry before; its
stamp is that boundary. Hence:

- a clock running normally captures at every boundary;
- a clock set forward across boundaries captures once, at the set, stamped with the last boundary
  it passed: the blocks skipped have no entry, the one captured is short;
- a clock set back captures again only once it passes the last stamp: that block is long, and
  stamps only ever grow (none repeats, so a profile read by range and a table keyed by capture time
  agree);
- a period change moves the grid from then on; demand integration restarts at it.

UNCONFIRMED as the rule of any particular IS 15959 meter (the standard leaves what a meter does on a
time set to the utility's specification); it is the simplest rule under which no entry is ever
captured twice or recomputed, and every joule lands in exactly one block.

Billing closes at each scheduled billing date the clock reaches (same rule, with the dates of the
billing schedule in force), and at each MD reset a head-end asks for (stamped with the meter clock
at the reset, to the hundredth of a second a date-time carries). An MD reset while a clock set back
still shows a time before the last close is stamped a hundredth after that close instead: billing
stamps only grow too, so a billing row is never stamped before one captured earlier, and no two
share a stamp (the billing table is keyed by it). UNCONFIRMED likewise: a meter may instead refuse
the reset or stamp it with its clock out of order; the event log's MD-reset entry keeps the clock.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as _dt
import math

from meter_core.device.clock import IST_S

INF = math.inf
_HUNDREDTH = 0.01

# A timeline: ((since, value), ...) with ``since`` ascending, the first -inf (the factory value).


def value_at(timeline: tuple, t: float):
    """The value of ``timeline`` in force at ``t`` (a change at ``t`` is in force at ``t``)."""
    if len(timeline) == 1 or t >= timeline[-1][0]:
        return timeline[-1][1]
    lo, hi = 0, len(timeline)
    while lo < hi:  # bisect_right on the ``since`` of each entry
        mid = (lo + hi) // 2
        if timeline[mid][0] <= t:
            lo = mid + 1
        else:
            hi = mid
    return timeline[lo - 1][1]


def changed(timeline: tuple, t: float, value) -> tuple:
    """``timeline`` with ``value`` in force from ``t`` on (``t`` not earlier than its last change)."""
    if timeline[-1][0] >= t:  # a second change at the same instant replaces the first
        if timeline[-1][0] > t:
            raise ValueError("a setting can only change from its last change on")
        return (*timeline[:-1], (t, value)) if len(timeline) > 1 else ((t, value),)
    return (*timeline, (t, value))


def changes_after(timeline: tuple, t: float) -> list[float]:
    """The times ``timeline`` changes after ``t``."""
    return [s for s, _ in timeline if s > t]


class MeterClock:
    """The meter's real-time clock as a function of true time: piecewise, one piece per clock set.

    Piece ``i`` starts at ``starts[i]`` (true time; the first at -inf) and shows
    ``t + offset + drift * (t - ref)``: the crystal runs ``drift`` fast or slow from ``ref``, the
    moment the clock was last set (or the fleet's epoch), so each piece is increasing.
    """

    __slots__ = ("drift", "starts", "offsets", "refs", "_n")

    def __init__(self, drift: float, epoch: float, sets: tuple = ()) -> None:
        self.drift = drift
        self.starts = (-INF, *(s[0] for s in sets))
        self.offsets = (0.0, *(s[1] for s in sets))
        self.refs = (epoch, *(s[2] for s in sets))
        self._n = len(self.starts)

    def index(self, t: float) -> int:
        """The piece in force at true time ``t``."""
        if self._n == 1 or t >= self.starts[-1]:
            return self._n - 1
        return bisect.bisect_right(self.starts, t) - 1

    def at(self, t: float) -> float:
        """What the clock shows at true time ``t`` (UTC seconds)."""
        i = self.index(t)
        return t + self.offsets[i] + self.drift * (t - self.refs[i])

    def on(self, i: int, t: float) -> float:
        """What piece ``i`` shows at ``t`` (whether or not it is in force then)."""
        return t + self.offsets[i] + self.drift * (t - self.refs[i])

    def inverse(self, i: int, c: float) -> float:
        """The true time at which piece ``i`` shows ``c``."""
        d = self.drift
        return (c - self.offsets[i] + d * self.refs[i]) / (1.0 + d)

    def set_times(self, after: float) -> list[float]:
        return [s for s in self.starts[1:] if s > after]


def _merge(*lists) -> list[float]:
    return sorted(set().union(*lists))


class _Run:
    """Captures of one stretch of true time in which the clock piece and the period do not change."""

    __slots__ = ("first", "begin", "piece", "period", "jump", "k_lo", "k_hi", "restart")

    def __init__(self, first, begin, piece, period, jump, k_lo, k_hi, restart) -> None:
        self.first = first  # ordinal of the run's first capture
        self.begin = begin  # true time the stretch begins
        self.piece = piece  # clock piece in force
        self.period = period
        self.jump = jump  # stamp of a capture at ``begin`` (a clock set passed a boundary), or None
        self.k_lo = k_lo  # boundaries k_lo..k_hi (k_hi None: no end) captured as the clock reaches them
        self.k_hi = k_hi
        self.restart = restart  # the first capture's period starts at ``begin`` (demand integration restarts)

    def size(self) -> float:
        n = 0 if self.jump is None else 1
        if self.k_hi is None:
            return INF
        return n + max(0, self.k_hi - self.k_lo + 1)


class Captures:
    """The captures of a periodic profile: ordinal n (0 = the first after ``begin``) -> (stamp, time).

    ``periods`` is the timeline of the capture period (seconds dividing a day); boundaries are
    ``k * period - IST_S`` on the meter clock. With ``restart_on_change`` a period change restarts
    the capture in progress (demand integration): its entry's period starts at the change.
    """

    __slots__ = ("clock", "runs", "_firsts", "begin")

    def __init__(self, clock: MeterClock, periods: tuple, begin: float, *, restart_on_change: bool = False) -> None:
        self.clock = clock
        self.begin = begin
        clock_sets = set(clock.set_times(begin))
        period_changes = set(changes_after(periods, begin))
        breaks = [begin, *_merge(clock_sets, period_changes)]
        runs = []
        n = 0
        last = None  # stamp of the last capture
        for i, b in enumerate(breaks):
            piece = clock.index(b)
            period = value_at(periods, b)
            c0 = clock.on(piece, b)
            floor_c0 = math.floor((c0 + IST_S) / period) * period - IST_S
            jump = None
            restart = False
            if last is None:
                last = floor_c0  # the boundary before the beginning: not an entry
            else:
                if b in clock_sets and last < floor_c0 < c0:
                    jump = floor_c0
                    last = floor_c0
                if restart_on_change and b in period_changes:
                    restart = True
            k_lo = max(math.ceil((c0 + IST_S) / period), math.floor((last + IST_S) / period) + 1)
            if i + 1 < len(breaks):
                c_end = clock.on(piece, breaks[i + 1])
                k_hi = math.ceil((c_end + IST_S) / period) - 1
            else:
                k_hi = None
            run = _Run(n, b, piece, period, jump, k_lo, k_hi, restart)
            runs.append(run)
            if k_hi is not None:
                n += run.size()
                if k_hi >= k_lo:
                    last = k_hi * period - IST_S
        self.runs = runs
        self._firsts = [r.first for r in runs]

    def _run_at(self, t: float) -> _Run:
        runs = self.runs
        if len(runs) == 1 or t >= runs[-1].begin:
            return runs[-1]
        lo, hi = 0, len(runs)
        while lo < hi:
            mid = (lo + hi) // 2
            if runs[mid].begin <= t:
                lo = mid + 1
            else:
                hi = mid
        return runs[max(0, lo - 1)]

    def _time_of_k(self, run: _Run, k: int) -> float:
        return self.clock.inverse(run.piece, k * run.period - IST_S)

    def count(self, t: float) -> int:
        """How many captures happened at or before true time ``t``."""
        if t < self.begin:
            return 0
        run = self._run_at(t)
        n = run.first
        if run.jump is not None:
            n += 1  # captured at run.begin <= t
        period = run.period
        k = math.floor((self.clock.on(run.piece, t) + IST_S) / period)
        if run.k_hi is not None and k > run.k_hi:
            k = run.k_hi
        # the estimate may be a boundary off where floats round: settle it on the capture times themselves
        while k >= run.k_lo and self._time_of_k(run, k) > t:
            k -= 1
        while (run.k_hi is None or k + 1 <= run.k_hi) and self._time_of_k(run, k + 1) <= t:
            k += 1
        if k >= run.k_lo:
            n += k - run.k_lo + 1
        return n

    def _run_of(self, n: int) -> _Run:
        runs = self.runs
        if len(runs) == 1:
            return runs[0]
        return runs[bisect.bisect_right(self._firsts, n) - 1]

    def entry(self, n: int) -> tuple[float, float]:
        """(stamp on the meter clock, true capture time) of capture ``n``."""
        run = self._run_of(n)
        i = n - run.first
        if run.jump is not None:
            if i == 0:
                return run.jump, run.begin
            i -= 1
        stamp = (run.k_lo + i) * run.period - IST_S
        return stamp, self.clock.inverse(run.piece, stamp)

    def period_of(self, n: int) -> int:
        """The capture period in force when capture ``n`` was made."""
        return self._run_of(n).period

    def start_of(self, n: int) -> float:
        """True time the period of capture ``n`` began: the capture before it, the beginning, or a restart."""
        if n <= 0:
            return self.begin
        run = self._run_of(n)
        if n == run.first and run.restart:
            return run.begin
        return self.entry(n - 1)[1]

    def entries(self, n0: int, n1: int):
        """(ordinal, stamp, capture time, start of its period, capture period) for captures n0..n1-1, in
        order."""
        prev = self.start_of(n0) if n0 < n1 else 0.0
        n = n0
        while n < n1:
            run = self._run_of(n)
            piece, period = run.piece, run.period
            i = n - run.first
            if n == run.first and run.restart:
                prev = run.begin
            if run.jump is not None and i == 0:
                yield n, run.jump, run.begin, prev, period
                prev = run.begin
                n += 1
                i += 1
            k = run.k_lo + (i - (0 if run.jump is None else 1))
            end = n1 if run.k_hi is None else min(n1, run.first + int(run.size()))
            # `MeterClock.inverse(piece, stamp)`, its terms that do not change along the run computed once
            clock = self.clock
            d = clock.drift
            offset, d_ref, scale = clock.offsets[piece], d * clock.refs[piece], 1.0 + d
            while n < end:
                stamp = k * period - IST_S
                t = (stamp - offset + d_ref) / scale
                yield n, stamp, t, prev, period
                prev = t
                n += 1
                k += 1


# -- billing dates ------------------------------------------------------------------------------------


def month_of(clock_time: float) -> int:
    """The month (year * 12 + month - 1) of a meter-clock time, in IST."""
    local = _dt.datetime.fromtimestamp(clock_time + IST_S, _dt.UTC)
    return local.year * 12 + local.month - 1


def scheduled_billing(month: int, day: int, hour: int, minute: int) -> float:
    """Meter-clock UTC time of the billing date of ``month`` (day clamped to the month's length)."""
    y, m = divmod(month, 12)
    last = calendar.monthrange(y, m + 1)[1]
    return calendar.timegm((y, m + 1, min(day, last), hour, minute, 0)) - IST_S


def hundredths(clock_time: float) -> float:
    """``clock_time`` to the hundredth of a second a COSEM date-time carries (rounded down)."""
    return math.floor(clock_time * 100.0 + 1e-3) / 100.0  # 1e-3: above the float rounding of 1e9 s


class BillingClosures:
    """The billing periods a meter closed: ordinal n (1 = the first after ``begin``) -> (stamp, time).

    A period closes when the meter clock reaches a scheduled billing date later than the last
    close's stamp (the schedule of ``schedules`` in force; capture rule of the module docstring),
    and at each MD reset in ``resets`` (true times).
    """

    __slots__ = ("clock", "begin", "_closes")

    def __init__(self, clock: MeterClock, schedules: tuple, resets: tuple, begin: float) -> None:
        self.clock = clock
        self.begin = begin
        clock_sets = set(clock.set_times(begin))
        schedule_changes = set(changes_after(schedules, begin))
        reset_times = {r for r in resets if r > begin}
        breaks = [begin, *_merge(clock_sets, schedule_changes, reset_times)]
        closes: list = []  # (stamp, time) of the closes, or a lazily counted run of scheduled dates
        last = None
        for i, b in enumerate(breaks):
            piece = clock.index(b)
            day, hour, minute = value_at(schedules, b)
            c0 = clock.on(piece, b)
            m = month_of(c0)
            if scheduled_billing(m, day, hour, minute) > c0:
                m -= 1
            before = scheduled_billing(m, day, hour, minute)  # the last date the clock has reached
            if last is None:
                last = before
            elif b in clock_sets and last < before < c0:
                closes.append((before, b))
                last = before
            if b in reset_times:
                stamp = max(hundredths(c0), hundredths(last + _HUNDREDTH))  # never before the last close
                closes.append((stamp, b))
                last = stamp
            m_lo = month_of(c0)
            while scheduled_billing(m_lo, day, hour, minute) < c0 or scheduled_billing(m_lo, day, hour, minute) <= last:
                m_lo += 1
            if i + 1 < len(breaks):
                c_end = clock.on(piece, breaks[i + 1])
                m_hi = month_of(c_end)
                if scheduled_billing(m_hi, day, hour, minute) >= c_end:
                    m_hi -= 1
            else:
                m_hi = None
            if m_hi is None or m_hi >= m_lo:
                closes.append(_ScheduledRun(piece, day, hour, minute, m_lo, m_hi))
                if m_hi is not None:
                    last = scheduled_billing(m_hi, day, hour, minute)
        self._closes = closes

    def upto(self, t: float, limit: int) -> tuple[int, list[tuple[float, float]]]:
        """(closes at or before true time ``t``, the last ``limit`` of them as (stamp, time), oldest first)."""
        count = 0
        recent: list = []
        clock = self.clock
        for c in self._closes:
            if type(c) is tuple:
                if c[1] > t:
                    break
                count += 1
                if limit:
                    recent.append(c)
                continue
            piece, day, hour, minute, m_lo, m_hi = c.piece, c.day, c.hour, c.minute, c.m_lo, c.m_hi
            if clock.inverse(piece, scheduled_billing(m_lo, day, hour, minute)) > t:
                break
            top = month_of(clock.on(piece, t))
            if m_hi is not None and top > m_hi:
                top = m_hi
            while top >= m_lo and clock.inverse(piece, scheduled_billing(top, day, hour, minute)) > t:
                top -= 1
            count += top - m_lo + 1
            if limit:
                for month in range(max(m_lo, top - limit + 1), top + 1):
                    stamp = scheduled_billing(month, day, hour, minute)
                    recent.append((stamp, clock.inverse(piece, stamp)))
                recent = recent[-limit:]
            if m_hi is None or top < m_hi:
                break
        return count, recent[-limit:] if limit else []

    def last_before(self, t: float) -> tuple[float, float] | None:
        """(stamp, time) of the last close at or before ``t``, None before the first."""
        _, recent = self.upto(t, 1)
        return recent[-1] if recent else None


class _ScheduledRun:
    __slots__ = ("piece", "day", "hour", "minute", "m_lo", "m_hi")

    def __init__(self, piece, day, hour, minute, m_lo, m_hi) -> None:
        self.piece, self.day, self.hour, self.minute, self.m_lo, self.m_hi = piece, day, hour, minute, m_lo, m_hi


__all__ = [
    "BillingClosures", "Captures", "MeterClock", "changed", "hundredths", "month_of", "scheduled_billing",
    "value_at",
]
