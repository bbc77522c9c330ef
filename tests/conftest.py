"""Database fixtures shared by every test level that needs a real PostgreSQL.

One server per session: ``FLEET_TEST_DATABASE_URL`` if set (the CI service; its role needs
CREATEDB), else an embedded pgserver in a fresh folder of its own, stopped at the end. A template
database gets every migration once; each test then gets its own clone (`database_url`) or a fresh
empty database (`empty_database_url`), dropped after the test (procrastinate and pytest-postgresql
habit: template and clone).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import urllib.parse
import uuid
from pathlib import Path

import pytest


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (host, user and query kept)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _admin(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    from fleet.store import migrations, pg
    from fleet.store.defaults import seed_defaults

    conn = await pg.connect(url)
    try:
        await migrations.migrate(conn)
        await seed_defaults(conn)  # as `fleet db migrate` does
    finally:
        await conn.close()


def _embedded_base() -> Path:
    """A fresh folder the ``pgserver`` user can traverse when we are root (pgserver runs PostgreSQL as it)."""
    base = Path(tempfile.mkdtemp(prefix="cosem-fleet-test-"))
    if os.geteuid() == 0:
        base.chmod(0o755)
    return base


@pytest.fixture(scope="session")
def postgres_url():
    """URL of the session's PostgreSQL server (its maintenance database)."""
    url = os.environ.get("FLEET_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from fleet.store import pg

    base = _embedded_base()
    server = pg.start_embedded(base / "pgdata")
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(postgres_url):
    """Name of a database holding every migration, cloned for each test."""
    name = f"fleet_template_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(_migrate(with_database(postgres_url, name)))
        yield name
    finally:
        asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _fresh_database(postgres_url: str, template: str | None):
    name = f"test_{uuid.uuid4().hex[:16]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"{clause}'))
    return name


@pytest.fixture
def database_url(postgres_url, template_database):
    """URL of a fresh database of this test's own, with every migration applied."""
    name = _fresh_database(postgres_url, template_database)
    yield with_database(postgres_url, name)
    asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def empty_database_url(postgres_url):
    """URL of a fresh database of this test's own, without any migration."""
    name = _fresh_database(postgres_url, None)
    yield with_database(postgres_url, name)
    asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
