"""Extended register (class 4): the maximum demands with their capture time."""

from __future__ import annotations

from meter_core.codec.axdr import DataType, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.model import (
    NOT_SPECIFIED_DATETIME,
    Attribute,
    CosemObject,
    InterfaceClass,
    ln_attribute,
    scaler_unit,
)
from meter_core.device import profiles
from meter_core.device.meter import Meter
from meter_core.events import WorkNeeded

_enc_u8 = int_encoder(DataType.UNSIGNED)


EXTENDED_REGISTER = InterfaceClass(
    4, 0, "Extended register",
    ("logical_name", "value", "scaler_unit", "status", "capture_time"),
    ("reset",),
)


def _defer(work) -> None:
    """A meter object built late in a billing period scans the period's demand periods first (a month of
    them: several milliseconds): handed to the association's owner a step at a time (`WorkNeeded`)."""
    if work is not None:
        raise WorkNeeded(work)


def max_demand_register(spec: cat.RegisterSpec) -> CosemObject:
    encode = int_encoder(spec.type)
    apparent = spec.source == "md_apparent_import"
    export = spec.source in ("md_active_export", "md_apparent_export")
    factor = 10.0 ** -spec.scaler

    def value(m: Meter, a, now):
        if export:
            return encode(0)  # the load model exports nothing
        if a is not None and a.defer_work:
            _defer(m.max_demand_pending(now, profiles.PENDING_STEP))
        d = m.max_demand(now)
        return encode(round((d.max_apparent if apparent else d.max_active) * factor))

    def capture_time(m: Meter, a, now):
        if export:
            return NOT_SPECIFIED_DATETIME
        if a is not None and a.defer_work:
            _defer(m.max_demand_pending(now, profiles.PENDING_STEP))
        d = m.max_demand(now)
        return profiles.clock_stamp(d.max_apparent_stamp if apparent else d.max_active_stamp)

    return CosemObject(
        EXTENDED_REGISTER, ln(spec.obis), spec.name,
        (
            ln_attribute(ln(spec.obis)),
            Attribute(value),
            Attribute(scaler_unit(spec.scaler, spec.unit)),
            Attribute(_enc_u8(0)),  # status
            Attribute(capture_time),
        ),
        (None,),
    )
