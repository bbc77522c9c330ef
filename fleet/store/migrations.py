"""The migrations runner: forward-only schema changes applied by `fleet db migrate`.

Migrations are ``migrations/NNNN_short_description.sql`` (installed as the package ``fleet.migrations``),
applied in order, each in its own transaction, and recorded with a checksum in ``schema_migrations``
(procrastinate ``procrastinate/sql/migrations/`` habit). A file changed after it was applied is an
error: schema changes go in a new file.

The SQL the application runs is in `fleet.store.sql`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from fleet.errors import FleetError
from fleet.store.pg import one_line

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "fleet.migrations"
# A source checkout has no ``fleet/migrations``: the package maps to the top-level folder.
SOURCE_MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key serialising migrators of one database: "cosem-fleet migrate" as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(hashlib.sha256(b"cosem-fleet migrate").digest()[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str  # file name without .sql, e.g. 0001_meters_and_associations
    sql: str
    checksum: str  # sha256 of the text with LF line ends, hex


def migrations() -> list[Migration]:
    """Every migration file, in version order."""
    found: dict[int, Migration] = {}
    for filename, text in _migration_texts():
        m = _MIGRATION_NAME.match(filename)
        if m is None:
            raise FleetError(f"migration file {filename!r} is not named NNNN_short_description.sql")
        version = int(m.group(1))
        sql = text.replace("\r\n", "\n")
        mig = Migration(version, filename[:-4], sql, hashlib.sha256(sql.encode()).hexdigest())
        if version in found:
            raise FleetError(f"two migrations have version {version:04d}: {found[version].name}, {mig.name}")
        found[version] = mig
    return [found[v] for v in sorted(found)]


def _migration_texts() -> list[tuple[str, str]]:
    try:
        root = importlib.resources.files(MIGRATIONS_PACKAGE)
        entries = [(p.name, p) for p in root.iterdir() if p.name.endswith(".sql")]
    except ModuleNotFoundError:
        entries = [(p.name, p) for p in SOURCE_MIGRATIONS_DIR.glob("*.sql")]
    return [(name, p.read_text(encoding="utf-8")) for name, p in sorted(entries)]


CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE schema_migrations IS 'Migration files applied to this database (fleet db migrate)';
"""


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations ``conn``'s database lacks; returns the names applied now.

    Concurrent migrators (several pods starting at once) wait for each other on an advisory lock,
    and the later ones find nothing left to do.
    """
    todo = migrations()
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(CREATE_SCHEMA_MIGRATIONS)
            rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            done = {r["version"]: r for r in rows}
            known = {m.version for m in todo}
            for m in todo:
                row = done.get(m.version)
                if row is None:
                    continue
                if row["checksum"] != m.checksum:
                    raise FleetError(
                        f"migration {m.name} was changed after it was applied to this database; "
                        "restore it and put schema changes in a new migration file"
                    )
            for version in sorted(set(done) - known):
                log.warning("database has migration %s that this cosem-fleet does not know (newer release?)",
                            done[version]["name"])
            for m in todo:
                if m.version in done:
                    continue
                async with conn.transaction():
                    try:
                        await conn.execute(m.sql)
                    except asyncpg.PostgresError as e:
                        raise FleetError(f"migration {m.name} failed: {one_line(e)}") from None
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version, m.name, m.checksum,
                    )
                applied_now.append(m.name)
        finally:
            if not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise FleetError(f"database migration failed: {one_line(e)}") from None
    return applied_now
