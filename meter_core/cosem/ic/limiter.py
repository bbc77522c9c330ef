"""Limiter (class 71): the load limit a head-end sets; the meter trips the relay above it."""

from __future__ import annotations

from meter_core.codec.apdu.codes import DataAccessResult
from meter_core.codec.axdr import DATETIME_NOT_SPECIFIED, Data, DataType, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem.ic.disconnect_control import DISCONNECT_CONTROL_LN
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute, static
from meter_core.device import history
from meter_core.device.logbook import EV_LOAD_LIMIT
from meter_core.device.meter import Meter, default_load_limit

_enc_i32 = int_encoder(DataType.DOUBLE_LONG)


LIMITER = InterfaceClass(
    71, 0, "Limiter",
    ("logical_name", "monitored_value", "threshold_active", "threshold_normal", "threshold_emergency",
     "min_over_threshold_duration", "min_under_threshold_duration", "emergency_profile",
     "emergency_profile_group_id_list", "emergency_profile_active", "actions"),
)


LIMITER_LN = "0.0.17.0.0.255"


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


def limiter() -> CosemObject:
    o = ln(LIMITER_LN)
    monitored = Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, 3), Data(DataType.OCTET_STRING, ln("1.0.1.7.0.255")),
                                          Data(DataType.INTEGER, 2)))
    no_script = Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, bytes(6)), Data(DataType.LONG_UNSIGNED, 0)))
    disconnect = Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, ln(DISCONNECT_CONTROL_LN)),
                                           Data(DataType.LONG_UNSIGNED, 1)))
    emergency = Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, 0),
                                          Data(DataType.OCTET_STRING, DATETIME_NOT_SPECIFIED),
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
