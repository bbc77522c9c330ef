"""Applying `fleet inject` commands to a worker's meters, as `fleet.runtime.faults.EFFECTS` says."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from fleet.runtime.faults import EFFECTS, Command
from fleet.store.journal import injected_row
from meter_core.session import journal

log = logging.getLogger(__name__)


class Injector:
    """Applies `fleet inject` commands to a worker's meters: their physics (`meter_core.session.journal.replay`),
    their links and connections (`EFFECTS`), the journal, and dial mode's triggered pushes."""

    def __init__(self, worker) -> None:
        self.worker = worker
        self.meters = worker.meters
        self.journaled: dict[int, set[int]] = {}  # command -> meters it was applied to before (the journal)
        self.journal_last: dict[int, float] = {}  # meter -> time of its last journal entry at start
        self._last_persist: asyncio.Future | None = None

    def replay(self, cmd: Command, sim_at: float | None) -> tuple[float, int]:
        """Apply an earlier command (issued before this worker started) to the meters of the shard it selects
        that the journal does not show it applied to (a worker that died before journaling it, or one that
        was starting when it was issued), as of simulated ``sim_at`` (the time it was first applied) or, for
        a meter with later journal entries, of its last one; a command from this run's future is left out.
        Returns (simulated time, how many meters it reached)."""
        w = self.worker
        c = w.clock
        now_sim = c.sim(time.monotonic())
        if sim_at is None:  # issued while the fleet was starting: no worker applied it yet
            sim_at = now_sim
        elif sim_at > now_sim:
            return sim_at, 0
        done = self.journaled.get(cmd.command_id, set())
        ids = [m for m in cmd.meters(w.fleet.seed, w.shard) if m not in done]
        reached = len(cmd.meters(w.fleet.seed, w.shard)) - len(ids)
        by_time: dict[float, list[int]] = {}
        for mid in ids:
            by_time.setdefault(max(sim_at, self.journal_last.get(mid, sim_at)), []).append(mid)
        for t, mids in sorted(by_time.items()):
            self.apply(cmd, c.t0 + (t - c.start) / c.speed, only=mids, sim_time=t)
        return sim_at, reached + len(ids)

    def apply(self, cmd: Command, now: float | None = None, *, only: list[int] | None = None,
              sim_time: float | None = None) -> tuple[int, float]:
        """Apply a command to the meters of this shard it selects (``only``: these of them), as of monotonic
        ``now`` (default now; ``sim_time``: exactly this simulated time); each meter's change goes to the
        journal. Returns (how many, simulated time)."""
        w = self.worker
        if now is None:
            now = time.monotonic()
        t = w.clock.sim(now) if sim_time is None else sim_time
        ids = cmd.meters(w.fleet.seed, w.shard) if only is None else only
        duration = cmd.params.get("duration_s")
        duration = float(duration) if duration is not None else None
        params = {k: v for k, v in cmd.params.items() if k in ("duration_s", "factor", "code")}
        changed = []
        rows = []
        effect = EFFECTS[cmd.action]
        for mid in ids:
            m = self.meters.to_change(mid)
            rows.append(injected_row(mid, t, m.clock_at_sim(t), cmd.action.value, cmd.command_id, params))
            if effect.cuts_link:
                self.meters.link_down[mid] = math.inf if duration is None else t + duration
            if effect.restores_link:
                self.meters.link_down.pop(mid, None)
            if effect.changes_meter:
                entry = journal.Injected(t, cmd.action.value, duration, cmd.params.get("factor"), cmd.params.get("code"))
                if journal.replay(m, [entry]):
                    changed.append(mid)
            if effect.drops_connections:
                w.drop(mid)
        if rows and w.journal is not None:
            self._last_persist = w.journal.persist(rows)
        if changed and w.options.mode == "dial":
            w.dialer.rescan(changed, t)
        log.info("command %d: %s on %d meters", cmd.command_id, cmd.action, len(ids))
        return len(ids), t

    async def settled(self) -> None:
        """Wait until the journal has what the commands applied so far did (before answering for them)."""
        fut = self._last_persist
        if fut is not None:
            await asyncio.shield(fut)

