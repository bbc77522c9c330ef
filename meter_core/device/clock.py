"""Time as an IS 15959 meter keeps it: Indian Standard Time, simulated time, the date-times head-ends send.

IS 15959 meters keep IST (UTC+05:30, no daylight saving): their days, half hours and billing dates are IST
wall-clock boundaries, which are UTC boundaries shifted by `IST_S`. A fleet runs on simulated time
(`SimClock`); a meter's own clock is a function of it (`meter_core.device.history.MeterClock`).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

from meter_core.codec.axdr import DEVIATION_NOT_SPECIFIED, CosemDateTime

IST_OFFSET_MINUTES = 330
IST_S = IST_OFFSET_MINUTES * 60
IST = _dt.timezone(_dt.timedelta(minutes=IST_OFFSET_MINUTES), "IST")
DAY = 86400


def day_of(t: float) -> int:
    """The IST day number (days since 1970-01-01 IST) of UTC seconds ``t``."""
    return math.floor((t + IST_S) / DAY)


@dataclass(frozen=True, slots=True)
class SimClock:
    """Simulated time: ``start + (now - t0) * speed`` (DESIGN.md, "Time and determinism").

    ``now`` is the connection's clock (a worker passes its event loop's monotonic time); protocol
    time-outs run on it, while a meter's measurements and its COSEM clock run on simulated time.
    """

    start: float
    t0: float = 0.0
    speed: float = 1.0
    # Meters' real-time clocks run up to this many ppm fast or slow (seeded per meter); 0 = exact.
    drift_ppm: float = 0.0

    def sim(self, now: float) -> float:
        return self.start + (now - self.t0) * self.speed

    @classmethod
    def real_time(cls) -> SimClock:
        """Simulated time equal to ``now`` (for ``now`` = Unix time, as in tests)."""
        return cls(start=0.0, t0=0.0, speed=1.0)


def local_to_utc(dt: CosemDateTime) -> float:
    """UTC seconds of a date-time a head-end sent for the meter's wall clock.

    IS 15959 meters keep IST. A deviation of +330 or -330 (companion practice and Blue Book sign
    conventions disagree) or "not specified" both mean IST; any other deviation is
    read the Blue Book way (local time = UTC - deviation).
    """
    local = dt.to_datetime().replace(tzinfo=_dt.UTC).timestamp()
    if dt.deviation in (DEVIATION_NOT_SPECIFIED, IST_OFFSET_MINUTES, -IST_OFFSET_MINUTES):
        return local - IST_S
    return local + dt.deviation * 60


__all__ = ["DAY", "IST", "IST_OFFSET_MINUTES", "IST_S", "SimClock", "day_of", "local_to_utc"]
