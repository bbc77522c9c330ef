"""Push setup (class 40, versions 1 and 2) as IS 15959 meters list them. When and what a meter pushes is
`meter_core.device.pushes`; what goes on the wire `meter_core.notification`.
"""

from __future__ import annotations

from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import DATETIME_NOT_SPECIFIED, Data, DataType, encode_octets, encode_value
from meter_core.codec.obis import ln
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute, static
from meter_core.device import config as device_config
from meter_core.device import pushes
from meter_core.device.config import PushSetupConfig
from meter_core.device.identity import MeterKind
from meter_core.device.pushes import PUSH_CLIENT_SAP, parse_destination
from meter_core.events import PushRequested

PUSH_SETUP = InterfaceClass(
    40, 1, "Push setup",
    ("logical_name", "push_object_list", "send_destination_and_method", "communication_window",
     "randomisation_start_interval", "number_of_retries", "repetition_delay", "port_reference", "push_client_SAP",
     "push_protection_parameters"),
    ("push",),
)


# Version 2 (push_operation_method, confirmation_parameters, last_confirmation_date_time; reset()): the
# push setups a fleet configures for confirmed pushes.
PUSH_SETUP_V2 = InterfaceClass(
    40, 2, "Push setup",
    (*PUSH_SETUP.attributes, "push_operation_method", "confirmation_parameters", "last_confirmation_date_time"),
    ("push", "reset"),
)


def push_object_list(push: str, kind: MeterKind) -> Data:
    entries = pushes.object_list(push, kind)
    return Data(DataType.ARRAY, tuple(
        Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, c), Data(DataType.OCTET_STRING, ln(o)),
                                  Data(DataType.INTEGER, a), Data(DataType.LONG_UNSIGNED, 0)))
        for c, o, a in entries))


# Push setup version 1 (Gurux's India.txt lists class 40 v1): attributes 8-10 after v0's seven.
PORT_REFERENCE = "0.0.25.0.0.255"  # the TCP-UDP setup the pushes go out on


def push_setup_objects(kind: MeterKind, setups: tuple[PushSetupConfig, ...]) -> list[CosemObject]:
    """The push setups as ``setups`` configure them: version 1, or version 2 for a push setup whose
    pushes are confirmed (push_operation_method 2)."""
    method = {c.logical_name: c.operation_method for c in setups}
    out = []
    for push, name in device_config.NAMES.items():
        o = ln(push)
        v2 = method[push] == 2
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
                static(Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, DATETIME_NOT_SPECIFIED),
                                                 Data(DataType.DOUBLE_LONG_UNSIGNED, 0)))),
                Attribute(_last_confirmation(push)),
            ]
            methods.append(_reset_method(push))
        out.append(CosemObject(PUSH_SETUP_V2 if v2 else PUSH_SETUP, o, name, tuple(attributes), tuple(methods)))
    return out


def _destination(push: str):
    def get(meter, assoc, now) -> bytes:
        return encode_value(Data(DataType.STRUCTURE, (
            Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, pushes.setting(meter, push, "destination").encode()),
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
        d = pushes.setting(meter, push, "repetition_delay_s")
        return encode_value(Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, d), Data(DataType.UNSIGNED, 100),
                                                      Data(DataType.LONG_UNSIGNED, d))))
    return get


def _last_confirmation(push: str):
    def get(meter, assoc, now) -> bytes:
        when = dict(meter.state.push_confirmations).get(push)
        return encode_octets(DATETIME_NOT_SPECIFIED if when is None else meter.clock_bytes_at(when))
    return get


def _reset_method(push: str):
    """reset (method 2, data integer 0): forget the last confirmation."""
    def invoke(meter, assoc, params, now):
        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        meter.state.push_confirmations = tuple(e for e in meter.state.push_confirmations if e[0] != push)
        return ActionResult.SUCCESS, None
    return invoke


def _config_value(push: str, field: str, dtype: DataType):
    def get(meter, assoc, now) -> bytes:
        return encode_value(Data(dtype, pushes.setting(meter, push, field)))
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
