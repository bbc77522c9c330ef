"""Script table (class 9): the MD reset script and the push script table."""

from __future__ import annotations

from meter_core.codec.apdu.codes import ActionResult
from meter_core.codec.axdr import Data, DataType
from meter_core.codec.obis import ln
from meter_core.cosem.model import CosemObject, InterfaceClass, ln_attribute, static
from meter_core.device.config import (
    ALERT_PUSH,
    BILLING_PUSH,
    BLOCK_LOAD_PUSH,
    DAILY_LOAD_PUSH,
    EVENT_PUSHES,
    INSTANT_PUSH,
)
from meter_core.device.meter import Meter
from meter_core.events import PushRequested

SCRIPT_TABLE = InterfaceClass(9, 0, "Script table", ("logical_name", "scripts"), ("execute",))


MD_RESET_SCRIPT = "0.0.10.0.1.255"


TARIFF_SCRIPT = "0.0.10.0.100.255"


def _execute_script(meter: Meter, assoc, params: Data | None, now: float):
    if params is None or params.tag is not DataType.LONG_UNSIGNED:
        return ActionResult.TYPE_UNMATCHED, None
    if params.value != 1:
        return ActionResult.OBJECT_UNAVAILABLE, None
    meter.md_reset(now)
    return ActionResult.SUCCESS, None


def md_reset_script_table() -> CosemObject:
    o = ln(MD_RESET_SCRIPT)
    # scripts ::= array { structure { script_identifier long-unsigned, actions array { structure {
    #   service_id enum (2 = execute method), class_id, logical_name, index, parameter } } } }
    # Script 1 captures the billing profile: the end of a billing period.
    scripts = Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
        Data(DataType.LONG_UNSIGNED, 1),
        Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.ENUM, 2), Data(DataType.LONG_UNSIGNED, 7), Data(DataType.OCTET_STRING, ln("1.0.98.1.0.255")),
            Data(DataType.INTEGER, 2), Data(DataType.INTEGER, 0),
        )),)),
    )),))
    return CosemObject(SCRIPT_TABLE, o, "MD reset script", (ln_attribute(o), static(scripts)), (_execute_script,))


PUSH_SCRIPT_TABLE = "0.0.10.0.108.255"  # push script table: script n runs push() of push setup n


_SCRIPTED = (INSTANT_PUSH, ALERT_PUSH, BLOCK_LOAD_PUSH, DAILY_LOAD_PUSH, BILLING_PUSH, *EVENT_PUSHES)


def _run_script(meter, assoc, params, now):
    """execute (method 1, data long-unsigned script id): script n sends push setup n's push now."""
    if params is None or params.tag is not DataType.LONG_UNSIGNED:
        return ActionResult.TYPE_UNMATCHED, None
    if not 1 <= params.value <= len(_SCRIPTED):
        return ActionResult.OBJECT_UNAVAILABLE, None
    if assoc is not None:
        assoc.events.append(PushRequested(_SCRIPTED[params.value - 1]))
    return ActionResult.SUCCESS, None


def push_script_table() -> CosemObject:
    """The push script table: script n calls push() of push setup n (a head-end may execute a script to
    have that push sent)."""
    s = ln(PUSH_SCRIPT_TABLE)
    scripts = Data(DataType.ARRAY, tuple(Data(DataType.STRUCTURE, (
        Data(DataType.LONG_UNSIGNED, i),
        Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.ENUM, 2), Data(DataType.LONG_UNSIGNED, 40), Data(DataType.OCTET_STRING, ln(p)),
            Data(DataType.INTEGER, 1), Data(DataType.INTEGER, 0))),)),
    )) for i, p in enumerate(_SCRIPTED, start=1)))
    return CosemObject(SCRIPT_TABLE, s, "Push script table", (ln_attribute(s), static(scripts)), (_run_script,))
