"""gurux-dlms as a head-end that sets a meter's clock: what the meter captured before stays as it was.

Issue 12: a clock SET used to rewrite the whole served history (every block of 46 days, every day,
every bill, every event time). gurux reads the block-load, daily and billing profiles and the event
logs, sets the clock 300 s ahead and back (a drifting meter: synchronises it), and reads them again:
every entry served before is served again, byte for byte as gurux decodes it.
"""

from __future__ import annotations

import datetime as dt

import pytest
from gurux_dlms import GXDateTime
from gurux_dlms.objects import GXDLMSClock, GXDLMSProfileGeneric

from meter_core.device.identity import MeterKind
from tests.interop.clients import utility_settings
from tests.interop.test_profiles import gurux_rows
from tests.servers import running_meters

pytestmark = pytest.mark.interop

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
PROFILES = ("1.0.99.1.0.255", "1.0.99.2.0.255", "1.0.98.1.0.255", "0.0.99.98.0.255", "0.0.99.98.2.255",
            "0.0.99.98.3.255")


def read_all(s) -> dict[str, list[tuple]]:
    out = {}
    for obis in PROFILES:
        pg = GXDLMSProfileGeneric(obis)
        s.read(pg, 3)
        pg.buffer = []
        s.read(pg, 2)
        out[obis] = gurux_rows(pg)
    return out


def set_clock(s, when: dt.datetime) -> int:
    clock = GXDLMSClock("0.0.1.0.0.255")
    s.read(clock, 2)
    if when.tzinfo is None:  # gurux gives the meter's wall clock (IST) without a zone
        when = when.replace(tzinfo=IST)
    clock.time = GXDateTime(when.astimezone(IST))
    return s.exchange(s.client.write(clock, 2)).error


def read_clock(s) -> dt.datetime:
    clock = GXDLMSClock("0.0.1.0.0.255")
    s.read(clock, 2)
    value = clock.time.value
    return value if value.tzinfo is not None else value.replace(tzinfo=IST)


@pytest.mark.parametrize("kind,drift", [(MeterKind.THREE_PHASE, 0.0), (MeterKind.CT_PT, 5.0)],
                         ids=["3ph", "ctpt-drifting"])
def test_setting_the_clock_ahead_and_back_changes_no_entry_served_before(kind, drift):
    with running_meters(1, kind=kind, drift_ppm=drift) as meters:
        s = utility_settings(meters)
        try:
            before = read_all(s)
            shown = read_clock(s)
            assert set_clock(s, shown + dt.timedelta(seconds=300)) == 0
            ahead = read_clock(s)
            assert dt.timedelta(seconds=299) < ahead - shown < dt.timedelta(seconds=330)
            assert set_clock(s, dt.datetime.now(dt.UTC)) == 0  # back: the true time (a drifting clock synchronised)
            after = read_all(s)
        finally:
            s.close()
    assert len(before["1.0.99.1.0.255"]) > 2000  # 46 days of half hours
    for obis in PROFILES:
        old, new = before[obis], after[obis]
        # a buffer takes entries at its end and drops its oldest when full (a block captured meanwhile, the
        # two clock-set events): what was served then is served again, entry for entry, up to its end
        kept = next(k for k in range(len(old), -1, -1) if old[len(old) - k:] == new[:k])
        assert kept >= len(old) - 2, f"{obis}: an entry served before the clock was set changed"
    # the clock settings are the transaction log's newest entries (event 151), after what was there
    assert [r[1] for r in after["0.0.99.98.3.255"][-2:]] == [151, 151]
