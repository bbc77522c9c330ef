"""TCP-UDP setup (class 41)."""

from __future__ import annotations

from meter_core.codec.axdr import DataType, encode_octets, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute, static

_enc_u8 = int_encoder(DataType.UNSIGNED)
_enc_u16 = int_encoder(DataType.LONG_UNSIGNED)


TCP_UDP_SETUP = InterfaceClass(
    41, 0, "TCP-UDP setup",
    ("logical_name", "TCP-UDP_port", "IP_reference", "maximum_segment_size",
     "maximum_simultaneous_connections", "inactivity_time_out"),
)


def tcp_udp_setup() -> CosemObject:
    o = ln(cat.TCP_UDP_SETUP)
    return CosemObject(
        TCP_UDP_SETUP, o, "TCP-UDP setup",
        (
            ln_attribute(o),
            Attribute(lambda m, a, now: _enc_u16(m.port if m.port is not None else 4059)),
            Attribute(encode_octets(ln(cat.IPV4_SETUP))),
            static(1460, DataType.LONG_UNSIGNED),  # maximum_segment_size
            Attribute(lambda m, a, now: _enc_u8(m.state.max_connections)),
            Attribute(lambda m, a, now: _enc_u16(m.state.inactivity_timeout)),
        ),
    )
