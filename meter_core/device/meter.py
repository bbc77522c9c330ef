"""One IS 15959 meter: its physics (supply, relay, demand, readings, clock) as pure functions of time.

A `Meter` is one meter: its identity, its load model and its `MeterState` (what happened to it). Values
are computed from (fleet seed, meter_id, time), never stored, so a meter costs memory only while in
use. Its COSEM object model is built above this floor (`meter_core.cosem.build.model_of`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

from meter_core.codec.axdr import DATETIME_HEAD, DEVIATION_NOT_SPECIFIED, encode_datetime_at
from meter_core.device import history, logbook
from meter_core.device import powerquality as pq
from meter_core.device.clock import IST_OFFSET_MINUTES, SimClock, day_of
from meter_core.device.config import DEFAULT_DEVICE, DeviceConfig
from meter_core.device.datagen import Energy, LoadModel, meter_params
from meter_core.device.identity import FleetConfig, MeterIdentity, MeterKind, meter_identity, stable_hash
from meter_core.device.keys import MeterSecurity, derived_keys
from meter_core.device.state import MeterState

IST = IST_OFFSET_MINUTES
# Hundredths of a second, deviation "not specified" (0x8000) and clock status 0: the last 4 bytes.
_HUNDREDTHS_TAIL = tuple(bytes((h,)) + DEVIATION_NOT_SPECIFIED.to_bytes(2, "big", signed=True) + b"\x00"
                         for h in range(100))
_DAY_PERIOD = ((-math.inf, 86400),)
# Scaler of the cumulative (and block) energy registers per kind: Wh, or kWh for CT/PT meters.
ENERGY_SCALER = {MeterKind.SINGLE_PHASE: 0, MeterKind.THREE_PHASE: 0, MeterKind.CT_PT: 3}
# The limiter's threshold_normal when no head-end set one (W); CT/PT meters have no relay.
DEFAULT_LOAD_LIMIT = {MeterKind.SINGLE_PHASE: 5_000, MeterKind.THREE_PHASE: 20_000}


def default_load_limit(kind: MeterKind) -> int:
    """The limiter threshold of a meter of ``kind`` that no head-end programmed (W; 0: no limiter)."""
    return DEFAULT_LOAD_LIMIT.get(kind, 0)


CAPTURED_KEPT = 16  # closed-period entries a meter object keeps (`Meter.captured`): a billing profile's, twice


@dataclass(slots=True)
class _DemandCache:
    """Running maximum of the demands of the integration periods that ended in a billing period.

    Stamps are the meter-clock ends of the periods (boundaries of the demand integration period)."""

    period_start: float = math.nan  # true time the billing period began
    next_ordinal: int = 0  # the demand capture scanned next
    max_active: float = 0.0
    max_active_stamp: float = math.nan
    max_apparent: float = 0.0
    max_apparent_stamp: float = math.nan


# Load limiter (class 71): power checked every LIMIT_STEP s; tripped after LIMIT_MIN_OVER s above the
# threshold (min_over_threshold_duration); the relay recloses after LIMIT_LOCKOUT s.
LIMIT_STEP = 15.0
LIMIT_MIN_OVER = 60.0
LIMIT_LOCKOUT = 300.0

# Cumulative energy registers in the order `Meter.readings` returns them.
ENERGY_FIELDS = (
    "active_import_wh", "active_export_wh", "apparent_import_vah", "apparent_export_vah",
    "reactive_q1_varh", "reactive_q2_varh", "reactive_q3_varh", "reactive_q4_varh",
)


class Meter:
    """One meter: identity, load model, state; values computed on demand and cached per second."""

    __slots__ = (
        "identity", "load", "state", "port", "sim", "_inst_key", "_inst", "_energy_key", "_energy",
        "_demand", "_install_time", "_clock_second", "_clock_head", "energy_divisor", "drift", "_epoch_start",
        "_pq", "outage_cache", "tod_cache", "fleet", "tx_floor", "_hist", "config", "_captured",
    )

    def __init__(
        self,
        fleet: FleetConfig,
        meter_id: int,
        *,
        epoch_start: float,
        clock: SimClock | None = None,
        state: MeterState | None = None,
        port: int | None = None,
        config: DeviceConfig = DEFAULT_DEVICE,
    ) -> None:
        clock = clock or SimClock.real_time()
        self.sim = clock.sim
        self.fleet = fleet
        self.tx_floor = 0  # first sent invocation counter if no stored one exists (set by the fleet)
        self.identity: MeterIdentity = meter_identity(fleet, meter_id)
        params = meter_params(fleet.seed, meter_id, self.identity.kind, epoch_start)
        self.config = config
        self.load = LoadModel(params, config.category_days(params.category))
        self._install_time: float = params.install_time
        self.state = state if state is not None else MeterState()
        self.port = port
        self._inst_key = -1
        self._inst = None
        self._energy_key = -1
        self._energy = None
        self._demand = _DemandCache()
        self._captured: dict | None = None  # `captured`: entries of closed periods, once computed
        self._clock_second = -1
        self._clock_head = b""
        # Cumulative registers count in Wh (whole current) or kWh (CT/PT): the register's resolution.
        self.energy_divisor = 10.0 ** ENERGY_SCALER[self.identity.kind]
        # RTC drift: uniform in +/- drift_ppm, seeded per meter, counted from the fleet epoch or the
        # last time a head-end set the clock (for scale: +/-0.5 s a day is about 5.8 ppm).
        self.drift = ((stable_hash("rtc-drift", fleet.seed, meter_id) % 20_001) / 10_000 - 1.0) * clock.drift_ppm * 1e-6
        self._epoch_start = epoch_start
        self._pq = None
        self.outage_cache = None
        self.tod_cache = None
        self._hist: dict = {}

    def lls_secret(self) -> bytes:
        """The meter reader's LLS password in force."""
        sec = self.state.security
        return (sec.lls_password if sec is not None else None) or self.identity.lls_password.encode("ascii")

    def keys(self) -> MeterSecurity:
        """The meter's `MeterSecurity` (keys, secrets, invocation counters), created on first use."""
        sec = self.state.security
        if sec is None:
            sec = self.state.security = derived_keys(self.fleet, self.identity.meter_id, self.fleet.security_suite,
                                                     self.tx_floor)
        return sec

    # -- history: the clock and the captures, from what was in force when -----------------------------

    def has_captured(self, key: tuple) -> bool:
        """Whether `captured` holds ``key`` (its entry is served without computing)."""
        return self._captured is not None and key in self._captured

    def captured(self, key: tuple, build):
        """The entry of a closed period (a billing row: its energies, maximum demands, power-on time),
        computed by ``build`` the first time and kept while this object lives: what a meter captured never
        changes (its history only grows, issue 12), and computing a month's maximum demand from the load
        model takes tens of milliseconds. At most `CAPTURED_KEPT` entries (a billing profile's)."""
        kept = self._captured
        if kept is None:
            kept = self._captured = {}
        value = kept.get(key)
        if value is None:
            value = build()
            if len(kept) >= CAPTURED_KEPT:
                kept.clear()
            kept[key] = value
        return value

    def _derived(self, name: str, key: tuple, build):
        """A structure derived from the state's timelines, rebuilt when one of them changed (timelines
        are immutable tuples, replaced on change: compared by identity)."""
        kept = self._hist.get(name)
        if kept is not None and len(kept[0]) == len(key) and all(a is b for a, b in zip(kept[0], key)):
            return kept[1]
        value = build()
        self._hist[name] = (key, value)
        return value

    def meter_clock(self) -> history.MeterClock:
        """The meter clock as a function of true time (one piece per clock set)."""
        sets = self.state.clock_sets
        return self._derived("clock", (sets,), lambda: history.MeterClock(self.drift, self._epoch_start, sets))

    def block_captures(self) -> history.Captures:
        """The block-load captures since installation (`history.Captures`, ordinal -> stamp, time)."""
        state = self.state
        return self._derived("block", (state.clock_sets, state.capture_periods), lambda: history.Captures(
            self.meter_clock(), state.capture_periods, self._install_time))

    def daily_captures(self) -> history.Captures:
        """The daily-load captures (each IST midnight the meter clock reaches) since installation."""
        return self._derived("daily", (self.state.clock_sets,), lambda: history.Captures(
            self.meter_clock(), _DAY_PERIOD, self._install_time))

    def demand_captures(self) -> history.Captures:
        """The ends of the demand integration periods since installation (integration restarts when the
        period changes)."""
        state = self.state
        return self._derived("demand", (state.clock_sets, state.demand_periods), lambda: history.Captures(
            self.meter_clock(), state.demand_periods, self._install_time, restart_on_change=True))

    def billing_closures(self) -> history.BillingClosures:
        """The billing periods closed since installation (billing dates the clock reached, MD resets)."""
        state = self.state
        return self._derived("billing", (state.clock_sets, state.billing_schedule, state.billing_resets),
                             lambda: history.BillingClosures(self.meter_clock(), state.billing_schedule,
                                                             state.billing_resets, self._install_time))

    # -- time ---------------------------------------------------------------------------------------

    def clock(self, now: float) -> float:
        """The meter's own clock (UTC seconds): simulated time plus the offset a head-end set."""
        return self.clock_at_sim(self.sim(now))

    def clock_at_sim(self, t: float) -> float:
        """What the meter's clock showed at simulated time ``t``: the offset of the last set before ``t``,
        plus drift (the crystal runs ``drift``, a few seeded ppm, fast or slow since that set, or since
        the fleet's epoch if it never was)."""
        if not self.state.clock_sets:
            return t + self.drift * (t - self._epoch_start)
        return self.meter_clock().at(t)

    def set_clock(self, target: float, now: float) -> None:
        """Set the clock to show ``target`` now; the drift counts from here."""
        t = self.sim(now)
        state = self.state
        sets = state.clock_sets
        if sets and sets[-1][0] >= t:  # set twice in one instant: the second wins
            sets = sets[:-1]
        state.clock_sets = (*sets, (t, target - t, t))
        self._inst_key = self._energy_key = -1
        self.reset_demand_cache()

    @property
    def install_time(self) -> float:
        return self._install_time

    @property
    def install_clock(self) -> float:
        """Installation as the meter's clock shows it."""
        return self.clock_at_sim(self._install_time)

    def md_reset(self, now: float) -> None:
        """Close the billing period now (the MD reset a head-end or the billing script asks for)."""
        state = self.state
        t = self.sim(now)
        if not state.billing_resets or state.billing_resets[-1] < t:  # two in one instant close one period
            state.billing_resets = (*state.billing_resets, t)
        self.reset_demand_cache()
        logbook.record(state, logbook.TRANSACTION, logbook.EV_MD_RESET, t)

    def reset_demand_cache(self) -> None:
        """Forget the running maximum demand (period changed, MD reset): it is recomputed on demand."""
        self._demand = _DemandCache()

    def set_disconnected(self, disconnected: bool, now: float) -> None:
        """Open or close the load relay (disconnect control): the load's energy stops while open."""
        state = self.state
        if disconnected == state.disconnected:
            return
        t = self.sim(now)
        if disconnected:
            state.disconnections = (*state.disconnections, (t, None))[-64:]
        elif state.disconnections and state.disconnections[-1][1] is None:
            state.disconnections = (*state.disconnections[:-1], (state.disconnections[-1][0], t))
        state.disconnected = disconnected
        self._energy_key = self._inst_key = -1
        self.reset_demand_cache()

    def readings(self, t: float) -> tuple[int, ...]:
        """The cumulative energy registers at simulated time ``t``, in register units (`ENERGY_FIELDS`).

        Floored, as a meter's counters are: a register never shows more than it has counted, and any
        block or period energy is the difference of two readings, so blocks add up to register deltas.
        """
        state = self.state
        d = self.energy_divisor
        if state.limit_since is None and not state.disconnections and not state.supply:
            # `energy_at` written out for a meter whose relay never opened: the same operations, without
            # building the registers the load model keeps at zero
            load = self.load
            if load._batch is not None:  # in `batch()`: each time's readings computed once
                return self.readings_and_energy_many((t,))[0][0]
            a = load.active_energy(t)
            s = load._s_over_p * a
            q = load._k * a
            adjust = self._outage_adjustment(t)
            if adjust != 0.0:
                f = max(0.0, a + adjust) / a if a > 0 else 0.0
                a, s, q = a * f, s * f, q * f
            return int(a // d), 0, int(s // d), 0, int(q // d), 0, 0, 0
        e = self.energy_at(t)
        return (
            int(e.active_import_wh // d), int(e.active_export_wh // d), int(e.apparent_import_vah // d),
            int(e.apparent_export_vah // d), int(e.reactive_q1_varh // d), int(e.reactive_q2_varh // d),
            int(e.reactive_q3_varh // d), int(e.reactive_q4_varh // d),
        )

    def readings_many(self, ts) -> list[tuple[int, ...]]:
        """[`readings(t)` for t in ``ts``], computed in one pass (times in order: each day loaded once;
        within `batch()` each time is computed once)."""
        return self.readings_and_energy_many(ts)[0]

    def readings_and_energy_many(self, ts) -> tuple[list[tuple[int, ...]], list[float]]:
        """(`readings_many(ts)`, the active import energy at each time in Wh before the register floors
        it), in one pass."""
        state = self.state
        if state.limit_since is not None or state.disconnections or state.supply:
            return [self.readings(t) for t in ts], [self.energy_at(t).active_import_wh for t in ts]
        # as `readings`; only a day with an interruption has an outage adjustment
        load = self.load
        batch = load._batch
        if batch is not None:  # in `batch()`: compute the times not computed yet, keep them
            memo, active = batch.readings, batch.active
            todo = [t for t in ts if t not in memo]
            if todo:
                readings, energies = self._readings_of(todo)
                memo.update(zip(todo, readings))
                active.update(zip(todo, energies))
            return [memo[t] for t in ts], [active[t] for t in ts]
        return self._readings_of(ts)

    def _readings_of(self, ts) -> tuple[list[tuple[int, ...]], list[float]]:
        load = self.load
        s_over_p, k, d = load._s_over_p, load._k, self.energy_divisor
        floor, ist, day_s = math.floor, pq.IST_S, pq.DAY
        out = []
        energies = []
        append = out.append
        keep = energies.append
        day_now = None
        interrupted = False
        for t, a in zip(ts, load.active_energies(ts)):
            day = floor((t + ist) / day_s)
            if day != day_now:
                day_now = day
                interrupted = self._interrupted(day)
            s = s_over_p * a
            q = k * a
            if interrupted:
                adjust = self._outage_adjustment(t)
                if adjust != 0.0:
                    f = max(0.0, a + adjust) / a if a > 0 else 0.0
                    a, s, q = a * f, s * f, q * f
            append((int(a // d), 0, int(s // d), 0, int(q // d), 0, 0, 0))
            keep(a)
        return out, energies

    def clock_bytes(self, now: float) -> bytes:
        """The 12-byte date-time of the meter clock, IST wall time, deviation not specified."""
        return encode_datetime_at(self.clock(now), IST, None, 0)

    def clock_bytes_at(self, t: float) -> bytes:
        """`clock_bytes` at simulated time ``t``."""
        return encode_datetime_at(self.clock_at_sim(t), IST, None, 0)

    def clock_value(self, now: float) -> bytes:
        """The encoded clock attribute (octet-string of 12), its date and time cached per second."""
        t = self.clock(now)
        second = int(t // 1)
        if second != self._clock_second:
            self._clock_head = DATETIME_HEAD + encode_datetime_at(second, IST, None, 0)[:8]
            self._clock_second = second
        return self._clock_head + _HUNDREDTHS_TAIL[int((t - second) * 100)]

    # -- measurements -------------------------------------------------------------------------------

    def instant(self, now: float):
        """Instantaneous quantities at ``now`` (cached for the simulated second)."""
        t = self.sim(now)
        key = int(t)
        if key != self._inst_key:
            self._inst = self.instant_at(t)
            self._inst_key = key
        return self._inst

    def energy(self, now: float):
        """Cumulative energies at ``now`` (cached for the simulated second)."""
        t = self.sim(now)
        key = int(t)
        if key != self._energy_key:
            self._energy = self.energy_at(t)
            self._energy_key = key
        return self._energy

    # -- supply events and the relay --------------------------------------------------------------

    def pq_events(self, day: int):
        """The power-quality events and interruptions of IST day ``day`` (cached for the day in use)."""
        cache = self._pq
        if cache is None:
            p = self.load.params
            cache = self._pq = pq.DayCache(p.seed, p.meter_id, self.identity.kind, self.config.power_quality)
        return cache.get(day)

    @contextlib.contextmanager
    def batch(self):
        """Within the block, values computed in bulk (ground truth, backfill: weeks of profile rows)
        share what they have in common: each day of the load model and of supply events is computed
        once. Nothing is kept after the block; values are the same with or without it."""
        cache = self._pq
        if cache is None:
            p = self.load.params
            cache = self._pq = pq.DayCache(p.seed, p.meter_id, self.identity.kind, self.config.power_quality)
        with self.load.batch(), cache.hold():
            yield self

    def energy_at(self, t: float):
        """Cumulative energies at simulated time ``t``: the load model's, less what the supply and the
        relay did not let through (`meter_core.device.powerquality`)."""
        e = self.load.energy(t)
        adjust = self._outage_adjustment(t)
        if self.state.limit_since is not None:
            self.scan_limiter(t)
        if self.state.disconnections or self.state.supply:
            adjust += self._relay_and_supply_energy(t)
        if adjust == 0.0:
            return e
        a = e.active_import_wh
        f = max(0.0, a + adjust) / a if a > 0 else 0.0
        return Energy(*(getattr(e, name) * f for name in ENERGY_FIELDS))

    def _outages(self, day: int) -> list:
        """The interruptions of ``day`` with the load model's energy at their ends and their pickup
        length: [(start, end, energy at start, energy at end, pickup seconds)], cached with the day."""
        self.pq_events(day)
        entry = self._pq.entry(day)
        if entry[1] is None:
            next_midnight = (day + 1) * pq.DAY - pq.IST_S
            outs = [(e.start, e.end) for e in entry[0] if e.kind == "INTERRUPTION"]
            entry[1] = [(s0, s1, self.load.energy(s0).active_import_wh, self.load.energy(s1).active_import_wh,
                         min(pq.PICKUP, next_midnight - s1)) for s0, s1 in outs] or [None]
        return entry[1]

    def _interrupted(self, day: int) -> bool:
        """Whether IST day ``day`` has an interruption (whose energy `_outage_adjustment` moves); a day
        whose events are not computed yet is drawn only as far as that is decided."""
        cache = self._pq
        kept = cache.days.get(day) if cache is not None else None
        if kept is None:
            held = cache is not None and cache.held
            if held and day in cache.quiet:
                return False
            p = self.load.params
            found = pq.has_interruption(p.seed, p.meter_id, self.identity.kind, day, self.config.power_quality)
            if held and not found:
                cache.quiet.add(day)
            return found
        return bool(kept[0]) and self._outages(day)[0] is not None

    def _outage_adjustment(self, t: float) -> float:
        day = math.floor((t + pq.IST_S) / pq.DAY)  # day_of(t)
        cache = self._pq
        kept = cache.days.get(day) if cache is not None else None
        if kept is None:
            if not self.pq_events(day):
                return 0.0
            outages = self._outages(day)
        elif not kept[0]:
            return 0.0
        else:
            outages = kept[1] if kept[1] is not None else self._outages(day)
        adjust = 0.0
        for o in outages:
            if o is None or t <= o[0]:
                continue
            s0, s1, e0, e1, pickup = o
            lost = e1 - e0
            if t <= s1:
                adjust -= self.load.energy(t).active_import_wh - e0
            elif t < s1 + pickup:
                adjust -= lost * (1.0 - (t - s1) / pickup)
        return adjust

    def _relay_and_supply_energy(self, t: float) -> float:
        """Active energy (Wh) up to ``t`` that the relay's open intervals and the injected supply changes
        took from (negative) or added to what the load drew through the supply's own interruptions: a
        sweep over their start and end times, the load drawn times 0 wherever the relay is open or the
        supply off, times the product of the load factors in force elsewhere (so an interruption during
        a power failure takes nothing twice)."""
        state = self.state
        marks = []
        for start, end in state.disconnections:
            if start < t:
                marks.append((start, 1, 0.0))
                if end is not None and end < t:
                    marks.append((end, -1, 0.0))
        for start, end, factor in state.supply:
            if start < t:
                marks.append((start, 1, factor))
                if end is not None and end < t:
                    marks.append((end, -1, factor))
        if not marks:
            return 0.0
        marks.sort(key=lambda m: (m[0], m[1]))
        model, outage = self.load.energy, self._outage_adjustment

        def drawn(x: float) -> float:  # what the load drew with the supply's own interruptions
            return model(x).active_import_wh + outage(x)

        adjust = 0.0
        active: list[float] = []
        last = marks[0][0]
        e_last = drawn(last)
        for when, step, factor in (*marks, (t, 0, 1.0)):
            if when > last:
                e_now = drawn(when)
                m = 0.0 if 0.0 in active else math.prod(active)
                adjust += (m - 1.0) * (e_now - e_last)
                last, e_last = when, e_now
            if step > 0:
                active.append(factor)
            elif step < 0:
                active.remove(factor)
        return adjust

    def supply_factor(self, t: float) -> float:
        """The injected supply change in force at simulated ``t``: 0.0 without supply, else the load factor
        (1.0: none)."""
        m = 1.0
        for start, end, factor in self.state.supply:
            if start <= t and (end is None or t < end):
                if factor == 0.0:
                    return 0.0
                m *= factor
        return m

    def supply_off(self, t: float) -> bool:
        """Whether the meter has no supply at simulated ``t`` (a generated interruption or an injected
        power failure)."""
        if self.state.supply and self.supply_factor(t) == 0.0:
            return True
        return any(e.kind == "INTERRUPTION" and e.start <= t < e.end for e in self.pq_events(day_of(t)))

    def change_supply(self, factor: float | None, now: float, duration: float | None = None) -> bool:
        """An injected supply change from now: ``factor`` 0.0 = power failure, > 0 = the load times
        ``factor``, None = restore (end the power failure and load changes in force). Ends after
        ``duration`` simulated seconds if given. Returns whether anything changed. A power failure logs
        101 and, when it ends, 102 (the power log), as a generated interruption does."""
        t = self.sim(now)
        state = self.state
        off = self.supply_factor(t) == 0.0
        if factor is not None and factor != 0.0 and off:
            return False  # no supply: nothing draws a load
        changed = False
        if factor is None or factor == 0.0:
            # a restore ends what is in force; a power failure ends the load changes (the load comes back
            # as modelled when the supply does)
            kept = []
            for start, end, f in state.supply:
                if (end is None or end > t) and (factor is None or f != 0.0):
                    if f == 0.0:
                        logbook.withdraw_after(state, logbook.POWER, 102, t)  # its end, logged ahead
                        logbook.record(state, logbook.POWER, 102, t)
                    end, changed = t, True
                kept.append((start, end, f))
            state.supply = tuple(kept)
        if factor is None or off:
            self._supply_changed()
            return changed
        end = None if duration is None else t + duration
        state.supply = (*state.supply, (t, end, float(factor)))[-64:]
        if factor == 0.0:
            logbook.record(state, logbook.POWER, 101, t)
            if end is not None:
                logbook.record(state, logbook.POWER, 102, end)
        self._supply_changed()
        return True

    def restore_tampers(self, now: float) -> bool:
        """End the injected tampers in force that IS 15959 logs a restoration for (magnet, neutral
        disturbance): their restoration now, instead of when their duration would have run out."""
        t = self.sim(now)
        bits = logbook.tamper_bits(self.state, t)
        restored = False
        for category, restore, bit in logbook.TAMPERS.values():
            if restore is not None and bit in bits:
                logbook.withdraw_after(self.state, category, restore, t)
                logbook.record(self.state, category, restore, t)
                restored = True
        return restored

    def _supply_changed(self) -> None:
        self._energy_key = self._inst_key = -1
        self.outage_cache = None
        self.reset_demand_cache()

    def programmed(self, code: int, now: float) -> None:
        """A head-end changed the meter's programme now: the programming counter and its transaction
        event ``code``."""
        self.state.programming_count += 1
        logbook.record(self.state, logbook.TRANSACTION, code, self.sim(now))

    def record_event(self, category: int, code: int, now: float) -> None:
        """Log an event that happened to this meter now (transaction, control, tamper)."""
        logbook.record(self.state, category, code, self.sim(now))

    def inject_tamper(self, code: int, now: float, duration: float | None = None) -> None:
        """A tamper (201 magnet, 203 neutral disturbance, 251 cover open) starting now; it restores
        after ``duration`` simulated seconds where IS 15959 has a restoration event."""
        category, restore, _bit = logbook.TAMPERS[code]
        t = self.sim(now)
        logbook.record(self.state, category, code, t)
        if restore is not None and duration is not None:
            logbook.record(self.state, category, restore, t + duration)
        self.state.tamper_count += 1

    def instant_at(self, t: float):
        """Instantaneous quantities at simulated time ``t``, with the supply events and the relay."""
        inst = self.load.instant(t)
        day = day_of(t)
        day_events = self.pq_events(day)
        events = pq.active_at(day_events, t)
        pickup = 0.0
        for o in self._outages(day) if day_events else ():
            if o is not None and o[1] <= t < o[1] + o[4]:
                pickup += (o[3] - o[2]) * 3600.0 / o[4]  # W: the outage's energy spread over the pickup
        off = self.relay_open(t)
        if self.state.supply:
            m = self.supply_factor(t)
            if m == 0.0:
                return pq.apply(inst, [pq.PqEvent("INTERRUPTION", t, t + 1.0, 0.0, -1)], 0.0, off, self.load.params)
            if m != 1.0:
                inst = pq.scale_load(inst, m)
        if not events and not pickup and not off:
            return inst
        return pq.apply(inst, events, pickup, off, self.load.params)

    def relay_open(self, t: float) -> bool:
        """Whether the load relay is open at simulated ``t`` (remote disconnect or a load-limit trip)."""
        state = self.state
        if state.limit_since is not None:
            self.scan_limiter(t)
        for start, end in state.disconnections:
            if start <= t and (end is None or t < end):
                return True
        return False

    def scan_limiter(self, t: float) -> None:
        """Trip the relay wherever the load stayed above the limiter's threshold long enough.

        From the moment a head-end set the threshold, power is checked every `LIMIT_STEP` simulated
        seconds (once per instant, in time order, so any read order gives the same trips): above the
        threshold for `min_over_threshold_duration` opens the relay for `LIMIT_LOCKOUT` seconds
        (over-load 215 and relay 301, then 216 and 302 when it closes again).
        """
        state = self.state
        x = state.limit_scanned
        if x >= t:
            return
        limits = state.load_limits
        default = default_load_limit(self.identity.kind)
        over_since = state.limit_over_since
        lockout_end = -math.inf
        for start, end in state.disconnections:
            if end is not None and start <= x < end:
                lockout_end = end
        while x < t:
            x += LIMIT_STEP
            if x < lockout_end or self._remote_open(x):
                over_since = None
                continue
            if self._supply_power(x) > (history.value_at(limits, x) or default):
                if over_since is None:
                    over_since = x
                elif x - over_since >= LIMIT_MIN_OVER:
                    end = x + LIMIT_LOCKOUT
                    state.disconnections = (*state.disconnections, (x, end))[-512:]
                    for when, category, code in ((x, logbook.OTHER, 215), (x, logbook.CONTROL, 301),
                                                 (end, logbook.OTHER, 216), (end, logbook.CONTROL, 302)):
                        logbook.record(state, category, code, when)
                    lockout_end, over_since = end, None
                    self._energy_key = self._inst_key = -1
            else:
                over_since = None
        state.limit_scanned, state.limit_over_since = x, over_since

    def _remote_open(self, t: float) -> bool:
        for start, end in self.state.disconnections:
            if end is None and start <= t:
                return True
        return False

    def _supply_power(self, t: float) -> float:
        """Active power the load draws at ``t`` with the supply events, before the relay."""
        day = day_of(t)
        events = self.pq_events(day)
        if any(e.kind == "INTERRUPTION" and e.start <= t < e.end for e in events):
            return 0.0
        power = self.load.active_power(t)
        if self.state.supply:
            power *= self.supply_factor(t)
        for o in self._outages(day) if events else ():
            if o is not None and o[1] <= t < o[1] + o[4]:
                power += (o[3] - o[2]) * 3600.0 / o[4]
        return power

    def billing_period_start(self, t: float) -> float:
        """Start of the billing period holding simulated time ``t``: the last close (or installation)."""
        last = self.billing_closures().last_before(t)
        return self._install_time if last is None else max(last[1], self._install_time)

    def billing_count(self, now: float) -> int:
        """Billing periods closed since installation (scheduled billing dates and MD resets)."""
        return self.billing_closures().upto(self.sim(now), 0)[0]

    def max_demand(self, now: float) -> _DemandCache:
        """Maximum demand (W and VA) of the integration periods ended since the billing period began,
        and the meter-clock end of the period it occurred in.

        Demands are register-reading differences over each demand integration period, so they agree
        with the block-load profile's energies.
        """
        return self._max_demand_at(self.sim(now))

    def _max_demand_at(self, t: float) -> _DemandCache:
        start = self.billing_period_start(t)
        d = self._demand
        if d.period_start != start:
            self._demand = d = _DemandCache(period_start=start, next_ordinal=self.demand_captures().count(start))
        self._scan_demand(d, t)
        return d

    def max_demand_pending(self, now: float, step: float) -> Iterator[None] | None:
        """The work before `max_demand` answers without a long pause, when more than ``step`` simulated
        seconds of demand periods are not scanned yet (a meter object built late in a billing period), as
        an iterator scanning ``step`` seconds of them per step; None if there is little to do."""
        t = self.sim(now)
        start = self.billing_period_start(t)
        caps = self.demand_captures()
        d = self._demand
        n0 = d.next_ordinal if d.period_start == start else caps.count(start)
        if n0 >= caps.count(t) or caps.entry(n0)[1] >= t - step:
            return None
        return self._max_demand_steps(caps.entry(n0)[1], t, step)

    def _max_demand_steps(self, begin: float, t: float, step: float) -> Iterator[None]:
        until = begin
        while until < t:
            until = min(until + step, t)
            self._max_demand_at(until)
            yield

    def _scan_demand(self, d: _DemandCache, until: float) -> None:
        """Extend ``d`` with every demand integration period that ended by simulated time ``until``.

        A period's demand is its energy over its length: the integration period in force, or the time it
        really lasted if longer (a clock set back); a period that began before the billing period is
        counted from the billing period's start."""
        caps = self.demand_captures()
        n1 = caps.count(until)
        n0 = d.next_ordinal
        if n1 <= n0:
            return
        entries = list(caps.entries(n0, n1))
        start = d.period_start
        first = max(entries[0][3], start)
        times = [first, *(e[2] for e in entries)]
        # each period starts where the one before ended, unless the integration restarted in between
        regular = all(entries[i][3] == entries[i - 1][2] for i in range(1, len(entries)))
        with self.load.batch():  # (each day template's interval weights computed once, not once a day)
            act, app = self._demand_registers(times)
            if not regular:  # the registers where each period started, too
                starts = sorted({max(e[3], start) for e in entries} - set(times))
                at = dict(zip(times, zip(act, app)))
                if starts:
                    at.update(zip(starts, zip(*self._demand_registers(starts))))
        scale = 3600.0 * self.energy_divisor
        max_active, max_apparent = d.max_active, d.max_apparent
        prev_t, prev_a, prev_s = first, act[0], app[0]
        for (_n, stamp, t, t0, period), a1, s1 in zip(entries, act[1:], app[1:]):
            if not regular:
                t0 = max(t0, start)
                prev_t, (prev_a, prev_s) = t0, at[t0]
            length = t - prev_t
            if length < period:
                length = period
            active = (a1 - prev_a) * scale / length
            apparent = (s1 - prev_s) * scale / length
            if active > max_active:
                max_active, d.max_active_stamp = active, stamp
            if apparent > max_apparent:
                max_apparent, d.max_apparent_stamp = apparent, stamp
            prev_t, prev_a, prev_s = t, a1, s1
        d.max_active, d.max_apparent = max_active, max_apparent
        d.next_ordinal = n1

    def _demand_registers(self, ts) -> tuple[list[int], list[int]]:
        """The active and apparent import registers at each of ``ts`` (in order): `readings_many`'s first
        and third values, computed alone, the same way (all a maximum demand needs; a copy of `_readings_of`'s
        loop without the reactive register and the 8-tuples, 6 % of a first billing read: the maximum demand
        is checked against `readings` in tests/unit/test_bulk_values.py)."""
        state = self.state
        if state.limit_since is not None or state.disconnections or state.supply:
            rs = self.readings_many(ts)
            return [r[0] for r in rs], [r[2] for r in rs]
        load = self.load
        s_over_p, d = load._s_over_p, self.energy_divisor
        floor, ist, day_s = math.floor, pq.IST_S, pq.DAY
        act: list[int] = []
        app: list[int] = []
        put_a, put_s = act.append, app.append
        day_now = None
        interrupted = False
        for t, a in zip(ts, load.active_energies(ts)):
            day = floor((t + ist) / day_s)
            if day != day_now:
                day_now = day
                interrupted = self._interrupted(day)
            s = s_over_p * a
            if interrupted:  # as `_readings_of`
                adjust = self._outage_adjustment(t)
                if adjust != 0.0:
                    f = max(0.0, a + adjust) / a if a > 0 else 0.0
                    a, s = a * f, s * f
            put_a(int(a // d))
            put_s(int(s // d))
        return act, app

    def extend_demand(self, d: _DemandCache, until: float) -> None:
        """Extend ``d`` (from `demand_between`) with the demand periods that ended by ``until``: a long
        scan done a step at a time gives what one call over the whole span gives."""
        self._scan_demand(d, until)

    def demand_between(self, start: float, end: float) -> _DemandCache:
        """Maximum demands over the demand periods that end in (start, end] (simulated time)."""
        d = _DemandCache(period_start=start, next_ordinal=self.demand_captures().count(start))
        self._scan_demand(d, end)
        return d

    def demand_window(self, now: float) -> tuple[float, float, float]:
        """(start of the demand integration period in progress, start of the one before, its length):
        simulated times."""
        t = self.sim(now)
        caps = self.demand_captures()
        n = caps.count(t)
        start = caps.start_of(n)
        before = caps.start_of(n - 1) if n > 0 else start
        return start, before, float(caps.period_of(max(n - 1, 0)))
