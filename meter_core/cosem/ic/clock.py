"""Clock (class 8): the meter clock, IST, no daylight saving; set, adjusted and shifted by a head-end."""

from __future__ import annotations

import math

from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import CosemDateTime, Data, DataType, int_encoder
from meter_core.codec.errors import DecodeError
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.model import (
    NOT_SPECIFIED_DATETIME,
    Attribute,
    CosemObject,
    InterfaceClass,
    ln_attribute,
    static,
)
from meter_core.device.clock import IST_OFFSET_MINUTES, local_to_utc
from meter_core.device.logbook import EV_CLOCK_SET, TRANSACTION
from meter_core.device.meter import Meter

_enc_u8 = int_encoder(DataType.UNSIGNED)
IST = IST_OFFSET_MINUTES


CLOCK = InterfaceClass(
    8, 0, "Clock",
    ("logical_name", "time", "time_zone", "status", "daylight_savings_begin", "daylight_savings_end",
     "daylight_savings_deviation", "daylight_savings_enabled", "clock_base"),
    ("adjust_to_quarter", "adjust_to_measuring_period", "adjust_to_minute", "adjust_to_preset_time",
     "preset_adjusting_time", "shift_time"),
)


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
    meter.record_event(TRANSACTION, EV_CLOCK_SET, now)
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
        meter.record_event(TRANSACTION, EV_CLOCK_SET, now)
        return ActionResult.SUCCESS, None

    return method


def _shift_time(meter: Meter, assoc, params: Data | None, now: float):
    # shift_time (data) data ::= long, -900..900 seconds (IEC 62056-6-2 4.5.1, Clock method 6)
    if params is None or params.tag is not DataType.LONG:
        return ActionResult.TYPE_UNMATCHED, None
    if not -900 <= params.value <= 900:
        return ActionResult.OTHER_REASON, None
    meter.set_clock(meter.clock(now) + params.value, now)
    meter.record_event(TRANSACTION, EV_CLOCK_SET, now)
    return ActionResult.SUCCESS, None


def clock_object() -> CosemObject:
    no_dst = NOT_SPECIFIED_DATETIME
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
