"""Disconnect control (class 70): the load relay (not on CT/PT meters)."""

from __future__ import annotations

from meter_core.codec.apdu.codes import ActionResult
from meter_core.codec.axdr import Data, DataType, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute, static
from meter_core.device.logbook import CONTROL, EV_CONNECTED, EV_DISCONNECTED
from meter_core.device.meter import Meter

_enc_enum = int_encoder(DataType.ENUM)


DISCONNECT_CONTROL = InterfaceClass(
    70, 0, "Disconnect control", ("logical_name", "output_state", "control_state", "control_mode"),
    ("remote_disconnect", "remote_reconnect"),
)


DISCONNECT_CONTROL_LN = "0.0.96.3.10.255"


# Disconnect control_mode 3 (Blue Book): remote disconnect, remote reconnect straight to connected,
# no manual disconnection (IS 15959 meters have no relay button). UNCONFIRMED as the IS 15959 choice.
CONTROL_MODE = 3


_FALSE, _TRUE = bytes((DataType.BOOLEAN, 0)), bytes((DataType.BOOLEAN, 1))


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


def disconnect_control() -> CosemObject:
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
