"""The ground-truth writer's machinery with in-memory fakes: where it resumes, how it names its spool,
how it reports failures, and that it outlives them (issue 12) without losing, doubling or
over-claiming a row.

The fakes stand in for the database connection and for `capture_rows` (one block row per meter and
quarter hour); the writer's own loop, queue, spool, back-off and progress bookkeeping are the real
ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import pickle
import time
import types
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.runtime.meters import MeterRegistry
from fleet.settings import FleetOptions
from fleet.store import truth as fg
from fleet.store.truth import GroundTruthWriter, failure_reason, resume_point
from meter_core.device.clock import SimClock

# -- where a writer resumes ---------------------------------------------------------------------------


def test_resume_point_is_the_earliest_of_the_furthest_progress_of_each_meter():
    progress = [(0, 50, 100.0), (50, 100, 80.0), (0, 100, 90.0), (100, 200, 500.0)]
    assert resume_point(range(0, 100), progress) == 90.0  # meters 50-99: max(80, 90)
    assert resume_point(range(0, 50), progress) == 100.0
    assert resume_point(range(100, 150), progress) == 500.0
    assert resume_point(range(0, 201), progress) is None  # meter 200 has none
    assert resume_point(range(0, 100), [(0, 50, 1.0), (51, 100, 2.0)]) is None  # meter 50 has none
    assert resume_point(range(0, 0), progress) is None
    assert resume_point(range(5, 10), []) is None
    assert resume_point(range(5, 10), [(0, 1_000_000, 7.5)]) == 7.5


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 12), st.integers(0, 50)), max_size=12),
       st.integers(0, 30), st.integers(0, 12))
def test_resume_point_equals_the_meter_by_meter_answer(spans, lo, width):
    progress = [(a, a + w, float(t)) for a, w, t in spans]
    shard = range(lo, lo + width)
    per_meter = [max((t for a, b, t in progress if a <= m < b), default=None) for m in shard]
    expected = None if not per_meter or None in per_meter else min(per_meter)
    assert resume_point(shard, progress) == expected


# -- spool file names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [(1767205800.0, 1767209400.0), (0.1 + 0.2, 1e22), (1767205800.123456789, math.pi)])
def test_a_spool_file_name_keeps_its_rows_and_window_exactly(tmp_path, window):
    batch = fg._Batch(window[0])
    batch.sim_to, batch.n = window[1], 4321
    entry = fg._Spooled.parse(tmp_path / fg._Spooled.name(17, batch))
    assert (entry.seq, entry.n, entry.sim_from, entry.sim_to) == (17, 4321, *window)


def test_spool_files_of_the_earlier_release_are_read_without_a_window(tmp_path):
    entry = fg._Spooled.parse(tmp_path / "000000000042.pkl")
    assert (entry.seq, entry.n, entry.sim_from, entry.sim_to) == (42, 0, None, None)
    assert fg._Spooled.parse(tmp_path / "notes_from_an_operator.pkl") is None


# -- failures are named for what they are ----------------------------------------------------------------


def test_running_out_of_descriptors_is_not_called_a_database_outage():
    emfile = OSError(errno.EMFILE, "Too many open files")
    assert failure_reason(emfile, fg._CONNECTING) == ("too-many-open-files", "too many open files")
    assert failure_reason(emfile, fg._SPOOLING) == ("too-many-open-files", "too many open files")
    assert failure_reason(OSError(errno.ENFILE, "File table overflow"), fg._READING_SPOOL)[0] == "too-many-open-files"
    assert failure_reason(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), fg._CONNECTING) == (
        "database", "database unavailable")
    assert failure_reason(OSError(errno.ENOSPC, "No space left"), fg._SPOOLING) == (
        "spool", "no space left for the spool")
    assert failure_reason(pickle.PicklingError("x"), fg._SPOOLING)[0] == "spool"
    assert failure_reason(RuntimeError("bug"), "")[0] == "internal"


# -- the writer against fakes ---------------------------------------------------------------------------

START = 1767205800.0  # an IST midnight: quarter hours are multiples of 900 s
SPEED = 36000.0  # ten simulated hours a second


class FakeDb:
    """What the fake connection committed: rows (with how often), progress claims, and claim checks."""

    def __init__(self, shard: range, progress=()) -> None:
        self.shard = shard
        self.progress = list(progress)
        self.rows: Counter = Counter()
        self.claims: list[float] = []
        self.overclaims: list[float] = []
        self.emfile = False  # no descriptor left for a connection
        self.down = False  # the server refuses connections
        self.connects = 0

    def due(self, after: float, until: float) -> set:
        """Rows the fake meters captured in (after, until]."""
        first = math.floor(after / 900) + 1
        return {(m, k * 900.0) for m in self.shard for k in range(first, math.floor(until / 900) + 1)}


class FakeConn:
    def __init__(self, db: FakeDb) -> None:
        self.db = db
        self.rows: list = []
        self.claim: float | None = None

    def is_closed(self) -> bool:
        return False

    async def fetch(self, query, *args):
        return [p for p in self.db.progress if p[0] < args[1] and p[1] > args[0]]

    async def execute(self, query, *args):
        assert "capture_progress" in query
        self.claim = args[2]

    @contextlib.asynccontextmanager
    async def transaction(self):
        self.rows, self.claim = [], None
        yield
        db = self.db
        db.rows.update(self.rows)
        if self.claim is not None:
            # never claim more than is in the database: every row due up to the claim is there
            start = db.progress_floor
            if not db.due(start, self.claim) <= set(db.rows):
                db.overclaims.append(self.claim)
            db.claims.append(self.claim)


class FakeWriterConnection:
    def __init__(self, db: FakeDb) -> None:
        self.db = db

    async def get(self):
        self.db.connects += 1
        if self.db.emfile:
            raise OSError(errno.EMFILE, "Too many open files")
        if self.db.down:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        return FakeConn(self.db)

    def drop(self) -> None:
        pass


async def fake_write_batch(conn, rows):
    for rs in rows.values():
        conn.rows.extend(rs)
    return {t: len(r) for t, r in rows.items()}, []


def fake_capture_rows(meter_id, sim_from, sim_to, now):
    first = math.floor(sim_from / 900) + 1
    return {"block_load_profile": [(meter_id, k * 900.0) for k in range(first, math.floor(sim_to / 900) + 1)]}


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    monkeypatch.setattr(fg, "capture_rows", fake_capture_rows)
    monkeypatch.setattr(fg, "write_batch", fake_write_batch)
    monkeypatch.setattr(fg, "TICK", 0.01)
    monkeypatch.setattr(fg, "RETRY_MIN", 0.01)
    monkeypatch.setattr(fg, "RETRY_MAX", 0.05)
    emfile_open = {"on": False}
    real_open = open

    def fake_open(*args, **kw):
        if emfile_open["on"]:
            raise OSError(errno.EMFILE, "Too many open files", str(args[0]))
        return real_open(*args, **kw)

    monkeypatch.setattr(fg, "open", fake_open, raising=False)

    def make(shard=range(0, 3), progress=(), start=START, **kw):
        db = FakeDb(shard, progress)
        db.progress_floor = resume_point(shard, progress) or start
        t0 = time.monotonic()
        clock = types.SimpleNamespace(sim=lambda now: start + (now - t0) * SPEED)
        writer = GroundTruthWriter("postgresql://unused", shard=shard, clock=clock, start=start,
                                   meter_for_rows=lambda m: m, spool_dir=tmp_path / "spool", **kw)
        writer._conn = FakeWriterConnection(db)
        return writer, db, emfile_open

    return make


async def until(predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        await asyncio.sleep(0.005)


def test_the_writer_outlives_running_out_of_descriptors_and_loses_nothing(fakes, caplog):
    writer, db, emfile_open = fakes(max_queue_rows=60)

    async def main():
        writer.start()
        await until(lambda: db.claims and db.claims[-1] > START + 3 * 3600, what="first writes")
        db.emfile = emfile_open["on"] = True  # no descriptor left: no connection, no spool file
        await until(lambda: writer.errors_by_reason.get("too-many-open-files", 0) >= 4, what="EMFILE counted")
        await until(lambda: writer.backpressure > 0, what="the producer held back")
        assert writer.alive
        assert writer.queued_rows > 0 and writer.spool_rows == 0  # the rows wait in memory
        assert writer.queued_rows < 60 + 3 * 96 * 2  # bounded: the limit plus at most one pass's window
        assert writer.lag > 0
        held = writer.queued_rows
        db.emfile = emfile_open["on"] = False
        await until(lambda: writer.rows_waiting == 0 and writer.lag == 0 and writer.captured_until
                    and writer.captured_until >= writer.cursor - 1e-9 and writer.cursor > START + 86400,
                    what="caught up")
        assert writer.alive and writer.restarts == 0
        await writer.close(5.0)
        return held

    held = asyncio.run(main())
    assert held > 0
    end = db.claims[-1]
    assert db.claims == sorted(db.claims) and not db.overclaims
    assert {r for r in db.rows if r[1] <= end} == db.due(START, end)
    assert set(db.rows.values()) == {1}  # nothing written twice
    messages = [r.getMessage() for r in caplog.records]
    assert any("too many open files (connecting to the database" in m for m in messages)
    assert any("too many open files (spooling" in m for m in messages)
    assert not any("database unavailable" in m and "Errno 24" in m for m in messages)


def test_a_database_outage_spools_and_the_spool_is_written_back_in_order(fakes):
    writer, db, _ = fakes()

    async def main():
        writer.start()
        await until(lambda: db.claims, what="first writes")
        db.down = True  # connections fail, files do not: the rows go to the spool
        await until(lambda: writer.spool_files >= 3, what="spooled")
        assert writer.spool_rows == writer.rows_waiting - writer.queued_rows > 0
        assert writer.spooled_rows >= writer.spool_rows
        db.down = False
        await until(lambda: writer.rows_waiting == 0 and writer.spool_files == 0, what="spool written")
        await writer.close(5.0)

    asyncio.run(main())
    assert not list((writer.spool_dir).glob("*.pkl"))
    assert db.claims == sorted(db.claims) and not db.overclaims
    assert {r for r in db.rows if r[1] <= db.claims[-1]} == db.due(START, db.claims[-1])


def test_a_fault_of_ours_restarts_the_loop_with_what_it_held(fakes, monkeypatch, caplog):
    writer, db, _ = fakes()
    boom = {"left": 1}

    def flaky(meter_id, sim_from, sim_to, now):
        if meter_id == 2 and sim_to > START + 6 * 3600 and boom["left"]:
            boom["left"] -= 1
            raise RuntimeError("a bug in the row functions")
        return fake_capture_rows(meter_id, sim_from, sim_to, now)

    monkeypatch.setattr(fg, "capture_rows", flaky)

    async def main():
        writer.start()
        await until(lambda: writer.restarts == 1, what="the restart")
        await until(lambda: writer.captured_until and writer.captured_until > START + 12 * 3600, what="progress")
        assert writer.alive
        await writer.close(5.0)

    asyncio.run(main())
    assert writer.errors_by_reason["internal"] == 1
    assert any("writer failed" in r.getMessage() and r.exc_info for r in caplog.records)
    assert not db.overclaims
    # the window cut short was computed again whole: rows before the fault may be written twice, none is missing
    assert {r for r in db.rows if r[1] <= db.claims[-1]} == db.due(START, db.claims[-1])


def test_an_unreadable_spool_file_is_set_aside_and_its_window_computed_again(fakes, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    t0, t1, t2 = START, START + 6 * 3600, START + 12 * 3600
    broken = fg._Batch(t0)
    broken.sim_to, broken.n = t1, 72
    (spool / fg._Spooled.name(1, broken)).write_bytes(b"\x80\x05not a pickle")
    later = fg._Batch(t1)
    later.sim_to = t2
    later.rows["block_load_profile"] = fake_capture_rows(0, t1, t2, 0.0)["block_load_profile"]
    later.n = len(later.rows["block_load_profile"])
    (spool / fg._Spooled.name(2, later)).write_bytes(pickle.dumps(later.rows))
    # the earlier worker wrote up to t0 and spooled the rest; this one starts a day later
    writer, db, _ = fakes(progress=[(0, 3, t0)], start=START + 86400)

    async def main():
        writer.start()
        await until(lambda: writer.captured_until and writer.captured_until > START + 86400 + 3600, what="progress")
        await writer.close(5.0)

    asyncio.run(main())
    assert writer.resumed_from == t0
    assert (spool / fg._Spooled.name(1, broken)).with_suffix(".corrupt").exists()
    assert not list(spool.glob("*.pkl"))
    assert db.claims == sorted(db.claims) and not db.overclaims
    assert {r for r in db.rows if r[1] <= db.claims[-1]} == db.due(t0, db.claims[-1])


def test_a_writer_whose_history_ends_later_than_the_clock_waits_for_it(fakes):
    ahead = START + 5 * 86400
    writer, db, _ = fakes(progress=[(0, 3, ahead)])

    async def main():
        writer.start()
        await until(lambda: writer.resumed_from is not None, what="resume")
        await asyncio.sleep(0.2)
        assert writer.cursor == ahead and writer.lag == 0 and not db.rows
        await writer.close(5.0)

    asyncio.run(main())
    assert writer.alive is False and not db.claims


def test_a_log_that_fails_too_costs_the_line_not_the_writer(fakes, monkeypatch):
    writer, db, emfile_open = fakes()
    real = fg.log._log

    def no_descriptor_for_the_log(*args, **kw):
        if db.emfile:
            raise OSError(errno.EBADF, "Bad file descriptor")  # a handler whose file could not be opened
        return real(*args, **kw)

    monkeypatch.setattr(fg.log, "_log", no_descriptor_for_the_log)

    async def main():
        writer.start()
        await until(lambda: db.claims, what="first writes")
        db.emfile = emfile_open["on"] = True
        await until(lambda: writer.errors_by_reason.get("too-many-open-files", 0) >= 4, what="EMFILE counted")
        assert writer.alive
        db.emfile = emfile_open["on"] = False
        await until(lambda: writer.rows_waiting == 0 and writer.captured_until > START + 86400, what="caught up")
        assert writer.alive and writer.restarts == 0
        await writer.close(5.0)

    asyncio.run(main())
    assert not db.overclaims


def test_two_writers_in_one_process_keep_their_own_gauges(fakes):
    from prometheus_client import REGISTRY

    from fleet import metrics

    def counter(name, labels=None):
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    before = {n: counter(n) for n in ("fleet_groundtruth_restarts_total", "fleet_groundtruth_spooled_rows_total")}
    fd_errors = counter("fleet_groundtruth_errors_total", {"reason": "too-many-open-files"})
    a, _, _ = fakes(shard=range(0, 3))
    b, _, _ = fakes(shard=range(3, 5))
    a.queued_rows, b.queued_rows, b.spool_rows = 5, 7, 11
    a.restarts, b.spooled_rows, a.errors_by_reason["too-many-open-files"] = 2, 30, 3
    a.flush_metrics(metrics)
    b.flush_metrics(metrics)
    a.flush_metrics(metrics)  # a later flush of one leaves the other's series alone, and counts nothing twice
    assert REGISTRY.get_sample_value("fleet_groundtruth_rows_waiting", {"shard": "0-3"}) == 5
    assert REGISTRY.get_sample_value("fleet_groundtruth_rows_waiting", {"shard": "3-5"}) == 18
    assert REGISTRY.get_sample_value("fleet_groundtruth_spool_rows", {"shard": "3-5"}) == 11
    assert counter("fleet_groundtruth_restarts_total") - before["fleet_groundtruth_restarts_total"] == 2
    assert counter("fleet_groundtruth_spooled_rows_total") - before["fleet_groundtruth_spooled_rows_total"] == 30
    assert counter("fleet_groundtruth_errors_total", {"reason": "too-many-open-files"}) - fd_errors == 3


def test_a_spool_folder_that_cannot_be_made_does_not_hold_up_the_database(fakes, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spool's parent should be")
    writer, db, _ = fakes()
    writer.spool_dir = blocker / "spool"

    async def main():
        writer.start()
        await until(lambda: writer.captured_until and writer.captured_until > START + 6 * 3600, what="writes")
        db.down = True  # now the rows have nowhere to go but memory
        await until(lambda: writer.errors_by_reason.get("spool", 0) >= 1 and writer.queued_rows > 0, what="kept")
        db.down = False
        await until(lambda: writer.rows_waiting == 0 and writer.captured_until > START + 86400, what="caught up")
        await writer.close(5.0)

    asyncio.run(main())
    assert not db.overclaims and writer.restarts == 0
    assert {r for r in db.rows if r[1] <= db.claims[-1]} == db.due(START, db.claims[-1])


# -- a large shard: slices, and what a window hands over before it ends (issue 14, point 4) --------------


def test_a_window_of_a_large_shard_is_written_between_its_slices_without_over_claiming(fakes, monkeypatch):
    """Slices short enough that a window is cut many times: its rows are handed over (and written) as
    they come, claiming nothing until the window's last batch; every row is there, none claimed early."""
    monkeypatch.setattr(fg, "SLICE", 0.0002)
    writer, db, _ = fakes(shard=range(0, 400), batch_rows=300)
    enqueued = []
    real_enqueue = writer._enqueue

    def spy(batch):
        enqueued.append((batch.n, batch.sim_to > batch.sim_from))
        return real_enqueue(batch)

    writer._enqueue = spy

    async def main():
        writer.start()
        await until(lambda: writer.captured_until and writer.captured_until > START + 6 * 3600, what="progress")
        await writer.close(5.0)

    asyncio.run(main())
    assert any(n >= 300 and not claims for n, claims in enqueued), enqueued[:10]  # handed over mid-window
    assert not db.overclaims and db.claims == sorted(db.claims)
    assert {r for r in db.rows if r[1] <= db.claims[-1]} == db.due(START, db.claims[-1])


def test_a_pass_over_a_shard_gives_the_event_loop_a_turn_every_slice(monkeypatch, tmp_path):
    """The real row functions, 300 real meters, a whole day's window in one pass (a fleet at --speed 900
    catching up). The writer's clock is a counter here (1 ms a reading), so a slice is 4 readings: the
    loop gets a turn after at most a few meters, whatever the machine's speed. (How long a client waits
    in real time is bench.pause's business: figures in bench/RESULTS.md.)"""
    readings = [0.0]

    def fake_monotonic():
        readings[0] += 0.001
        return readings[0]

    monkeypatch.setattr(fg, "_monotonic", fake_monotonic)
    written = Counter()

    async def count_rows(conn, rows):
        for table, rs in rows.items():
            written[table] += len(rs)
        return {t: len(r) for t, r in rows.items()}, []

    monkeypatch.setattr(fg, "write_batch", count_rows)
    options = FleetOptions(meters=300)
    registry = MeterRegistry(options.fleet, options, START - 90 * 86400)
    clock = SimClock(start=START + 86400 + 60, t0=time.monotonic(), speed=1.0)
    registry.clock = clock
    db = FakeDb(range(300))
    db.progress_floor = START
    log = []

    def meter_for_rows(meter_id):
        log.append("meter")
        return registry.for_rows(meter_id)

    writer = GroundTruthWriter("postgresql://unused", shard=range(300), clock=clock, start=START,
                               meter_for_rows=meter_for_rows, spool_dir=tmp_path / "spool")
    writer._conn = FakeWriterConnection(db)

    async def ticker():
        while True:
            await asyncio.sleep(0)
            log.append("turn")

    async def main():
        tick = asyncio.create_task(ticker())
        writer.start()
        await until(lambda: writer.captured_until and writer.captured_until >= START + 86400, timeout=120,
                    what="a day of rows")
        await writer.close(5.0)
        tick.cancel()

    asyncio.run(main())
    assert written["block_load_profile"] >= 300 * 48  # a day of half-hour blocks
    runs, run = [], 0
    for what in log:
        if what == "meter":
            run += 1
        else:
            runs.append(run)
            run = 0
    assert max(runs) <= round(fg.SLICE / 0.001) + 1, max(runs)
