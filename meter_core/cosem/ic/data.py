"""Data (class 1): the name plate and counters, the event codes, ESW and its filter, the invocation counters,
and the settings held as data (demand integration and capture periods).
"""

from __future__ import annotations

from meter_core.codec.apdu.codes import DataAccessResult
from meter_core.codec.axdr import Data, DataType, encode_octets, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute
from meter_core.device import eventprofiles, history, logbook, profiles
from meter_core.device.identity import MeterKind
from meter_core.device.logbook import EV_DEMAND_PERIOD
from meter_core.device.meter import Meter
from meter_core.device.profiles import set_block_period

_enc_u8 = int_encoder(DataType.UNSIGNED)
_enc_u16 = int_encoder(DataType.LONG_UNSIGNED)
_enc_u32 = int_encoder(DataType.DOUBLE_LONG_UNSIGNED)


DATA = InterfaceClass(1, 0, "Data", ("logical_name", "value"))


def identity_value(source: str, kind: MeterKind):
    if source == "meter_type":
        return Attribute(_enc_u8(cat.METER_TYPE_CODE[kind]))
    if source == "category":
        return Attribute(encode_octets(cat.METER_CATEGORY[kind].encode()))
    if source == "current_rating":
        return Attribute(encode_octets(cat.CURRENT_RATING[kind].encode()))
    if source in ("ct_ratio", "pt_ratio"):
        # Primary/secondary ratio of the instrument transformers the meter is programmed with; its
        # registers show primary values.
        return Attribute(lambda m, a, now: _enc_u16(getattr(m.load.params, source)))
    if source == "year_of_manufacture":
        return Attribute(lambda m, a, now: _enc_u16(m.identity.year_of_manufacture))
    if source == "demand_integration_period":
        return Attribute(lambda m, a, now: _enc_u16(m.state.demand_integration_period), set_demand_period)
    if source == "profile_capture_period":
        return Attribute(lambda m, a, now: _enc_u16(m.state.profile_capture_period),
                         set_capture_period_data)
    if source == "billing_count":
        return Attribute(lambda m, a, now: _enc_u32(m.billing_count(now)))
    if source == "power_failure_count":
        return Attribute(lambda m, a, now: _enc_u32(eventprofiles.outage_totals(m, m.sim(now))[0]))
    if source == "tamper_count":
        return Attribute(lambda m, a, now: _enc_u16(m.state.tamper_count))
    if source == "programming_count":
        return Attribute(lambda m, a, now: _enc_u16(m.state.programming_count))
    if source == "last_billing_time":
        return Attribute(lambda m, a, now: profiles.clock_stamp(profiles.last_billing_clock(m, now)))
    text = {
        "logical_device_name": "logical_device_name", "serial": "serial", "manufacturer": "manufacturer",
        "device_id": "device_id", "firmware_version": "firmware_version",
    }[source]
    return Attribute(lambda m, a, now: encode_octets(getattr(m.identity, text).encode("ascii")))


def invocation_counter(obis: str, e: int) -> CosemObject:
    """0.0.43.1.e.255: the counter a client's next protected APDU under setup e must exceed."""

    def value(m, a, now):
        keys = m.state.security
        return _enc_u32(keys.sets[e].rx_ic if keys is not None else 0)

    return CosemObject(DATA, ln(obis), f"Invocation counter {e}", (ln_attribute(ln(obis)), Attribute(value)))


def event_objects() -> list[CosemObject]:
    """Last event code per log (0.0.96.11.x.255), the Event Status Word and its filter."""
    out = [
        CosemObject(DATA, ln(obis), f"Event code, {logbook.CATEGORY_NAMES[c]} events",
                    (ln_attribute(ln(obis)), Attribute(eventprofiles.last_code(c))))
        for c, obis in enumerate(logbook.CODE_OBIS)
    ]
    out.append(CosemObject(DATA, ln(cat.ESW), "Event Status Word",
                           (ln_attribute(ln(cat.ESW)), Attribute(eventprofiles.esw_value))))
    out.append(CosemObject(DATA, ln(cat.ESWF), "Event Status Word filter",
                           (ln_attribute(ln(cat.ESWF)), Attribute(eventprofiles.eswf_value, eventprofiles.set_eswf))))
    return out


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
