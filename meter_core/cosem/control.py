"""What a head-end changes on a meter: periods, billing date, MD reset, TOD calendar, relay, load limit.

Each write or method checks the value's type (type-unmatched) and range (other-reason) before
anything changes, then changes the meter's small state, counts a programming change where IS 15959
has one, and records the transaction or control event (facts section 10):

- 1.0.0.8.0.255 demand integration period (900 or 1800 s): event 152;
- 1.0.0.8.4.255 profile capture period, same as block-load attribute 4 (900 or 1800 s): event 153;
- 0.0.15.0.0.255 single action schedule for billing dates: execution_time, one monthly date
  (year and month wildcards, day 1-28): event 154, effective for the billing dates that follow;
- 0.0.10.0.1.255 MD reset script (execute script 1): closes the billing period now, event 166;
- 0.0.13.0.0.255 activity calendar: passive tables written, then activate_passive_calendar() or the
  activation time: event 155;
- 0.0.96.3.10.255 disconnect control (not on CT/PT meters): remote_disconnect / remote_reconnect,
  events 301 / 302;
- 0.0.17.0.0.255 limiter: threshold_normal (W): event 158.
"""

from __future__ import annotations

from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import Data, DataType, encode_octets, encode_value, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem.ic import (
    ACTIVITY_CALENDAR,
    DISCONNECT_CONTROL,
    LIMITER,
    SCRIPT_TABLE,
    SINGLE_ACTION_SCHEDULE,
)
from meter_core.cosem.model import Attribute, CosemObject, ln_attribute, static
from meter_core.device import history
from meter_core.device.identity import MeterKind
from meter_core.device.logbook import (
    CONTROL,
    EV_BILLING_DATE,
    EV_CALENDAR,
    EV_CONNECTED,
    EV_DEMAND_PERIOD,
    EV_DISCONNECTED,
    EV_LOAD_LIMIT,
)
from meter_core.device.meter import Meter, default_load_limit
from meter_core.device.profiles import set_block_period

MD_RESET_SCRIPT = "0.0.10.0.1.255"
BILLING_SCHEDULE = "0.0.15.0.0.255"
ACTIVITY_CALENDAR_LN = "0.0.13.0.0.255"
DISCONNECT_CONTROL_LN = "0.0.96.3.10.255"
LIMITER_LN = "0.0.17.0.0.255"
TARIFF_SCRIPT = "0.0.10.0.100.255"
# Disconnect control_mode 3 (Blue Book): remote disconnect, remote reconnect straight to connected,
# no manual disconnection (IS 15959 meters have no relay button). UNCONFIRMED as the IS 15959 choice.
CONTROL_MODE = 3

_enc_u16 = int_encoder(DataType.LONG_UNSIGNED)
_enc_u32 = int_encoder(DataType.DOUBLE_LONG_UNSIGNED)
_enc_i32 = int_encoder(DataType.DOUBLE_LONG)
_enc_enum = int_encoder(DataType.ENUM)
_FALSE, _TRUE = bytes((DataType.BOOLEAN, 0)), bytes((DataType.BOOLEAN, 1))


# -- periods ----------------------------------------------------------------------------------------


def set_demand_period(meter: Meter, assoc, value: Data, now: float) -> DataAccessResult:
    if value.tag is not DataType.LONG_UNSIGNED:
        return DataAccessResult.TYPE_UNMATCHED
    if value.value not in (900, 1800):
        return DataAccessResult.OTHER_REASON
    if value.value != meter.state.demand_integration_period:
        state = meter.state
        state.demand_periods = history.changed(state.demand_periods, meter.sim(now), value.value)
        meter.reset_demand_cache()
    meter.programmed(EV_DEMAND_PERIOD, now)
    return DataAccessResult.SUCCESS


def set_capture_period_data(meter: Meter, assoc, value: Data, now: float) -> DataAccessResult:
    """1.0.0.8.4.255 (long-unsigned seconds), the same setting as block-load attribute 4."""

    if value.tag is not DataType.LONG_UNSIGNED:
        return DataAccessResult.TYPE_UNMATCHED
    return set_block_period(meter, value.value, now)


# -- billing: the billing-date schedule and the MD reset script --------------------------------------


def _execution_time(meter: Meter, assoc, now: float) -> bytes:
    day, hour, minute = meter.state.billing_schedule[-1][1]
    # execution_time ::= array { structure { time octet-string(4), date octet-string(5) } }:
    # every month (year 0xFFFF, month 0xFF), on ``day``, weekday not specified.
    time = bytes((hour, minute, 0, 0))
    date = b"\xff\xff\xff" + bytes((day, 0xFF))
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
    if date[:3] != b"\xff\xff\xff" or not (1 <= day <= 28) or hour > 23 or minute > 59:
        # a monthly date on a day every month has; a full date or another month is not a billing date
        return DataAccessResult.OTHER_REASON
    state = meter.state
    state.billing_schedule = history.changed(state.billing_schedule, meter.sim(now), (day, hour, minute))
    meter.programmed(EV_BILLING_DATE, now)
    return DataAccessResult.SUCCESS


def _execute_script(meter: Meter, assoc, params: Data | None, now: float):
    if params is None or params.tag is not DataType.LONG_UNSIGNED:
        return ActionResult.TYPE_UNMATCHED, None
    if params.value != 1:
        return ActionResult.OBJECT_UNAVAILABLE, None
    meter.md_reset(now)
    return ActionResult.SUCCESS, None


def _script_table() -> CosemObject:
    o = ln(MD_RESET_SCRIPT)
    # scripts ::= array { structure { script_identifier long-unsigned, actions array { structure {
    #   service_id enum (2 = execute method), class_id, logical_name, index, parameter } } } }
    # Script 1 captures the billing profile: the end of a billing period.
    scripts = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        Data(DataType.LONG_UNSIGNED, 1),
        Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.ENUM, 2), Data(DataType.LONG_UNSIGNED, 7), Data(DataType.OCTET_STRING, ln("1.0.98.1.0.255")),
            Data(DataType.INTEGER, 2), Data(DataType.INTEGER, 0),
        )),)),
    )),))
    return CosemObject(SCRIPT_TABLE, o, "MD reset script", (ln_attribute(o), static(scripts)), (_execute_script,))


def _billing_schedule() -> CosemObject:
    o = ln(BILLING_SCHEDULE)
    executed = Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, ln(MD_RESET_SCRIPT)), Data(DataType.LONG_UNSIGNED, 1)))
    return CosemObject(
        SINGLE_ACTION_SCHEDULE, o, "Billing date schedule",
        (ln_attribute(o), static(executed), static(1, DataType.ENUM), Attribute(_execution_time, set_execution_time)),
    )


# -- activity calendar (TOD) ----------------------------------------------------------------------------


def _default_calendar() -> tuple[Data, Data, Data, Data]:
    """A year-round IS 15959 style TOD calendar: one season, one week, one day with four zones."""
    octets = lambda b: Data(DataType.OCTET_STRING, b)  # noqa: E731
    name = octets(b"CSF-TOD")
    season = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        octets(b"\x01"), octets(b"\xff\xff\x01\x01\xff\x00\x00\x00\x00\x80\x00\xff"), octets(b"\x01"))),))
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
    return encode_octets(m.state.calendar_activation or b"\xff" * 9 + b"\x80\x00\xff")


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


def _activity_calendar() -> CosemObject:
    o = ln(ACTIVITY_CALENDAR_LN)
    active = tuple(Attribute(_calendar_value(i, True)) for i in range(4))
    passive = tuple(Attribute(_calendar_value(i, False), _calendar_setter(i)) for i in range(4))
    return CosemObject(
        ACTIVITY_CALENDAR, o, "Activity calendar",
        (ln_attribute(o), *active, *passive, Attribute(_activation_time, _set_activation_time)),
        (_activate_calendar,),
    )


# -- relay and load limit --------------------------------------------------------------------------------


def _remote_disconnect(m: Meter, a, params: Data | None, now: float):
    if params is not None and params.tag is not DataType.INTEGER:
        return ActionResult.TYPE_UNMATCHED, None
    if not m.state.disconnected:
        m.set_disconnected(True, now)
        m.record_event(CONTROL, EV_DISCONNECTED, now)
    return ActionResult.SUCCESS, None


def _remote_reconnect(m: Meter, a, params: Data | None, now: float):
    if params is not None and params.tag is not DataType.INTEGER:
        return ActionResult.TYPE_UNMATCHED, None
    if m.state.disconnected:
        m.set_disconnected(False, now)
        m.record_event(CONTROL, EV_CONNECTED, now)
    return ActionResult.SUCCESS, None


def _disconnect_control() -> CosemObject:
    o = ln(DISCONNECT_CONTROL_LN)
    return CosemObject(
        DISCONNECT_CONTROL, o, "Disconnect control",
        (
            ln_attribute(o),
            Attribute(lambda m, a, now: _FALSE if m.relay_open(m.sim(now)) else _TRUE),  # output_state
            Attribute(lambda m, a, now: _enc_enum(0 if m.relay_open(m.sim(now)) else 1)),  # control_state
            static(CONTROL_MODE, DataType.ENUM),
        ),
        (_remote_disconnect, _remote_reconnect),
    )


def _threshold(m: Meter, a, now: float) -> bytes:
    return _enc_i32(m.state.load_limit_w or default_load_limit(m.identity.kind))


def _set_threshold(m: Meter, a, value: Data, now: float) -> DataAccessResult:
    # The threshold has the monitored value's type: active power 1.0.1.7.0.255, double-long, W.
    if value.tag is not DataType.DOUBLE_LONG:
        return DataAccessResult.TYPE_UNMATCHED
    if not 0 < value.value <= 10_000_000:
        return DataAccessResult.OTHER_REASON
    state = m.state
    t = m.sim(now)
    if state.limit_since is not None:
        m.scan_limiter(t)  # trips up to now come from the threshold in force until now
    state.load_limits = history.changed(state.load_limits, t, value.value)
    if state.limit_since is None:
        state.limit_since = state.limit_scanned = t  # load limiting applies from now on
    m.programmed(EV_LOAD_LIMIT, now)
    return DataAccessResult.SUCCESS


def _limiter() -> CosemObject:
    o = ln(LIMITER_LN)
    monitored = Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, 3), Data(DataType.OCTET_STRING, ln("1.0.1.7.0.255")),
                                          Data(DataType.INTEGER, 2)))
    no_script = Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, bytes(6)), Data(DataType.LONG_UNSIGNED, 0)))
    disconnect = Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, ln(DISCONNECT_CONTROL_LN)),
                                           Data(DataType.LONG_UNSIGNED, 1)))
    emergency = Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, 0),
                                          Data(DataType.OCTET_STRING, b"\xff" * 9 + b"\x80\x00\xff"),
                                          Data(DataType.DOUBLE_LONG_UNSIGNED, 0)))
    return CosemObject(
        LIMITER, o, "Limiter",
        (
            ln_attribute(o),
            static(monitored),
            Attribute(_threshold),  # threshold_active: the normal one (no emergency profile active)
            Attribute(_threshold, _set_threshold),  # threshold_normal
            Attribute(_threshold),  # threshold_emergency
            static(60, DataType.DOUBLE_LONG_UNSIGNED),  # min_over_threshold_duration, s
            static(60, DataType.DOUBLE_LONG_UNSIGNED),  # min_under_threshold_duration, s
            static(emergency),
            static(Data(DataType.ARRAY, ())),
            static(False, DataType.BOOLEAN),
            static(Data(DataType.STRUCTURE, (disconnect, no_script))),
        ),
    )


def control_objects(kind) -> list[CosemObject]:
    """The objects of this module a meter of ``kind`` has (no relay on CT/PT meters)."""
    objects = [_script_table(), _billing_schedule(), _activity_calendar()]
    if kind is not MeterKind.CT_PT:
        objects += [_disconnect_control(), _limiter()]
    return objects


__all__ = ["control_objects", "set_capture_period_data", "set_demand_period"]
