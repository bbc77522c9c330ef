"""`fleet.store.pg.EmbeddedWatch`: when it looks, what it logs, when it restarts (a fake server, no PostgreSQL)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from fleet.errors import FleetError
from fleet.store.pg import EmbeddedWatch, ServerState


class FakeServer:
    """Stands in for `EmbeddedServer`: a postmaster pid that tests take away, a scripted restart."""

    def __init__(self) -> None:
        self.data_dir = Path("/srv/fleet/pgdata")
        self.pid: int | None = 100
        self.leftovers: list[int] = []
        self.failures: list[str] = []  # reasons the next restarts fail with, in order
        self.looks = 0
        self.restart_calls = 0

    def postmaster_pid(self) -> int | None:
        self.looks += 1
        return self.pid

    def leftover_pids(self) -> list[int]:
        return self.leftovers

    def restart(self) -> int:
        self.restart_calls += 1
        if self.failures:
            raise FleetError(f"embedded PostgreSQL could not restart in {self.data_dir}: {self.failures.pop(0)}")
        self.pid = 200 + self.restart_calls
        return self.pid


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fleet.store.pg"]


def test_a_live_server_is_looked_at_once_per_interval_and_left_alone(server):
    watch = EmbeddedWatch(server, interval=1.0)
    looks = server.looks
    assert [watch.check(t) for t in (0.0, 0.3, 0.9, 1.0, 1.5, 2.0)] == [False] * 6
    assert server.looks - looks == 3  # at 0, 1 and 2
    assert server.restart_calls == 0 and watch.state is ServerState.UP


def test_a_dead_postmaster_is_restarted_and_logged_once_each_way(server, caplog):
    caplog.set_level(logging.INFO, logger="fleet.store.pg")
    watch = EmbeddedWatch(server, interval=1.0)
    assert not watch.check(0.0)
    server.pid = None
    assert watch.check(1.0)
    assert watch.state is ServerState.UP and watch.restarts == 1 and watch.pid == 201
    assert [watch.check(t) for t in (2.0, 3.0)] == [False, False]
    assert messages(caplog) == [
        "embedded PostgreSQL in /srv/fleet/pgdata lost (postmaster pid 100 gone); restarting it",
        "embedded PostgreSQL in /srv/fleet/pgdata back, postmaster pid 201",
    ]


def test_the_old_servers_processes_are_waited_for_but_not_forever(server):
    watch = EmbeddedWatch(server, interval=1.0, linger=5.0)
    server.pid, server.leftovers = None, [101, 102]
    assert not watch.check(0.0)
    assert watch.state is ServerState.DOWN and server.restart_calls == 0
    assert not watch.check(1.0) and server.restart_calls == 0
    server.leftovers = []
    assert watch.check(2.0) and server.restart_calls == 1

    # Processes that outstay the linger: PostgreSQL is asked anyway (it refuses while they hold its memory).
    server.pid, server.leftovers = None, [103]
    assert not watch.check(3.0)
    assert [watch.check(t) for t in (4.0, 5.0, 6.0, 7.0)] == [False, False, False, False]
    assert watch.check(8.0) and server.restart_calls == 2


def test_a_failed_restart_is_logged_and_retried_after_a_doubling_delay(server, caplog):
    caplog.set_level(logging.INFO, logger="fleet.store.pg")
    watch = EmbeddedWatch(server, interval=1.0, retry_max=4.0)
    server.pid = None
    server.failures = ["FATAL:  a", "FATAL:  b", "FATAL:  c", "FATAL:  d"]
    attempts = []
    for tenth in range(0, 200):
        t = tenth / 10
        calls = server.restart_calls
        back = watch.check(t)
        if server.restart_calls > calls:
            attempts.append(t)
        if back:
            break
    # retried 1, 2, 4, then 4 (the cap) seconds after each failure
    assert attempts == [0.0, 1.0, 3.0, 7.0, 11.0]
    assert watch.restarts == 1 and watch.state is ServerState.UP
    lines = messages(caplog)
    assert lines[0].endswith("lost (postmaster pid 100 gone); restarting it")
    assert lines[1] == ("embedded PostgreSQL could not restart in /srv/fleet/pgdata: FATAL:  a; "
                        "trying again in 1 s")
    assert len(lines) == 6 and lines[-1].endswith("back, postmaster pid 205")


class FakePgserver:
    """Just what `EmbeddedServer` reads of a pgserver handle."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata

    def get_uri(self) -> str:
        return f"postgresql://postgres:@/postgres?host={self.pgdata}"


def _lock_files(pgdata: Path, pid: int) -> tuple[Path, Path]:
    """postmaster.pid and the socket's lock as PostgreSQL writes them, naming ``pid``."""
    pidfile = pgdata / "postmaster.pid"
    pidfile.write_text(f"{pid}\n{pgdata}\n1767205800\n5432\n{pgdata}\n\n  1234567    163850\nready   \n")
    socket_lock = pgdata / ".s.PGSQL.5432.lock"
    socket_lock.write_text(f"{pid}\n{pgdata}\n1767205800\n5432\n{pgdata}\n")
    return pidfile, socket_lock


def test_a_zombie_postmaster_is_dead_and_its_lock_files_go(tmp_path):
    """A postmaster killed with SIGKILL is a zombie until init reaps it: pgserver would take it for a
    running server and PostgreSQL would refuse to start while kill(pid, 0) answers for it."""
    import subprocess

    import psutil

    from fleet.store import pg

    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    child = subprocess.Popen(["true"], cwd=pgdata)  # not waited for: it stays a zombie
    try:
        process = psutil.Process(child.pid)
        deadline = time.monotonic() + 10
        while process.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pidfile, socket_lock = _lock_files(pgdata, child.pid)
        server = pg.EmbeddedServer(FakePgserver(pgdata), pgdata)
        assert server.postmaster_pid() is None
        pg._remove_stale_locks(pgdata)
        assert not pidfile.exists() and not socket_lock.exists()
    finally:
        child.wait()


def test_a_live_postmaster_is_alive_and_a_reused_pid_is_not(tmp_path):
    import subprocess

    from fleet.store import pg

    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    elsewhere = subprocess.Popen(["sleep", "30"], cwd=tmp_path)
    inside = subprocess.Popen(["sleep", "30"], cwd=pgdata)
    try:
        server = pg.EmbeddedServer(FakePgserver(pgdata), pgdata)
        _lock_files(pgdata, inside.pid)
        assert server.postmaster_pid() == inside.pid
        assert server.leftover_pids() == []  # only processes named postgres count as the old server's
        # A pid that now belongs to a process working elsewhere is no postmaster of this folder.
        pidfile, socket_lock = _lock_files(pgdata, elsewhere.pid)
        assert server.postmaster_pid() is None
        pg._remove_stale_locks(pgdata)
        assert not pidfile.exists() and not socket_lock.exists()
    finally:
        for p in (elsewhere, inside):
            p.kill()
            p.wait()
