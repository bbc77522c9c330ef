"""Push setup objects (class 40) as IS 15959 meters list them, and the objects that start the pushes.

Objects and push object lists follow facts section 12: every push starts with the device ID
(0.0.96.1.2.255), the push setup's own logical name and the clock, then the pushed data. When a meter
pushes and how is `meter_core.device.pushes`; what goes on the wire is `meter_core.notification`.
"""

from __future__ import annotations

from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import Data, DataType, encode_octets, encode_value
from meter_core.codec.obis import ln
from meter_core.cosem.ic import PUSH_SETUP, PUSH_SETUP_V2, SCRIPT_TABLE, SINGLE_ACTION_SCHEDULE
from meter_core.cosem.model import Attribute, CosemObject, ln_attribute, static
from meter_core.device import pushes
from meter_core.device.identity import MeterKind
from meter_core.device.pushes import (
    ALERT_PUSH,
    BILLING_PUSH,
    BLOCK_LOAD_PUSH,
    CONFIG,
    DAILY_LOAD_PUSH,
    EVENT_PUSHES,
    INSTANT_PUSH,
    PUSH_CLIENT_SAP,
    SCHEDULE_SECONDS,
    parse_destination,
    setting,
)
from meter_core.events import PushRequested


def push_object_list(push: str, kind: MeterKind) -> Data:
    entries = pushes.object_list(push, kind)
    return Data(DataType.ARRAY, tuple(
        Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, c), Data(DataType.OCTET_STRING, ln(o)),
                                  Data(DataType.INTEGER, a), Data(DataType.LONG_UNSIGNED, 0)))
        for c, o, a in entries))


# Push setup version 1 (facts 8.4: IS 15959 meters list class 40 v1): attributes 8-10 after v0's seven.
PORT_REFERENCE = "0.0.25.0.0.255"  # the TCP-UDP setup the pushes go out on


def push_setup_objects(kind: MeterKind) -> list[CosemObject]:
    """The push setups, as `CONFIG` has them when the model is built: version 1, or version 2 for a push
    setup whose pushes are confirmed (push_operation_method 2)."""
    out = []
    for push, name in pushes.NAMES.items():
        o = ln(push)
        v2 = CONFIG[push].operation_method == 2
        attributes = [
            ln_attribute(o),
            static(push_object_list(push, kind)),
            # send_destination_and_method: TCP, the head-end's "host:port" (none unless the fleet pushes
            # somewhere), A-XDR encoded APDUs
            Attribute(_destination(push), _destination_setter(push)),
            static(Data(DataType.ARRAY, ())),  # communication_window: always
            Attribute(_config_value(push, "randomisation_s", DataType.LONG_UNSIGNED)),
            Attribute(_config_value(push, "retries", DataType.UNSIGNED), _number_setter(push, "retries", DataType.UNSIGNED)),
            Attribute(_repetition_delay_v2(push), _delay_v2_setter(push)) if v2 else
            Attribute(_config_value(push, "repetition_delay_s", DataType.LONG_UNSIGNED),
                      _number_setter(push, "repetition_delay_s", DataType.LONG_UNSIGNED)),
            static(Data(DataType.OCTET_STRING, ln(PORT_REFERENCE))),
            static(PUSH_CLIENT_SAP, DataType.INTEGER),
            static(Data(DataType.ARRAY, ())),  # push_protection_parameters: the push setup's keys
        ]
        methods = [_push_method(push)]
        if v2:
            attributes += [
                Attribute(_config_value(push, "operation_method", DataType.ENUM)),
                # confirmation_parameters: { confirmation_start_date (not specified), confirmation_interval
                # 0: every push asks for its confirmation }
                static(Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, _NOT_SPECIFIED),
                                                 Data(DataType.DOUBLE_LONG_UNSIGNED, 0)))),
                Attribute(_last_confirmation(push)),
            ]
            methods.append(_reset_method(push))
        out.append(CosemObject(PUSH_SETUP_V2 if v2 else PUSH_SETUP, o, name, tuple(attributes), tuple(methods)))
    return out


_NOT_SPECIFIED = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff"  # a date-time not specified


def _destination(push: str):
    def get(meter, assoc, now) -> bytes:
        return encode_value(Data(DataType.STRUCTURE, (
            Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, setting(meter, push, "destination").encode()),
            Data(DataType.ENUM, 0))))
    return get


def _destination_setter(push: str):
    """A head-end points the pushes elsewhere: { transport_service TCP (0), "host:port", message A-XDR (0) }."""
    def set_(meter, assoc, value, now):
        parts = value.value if value.tag is DataType.STRUCTURE else ()
        if (len(parts) != 3 or parts[0].tag is not DataType.ENUM or parts[1].tag is not DataType.OCTET_STRING
                or parts[2].tag is not DataType.ENUM):
            return DataAccessResult.TYPE_UNMATCHED
        try:
            text = bytes(parts[1].value).decode("ascii")
        except UnicodeDecodeError:
            return DataAccessResult.OTHER_REASON
        if parts[0].value != 0 or parts[2].value != 0 or (text and parse_destination(text) is None):
            return DataAccessResult.OTHER_REASON  # TCP and A-XDR APDUs only; a host:port (or none)
        pushes.write_setting(meter, push, "destination", text)
        return DataAccessResult.SUCCESS
    return set_


def _number_setter(push: str, name: str, dtype: DataType):
    limit = 255 if dtype is DataType.UNSIGNED else 65535

    def set_(meter, assoc, value, now):
        if value.tag is not dtype:
            return DataAccessResult.TYPE_UNMATCHED
        if not 0 <= value.value <= limit or (name == "repetition_delay_s" and value.value == 0):
            return DataAccessResult.OTHER_REASON
        pushes.write_setting(meter, push, name, int(value.value))
        return DataAccessResult.SUCCESS
    return set_


def _delay_v2_setter(push: str):
    """repetition_delay of v2: a constant delay only (min = max, exponent 100)."""
    def set_(meter, assoc, value, now):
        parts = value.value if value.tag is DataType.STRUCTURE else ()
        if len(parts) != 3 or any(p.tag is not t for p, t in zip(parts, (
                DataType.LONG_UNSIGNED, DataType.UNSIGNED, DataType.LONG_UNSIGNED))):
            return DataAccessResult.TYPE_UNMATCHED
        if parts[0].value == 0 or parts[0].value != parts[2].value or parts[1].value != 100:
            return DataAccessResult.OTHER_REASON
        pushes.write_setting(meter, push, "repetition_delay_s", int(parts[0].value))
        return DataAccessResult.SUCCESS
    return set_


def _repetition_delay_v2(push: str):
    """repetition_delay in v2: { repetition_delay_min, repetition_delay_exponent (percent), max }: a
    constant delay (exponent 100)."""
    def get(meter, assoc, now) -> bytes:
        d = setting(meter, push, "repetition_delay_s")
        return encode_value(Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, d), Data(DataType.UNSIGNED, 100),
                                                      Data(DataType.LONG_UNSIGNED, d))))
    return get


def _last_confirmation(push: str):
    def get(meter, assoc, now) -> bytes:
        when = dict(meter.state.push_confirmations).get(push)
        return encode_octets(_NOT_SPECIFIED if when is None else meter.clock_bytes_at(when))
    return get


def _reset_method(push: str):
    """reset (method 2, data integer 0): forget the last confirmation."""
    def invoke(meter, assoc, params, now):
        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        meter.state.push_confirmations = tuple(e for e in meter.state.push_confirmations if e[0] != push)
        return ActionResult.SUCCESS, None
    return invoke


PUSH_SCHEDULE = "0.0.15.0.4.255"  # single action schedule of the periodic pushes (facts 8.6, 12.1)


PUSH_SCRIPT_TABLE = "0.0.10.0.108.255"  # push script table: script n runs push() of push setup n


_SCRIPTED = (INSTANT_PUSH, ALERT_PUSH, BLOCK_LOAD_PUSH, DAILY_LOAD_PUSH, BILLING_PUSH, *EVENT_PUSHES)


def trigger_objects() -> list[CosemObject]:
    """What starts the periodic pushes, as a head-end reads it: the push single action schedule (its
    execution times follow the instant push's schedule type) and the push script table it runs (script
    n calls push() of push setup n; a head-end may execute a script to have that push sent)."""
    o = ln(PUSH_SCHEDULE)
    executed = Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, ln(PUSH_SCRIPT_TABLE)),
                                         Data(DataType.LONG_UNSIGNED, 1)))
    schedule = CosemObject(
        SINGLE_ACTION_SCHEDULE, o, "Push schedule",
        # type 5: n execution times, which may differ, wildcards in the date allowed
        (ln_attribute(o), static(executed), static(5, DataType.ENUM), Attribute(_execution_times)),
    )
    s = ln(PUSH_SCRIPT_TABLE)
    scripts = Data(DataType.ARRAY, tuple(Data(DataType.STRUCTURE, (
        Data(DataType.LONG_UNSIGNED, i),
        Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.ENUM, 2), Data(DataType.LONG_UNSIGNED, 40), Data(DataType.OCTET_STRING, ln(p)),
            Data(DataType.INTEGER, 1), Data(DataType.INTEGER, 0))),)),
    )) for i, p in enumerate(_SCRIPTED, start=1)))
    table = CosemObject(SCRIPT_TABLE, s, "Push script table", (ln_attribute(s), static(scripts)), (_run_script,))
    return [schedule, table]


def _execution_times(meter, assoc, now) -> bytes:
    """execution_time ::= array { structure { time octet-string(4), date octet-string(5) } }: the instant
    push's period as times of day, every day (date all wildcards); an hour wildcard below an hour."""
    c = CONFIG[INSTANT_PUSH]
    period = SCHEDULE_SECONDS.get(c.schedule or "", 0) if c.enabled else 0
    if not period:
        times: list[bytes] = []
    elif period < 3600:
        times = [bytes((0xFF, m, 0, 0)) for m in range(0, 60, period // 60)]
    else:
        times = [bytes((h, 0, 0, 0)) for h in range(0, 24, period // 3600)]
    date = b"\xff\xff\xff\xff\xff"
    return encode_value(Data(DataType.ARRAY, tuple(Data(DataType.STRUCTURE, (
        Data(DataType.OCTET_STRING, t), Data(DataType.OCTET_STRING, date))) for t in times)))


def _run_script(meter, assoc, params, now):
    """execute (method 1, data long-unsigned script id): script n sends push setup n's push now."""
    if params is None or params.tag is not DataType.LONG_UNSIGNED:
        return ActionResult.TYPE_UNMATCHED, None
    if not 1 <= params.value <= len(_SCRIPTED):
        return ActionResult.OBJECT_UNAVAILABLE, None
    if assoc is not None:
        assoc.events.append(PushRequested(_SCRIPTED[params.value - 1]))
    return ActionResult.SUCCESS, None


def _config_value(push: str, field: str, dtype: DataType):
    def get(meter, assoc, now) -> bytes:
        return encode_value(Data(dtype, setting(meter, push, field)))
    return get


def _push_method(push: str):
    """push (method 1, data integer 0): the meter sends this push now (the connection's owner sends it
    on the same connection, after the answer)."""
    def invoke(meter, assoc, params, now):
        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        if assoc is not None:
            assoc.events.append(PushRequested(push))
        return ActionResult.SUCCESS, None
    return invoke
