"""A worker's meters: the registry of live and cached `Meter` objects, the state kept for the others,
their keys, and the history (journal) a meter is built again from at start.

A meter's object is built on demand from (fleet, meter_id, state); while a connection is open it is
"active", after its last one closes it stays cached (`METER_CACHE_SIZE` of them, least recently used
first out), and when it leaves the cache what a head-end changed in it is kept as its `MeterState`.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, defaultdict
from dataclasses import asdict, dataclass, field

from fleet.runtime.faults import EFFECTS, Fault
from fleet.settings import FleetOptions, counter_floor
from fleet.store import journal as store_journal
from meter_core.codec.obis import ln
from meter_core.device import keys
from meter_core.device.config import DEFAULT_DEVICE
from meter_core.device.identity import FleetConfig
from meter_core.device.meter import Meter
from meter_core.device.state import MeterState
from meter_core.session import journal

# Meters whose objects stay cached after their last connection closed.
METER_CACHE_SIZE = 2048


class MeterRegistry:
    """The meters of one worker: built on demand, kept while in use and for a while after, their state
    (what head-ends and operators changed) kept for the others; their keys; their link faults."""

    def __init__(self, fleet: FleetConfig, options: FleetOptions, epoch_start: float) -> None:
        self.fleet = fleet
        self.options = options
        self.epoch_start = epoch_start
        self.clock = None  # the worker's SimClock, set once its loop runs
        self.config = DEFAULT_DEVICE  # the fleet's settings, set from the database before any meter is built
        self.active: dict[int, Meter] = {}  # meters with an open connection
        self.cache: OrderedDict[int, Meter] = OrderedDict()  # recently used, least recent first
        self.states: dict[int, MeterState] = {}  # what was changed in meters that are neither
        # meters whose keys or invocation counters may have moved since the recorder last wrote them
        self.security_dirty: set[int] = set()
        # meters whose link to the head-end an operator took down (`fleet inject link-down`): simulated end
        self.link_down: dict[int, float] = {}

    def _build(self, meter_id: int, state: MeterState | None) -> Meter:
        m = Meter(self.fleet, meter_id, epoch_start=self.epoch_start, clock=self.clock,
                  state=state or MeterState(), port=self.options.address(meter_id)[1], config=self.config)
        # The floor of the counters it sends if its keys are derived in this process: any moment of this
        # process is past every counter an earlier one could have sent (`counter_floor`).
        m.tx_floor = counter_floor()
        return m

    def _known(self, meter_id: int) -> Meter | None:
        return self.active.get(meter_id) or self.cache.get(meter_id)

    def meter(self, meter_id: int) -> Meter:
        """The Meter object of ``meter_id``, taken into use (cached while in use and for a while after)."""
        m = self.active.get(meter_id)
        if m is not None:
            return m
        m = self.cache.pop(meter_id, None)
        if m is None:
            m = self._build(meter_id, self.states.get(meter_id))
        self.active[meter_id] = m
        return m

    def for_rows(self, meter_id: int) -> Meter:
        """The meter whose captures are computed: the live object if it is in use or cached, else a
        transient one built with the state a head-end left (not cached: producing rows for a whole
        shard must not evict the meters head-ends are talking to)."""
        m = self._known(meter_id)
        return m if m is not None else self._build(meter_id, self.states.get(meter_id))

    def to_change(self, meter_id: int) -> Meter:
        """The meter whose state a command changes: the live one, or one built on the state kept for it."""
        m = self._known(meter_id)
        if m is not None:
            return m
        self.states.setdefault(meter_id, MeterState())
        return self.for_rows(meter_id)

    def release(self, meter_id: int) -> None:
        """``meter_id`` has no connection left: cache it (what a head-end changed in the one evicted is kept)."""
        m = self.active.pop(meter_id, None)
        if m is None:
            return
        self.cache[meter_id] = m
        if len(self.cache) > METER_CACHE_SIZE:
            old_id, old = self.cache.popitem(last=False)
            if asdict(old.state) != asdict(MeterState()):
                self.states[old_id] = old.state  # keep what a head-end changed

    def state_of(self, meter_id: int) -> MeterState | None:
        """The state of ``meter_id`` if anything was changed or built for it."""
        m = self._known(meter_id)
        return m.state if m is not None else self.states.get(meter_id)

    def security_of(self, meter_id: int):
        """The meter's `MeterSecurity` if it has one (it had a ciphered association)."""
        state = self.state_of(meter_id)
        return None if state is None else state.security

    def take_dirty(self) -> set[int]:
        """The meters whose keys or counters moved since the last call (for the recorder to write)."""
        dirty, self.security_dirty = self.security_dirty, set()
        return dirty

    def install_keys(self, meter_id: int, stored: list, certificates: list | None = None) -> None:
        """Keys, counters and certificates stored by an earlier run (sent counters continue above them)."""
        state = self.states.get(meter_id)
        if state is None:
            state = self.states[meter_id] = MeterState()
        state.security = keys.from_rows(self.fleet, meter_id, stored, counter_floor())
        if certificates:
            keys.install_certificates(state.security, certificates)

    def rebuild(self, found: History) -> None:
        """Build the meters of ``found`` as they were (their journal replayed through the code that served
        it) and take up the link faults still in force."""
        now_sim = self.clock.sim(time.monotonic())
        for mid, entries in found.entries.items():
            m = self._build(mid, self.states.get(mid))
            journal.replay(m, entries)
            self.states[mid] = m.state
        for mid, end in found.link_down.items():
            if end > now_sim:
                self.link_down[mid] = end

    def link_is_down(self, meter_id: int, t: float) -> bool:
        end = self.link_down.get(meter_id)
        if end is None:
            return False
        if t < end:
            return True
        del self.link_down[meter_id]
        return False


@dataclass(slots=True)
class History:
    """A shard's journal as read at start: per meter, what to replay (in order)."""

    entries: dict[int, list] = field(default_factory=lambda: defaultdict(list))
    # link faults: meter -> simulated time the link comes back (inf: until a restore)
    link_down: dict[int, float] = field(default_factory=dict)
    # injected commands already applied, per command: the meters they were applied to
    commands: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    last_time: dict[int, float] = field(default_factory=dict)  # per meter, its last entry's time
    future: int = 0  # entries after the run's start (a run that went further before), not replayed


def history(rows, until: float) -> History:
    """The replay plan of journal ``rows`` (`fleet.store.journal.fetch`) up to simulated ``until``."""
    out = History()
    for r in rows:
        mid, t = r["meter_id"], r["sim_time"]
        if t > until:
            out.future += 1
            continue
        out.last_time[mid] = t
        if r["command_id"] is not None:
            out.commands[r["command_id"]].add(mid)
        if r["source"] == "dlms":
            out.entries[mid].append(journal.Operation(t, r["service"], r["class_id"], ln(r["obis"]), r["index"],
                                                      bytes(r["value"] or b"")))
            continue
        params = r["params"]
        if isinstance(params, str):
            params = json.loads(params)
        params = params or {}
        action = Fault(r["service"])
        effect = EFFECTS[action]
        duration = params.get("duration_s")
        if effect.cuts_link:
            out.link_down[mid] = t + float(duration) if duration is not None else float("inf")
        if effect.restores_link:
            out.link_down.pop(mid, None)
        if effect.changes_meter:
            out.entries[mid].append(journal.Injected(t, action.value, float(duration) if duration is not None else None,
                                                     params.get("factor"), params.get("code")))
    return out


async def load_history(url: str, shard: range, until: float) -> History:
    """Read the journal of ``shard``: the entries up to simulated ``until`` to replay, link faults, commands."""
    return history(await store_journal.fetch(url, shard), until)
