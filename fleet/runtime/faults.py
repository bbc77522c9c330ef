"""Faults an operator injects into a running fleet (`fleet inject`), and which meters a command reaches.

`Fault` is the one list of fault types: the CLI's choices, the worker's dispatch (`EFFECTS`) and the
journal's reading come from it, and a test checks that migration 0011's CHECK on
``fleet_commands.action`` names exactly its values. What a fault does to a meter's physics is
`meter_core.session.journal.replay` (the same code replays it at start); what it does to the meter's link and
connections is its `Effect` here, which `fleet.runtime.inject` applies. This module imports no I/O
package: the CLI takes its choices from it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

from meter_core.device.identity import stable_hash


class Fault(enum.StrEnum):
    """A state change injected into meters; the value is its name on the command line and in
    ``fleet_commands.action``."""

    POWER_FAILURE = "power-failure"
    RESTORE = "restore"
    TAMPER = "tamper"
    LINK_DOWN = "link-down"
    LOAD_CHANGE = "load-change"


@dataclass(frozen=True, slots=True, kw_only=True)
class Effect:
    """What a fault does on the worker's side of a meter, beside its physics."""

    changes_meter: bool  # goes through `meter_core.session.journal.replay` (supply, load, tamper)
    cuts_link: bool = False  # the link stays down until the duration ends or a restore
    restores_link: bool = False  # ends a link fault
    drops_connections: bool = False  # the meter's open connections end without a goodbye


EFFECTS: dict[Fault, Effect] = {
    Fault.POWER_FAILURE: Effect(changes_meter=True, drops_connections=True),
    Fault.RESTORE: Effect(changes_meter=True, restores_link=True),
    Fault.TAMPER: Effect(changes_meter=True),
    Fault.LINK_DOWN: Effect(changes_meter=False, cuts_link=True, drops_connections=True),
    Fault.LOAD_CHANGE: Effect(changes_meter=True),
}

# A command's seeded draw per meter: the meter is reached when its draw is below share * _DRAW.
_DRAW = 1 << 32


@dataclass(frozen=True, slots=True)
class Command:
    """One `fleet inject` order: a fault, the region it applies to, and the share of it it reaches."""

    command_id: int
    action: Fault
    first_meter: int | None
    last_meter: int | None
    share: float
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", Fault(self.action))

    def selects(self, seed: int, meter_id: int) -> bool:
        """Whether this command reaches meter ``meter_id``."""
        if self.first_meter is not None and meter_id < self.first_meter:
            return False
        if self.last_meter is not None and meter_id > self.last_meter:
            return False
        if self.share >= 1.0:
            return True
        return stable_hash("inject", seed, self.command_id, meter_id) % _DRAW < self.share * _DRAW

    def meters(self, seed: int, ids: range) -> list[int]:
        lo = ids.start if self.first_meter is None else max(ids.start, self.first_meter)
        hi = ids.stop if self.last_meter is None else min(ids.stop, self.last_meter + 1)
        return [m for m in range(lo, hi) if self.selects(seed, m)]

    @classmethod
    def from_row(cls, r) -> Command:
        params = r["params"]
        if isinstance(params, str):
            params = json.loads(params)
        return cls(r["command_id"], Fault(r["action"]), r["first_meter"], r["last_meter"], r["share"], params or {})


__all__ = ["EFFECTS", "Command", "Effect", "Fault"]
