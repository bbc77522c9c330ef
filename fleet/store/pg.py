"""Where the fleet's PostgreSQL is, and how to reach it.

With ``--database-url`` or ``FLEET_DATABASE_URL`` the fleet uses that server. Without, it starts a
private PostgreSQL from the ``pgserver`` package in a data folder of its own (DESIGN.md, "Storage")
and hands its URL (a unix socket in that folder) to the workers and tools.

pgserver habits this module works around:
- it reads ``XDG_RUNTIME_DIR`` when it is imported (its inter-process lock lives there), so a usable
  one is set before the first ``import pgserver``;
- as root it runs PostgreSQL as a ``pgserver`` system user, chowns the data folder to it and chmods
  every parent folder o+rx; so the data folder must be a folder of its own, in a place whose parents
  are already traversable (never ``/tmp`` itself, never under a private home);
- it counts the processes using a data folder in ``<pgdata>/.handle_pids.json`` and stops the server
  when the last one lets go; a process killed with SIGKILL stays in that list, so dead pids are
  pruned before each start;
- it takes a server for running when ``postmaster.pid`` names a pid that exists, a zombie included
  (a postmaster killed with SIGKILL is one until init reaps it), and PostgreSQL refuses to start while
  that pid, or the one in the socket's ``.s.PGSQL.<port>.lock``, answers ``kill(pid, 0)``; so before a
  restart the watch removes both files when they name no live server process. That is safe: with
  the lock files gone PostgreSQL still refuses to start while a process of the old server is attached
  to its shared memory (keyed by the data folder's inode since PostgreSQL 12).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import stat
import tempfile
import urllib.parse
from pathlib import Path

import asyncpg
import psutil

from fleet.errors import FleetError

CONNECT_TIMEOUT = 10.0

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """The embedded server's data folder: ``$FLEET_DATA_DIR``, else a per-user place.

    As root PostgreSQL runs as the ``pgserver`` user, which must traverse every parent folder, so root
    gets ``/var/lib/cosem-fleet/pgdata`` rather than a folder under its (private) home.
    """
    env = os.environ.get("FLEET_DATA_DIR")
    if env:
        return Path(env).expanduser()
    if os.geteuid() == 0:
        base = Path("/var/lib")
        if os.access(base, os.W_OK | os.X_OK):
            return base / "cosem-fleet" / "pgdata"
        return Path(tempfile.gettempdir()) / f"cosem-fleet-{os.geteuid()}" / "pgdata"
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "cosem-fleet" / "pgdata"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (also a ``password=`` query parameter)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable database url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        if sep and password:
            netloc = f"{user}:***@{hostinfo}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = "&".join(
                f"{k}=***" if k.lower() == "password" else f"{k}={v}" for k, v in pairs
            )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class EmbeddedServer:
    """A handle on the embedded PostgreSQL; `stop` lets go of it (stopping it if we were its last user)."""

    def __init__(self, server, data_dir: Path) -> None:
        self._server = server
        self.data_dir = data_dir
        # pgserver's resolved path: PostgreSQL's processes work in it (their cwd)
        self.pgdata = Path(server.pgdata)
        self.url = _asyncpg_url(server.get_uri())
        self._stopped = False

    def postmaster_pid(self) -> int | None:
        """The pid of the live postmaster serving this data folder, None if there is none."""
        pid = _pidfile_pid(self.pgdata / "postmaster.pid")
        return pid if pid is not None and _live_server_pid(pid, self.pgdata) else None

    def leftover_pids(self) -> list[int]:
        """Processes of a dead postmaster's server still running in the data folder (they exit on their own)."""
        pids = []
        for process in psutil.process_iter():
            try:
                if process.name() != "postgres":
                    continue
            except psutil.Error:
                continue
            if _server_process(process, self.pgdata):
                pids.append(process.pid)
        return pids

    def restart(self) -> int:
        """Start the server again in its data folder, on the same socket (so the same URL), after its
        postmaster died; returns the new postmaster's pid. Another process of the folder may have
        restarted it first: then it is joined."""
        where = f"embedded PostgreSQL could not restart in {self.data_dir}"
        pgserver = _import_pgserver(where)
        try:
            with pgserver.PostgresServer._lock:
                if self.postmaster_pid() is None:
                    _remove_stale_locks(self.pgdata)
                # pgserver's own start path: the same user, socket folder and log as the first start;
                # it records the new postmaster, so `stop` stops this one.
                self._server.ensure_postgres_running()
        except Exception as e:  # noqa: BLE001 - pgserver raises anything from CalledProcessError to AssertionError
            raise FleetError(f"{where}: {_start_failure(self.data_dir, e)}") from None
        pid = self.postmaster_pid()
        if pid is None:
            raise FleetError(f"{where}: it stopped again as it started")
        return pid

    def stop(self) -> None:
        """Release this process's hold; the server stops once no live process holds it."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._server.cleanup()
        except Exception as e:  # noqa: BLE001 - a failed stop must not hide the run's own outcome
            log.warning("embedded PostgreSQL in %s did not stop cleanly: %s", self.data_dir, one_line(e))

    def __repr__(self) -> str:
        return f"EmbeddedServer({str(self.data_dir)!r})"


class ServerState(enum.Enum):
    """What the watch last saw of the embedded server."""

    UP = "up"
    DOWN = "down"


class EmbeddedWatch:
    """Keeps the embedded server of a run alive, looked at from the supervisor's loop (no event loop).

    `check` is cheap while the postmaster lives (it reads ``postmaster.pid`` and looks at that pid once
    per ``interval``). When it is gone, the watch logs it, waits for the old server's processes to exit
    (at most ``linger`` seconds; PostgreSQL would refuse to start beside them) and restarts the server
    in the same folder on the same socket, so the workers' reconnects find it at the URL they have.
    A failed start is logged and tried again after a doubling delay (at most ``retry_max``).
    """

    def __init__(self, server: EmbeddedServer, *, interval: float = 1.0, linger: float = 15.0,
                 retry_max: float = 30.0) -> None:
        self.server = server
        self.interval = interval
        self.linger = linger
        self.retry_max = retry_max
        self.state = ServerState.UP
        self.restarts = 0
        self.pid = server.postmaster_pid()
        self._next = 0.0
        self._lost_at = 0.0
        self._delay = interval

    def check(self, now: float) -> bool:
        """Look at the server if it is time to; True when this call brought it back."""
        if now < self._next:
            return False
        self._next = now + self.interval
        if self.state is ServerState.UP:
            pid = self.server.postmaster_pid()
            if pid is not None:
                self.pid = pid
                return False
            self.state = ServerState.DOWN
            self._lost_at = now
            self._delay = self.interval
            log.warning("embedded PostgreSQL in %s lost (postmaster pid %s gone); restarting it",
                        self.server.data_dir, self.pid)
        if now - self._lost_at < self.linger and self.server.leftover_pids():
            return False
        try:
            pid = self.server.restart()
        except FleetError as e:
            log.warning("%s; trying again in %.0f s", e, self._delay)
            self._next = now + self._delay
            self._delay = min(self._delay * 2, self.retry_max)
            return False
        self.state = ServerState.UP
        self.restarts += 1
        self.pid = pid
        log.info("embedded PostgreSQL in %s back, postmaster pid %d", self.server.data_dir, pid)
        return True


def resolve_database(url: str | None, data_dir: Path) -> tuple[str, EmbeddedServer | None]:
    """The database URL to use, and the embedded server started for it (None if ``url`` or env given)."""
    url = url or os.environ.get("FLEET_DATABASE_URL") or None
    if url:
        return url, None
    server = start_embedded(Path(data_dir))
    return server.url, server


def start_embedded(data_dir: Path) -> EmbeddedServer:
    """Start (or join) the embedded PostgreSQL whose data folder is ``data_dir``."""
    data_dir = Path(data_dir).expanduser().absolute()
    where = f"embedded PostgreSQL could not start in {data_dir}"
    _check_data_dir(data_dir, where)
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FleetError(f"{where}: cannot create {data_dir.parent}: {e.strerror}") from None
    _check_traversable(data_dir, where)
    pgserver = _import_pgserver(where)
    _prune_dead_handles(data_dir, pgserver)
    try:
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
    except FleetError:
        raise
    except Exception as e:  # noqa: BLE001 - pgserver raises anything from CalledProcessError to AssertionError
        raise FleetError(f"{where}: {_start_failure(data_dir, e)}") from None
    return EmbeddedServer(server, data_dir)


def _check_data_dir(data_dir: Path, where: str) -> None:
    """Refuse a folder that is not ours to take: pgserver chowns it and initdb needs it empty."""
    if data_dir.exists():
        if not data_dir.is_dir():
            raise FleetError(f"{where}: it is not a folder")
        if not (data_dir / "PG_VERSION").exists():
            try:
                entries = [p.name for p in data_dir.iterdir()]
            except OSError as e:
                raise FleetError(f"{where}: {e.strerror}") from None
            # An interrupted first start may leave pgserver's own bookkeeping behind.
            if [n for n in entries if n not in {".handle_pids.json", "log"}]:
                raise FleetError(
                    f"{where}: the folder is not empty and holds no PostgreSQL data; give a folder of its own "
                    "with --data-dir or FLEET_DATA_DIR"
                )
    if data_dir == data_dir.parent or str(data_dir) in {"/tmp", tempfile.gettempdir(), str(Path.home())}:
        raise FleetError(f"{where}: the data folder must be a folder of its own")


def _check_traversable(data_dir: Path, where: str) -> None:
    """As root, PostgreSQL runs as another user: every parent must already let others through.

    pgserver would otherwise chmod them (a home folder would become world-readable), so we refuse.
    """
    if os.geteuid() != 0:
        return
    for parent in data_dir.parents:
        try:
            mode = parent.stat().st_mode
        except OSError as e:
            raise FleetError(f"{where}: {parent}: {e.strerror}") from None
        if not mode & stat.S_IXOTH:
            raise FleetError(
                f"{where}: {parent} is not traversable by the pgserver user that runs PostgreSQL for root; "
                "choose another --data-dir (e.g. under /var/lib or /tmp)"
            )


def ensure_runtime_dir() -> str:
    """Make ``XDG_RUNTIME_DIR`` point at a usable private folder (pgserver needs it at import time)."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and _private_dir_ok(Path(current)):
        return current
    path = Path(tempfile.gettempdir()) / f"cosem-fleet-{os.geteuid()}" / "runtime"
    try:
        path.parent.mkdir(mode=0o755, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        pass
    if not _private_dir_ok(path):
        # Someone else owns that name: fall back to a fresh private folder.
        path = Path(tempfile.mkdtemp(prefix=f"cosem-fleet-runtime-{os.geteuid()}-"))
    os.environ["XDG_RUNTIME_DIR"] = str(path)
    return str(path)


def _private_dir_ok(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022
            and os.access(path, os.W_OK | os.X_OK))


def _import_pgserver(where: str):
    ensure_runtime_dir()
    # pgserver logs every command at INFO and whole server logs at ERROR; we report one line instead.
    logging.getLogger("pgserver").setLevel(logging.CRITICAL)
    try:
        # start-up: pgserver reads XDG_RUNTIME_DIR as it is imported, so only after ensure_runtime_dir()
        import pgserver
    except Exception as e:  # noqa: BLE001
        raise FleetError(f"{where}: the pgserver package is not usable: {one_line(e)}") from None
    return pgserver


def _prune_dead_handles(data_dir: Path, pgserver) -> None:
    """Drop pids of dead processes from pgserver's list of users, so the last live one stops the server."""
    handles = data_dir / ".handle_pids.json"
    if not handles.exists():
        return
    with pgserver.PostgresServer._lock:
        try:
            pids = json.loads(handles.read_text())
            alive = [p for p in pids if isinstance(p, int) and psutil.pid_exists(p) and p != os.getpid()]
            if alive != pids:
                handles.write_text(json.dumps(alive))
        except (OSError, ValueError):
            return


def _pidfile_pid(path: Path) -> int | None:
    """The pid on the first line of a PostgreSQL lock file, None if there is no such file."""
    try:
        return int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _server_process(process: psutil.Process, pgdata: Path) -> bool | None:
    """Whether ``process`` is a live (not zombie) process of a server working in ``pgdata``; None if we
    may not look (another user's process)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE and Path(process.cwd()) == pgdata
    except psutil.AccessDenied:
        return None
    except (psutil.NoSuchProcess, OSError):
        return False


def _remove_stale_locks(pgdata: Path) -> None:
    """Remove ``postmaster.pid`` and its socket lock when they name no live server process (call with
    pgserver's lock held, after checking the postmaster is dead)."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except OSError:
        return
    # postmaster.pid: pid, data folder, start time, port, socket folder, ... (PostgreSQL's miscadmin.h)
    if len(lines) >= 5 and lines[3].strip().isdigit() and lines[4].strip():
        socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        pid = _pidfile_pid(socket_lock)
        if pid is not None and not _live_server_pid(pid, pgdata):
            socket_lock.unlink(missing_ok=True)
    pidfile.unlink(missing_ok=True)


def _live_server_pid(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live server process of ``pgdata``; one we may not inspect is taken for one
    (never restart over a live server)."""
    try:
        return _server_process(psutil.Process(pid), pgdata) is not False
    except psutil.NoSuchProcess:
        return False


def _start_failure(data_dir: Path, e: BaseException) -> str:
    """One line saying why the server did not start: the last error line of its log if there is one."""
    logfile = data_dir / "log"
    try:
        lines = [ln.strip() for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    for ln in reversed(lines[-30:]):
        if any(tag in ln for tag in ("FATAL", "ERROR", "PANIC")):
            return ln
    if isinstance(e, FileNotFoundError | PermissionError) and e.filename:
        return f"{e.strerror}: {e.filename}"
    return one_line(e) or type(e).__name__


def one_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _asyncpg_url(uri: str) -> str:
    """pgserver's URI (``postgresql://postgres:@/postgres?host=DIR``) in the form asyncpg and libpq share."""
    return uri.replace("postgres:@/", "postgres@/", 1)


async def connect(url: str, *, timeout: float = CONNECT_TIMEOUT, **kwargs) -> asyncpg.Connection:
    """One connection to ``url``; FleetError (one line, password hidden) if it cannot be had."""
    try:
        return await asyncpg.connect(url, timeout=timeout, **kwargs)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as e:
        raise FleetError(f"database unreachable at {redact(url)}: {_reason(e)}") from None


async def fetch_all(url: str, query: str, *args, **kwargs) -> list:
    """The rows of ``query`` on a connection of its own (``kwargs``: `connect`'s); none from a database that
    lacks the table (one not migrated that far)."""
    conn = await connect(url, **kwargs)
    try:
        return await conn.fetch(query, *args)
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await conn.close()


async def close_quietly(conn: asyncpg.Connection) -> None:
    """Close ``conn``; terminate it if the server does not answer within two seconds."""
    try:
        await asyncio.wait_for(conn.close(), 2.0)
    except Exception:  # noqa: BLE001 - closing: whatever went wrong, the connection goes
        conn.terminate()


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 4, timeout: float = CONNECT_TIMEOUT,
                      **kwargs) -> asyncpg.Pool:
    """A connection pool on ``url``; FleetError as `connect` if the first connections fail."""
    try:
        return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, timeout=timeout, **kwargs)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as e:
        raise FleetError(f"database unreachable at {redact(url)}: {_reason(e)}") from None


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return one_line(e)
