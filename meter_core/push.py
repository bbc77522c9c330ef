"""Push setup objects (class 40) as IS 15959 meters list them; pushing itself comes with issue 6.

Objects and push object lists follow facts section 12: every push starts with the device ID
(0.0.96.1.2.255), the push setup's own logical name and the clock, then the pushed data: the
instantaneous values (instant push), the Event Status Word (alert push), or a profile buffer (block
load and daily load pushes). Normative IS 15959 push object lists are not public (UNCONFIRMED); the
intervals are in seconds (facts 2.1, UNCONFIRMED).
"""

from __future__ import annotations

from meter_core.axdr import Data, DataType
from meter_core.cosem.ic import PUSH_SETUP
from meter_core.cosem.model import CosemObject, ln_attribute, static
from meter_core.identity import MeterKind
from meter_core.obis import ln

INSTANT_PUSH = "0.0.25.9.0.255"
ALERT_PUSH = "0.4.25.9.0.255"
BLOCK_LOAD_PUSH = "0.5.25.9.0.255"
DAILY_LOAD_PUSH = "0.6.25.9.0.255"

_HEAD = ((1, "0.0.96.1.2.255", 2),)
_INSTANT_POLY = tuple((3, o, 2) for o in (
    "1.0.31.7.0.255", "1.0.51.7.0.255", "1.0.71.7.0.255", "1.0.32.7.0.255", "1.0.52.7.0.255", "1.0.72.7.0.255",
    "1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.9.8.0.255", "1.0.10.8.0.255"))
_INSTANT_SINGLE = tuple((3, o, 2) for o in (
    "1.0.11.7.0.255", "1.0.12.7.0.255", "1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.9.8.0.255", "1.0.10.8.0.255"))


def _data_for(push: str, kind: MeterKind) -> tuple[tuple[int, str, int], ...]:
    if push == INSTANT_PUSH:
        return _INSTANT_SINGLE if kind is MeterKind.SINGLE_PHASE else _INSTANT_POLY
    if push == ALERT_PUSH:
        return ((1, "0.0.94.91.18.255", 2),)
    if push == BLOCK_LOAD_PUSH:
        return ((7, "1.0.99.1.0.255", 2),)
    return ((7, "1.0.99.2.0.255", 2),)


# Randomisation start interval (s) per push: the alert push goes out at once, periodic ones spread.
_RANDOMISATION = {INSTANT_PUSH: 60, ALERT_PUSH: 0, BLOCK_LOAD_PUSH: 300, DAILY_LOAD_PUSH: 900}


def push_object_list(push: str, kind: MeterKind) -> Data:
    entries = (*_HEAD, (40, push, 1), (8, "0.0.1.0.0.255", 2), *_data_for(push, kind))
    return Data(DataType.ARRAY, tuple(
        Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, c), Data(DataType.OCTET_STRING, ln(o)),
                                  Data(DataType.INTEGER, a), Data(DataType.LONG_UNSIGNED, 0)))
        for c, o, a in entries))


def push_setup_objects(kind: MeterKind) -> list[CosemObject]:
    out = []
    for push, name in ((INSTANT_PUSH, "Instant push setup"), (ALERT_PUSH, "Alert push setup"),
                       (BLOCK_LOAD_PUSH, "Block load push setup"), (DAILY_LOAD_PUSH, "Daily load push setup")):
        o = ln(push)
        out.append(CosemObject(
            PUSH_SETUP, o, name,
            (
                ln_attribute(o),
                static(push_object_list(push, kind)),
                # send_destination_and_method: TCP, no destination until a head-end is configured, A-XDR
                static(Data(DataType.STRUCTURE, (Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, b""),
                                                 Data(DataType.ENUM, 0)))),
                static(Data(DataType.ARRAY, ())),  # communication_window: always
                static(_RANDOMISATION[push], DataType.LONG_UNSIGNED),
                static(3, DataType.UNSIGNED),  # number_of_retries
                static(60, DataType.LONG_UNSIGNED),  # repetition_delay, s
            ),
            (None,),
        ))
    return out


__all__ = ["ALERT_PUSH", "BLOCK_LOAD_PUSH", "DAILY_LOAD_PUSH", "INSTANT_PUSH", "push_setup_objects"]
