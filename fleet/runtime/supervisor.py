"""The supervisor: a plain synchronous process that plans shards and keeps one worker per slot alive.

Signal handlers only enqueue the signal; the main loop drains the queue (gunicorn ``Arbiter``).
TERM or INT stops gracefully within a deadline, then SIGKILL; a second INT forces the stop (uvicorn
``should_exit``/``force_exit``). A dead worker is restarted on the same shard; one that fails to
boot (port in use, database unreachable) halts the run with its one-line reason. When the run started
the embedded PostgreSQL, the loop also looks after it (`fleet.store.pg.EmbeddedWatch`): a dead server is
restarted where it was, and the workers' writers, which spooled meanwhile, reconnect to it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from fleet import metrics
from fleet.errors import FleetError
from fleet.runtime import address
from fleet.runtime.worker import WORKER_BOOT_ERROR, worker_main
from fleet.settings import RunSettings
from fleet.store.pg import EmbeddedWatch

log = logging.getLogger(__name__)

# A worker that dies this many times without ever becoming ready is not restarted again.
MAX_EARLY_DEATHS = 5
PROGRESS_EVERY = 5.0  # seconds between two "starting: k of n workers ready" lines while workers boot


@dataclass(slots=True)
class Slot:
    """A worker slot: its shard, and the process serving it now."""

    index: int
    shard: range
    process: multiprocessing.process.BaseProcess | None = None
    pipe: object = None
    ready: bool = False
    last_heartbeat: float = 0.0
    early_deaths: int = 0
    restarts: int = 0
    pids: list[int] = field(default_factory=list)


class Supervisor:
    """Start, watch, restart and stop the workers of one fleet run."""

    def __init__(self, settings: RunSettings, *, on_ready=None, database: EmbeddedWatch | None = None) -> None:
        self.settings = settings
        # The embedded server this run started or joined (None with --database-url: not ours to restart).
        self.database = database
        self.ctx = multiprocessing.get_context("spawn")
        self.slots = [Slot(i, shard) for i, shard in enumerate(settings.plan())]
        # Address mode: the listening sockets of the slots, one reuseport group opened here in slot order
        # (the group's order is what its steering program indexes) and kept for the whole run, so a
        # restarted worker gets its slot's socket back and what came meanwhile waits in its backlog.
        self.listeners = (address.open_listeners(settings.options, [s.shard for s in self.slots])
                          if settings.options.mode == "address" else [None] * len(self.slots))
        self.signals: list[int] = []
        self.on_ready = on_ready
        self._announced = False
        self._stopping = False
        self.error: str | None = None

    def health(self) -> tuple[bool, str]:
        """(ready, why): ready while every worker is ready and the fleet is not stopping (the /health
        endpoint; a Kubernetes readiness probe takes a pod out of its Service otherwise)."""
        ready = sum(s.ready for s in self.slots)
        if self._stopping:
            return False, "stopping"
        return ready == len(self.slots), f"{ready} of {len(self.slots)} workers ready"

    # -- signals ----------------------------------------------------------------------------------

    def _enqueue_signal(self, signum, frame) -> None:
        self.signals.append(signum)

    def _install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._enqueue_signal)

    # -- workers ----------------------------------------------------------------------------------

    def spawn(self, slot: Slot) -> None:
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=worker_main,
            args=(slot.index, slot.shard, self.settings, child, self.listeners[slot.index]),
            name=f"fleet-worker-{slot.index}",
            daemon=False,
        )
        proc.start()
        child.close()
        slot.process, slot.pipe, slot.ready = proc, parent, False
        slot.last_heartbeat = time.monotonic()
        slot.pids.append(proc.pid)

    def run(self) -> int:
        """Run until stopped; 0 on a clean stop, 1 when a worker could not boot."""
        self._install_signals()
        for slot in self.slots:
            self.spawn(slot)
        started = next_progress = time.monotonic()
        stopping = False
        force = False
        while not stopping:
            now = time.monotonic()
            if not self._announced and now - next_progress >= PROGRESS_EVERY:
                next_progress = now
                log.info("starting: %d of %d workers ready after %.0f s", sum(s.ready for s in self.slots),
                         len(self.slots), now - started)
            stopping, force = self._handle_signals()
            if stopping:
                break
            # Before the poll: a restart blocks for seconds, and the poll then takes the heartbeats
            # that came meanwhile before they are checked.
            self._watch_database()
            self._poll(0.5)
            if self.error is not None:
                break
            self._reap_and_restart()
            if self.error is not None:
                break
            self._check_heartbeats()
        self._stopping = True
        self._shutdown(force=force)
        if self.error is not None:
            raise FleetError(self.error)
        return 0

    def _handle_signals(self) -> tuple[bool, bool]:
        stopping = force = False
        while self.signals:
            sig = self.signals.pop(0)
            if stopping and sig == signal.SIGINT:
                force = True
            stopping = True
        return stopping, force

    def _poll(self, timeout: float) -> None:
        pipes = {s.pipe: s for s in self.slots if s.pipe is not None}
        try:
            ready = wait(list(pipes), timeout=timeout)
        except InterruptedError:
            return
        for p in ready:
            slot = pipes[p]
            try:
                while p.poll():
                    self._on_message(slot, p.recv())
            except (EOFError, OSError):
                # The worker's end closed: it is dying; _reap_and_restart picks it up.
                slot.pipe = None

    def _on_message(self, slot: Slot, msg) -> None:
        kind = msg[0]
        slot.last_heartbeat = time.monotonic()
        if kind == "ready":
            slot.ready = True
            slot.early_deaths = 0
            if slot.restarts:
                log.info("worker %d (meters %d-%d) back, pid %d", slot.index, slot.shard.start,
                         slot.shard.stop - 1, msg[2])
            else:
                log.info("worker %d (meters %d-%d) ready, pid %d", slot.index, slot.shard.start,
                         slot.shard.stop - 1, msg[2])
            if not self._announced and all(s.ready for s in self.slots):
                self._announced = True
                if self.on_ready is not None:
                    self.on_ready(self)
        elif kind == "boot-error":
            self.error = msg[2]

    def _reap_and_restart(self) -> None:
        for slot in self.slots:
            proc = slot.process
            if proc is None or proc.is_alive():
                continue
            proc.join(0)
            code = proc.exitcode
            metrics.process_dead(proc.pid)
            if slot.pipe is not None:
                try:
                    while slot.pipe.poll():
                        self._on_message(slot, slot.pipe.recv())
                except (EOFError, OSError):
                    pass
            if self.error is not None:
                return
            if code == WORKER_BOOT_ERROR:
                self.error = f"worker {slot.index} could not start (exit {code})"
                return
            if not slot.ready:
                slot.early_deaths += 1
                if slot.early_deaths >= MAX_EARLY_DEATHS:
                    self.error = f"worker {slot.index} keeps dying before it is ready (exit {code})"
                    return
            log.warning("worker %d (meters %d-%d, pid %d) died (%s); restarting", slot.index,
                        slot.shard.start, slot.shard.stop - 1, proc.pid, _describe_exit(code))
            slot.restarts += 1
            metrics.WORKER_RESTARTS.inc()
            self.spawn(slot)

    def _watch_database(self) -> None:
        if self.database is not None and self.database.check(time.monotonic()):
            metrics.DATABASE_RESTARTS.inc()

    def _check_heartbeats(self) -> None:
        limit = self.settings.heartbeat_timeout
        now = time.monotonic()
        for slot in self.slots:
            proc = slot.process
            if proc is not None and proc.is_alive() and now - slot.last_heartbeat > limit:
                log.warning("worker %d missed heartbeats for %.0f s; killing it", slot.index, limit)
                proc.kill()

    def _shutdown(self, *, force: bool) -> None:
        procs = [s.process for s in self.slots if s.process is not None and s.process.is_alive()]
        for p in procs:
            try:
                os.kill(p.pid, signal.SIGKILL if force else signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.settings.shutdown_timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                log.warning("worker pid %d did not stop in %.0f s; killing it", p.pid,
                            self.settings.shutdown_timeout)
                p.kill()
                p.join(5)
        for s in self.slots:
            if s.process is not None:
                metrics.process_dead(s.process.pid)
            if s.pipe is not None:
                s.pipe.close()
        for sock in self.listeners:
            if sock is not None:
                sock.close()

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.slots if s.process is not None]


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"
