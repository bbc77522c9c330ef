"""The meter actor: an asyncio Protocol that carries bytes between a socket and a MeterConnection.

It holds no protocol logic (aioquic ``asyncio/protocol.py`` style): bytes in, bytes out, one timer
armed from ``next_deadline()``, events turned into metrics and database rows.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
import uuid

from fleet.metrics import LATENCY_BUCKETS, client_label
from fleet.runtime import address
from fleet.store.journal import programmed_row
from meter_core import notification
from meter_core.connection import MeterConnection
from meter_core.device import keys
from meter_core.device import pushes as pushes
from meter_core.events import (
    AssociationEstablished,
    AssociationRejected,
    AssociationReleased,
    ConnectionTerminated,
    InternalError,
    Programmed,
    ProtocolViolation,
    PushConfirmed,
    PushRequested,
    SecurityFailure,
    WorkPending,
)

log = logging.getLogger(__name__)

_monotonic = time.monotonic
_bucket = bisect.bisect_left
# SETs and ACTIONs on these classes change keys, secrets or certificates (security setup 64, association
# LN 15): they are made durable (meter_keys) before the answer goes out.
_KEY_CLASSES = (15, 64)
# A new connection's inactivity timer is armed by the worker's once-a-second round (`Worker.arm_timers`)
# instead of at once, unless it falls due within two rounds: a timer handle per connection cost about 4 %
# of a short connection's CPU (associate, read, release), and the deadline does not move by arming later.
TIMER_DEFER = 1.0
# Long work a request needs (`WorkPending`: a meter's first billing read) runs in slices of this many seconds,
# the event loop serving the other connections between them.
WORK_SLICE = 0.002


class MeterProtocol(asyncio.Protocol):
    """One TCP connection to one meter."""

    __slots__ = ("worker", "meter_id", "transport", "conn", "timer", "_connection_id", "_peer", "_seq", "_closing",
                 "push", "sent", "push_id", "push_at", "destination", "_holding", "_write_paused")

    def __init__(self, worker, meter_id: int | None, push: str | None = None, push_id: int = 0,
                 push_at: float | None = None, destination: tuple[str, int] | None = None) -> None:
        self.worker = worker
        self.meter_id = meter_id
        # dial mode: the push setup whose push this connection opens with, its long-invoke-id, the
        # moment (monotonic) its values are taken at (when it fell due, whatever retries came since), and
        # the head-end the meter called (host, port)
        self.push = push
        self.push_id = push_id
        self.push_at = push_at
        self.destination = destination
        self.sent = False
        self.transport: asyncio.Transport | None = None
        self.conn: MeterConnection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self._connection_id: uuid.UUID | None = None
        self._peer: str | None = None
        self._seq = 0
        self._closing = False
        self._holding = False  # an answer waits for the journal
        self._write_paused = False

    # -- what the recorder keeps of the connection (made when first asked: most runs keep no records) --

    @property
    def connection_id(self) -> uuid.UUID:
        cid = self._connection_id
        if cid is None:
            cid = self._connection_id = uuid.uuid4()
        return cid

    @property
    def peer(self) -> str:
        """The head-end's address and port ("" once the transport is gone without anyone asking)."""
        peer = self._peer
        if peer is None:
            name = self.transport.get_extra_info("peername") if self.transport is not None else None
            peer = self._peer = f"{name[0]}:{name[1]}" if name else ""
        return peer

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        w = self.worker
        if self.meter_id is None:  # address mode: the address the head-end reached names the meter
            meter_id = address.meter_of(w.options, transport.get_extra_info("sockname"))
            if meter_id is None or meter_id not in w.shard:
                w.metrics.refused["not-a-meter"] = w.metrics.refused.get("not-a-meter", 0) + 1
                transport.close()
                return
            self.meter_id = meter_id
        meter = w.admit(self.meter_id, self.push is not None)
        if type(meter) is str:
            # TCP-UDP setup maximum_simultaneous_connections reached, or the meter is dark (no supply, no
            # link: an injected fault): refuse this one cleanly.
            w.metrics.refused[meter] = w.metrics.refused.get(meter, 0) + 1
            transport.close()
            if not w.connections.get(self.meter_id):
                w.meters.release(self.meter_id)
            return
        self.transport = transport
        now = _monotonic()
        idle = w.settings.dial_idle if self.push is not None else None
        self.conn = MeterConnection(meter, w.transport_kind, now=now, stats=w.stats, inactivity_timeout=idle,
                                    defer_work=True)
        w.connection_opened(self)
        if self.push is not None:  # a meter that dialled in speaks first: its push
            self.send_push(self.push, self.push_id, self.push_at)
            self.sent = True
        self._arm(now, defer=True)

    def send_push(self, push_ln: str, push_id: int | None = None, at: float | None = None) -> None:
        """Write push ``push_ln`` (ciphered with the push setup's keys) on this connection, with the
        values of moment ``at`` (monotonic; default now)."""
        w, meter = self.worker, self.conn.meter
        now = _monotonic() if at is None else at
        if push_id is None:
            push_id = pushes.invoke_id_for(meter.sim(now))
        apdu = notification.data_notification(meter, push_ln, now, push_id)
        data = notification.frame(meter, notification.protect(meter, apdu), w.transport_kind.value == "hdlc")
        self.transport.write(data)
        w.metrics.bytes_out += len(data)
        w.meters.security_dirty.add(self.meter_id)  # the push used a counter

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            return
        now = _monotonic()
        out, events = conn.exchange(data, now)
        w = self.worker
        w.metrics.bytes_in += len(data)
        sec = conn.meter.state.security
        if sec is not None or events and w.journal is not None:
            if self._held(w, out, events, now, sec):
                return
        self._deliver(out, events, now)

    def _held(self, w, out: bytes, events, now: float, sec) -> bool:
        """A ciphered client's counters moved, or a request changed the meter: note the keys to write, and
        hold the answer if what changed must be durable first (True: `_release` delivers it later)."""
        if sec is not None:  # counters (or keys) of a ciphered client moved
            w.meters.security_dirty.add(self.meter_id)
        journal = w.journal
        if journal is not None and (events or sec is not None):
            urgent, keys_too = self._journal(journal, events, sec)
            if urgent or keys_too:
                # What changed the meter is durable before the head-end hears it did (issue 12): hold the
                # answer, and read nothing more from this head-end, until the journal has it.
                self._holding = True
                self.transport.pause_reading()
                fut = journal.persist(urgent, (self.meter_id,) if keys_too else ())
                fut.add_done_callback(lambda f: self._release(f, out, events, now))
                return True
        return False

    def _journal(self, journal, events, sec) -> tuple[list, bool]:
        """Journal rows of ``events``: those that changed the meter (returned: the answer waits for them)
        and the others (queued); whether the meter's keys and counters must be durable first too."""
        urgent, later = [], []
        keys_too = sec is not None and keys.counters_to_reserve(sec)
        for ev in events:
            if type(ev) is Programmed:
                row = programmed_row(self.meter_id, ev)
                if ev.replay:
                    urgent.append(row)
                else:
                    later.append(row)
                    if ev.result == 0 and ev.class_id in _KEY_CLASSES:  # keys, secrets, certificates changed
                        keys_too = True
        if later:
            journal.record(later)
        return urgent, keys_too

    def _release(self, fut, out: bytes, events: list, now: float) -> None:
        """The journal has what the held answer needs: send it (and take the next requests)."""
        self._holding = False
        if fut.cancelled() or self.conn is None or self.transport is None or self.transport.is_closing():
            return  # the connection or the worker went away meanwhile: the head-end hears nothing
        sec = self.conn.meter.state.security
        journal = self.worker.journal
        if sec is not None and journal is not None:
            if keys.counters_to_reserve(sec):  # another connection of the meter went further meanwhile
                self._holding = True
                journal.persist([], (self.meter_id,)).add_done_callback(
                    lambda f: self._release(f, out, events, now))
                return
        self._deliver(out, events, now)
        if not self._write_paused and not self._closing and not self._holding:
            self.transport.resume_reading()

    def _work(self, work, since: float) -> None:
        """Do a slice of a request's long work (`WorkPending`), then let the loop serve others; when it is
        done, answer the request (and those that came meanwhile) and read again. ``since``: when the request
        came (its latency counts the wait)."""
        conn = self.conn
        if conn is None or self.transport is None or self.transport.is_closing():
            return  # the connection ended meanwhile: nothing to answer
        end = _monotonic() + WORK_SLICE
        failed = False
        try:
            while _monotonic() < end:
                next(work)
        except StopIteration:
            pass
        except Exception as e:  # a fault of ours: the request is served again, computing what is left inline
            log.error("meter %d: deferred work failed: %s: %s", self.meter_id, type(e).__name__, e)
            failed = True
        else:
            self.worker.loop.call_soon(self._work, work, since)
            return
        self._holding = False
        now = _monotonic()
        out, events = conn.resume(now, inline=failed)
        sec = conn.meter.state.security
        if sec is not None or events and self.worker.journal is not None:
            if self._held(self.worker, out, events, since, sec):
                return
        self._deliver(out, events, since)
        if not self._write_paused and not self._closing and not self._holding and self.conn is not None:
            self.transport.resume_reading()

    def _deliver(self, out: bytes, events: list, now: float) -> None:
        """Send the answer to a request that arrived at ``now``, count it, and act on its events."""
        m = self.worker.metrics
        if out:
            self.transport.write(out)
            m.bytes_out += len(out)
        took = _monotonic() - now  # `WorkerMetrics.observe_latency`, inline: three times per association
        m.latency_counts[_bucket(LATENCY_BUCKETS, took)] += 1
        m.latency_sum += took
        if events:  # the meter closes a connection only with an event that says why
            self._handle_events(events)
            conn = self.conn  # None if an event ended the connection meanwhile
            if conn is not None and conn.closed and not self._closing:
                self._closing = True
                self.transport.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        """The head-end does not read its answers (the write buffer passed its high-water mark): stop
        reading its requests until it does, so a flooding client waits on its own socket instead of
        filling the worker's memory."""
        self._write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None and not self._closing and not self._holding:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        if conn is None:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn.connection_lost()
        self._drain_events()
        self.worker.connection_closed(self)
        self.conn = None

    # -- timer ------------------------------------------------------------------------------------

    def arm_timer(self, now: float) -> None:
        """Arm the inactivity (and HDLC) timer if the connection is open and has none."""
        if self.conn is not None and self.timer is None:
            self._arm(now)

    def _arm(self, now: float, *, defer: bool = False) -> None:
        deadline = self.conn.next_deadline()
        if deadline is None:
            return
        if defer and deadline - now >= TIMER_DEFER * 2:
            self.worker.unarmed.append(self)  # most connections end long before: armed a round later if open
            return
        self.timer = self.worker.loop.call_later(max(0.0, deadline - now), self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        conn = self.conn
        if conn is None:
            return
        now = _monotonic()
        conn.handle_timer(now)
        out = conn.data_to_send()
        if out:
            self.transport.write(out)
        self._drain_events()
        if conn.closed:
            if not self._closing:
                self._closing = True
                self.transport.close()
            return
        self._arm(now)

    # -- events -----------------------------------------------------------------------------------

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _handle_events(self, events) -> None:
        w = self.worker
        for ev in events:
            t = type(ev)
            if t is AssociationEstablished:
                w.association_established(self, ev)
            elif t is AssociationReleased:
                w.association_released(self, ev)
            elif t is AssociationRejected:
                w.association_rejected(self, ev)
            elif t is ProtocolViolation:
                v = w.metrics.violations
                v[ev.layer] = v.get(ev.layer, 0) + 1
            elif t is SecurityFailure:
                f = w.metrics.security_failures
                key = (client_label(ev.client_sap), ev.reason)
                f[key] = f.get(key, 0) + 1
            elif t is InternalError:
                w.metrics.internal_errors += 1
                log.error("meter %d: %s", self.meter_id, ev.detail)
            elif t is ConnectionTerminated:
                w.connection_terminated(self, ev)
            elif t is PushRequested:
                if self.transport is not None and not self.transport.is_closing():
                    self.send_push(ev.push)
            elif t is PushConfirmed:
                w.dialer.push_confirmed(self.meter_id, ev.invoke_id)
            elif t is WorkPending:  # read nothing more from this head-end until the request is answered
                self._holding = True
                self.transport.pause_reading()
                w.loop.call_soon(self._work, ev.work, _monotonic())

    def _drain_events(self) -> None:
        events = self.conn.events()
        if events:
            self._handle_events(events)

    def abort(self) -> None:
        """Drop the connection now (worker shutdown)."""
        if self.transport is not None and self.conn is not None:
            self.transport.abort()
