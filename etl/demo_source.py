"""The movie admin database for development and tests: ``movies_admin.sql`` (schema and demo
movies), applied to the database of a URL, which is created when missing."""

from __future__ import annotations

from importlib.resources import files

import asyncpg
from sqlalchemy.engine import make_url

from shared import dbadmin


def schema_sql() -> str:
    return files("etl").joinpath("movies_admin.sql").read_text(encoding="utf-8")


async def load(url: str) -> None:
    """Create the database if needed and run the SQL file on it (safe to repeat)."""
    await dbadmin.ensure_database(url)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(schema_sql())
    finally:
        await conn.close()
