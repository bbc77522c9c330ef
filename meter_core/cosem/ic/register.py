"""Register (class 3): instantaneous, cumulative, TOD, block and duration registers."""

from __future__ import annotations

from meter_core.codec.axdr import DataType, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.ic.profile_generic import block_register_getter
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute, scaler_unit
from meter_core.device import eventprofiles, profiles, tod
from meter_core.device.meter import Meter

REGISTER = InterfaceClass(3, 0, "Register", ("logical_name", "value", "scaler_unit"), ("reset",))


def _instant_getter(source: str, dtype: DataType, scaler: int):
    factor = 10.0 ** -scaler
    encode = int_encoder(dtype)
    phase = {"l1": 0, "l2": 1, "l3": 2}
    if source.startswith(("current_l", "voltage_l", "pf_l")):
        name, _, idx = source.rpartition("_")
        field_name = {"current": "current", "voltage": "voltage", "pf": "pf"}[name]
        i = phase[idx]

        def get(meter, assoc, now):
            return encode(round(getattr(meter.instant(now), field_name)[i] * factor))
    else:
        attr = {
            "pf_total": "pf_total", "frequency": "frequency", "active_power": "active_power",
            "reactive_power": "reactive_power", "apparent_power": "apparent_power",
            "current_neutral": "current_neutral",
        }[source]

        def get(meter, assoc, now):
            return encode(round(getattr(meter.instant(now), attr) * factor))

    return get


_ENERGY_FIELDS = {
    "active_import": "active_import_wh",
    "active_export": "active_export_wh",
    "apparent_import": "apparent_import_vah",
    "apparent_export": "apparent_export_vah",
    "reactive_q1": "reactive_q1_varh",
    "reactive_q2": "reactive_q2_varh",
    "reactive_q3": "reactive_q3_varh",
    "reactive_q4": "reactive_q4_varh",
}


def _energy_getter(source: str, dtype: DataType, scaler: int):
    divisor = 10.0 ** scaler
    encode = int_encoder(dtype)
    attr = _ENERGY_FIELDS[source]

    def get(meter, assoc, now):
        # floor keeps a register monotonic: it never shows more than the meter has counted
        return encode(int(getattr(meter.energy(now), attr) // divisor))

    return get


def _duration_getter(spec: cat.RegisterSpec):
    encode = int_encoder(spec.type)
    source = spec.source
    if source == "net_active":
        def get(m: Meter, a, now):
            r = m.readings(m.sim(now))
            return encode(r[0] - r[1])
    elif source == "power_on_minutes":
        def get(m: Meter, a, now):
            t = m.sim(now)
            return encode(int(max(0.0, t - m.install_time - eventprofiles.outage_totals(m, t)[1]) // 60))
    elif source == "power_off_minutes":
        def get(m: Meter, a, now):
            return encode(int(eventprofiles.outage_totals(m, m.sim(now))[1] // 60))
    elif source == "period_power_on_minutes":
        def get(m: Meter, a, now):
            return encode(int(max(0.0, m.sim(now) - profiles.period_start_sim(m, now)) // 60))
    else:  # period_average_pf
        def get(m: Meter, a, now):
            t = m.sim(now)
            r0, r1 = m.readings(profiles.period_start_sim(m, now)), m.readings(t)
            kwh, kvah = r1[0] - r0[0], r1[2] - r0[2]
            return encode(round(1000 * kwh / kvah) if kvah > 0 else 1000)
    return get


def _tod_getter(spec: cat.RegisterSpec):
    encode = int_encoder(spec.type)
    _, quantity, zone = spec.source.split("_")
    index = (int(zone) - 1) + (tod.ZONES if quantity == "apparent" else 0)
    divisor = 10.0 ** spec.scaler

    def get(m: Meter, a, now):
        return encode(int(tod.totals_at(m, m.sim(now))[index] // divisor))

    return get


def register_object(spec: cat.RegisterSpec) -> CosemObject:
    name = spec.name
    if spec.source in _ENERGY_FIELDS:
        value = Attribute(_energy_getter(spec.source, spec.type, spec.scaler))
    elif spec.source.startswith("tod_"):
        value = Attribute(_tod_getter(spec))
    elif spec.source.startswith(("block_", "avg_")):
        value = Attribute(block_register_getter(spec))
    elif spec.source in ("net_active", "power_on_minutes", "power_off_minutes", "period_power_on_minutes",
                         "period_average_pf"):
        value = Attribute(_duration_getter(spec))
    else:
        value = Attribute(_instant_getter(spec.source, spec.type, spec.scaler))
    return CosemObject(
        REGISTER, ln(spec.obis), name,
        (ln_attribute(ln(spec.obis)), value, Attribute(scaler_unit(spec.scaler, spec.unit))),
        (None,),
    )
