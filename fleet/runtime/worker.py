"""A worker process: one uvloop event loop serving a contiguous shard of meters.

Started by the supervisor with the ``spawn`` method. It opens its database writers, metrics and
listeners only once its loop runs (uvicorn habit), reports ``ready`` over its pipe, sends a
heartbeat every second, and stops on SIGTERM: listeners closed, connections dropped (their
associations recorded as ended), rows flushed.

This module is the wiring: the meters are `fleet.runtime.meters`, each reach mode has its module
(`listen`, `dial`), injected faults are `fleet.runtime.faults`, and the store's writers get what they
need of the meters as callables.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

import asyncpg
import uvloop

from fleet import metrics
from fleet.errors import FleetError
from fleet.metrics import WorkerMetrics
from fleet.runtime import address
from fleet.runtime.actor import TIMER_DEFER, MeterProtocol
from fleet.runtime.budget import budget, listeners
from fleet.runtime.dial import Dialer
from fleet.runtime.faults import Command
from fleet.runtime.inject import Injector
from fleet.runtime.listen import listen, raise_fd_limit
from fleet.runtime.meters import MeterRegistry, load_history
from fleet.settings import RunSettings
from fleet.store import pg
from fleet.store.commands import CommandListener
from fleet.store.defaults import device_config, load_push_settings, load_settings
from fleet.store.journal import Journal
from fleet.store.recorder import NullRecorder, Recorder
from fleet.store.truth import GroundTruthWriter
from meter_core.cosem.build import model_for
from meter_core.device.clock import SimClock, day_of
from meter_core.device.meter import Meter
from meter_core.device.templates import CATEGORIES
from meter_core.session.association import ServiceStats

log = logging.getLogger(__name__)

# Exit code of a worker that could not boot (port in use, database unreachable): the supervisor
# halts instead of restarting it in a loop (gunicorn's WORKER_BOOT_ERROR).
WORKER_BOOT_ERROR = 3


def worker_main(slot: int, shard: range, settings: RunSettings, pipe, listener=None) -> None:
    """Entry point of a worker process (spawned: the environment, metrics folder included, is set);
    ``listener``: address mode, the socket the supervisor opened for this slot."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s fleet worker {slot}: %(message)s",
                        stream=sys.stderr)
    # Ctrl-C reaches the whole process group; only the supervisor acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_fd_limit()
    worker = Worker(slot, shard, settings, pipe, listener)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(worker.main())
    sys.exit(code)


class Worker:
    """One worker: its meters, connections, stats and writers, and the services that act on them."""

    def __init__(self, slot: int, shard: range, settings: RunSettings, pipe, listener=None) -> None:
        self.slot = slot
        self.listener = listener  # address mode: this slot's socket of the supervisor's group (None: open one)
        self.shard = shard
        self.settings = settings
        self.options = settings.options
        self.fleet = settings.options.fleet
        self.transport_kind = settings.options.transport
        self.pipe = pipe
        self.stats = ServiceStats()
        self.metrics = WorkerMetrics()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: dict[int, list] = {}  # meter -> its open connections (MeterProtocol)
        self.protocols: set = set()
        self.unarmed: list = []  # connections whose timer the next round arms (`arm_timers`)
        # connections this worker admits at most (its descriptor budget, fleet.runtime.budget)
        self.max_open = (budget(settings.fd_limit, listeners(self.options.mode, shard)).connections
                         if settings.fd_limit else math.inf)
        self.meters = MeterRegistry(self.fleet, self.options, settings.epoch_start)
        self.dialer = Dialer(self)
        self.faults = Injector(self)
        self.recorder = None
        self.recording = False  # a Recorder keeps connections and associations (not the NullRecorder)
        self.groundtruth = None
        self.journal = None  # fleet.store.journal.Journal: what must be durable before a meter answers
        self.commands = None
        self._journal_reported = (0, 0)
        self.online = 0  # meters it serves, once ready
        self._stop = asyncio.Event()

    @property
    def clock(self) -> SimClock | None:
        """The worker's simulated clock (the meters' registry holds it)."""
        return self.meters.clock

    @clock.setter
    def clock(self, clock: SimClock) -> None:
        self.meters.clock = clock

    # -- lifecycle ----------------------------------------------------------------------------------

    async def main(self, *, install_signals: bool = True) -> int:
        """Boot, serve until SIGTERM (or `stop`), shut down; returns the process exit code."""
        self.loop = asyncio.get_running_loop()
        if install_signals:
            self.loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        s = self.settings
        self.clock = SimClock(start=s.sim_start, t0=s.sim_t0, speed=s.speed, drift_ppm=s.drift_ppm)
        # Heartbeats from the start: a worker recording a large shard's meters and keys in the database
        # boots for longer than the heartbeat time-out, and the supervisor must not take that for a hang.
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            if s.database_url:
                self.recorder = await Recorder.open(
                    s.database_url, shard=self.shard, slot=self.slot, options=self.options, clock=self.clock,
                    install_keys=self.meters.install_keys, security_of=self.meters.security_of,
                    take_dirty=self.meters.take_dirty)
                await self._load_settings(s.database_url)
                await self._replay_journal(s.database_url)
                self.journal = Journal(s.database_url, self.meters.security_of)
                self.journal.start()
                if s.spool_dir:
                    spool = Path(s.spool_dir) / f"shard-{self.shard.start}-{self.shard.stop}"
                    self.groundtruth = GroundTruthWriter(s.database_url, shard=self.shard, clock=self.clock,
                                                         start=s.sim_start, meter_for_rows=self.meters.for_rows,
                                                         spool_dir=spool)
                    self.groundtruth.warm_up()
                    self.groundtruth.start()
            else:
                self.recorder = NullRecorder()
            self.recording = type(self.recorder) is not NullRecorder
            if self.options.mode == "dial":
                if s.hes is None:
                    raise FleetError("dial mode needs the head-end's address (--hes HOST:PORT)")
                # what the push setups show as their destination, where the database names none
                self.meters.config = self.meters.config.with_destination(f"{s.hes[0]}:{s.hes[1]}")
            elif self.options.mode == "address":
                sock = self.listener if self.listener is not None else address.listener(self.options)
                # no meter id: the address a head-end reached names the meter (MeterProtocol.connection_made)
                self.servers = [await self.loop.create_server(functools.partial(MeterProtocol, self, None), sock=sock,
                                                              backlog=address.BACKLOG)]
            else:
                self.servers = await listen(self.options, self.shard,
                                            functools.partial(MeterProtocol, self))
        except FleetError as e:
            heartbeat.cancel()
            self._send(("boot-error", self.slot, str(e)))
            await self._close_recorder(1.0)
            return WORKER_BOOT_ERROR
        self._warm_up()
        # What the worker built at boot (modules, object models, listening sockets, warm caches) lives as
        # long as it does: out of the collector's full passes, which would walk it each time (tens of ms).
        gc.freeze()
        self.online = len(self.shard) if self.options.mode == "address" else len(self.servers)
        metrics.METERS_ONLINE.inc(self.online)
        if self.options.mode == "dial":
            groups = sorted(kind.value for kind in self._kinds())
            pushes = [c.logical_name for c in self.meters.config.pushes if c.enabled]
        else:
            groups, pushes = [], []
        metrics.show_zeros(pushes=pushes, groups=groups, groundtruth=self.groundtruth is not None)
        metrics.WORKERS_UP.inc()
        self._send(("ready", self.slot, os.getpid(), self.online))
        tasks = [heartbeat, asyncio.create_task(self._flush_metrics())]
        if s.database_url:
            self.commands = CommandListener(
                s.database_url, self.shard, lambda row: self.faults.apply(Command.from_row(row)),
                lambda row, sim_at: self.faults.replay(Command.from_row(row), sim_at), durable=self.faults.settled)
            tasks.append(asyncio.create_task(self.commands.run()))
        if self.options.mode == "dial":
            tasks.append(asyncio.create_task(self.dialer.run()))
        await self._stop.wait()
        await self._shutdown(tasks)
        return 0

    def _warm_up(self) -> None:
        """Pay at boot what the first connections would each pay once per process: the load model's shared
        day tables up to today (a meter installed years ago computes its registers from them: about 20 ms for
        the first meter of a category) and the object model of each meter kind the fleet holds."""
        today = day_of(self.clock.sim(time.monotonic()))
        config = self.meters.config
        for category in CATEGORIES:
            config.category_days(category).day(today + 1)
        fleet = self.fleet
        for kind in self._kinds():
            model_for(kind, fleet.hls_mechanism, fleet.security_suite, config)

    def _kinds(self) -> set:
        """The meter kinds the fleet holds (its mix, or its one kind)."""
        fleet = self.fleet
        return {k for k, share in fleet.mix if share > 0} if fleet.mix else {fleet.kind}

    async def _load_settings(self, url: str) -> None:
        """Use the load templates and power-quality configuration the database holds (as edited there)."""
        conn = await pg.connect(url)
        try:
            settings = await load_settings(conn)
            pushes = await load_push_settings(conn)
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            settings, pushes = ([], []), []  # a database migrated before 0004: the code's defaults
        finally:
            await conn.close()
        try:
            self.meters.config = device_config(settings, pushes)
        except (ValueError, KeyError, TypeError) as e:
            raise FleetError(f"the database's load templates, power-quality or push settings are unusable: {e}") from None

    async def _replay_journal(self, url: str) -> None:
        """Build the shard's meters as they were: the journal's SETs, ACTIONs and injected changes, each at
        its time, through the code that served them (`meter_core.session.journal.replay`)."""
        found = await load_history(url, self.shard, self.clock.sim(time.monotonic()))
        self.meters.rebuild(found)
        self.faults.journaled = dict(found.commands)
        self.faults.journal_last = found.last_time
        if found.entries:
            log.info("journal: %d meter(s) built again from %d entries", len(found.entries),
                     sum(len(e) for e in found.entries.values()))
        if found.future:
            log.warning("journal: %d entries lie after this run's start (a run that went further before); "
                        "they are not replayed: start later (--start) or on a fresh database", found.future)

    def stop(self) -> None:
        """Ask the worker to shut down (thread-safe through ``loop.call_soon_threadsafe``)."""
        self._stop.set()

    async def _shutdown(self, tasks) -> None:
        for server in self.servers:
            server.close()
        self.dialer.cancel()  # no more calls placed
        for proto in list(self.protocols):
            if proto.push is not None and proto.transport is not None:
                proto.transport.close()  # a call that pushed: its bytes go out before it ends
            else:
                proto.abort()
        await asyncio.sleep(0)  # let connection_lost callbacks run
        for t in tasks:
            t.cancel()
        self.dialer.cancel()
        self._flush_metrics_once()
        metrics.METERS_ONLINE.dec(self.online)
        metrics.WORKERS_UP.dec()
        # the supervisor kills a worker that has not stopped after shutdown_timeout: the writers finish
        # together well inside it, so what they hold is written or spooled, not lost with the process
        await self._close_recorder(self.settings.shutdown_timeout * 0.6)

    async def _close_recorder(self, timeout: float) -> None:
        """Close the writers at once, each within ``timeout`` seconds."""
        writers = [w for w in (self.journal, self.groundtruth, self.recorder) if w is not None]
        await asyncio.gather(*(w.close(timeout) for w in writers))

    def _send(self, msg) -> None:
        try:
            self.pipe.send(msg)
        except (BrokenPipeError, OSError):
            # The supervisor is gone: stop serving rather than run orphaned.
            self._stop.set()

    async def _heartbeat(self) -> None:
        while True:
            self._send(("hb", self.slot))
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(TIMER_DEFER)
            self.arm_timers()
            self._flush_metrics_once()

    def arm_timers(self) -> None:
        """Arm the timers of the connections opened since the last round that are still open."""
        waiting, self.unarmed = self.unarmed, []
        now = time.monotonic()
        for proto in waiting:
            proto.arm_timer(now)

    def _flush_metrics_once(self) -> None:
        self.metrics.flush(self.stats, len(self.protocols))
        if self.recorder is not None:
            self.recorder.flush_metrics(metrics)
        if self.groundtruth is not None:
            self.groundtruth.flush_metrics(metrics)
        j = self.journal
        if j is not None:
            written, errors = j.rows_written, j.errors
            reported = self._journal_reported
            if written > reported[0]:
                metrics.DB_ROWS.labels("meter_journal").inc(written - reported[0])
            if errors > reported[1]:
                metrics.DB_ERRORS.inc(errors - reported[1])
            self._journal_reported = (written, errors)

    # -- connections ----------------------------------------------------------------------------------

    def admit(self, meter_id: int, dialling: bool = False) -> Meter | str:
        """Take a connection slot of ``meter_id``: its `Meter` (taken into use) if it may have one more, else
        why not (the worker's descriptor budget, the meter's TCP-UDP setup's maximum, no supply, no link). A
        meter dialling out for its last gasp has no supply and still sends it."""
        if len(self.protocols) >= self.max_open:
            return "fd-budget"  # its reserve stays for the database, the spool and the metrics
        meter = self.meters.meter(meter_id)
        open_now = self.connections.get(meter_id)
        if open_now is not None and len(open_now) >= meter.state.max_connections:
            return "max-connections"
        if meter.state.supply or meter_id in self.meters.link_down:  # an injected power failure or link fault
            t = self.clock.sim(time.monotonic())
            if self.meters.link_is_down(meter_id, t):
                return "link-down"
            if not dialling and meter.supply_factor(t) == 0.0:
                return "no-supply"
        return meter

    def drop(self, meter_id: int) -> None:
        """The meter went dark (no supply, no link): its open connections end without a goodbye."""
        for proto in list(self.connections.get(meter_id, ())):
            proto.abort()

    # -- callbacks from actors ----------------------------------------------------------------------

    def connection_opened(self, proto) -> None:
        self.connections.setdefault(proto.meter_id, []).append(proto)
        self.protocols.add(proto)
        if self.recording:
            self.recorder.connection_opened(proto)

    def connection_closed(self, proto) -> None:
        conns = self.connections.get(proto.meter_id)
        if conns is not None:
            try:
                conns.remove(proto)
            except ValueError:
                pass
            if not conns:
                del self.connections[proto.meter_id]
                self.meters.release(proto.meter_id)
        self.protocols.discard(proto)
        if self.recording:
            self.recorder.connection_closed(proto)

    def association_established(self, proto, ev) -> None:
        client = metrics.client_label(ev.client_sap)
        key = (client, "accepted")
        self.metrics.associations[key] = self.metrics.associations.get(key, 0) + 1
        opened = self.metrics.associations_open
        opened[client] = opened.get(client, 0) + 1
        if self.recording:
            self.recorder.association_established(proto, ev)

    def association_rejected(self, proto, ev) -> None:
        key = (metrics.client_label(ev.client_sap), "rejected")
        self.metrics.associations[key] = self.metrics.associations.get(key, 0) + 1
        self.recorder.association_rejected(proto, ev)

    def association_released(self, proto, ev) -> None:
        client = metrics.client_label(ev.client_sap)
        key = (client, ev.reason._value_)  # the member's value without the enum property's two calls
        self.metrics.releases[key] = self.metrics.releases.get(key, 0) + 1
        opened = self.metrics.associations_open
        opened[client] = opened.get(client, 0) - 1
        if self.recording:
            self.recorder.association_released(proto, ev)

    def connection_terminated(self, proto, ev) -> None:
        self.recorder.connection_terminated(proto, ev)
