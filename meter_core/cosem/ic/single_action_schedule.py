"""Single action schedule (class 22): the billing date and the periodic pushes' schedule."""

from __future__ import annotations

from meter_core.codec.apdu.codes import DataAccessResult
from meter_core.codec.axdr import NOT_SPECIFIED, YEAR_NOT_SPECIFIED, Data, DataType, encode_value
from meter_core.codec.obis import ln
from meter_core.cosem.ic.script_table import MD_RESET_SCRIPT, PUSH_SCRIPT_TABLE
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute, static
from meter_core.device import history
from meter_core.device.config import INSTANT_PUSH, SCHEDULE_SECONDS
from meter_core.device.logbook import EV_BILLING_DATE
from meter_core.device.meter import Meter

SINGLE_ACTION_SCHEDULE = InterfaceClass(
    22, 0, "Single action schedule", ("logical_name", "executed_script", "type", "execution_time")
)


BILLING_SCHEDULE = "0.0.15.0.0.255"
# date octet-string(5): year (2 bytes), month, day of month, weekday (IEC 62056-6-2 clause 4.1.6.1)
_EVERY_MONTH = YEAR_NOT_SPECIFIED.to_bytes(2, "big") + bytes((NOT_SPECIFIED,))  # year and month not specified
_EVERY_DAY = _EVERY_MONTH + bytes((NOT_SPECIFIED, NOT_SPECIFIED))


def _execution_time(meter: Meter, assoc, now: float) -> bytes:
    day, hour, minute = meter.state.billing_schedule[-1][1]
    # execution_time ::= array { structure { time octet-string(4), date octet-string(5) } }:
    # every month (year 0xFFFF, month 0xFF), on ``day``, weekday not specified.
    time = bytes((hour, minute, 0, 0))
    date = _EVERY_MONTH + bytes((day, NOT_SPECIFIED))
    return encode_value(Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        Data(DataType.OCTET_STRING, time), Data(DataType.OCTET_STRING, date))),)))


def set_execution_time(meter: Meter, assoc, value: Data, now: float) -> DataAccessResult:
    if value.tag is not DataType.ARRAY or len(value.value) != 1:
        return DataAccessResult.TYPE_UNMATCHED
    entry = value.value[0]
    if (entry.tag is not DataType.STRUCTURE or len(entry.value) != 2
            or any(v.tag is not DataType.OCTET_STRING for v in entry.value)):
        return DataAccessResult.TYPE_UNMATCHED
    time, date = (bytes(v.value) for v in entry.value)
    if len(time) != 4 or len(date) != 5:
        return DataAccessResult.TYPE_UNMATCHED
    hour, minute = time[0], time[1]
    day = date[3]
    if date[:3] != _EVERY_MONTH or not (1 <= day <= 28) or hour > 23 or minute > 59:
        # a monthly date on a day every month has; a full date or another month is not a billing date
        return DataAccessResult.OTHER_REASON
    state = meter.state
    state.billing_schedule = history.changed(state.billing_schedule, meter.sim(now), (day, hour, minute))
    meter.programmed(EV_BILLING_DATE, now)
    return DataAccessResult.SUCCESS


def billing_schedule() -> CosemObject:
    o = ln(BILLING_SCHEDULE)
    executed = Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, ln(MD_RESET_SCRIPT)), Data(DataType.LONG_UNSIGNED, 1)))
    return CosemObject(
        SINGLE_ACTION_SCHEDULE, o, "Billing date schedule",
        (ln_attribute(o), static(executed), static(1, DataType.ENUM), Attribute(_execution_time, set_execution_time)),
    )


# single action schedule of the periodic pushes (Gurux's India.txt; a Wirepas DLMS NIC firmware for IS 15959
# meters)
PUSH_SCHEDULE = "0.0.15.0.4.255"


def _execution_times(meter, assoc, now) -> bytes:
    """execution_time ::= array { structure { time octet-string(4), date octet-string(5) } }: the instant
    push's period as times of day, every day (date all wildcards); an hour wildcard below an hour."""
    c = meter.config.push[INSTANT_PUSH]
    period = SCHEDULE_SECONDS.get(c.schedule or "", 0) if c.enabled else 0
    if not period:
        times: list[bytes] = []
    elif period < 3600:
        times = [bytes((NOT_SPECIFIED, m, 0, 0)) for m in range(0, 60, period // 60)]
    else:
        times = [bytes((h, 0, 0, 0)) for h in range(0, 24, period // 3600)]
    date = _EVERY_DAY
    return encode_value(Data(DataType.ARRAY, tuple(Data(DataType.STRUCTURE, (
        Data(DataType.OCTET_STRING, t), Data(DataType.OCTET_STRING, date))) for t in times)))


def push_schedule() -> CosemObject:
    """The push single action schedule: it runs the push script table (script 1, the instant push) at
    execution times that follow the instant push's schedule type."""
    o = ln(PUSH_SCHEDULE)
    executed = Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, ln(PUSH_SCRIPT_TABLE)),
                                         Data(DataType.LONG_UNSIGNED, 1)))
    return CosemObject(
        SINGLE_ACTION_SCHEDULE, o, "Push schedule",
        # type 5: n execution times, which may differ, wildcards in the date allowed
        (ln_attribute(o), static(executed), static(5, DataType.ENUM), Attribute(_execution_times)),
    )
