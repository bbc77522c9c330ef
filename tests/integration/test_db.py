"""fleet.store.pg, fleet.store.sql and fleet.store.recorder against a real PostgreSQL (no sockets to meters)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
import uvloop

from fleet.errors import FleetError
from fleet.settings import FleetOptions
from fleet.store import migrations, pg
from fleet.store.recorder import NullRecorder, Recorder
from meter_core.device.clock import SimClock
from meter_core.device.identity import meter_identity
from meter_core.events import (
    AssociationEstablished,
    AssociationRejected,
    AssociationReleased,
    ConnectionTerminated,
    ReleaseReason,
)

pytestmark = pytest.mark.integration

FIRST = "0001_meters_and_associations"
ALL = [m.name for m in migrations.migrations()]


def run(coro):
    """Run ``coro`` on a uvloop loop, as a worker does."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def fetch(url: str, sql: str, *args):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


class FakeWorker:
    """What a worker gives its Recorder."""

    def __init__(self, shard: range, *, meters: int = 20, slot: int = 0, speed: float = 1.0) -> None:
        self.shard = shard
        self.slot = slot
        self.options = FleetOptions(meters=meters, port_base=30000)
        self.fleet = self.options.fleet
        self.clock = SimClock(start=1_780_000_000.0, t0=time.monotonic(), speed=speed)
        self.security_dirty: set[int] = set()
        self.installed_keys: dict[int, list] = {}

    def security_of(self, meter_id: int):
        return None

    def install_keys(self, meter_id: int, stored: list, certificates=None) -> None:
        self.installed_keys[meter_id] = stored

    def take_dirty(self) -> set[int]:
        dirty, self.security_dirty = self.security_dirty, set()
        return dirty


def open_recorder(url: str, worker: FakeWorker, **kwargs):
    """`Recorder.open` with what a worker gives it."""
    return Recorder.open(url, shard=worker.shard, slot=worker.slot, options=worker.options, clock=worker.clock,
                         install_keys=worker.install_keys, security_of=worker.security_of,
                         take_dirty=worker.take_dirty, **kwargs)


class FakeProto:
    """What a Recorder reads from a MeterProtocol."""

    def __init__(self, worker: FakeWorker, meter_id: int, port: int = 50000) -> None:
        self.worker = worker
        self.meter_id = meter_id
        self.connection_id = uuid.uuid4()
        self.peer = f"127.0.0.1:{port}"


ACCEPT_PC = AssociationEstablished(16, "Public client", 0, 1)
ACCEPT_MR = AssociationEstablished(32, "Meter reader", 1, 1)
REJECT_MR = AssociationRejected(32, 1, 1, 13, "wrong password")


# -- migrations --------------------------------------------------------------------------------------


async def _migrate(url: str) -> list[str]:
    conn = await pg.connect(url)
    try:
        return await migrations.migrate(conn)
    finally:
        await conn.close()


def test_migrate_twice_applies_once(empty_database_url):
    assert run(_migrate(empty_database_url)) == ALL
    assert run(_migrate(empty_database_url)) == []
    rows = run(fetch(empty_database_url, "SELECT version, name, checksum FROM schema_migrations"))
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in migrations.migrations()]
    assert rows[0]["checksum"] == migrations.migrations()[0].checksum


def test_concurrent_migrators_are_serialised(empty_database_url):
    async def both():
        return await asyncio.gather(_migrate(empty_database_url), _migrate(empty_database_url))

    results = run(both())
    assert sorted(results) == [[], ALL]


def test_changed_migration_is_refused(empty_database_url, monkeypatch):
    run(_migrate(empty_database_url))
    texts = migrations._migration_texts()
    monkeypatch.setattr(migrations, "_migration_texts",
                        lambda: [(name, text + "\n-- edited\n") for name, text in texts])
    with pytest.raises(FleetError, match=f"migration {FIRST} was changed after it was applied") as e:
        run(_migrate(empty_database_url))
    assert "\n" not in str(e.value)


def test_failed_migration_rolls_back(empty_database_url, monkeypatch):
    texts = migrations._migration_texts()
    bad = "CREATE TABLE half_done (x int);\nSELECT * FROM no_such_table;\n"
    monkeypatch.setattr(migrations, "_migration_texts", lambda: [*texts, ("9999_broken.sql", bad)])
    with pytest.raises(FleetError, match="migration 9999_broken failed: relation \"no_such_table\""):
        run(_migrate(empty_database_url))
    rows = run(fetch(empty_database_url, "SELECT name FROM schema_migrations ORDER BY version"))
    assert [r["name"] for r in rows] == ALL
    assert run(fetch(empty_database_url, "SELECT to_regclass('half_done') AS t"))[0]["t"] is None


def test_migration_files_found_and_ordered():
    ms = migrations.migrations()
    assert [m.version for m in ms] == sorted(m.version for m in ms)
    assert ms[0].name == FIRST


def test_badly_named_migration_is_refused(monkeypatch):
    monkeypatch.setattr(migrations, "_migration_texts", lambda: [("2_oops.sql", "SELECT 1")])
    with pytest.raises(FleetError, match="NNNN_short_description"):
        migrations.migrations()


# -- pg ----------------------------------------------------------------------------------------------


def test_connect_to_unreachable_url_is_one_line_fleet_error():
    url = "postgresql://fleet:s3cret@127.0.0.1:1/fleet"
    with pytest.raises(FleetError) as e:
        run(pg.connect(url, timeout=5))
    msg = str(e.value)
    assert msg.startswith("database unreachable at postgresql://fleet:***@127.0.0.1:1/fleet: ")
    assert "s3cret" not in msg and "\n" not in msg


def test_connect_to_missing_database_is_fleet_error(database_url):
    from tests.conftest import with_database

    with pytest.raises(FleetError, match="database unreachable at .*does not exist"):
        run(pg.connect(with_database(database_url, "no_such_db_here")))


def test_resolve_database_with_url_starts_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("FLEET_DATABASE_URL", raising=False)
    url = "postgresql://u:p@db.example:5432/fleet"
    assert pg.resolve_database(url, tmp_path / "unused") == (url, None)
    monkeypatch.setenv("FLEET_DATABASE_URL", url)
    assert pg.resolve_database(None, tmp_path / "unused") == (url, None)
    assert not (tmp_path / "unused").exists()


def test_embedded_server_refuses_a_folder_that_is_not_its_own(monkeypatch, tmp_path):
    monkeypatch.delenv("FLEET_DATABASE_URL", raising=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FleetError, match=f"could not start in {tmp_path}: the folder is not empty"):
        pg.resolve_database(None, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_redact():
    assert pg.redact("postgresql://u:pw@h:5/d") == "postgresql://u:***@h:5/d"
    assert pg.redact("postgresql://u@h/d") == "postgresql://u@h/d"
    assert pg.redact("postgresql://postgres@/postgres?host=/x") == "postgresql://postgres@/postgres?host=/x"
    assert pg.redact("postgresql://h/d?user=u&password=pw") == "postgresql://h/d?user=u&password=***"


def test_default_data_dir(monkeypatch):
    monkeypatch.setenv("FLEET_DATA_DIR", "/srv/fleet/pg")
    assert pg.default_data_dir() == Path("/srv/fleet/pg")
    monkeypatch.delenv("FLEET_DATA_DIR")
    assert pg.default_data_dir().name == "pgdata"


# -- recorder ----------------------------------------------------------------------------------------


def test_null_recorder_accepts_everything():
    rec, w = NullRecorder(), FakeWorker(range(1))
    p = FakeProto(w, 0)
    rec.connection_opened(p)
    rec.association_established(p, ACCEPT_PC)
    rec.association_released(p, AssociationReleased(16, ReleaseReason.RELEASED))
    rec.connection_closed(p)
    rec.flush_metrics(None)
    run(rec.close(1.0))


def test_recorder_refuses_an_unmigrated_database(empty_database_url):
    with pytest.raises(FleetError, match="no fleet schema: run `fleet db migrate`"):
        run(open_recorder(empty_database_url, FakeWorker(range(10))))


def test_recorder_writes_the_shard_meters(database_url):
    worker = FakeWorker(range(5, 12))

    async def go():
        rec = await open_recorder(database_url, worker)
        await rec.close(5)

    run(go())
    rows = run(fetch(database_url, "SELECT * FROM meters ORDER BY meter_id"))
    assert [r["meter_id"] for r in rows] == list(range(5, 12))
    for r in rows:
        ident = meter_identity(worker.fleet, r["meter_id"])
        assert (r["serial"], r["logical_device_name"], bytes(r["system_title"]), r["hdlc_physical_address"]) == (
            ident.serial, ident.logical_device_name, ident.system_title, ident.hdlc_physical_address)
        assert (r["host"], r["port"]) == worker.options.address(r["meter_id"])
        assert (r["kind"], r["transport"]) == ("3ph", "wrapper")
    first = {r["meter_id"]: r["updated_at"] for r in rows}
    # A restart with the same options rewrites nothing; another port base updates the rows.
    run(go())
    assert {r["meter_id"]: r["updated_at"] for r in run(fetch(database_url, "SELECT * FROM meters"))} == first
    worker.options = FleetOptions(meters=20, port_base=31000)
    run(go())
    rows = run(fetch(database_url, "SELECT meter_id, port, updated_at FROM meters ORDER BY meter_id"))
    assert [r["port"] for r in rows] == [31000 + i for i in range(5, 12)]
    assert all(r["updated_at"] > first[r["meter_id"]] for r in rows)


def _play(rec: Recorder, worker: FakeWorker) -> dict:
    """A scripted day of three connections; returns the protos by name."""
    a, b, c = FakeProto(worker, 3, 50001), FakeProto(worker, 7, 50002), FakeProto(worker, 5, 50003)
    # a: public client associates and releases, the meter reader associates, then the meter times out.
    rec.connection_opened(a)
    rec.association_established(a, ACCEPT_PC)
    rec.association_released(a, AssociationReleased(16, ReleaseReason.RELEASED))
    rec.association_established(a, ACCEPT_MR)
    rec.association_released(a, AssociationReleased(32, ReleaseReason.TIMEOUT))
    rec.connection_terminated(a, ConnectionTerminated("inactivity time-out"))
    rec.connection_closed(a)
    # b: a wrong password, then the head-end hangs up.
    rec.connection_opened(b)
    rec.association_rejected(b, REJECT_MR)
    rec.connection_closed(b)
    # c: associated and still open when the worker stops.
    rec.connection_opened(c)
    rec.association_established(c, ACCEPT_MR)
    return {"a": a, "b": b, "c": c}


def _check_played(url: str, protos: dict) -> None:
    a, b, c = protos["a"], protos["b"], protos["c"]
    conns = {r["connection_id"]: r for r in run(fetch(url, "SELECT * FROM active_connections"))}
    assert set(conns) == {a.connection_id, b.connection_id, c.connection_id}
    ra, rb, rc = conns[a.connection_id], conns[b.connection_id], conns[c.connection_id]
    assert (ra["meter_id"], ra["peer"], ra["transport"], ra["worker_slot"]) == (3, "127.0.0.1:50001", "wrapper", 0)
    assert ra["closed_at"] >= ra["opened_at"] and ra["close_reason"] == "inactivity time-out"
    assert ra["sim_opened_at"] is not None and ra["sim_closed_at"] >= ra["sim_opened_at"]
    assert rb["closed_at"] is not None and rb["close_reason"] == "closed"
    assert rc["closed_at"] is None and rc["close_reason"] is None

    rows = run(fetch(url, "SELECT * FROM client_associations ORDER BY requested_at, client_sap"))
    assert len(rows) == 4 and len({r["association_id"] for r in rows}) == 4
    by = {(r["connection_id"], r["client_sap"], r["result"]): r for r in rows}
    pc = by[(a.connection_id, 16, "accepted")]
    assert (pc["meter_id"], pc["association_ln"], pc["association_name"], pc["authentication"],
            pc["application_context"], pc["result_code"], pc["release_reason"], pc["peer"]) == (
        3, "0.0.40.0.1.255", "Public client", "none", 1, 0, "released", "127.0.0.1:50001")
    assert pc["released_at"] >= pc["requested_at"]
    mr = by[(a.connection_id, 32, "accepted")]
    assert (mr["authentication"], mr["release_reason"]) == ("low", "timeout")
    assert mr["released_at"] is not None and mr["sim_released_at"] is not None
    rj = by[(b.connection_id, 32, "rejected")]
    assert (rj["meter_id"], rj["result_code"], rj["diagnostic_source"], rj["diagnostic"], rj["reject_reason"],
            rj["association_ln"], rj["authentication"], rj["released_at"]) == (
        7, 1, 1, 13, "wrong password", "0.0.40.0.2.255", None, None)
    open_ = by[(c.connection_id, 32, "accepted")]
    assert open_["meter_id"] == 5 and open_["released_at"] is None


@pytest.mark.parametrize("batch_size", [1, 3, 1000], ids=lambda n: f"batch{n}")
def test_recorder_round_trip(database_url, batch_size):
    worker = FakeWorker(range(0, 10))

    async def go():
        rec = await open_recorder(database_url, worker, batch_size=batch_size, flush_interval=0.02)
        protos = _play(rec, worker)
        await rec.close(10)
        assert rec.depth() == 0 and rec.errors == 0 and rec.dropped == 0
        return protos, rec.rows_written

    protos, written = run(go())
    _check_played(database_url, protos)
    assert written["client_associations"] >= 4 and written["active_connections"] >= 3


def test_restarted_worker_closes_what_a_killed_one_left_open(database_url):
    worker = FakeWorker(range(0, 10))
    other = FakeWorker(range(10, 20), slot=1)

    async def first_life():
        rec = await open_recorder(database_url, worker)
        protos = _play(rec, worker)
        rec2 = await open_recorder(database_url, other)
        d = FakeProto(other, 15)
        rec2.connection_opened(d)
        rec2.association_established(d, ACCEPT_PC)
        await rec.close(10)  # c stays open: as if the worker had been killed
        await rec2.close(10)
        return protos, d

    protos, d = run(first_life())

    async def second_life():
        rec = await open_recorder(database_url, worker)
        await rec.close(5)

    run(second_life())
    c = protos["c"]
    conn = run(fetch(database_url, "SELECT * FROM active_connections WHERE connection_id = $1", c.connection_id))[0]
    assert conn["closed_at"] is not None and conn["close_reason"] == "worker-lost"
    assoc = run(fetch(database_url, "SELECT * FROM client_associations WHERE connection_id = $1", c.connection_id))[0]
    assert assoc["released_at"] is not None and assoc["release_reason"] == "worker-lost"
    # The other shard's open rows are not touched.
    other_conn = run(fetch(database_url, "SELECT closed_at FROM active_connections WHERE meter_id = 15"))
    assert [r["closed_at"] for r in other_conn] == [None]
    other_assoc = run(fetch(database_url, "SELECT released_at FROM client_associations WHERE meter_id = 15"))
    assert [r["released_at"] for r in other_assoc] == [None]


def test_recorder_survives_a_database_outage(database_url):
    """The writer's backend is killed and the database refuses connections for a while: nothing lost or doubled."""
    from tests.conftest import with_database

    worker = FakeWorker(range(0, 20))
    dbname = database_url.split("?")[0].rsplit("/", 1)[1]
    admin_url = with_database(database_url, "postgres")

    async def go():
        admin = await asyncpg.connect(admin_url)
        rec = await open_recorder(database_url, worker, batch_size=50, flush_interval=0.02)
        protos = []

        def some(n: int) -> None:
            for i in range(n):
                p = FakeProto(worker, i % 20, 40000 + len(protos))
                protos.append(p)
                rec.connection_opened(p)
                rec.association_established(p, ACCEPT_PC)
                if i % 3:
                    rec.association_released(p, AssociationReleased(16, ReleaseReason.RELEASED))
                    rec.connection_closed(p)

        some(40)
        await asyncio.sleep(0.3)
        assert rec.depth() == 0
        # Outage: no new connections to the database, and the writer's backend terminated.
        await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbname)
        some(60)
        for p in protos[:40]:
            # closes of rows written before the outage
            if p.connection_id in rec._open_connections:
                rec.association_released(p, AssociationReleased(16, ReleaseReason.CONNECTION_CLOSED))
                rec.connection_closed(p)
        await asyncio.sleep(1.0)
        assert rec.errors >= 1 and rec.depth() > 0
        await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        await admin.close()
        await rec.close(15)
        assert rec.depth() == 0 and rec.discarded == 0
        return protos, rec.errors

    protos, errors = run(go())
    assert errors >= 1
    conns = run(fetch(database_url, "SELECT connection_id, closed_at FROM active_connections"))
    assert len(conns) == 100 == len({r["connection_id"] for r in conns})
    assert {r["connection_id"] for r in conns} == {p.connection_id for p in protos}
    open_conns = {r["connection_id"] for r in conns if r["closed_at"] is None}
    # Only the last batch's every third connection is still open.
    assert open_conns == {p.connection_id for i, p in enumerate(protos[40:]) if i % 3 == 0}
    assocs = run(fetch(database_url, "SELECT connection_id, released_at FROM client_associations"))
    assert len(assocs) == 100 == len({r["connection_id"] for r in assocs})
    assert {r["connection_id"] for r in assocs if r["released_at"] is None} == open_conns


def test_replayed_batch_changes_nothing(database_url):
    """A batch written twice (commit done, acknowledgement lost) leaves the same rows."""
    worker = FakeWorker(range(0, 10))

    async def go():
        rec = await open_recorder(database_url, worker, flush_interval=3600)
        protos = _play(rec, worker)
        batch = rec._take()
        conn = await rec._conn.get()
        await rec._write(conn, batch)
        await rec._write(conn, batch)
        await rec.close(5)
        return protos

    protos = run(go())
    _check_played(database_url, protos)


def test_full_queue_drops_new_rows_and_counts_them(database_url):
    worker = FakeWorker(range(0, 10))

    async def go():
        rec = await open_recorder(database_url, worker, max_queue=2, flush_interval=3600)
        a, b = FakeProto(worker, 1), FakeProto(worker, 2)
        rec.connection_opened(a)
        rec.association_established(a, ACCEPT_PC)
        rec.connection_opened(b)  # queue full: dropped
        rec.association_established(b, ACCEPT_PC)  # dropped
        rec.association_released(b, AssociationReleased(16, ReleaseReason.RELEASED))
        rec.connection_closed(b)  # its open was dropped: skipped
        rec.association_released(a, AssociationReleased(16, ReleaseReason.RELEASED))
        rec.connection_closed(a)  # closes of recorded rows are always kept
        assert rec.dropped == 2 and rec.depth() == 4
        await rec.close(5)
        return a

    a = run(go())
    rows = run(fetch(database_url, "SELECT connection_id, closed_at FROM active_connections"))
    assert [(r["connection_id"], r["closed_at"] is not None) for r in rows] == [(a.connection_id, True)]


def test_flush_metrics(database_url):
    import types

    class Gauge:
        def __init__(self):
            self.value = None

        def set(self, v):
            self.value = v

    class Counter:
        def __init__(self):
            self.value = 0
            self.children = {}

        def inc(self, n=1):
            self.value += n

        def labels(self, *key):
            return self.children.setdefault(key, Counter())

    m = types.SimpleNamespace(DB_QUEUE=Gauge(), DB_LAG=Gauge(), DB_ROWS=Counter(), DB_BACKPRESSURE=Counter(),
                              DB_ERRORS=Counter(), DB_DISCARDED=Counter())
    worker = FakeWorker(range(0, 10))

    async def go():
        rec = await open_recorder(database_url, worker, flush_interval=0.02, max_queue=3)
        _play(rec, worker)
        rec.flush_metrics(m)
        assert m.DB_QUEUE.value > 0 and m.DB_LAG.value >= 0 and m.DB_BACKPRESSURE.value > 0
        await rec.close(5)
        rec.flush_metrics(m)
        rec.flush_metrics(m)  # counts are added once

    run(go())
    assert m.DB_QUEUE.value == 0 and m.DB_LAG.value == 0
    assert m.DB_ROWS.children[("active_connections",)].value >= 1


def test_a_refused_row_is_left_out_and_the_rest_of_its_batch_written(database_url):
    """The writers' one rule (fleet.store.writer): a batch the database refuses is not dropped; it is written
    row by row, and only the refused row is left out (counted as discarded); the writer goes on."""
    worker = FakeWorker(range(0, 10))

    async def go():
        rec = await open_recorder(database_url, worker, flush_interval=0.02)
        good, bad, later = FakeProto(worker, 1), FakeProto(worker, 2), FakeProto(worker, 3)
        bad.meter_id = None  # meter_id is NOT NULL: the database refuses this row
        rec.connection_opened(good)
        rec.connection_opened(bad)
        for _ in range(200):
            if rec.depth() == 0:
                break
            await asyncio.sleep(0.02)
        rec.connection_opened(later)  # the writer is still there
        await rec.close(5)
        return rec, good, later

    rec, good, later = run(go())
    rows = run(fetch(database_url, "SELECT connection_id FROM active_connections WHERE connection_id = ANY($1)",
                     [good.connection_id, later.connection_id]))
    assert {r["connection_id"] for r in rows} == {good.connection_id, later.connection_id}
    assert rec.discarded == 1 and rec.depth() == 0
