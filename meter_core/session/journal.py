"""A meter's journal: what was done to it and when, so that it can be done again exactly.

A meter's past is a pure function of (fleet seed, meter_id, true time) and of what was done to it:
the SETs and ACTIONs head-ends made, and the supply changes an operator injected, each with the true
(simulated) time it happened. The association reports each SET and ACTION as a `Programmed` event
(`meter_core.events`); the owner of the meter keeps them (the fleet writes them to PostgreSQL before
the answer goes out) and, when a meter is built again (a restart, a crashed worker, another pod),
`replay` applies them in order at their times through the same code that served them, so the meter
serves exactly what it served before.

What is not replayed: the outcome of the security methods and attributes (key transfer, HLS and LLS
secrets, key pairs, certificates). They change keys and counters, which are kept as such (the fleet's
``meter_keys`` and ``certificates`` tables), and running them again would undo a later change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meter_core.codec.axdr import data_from_bytes
from meter_core.codec.errors import DecodeError
from meter_core.cosem.build import model_of

SECURITY_SETUP_CLASS = 64
ASSOCIATION_LN_CLASS = 15
_ASSOCIATION_SECRET = 7  # Association LN attribute 7: the LLS secret
_HLS_METHODS = (1, 2)  # Association LN reply_to_HLS_authentication, change_HLS_secret


def replayable(service: str, class_id: int, index: int) -> bool:
    """Whether a successful SET (``service`` "set") or ACTION ("action") is done again on replay: every
    one but those of key management, which the keys and counters kept as such already reflect."""
    if class_id == SECURITY_SETUP_CLASS:
        return service == "set"
    if class_id == ASSOCIATION_LN_CLASS:
        return not (service == "set" and index == _ASSOCIATION_SECRET) and not (
            service == "action" and index in _HLS_METHODS)
    return True


@dataclass(frozen=True, slots=True)
class Operation:
    """A SET or ACTION a head-end made that changed the meter, as replayed."""

    sim_time: float
    service: str  # "set" or "action"
    class_id: int
    obis: bytes  # logical name, 6 bytes
    index: int  # attribute or method
    value: bytes  # the A-XDR encoded value written, or the method's parameters (b"": none)


@dataclass(frozen=True, slots=True)
class Injected:
    """A state change an operator injected (`fleet inject`): power-failure, load-change, tamper, restore."""

    sim_time: float
    action: str
    duration: float | None = None
    factor: float | None = None
    code: int | None = None


class _ReplayAssociation:
    """What a replayed SET or ACTION sees of an association: nothing it could act on (a push a replayed
    push() asks for is not sent again)."""

    __slots__ = ("events", "spec", "_sec")

    def __init__(self) -> None:
        self.events: list = []
        self.spec = None
        self._sec = None


def _at(t: float):
    return lambda _now: t


def replay(meter, entries: Iterable[Operation | Injected]) -> int:
    """Apply ``entries`` (in order) to ``meter`` at their true times; returns how many were applied.

    An entry the meter cannot apply (an object its kind has not, a value that no longer decodes) is
    skipped: it was refused when it was first made, or it belongs to another kind of meter.
    """
    sim = meter.sim
    assoc = _ReplayAssociation()
    applied = 0
    try:
        for e in entries:
            meter.sim = _at(e.sim_time)
            if type(e) is Injected:
                applied += _inject(meter, e)
                continue
            obj = model_of(meter).by_key.get((e.class_id, e.obis))
            if obj is None:
                continue
            try:
                value = data_from_bytes(e.value) if e.value else None
            except DecodeError:
                continue
            if e.service == "set":
                attrs = obj.attributes
                if not 1 <= e.index <= len(attrs) or attrs[e.index - 1].set is None or value is None:
                    continue
                attrs[e.index - 1].set(meter, assoc, value, e.sim_time)
            else:
                methods = obj.methods or ()
                if not 1 <= e.index <= len(methods) or methods[e.index - 1] is None:
                    continue
                methods[e.index - 1](meter, assoc, value, e.sim_time)
            assoc.events.clear()
            applied += 1
    finally:
        meter.sim = sim
    return applied


def _inject(meter, e: Injected) -> int:
    now = e.sim_time  # meter.sim is the identity on it while replaying
    if e.action == "power-failure":
        meter.change_supply(0.0, now, e.duration)
    elif e.action == "load-change":
        meter.change_supply(e.factor if e.factor is not None else 1.0, now, e.duration)
    elif e.action == "tamper":
        meter.inject_tamper(e.code if e.code is not None else 201, now, e.duration)
    elif e.action == "restore":
        meter.change_supply(None, now)
        meter.restore_tampers(now)
    else:
        return 0
    return 1


__all__ = ["Injected", "Operation", "replay", "replayable"]
