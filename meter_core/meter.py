"""An IS 15959 meter: its object model per kind, and one meter's values as pure functions of time.

`model_for(kind)` builds, once per meter kind, the COSEM objects and the association views (object
lists, access rights, dispatch tables) that every meter of that kind shares. A `Meter` is one meter:
its identity, its load model and the little state a head-end can change (clock offset). Values are
computed from (fleet seed, meter_id, time), never stored, so a meter costs memory only while in use.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field

from meter_core import control, eventlog, profiles, push
from meter_core.codec.apdu.codes import ActionResult, AuthenticationMechanism, DataAccessResult
from meter_core.codec.axdr import (
    BitString,
    CosemDateTime,
    Data,
    DataType,
    encode_datetime_at,
    encode_octets,
    encode_value,
    int_encoder,
)
from meter_core.codec.errors import DecodeError
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.ic import (
    ASSOCIATION_LN,
    CLOCK,
    DATA,
    DEMAND_REGISTER,
    EXTENDED_REGISTER,
    IEC_HDLC_SETUP,
    REGISTER,
    SAP_ASSIGNMENT,
    SECURITY_SETUP,
    TCP_UDP_SETUP,
)
from meter_core.cosem.model import (
    AssociationSpec,
    AssociationView,
    Attribute,
    CosemObject,
    ln_attribute,
    rights_for,
    scaler_unit,
    static,
)
from meter_core.device import history, tod
from meter_core.device import powerquality as pq
from meter_core.device.clock import IST_OFFSET_MINUTES, SimClock, day_of, local_to_utc
from meter_core.device.datagen import Energy, LoadModel, meter_params
from meter_core.device.identity import FleetConfig, MeterIdentity, MeterKind, meter_identity, stable_hash

IST = IST_OFFSET_MINUTES
_OCTET12 = b"\x09\x0c"
_UNSPECIFIED_DATETIME = encode_octets(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff")
# Hundredths of a second, deviation "not specified" (0x8000) and clock status 0: the last 4 bytes.
_HUNDREDTHS_TAIL = tuple(bytes((h, 0x80, 0x00, 0x00)) for h in range(100))
_enc_u16 = int_encoder(DataType.LONG_UNSIGNED)
_enc_u32 = int_encoder(DataType.DOUBLE_LONG_UNSIGNED)
_enc_u8 = int_encoder(DataType.UNSIGNED)
_enc_enum = int_encoder(DataType.ENUM)
_DAY_PERIOD = ((-math.inf, 86400),)


@dataclass(slots=True)
class MeterState:
    """What happened to a meter: each setting a head-end can change as a timeline of true (simulated)
    time, ``((since, value), ...)`` (`meter_core.history`), so that anything captured at a time uses what
    was in force then. Kept only for meters whose state differs from the factory's."""

    # Clock sets: ((true time, offset, drift reference), ...): from each set on, the clock shows
    # t + offset + drift * (t - reference) (`history.MeterClock`).
    clock_sets: tuple = ()
    max_connections: int = 2
    inactivity_timeout: int = 180
    demand_periods: tuple = ((-math.inf, 1800),)
    capture_periods: tuple = ((-math.inf, 1800),)
    # Configuration changes made by head-ends (SET/ACTION that change the meter's programme).
    programming_count: int = 0
    # True times from which a profile holds no entries captured before (profile reset(), capture-period change).
    block_profile_start: float = -math.inf
    daily_profile_start: float = -math.inf
    # Billing: the billing date in force (day, hour, minute) as a timeline, and the true time of every MD reset.
    billing_schedule: tuple = ((-math.inf, (1, 0, 0)),)
    billing_resets: tuple = ()
    # Relay (disconnect control) and load limit (limiter threshold, W, as a timeline; 0 = the kind's default).
    disconnected: bool = False
    load_limits: tuple = ((-math.inf, 0),)
    # Activity calendar: the active calendar as a timeline (None = the factory calendar, else its four
    # parts as encoded values, None for a factory part), the passive one as written, the activation time
    # as written (12 bytes).
    calendars: tuple = ((-math.inf, None),)
    calendar_passive: tuple | None = None
    calendar_activation: bytes | None = None
    # Load limiting, from the moment a head-end set a threshold: simulated time checked up to, and
    # since when the load has been above the threshold (None: below).
    limit_since: float | None = None
    limit_scanned: float = -math.inf
    limit_over_since: float | None = None
    # Relay open intervals, simulated time ((start, end or None while open), ...).
    disconnections: tuple = ()
    # Supply changes an operator injected (`fleet inject`), simulated time: ((start, end or None, factor),
    # ...), factor 0.0 = no supply (a power failure), else the load drawn times factor (a load change).
    supply: tuple = ()
    # Events that happened to this meter (simulated time, category, code), bounded per log depth, and
    # how many per category in all; injected tampers; the ESW filter as a timeline (None = all bits).
    events: tuple = ()
    event_counts: tuple = ()
    tamper_count: int = 0
    eswf: tuple = ((-math.inf, None),)
    # Confirmed pushes: when each push setup's last push was confirmed ((push setup, simulated time), ...).
    push_confirmations: tuple = ()
    # Push setup attributes a head-end wrote ((push setup, attribute name, value), ...): destination,
    # retries, repetition_delay_s over the fleet's configuration.
    push_settings: tuple = ()
    # Keys, HLS secrets and invocation counters (`meter_core.keys.MeterSecurity`), from the first
    # secured association on; None = derived from the fleet secret, counters untouched.
    security: object = None

    @property
    def demand_integration_period(self) -> int:
        """The demand integration period in force now (seconds)."""
        return self.demand_periods[-1][1]

    @property
    def profile_capture_period(self) -> int:
        """The block-load capture period in force now (seconds)."""
        return self.capture_periods[-1][1]

    @property
    def load_limit_w(self) -> int:
        """The limiter threshold in force now (W; 0 = the kind's default)."""
        return self.load_limits[-1][1]

    @property
    def billing_reset_count(self) -> int:
        return len(self.billing_resets)


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
        "identity", "model", "load", "state", "port", "sim", "_inst_key", "_inst", "_energy_key", "_energy",
        "_demand", "_install_time", "_clock_second", "_clock_head", "energy_divisor", "drift", "_epoch_start",
        "_pq", "outage_cache", "tod_cache", "fleet", "tx_floor", "_hist",
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
    ) -> None:
        clock = clock or SimClock.real_time()
        self.sim = clock.sim
        self.fleet = fleet
        self.tx_floor = 0  # first sent invocation counter if no stored one exists (set by the fleet)
        self.identity: MeterIdentity = meter_identity(fleet, meter_id)
        self.model: MeterModel = model_for(self.identity.kind, fleet.hls_mechanism, fleet.security_suite)
        params = meter_params(fleet.seed, meter_id, self.identity.kind, epoch_start)
        self.load = LoadModel(params)
        self._install_time: float = params.install_time
        self.state = state if state is not None else MeterState()
        self.port = port
        self._inst_key = -1
        self._inst = None
        self._energy_key = -1
        self._energy = None
        self._demand = _DemandCache()
        self._clock_second = -1
        self._clock_head = b""
        # Cumulative registers count in Wh (whole current) or kWh (CT/PT): the register's resolution.
        self.energy_divisor = 10.0 ** cat.ENERGY_SCALER[self.identity.kind]
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

    def keys(self):
        """The meter's `MeterSecurity` (keys, secrets, invocation counters), created on first use."""
        sec = self.state.security
        if sec is None:
            from meter_core.device.keys import derived_keys

            sec = self.state.security = derived_keys(self.fleet, self.identity.meter_id, self.fleet.security_suite,
                                                     self.tx_floor)
        return sec

    # -- history: the clock and the captures, from what was in force when -----------------------------

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
            self._clock_head = _OCTET12 + encode_datetime_at(second, IST, None, 0)[:8]
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
            cache = self._pq = pq.DayCache(p.seed, p.meter_id, self.identity.kind)
        return cache.get(day)

    @contextlib.contextmanager
    def batch(self):
        """Within the block, values computed in bulk (ground truth, backfill: weeks of profile rows)
        share what they have in common: each day of the load model and of supply events is computed
        once. Nothing is kept after the block; values are the same with or without it."""
        cache = self._pq
        if cache is None:
            p = self.load.params
            cache = self._pq = pq.DayCache(p.seed, p.meter_id, self.identity.kind)
        with self.load.batch(), cache.hold():
            yield self

    def energy_at(self, t: float):
        """Cumulative energies at simulated time ``t``: the load model's, less what the supply and the
        relay did not let through (`meter_core.powerquality`)."""
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
            p = self.load.params
            return pq.has_interruption(p.seed, p.meter_id, self.identity.kind, day)
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
                        eventlog.withdraw_after(self, eventlog.POWER, 102, t)  # its end, logged ahead
                        eventlog.record(self, eventlog.POWER, 102, t)
                    end, changed = t, True
                kept.append((start, end, f))
            state.supply = tuple(kept)
        if factor is None or off:
            self._supply_changed()
            return changed
        end = None if duration is None else t + duration
        state.supply = (*state.supply, (t, end, float(factor)))[-64:]
        if factor == 0.0:
            eventlog.record(self, eventlog.POWER, 101, t)
            if end is not None:
                eventlog.record(self, eventlog.POWER, 102, end)
        self._supply_changed()
        return True

    def restore_tampers(self, now: float) -> bool:
        """End the injected tampers in force that IS 15959 logs a restoration for (magnet, neutral
        disturbance): their restoration now, instead of when their duration would have run out."""
        t = self.sim(now)
        bits = eventlog.esw_bits(self, t)
        restored = False
        for category, restore, bit in eventlog.TAMPERS.values():
            if restore is not None and bit in bits:
                eventlog.withdraw_after(self, category, restore, t)
                eventlog.record(self, category, restore, t)
                restored = True
        return restored

    def _supply_changed(self) -> None:
        self._energy_key = self._inst_key = -1
        self.outage_cache = None
        self.reset_demand_cache()

    def record_event(self, category: int, code: int, now: float) -> None:
        """Log an event that happened to this meter now (transaction, control, tamper)."""
        eventlog.record(self, category, code, self.sim(now))

    def inject_tamper(self, code: int, now: float, duration: float | None = None) -> None:
        """A tamper (201 magnet, 203 neutral disturbance, 251 cover open) starting now; it restores
        after ``duration`` simulated seconds where IS 15959 has a restoration event."""
        category, restore, _bit = eventlog.TAMPERS[code]
        t = self.sim(now)
        eventlog.record(self, category, code, t)
        if restore is not None and duration is not None:
            eventlog.record(self, category, restore, t + duration)
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
        default = control.default_load_limit(self.identity.kind)
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
                    for when, category, code in ((x, eventlog.OTHER, 215), (x, eventlog.CONTROL, 301),
                                                 (end, eventlog.OTHER, 216), (end, eventlog.CONTROL, 302)):
                        eventlog.record(self, category, code, when)
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
        now = self.sim(now)
        start = self.billing_period_start(now)
        d = self._demand
        if d.period_start != start:
            self._demand = d = _DemandCache(period_start=start, next_ordinal=self.demand_captures().count(start))
        self._scan_demand(d, now)
        return d

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
        readings = self.readings_many(times)
        # each period starts where the one before ended, unless the integration restarted in between
        regular = all(entries[i][3] == entries[i - 1][2] for i in range(1, len(entries)))
        if not regular:  # the readings where each period started, too
            starts = sorted({max(e[3], start) for e in entries} - set(times))
            extra = dict(zip(starts, self.readings_many(starts))) if starts else {}
            at = dict(zip(times, readings))
            at.update(extra)
        scale = 3600.0 * self.energy_divisor
        max_active, max_apparent = d.max_active, d.max_apparent
        prev_t, prev_r = first, readings[0]
        for (_n, stamp, t, t0, period), r1 in zip(entries, readings[1:]):
            if not regular:
                t0 = max(t0, start)
                prev_t, prev_r = t0, at[t0]
            length = t - prev_t
            if length < period:
                length = period
            active = (r1[0] - prev_r[0]) * scale / length
            apparent = (r1[2] - prev_r[2]) * scale / length
            if active > max_active:
                max_active, d.max_active_stamp = active, stamp
            if apparent > max_apparent:
                max_apparent, d.max_apparent_stamp = apparent, stamp
            prev_t, prev_r = t, r1
        d.max_active, d.max_apparent = max_active, max_apparent
        d.next_ordinal = n1

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


# -- value getters -------------------------------------------------------------------------------------
# Each returns the encoded value of one attribute for (meter, association, now).


def _instant_getter(source: str, dtype: DataType, scaler: int):
    factor = 10.0 ** -scaler
    encode = int_encoder(dtype)
    phase = {"l1": 0, "l2": 1, "l3": 2}
    if source.startswith(("current_l", "voltage_l", "pf_l")):
        name, _, idx = source.rpartition("_")
        field_name = {"current": "current", "voltage": "voltage", "pf": "pf"}[name]
        i = phase[idx]

        def get(meter, assoc, now):
            return encode(round(getattr(meter.instant(now), field_name)[i] * factor))
    else:
        attr = {
            "pf_total": "pf_total", "frequency": "frequency", "active_power": "active_power",
            "reactive_power": "reactive_power", "apparent_power": "apparent_power",
            "current_neutral": "current_neutral",
        }[source]

        def get(meter, assoc, now):
            return encode(round(getattr(meter.instant(now), attr) * factor))

    return get


_ENERGY_FIELDS = {
    "active_import": "active_import_wh",
    "active_export": "active_export_wh",
    "apparent_import": "apparent_import_vah",
    "apparent_export": "apparent_export_vah",
    "reactive_q1": "reactive_q1_varh",
    "reactive_q2": "reactive_q2_varh",
    "reactive_q3": "reactive_q3_varh",
    "reactive_q4": "reactive_q4_varh",
}


def _energy_getter(source: str, dtype: DataType, scaler: int):
    divisor = 10.0 ** scaler
    encode = int_encoder(dtype)
    attr = _ENERGY_FIELDS[source]

    def get(meter, assoc, now):
        # floor keeps a register monotonic: it never shows more than the meter has counted
        return encode(int(getattr(meter.energy(now), attr) // divisor))

    return get


def _datetime_at(meter: Meter, t: float) -> bytes:
    """Date-time of simulated time ``t`` as the meter's clock shows it (octet-string 12)."""
    if math.isnan(t):
        return _UNSPECIFIED_DATETIME
    return _OCTET12 + encode_datetime_at(meter.clock_at_sim(t), IST, None, 0)


def _identity_value(source: str, kind: MeterKind):
    if source == "meter_type":
        return Attribute(_enc_u8(cat.METER_TYPE_CODE[kind]))
    if source == "category":
        return Attribute(encode_octets(cat.METER_CATEGORY[kind].encode()))
    if source == "current_rating":
        return Attribute(encode_octets(cat.CURRENT_RATING[kind].encode()))
    if source in ("ct_ratio", "pt_ratio"):
        # Primary/secondary ratio of the instrument transformers the meter is programmed with; its
        # registers show primary values.
        return Attribute(lambda m, a, now: _enc_u16(getattr(m.load.params, source)))
    if source == "year_of_manufacture":
        return Attribute(lambda m, a, now: _enc_u16(m.identity.year_of_manufacture))
    if source == "demand_integration_period":
        return Attribute(lambda m, a, now: _enc_u16(m.state.demand_integration_period), control.set_demand_period)
    if source == "profile_capture_period":
        return Attribute(lambda m, a, now: _enc_u16(m.state.profile_capture_period),
                         control.set_capture_period_data)
    if source == "billing_count":
        return Attribute(lambda m, a, now: _enc_u32(m.billing_count(now)))
    if source == "power_failure_count":
        return Attribute(lambda m, a, now: _enc_u32(eventlog.outage_totals(m, m.sim(now))[0]))
    if source == "tamper_count":
        return Attribute(lambda m, a, now: _enc_u16(m.state.tamper_count))
    if source == "programming_count":
        return Attribute(lambda m, a, now: _enc_u16(m.state.programming_count))
    if source == "last_billing_time":
        return Attribute(lambda m, a, now: profiles.clock_stamp(profiles.last_billing_clock(m, now)))
    text = {
        "logical_device_name": "logical_device_name", "serial": "serial", "manufacturer": "manufacturer",
        "device_id": "device_id", "firmware_version": "firmware_version",
    }[source]
    return Attribute(lambda m, a, now: encode_octets(getattr(m.identity, text).encode("ascii")))


# -- clock --------------------------------------------------------------------------------------------


def _clock_time(meter: Meter, assoc, now: float) -> bytes:
    return meter.clock_value(now)


def _set_clock_time(meter: Meter, assoc, value: Data, now: float) -> DataAccessResult:
    if value.tag is DataType.OCTET_STRING and len(value.value) == 12:
        raw = value.value
    elif value.tag is DataType.DATE_TIME:
        raw = value.value.to_bytes()
    else:
        return DataAccessResult.TYPE_UNMATCHED
    try:
        target = local_to_utc(CosemDateTime.from_bytes(raw))
    except DecodeError:
        return DataAccessResult.OTHER_REASON
    meter.set_clock(target, now)
    control.record(meter, control.TRANSACTION, control.EV_CLOCK_SET, now)
    return DataAccessResult.SUCCESS


def _adjust_clock(step_of):
    """Clock methods adjust_to_quarter/measuring_period/minute: round the clock to a step."""

    def method(meter: Meter, assoc, params: Data | None, now: float):
        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        step = step_of(meter)
        local = meter.clock(now) + IST * 60
        rounded = math.floor(local / step + 0.5) * step
        meter.set_clock(meter.clock(now) + rounded - local, now)
        control.record(meter, control.TRANSACTION, control.EV_CLOCK_SET, now)
        return ActionResult.SUCCESS, None

    return method


def _shift_time(meter: Meter, assoc, params: Data | None, now: float):
    # shift_time (data) data ::= long, -900..900 seconds (IEC 62056-6-2 4.5.1, Clock method 6)
    if params is None or params.tag is not DataType.LONG:
        return ActionResult.TYPE_UNMATCHED, None
    if not -900 <= params.value <= 900:
        return ActionResult.OTHER_REASON, None
    meter.set_clock(meter.clock(now) + params.value, now)
    control.record(meter, control.TRANSACTION, control.EV_CLOCK_SET, now)
    return ActionResult.SUCCESS, None


def _clock_object() -> CosemObject:
    no_dst = encode_octets(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff")
    return CosemObject(
        CLOCK, ln(cat.CLOCK), "Clock",
        (
            ln_attribute(ln(cat.CLOCK)),
            Attribute(_clock_time, _set_clock_time),
            static(IST, DataType.LONG),  # time_zone, minutes (Gurux India model: 330)
            Attribute(lambda m, a, now: _enc_u8(0)),  # status: valid, no DST
            Attribute(no_dst),
            Attribute(no_dst),
            static(0, DataType.INTEGER),
            static(False, DataType.BOOLEAN),
            static(1, DataType.ENUM),  # clock_base: internal crystal
        ),
        (
            _adjust_clock(lambda m: 900),
            _adjust_clock(lambda m: m.state.profile_capture_period),
            _adjust_clock(lambda m: 60),
            None,
            None,
            _shift_time,
        ),
    )


# -- registers ------------------------------------------------------------------------------------


def _duration_getter(spec: cat.RegisterSpec):
    encode = int_encoder(spec.type)
    source = spec.source
    if source == "net_active":
        def get(m: Meter, a, now):
            r = m.readings(m.sim(now))
            return encode(r[0] - r[1])
    elif source == "power_on_minutes":
        def get(m: Meter, a, now):
            t = m.sim(now)
            return encode(int(max(0.0, t - m.install_time - eventlog.outage_totals(m, t)[1]) // 60))
    elif source == "power_off_minutes":
        def get(m: Meter, a, now):
            return encode(int(eventlog.outage_totals(m, m.sim(now))[1] // 60))
    elif source == "period_power_on_minutes":
        def get(m: Meter, a, now):
            return encode(int(max(0.0, m.sim(now) - profiles.period_start_sim(m, now)) // 60))
    else:  # period_average_pf
        def get(m: Meter, a, now):
            t = m.sim(now)
            r0, r1 = m.readings(profiles.period_start_sim(m, now)), m.readings(t)
            kwh, kvah = r1[0] - r0[0], r1[2] - r0[2]
            return encode(round(1000 * kwh / kvah) if kvah > 0 else 1000)
    return get


def _tod_getter(spec: cat.RegisterSpec):
    encode = int_encoder(spec.type)
    _, quantity, zone = spec.source.split("_")
    index = (int(zone) - 1) + (tod.ZONES if quantity == "apparent" else 0)
    divisor = 10.0 ** spec.scaler

    def get(m: Meter, a, now):
        return encode(int(tod.totals_at(m, m.sim(now))[index] // divisor))

    return get


def _register(spec: cat.RegisterSpec) -> CosemObject:
    name = spec.name
    if spec.source in _ENERGY_FIELDS:
        value = Attribute(_energy_getter(spec.source, spec.type, spec.scaler))
    elif spec.source.startswith("tod_"):
        value = Attribute(_tod_getter(spec))
    elif spec.source.startswith(("block_", "avg_")):
        value = Attribute(profiles.block_register_getter(spec))
    elif spec.source in ("net_active", "power_on_minutes", "power_off_minutes", "period_power_on_minutes",
                         "period_average_pf"):
        value = Attribute(_duration_getter(spec))
    else:
        value = Attribute(_instant_getter(spec.source, spec.type, spec.scaler))
    return CosemObject(
        REGISTER, ln(spec.obis), name,
        (ln_attribute(ln(spec.obis)), value, Attribute(scaler_unit(spec.scaler, spec.unit))),
        (None,),
    )


def _max_demand_register(spec: cat.RegisterSpec) -> CosemObject:
    encode = int_encoder(spec.type)
    apparent = spec.source == "md_apparent_import"
    export = spec.source in ("md_active_export", "md_apparent_export")
    factor = 10.0 ** -spec.scaler

    def value(m: Meter, a, now):
        if export:
            return encode(0)  # the load model exports nothing
        d = m.max_demand(now)
        return encode(round((d.max_apparent if apparent else d.max_active) * factor))

    def capture_time(m: Meter, a, now):
        if export:
            return _UNSPECIFIED_DATETIME
        d = m.max_demand(now)
        return profiles.clock_stamp(d.max_apparent_stamp if apparent else d.max_active_stamp)

    return CosemObject(
        EXTENDED_REGISTER, ln(spec.obis), spec.name,
        (
            ln_attribute(ln(spec.obis)),
            Attribute(value),
            Attribute(scaler_unit(spec.scaler, spec.unit)),
            Attribute(_enc_u8(0)),  # status
            Attribute(capture_time),
        ),
        (None,),
    )


def _demand_register(spec: cat.RegisterSpec) -> CosemObject:
    encode = int_encoder(spec.type)
    field_name = "apparent_import_vah" if spec.source == "demand_apparent_import" else "active_import_wh"

    def average(m: Meter, t0: float, t1: float) -> float:
        # t0, t1: simulated time
        if t1 <= t0:
            return 0.0
        e0, e1 = getattr(m.energy_at(t0), field_name), getattr(m.energy_at(t1), field_name)
        return (e1 - e0) * 3600.0 / (t1 - t0)

    def current(m: Meter, a, now):
        start, _, _ = m.demand_window(now)
        return encode(round(average(m, start, m.sim(now))))

    def last(m: Meter, a, now):
        start, before, _ = m.demand_window(now)
        return encode(round(average(m, before, start)))

    def start_time(m: Meter, a, now):
        return _datetime_at(m, m.demand_window(now)[0])

    return CosemObject(
        DEMAND_REGISTER, ln(spec.obis), spec.name,
        (
            ln_attribute(ln(spec.obis)),
            Attribute(current),
            Attribute(last),
            Attribute(scaler_unit(spec.scaler, spec.unit)),
            Attribute(_enc_u8(0)),  # status
            Attribute(start_time),  # capture_time: end of the last period = start of this one
            Attribute(start_time),  # start_time_current
            Attribute(lambda m, a, now: _enc_u32(m.state.demand_integration_period)),
            Attribute(_enc_u16(1)),  # number_of_periods
        ),
        (None, None),
    )


# -- association, SAP assignment, setup objects ------------------------------------------------------


def _oid_structure(arcs: tuple[int, ...]) -> bytes:
    # context_name / mechanism_name as structure of 7 elements (Association LN v0/v1 attributes 4, 6)
    types = (DataType.UNSIGNED, DataType.UNSIGNED, DataType.LONG_UNSIGNED, DataType.UNSIGNED,
             DataType.UNSIGNED, DataType.UNSIGNED, DataType.UNSIGNED)
    return encode_value(Data(DataType.STRUCTURE, tuple(Data(t, v) for t, v in zip(types, arcs))))


def _association_object(obis: str, owner_sap: int | None) -> CosemObject:
    """Association LN ``obis``; ``owner_sap`` None means the current association (0.0.40.0.0.255)."""

    def view_of(m: Meter, a):
        if owner_sap is None or owner_sap == a.spec.client_sap:
            return a.view, True
        return m.model.associations[owner_sap], False

    def object_list(m, a, now):
        return view_of(m, a)[0].object_list

    def partners(m, a, now):
        view, _ = view_of(m, a)
        return encode_value(Data(DataType.STRUCTURE, (
            Data(DataType.INTEGER, view.spec.client_sap), Data(DataType.LONG_UNSIGNED, 1))))

    def context(m, a, now):
        view, current = view_of(m, a)
        ctx = a.context if current and a.context is not None else min(view.spec.contexts)
        return _oid_structure((2, 16, 756, 5, 8, 1, ctx))

    def xdlms_info(m, a, now):
        view, current = view_of(m, a)
        spec = view.spec
        send = a.max_send_pdu_size if current else spec.server_max_receive_pdu_size
        return encode_value(Data(DataType.STRUCTURE, (
            Data(DataType.BIT_STRING, _bits24(spec.conformance)),
            Data(DataType.LONG_UNSIGNED, spec.server_max_receive_pdu_size),
            Data(DataType.LONG_UNSIGNED, send),
            Data(DataType.UNSIGNED, 6),
            Data(DataType.INTEGER, 0),
            Data(DataType.OCTET_STRING, b""),
        )))

    def mechanism(m, a, now):
        return _oid_structure((2, 16, 756, 5, 8, 2, view_of(m, a)[0].spec.mechanism))

    def status(m, a, now):
        _, current = view_of(m, a)
        return _enc_enum(a.status_code if current else 0)

    def security_setup(m, a, now):
        return encode_octets(view_of(m, a)[0].spec.security_setup)

    return CosemObject(
        ASSOCIATION_LN, ln(obis), "Current association" if owner_sap is None else f"Association {obis}",
        (
            ln_attribute(ln(obis)),
            Attribute(object_list),
            Attribute(partners),
            Attribute(context),
            Attribute(xdlms_info),
            Attribute(mechanism),
            # secret: never readable; the meter reader's LLS password is written through client 48
            Attribute(encode_octets(b""), _set_lls_secret if owner_sap == 32 else None),
            Attribute(status),
            Attribute(security_setup),
        ),
        (None, _change_hls_secret(owner_sap) if owner_sap is None or owner_sap in cat.SECURED_SAPS else None,
         None, None),
    )


def _set_lls_secret(m, a, value, now):
    """Association LN attribute 7 of the meter reader (LLS): a new password, 1 to 16 visible characters
    as IS 15959 meters take (transaction event 161)."""
    if value.tag is not DataType.OCTET_STRING:
        return DataAccessResult.TYPE_UNMATCHED
    secret = bytes(value.value)
    if not 1 <= len(secret) <= 16 or not all(0x21 <= b <= 0x7E for b in secret):
        return DataAccessResult.OTHER_REASON
    sec = m.keys()
    sec.lls_password = secret
    sec.changed.add(("lls", 32))
    m.record_event(eventlog.TRANSACTION, 161, now)
    return DataAccessResult.SUCCESS


def _change_hls_secret(owner_sap: int | None):
    """change_HLS_secret of association ``owner_sap`` (None: the current one, when it is an HLS one)."""
    def change(m, a, params, now):
        from meter_core.device import keys as keymod

        sap = a.spec.client_sap if owner_sap is None else owner_sap
        if sap not in cat.SECURED_SAPS:
            return ActionResult.READ_WRITE_DENIED, None
        return keymod.change_hls_secret(m, sap, params, now)
    return change


def _bits24(value: int) -> BitString:
    return BitString(24, value.to_bytes(3, "big"))


def _sap_assignment() -> CosemObject:
    def assignment_list(m: Meter, a, now):
        # SAP_assignment_list ::= array { structure { SAP long-unsigned, logical_device_name octet-string } }
        return encode_value(Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.LONG_UNSIGNED, 1),
            Data(DataType.OCTET_STRING, m.identity.logical_device_name.encode("ascii")),
        )),)))

    return CosemObject(
        SAP_ASSIGNMENT, ln(cat.SAP_ASSIGNMENT), "SAP assignment",
        (ln_attribute(ln(cat.SAP_ASSIGNMENT)), Attribute(assignment_list)),
        (None,),
    )


def _hdlc_setup() -> CosemObject:
    o = ln(cat.HDLC_SETUP)
    return CosemObject(
        IEC_HDLC_SETUP, o, "IEC HDLC setup",
        (
            ln_attribute(o),
            static(5, DataType.ENUM),  # comm_speed 9600 baud
            static(1, DataType.UNSIGNED),  # window_size_transmit
            static(1, DataType.UNSIGNED),  # window_size_receive
            static(128, DataType.LONG_UNSIGNED),  # max_info_field_length_transmit
            static(128, DataType.LONG_UNSIGNED),  # max_info_field_length_receive
            static(25, DataType.LONG_UNSIGNED),  # inter_octet_time_out, ms
            static(120, DataType.LONG_UNSIGNED),  # inactivity_time_out, s
            Attribute(lambda m, a, now: _enc_u16(m.identity.hdlc_physical_address)),
        ),
    )


def _tcp_udp_setup() -> CosemObject:
    o = ln(cat.TCP_UDP_SETUP)
    return CosemObject(
        TCP_UDP_SETUP, o, "TCP-UDP setup",
        (
            ln_attribute(o),
            Attribute(lambda m, a, now: _enc_u16(m.port if m.port is not None else 4059)),
            Attribute(encode_octets(ln(cat.IPV4_SETUP))),
            static(1460, DataType.LONG_UNSIGNED),  # maximum_segment_size
            Attribute(lambda m, a, now: _enc_u8(m.state.max_connections)),
            Attribute(lambda m, a, now: _enc_u16(m.state.inactivity_timeout)),
        ),
    )


def _security_setup(obis: str, e: int, policy: int, suite: int) -> CosemObject:
    """Security setup v1 0.0.43.0.e.255: policy, suite, system titles; key transfer under the master key."""
    o = ln(obis)

    def client_title(m, a, now):
        keys = m.state.security
        ks = keys.sets.get(e) if keys is not None else None
        return encode_octets(ks.client_system_title if ks is not None else b"")

    return CosemObject(
        SECURITY_SETUP, o, f"Security setup {obis}",
        (
            ln_attribute(o),
            static(policy, DataType.ENUM),  # security_policy (v1 bits)
            static(suite, DataType.ENUM),  # security_suite
            Attribute(client_title),
            Attribute(lambda m, a, now: encode_octets(m.identity.system_title)),
            Attribute(_certificates(suite) if e >= 3 and suite else encode_value(Data(DataType.ARRAY, ()))),
        ),
        (None,) * 8 if e < 3 else (
            _security_activate(e), _key_transfer(e), _key_agreement(e, suite), *(_pki_method(name, suite) for name in (
                "generate_key_pair", "generate_certificate_request", "import_certificate", "export_certificate",
                "remove_certificate")),
        ),
    )


def _key_agreement(e: int, suite: int):
    """key_agreement (method 3): suites 1 and 2 only."""
    if not suite:
        return None

    def agree(m, a, params, now):
        from meter_core.device import keys as keymod

        ctx = getattr(a, "_sec", None)
        if ctx is None:
            return ActionResult.READ_WRITE_DENIED, None
        return keymod.key_agreement(m, e, suite, params, now, ctx.client_title)
    return agree


def _certificates(suite: int):
    def get(m, a, now):
        from meter_core.device import keys as keymod

        return keymod.certificate_info(keymod.pki(m, suite, m.clock(now)))
    return get


def _pki_method(name: str, suite: int):
    """Security setup v1 methods 4-8 (suites 1 and 2 only: suite 0 has no public keys)."""
    if not suite:
        return None

    def method(m, a, params, now):
        from meter_core.device import keys as keymod

        return getattr(keymod, name)(m, suite, params, m.clock(now))
    return method


def _security_activate(e: int):
    def activate(m, a, params, now):
        # security_activate(enum policy): IS 15959 meters run with the policy fixed per association;
        # asking for the policy in force is accepted, any other is refused.
        if params is None or params.tag is not DataType.ENUM:
            return ActionResult.TYPE_UNMATCHED, None
        return (ActionResult.SUCCESS if params.value == a.spec.policy or e != a.spec.setup
                else ActionResult.OTHER_REASON), None
    return activate


def _key_transfer(e: int):
    def transfer(m, a, params, now):
        from meter_core.device import keys as keymod

        return keymod.key_transfer(m, e, params, now)
    return transfer


def _invocation_counter(obis: str, e: int) -> CosemObject:
    """0.0.43.1.e.255: the counter a client's next protected APDU under setup e must exceed."""

    def value(m, a, now):
        keys = m.state.security
        return _enc_u32(keys.sets[e].rx_ic if keys is not None else 0)

    return CosemObject(DATA, ln(obis), f"Invocation counter {e}", (ln_attribute(ln(obis)), Attribute(value)))


# -- the model ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class MeterModel:
    """The objects and association views of one meter kind, shared by all its meters."""

    kind: MeterKind
    objects: tuple[CosemObject, ...]
    associations: dict[int, AssociationView] = field(default_factory=dict)
    by_key: dict = field(default_factory=dict)  # (class_id, logical name) -> object


@functools.cache
def model_for(kind: MeterKind, hls: int = 2, suite: int = 0) -> MeterModel:
    """The IS 15959 object model of ``kind`` (built once per process), clients 48/64/80 authenticating
    with HLS mechanism ``hls`` and ciphering with security suite ``suite``."""
    objects: list[CosemObject] = [_clock_object()]
    objects += [
        CosemObject(DATA, ln(s.obis), s.name, (ln_attribute(ln(s.obis)), _identity_value(s.source, kind)))
        for s in cat.DATA_OBJECTS
        if kind in s.kinds
    ]
    objects += [
        CosemObject(DATA, ln(s.obis), s.name, (ln_attribute(ln(s.obis)), _identity_value(s.source, kind)))
        for s in cat.COUNTER_OBJECTS
        if kind in s.kinds
    ]
    for spec in (cat.INSTANT_REGISTERS + cat.ENERGY_REGISTERS + cat.TOD_REGISTERS + cat.NET_ENERGY_REGISTERS
                 + cat.BLOCK_REGISTERS + cat.DURATION_REGISTERS):
        if kind in spec.kinds:
            objects.append(_register(spec))
    for spec in cat.DEMAND_REGISTERS:
        if kind in spec.kinds:
            objects.append(_max_demand_register(spec) if spec.class_id == 4 else _demand_register(spec))
    objects.append(_association_object(cat.CURRENT_ASSOCIATION, None))
    for a in cat.ASSOCIATIONS:
        objects.append(_association_object(a.obis, a.client_sap))
    objects += [_sap_assignment(), _hdlc_setup(), _tcp_udp_setup(), _security_setup(cat.MR_SECURITY_SETUP, 2, 0, 0)]
    objects += [_security_setup(obis, e, cat.POLICY_AUTH_ENC, suite) for e, obis in
                ((3, cat.US_SECURITY_SETUP), (4, cat.PUSH_SECURITY_SETUP), (5, cat.FW_SECURITY_SETUP))]
    objects += [_invocation_counter(obis, 3 + i) for i, obis in enumerate(cat.INVOCATION_COUNTERS)]
    objects += control.control_objects(kind)
    objects += _event_objects()
    objects += push.push_setup_objects(kind)
    objects += push.trigger_objects()
    by_key = {o.key: o for o in objects}
    objects += [profiles.profile_object(kind, spec, by_key) for spec in cat.PROFILES]
    objects += [profiles.event_log_object(kind, c, by_key) for c in range(7)]
    objects.append(profiles.event_scaler_profile(kind, by_key))

    model = MeterModel(kind, tuple(objects), by_key={o.key: o for o in objects})
    public = {ln(s.obis) for s in cat.DATA_OBJECTS if s.public}
    public |= {ln(cat.CLOCK), ln(cat.CURRENT_ASSOCIATION), ln(cat.SAP_ASSIGNMENT)}
    public |= {ln(o) for o in cat.INVOCATION_COUNTERS}  # read before a secured association (facts 5.6)
    for a in cat.ASSOCIATIONS:
        secured = a.client_sap in cat.SECURED_SAPS
        spec = AssociationSpec(
            client_sap=a.client_sap,
            ln=ln(a.obis),
            name=a.name,
            mechanism=AuthenticationMechanism(hls) if secured else a.mechanism,
            contexts=cat.CIPHERED_LN_CONTEXT if secured else cat.PLAIN_LN_CONTEXT,
            conformance=a.conformance,
            security_setup=ln(a.security_setup) if a.security_setup else bytes(6),
            setup=int(a.security_setup.split(".")[4]) if secured else 0,
            policy=cat.POLICY_AUTH_ENC if secured else 0,
        )
        writable, methods = _rights_of(a.client_sap)
        entries = []
        for obj in objects:
            if obj.ic.class_id == ASSOCIATION_LN.class_id and obj.ln not in (ln(cat.CURRENT_ASSOCIATION),
                                                                              ln(a.obis)):
                # an association sees itself; the meter reader also sees the public one, and utility
                # settings the meter reader's (to change its password)
                if not ((a.mechanism is AuthenticationMechanism.LOW and obj.ln == ln("0.0.40.0.1.255"))
                        or (a.client_sap == 48 and obj.ln == ln("0.0.40.0.2.255"))):
                    continue
            if a.mechanism is AuthenticationMechanism.NONE:
                if obj.ln not in public and obj.ln != ln(a.obis):
                    continue
                rights = rights_for(obj, True, hidden=_hidden(obj))
            else:
                obis = str_obis(obj.ln)
                extra = frozenset()
                if secured and obj.ic.class_id == ASSOCIATION_LN.class_id:
                    extra = frozenset({1, 2})  # reply_to_HLS_authentication, change_HLS_secret
                rights = rights_for(
                    obj, True,
                    writable=writable.get(obis, frozenset()),
                    methods=methods.get(obis, frozenset()) | extra,
                    hidden=_hidden(obj),
                )
            entries.append((obj, rights))
        model.associations[a.client_sap] = AssociationView(spec, tuple(entries))
    return model


def _rights_of(client_sap: int) -> tuple[dict, dict]:
    """(writable attributes, methods) by OBIS for an authenticated association."""
    if client_sap in (48, 80):
        # utility settings and firmware: the programming rights, and the key management of their setup
        e = 3 if client_sap == 48 else 5
        methods = dict(cat.US_METHODS)
        methods[f"0.0.43.0.{e}.255"] = frozenset({1, 2, 3, 4, 5, 6, 7, 8})
        return cat.US_WRITABLE, methods
    return {}, {}  # meter reader and push: reads only


def _event_objects() -> list[CosemObject]:
    """Last event code per log (0.0.96.11.x.255), the Event Status Word and its filter."""
    out = [
        CosemObject(DATA, ln(obis), f"Event code, {eventlog.CATEGORY_NAMES[c]} events",
                    (ln_attribute(ln(obis)), Attribute(eventlog.last_code(c))))
        for c, obis in enumerate(eventlog.CODE_OBIS)
    ]
    out.append(CosemObject(DATA, ln(cat.ESW), "Event Status Word",
                           (ln_attribute(ln(cat.ESW)), Attribute(eventlog.esw_value))))
    out.append(CosemObject(DATA, ln(cat.ESWF), "Event Status Word filter",
                           (ln_attribute(ln(cat.ESWF)), Attribute(eventlog.eswf_value, eventlog.set_eswf))))
    return out


def _hidden(obj: CosemObject) -> frozenset[int]:
    # Association LN attribute 7 (secret) is never readable.
    return frozenset({7}) if obj.ic.class_id == ASSOCIATION_LN.class_id else frozenset()


def str_obis(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)

