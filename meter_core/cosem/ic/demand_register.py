"""Demand register (class 5): the demand of the integration period in progress and the last."""

from __future__ import annotations

from meter_core.codec.axdr import DataType, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.model import (
    Attribute,
    CosemObject,
    InterfaceClass,
    datetime_value,
    ln_attribute,
    scaler_unit,
)
from meter_core.device.meter import Meter

_enc_u8 = int_encoder(DataType.UNSIGNED)
_enc_u16 = int_encoder(DataType.LONG_UNSIGNED)
_enc_u32 = int_encoder(DataType.DOUBLE_LONG_UNSIGNED)


DEMAND_REGISTER = InterfaceClass(
    5, 0, "Demand register",
    ("logical_name", "current_average_value", "last_average_value", "scaler_unit", "status",
     "capture_time", "start_time_current", "period", "number_of_periods"),
    ("reset", "next_period"),
)


def demand_register(spec: cat.RegisterSpec) -> CosemObject:
    encode = int_encoder(spec.type)
    field_name = "apparent_import_vah" if spec.source == "demand_apparent_import" else "active_import_wh"

    def average(m: Meter, t0: float, t1: float) -> float:
        # t0, t1: simulated time
        if t1 <= t0:
            return 0.0
        e0, e1 = getattr(m.energy_at(t0), field_name), getattr(m.energy_at(t1), field_name)
        return (e1 - e0) * 3600.0 / (t1 - t0)

    def current(m: Meter, a, now):
        start, _, _ = m.demand_window(now)
        return encode(round(average(m, start, m.sim(now))))

    def last(m: Meter, a, now):
        start, before, _ = m.demand_window(now)
        return encode(round(average(m, before, start)))

    def start_time(m: Meter, a, now):
        return datetime_value(m, m.demand_window(now)[0])

    return CosemObject(
        DEMAND_REGISTER, ln(spec.obis), spec.name,
        (
            ln_attribute(ln(spec.obis)),
            Attribute(current),
            Attribute(last),
            Attribute(scaler_unit(spec.scaler, spec.unit)),
            Attribute(_enc_u8(0)),  # status
            Attribute(start_time),  # capture_time: end of the last period = start of this one
            Attribute(start_time),  # start_time_current
            Attribute(lambda m, a, now: _enc_u32(m.state.demand_integration_period)),
            Attribute(_enc_u16(1)),  # number_of_periods
        ),
        (None, None),
    )
