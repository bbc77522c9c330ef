"""A worker process: one uvloop event loop serving a contiguous shard of meters.

Started by the supervisor with the ``spawn`` method. It opens its database writer, metrics and
listeners only once its loop runs (uvicorn habit), reports ``ready`` over its pipe, sends a
heartbeat every second, and stops on SIGTERM: listeners closed, connections dropped (their
associations recorded as ended), rows flushed.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import math
import os
import resource
import signal
import socket
import sys
import time
from collections import Counter, OrderedDict
from dataclasses import asdict
from pathlib import Path

import asyncpg

from fleet.errors import FleetError
from fleet.settings import RunSettings
from meter_core import journal

log = logging.getLogger(__name__)

# Exit code of a worker that could not boot (port in use, database unreachable): the supervisor
# halts instead of restarting it in a loop (gunicorn's WORKER_BOOT_ERROR).
WORKER_BOOT_ERROR = 3
# Meters whose objects stay cached after their last connection closed.
METER_CACHE_SIZE = 2048


def worker_main(slot: int, shard: range, settings: RunSettings, pipe) -> None:
    """Entry point of a worker process (spawned: imports happen here, after the env is set)."""
    import uvloop

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s fleet worker {slot}: %(message)s",
                        stream=sys.stderr)
    # Ctrl-C reaches the whole process group; only the supervisor acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _raise_fd_limit(len(shard))
    worker = Worker(slot, shard, settings, pipe)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(worker.main())
    sys.exit(code)


# Dial mode looks for the ESW changes that call for alert pushes a simulated day at a time (one transient
# Meter per meter and day; what it keeps is the few alerts found).
ALERT_WINDOW = 86400.0

# Pushes a meter keeps waiting for their retries (the seed's message_queue, bounded per meter): beyond
# these, a push that fails its first attempt fails for good ("queue-full").
MESSAGE_QUEUE_DEPTH = 16
_PUSH_INDEX = {"0.0.25.9.0.255": 0, "0.4.25.9.0.255": 1, "0.5.25.9.0.255": 2, "0.6.25.9.0.255": 3}


def _message_id(push_ln: str, due: float) -> int:
    """A queued push's message id: its due time in ms and its push setup (unique per meter)."""
    return round(due * 1000) * 8 + _PUSH_INDEX.get(push_ln, 7)


# Sent invocation counters of a meter with none stored start here: 16 per second since 2025-01-01, so
# a counter used before a crash that came before the first write is never used again (2**32 lasts to 2033).
_COUNTER_EPOCH = 1735689600.0


def tx_floor() -> int:
    return max(0, int((time.time() - _COUNTER_EPOCH) * 16))


def _raise_fd_limit(meters: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Worker:
    """The state of one worker: its meters, connections, stats, writer."""

    def __init__(self, slot: int, shard: range, settings: RunSettings, pipe) -> None:
        from fleet.metrics import WorkerMetrics
        from meter_core.association import ServiceStats

        self.slot = slot
        self.shard = shard
        self.settings = settings
        self.options = settings.options
        self.fleet = settings.options.fleet
        self.transport_kind = settings.options.transport
        self.pipe = pipe
        self.stats = ServiceStats()
        self.metrics = WorkerMetrics()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clock = None
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: dict[int, list] = {}
        self.protocols: set = set()
        self._cache: OrderedDict = OrderedDict()
        self._active_meters: dict[int, object] = {}
        self.states: dict[int, object] = {}
        self.recorder = None
        self.groundtruth = None
        self.journal = None  # fleet.store.journal.Journal: what must be durable before a meter answers
        self._journaled_commands: dict[int, set[int]] = {}  # command -> meters it was applied to before
        self._journal_last: dict[int, float] = {}  # meter -> time of its last journal entry at start
        self._last_persist = None
        self._journal_reported = (0, 0)
        # meters whose keys or invocation counters may have moved since the recorder last wrote them
        self.security_dirty: set[int] = set()
        self.push_counts: Counter = Counter()
        self._stop = asyncio.Event()
        self._dials: set = set()
        # meters whose link to the head-end an operator took down (`fleet inject link-down`): simulated end
        self.link_down: dict[int, float] = {}
        self.queued: Counter = Counter()  # pushes waiting for a retry, per meter
        # confirmed pushes waiting for the head-end's Data-Notification-Confirm: (meter, invoke id) -> futures
        self._awaiting: dict[tuple[int, int], list] = {}
        self._heap: list | None = None
        # how far the trigger scanner has looked: (simulated time, last meter looked a window beyond it)
        self._alerts_scanned = (-math.inf, -1)
        self.commands = None

    # -- lifecycle ----------------------------------------------------------------------------------

    async def main(self, *, install_signals: bool = True) -> int:
        """Boot, serve until SIGTERM (or `stop`), shut down; returns the process exit code."""
        from fleet import metrics
        from fleet.store.recorder import NullRecorder, Recorder
        from meter_core.device.clock import SimClock

        self.loop = asyncio.get_running_loop()
        if install_signals:
            self.loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        s = self.settings
        self.clock = SimClock(start=s.sim_start, t0=s.sim_t0, speed=s.speed, drift_ppm=s.drift_ppm)
        try:
            if s.database_url:
                from fleet.store.journal import Journal

                self.recorder = await Recorder.open(s.database_url, self)
                await self._load_settings(s.database_url)
                await self._replay_journal(s.database_url)
                self.journal = Journal(s.database_url, self)
                self.journal.start()
                if s.spool_dir:
                    from fleet.store.truth import GroundTruthWriter

                    spool = Path(s.spool_dir) / f"shard-{self.shard.start}-{self.shard.stop}"
                    self.groundtruth = GroundTruthWriter(s.database_url, self, spool_dir=spool)
                    self.groundtruth.start()
            else:
                self.recorder = NullRecorder()
            if self.options.mode == "dial":
                if s.hes is None:
                    raise FleetError("dial mode needs the head-end's address (--hes HOST:PORT)")
                from meter_core import push

                push.set_destination(f"{s.hes[0]}:{s.hes[1]}")  # what the push setups show as their destination
            else:
                await self._listen()
        except FleetError as e:
            self._send(("boot-error", self.slot, str(e)))
            await self._close_recorder(1.0)
            return WORKER_BOOT_ERROR
        metrics.METERS_ONLINE.inc(len(self.servers))
        metrics.WORKERS_UP.inc()
        self._send(("ready", self.slot, os.getpid(), len(self.servers)))
        tasks = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._flush_metrics())]
        if s.database_url:
            from fleet.store.commands import CommandListener

            self.commands = CommandListener(s.database_url, self.shard, self.apply_command, self.replay_command,
                                            durable=self.journal_settled)
            tasks.append(asyncio.create_task(self.commands.run()))
        if self.options.mode == "dial":
            tasks.append(asyncio.create_task(self._dial()))
        await self._stop.wait()
        await self._shutdown(tasks)
        return 0

    async def _load_settings(self, url: str) -> None:
        """Use the load templates and power-quality configuration the database holds (as edited there)."""
        from fleet.store import pg
        from fleet.store.defaults import install_settings, load_push_settings, load_settings
        from meter_core import push

        conn = await pg.connect(url)
        try:
            settings = await load_settings(conn)
            pushes = await load_push_settings(conn)
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            settings, pushes = ([], []), []  # a database migrated before 0004: the code's defaults
        finally:
            await conn.close()
        try:
            install_settings(settings)
            push.install(pushes)
            from meter_core.meter import model_for

            model_for.cache_clear()  # the push setups' versions follow their push_operation_method
        except (ValueError, KeyError, TypeError) as e:
            raise FleetError(f"the database's load templates, power-quality or push settings are unusable: {e}") from None

    # -- dial mode --------------------------------------------------------------------------------

    def _count_push(self, name: str, outcome: str) -> None:
        key = (name, outcome)
        self.metrics.pushes[key] = self.metrics.pushes.get(key, 0) + 1  # flushed to prometheus, then cleared
        self.push_counts[key] += 1  # the worker's running totals

    async def _dial(self) -> None:
        """Dial mode: each meter of the shard calls the head-end when one of its scheduled pushes is due
        or its ESW raises a bit the ESW filter enables (a connection of its own per push), pushes, then
        serves the head-end's requests until the connection has been idle for ``dial_idle`` seconds."""
        import heapq

        from meter_core import push

        clock, seed = self.clock, self.fleet.seed
        now_sim = clock.sim(time.monotonic())
        periodic = push.scheduled()
        heap = self._heap = [(push.next_due(seed, mid, p, now_sim), mid, p, ())
                             for mid in self.shard for p in periodic]
        heapq.heapify(heap)
        self._heap_changed = asyncio.Event()
        self._alerts_scanned = (now_sim, self.shard.start - 1)  # the scanner's first pass, from now on
        scanner = self.loop.create_task(self._scan_alerts(now_sim))
        gate = asyncio.Semaphore(self.settings.dial_concurrency)
        if self.settings.database_url:
            try:
                await self._resume_queue(self.settings.database_url, gate)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
                log.warning("queued pushes not taken up: %s", e)
        try:
            while heap:
                due, mid, p, bits = heap[0]
                wait = (due - clock.sim(time.monotonic())) / clock.speed
                if wait > 0:
                    self._heap_changed.clear()
                    try:  # sleep until due, or until the alert scanner adds an earlier push
                        await asyncio.wait_for(self._heap_changed.wait(), min(wait, 1.0))
                    except TimeoutError:
                        pass
                    continue
                if p not in periodic:  # a triggered push: once
                    heapq.heappop(heap)
                else:
                    heapq.heapreplace(heap, (push.next_due(seed, mid, p, due), mid, p, ()))
                await gate.acquire()  # released by the push after its first call
                task = self.loop.create_task(self._push_with_retries(mid, p, due, gate, bits))
                self._dials.add(task)
                task.add_done_callback(self._dials.discard)
        finally:
            scanner.cancel()

    async def _scan_alerts(self, start: float) -> None:
        """Find the pushes the shard's meters owe on their triggers (alerts on ESW changes, billing closures,
        events) a simulated day ahead (all are functions of the meter and time), a meter at a time,
        yielding to the dials between meters."""
        import heapq

        from meter_core import push

        scanned = start
        seed = self.fleet.seed
        while True:
            while scanned > self.clock.sim(time.monotonic()) + ALERT_WINDOW / 2:
                await asyncio.sleep(ALERT_WINDOW / 4 / self.clock.speed)
            for i, mid in enumerate(self.shard):
                for t, p, bits in push.triggered_between(self.meter_for_rows(mid), scanned, scanned + ALERT_WINDOW):
                    heapq.heappush(self._heap, (t + push.randomisation(seed, mid, p), mid, p, bits))
                    self._heap_changed.set()
                self._alerts_scanned = (scanned, mid)  # meters up to ``mid`` are looked at a window further
                if i % 50 == 49:
                    await asyncio.sleep(0)
            scanned += ALERT_WINDOW
            self._alerts_scanned = (scanned, self.shard.start - 1)

    def _rescan_alerts(self, meter_ids: list[int], t: float) -> None:
        """The ESW or logs of these meters changed from simulated ``t`` on (an injected command): their
        triggered pushes after ``t`` that the scanner found are looked up again, up to where it has looked."""
        import heapq

        from meter_core import push

        heap = self._heap
        if heap is None:
            return
        seed, ids, periodic = self.fleet.seed, set(meter_ids), push.scheduled()
        heap[:] = [e for e in heap if not (e[1] in ids and e[2] not in periodic
                                           and e[0] - push.randomisation(seed, e[1], e[2]) >= t)]
        scanned, last = self._alerts_scanned
        for mid in meter_ids:
            # as far as the scanner looked; beyond, its pass looks itself, at the meter as changed (a meter
            # its pass has yet to reach is looked at from ``scanned`` on, which may be before or after ``t``)
            until = scanned + ALERT_WINDOW if mid <= last else scanned
            if until <= t - 1e-3:
                continue
            for when, p, bits in push.triggered_between(self.meter_for_rows(mid), t - 1e-3, until):
                heap.append((when + push.randomisation(seed, mid, p), mid, p, bits))
        heapq.heapify(heap)
        self._heap_changed.set()

    async def _push_with_retries(self, meter_id: int, push_ln: str, due: float, gate: asyncio.Semaphore,
                                 bits: tuple = (), attempts: int = 0) -> None:
        """Connect and push; on failure retry after the repetition delay (with a seeded jitter of up to
        a tenth of it), as often as the push setup says (3 times, 60 s apart in simulated time), then
        count the push as failed. A push waiting for a retry is in the meter's message queue (the
        message_queue table, at most `MESSAGE_QUEUE_DEPTH` per meter), so a worker that restarts takes
        it up again (``attempts``: those made before). A meter without supply owes no push but its last
        gasp (an alert push of ESW bit 85)."""
        from fleet.runtime.actor import MeterProtocol
        from meter_core import push
        from meter_core.device.identity import stable_hash

        push_id = push.invoke_id_for(due)
        clock = self.clock
        at = clock.t0 + (due - clock.start) / clock.speed  # the push carries the values of its due time
        message_id = None
        resumed = attempts > 0
        try:
            if not resumed:
                meter = self.meter(meter_id)
                try:
                    if 85 not in bits and meter.supply_off(due):
                        self._count_push(push_ln, "no-supply")
                        return
                finally:
                    if meter_id not in self.connections:
                        self._release_meter(meter_id)
                self._count_push(push_ln, "due")
            else:
                message_id = _message_id(push_ln, due)
                self.queued[meter_id] += 1
            config = push.CONFIG[push_ln]
            (host, port), retries, delay = self._push_plan(meter_id, push_ln)
            tries = retries + 1
            reason = "refused"
            while attempts < tries:
                if attempts:
                    self._count_push(push_ln, "retried")
                    jitter = stable_hash("push-retry", self.fleet.seed, meter_id, due, attempts) % 1000 / 1e4 * delay
                    await asyncio.sleep((delay + jitter) / clock.speed)
                self._count_push(push_ln, "attempted")
                attempts += 1
                # Already connected to this push's head-end (an earlier call still open): the push goes on
                # that line, as a modem-connected meter sends it, instead of a second call.
                proto = self._open_call(meter_id, (host, port))
                fut = self._expect(meter_id, push_ln, push_id, config)
                if proto is not None:
                    proto.send_push(push_ln, push_id, at)
                    if await self._confirmed(meter_id, push_ln, push_id, config, fut):
                        self._sent(meter_id, push_ln, due, push_id, attempts, bits, message_id, config)
                        return
                    reason = "unconfirmed"
                elif self.link_is_down(meter_id, clock.sim(time.monotonic())):
                    self.metrics.dials["link-down"] = self.metrics.dials.get("link-down", 0) + 1
                    reason = "link-down"
                else:
                    try:
                        _, proto = await asyncio.wait_for(self.loop.create_connection(
                            lambda: MeterProtocol(self, meter_id, push=push_ln, push_id=push_id, push_at=at,
                                                  destination=(host, port)), host,
                            port, local_addr=self.settings.source_address(meter_id)), 10.0)
                    except TimeoutError:
                        self.metrics.dials["timeout"] = self.metrics.dials.get("timeout", 0) + 1
                        reason = "timeout"
                    except OSError:
                        self.metrics.dials["refused"] = self.metrics.dials.get("refused", 0) + 1
                        reason = "refused"
                    else:
                        self.metrics.dials["connected"] = self.metrics.dials.get("connected", 0) + 1
                        if gate is not None:  # the call is placed: waiting for a confirmation holds no slot
                            gate.release()
                            gate = None
                        if proto.sent and await self._confirmed(meter_id, push_ln, push_id, config, fut):
                            self._sent(meter_id, push_ln, due, push_id, attempts, bits, message_id, config)
                            return
                        reason = "unconfirmed" if proto.sent else "refused"  # (a meter without a slot)
                self._forget(meter_id, push_id, fut)  # (a call that failed: nothing to wait for)
                if gate is not None:  # the first call is over: a push waiting for its retries holds no slot
                    gate.release()
                    gate = None
                if message_id is None and attempts < tries:  # first failure: the push waits in the queue
                    if self.queued[meter_id] >= MESSAGE_QUEUE_DEPTH:
                        self._count_push(push_ln, "queue-full")
                        reason = "queue-full"
                        break
                    message_id = _message_id(push_ln, due)
                    self.queued[meter_id] += 1
                    self.recorder.push_queued(meter_id, message_id, push_ln, due, self._payload(meter_id, push_ln,
                                                                                                due, push_id),
                                              attempts, "PENDING")
                elif message_id is not None:
                    self.recorder.push_queued(meter_id, message_id, push_ln, due, b"", attempts, "PENDING")
            self._count_push(push_ln, "failed")
            key = (push_ln, reason)
            self.metrics.push_failures[key] = self.metrics.push_failures.get(key, 0) + 1
            self.recorder.push_settled(meter_id, push_ln, due, push_id, "FAILED", attempts, bits,
                                       self._raised(meter_id, push_ln, due))
            if message_id is not None:
                self.recorder.push_queued(meter_id, message_id, push_ln, due, b"", attempts, "FAILED")
        finally:
            if gate is not None:
                gate.release()
            if message_id is not None:
                self.queued[meter_id] -= 1
                if not self.queued[meter_id]:
                    del self.queued[meter_id]

    def _push_plan(self, meter_id: int, push_ln: str) -> tuple[tuple[str, int], int, float]:
        """Where meter ``meter_id`` sends push ``push_ln``, its retries and repetition delay: what a
        head-end wrote into its push setup, else the fleet's configuration (and --hes)."""
        from meter_core import push

        m = self._active_meters.get(meter_id) or self._cache.get(meter_id)
        state = m.state if m is not None else self.states.get(meter_id)
        config = push.CONFIG[push_ln]
        if state is None or not state.push_settings:
            return self.settings.hes, config.retries, float(config.repetition_delay_s)
        own = {name: value for p, name, value in state.push_settings if p == push_ln}
        target = push.parse_destination(own.get("destination", "")) or self.settings.hes
        return target, own.get("retries", config.retries), float(own.get("repetition_delay_s", config.repetition_delay_s))

    def _open_call(self, meter_id: int, destination: tuple[str, int]):
        """A call of the meter's to ``destination`` that is still open (a push to another head-end, as a
        head-end may point a push setup elsewhere, does not go on it)."""
        for proto in self.connections.get(meter_id, ()):
            if proto.destination == destination and proto.transport is not None and not proto._closing:
                return proto
        return None

    def _payload(self, meter_id: int, push_ln: str, due: float, push_id: int) -> bytes:
        """The plain DataNotification the queued push carries (as of its due time), for message_queue."""
        from meter_core import push

        c = self.clock
        return push.data_notification(self.meter_for_rows(meter_id), push_ln, c.t0 + (due - c.start) / c.speed,
                                      push_id)

    def _raised(self, meter_id: int, push_ln: str, due: float) -> float | None:
        from meter_core import push

        if push_ln != push.ALERT_PUSH:
            return None
        return due - push.randomisation(self.fleet.seed, meter_id, push_ln)  # when the bits rose

    def _expect(self, meter_id: int, push_ln: str, push_id: int, config):
        """For a confirmed push setup (push_operation_method 2), the future the head-end's confirmation
        of this push will resolve: registered before the push goes out (a confirm can come back before
        the call's opening returns). None for an unconfirmed one."""
        if config.operation_method != 2:
            return None
        fut = self.loop.create_future()
        self._awaiting.setdefault((meter_id, push_id), []).append((push_ln, fut))
        return fut

    async def _confirmed(self, meter_id: int, push_ln: str, push_id: int, config, fut) -> bool:
        """Whether the push just written counts as delivered: at once for an unconfirmed push setup;
        for a confirmed one when the head-end confirms it within the repetition delay (at least a second)."""
        if fut is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(fut), max(1.0, self._push_plan(meter_id, push_ln)[2] / self.clock.speed))
            self._count_push(push_ln, "confirmed")
            return True
        except TimeoutError:
            self._count_push(push_ln, "unconfirmed")
            return False
        finally:
            self._forget(meter_id, push_id, fut)

    def _forget(self, meter_id: int, push_id: int, fut) -> None:
        if fut is None:
            return
        key = (meter_id, push_id)
        waiting = self._awaiting.get(key)
        if waiting is not None:
            waiting[:] = [w for w in waiting if w[1] is not fut]
            if not waiting:
                del self._awaiting[key]

    def push_confirmed(self, meter_id: int, invoke_id: int) -> None:
        """The head-end confirmed meter ``meter_id``'s push ``invoke_id`` (called by its call's actor)."""
        from meter_core import push

        waiting = self._awaiting.get((meter_id, invoke_id))
        if not waiting:
            self.metrics.violations["push-confirm-unexpected"] = (
                self.metrics.violations.get("push-confirm-unexpected", 0) + 1)
            return
        t = self.clock.sim(time.monotonic())
        for push_ln, fut in waiting:
            if not fut.done():
                fut.set_result(None)
                push.confirmed(self._meter_to_change(meter_id), push_ln, t)

    def _sent(self, meter_id: int, push_ln: str, due: float, push_id: int, attempts: int, bits: tuple,
              message_id: int | None = None, config=None) -> None:
        self._count_push(push_ln, "sent")
        self.metrics.push_latency.append(max(0.0, self.clock.sim(time.monotonic()) - due))
        self.recorder.push_settled(meter_id, push_ln, due, push_id, "SENT", attempts, bits,
                                   self._raised(meter_id, push_ln, due),
                                   acknowledged=config is not None and config.operation_method == 2)
        if message_id is not None:
            self.recorder.push_queued(meter_id, message_id, push_ln, due, b"", attempts, "SENT")

    async def _resume_queue(self, url: str, gate: asyncio.Semaphore) -> None:
        """Take up the pushes an earlier run of this shard left waiting for retries (message_queue)."""
        from fleet.store import pg, sql

        conn = await pg.connect(url)
        try:
            rows = await conn.fetch(sql.SELECT_PENDING_MESSAGES, self.shard.start, self.shard.stop)
        except asyncpg.UndefinedTableError:
            rows = []
        finally:
            await conn.close()
        from meter_core import push

        for r in rows:
            config = push.CONFIG.get(r["push_logical_name"])
            if config is None:
                continue
            await gate.acquire()
            task = self.loop.create_task(self._push_with_retries(
                r["meter_id"], r["push_logical_name"], float(r["due"]), gate, (),
                max(1, min(config.retries, r["attempts"]))))
            self._dials.add(task)
            task.add_done_callback(self._dials.discard)
        if rows:
            log.info("%d queued push(es) taken up again", len(rows))

    def link_is_down(self, meter_id: int, t: float) -> bool:
        end = self.link_down.get(meter_id)
        if end is None:
            return False
        if t < end:
            return True
        del self.link_down[meter_id]
        return False

    # -- injected commands (`fleet inject`, through PostgreSQL) -------------------------------------------

    def replay_command(self, cmd, sim_at: float | None) -> tuple[float, int]:
        """Apply an earlier command (issued before this worker started) to the meters of the shard it selects
        that the journal does not show it applied to (a worker that died before journaling it, or one that
        was starting when it was issued), as of simulated ``sim_at`` (the time it was first applied) or, for
        a meter with later journal entries, of its last one; a command from this run's future is left out.
        Returns (simulated time, how many meters it reached)."""
        c = self.clock
        now_sim = c.sim(time.monotonic())
        if sim_at is None:  # issued while the fleet was starting: no worker applied it yet
            sim_at = now_sim
        elif sim_at > now_sim:
            return sim_at, 0
        done = self._journaled_commands.get(cmd.command_id, set())
        ids = [m for m in cmd.meters(self.fleet.seed, self.shard) if m not in done]
        reached = len(cmd.meters(self.fleet.seed, self.shard)) - len(ids)
        by_time: dict[float, list[int]] = {}
        for mid in ids:
            by_time.setdefault(max(sim_at, self._journal_last.get(mid, sim_at)), []).append(mid)
        for t, mids in sorted(by_time.items()):
            self.apply_command(cmd, c.t0 + (t - c.start) / c.speed, only=mids, sim_time=t)
        return sim_at, reached + len(ids)

    def apply_command(self, cmd, now: float | None = None, *, only: list[int] | None = None,
                      sim_time: float | None = None) -> tuple[int, float]:
        """Apply a command to the meters of this shard it selects (``only``: these of them), as of monotonic
        ``now`` (default now; ``sim_time``: exactly this simulated time); each meter's change goes to the
        journal. Returns (how many, simulated time)."""
        from fleet.store.journal import injected_row

        if now is None:
            now = time.monotonic()
        t = self.clock.sim(now) if sim_time is None else sim_time
        ids = cmd.meters(self.fleet.seed, self.shard) if only is None else only
        duration = cmd.params.get("duration_s")
        duration = float(duration) if duration is not None else None
        params = {k: v for k, v in cmd.params.items() if k in ("duration_s", "factor", "code")}
        changed = []
        rows = []
        for mid in ids:
            m = self._meter_to_change(mid)
            rows.append(injected_row(mid, t, m.clock_at_sim(t), cmd.action, cmd.command_id, params))
            if cmd.action == "link-down":
                self.link_down[mid] = math.inf if duration is None else t + duration
                self._drop(mid)
                continue
            if cmd.action == "restore":
                self.link_down.pop(mid, None)
            entry = journal.Injected(t, cmd.action, duration, cmd.params.get("factor"), cmd.params.get("code"))
            if journal.replay(m, [entry]):
                changed.append(mid)
            if cmd.action == "power-failure":
                self._drop(mid)
        if rows and self.journal is not None:
            self._last_persist = self.journal.persist(rows)
        if changed and self.options.mode == "dial":
            self._rescan_alerts(changed, t)
        log.info("command %d: %s on %d meters", cmd.command_id, cmd.action, len(ids))
        return len(ids), t

    async def journal_settled(self) -> None:
        """Wait until the journal has what the commands applied so far did (before answering for them)."""
        fut = self._last_persist
        if fut is not None:
            await asyncio.shield(fut)

    async def _replay_journal(self, url: str) -> None:
        """Build the shard's meters as they were: the journal's SETs, ACTIONs and injected changes, each at
        its time, through the code that served them (`meter_core.journal.replay`)."""
        from fleet.store import journal as fj
        from meter_core.meter import Meter, MeterState

        now_sim = self.clock.sim(time.monotonic())
        loaded = await fj.load(url, self.shard, now_sim)
        for mid, entries in loaded.entries.items():
            state = self.states.get(mid) or MeterState()
            m = Meter(self.fleet, mid, epoch_start=self.settings.epoch_start, clock=self.clock, state=state,
                      port=self.options.address(mid)[1])
            journal.replay(m, entries)
            self.states[mid] = m.state
        for mid, end in loaded.link_down.items():
            if end > now_sim:
                self.link_down[mid] = end
        self._journaled_commands = dict(loaded.commands)
        self._journal_last = loaded.last_time
        if loaded.entries:
            log.info("journal: %d meter(s) built again from %d entries", len(loaded.entries),
                     sum(len(e) for e in loaded.entries.values()))
        if loaded.future:
            log.warning("journal: %d entries lie after this run's start (a run that went further before); "
                        "they are not replayed: start later (--start) or on a fresh database", loaded.future)

    def _meter_to_change(self, meter_id: int):
        """The meter whose state a command changes: the live one, or one built on the state kept for it."""
        m = self._active_meters.get(meter_id) or self._cache.get(meter_id)
        if m is not None:
            return m
        from meter_core.meter import MeterState

        self.states.setdefault(meter_id, MeterState())
        return self.meter_for_rows(meter_id)

    def _drop(self, meter_id: int) -> None:
        """The meter went dark (no supply, no link): its open connections end without a goodbye."""
        for proto in list(self.connections.get(meter_id, ())):
            proto.abort()

    def stop(self) -> None:
        """Ask the worker to shut down (thread-safe through ``loop.call_soon_threadsafe``)."""
        self._stop.set()

    async def _listen(self) -> None:
        loop = self.loop
        from fleet.runtime.actor import MeterProtocol

        for meter_id in self.shard:
            host, port = self.options.address(meter_id)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(16)
            except OSError as e:
                sock.close()
                reason = "already in use" if e.errno == errno.EADDRINUSE else e.strerror
                raise FleetError(f"cannot listen on {host}:{port} for meter {meter_id}: {reason}") from None
            sock.setblocking(False)
            server = await loop.create_server(functools.partial(MeterProtocol, self, meter_id), sock=sock)
            self.servers.append(server)

    async def _shutdown(self, tasks) -> None:
        from fleet import metrics

        for server in self.servers:
            server.close()
        for t in list(self._dials):  # no more calls placed
            t.cancel()
        for proto in list(self.protocols):
            if proto.push is not None and proto.transport is not None:
                proto.transport.close()  # a call that pushed: its bytes go out before it ends
            else:
                proto.abort()
        await asyncio.sleep(0)  # let connection_lost callbacks run
        for t in tasks:
            t.cancel()
        for t in list(self._dials):
            t.cancel()
        self._flush_metrics_once()
        metrics.METERS_ONLINE.dec(len(self.servers))
        metrics.WORKERS_UP.dec()
        await self._close_recorder(self.settings.shutdown_timeout / 2)

    async def _close_recorder(self, timeout: float) -> None:
        if self.journal is not None:
            await self.journal.close(timeout)
        if self.groundtruth is not None:
            await self.groundtruth.close(timeout)
        if self.recorder is not None:
            await self.recorder.close(timeout)

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
            await asyncio.sleep(1.0)
            self._flush_metrics_once()

    def _flush_metrics_once(self) -> None:
        from fleet import metrics

        self.metrics.flush(self.stats.counts)
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

    # -- meters -------------------------------------------------------------------------------------

    def admit(self, meter_id: int, dialling: bool = False) -> str | None:
        """Take a connection slot of ``meter_id``: None if it may have one more, else why not (its
        TCP-UDP setup's maximum, no supply, no link). A meter dialling out for its last gasp has no
        supply and still sends it."""
        meter = self.meter(meter_id)
        open_now = self.connections.get(meter_id)
        if open_now is not None and len(open_now) >= meter.state.max_connections:
            return "max-connections"
        if meter.state.supply or meter_id in self.link_down:  # an injected power failure or link fault
            t = self.clock.sim(time.monotonic())
            if self.link_is_down(meter_id, t):
                return "link-down"
            if not dialling and meter.supply_factor(t) == 0.0:
                return "no-supply"
        return None

    def meter(self, meter_id: int):
        """The Meter object of ``meter_id`` (cached while in use and for a while after)."""
        m = self._active_meters.get(meter_id)
        if m is not None:
            return m
        m = self._cache.pop(meter_id, None)
        if m is None:
            from meter_core.meter import Meter, MeterState

            state = self.states.get(meter_id) or MeterState()
            m = Meter(self.fleet, meter_id, epoch_start=self.settings.epoch_start, clock=self.clock,
                      state=state, port=self.options.address(meter_id)[1])
        m.tx_floor = tx_floor()
        self._active_meters[meter_id] = m
        return m

    def meter_for_rows(self, meter_id: int):
        """The meter whose captures are computed: the live object if it is in use or cached, else a
        transient one built with the state a head-end left (not cached: producing rows for a whole
        shard must not evict the meters head-ends are talking to)."""
        m = self._active_meters.get(meter_id) or self._cache.get(meter_id)
        if m is not None:
            return m
        from meter_core.meter import Meter, MeterState

        return Meter(self.fleet, meter_id, epoch_start=self.settings.epoch_start, clock=self.clock,
                     state=self.states.get(meter_id) or MeterState(), port=self.options.address(meter_id)[1])

    def security_of(self, meter_id: int):
        """The meter's `MeterSecurity` if it has one (it had a ciphered association)."""
        m = self._active_meters.get(meter_id) or self._cache.get(meter_id)
        state = m.state if m is not None else self.states.get(meter_id)
        return None if state is None else state.security

    def install_keys(self, meter_id: int, stored: list, certificates: list | None = None) -> None:
        """Keys, counters and certificates stored by an earlier run (sent counters continue above them)."""
        from meter_core.device import keys
        from meter_core.meter import MeterState

        state = self.states.get(meter_id)
        if state is None:
            state = self.states[meter_id] = MeterState()
        state.security = keys.from_rows(self.fleet, meter_id, stored, tx_floor())
        if certificates:
            keys.install_certificates(state.security, certificates)

    def _release_meter(self, meter_id: int) -> None:
        from meter_core.meter import MeterState

        m = self._active_meters.pop(meter_id, None)
        if m is None:
            return
        self._cache[meter_id] = m
        if len(self._cache) > METER_CACHE_SIZE:
            old_id, old = self._cache.popitem(last=False)
            if asdict(old.state) != asdict(MeterState()):
                self.states[old_id] = old.state  # keep what a head-end changed

    # -- callbacks from actors ----------------------------------------------------------------------

    def connection_opened(self, proto) -> None:
        from fleet import metrics

        self.connections.setdefault(proto.meter_id, []).append(proto)
        self.protocols.add(proto)
        metrics.CONNECTIONS_OPEN.inc()
        self.recorder.connection_opened(proto)

    def connection_closed(self, proto) -> None:
        from fleet import metrics

        conns = self.connections.get(proto.meter_id)
        if conns is not None:
            try:
                conns.remove(proto)
            except ValueError:
                pass
            if not conns:
                del self.connections[proto.meter_id]
                self._release_meter(proto.meter_id)
        self.protocols.discard(proto)
        metrics.CONNECTIONS_OPEN.dec()
        self.recorder.connection_closed(proto)

    def association_established(self, proto, ev) -> None:
        from fleet import metrics

        key = (ev.client_sap, "accepted")
        self.metrics.associations[key] = self.metrics.associations.get(key, 0) + 1
        metrics.ASSOCIATIONS_OPEN.labels(str(ev.client_sap)).inc()
        self.recorder.association_established(proto, ev)

    def association_rejected(self, proto, ev) -> None:
        key = (ev.client_sap, "rejected")
        self.metrics.associations[key] = self.metrics.associations.get(key, 0) + 1
        self.recorder.association_rejected(proto, ev)

    def association_released(self, proto, ev) -> None:
        from fleet import metrics

        key = (ev.client_sap, ev.reason.value)
        self.metrics.releases[key] = self.metrics.releases.get(key, 0) + 1
        metrics.ASSOCIATIONS_OPEN.labels(str(ev.client_sap)).dec()
        self.recorder.association_released(proto, ev)

    def connection_terminated(self, proto, ev) -> None:
        self.recorder.connection_terminated(proto, ev)
