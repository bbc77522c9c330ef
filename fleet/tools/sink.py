"""`fleet hes-sink`: a head-end's push receiver that keeps the score in PostgreSQL.

It accepts any number of meter connections (wrapper framing or HDLC UI frames), takes every DataNotification, plain or
general-glo-ciphered, finds its meter (by the system title of a ciphered push, by the device ID of a
plain one), checks and deciphers it with that meter's push keys (meter_core.security, the keys the
onboarding file gives: derived from the fleet secret, or as stored in `meter_keys`), and records it in
`push_received` with batched COPY. A push that does not decipher or decode is counted and dropped; a
push received twice is one row.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time
from collections import Counter

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from fleet.runtime.listen import raise_fd_limit
from fleet.settings import counter_floor
from fleet.store import sql
from fleet.store.writer import Writer, WriterConnection, write_batch
from meter_core import NEED_DATA
from meter_core.codec import crypto as sec
from meter_core.codec.apdu import DataNotification, DataNotificationConfirm, decode_apdu, encode_apdu
from meter_core.codec.apdu import ciphered as envelopes
from meter_core.codec.apdu.codes import LONG_SERVICE_CLASS_CONFIRMED, ApduTag
from meter_core.codec.axdr import CosemDateTime, data_from_bytes
from meter_core.codec.hdlc import FLAG, LLC_COMMAND, LLC_RESPONSE
from meter_core.codec.hdlc.frames import Deframer, FrameKind
from meter_core.codec.wrapper import WrapperDeframer, wrap
from meter_core.device.clock import IST
from meter_core.device.identity import meter_identity
from meter_core.device.keys import derived_keys, from_rows

log = logging.getLogger(__name__)
# The LLC header's LSAPs of a push in an HDLC UI frame (IEC 62056-46): a response, or a command from some meters.
_LLC_HEADS = (LLC_RESPONSE[:2], LLC_COMMAND[:2])

PUSH_SETUP = 4
COMMAND_TIMEOUT = 30.0
RETRY_MAX = 5.0  # seconds between two tries of a failing write, at most
SINK_SYSTEM_TITLE = b"CSFHES\x00\x01"  # the head-end's system title in the confirms it sends


class Directory:
    """Who sent a push: meter ids by system title and by device ID, and each meter's push keys."""

    def __init__(self, options, stored: dict[int, list] | None = None) -> None:
        self.fleet = options.fleet
        self.by_title: dict[bytes, int] = {}
        self.by_device: dict[bytes, int] = {}
        for meter_id in range(options.meters):
            ident = meter_identity(self.fleet, meter_id)
            self.by_title[ident.system_title] = meter_id
            self.by_device[ident.device_id.encode()] = meter_id
        self._stored = stored or {}
        self._keys: dict[int, object] = {}

    def keys(self, meter_id: int):
        ks = self._keys.get(meter_id)
        if ks is None:
            rows = self._stored.get(meter_id)
            state = (from_rows(self.fleet, meter_id, rows) if rows
                     else derived_keys(self.fleet, meter_id, self.fleet.security_suite))
            ks = self._keys[meter_id] = state.sets[PUSH_SETUP]
        return ks


class Refused(Exception):
    pass


def receive(directory: Directory, apdu: bytes) -> tuple[int, str, _dt.datetime, int, bool, bytes, bool]:
    """(meter_id, push setup, notified at, long invoke id, ciphered, body, confirmation asked) of one
    received APDU."""
    ciphered = apdu[:1] == envelopes.GENERAL_GLO_CIPHERING_TAG
    if ciphered:
        try:
            env = envelopes.open_envelope(apdu)
        except sec.SecurityError as e:
            raise Refused(f"ciphered push does not decode: {e}") from None
        meter_id = directory.by_title.get(env.system_title or b"")
        if meter_id is None:
            raise Refused("push from an unknown system title")
        ks = directory.keys(meter_id)
        try:
            _, _, apdu = sec.unprotect(env.payload, env.system_title, ks.ek, ks.ak)
        except sec.SecurityError as e:
            raise Refused(f"push of meter {meter_id} does not decipher: {e}") from None
    try:
        note = decode_apdu(apdu)
        if not isinstance(note, DataNotification):
            raise Refused(f"{type(note).__name__} is not a push")
        body = data_from_bytes(note.body).value
        device, push_ln = bytes(body[0].value), bytes(body[1].value)
    except Refused:
        raise
    except Exception as e:  # noqa: BLE001 - any malformed body: count and drop
        raise Refused(f"push does not decode: {e}") from None
    if not ciphered:
        meter_id = directory.by_device.get(device)
        if meter_id is None:
            raise Refused("push from an unknown device ID")
    if note.date_time is None:
        raise Refused("push without its date-time")
    stamp = CosemDateTime.from_bytes(note.date_time).to_datetime().replace(tzinfo=IST)
    iip = note.long_invoke_id_and_priority
    return (meter_id, ".".join(str(b) for b in push_ln), stamp, iip & 0xFFFFFF, ciphered, bytes(note.body),
            bool(iip & LONG_SERVICE_CLASS_CONFIRMED))


class _Conn(asyncio.Protocol):
    """One meter's call: wrapper frames, or HDLC UI frames (the first byte tells: 0x7E is an HDLC flag)."""

    def __init__(self, sink: PushSink) -> None:
        self.sink = sink
        self.deframer = None
        self.peer = ""

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self.sink.connections += 1
        self.sink._conns.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            if self.deframer is None:
                self.deframer = Deframer() if data[0] == FLAG else WrapperDeframer()
            self.deframer.feed(data)
            if type(self.deframer) is Deframer:
                while (frame := self.deframer.next_frame()) is not NEED_DATA:
                    info = frame.info
                    if frame.kind is FrameKind.UI and info[:2] in _LLC_HEADS:
                        self.sink.take(bytes(info[len(LLC_RESPONSE):]), self.peer)
            else:
                while (got := self.deframer.next_payload()) is not NEED_DATA:
                    reply = self.sink.take(got[2], self.peer)
                    if reply is not None:  # to the meter's logical device, from the push client
                        self.transport.write(wrap(got[1], got[0], reply))
        except Exception as e:  # noqa: BLE001 - a peer that speaks neither framing: drop it
            self.sink.refused["framing"] += 1
            log.warning("dropping %s: %s", self.peer, e)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.sink.connections -= 1
        self.sink._conns.discard(self)


class PushWriter(Writer):
    """Writes the pushes taken to ``push_received`` every flush interval (the engine, `fleet.store.writer`;
    keys make a repeat of a batch a no-op)."""

    def __init__(self, url: str, flush_interval: float) -> None:
        super().__init__("hes-sink", url, sql.CREATE_PUSH_RECEIVED_STAGE, interval=flush_interval,
                         command_timeout=COMMAND_TIMEOUT, retry=(flush_interval, RETRY_MAX))
        self.pending: list[tuple] = []
        self.recorded = 0

    def waiting(self) -> int:
        return len(self.pending)

    async def write_due(self, conn: WriterConnection) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            written, refused = await write_batch(await conn.get(), {"push_received": batch}, sql.PUSH_RECEIVED_COLUMNS)
        except BaseException:
            self.pending = batch + self.pending
            raise
        self.recorded += written.get("push_received", 0)
        for report in refused:
            log.error("push refused by the database: %s", report)


class PushSink:
    """The receiver and its writer task."""

    def __init__(self, url: str, directory: Directory, *, flush_interval: float = 0.2) -> None:
        self.url = url
        self.directory = directory
        self.writer = PushWriter(url, flush_interval)
        self.received = 0
        self.confirmed = 0
        self._counters: dict[int, int] = {}  # invocation counters of the confirms sent, per meter
        self.refused: Counter[str] = Counter()
        self.by_push: Counter[str] = Counter()  # pushes received, by push setup (logical name)
        self.connections = 0
        self._server = None
        self._conns: set = set()

    @property
    def pending(self) -> list[tuple]:
        """Pushes taken and not written yet."""
        return self.writer.pending

    @property
    def recorded(self) -> int:
        """Pushes written to ``push_received``."""
        return self.writer.recorded

    def take(self, apdu: bytes, peer: str) -> bytes | None:
        """Record one push; for a confirmed push, return the Data-Notification-Confirm to send back
        (general-glo-ciphered with the meter's push keys, from the sink's own system title)."""
        try:
            meter_id, push_ln, stamp, invoke, ciphered, body, confirm = receive(self.directory, apdu)
        except Refused as e:
            self.refused["undecodable"] += 1
            log.debug("%s: %s", peer, e)
            return None
        self.received += 1
        self.by_push[push_ln] += 1
        self.writer.pending.append((meter_id, push_ln, stamp, invoke, ciphered, len(apdu), peer, body))
        if not confirm or not ciphered:
            return None
        self.confirmed += 1
        ks = self.directory.keys(meter_id)
        # confirms' counters start above any an earlier run of the sink used (and at 1 at the least)
        ic = self._counters[meter_id] = max(self._counters.get(meter_id, 0) + 1, counter_floor(), 1)
        plain = encode_apdu(DataNotificationConfirm(long_invoke_id_and_priority=LONG_SERVICE_CLASS_CONFIRMED | invoke))
        return envelopes.seal(ApduTag.GENERAL_GLO_CIPHERING, sec.protect(sec.AUTHENTICATED_AND_ENCRYPTED | ks.suite, ic, SINK_SYSTEM_TITLE, ks.ek, ks.ak, plain),
                        SINK_SYSTEM_TITLE)

    async def start(self, host: str, port: int) -> None:
        raise_fd_limit()  # thousands of meters connect at once
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), host, port, reuse_address=True, backlog=4096)
        self.writer.start()

    async def stop(self, grace: float = 2.0) -> None:
        """Stop taking pushes: no new connections; the open ones hung up once nothing has come in on them
        for a moment (at most ``grace`` seconds: what the meters sent before is read, not dropped);
        what was taken written."""
        if self._server is not None:
            self._server.close()
            deadline = time.monotonic() + grace
            last = -1
            while self._conns and time.monotonic() < deadline and self.received != last:
                last = self.received
                await asyncio.sleep(0.2)
            for c in list(self._conns):
                c.transport.abort()
            await self._server.wait_closed()
        await self.writer.close(5.0)


class SinkCollector:
    """The sink's counters as Prometheus metrics, read at each scrape (nothing is written per push):
    pushes received by push setup, recorded, refused by reason, confirms sent, connections open, pushes
    waiting to be written."""

    def __init__(self, sink: PushSink) -> None:
        self.sink = sink

    def collect(self):
        s = self.sink
        received = CounterMetricFamily("fleet_sink_pushes_received", "Pushes the head-end sink took, by push setup",
                                       labels=["push"])
        for push, n in list(s.by_push.items()):
            received.add_metric([push], n)
        yield received
        yield CounterMetricFamily("fleet_sink_pushes_recorded", "Pushes written to push_received", value=s.recorded)
        refused = CounterMetricFamily("fleet_sink_pushes_refused", "Pushes dropped, by reason (undecodable, framing)",
                                      labels=["reason"])
        for reason in ("undecodable", "framing"):  # both always shown: a first refusal is an increase
            refused.add_metric([reason], s.refused.get(reason, 0))
        yield refused
        yield CounterMetricFamily("fleet_sink_confirms_sent", "Data-Notification-Confirms sent for confirmed pushes",
                                  value=s.confirmed)
        yield GaugeMetricFamily("fleet_sink_connections_open", "Meters' calls open to the sink", value=s.connections)
        yield GaugeMetricFamily("fleet_sink_pushes_waiting", "Pushes taken and not yet written",
                                value=len(s.pending))


__all__ = ["Directory", "PushSink", "SinkCollector", "receive"]
