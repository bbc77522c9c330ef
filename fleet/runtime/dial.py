"""Dial mode: the meters are TCP clients of the head-end (GPRS/4G style, common in Indian AMI).

Each meter of the shard calls the head-end when one of its scheduled pushes is due or a trigger (an ESW
bit the filter enables, a billing close, an event) calls for one, pushes, then serves the head-end's
requests on the same connection until it has been idle for ``--dial-idle``. A push that fails waits in
the meter's message queue for its retries (the ``message_queue`` table, so a restarted worker takes it
up); a push setup with push_operation_method 2 counts as delivered only once the head-end confirms it.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections import Counter

import asyncpg

from fleet.runtime.actor import MeterProtocol
from fleet.store import recorder
from meter_core import notification
from meter_core.device import config as device_config
from meter_core.device import pushes as push
from meter_core.device.config import DeviceConfig
from meter_core.device.identity import kind_of, stable_hash

log = logging.getLogger(__name__)

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


class Dialer:
    """A worker's calls to the head-end: the schedule of due pushes, their retries, their confirmations."""

    def __init__(self, worker) -> None:
        self.worker = worker
        self.meters = worker.meters
        self.push_counts: Counter = Counter()  # the worker's running totals, by (push setup, outcome)
        self.queued: Counter = Counter()  # pushes waiting for a retry, per meter
        self._dials: set = set()
        # confirmed pushes waiting for the head-end's Data-Notification-Confirm: (meter, invoke id) -> futures
        self._awaiting: dict[tuple[int, int], list] = {}
        self._heap: list | None = None
        self._heap_changed: asyncio.Event | None = None
        # how far the trigger scanner has looked: (simulated time, last meter looked a window beyond it)
        self._alerts_scanned = (-math.inf, -1)

    @property
    def config(self) -> DeviceConfig:
        """The fleet's push setups (and the rest of the meters' configuration) as the worker loaded them."""
        return self.worker.meters.config

    def cancel(self) -> None:
        """Place no more calls (worker shutdown)."""
        for t in list(self._dials):
            t.cancel()

    def _count_push(self, meter_id: int, name: str, outcome: str) -> None:
        key = (name, outcome)
        self.push_counts[key] += 1  # the worker's running totals
        shown = (name, kind_of(self.worker.fleet, meter_id).value, outcome)  # by meter group: its kind
        pushes = self.worker.metrics.pushes
        pushes[shown] = pushes.get(shown, 0) + 1  # flushed to prometheus, then cleared

    async def run(self) -> None:
        """Dial mode: each meter of the shard calls the head-end when one of its scheduled pushes is due
        or its ESW raises a bit the ESW filter enables (a connection of its own per push), pushes, then
        serves the head-end's requests until the connection has been idle for ``dial_idle`` seconds."""
        w = self.worker
        clock, seed = w.clock, w.fleet.seed
        now_sim = clock.sim(time.monotonic())
        periodic = self.config.scheduled()
        heap = self._heap = [(push.next_due(self.config, seed, mid, p, now_sim), mid, p, ())
                             for mid in w.shard for p in periodic]
        heapq.heapify(heap)
        self._heap_changed = asyncio.Event()
        self._alerts_scanned = (now_sim, w.shard.start - 1)  # the scanner's first pass, from now on
        scanner = w.loop.create_task(self.scan_alerts(now_sim))
        gate = asyncio.Semaphore(w.settings.dial_concurrency)
        if w.settings.database_url:
            try:
                await self._resume_queue(w.settings.database_url, gate)
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
                    heapq.heapreplace(heap, (push.next_due(self.config, seed, mid, p, due), mid, p, ()))
                await gate.acquire()  # released by the push after its first call
                task = w.loop.create_task(self._push_with_retries(mid, p, due, gate, bits))
                self._dials.add(task)
                task.add_done_callback(self._dials.discard)
        finally:
            scanner.cancel()

    async def scan_alerts(self, start: float) -> None:
        """Find the pushes the shard's meters owe on their triggers (alerts on ESW changes, billing closures,
        events) a simulated day ahead (all are functions of the meter and time), a meter at a time,
        yielding to the dials between meters."""
        w = self.worker
        scanned = start
        seed = w.fleet.seed
        while True:
            while scanned > w.clock.sim(time.monotonic()) + ALERT_WINDOW / 2:
                await asyncio.sleep(ALERT_WINDOW / 4 / w.clock.speed)
            for i, mid in enumerate(w.shard):
                for t, p, bits in push.triggered_between(self.meters.for_rows(mid), scanned, scanned + ALERT_WINDOW):
                    heapq.heappush(self._heap, (t + push.randomisation(self.config, seed, mid, p), mid, p, bits))
                    self._heap_changed.set()
                self._alerts_scanned = (scanned, mid)  # meters up to ``mid`` are looked at a window further
                if i % 50 == 49:
                    await asyncio.sleep(0)
            scanned += ALERT_WINDOW
            self._alerts_scanned = (scanned, w.shard.start - 1)

    def rescan(self, meter_ids: list[int], t: float) -> None:
        """The ESW or logs of these meters changed from simulated ``t`` on (an injected command): their
        triggered pushes after ``t`` that the scanner found are looked up again, up to where it has looked."""
        heap = self._heap
        if heap is None:
            return
        seed, ids, periodic = self.worker.fleet.seed, set(meter_ids), self.config.scheduled()
        heap[:] = [e for e in heap if not (e[1] in ids and e[2] not in periodic
                                           and e[0] - push.randomisation(self.config, seed, e[1], e[2]) >= t)]
        scanned, last = self._alerts_scanned
        for mid in meter_ids:
            # as far as the scanner looked; beyond, its pass looks itself, at the meter as changed (a meter
            # its pass has yet to reach is looked at from ``scanned`` on, which may be before or after ``t``)
            until = scanned + ALERT_WINDOW if mid <= last else scanned
            if until <= t - 1e-3:
                continue
            for when, p, bits in push.triggered_between(self.meters.for_rows(mid), t - 1e-3, until):
                heap.append((when + push.randomisation(self.config, seed, mid, p), mid, p, bits))
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
        w = self.worker
        push_id = push.invoke_id_for(due)
        clock = w.clock
        at = clock.t0 + (due - clock.start) / clock.speed  # the push carries the values of its due time
        message_id = None
        resumed = attempts > 0
        try:
            if not resumed:
                meter = self.meters.meter(meter_id)
                try:
                    if 85 not in bits and meter.supply_off(due):
                        self._count_push(meter_id, push_ln, "no-supply")
                        return
                finally:
                    if meter_id not in w.connections:
                        self.meters.release(meter_id)
                self._count_push(meter_id, push_ln, "due")
            else:
                message_id = _message_id(push_ln, due)
                self.queued[meter_id] += 1
            config = self.config.push[push_ln]
            (host, port), retries, delay = self._push_plan(meter_id, push_ln)
            tries = retries + 1
            reason = "refused"
            while attempts < tries:
                if attempts:
                    self._count_push(meter_id, push_ln, "retried")
                    jitter = stable_hash("push-retry", w.fleet.seed, meter_id, due, attempts) % 1000 / 1e4 * delay
                    await asyncio.sleep((delay + jitter) / clock.speed)
                self._count_push(meter_id, push_ln, "attempted")
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
                elif self.meters.link_is_down(meter_id, clock.sim(time.monotonic())):
                    w.metrics.dials["link-down"] = w.metrics.dials.get("link-down", 0) + 1
                    reason = "link-down"
                else:
                    try:
                        _, proto = await asyncio.wait_for(w.loop.create_connection(
                            lambda: MeterProtocol(w, meter_id, push=push_ln, push_id=push_id, push_at=at,
                                                  destination=(host, port)), host,
                            port, local_addr=w.settings.source_address(meter_id)), 10.0)
                    except TimeoutError:
                        w.metrics.dials["timeout"] = w.metrics.dials.get("timeout", 0) + 1
                        reason = "timeout"
                    except OSError:
                        w.metrics.dials["refused"] = w.metrics.dials.get("refused", 0) + 1
                        reason = "refused"
                    else:
                        w.metrics.dials["connected"] = w.metrics.dials.get("connected", 0) + 1
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
                        self._count_push(meter_id, push_ln, "queue-full")
                        reason = "queue-full"
                        break
                    message_id = _message_id(push_ln, due)
                    self.queued[meter_id] += 1
                    payload = self._payload(meter_id, push_ln, due, push_id)
                    w.recorder.push_queued(meter_id, message_id, push_ln, due, payload, attempts, "PENDING")
                elif message_id is not None:
                    w.recorder.push_queued(meter_id, message_id, push_ln, due, b"", attempts, "PENDING")
            self._count_push(meter_id, push_ln, "failed")
            key = (push_ln, reason)
            w.metrics.push_failures[key] = w.metrics.push_failures.get(key, 0) + 1
            w.recorder.push_settled(meter_id, push_ln, due, push_id, "FAILED", attempts, bits,
                                    self._raised(meter_id, push_ln, due))
            if message_id is not None:
                w.recorder.push_queued(meter_id, message_id, push_ln, due, b"", attempts, "FAILED")
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
        state = self.meters.state_of(meter_id)
        config = self.config.push[push_ln]
        if state is None or not state.push_settings:
            return self.worker.settings.hes, config.retries, float(config.repetition_delay_s)
        own = {name: value for p, name, value in state.push_settings if p == push_ln}
        target = push.parse_destination(own.get("destination", "")) or self.worker.settings.hes
        return target, own.get("retries", config.retries), float(own.get("repetition_delay_s", config.repetition_delay_s))

    def _open_call(self, meter_id: int, destination: tuple[str, int]):
        """A call of the meter's to ``destination`` that is still open (a push to another head-end, as a
        head-end may point a push setup elsewhere, does not go on it)."""
        for proto in self.worker.connections.get(meter_id, ()):
            if proto.destination == destination and proto.transport is not None and not proto._closing:
                return proto
        return None

    def _payload(self, meter_id: int, push_ln: str, due: float, push_id: int) -> bytes:
        """The plain DataNotification the queued push carries (as of its due time), for message_queue."""
        c = self.worker.clock
        return notification.data_notification(self.meters.for_rows(meter_id), push_ln, c.t0 + (due - c.start) / c.speed,
                                      push_id)

    def _raised(self, meter_id: int, push_ln: str, due: float) -> float | None:
        if push_ln != device_config.ALERT_PUSH:
            return None
        return due - push.randomisation(self.config, self.worker.fleet.seed, meter_id, push_ln)  # when the bits rose

    def _expect(self, meter_id: int, push_ln: str, push_id: int, config):
        """For a confirmed push setup (push_operation_method 2), the future the head-end's confirmation
        of this push will resolve: registered before the push goes out (a confirm can come back before
        the call's opening returns). None for an unconfirmed one."""
        if config.operation_method != 2:
            return None
        fut = self.worker.loop.create_future()
        self._awaiting.setdefault((meter_id, push_id), []).append((push_ln, fut))
        return fut

    async def _confirmed(self, meter_id: int, push_ln: str, push_id: int, config, fut) -> bool:
        """Whether the push just written counts as delivered: at once for an unconfirmed push setup;
        for a confirmed one when the head-end confirms it within the repetition delay (at least a second)."""
        if fut is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(fut), max(1.0, self._push_plan(meter_id, push_ln)[2] / self.worker.clock.speed))
            self._count_push(meter_id, push_ln, "confirmed")
            return True
        except TimeoutError:
            self._count_push(meter_id, push_ln, "unconfirmed")
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
        w = self.worker
        waiting = self._awaiting.get((meter_id, invoke_id))
        if not waiting:
            w.metrics.violations["push-confirm-unexpected"] = (
                w.metrics.violations.get("push-confirm-unexpected", 0) + 1)
            return
        t = w.clock.sim(time.monotonic())
        for push_ln, fut in waiting:
            if not fut.done():
                fut.set_result(None)
                push.confirmed(self.meters.to_change(meter_id), push_ln, t)

    def _sent(self, meter_id: int, push_ln: str, due: float, push_id: int, attempts: int, bits: tuple,
              message_id: int | None = None, config=None) -> None:
        w = self.worker
        self._count_push(meter_id, push_ln, "sent")
        w.metrics.push_latency.append(max(0.0, w.clock.sim(time.monotonic()) - due))
        w.recorder.push_settled(meter_id, push_ln, due, push_id, "SENT", attempts, bits,
                                self._raised(meter_id, push_ln, due),
                                acknowledged=config is not None and config.operation_method == 2)
        if message_id is not None:
            w.recorder.push_queued(meter_id, message_id, push_ln, due, b"", attempts, "SENT")

    async def _resume_queue(self, url: str, gate: asyncio.Semaphore) -> None:
        """Take up the pushes an earlier run of this shard left waiting for retries (message_queue)."""
        rows = await recorder.pending_messages(url, self.worker.shard)
        for r in rows:
            config = self.config.push.get(r["push_logical_name"])
            if config is None:
                continue
            await gate.acquire()
            task = self.worker.loop.create_task(self._push_with_retries(
                r["meter_id"], r["push_logical_name"], float(r["due"]), gate, (),
                max(1, min(config.retries, r["attempts"]))))
            self._dials.add(task)
            task.add_done_callback(self._dials.discard)
        if rows:
            log.info("%d queued push(es) taken up again", len(rows))

