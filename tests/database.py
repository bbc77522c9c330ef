"""Reading a test's database from test code (which runs no event loop of its own)."""

from __future__ import annotations

import asyncio

import asyncpg


def fetch(url: str, query: str, *args) -> list:
    """The rows of ``query`` on the database at ``url`` (one connection, opened and closed)."""
    async def go():
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(go())
