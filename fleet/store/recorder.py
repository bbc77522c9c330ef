"""The worker's database writer: connections and associations as rows, written by one COPY task.

The worker's event loop calls the sync methods (``connection_opened``, ``association_established``,
...); they only append a tuple to an in-memory queue and never block or await. One writer task per
worker takes the queue in batches (every ``flush_interval`` or at ``batch_size`` events), COPYs them
into session-local staging tables and applies them with set-based statements in one transaction
(DESIGN.md, "Storage"; STYLE.md section 9).

Guarantees:
- No loss (`fleet.store.writer`'s rule): a batch that fails is kept and retried with back-off on a new
  connection, before anything newer is written. A batch the database refuses (a constraint, a value
  it cannot take) is written again one row at a time, and only the rows it refuses are left out,
  each logged and counted (``fleet_db_writer_discarded``). The writer task outlives any fault.
- No duplicates: rows have keys (meter_id plus a random id given when the event happened), inserts
  skip existing keys and closes only fill a NULL, so replaying a batch whose commit was in fact done
  changes nothing.
- Bounded memory: when ``max_queue`` events wait, new connections and associations are dropped and
  counted (``fleet_db_writer_backpressure``) instead of growing the queue; their closes are then
  skipped too. Closes of recorded rows are always queued (there is at most one per open row).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable

import asyncpg

from fleet.errors import FleetError
from fleet.settings import FleetOptions
from fleet.store import pg, sql
from fleet.store.writer import REFUSED, Writer, WriterConnection, rowcount, timestamp
from meter_core.codec.apdu.codes import AuthenticationMechanism
from meter_core.cosem.is15959 import ASSOCIATIONS
from meter_core.device import keys
from meter_core.device.identity import meter_identity

log = logging.getLogger(__name__)

BATCH_SIZE = 2000
FLUSH_INTERVAL = 0.2
MAX_QUEUE = 100_000
RETRY_MIN, RETRY_MAX = 0.1, 5.0
COMMAND_TIMEOUT = 30.0
KEYS_INTERVAL = 1.0

# Queue entries: (kind, wall-clock time, meter_id, ...) — see the methods that build them.
_CONN_OPEN, _CONN_CLOSE, _ASSOC_OPEN, _ASSOC_CLOSE = range(4)

_ASSOCIATION_BY_SAP = {a.client_sap: a for a in ASSOCIATIONS}
_AUTHENTICATION = {m: m.name.lower().replace("_", "-") for m in AuthenticationMechanism}

class NullRecorder:
    """A recorder that records nothing (a fleet run without a database)."""

    def connection_opened(self, proto) -> None:
        pass

    def connection_closed(self, proto) -> None:
        pass

    def connection_terminated(self, proto, ev) -> None:
        pass

    def association_established(self, proto, ev) -> None:
        pass

    def association_rejected(self, proto, ev) -> None:
        pass

    def association_released(self, proto, ev) -> None:
        pass

    def flush_metrics(self, metrics) -> None:
        pass

    def push_settled(self, *args, **kw) -> None:
        pass

    def push_queued(self, *args) -> None:
        pass

    async def close(self, timeout: float) -> None:
        pass


class Recorder(Writer):
    """Records a worker's connections and associations, the keys and counters that moved and the pushes
    settled, in PostgreSQL (the engine, `fleet.store.writer`: one task, one connection)."""

    RETRY = (RETRY_MIN, RETRY_MAX)

    def __init__(self, url: str, conn: asyncpg.Connection, *, shard: range, slot: int | None,
                 transport: str, clock, security_of: Callable[[int], object | None],
                 take_dirty: Callable[[], set[int]], batch_size: int = BATCH_SIZE,
                 flush_interval: float = FLUSH_INTERVAL, max_queue: int = MAX_QUEUE) -> None:
        super().__init__("connection recorder", url, sql.CREATE_STAGING, interval=flush_interval,
                         command_timeout=COMMAND_TIMEOUT)
        self._conn.conn = conn
        self.url = url
        self.shard = shard
        # what the recorder needs of the meters: a meter's keys and counters, and the meters whose moved
        self._security_of = security_of
        self._take_dirty = take_dirty
        self._batch_size = batch_size
        self._max_queue = max_queue
        self._clock = clock
        self._transport = transport
        self._slot = slot
        self._queue: deque[tuple] = deque()
        self._pending: tuple[list, list, int, float] | None = None  # folded batch being written
        self._open_connections: set[uuid.UUID] = set()
        self._associations: dict[uuid.UUID, dict[int, uuid.UUID]] = {}  # connection -> client SAP -> id
        self._terminated: dict[uuid.UUID, str] = {}
        # tallies, pushed to prometheus by flush_metrics
        self.rows_written: dict[str, int] = {"active_connections": 0, "client_associations": 0}
        self.dropped = 0
        self.discarded = 0
        self._reported = {"rows": dict(self.rows_written), "dropped": 0, "errors": 0, "discarded": 0}
        self._keys_due = 0.0
        self._keys_pending: set[int] = set()
        self._pushes: list[tuple] = []  # settled pushes, written with the keys (once a second)
        self._alarms: list[tuple] = []  # ESW bits of settled alert pushes (eswf_push_alarms)
        self._queued: dict[tuple, tuple] = {}  # message_queue rows by (meter, message id), last state kept

    @classmethod
    async def open(cls, url: str, *, shard: range, slot: int | None, options: FleetOptions, clock,
                   install_keys: Callable[[int, list, list | None], None], security_of: Callable[[int], object | None],
                   take_dirty: Callable[[], set[int]], **kwargs) -> Recorder:
        """Connect, record the shard's meters (``options`` place them) and give them the keys a previous run
        left (``install_keys``), close what a killed predecessor left open, start writing."""
        conn = await pg.connect(url, command_timeout=COMMAND_TIMEOUT)
        try:
            await conn.execute(sql.CREATE_STAGING)
            await _upsert_meters(conn, shard, options)
            await _load_keys(conn, shard, install_keys)
            sim = _sim_now(clock)
            async with conn.transaction():
                for query in (sql.CLOSE_LOST_CONNECTIONS, sql.CLOSE_LOST_ASSOCIATIONS):
                    await conn.execute(query, shard.start, shard.stop, timestamp(sim))
        except asyncpg.UndefinedTableError:
            await pg.close_quietly(conn)
            raise FleetError(f"database at {pg.redact(url)} has no fleet schema: run `fleet db migrate`") from None
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            await pg.close_quietly(conn)
            raise FleetError(f"database at {pg.redact(url)} refused the fleet's meters: {pg.one_line(e)}") from None
        rec = cls(url, conn, shard=shard, slot=slot, transport=options.transport.value, clock=clock,
                  security_of=security_of, take_dirty=take_dirty, **kwargs)
        rec.start()
        return rec

    # -- called from the event loop: append, never block --------------------------------------------

    def _sim(self) -> float | None:
        clock = self._clock
        return None if clock is None else clock.sim(time.monotonic())

    def _push(self, entry: tuple) -> None:
        q = self._queue
        q.append(entry)
        if len(q) >= self._batch_size:
            self.wake()

    def _full(self) -> bool:
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return True
        return False

    def connection_opened(self, proto) -> None:
        if self.closing or self._full():
            return
        cid = proto.connection_id
        self._open_connections.add(cid)
        self._push((_CONN_OPEN, time.time(), proto.meter_id, cid, proto.peer, self._sim()))

    def connection_terminated(self, proto, ev) -> None:
        """The meter dropped the link (its reason becomes the close reason)."""
        if proto.connection_id in self._open_connections:
            self._terminated[proto.connection_id] = ev.reason

    def connection_closed(self, proto) -> None:
        cid = proto.connection_id
        t, sim = time.time(), self._sim()
        leftover = self._associations.pop(cid, None)
        if leftover:
            # The meter releases its associations before the connection goes; this is a safety net.
            for aid in leftover.values():
                self._push((_ASSOC_CLOSE, t, proto.meter_id, aid, "connection-closed", sim))
        reason = self._terminated.pop(cid, "closed")
        if cid in self._open_connections:
            self._open_connections.discard(cid)
            self._push((_CONN_CLOSE, t, proto.meter_id, cid, reason, sim))

    def association_established(self, proto, ev) -> None:
        if self.closing or self._full():
            return
        t, sim = time.time(), self._sim()
        cid = proto.connection_id
        per_connection = self._associations.setdefault(cid, {})
        previous = per_connection.get(ev.client_sap)
        if previous is not None:
            self._push((_ASSOC_CLOSE, t, proto.meter_id, previous, "superseded", sim))
        aid = uuid.uuid4()
        per_connection[ev.client_sap] = aid
        spec = _ASSOCIATION_BY_SAP.get(ev.client_sap)
        self._push((
            _ASSOC_OPEN, t, proto.meter_id, aid, cid, ev.client_sap, spec.obis if spec else None, ev.name,
            _AUTHENTICATION.get(ev.mechanism, str(ev.mechanism)), int(ev.context), "accepted", 0, None, None,
            None, proto.peer, sim,
        ))

    def association_rejected(self, proto, ev) -> None:
        if self.closing or self._full():
            return
        spec = _ASSOCIATION_BY_SAP.get(ev.client_sap)
        self._push((
            _ASSOC_OPEN, time.time(), proto.meter_id, uuid.uuid4(), proto.connection_id, ev.client_sap,
            spec.obis if spec else None, spec.name if spec else None, None, None, "rejected", int(ev.result),
            int(ev.source), int(ev.diagnostic), ev.reason, proto.peer, self._sim(),
        ))

    def association_released(self, proto, ev) -> None:
        per_connection = self._associations.get(proto.connection_id)
        if not per_connection:
            return
        aid = per_connection.pop(ev.client_sap, None)
        if aid is None:
            return  # its establishment was dropped (queue full) or came before the recorder
        self._push((_ASSOC_CLOSE, time.time(), proto.meter_id, aid, ev.reason.value, self._sim()))

    def depth(self) -> int:
        """Events not yet written (queued plus the batch in flight)."""
        return len(self._queue) + (self._pending[2] if self._pending else 0)

    def waiting(self) -> int:
        return self.depth()

    def urgent(self) -> bool:
        return len(self._queue) >= self._batch_size

    def finished(self) -> bool:
        return not self.depth() and not (self._pushes or self._queued or self._keys_pending)

    def lag(self) -> float:
        """Age in seconds of the oldest event not yet written (0 when all are written)."""
        if self._pending is not None:
            oldest = self._pending[3]
        elif self._queue:
            oldest = self._queue[0][1]
        else:
            return 0.0
        return max(0.0, time.time() - oldest)

    def flush_metrics(self, metrics) -> None:
        """Push queue depth, lag and the counts since the last call to prometheus (once a second)."""
        metrics.DB_QUEUE.set(self.depth())
        metrics.DB_LAG.set(self.lag())
        rep = self._reported
        for table, n in self.rows_written.items():
            delta = n - rep["rows"].get(table, 0)
            if delta:
                metrics.DB_ROWS.labels(table).inc(delta)
                rep["rows"][table] = n
        for name, counter in (("dropped", metrics.DB_BACKPRESSURE), ("errors", metrics.DB_ERRORS),
                              ("discarded", getattr(metrics, "DB_DISCARDED", None))):
            delta = getattr(self, name) - rep[name]
            if delta and counter is not None:
                counter.inc(delta)
                rep[name] += delta

    def push_settled(self, meter_id: int, push_ln: str, due: float, push_id: int, outcome: str, attempts: int,
                     bits: tuple = (), raised: float | None = None, acknowledged: bool = False) -> None:
        """A push was sent or has failed for good (dial mode); an alert push settles its ESW bits too
        (raised at ``raised``, before the push's randomisation): ACKNOWLEDGED when the head-end confirmed it."""
        self._pushes.append((meter_id, push_ln, timestamp(due), push_id, outcome, attempts))
        status = "ACKNOWLEDGED" if acknowledged else outcome
        for bit in bits:
            self._alarms.append((meter_id, timestamp(due if raised is None else raised), bit, status, attempts - 1))

    def push_queued(self, meter_id: int, message_id: int, push_ln: str, due: float, payload: bytes, attempts: int,
                    status: str) -> None:
        """A push waiting in the meter's message queue for its retries (PENDING), or settled (SENT, FAILED)."""
        self._queued[(meter_id, message_id)] = (meter_id, message_id, push_ln, timestamp(due), payload, attempts, status,
                                                _dt.datetime.now(_dt.UTC))

    # -- the writer's passes ---------------------------------------------------------------------------

    async def write_due(self, conn: WriterConnection) -> None:
        if self.closing or time.monotonic() >= self._keys_due:
            await self._write_keys(conn)
        if self._pending is None:
            if not self._queue:
                return
            self._pending = self._take()
        db = await conn.get()
        try:
            await self._write(db, self._pending)
        except REFUSED as e:
            # the database refused a row (the one rule, `fleet.store.writer`): the batch row by row
            log.warning("database refused a batch of %d event(s) (%s); writing it row by row",
                        self._pending[2], pg.one_line(e))
            conn.drop()
            await self._write_apart(conn, self._pending)
        self._pending = None

    async def _write_apart(self, conn: WriterConnection, batch: tuple[list, list, int, float]) -> None:
        """Write ``batch`` one staged row at a time, each in its own transaction: a row the database refuses
        is logged and counted (``discarded``), the others are written (a retryable failure raises, and the
        whole batch is tried again: its writes are idempotent)."""
        connections, associations, _, oldest = batch
        db = await conn.get()
        for one in [([row], [], 1, oldest) for row in connections] + [([], [row], 1, oldest) for row in associations]:
            try:
                await self._write(db, one)
            except REFUSED as e:
                self.discarded += 1
                row = (one[0] or one[1])[0]
                log.error("database refused a row of meter %s (%s), left out: %s", row[0], row[1], pg.one_line(e))

    async def _write_keys(self, conn: WriterConnection) -> None:
        """Write the keys and counters of the meters whose security state moved (about once a second).
        A failure keeps them for the next try; counters only grow in the table, so a late or repeated
        write is harmless."""
        self._keys_due = time.monotonic() + KEYS_INTERVAL
        if self._pushes or self._queued:
            await self._write_pushes(conn)
        self._keys_pending |= self._take_dirty()
        if not self._keys_pending:
            return
        records, cert_meters, cert_rows, written_certs = [], [], [], []
        for meter_id in self._keys_pending:
            sec = self._security_of(meter_id)
            if sec is not None:
                records += keys.rows(meter_id, sec)
                if sec.certs_changed:
                    # taken now: a change while the write is under way sets the flag again
                    sec.certs_changed = False
                    cert_meters.append(meter_id)
                    cert_rows += keys.certificate_rows(meter_id, sec)
                    written_certs.append(sec)
        try:
            db = await conn.get()
            async with db.transaction():
                await db.copy_records_to_table(sql.STAGE_KEYS, records=records, columns=sql.KEY_COLUMNS)
                await db.execute(sql.UPSERT_KEYS)
                if cert_meters:
                    await db.execute(sql.REPLACE_CERTIFICATES, cert_meters)
                    await db.copy_records_to_table("certificates", records=cert_rows, columns=sql.CERT_COLUMNS)
        except BaseException:  # kept for the next pass
            for sec in written_certs:
                sec.certs_changed = True
            raise
        self.rows_written["meter_keys"] = self.rows_written.get("meter_keys", 0) + len(records)
        self._keys_pending.clear()

    async def _write_pushes(self, conn: WriterConnection) -> None:
        batch, self._pushes = self._pushes, []
        alarms, self._alarms = self._alarms, []
        queued, self._queued = self._queued, {}
        try:
            db = await conn.get()
            async with db.transaction():
                if queued:
                    await db.copy_records_to_table(sql.STAGE_MESSAGES, records=list(queued.values()),
                                                   columns=sql.MESSAGE_COLUMNS)
                    await db.execute(sql.UPSERT_MESSAGES)
                await db.copy_records_to_table(sql.STAGE_PUSH_DUE, records=batch, columns=sql.PUSH_DUE_COLUMNS)
                await db.execute(sql.INSERT_PUSH_DUE)
                if alarms:
                    await db.copy_records_to_table(sql.STAGE_ALARMS, records=alarms, columns=sql.ALARM_COLUMNS)
                    await db.execute(sql.UPSERT_ALARMS)
        except BaseException:  # kept for the next pass; the key makes a repeat a no-op
            self._pushes = batch + self._pushes
            self._alarms = alarms + self._alarms
            self._queued = {**queued, **self._queued}
            raise
        self.rows_written["push_due"] = self.rows_written.get("push_due", 0) + len(batch)

    def _take(self) -> tuple[list, list, int, float]:
        """Fold up to ``batch_size`` queued events into staging rows: (connections, associations, n, oldest)."""
        q = self._queue
        n = min(len(q), self._batch_size)
        oldest = q[0][1]
        connections: dict[uuid.UUID, list] = {}
        associations: dict[uuid.UUID, list] = {}
        transport, slot = self._transport, self._slot
        for _ in range(n):
            e = q.popleft()
            kind = e[0]
            if kind == _CONN_OPEN:
                _, t, meter_id, cid, peer, sim = e
                connections[cid] = [meter_id, cid, peer, transport, slot, timestamp(t), timestamp(sim), None, None, None]
            elif kind == _CONN_CLOSE:
                _, t, meter_id, cid, reason, sim = e
                row = connections.get(cid)
                if row is None or row[7] is not None:
                    connections[cid] = [meter_id, cid, None, None, None, None, None, timestamp(t), reason, timestamp(sim)]
                else:
                    row[7:10] = [timestamp(t), reason, timestamp(sim)]
            elif kind == _ASSOC_OPEN:
                (_, t, meter_id, aid, cid, sap, ln, name, auth, ctx, result, code, src, diag, reason, peer,
                 sim) = e
                associations[aid] = [meter_id, aid, cid, sap, ln, name, auth, ctx, result, code, src, diag,
                                     reason, peer, timestamp(t), timestamp(sim), None, None, None]
            else:
                _, t, meter_id, aid, reason, sim = e
                row = associations.get(aid)
                if row is None or row[16] is not None:
                    associations[aid] = [meter_id, aid, None, None, None, None, None, None, None, None, None,
                                         None, None, None, None, None, timestamp(t), reason, timestamp(sim)]
                else:
                    row[16:19] = [timestamp(t), reason, timestamp(sim)]
        return list(connections.values()), list(associations.values()), n, oldest

    async def _write(self, conn: asyncpg.Connection, batch: tuple[list, list, int, float]) -> None:
        connections, associations, _, _ = batch
        written = {"active_connections": 0, "client_associations": 0}
        async with conn.transaction():
            if connections:
                await conn.copy_records_to_table(sql.STAGE_CONNECTIONS, records=connections,
                                                 columns=sql.CONNECTION_COLUMNS)
                written["active_connections"] += rowcount(await conn.execute(sql.INSERT_CONNECTIONS))
                written["active_connections"] += rowcount(await conn.execute(sql.CLOSE_CONNECTIONS))
            if associations:
                await conn.copy_records_to_table(sql.STAGE_ASSOCIATIONS, records=associations,
                                                 columns=sql.ASSOCIATION_COLUMNS)
                written["client_associations"] += rowcount(await conn.execute(sql.INSERT_ASSOCIATIONS))
                written["client_associations"] += rowcount(await conn.execute(sql.RELEASE_ASSOCIATIONS))
        for table, n in written.items():
            self.rows_written[table] += n


def _sim_now(clock) -> float | None:
    return None if clock is None else clock.sim(time.monotonic())


async def _upsert_meters(conn: asyncpg.Connection, shard: range, options: FleetOptions) -> None:
    """Insert or refresh the ``meters`` rows of ``shard`` (COPY to staging, then one upsert)."""
    fleet = options.fleet
    transport = options.transport.value

    def records():
        for meter_id in shard:
            ident = meter_identity(fleet, meter_id)
            host, port = options.address(meter_id)
            yield (meter_id, ident.serial, ident.logical_device_name, ident.system_title, ident.kind.value, transport, host,
                   port, ident.hdlc_physical_address)

    async with conn.transaction():
        await conn.copy_records_to_table(sql.STAGE_METERS, records=records(), columns=sql.METER_COLUMNS)
        await conn.execute(sql.UPSERT_METERS)


async def _load_keys(conn: asyncpg.Connection, shard: range, install_keys) -> None:
    """Give the shard's meters the keys and counters a previous run left (`meter_keys`)."""
    by_meter: dict[int, list] = {}
    for r in await conn.fetch(sql.SELECT_KEYS, shard.start, shard.stop):
        by_meter.setdefault(r["meter_id"], []).append(r)
    certificates: dict[int, list] = {}
    for r in await conn.fetch(sql.SELECT_CERTIFICATES, shard.start, shard.stop):
        certificates.setdefault(r["meter_id"], []).append(r)
    for meter_id, stored in by_meter.items():
        install_keys(meter_id, stored, certificates.get(meter_id))


async def pending_messages(url: str, shard: range) -> list:
    """The pushes an earlier run of ``shard`` left waiting for retries (``message_queue``, PENDING), by due
    time; none from a database without the table."""
    return await pg.fetch_all(url, sql.SELECT_PENDING_MESSAGES, shard.start, shard.stop)
