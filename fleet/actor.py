"""The meter actor: an asyncio Protocol that carries bytes between a socket and a MeterConnection.

It holds no protocol logic (aioquic ``asyncio/protocol.py`` style): bytes in, bytes out, one timer
armed from ``next_deadline()``, events turned into metrics and database rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from meter_core._util import NEED_DATA
from meter_core.connection import MeterConnection
from meter_core.events import (
    AssociationEstablished,
    AssociationRejected,
    AssociationReleased,
    ConnectionTerminated,
    InternalError,
    ProtocolViolation,
    PushConfirmed,
    PushRequested,
    SecurityFailure,
)

log = logging.getLogger("fleet.actor")

_monotonic = time.monotonic


class MeterProtocol(asyncio.Protocol):
    """One TCP connection to one meter."""

    __slots__ = ("worker", "meter_id", "transport", "conn", "timer", "connection_id", "peer", "_seq", "_closing",
                 "push", "sent", "push_id", "push_at", "destination")

    def __init__(self, worker, meter_id: int, push: str | None = None, push_id: int = 0,
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
        self.connection_id: uuid.UUID | None = None
        self.peer = ""
        self._seq = 0
        self._closing = False

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        w = self.worker
        refused = w.admit(self.meter_id, self.push is not None)
        if refused is not None:
            # TCP-UDP setup maximum_simultaneous_connections reached, or the meter is dark (no supply, no
            # link: an injected fault): refuse this one cleanly.
            w.metrics.refused[refused] = w.metrics.refused.get(refused, 0) + 1
            transport.close()
            if not w.connections.get(self.meter_id):
                w._release_meter(self.meter_id)
            return
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        now = _monotonic()
        meter = w.meter(self.meter_id)
        idle = w.settings.dial_idle if self.push is not None else None
        self.conn = MeterConnection(meter, w.transport_kind, now=now, stats=w.stats, inactivity_timeout=idle)
        self.connection_id = uuid.uuid4()
        w.connection_opened(self)
        if self.push is not None:  # a meter that dialled in speaks first: its push
            self.send_push(self.push, self.push_id, self.push_at)
            self.sent = True
        self._arm(now)

    def send_push(self, push_ln: str, push_id: int | None = None, at: float | None = None) -> None:
        """Write push ``push_ln`` (ciphered with the push setup's keys) on this connection, with the
        values of moment ``at`` (monotonic; default now)."""
        from meter_core import push as pushes

        w, meter = self.worker, self.conn.meter
        now = _monotonic() if at is None else at
        if push_id is None:
            push_id = pushes.invoke_id_for(meter.sim(now))
        apdu = pushes.data_notification(meter, push_ln, now, push_id)
        data = pushes.frame(meter, pushes.protect(meter, apdu), w.transport_kind.value == "hdlc")
        self.transport.write(data)
        w.metrics.bytes_out += len(data)
        w.security_dirty.add(self.meter_id)  # the push used a counter

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            return
        now = _monotonic()
        conn.receive_data(data, now)
        out = conn.data_to_send()
        if out:
            self.transport.write(out)
        m = self.worker.metrics
        m.bytes_in += len(data)
        m.bytes_out += len(out)
        m.observe_latency(_monotonic() - now)
        if conn.meter.state.security is not None:  # counters (or keys) of a ciphered client moved
            self.worker.security_dirty.add(self.meter_id)
        if (ev := conn.next_event()) is not NEED_DATA:
            self._handle_events(ev)
        if conn.closed and not self._closing:
            self._closing = True
            self.transport.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        """The head-end does not read its answers (the write buffer passed its high-water mark): stop
        reading its requests until it does, so a flooding client waits on its own socket instead of
        filling the worker's memory."""
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        if conn is None:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn.connection_lost()
        if (ev := conn.next_event()) is not NEED_DATA:
            self._handle_events(ev)
        self.worker.connection_closed(self)
        self.conn = None

    # -- timer ------------------------------------------------------------------------------------

    def _arm(self, now: float) -> None:
        deadline = self.conn.next_deadline()
        if deadline is not None:
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
        if (ev := conn.next_event()) is not NEED_DATA:
            self._handle_events(ev)
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

    def _handle_events(self, ev) -> None:
        w = self.worker
        conn = self.conn
        while ev is not NEED_DATA:
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
                key = (ev.client_sap, ev.reason)
                f[key] = f.get(key, 0) + 1
            elif t is InternalError:
                w.metrics.internal_errors += 1
                log.error("meter %d: %s", self.meter_id, ev.detail)
            elif t is ConnectionTerminated:
                w.connection_terminated(self, ev)
            elif t is PushRequested:
                self.send_push(ev.push)
            elif t is PushConfirmed:
                w.push_confirmed(self.meter_id, ev.invoke_id)
            ev = conn.next_event()

    def abort(self) -> None:
        """Drop the connection now (worker shutdown)."""
        if self.transport is not None and self.conn is not None:
            self.transport.abort()
