"""Activity calendar (class 20): the TOD tariff calendar, passive tables activated on request."""

from __future__ import annotations

from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import (
    DATETIME_NOT_SPECIFIED,
    CosemDateTime,
    Data,
    DataType,
    encode_octets,
    encode_value,
)
from meter_core.codec.obis import ln
from meter_core.cosem.ic.script_table import TARIFF_SCRIPT
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute
from meter_core.device import history
from meter_core.device.logbook import EV_CALENDAR
from meter_core.device.meter import Meter

# A season that starts every year on 1 January at 00:00:00.00 (year, weekday, deviation, status not specified).
_EVERY_YEAR_FROM_JANUARY_1 = CosemDateTime(month=1, day=1, hour=0, minute=0, second=0, hundredths=0).to_bytes()

ACTIVITY_CALENDAR = InterfaceClass(
    20, 0, "Activity calendar",
    ("logical_name", "calendar_name_active", "season_profile_active", "week_profile_table_active",
     "day_profile_table_active", "calendar_name_passive", "season_profile_passive", "week_profile_table_passive",
     "day_profile_table_passive", "activate_passive_calendar_time"),
    ("activate_passive_calendar",),
)


ACTIVITY_CALENDAR_LN = "0.0.13.0.0.255"


def _default_calendar() -> tuple[Data, Data, Data, Data]:
    """A year-round IS 15959 style TOD calendar: one season, one week, one day with four zones."""
    octets = lambda b: Data(DataType.OCTET_STRING, b)  # noqa: E731
    name = octets(b"CSF-TOD")
    season = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        octets(b"\x01"), octets(_EVERY_YEAR_FROM_JANUARY_1), octets(b"\x01"))),))
    week = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        octets(b"\x01"), *(Data(DataType.UNSIGNED, 1) for _ in range(7)))),))
    zones = ((0, 1), (6, 2), (18, 3), (22, 4))  # off-peak night, normal day, evening peak, late evening
    day = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        Data(DataType.UNSIGNED, 1),
        Data(DataType.ARRAY, tuple(Data(DataType.STRUCTURE, (
            octets(bytes((h, 0, 0, 0))), octets(ln(TARIFF_SCRIPT)), Data(DataType.LONG_UNSIGNED, z)))
            for h, z in zones)),
    )),))
    return name, season, week, day


_CALENDAR_SHAPES = ("calendar_name", "season_profile", "week_profile_table", "day_profile_table")


def _valid_calendar_part(index: int, value: Data) -> bool:
    if index == 0:
        return value.tag is DataType.OCTET_STRING
    if value.tag is not DataType.ARRAY:
        return False
    sizes = {1: 3, 2: 8, 3: 2}
    for item in value.value:
        if item.tag is not DataType.STRUCTURE or len(item.value) != sizes[index]:
            return False
        if index == 3:
            if item.value[0].tag is not DataType.UNSIGNED or item.value[1].tag is not DataType.ARRAY:
                return False
            for action in item.value[1].value:
                if action.tag is not DataType.STRUCTURE or len(action.value) != 3:
                    return False
                start = action.value[0]
                if start.tag is not DataType.OCTET_STRING or len(start.value) != 4 or start.value[0] > 23:
                    return False
    return True


def _calendar_value(index: int, active: bool):
    default = encode_value(_default_calendar()[index])

    def get(m: Meter, a, now: float) -> bytes:
        parts = m.state.calendars[-1][1] if active else m.state.calendar_passive
        if parts is None or parts[index] is None:
            return default
        return parts[index]

    return get


def _calendar_setter(index: int):
    def set_(m: Meter, a, value: Data, now: float) -> DataAccessResult:
        if not _valid_calendar_part(index, value):
            return DataAccessResult.TYPE_UNMATCHED
        passive = m.state.calendar_passive or (None,) * 4
        m.state.calendar_passive = tuple(encode_value(value) if i == index else p for i, p in enumerate(passive))
        return DataAccessResult.SUCCESS
    return set_


def _activation_time(m: Meter, a, now: float) -> bytes:
    return encode_octets(m.state.calendar_activation or DATETIME_NOT_SPECIFIED)


def _set_activation_time(m: Meter, a, value: Data, now: float) -> DataAccessResult:
    if value.tag is not DataType.OCTET_STRING or len(value.value) != 12:
        return DataAccessResult.TYPE_UNMATCHED
    m.state.calendar_activation = bytes(value.value)
    return DataAccessResult.SUCCESS


def _activate_calendar(m: Meter, a, params: Data | None, now: float):
    if params is not None and params.tag is not DataType.INTEGER:
        return ActionResult.TYPE_UNMATCHED, None
    state = m.state
    active = state.calendars[-1][1] or (None,) * 4
    passive = state.calendar_passive or (None,) * 4
    activated = tuple(p if p is not None else c for p, c in zip(passive, active))
    state.calendars = history.changed(state.calendars, m.sim(now), activated)
    m.tod_cache = None
    m.programmed(EV_CALENDAR, now)
    return ActionResult.SUCCESS, None


def activity_calendar() -> CosemObject:
    o = ln(ACTIVITY_CALENDAR_LN)
    active = tuple(Attribute(_calendar_value(i, True)) for i in range(4))
    passive = tuple(Attribute(_calendar_value(i, False), _calendar_setter(i)) for i in range(4))
    return CosemObject(
        ACTIVITY_CALENDAR, o, "Activity calendar",
        (ln_attribute(o), *active, *passive, Attribute(_activation_time, _set_activation_time)),
        (_activate_calendar,),
    )
