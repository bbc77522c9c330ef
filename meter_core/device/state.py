"""What happened to one meter: the little state a head-end, an operator or the meter itself changed.

Kept only for meters whose state differs from the factory's; everything else about a meter is computed
from its identity and time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class MeterState:
    """What happened to a meter: each setting a head-end can change as a timeline of true (simulated)
    time, ``((since, value), ...)`` (`meter_core.device.history`), so that anything captured at a time uses what
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
    # True times from which a profile holds no entries captured before (profile reset(), capture-period
    # change).
    block_profile_start: float = -math.inf
    daily_profile_start: float = -math.inf
    # Billing: the billing date in force (day, hour, minute) as a timeline, and the true time of every MD
    # reset.
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
    # Keys, HLS secrets and invocation counters (`meter_core.device.keys.MeterSecurity`), from the first
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
