"""A meter's end of one connection, sans-I/O: bytes in, bytes and events out.

    conn = MeterConnection(meter, Transport.WRAPPER, now=t)
    conn.receive_data(chunk, now=t)         # b"" = the peer closed
    while (ev := conn.next_event()) is not NEED_DATA:
        handle(ev)
    out = conn.data_to_send()
    wake_at = conn.next_deadline()

Under the associations is either the TCP wrapper (IEC 62056-47) or HDLC (IEC 62056-46); an
association per client SAP handles the APDUs. Whatever bytes arrive, the connection answers as the
standard says or asks to be closed; a fault in serving one request is answered and reported, never
raised to the owner.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from meter_core.codec._util import NEED_DATA, Sentinel
from meter_core.codec.apdu import ciphered
from meter_core.codec.apdu.codes import AcseServiceUser, ApduTag
from meter_core.codec.errors import (
    DecodeError,
    ExceptionServiceError,
    ExceptionStateError,
    RemoteProtocolError,
)
from meter_core.codec.hdlc import (
    ApduReceived,
    FrameRejected,
    HdlcServerConnection,
    HdlcServerSettings,
    LinkConnected,
    LinkDisconnected,
)
from meter_core.codec.wrapper import WrapperDeframer, wrap
from meter_core.cosem.build import model_of
from meter_core.device.pushes import PUSH_CLIENT_SAP
from meter_core.events import (
    AssociationRejected,
    AssociationReleased,
    ConnectionTerminated,
    InternalError,
    ProtocolViolation,
    PushConfirmed,
    ReleaseReason,
    SecurityFailure,
    WorkNeeded,
    WorkPending,
)
from meter_core.notification import take_confirm
from meter_core.session.association import (
    Association,
    AssociationState,
    ServiceStats,
    exception_response,
    reject_aarq,
)

# The management logical device: the only server SAP an IS 15959 meter has (Gurux's India.txt and a
# Wirepas DLMS NIC firmware for IS 15959 meters).
MANAGEMENT_LOGICAL_DEVICE = 1
_RLRE = bytes.fromhex("6303800100")
_NOT_ASSOCIATED = exception_response(ExceptionStateError.SERVICE_NOT_ALLOWED,
                                     ExceptionServiceError.OPERATION_NOT_POSSIBLE)
_INTERNAL_FAULT = exception_response(ExceptionStateError.SERVICE_NOT_ALLOWED, ExceptionServiceError.OTHER_REASON)


class Transport(Enum):
    """How APDUs are framed on the connection."""

    WRAPPER = "wrapper"
    HDLC = "hdlc"


class MeterConnection:
    """The meter's side of one TCP connection (listen mode)."""

    __slots__ = (
        "meter", "transport", "stats", "_assocs", "_events", "_out", "_wrapper", "_hdlc", "_last_activity",
        "_closed", "_timeout", "_defer", "_pending",
    )

    def __init__(
        self,
        meter,
        transport: Transport,
        *,
        now: float,
        stats: ServiceStats | None = None,
        hdlc_settings: HdlcServerSettings | None = None,
        inactivity_timeout: float | None = None,
        defer_work: bool = False,
    ) -> None:
        self.meter = meter
        # An owner that can run long work a slice at a time asks for `WorkPending` events instead of
        # answers computed inline (the wrapper: HDLC's link timers run on regardless, it answers inline).
        self._defer = defer_work and transport is Transport.WRAPPER
        self._pending: tuple[int, bytes] | None = None  # (client SAP, APDU) of a request waiting for its work
        self.transport = transport
        self.stats = stats if stats is not None else ServiceStats()
        self._assocs: dict[int, Association] = {}
        self._events: deque = deque()
        self._out: list[bytes] = []
        self._last_activity = now
        self._closed = False
        # the TCP-UDP setup's inactivity_time_out, or the caller's (a meter that dialled in hangs up sooner)
        self._timeout = float(meter.state.inactivity_timeout if inactivity_timeout is None else inactivity_timeout)
        if transport is Transport.WRAPPER:
            self._wrapper = WrapperDeframer()
            self._hdlc = None
        else:
            self._wrapper = None
            if hdlc_settings is None:
                hdlc_settings = HdlcServerSettings(
                    physical_address=meter.identity.hdlc_physical_address, accept_any_physical=True
                )
            self._hdlc = HdlcServerConnection(hdlc_settings)

    # -- the sans-I/O surface -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the meter wants the transport closed (it has said why in an event)."""
        return self._closed

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed the connection."""
        if self._closed:
            return
        if not data:
            self._release_all(ReleaseReason.CONNECTION_CLOSED)
            self._closed = True
            return
        self._last_activity = now
        if self._wrapper is not None:
            self._receive_wrapper(data, now)
        else:
            self._receive_hdlc(data, now)

    def exchange(self, data: bytes, now: float) -> tuple[bytes, list | tuple]:
        """`receive_data`, then `data_to_send` and `events`, in one call: (bytes to write, events).

        The common case (the wrapper, one whole frame for the meter's logical device, nothing
        buffered) is answered here directly: the per-request path of every association."""
        wrapper = self._wrapper
        if wrapper is not None and data and not self._closed and not self._out and self._pending is None:
            got = wrapper.whole_frame(data)
            if got is not None and got[1] == MANAGEMENT_LOGICAL_DEVICE:
                self._last_activity = now
                response = self._serve(got[0], got[2], now)
                out = b"" if response is None else wrap(MANAGEMENT_LOGICAL_DEVICE, got[0], response)
                waiting = self._events
                if not waiting:
                    return out, ()
                events = list(waiting)
                waiting.clear()
                return out, events
        self.receive_data(data, now)
        return self.data_to_send(), self.events()

    def resume(self, now: float, *, inline: bool = False) -> tuple[bytes, list | tuple]:
        """After a `WorkPending` event's work is done: answer the request that waited for it, then the
        requests that came meanwhile (as `exchange` does: bytes to write, events). ``inline``: compute
        whatever the request still needs now instead of deferring it again (the work failed)."""
        pending, self._pending = self._pending, None
        if pending is not None and not self._closed:
            self._last_activity = now
            client_sap, apdu = pending
            assoc = self._assocs.get(client_sap)
            if inline and assoc is not None:
                assoc.defer_work = False
                try:
                    response = self._serve(client_sap, apdu, now)
                finally:
                    assoc.defer_work = self._defer
            else:
                response = self._serve(client_sap, apdu, now)
            if response is not None:
                self._out.append(wrap(MANAGEMENT_LOGICAL_DEVICE, client_sap, response))
            if self._pending is None:
                self._drain_wrapper(now)
        return self.data_to_send(), self.events()

    def next_event(self):
        """The next event, or NEED_DATA."""
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    def events(self) -> list | tuple:
        """Every event waiting, oldest first, in one call (what `next_event` gives one at a time)."""
        waiting = self._events
        if not waiting:
            return ()
        taken = list(waiting)
        waiting.clear()
        return taken

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now."""
        if self._hdlc is not None:
            return self._hdlc.data_to_send()
        out = self._out
        if not out:
            return b""
        if len(out) == 1:
            data = out[0]
        else:
            data = b"".join(out)
        out.clear()
        return data

    def next_deadline(self) -> float | None:
        """When `handle_timer` must be called (inactivity time-out, HDLC timers)."""
        if self._closed:
            return None
        deadline = self._last_activity + self._timeout if self._timeout > 0 else None
        if self._hdlc is not None:
            hd = self._hdlc.next_deadline()
            if hd is not None and (deadline is None or hd < deadline):
                deadline = hd
        return deadline

    def handle_timer(self, now: float) -> None:
        if self._closed:
            return
        if self._hdlc is not None:
            self._hdlc.handle_timer(now)
            self._drain_hdlc(now)
        if self._timeout > 0 and now >= self._last_activity + self._timeout:
            self._release_all(ReleaseReason.TIMEOUT)
            self._events.append(ConnectionTerminated("inactivity time-out"))
            self._closed = True

    def connection_lost(self) -> None:
        """The transport is gone (reset, or closed by the owner)."""
        if not self._closed:
            self._release_all(ReleaseReason.CONNECTION_CLOSED)
            self._closed = True

    @property
    def associations(self) -> dict[int, Association]:
        return self._assocs

    # -- wrapper ----------------------------------------------------------------------------------

    def _receive_wrapper(self, data: bytes, now: float) -> None:
        deframer = self._wrapper
        if self._pending is not None:  # a request waits for its work: the next ones wait behind it
            deframer.feed(data)
            return
        got = deframer.whole_frame(data)
        if got is not None and got[1] == MANAGEMENT_LOGICAL_DEVICE:
            response = self._serve(got[0], got[2], now)
            if response is not None:
                self._out.append(wrap(MANAGEMENT_LOGICAL_DEVICE, got[0], response))
            return
        deframer.feed(data)
        self._drain_wrapper(now)

    def _drain_wrapper(self, now: float) -> None:
        deframer = self._wrapper
        out = self._out
        while self._pending is None:
            try:
                got = deframer.next_payload()
            except DecodeError as e:
                self._events.append(ProtocolViolation("wrapper", str(e)))
                self._release_all(ReleaseReason.CONNECTION_CLOSED)
                self._events.append(ConnectionTerminated("wrapper framing lost"))
                self._closed = True
                return
            if got is NEED_DATA:
                return
            source, destination, payload = got
            if destination != MANAGEMENT_LOGICAL_DEVICE:
                # Not addressed to a logical device of this meter: nobody here to answer.
                self._events.append(ProtocolViolation("wrapper", f"no logical device at wPort {destination}"))
                continue
            response = self._serve(source, payload, now)
            if response is not None:
                out.append(wrap(MANAGEMENT_LOGICAL_DEVICE, source, response))

    # -- HDLC -------------------------------------------------------------------------------------

    def _receive_hdlc(self, data: bytes, now: float) -> None:
        try:
            self._hdlc.receive_data(data, now)
        except RemoteProtocolError as e:
            self._events.append(ProtocolViolation("hdlc", str(e)))
        self._drain_hdlc(now)

    def _drain_hdlc(self, now: float) -> None:
        hdlc = self._hdlc
        while True:
            ev = hdlc.next_event()
            if ev is NEED_DATA:
                return
            if type(ev) is ApduReceived:
                response = self._serve(ev.client_address, ev.apdu, now)
                if response is not None:
                    hdlc.send_apdu(response)
            elif type(ev) is LinkDisconnected:
                assoc = self._assocs.get(ev.client_address)
                if assoc is not None:
                    assoc.abort(ReleaseReason.LINK_DISCONNECTED)
            elif type(ev) is FrameRejected:
                self._events.append(ProtocolViolation("hdlc", f"FRMR: {ev.reason}"))
            elif type(ev) is LinkConnected:
                # A new link (or SNRM reset) starts without an association.
                assoc = self._assocs.get(ev.client_address)
                if assoc is not None and assoc.associated:
                    assoc.abort(ReleaseReason.LINK_DISCONNECTED)

    # -- APDUs ------------------------------------------------------------------------------------

    def _serve(self, client_sap: int, apdu: bytes, now: float) -> bytes | None:
        assoc = self._assocs.get(client_sap)
        if client_sap == PUSH_CLIENT_SAP and apdu[:1] == ciphered.GENERAL_GLO_CIPHERING_TAG and (assoc is None or not assoc.associated):
            # the head-end's confirmation of a confirmed push (no association: the push association is
            # pre-established); it has no answer
            invoke = take_confirm(self.meter, apdu)
            if invoke is None:
                self._events.append(SecurityFailure(client_sap, "push-confirm"))
            else:
                self._events.append(PushConfirmed(invoke))
            return None
        if assoc is None:
            view = model_of(self.meter).associations.get(client_sap)
            if view is None:
                return self._unknown_client(client_sap, apdu)
            assoc = self._assocs[client_sap] = Association(self.meter, view, self.stats.of_client(client_sap),
                                                          self._events,  # its events are the connection's
                                                          defer_work=self._defer)
        if not apdu:
            self._events.append(ProtocolViolation("apdu", "empty APDU"))
            return None
        try:
            response = assoc.handle_apdu(apdu, now)
        except WorkNeeded as e:  # served again by `resume` once the owner has done the work
            self._pending = (client_sap, apdu)
            self._events.append(WorkPending(e.work))
            return None
        except Exception as e:  # a fault of ours must cost one answer, never the connection or worker
            self._events.append(InternalError(f"{type(e).__name__}: {e} serving {apdu[:16].hex()}"))
            response = _INTERNAL_FAULT
        return response

    def _unknown_client(self, client_sap: int, apdu: bytes) -> bytes | None:
        """A client SAP without an association in this meter: refuse the AARQ, answer the rest."""
        tag = apdu[0] if apdu else None
        self.stats.counts[("aarq" if tag == ApduTag.AARQ else "other", "unknown-client")] += 1
        if tag == ApduTag.AARQ:
            self._events.append(AssociationRejected(client_sap, 1, 1, AcseServiceUser.NO_REASON_GIVEN,
                                                    "unknown client SAP"))
            return reject_aarq((), AcseServiceUser.NO_REASON_GIVEN)
        if tag == ApduTag.RLRQ:
            return _RLRE
        return _NOT_ASSOCIATED

    def _release_all(self, reason: ReleaseReason) -> None:
        for assoc in self._assocs.values():
            if assoc.state is not AssociationState.IDLE:  # one released already has nothing to abort
                assoc.abort(reason)


def release_events_only(events) -> list[AssociationReleased]:
    """The association releases among ``events`` (a helper for owners that only track those)."""
    return [e for e in events if type(e) is AssociationReleased]


__all__ = ["MANAGEMENT_LOGICAL_DEVICE", "MeterConnection", "Sentinel", "Transport"]
