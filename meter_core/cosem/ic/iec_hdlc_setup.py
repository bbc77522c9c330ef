"""IEC HDLC setup (class 23)."""

from __future__ import annotations

from meter_core.codec.axdr import DataType, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute, static

_enc_u16 = int_encoder(DataType.LONG_UNSIGNED)


IEC_HDLC_SETUP = InterfaceClass(
    23, 1, "IEC HDLC setup",
    ("logical_name", "comm_speed", "window_size_transmit", "window_size_receive",
     "max_info_field_length_transmit", "max_info_field_length_receive", "inter_octet_time_out",
     "inactivity_time_out", "device_address"),
)


def hdlc_setup() -> CosemObject:
    o = ln(cat.HDLC_SETUP)
    return CosemObject(
        IEC_HDLC_SETUP, o, "IEC HDLC setup",
        (
            ln_attribute(o),
            static(5, DataType.ENUM),  # comm_speed 9600 baud
            static(1, DataType.UNSIGNED),  # window_size_transmit
            static(1, DataType.UNSIGNED),  # window_size_receive
            static(128, DataType.LONG_UNSIGNED),  # max_info_field_length_transmit
            static(128, DataType.LONG_UNSIGNED),  # max_info_field_length_receive
            static(25, DataType.LONG_UNSIGNED),  # inter_octet_time_out, ms
            static(120, DataType.LONG_UNSIGNED),  # inactivity_time_out, s
            Attribute(lambda m, a, now: _enc_u16(m.identity.hdlc_physical_address)),
        ),
    )
